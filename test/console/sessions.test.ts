/**
 * Console sessions in the store, on both backends: only the id's hash is
 * kept; idle expiry, the absolute cap and a revoked token each end a
 * session at its next request (deleted and audited, never the token); the
 * flash is read once; ended sessions are purged at the next sign-in.
 */
import { pino } from 'pino';
import { afterEach, describe, expect, it } from 'vitest';
import { leaveFlash, takeFlash } from '../../src/console/flash.js';
import { flashBlock } from '../../src/console/views/common.js';
import { SESSION_IDLE_MS, SESSION_MAX_MS, endSession, hashSessionId, openSession, resumeSession } from '../../src/console/sessions.js';
import { ensureBootstrapAdmin } from '../../src/services/bootstrap.js';
import type { Caller } from '../../src/services/incidents.js';
import { callerFromToken } from '../../src/services/tokens.js';
import type { Store } from '../../src/store/index.js';
import { BOOTSTRAP_TOKEN_ID } from '../../src/store/tokens.js';
import { BACKENDS, TestClock, openTestStore } from '../helpers/relay.js';

const opened: Store[] = [];
const quiet = <T extends object>(deps: T) => ({ ...deps, logger: pino({ level: 'silent' }) });
afterEach(async () => {
  await Promise.all(opened.splice(0).map((s) => s.close()));
});

describe.each(BACKENDS)('console sessions on %s', (backend) => {
  async function setup(): Promise<{ store: Store; clock: TestClock; caller: Caller; token: string; deps: { store: Store; now: () => Date } }> {
    const clock = new TestClock(new Date('2026-11-28T10:00:00.000Z'));
    const store = await openTestStore(backend, clock.now);
    opened.push(store);
    const { record, token } = await store.tokens.create({ email: 'ic@corp.example', role: 'responder', at: clock.now() });
    return { store, clock, caller: callerFromToken(record), token, deps: { store, now: clock.now } };
  }

  it('stores only the SHA-256 of the session id, never the id or the token, and audits the sign-in without them', async () => {
    const { store, caller, token, deps } = await setup();
    const { id } = await openSession(deps, caller, '127.0.0.1');
    expect(id).toMatch(/^[A-Za-z0-9_-]{43}$/);
    const rows = await store.sql.all<Record<string, unknown>>('SELECT * FROM console_sessions');
    expect(rows).toEqual([
      {
        id_hash: hashSessionId(id),
        token_id: caller.tokenId,
        email: 'ic@corp.example',
        created_at: '2026-11-28T10:00:00.000Z',
        last_seen_at: '2026-11-28T10:00:00.000Z',
        expires_at: '2026-11-28T22:00:00.000Z',
        flash: null,
      },
    ]);
    const everything = JSON.stringify(await store.sql.all('SELECT * FROM audit_events')) + JSON.stringify(rows);
    expect(everything).not.toContain(id);
    expect(everything).not.toContain(token);
    const [event] = await store.sql.all<{ type: string; data: string }>("SELECT type, data FROM audit_events WHERE type = 'console.signed_in'");
    expect(JSON.parse(event!.data)).toEqual({ tokenId: caller.tokenId, role: 'responder', session: hashSessionId(id).slice(0, 16), ip: '127.0.0.1' });
  });

  it('a live session resumes as its token\'s caller; an unknown or malformed id does not', async () => {
    const { caller, deps } = await setup();
    const { id } = await openSession(deps, caller, '127.0.0.1');
    expect(await resumeSession(deps, id)).toMatchObject({ active: { caller } });
    expect(await resumeSession(deps, 'A'.repeat(43))).toEqual({ ended: 'unknown' });
    expect(await resumeSession(deps, `${id}x`)).toEqual({ ended: 'unknown' });
    expect(await resumeSession(deps, hashSessionId(id))).toEqual({ ended: 'unknown' });
  });

  it(`ends after ${SESSION_IDLE_MS / 60_000} minutes without a request, and a request before that keeps it alive`, async () => {
    const { store, clock, caller, deps } = await setup();
    const { id } = await openSession(deps, caller, '127.0.0.1');
    clock.advance(SESSION_IDLE_MS - 1000);
    expect(await resumeSession(deps, id)).toHaveProperty('active');
    clock.advance(SESSION_IDLE_MS - 1000);
    expect(await resumeSession(deps, id)).toHaveProperty('active');
    clock.advance(SESSION_IDLE_MS);
    expect(await resumeSession(deps, id)).toEqual({ ended: 'idle' });
    expect(await store.consoleSessions.get(hashSessionId(id))).toBeUndefined();
    const ended = await store.sql.all<{ actor: string; data: string }>("SELECT actor, data FROM audit_events WHERE type = 'console.signed_out'");
    expect(ended.map((e) => [e.actor, JSON.parse(e.data).reason])).toEqual([['ic@corp.example', 'idle']]);
    // Gone for good: the same id again is unknown, and nothing more is audited.
    expect(await resumeSession(deps, id)).toEqual({ ended: 'unknown' });
  });

  it(`ends ${SESSION_MAX_MS / 3_600_000} hours after sign-in however active it is`, async () => {
    const { clock, caller, deps } = await setup();
    const { id } = await openSession(deps, caller, '127.0.0.1');
    // A request every 15 minutes: never idle, up to the last step before the cap.
    const step = SESSION_IDLE_MS / 2;
    for (let t = step; t < SESSION_MAX_MS; t += step) {
      clock.advance(step);
      expect(await resumeSession(deps, id)).toHaveProperty('active');
    }
    clock.advance(step);
    expect(await resumeSession(deps, id)).toEqual({ ended: 'expired' });
  });

  it('a revoked token ends its sessions at their next request', async () => {
    const { store, clock, caller, deps } = await setup();
    const first = await openSession(deps, caller, '127.0.0.1');
    const second = await openSession(deps, caller, '10.0.0.2');
    expect(await store.consoleSessions.countForToken(caller.tokenId)).toBe(2);
    await store.tokens.revoke(caller.tokenId, clock.now());
    expect(await resumeSession(deps, first.id)).toEqual({ ended: 'token_revoked' });
    expect(await resumeSession(deps, second.id)).toEqual({ ended: 'token_revoked' });
    expect(await store.consoleSessions.countForToken(caller.tokenId)).toBe(0);
  });

  it('a new RELAY_ADMIN_TOKEN ends the sessions opened with the old one, even after a revocation; sessions of the new one live', async () => {
    const { store, clock, deps } = await setup();
    const logger = pino({ level: 'silent' });
    // The relay's start files RELAY_ADMIN_TOKEN under the one id 'admin'.
    await ensureBootstrapAdmin(store, { adminToken: 'old-admin-token-0123456789', adminEmail: 'admin@corp.example', now: clock.now(), logger });
    const admin: Caller = { tokenId: BOOTSTRAP_TOKEN_ID, email: 'admin@corp.example', role: 'admin', incidentScope: null };
    clock.advance(60_000);
    const leaked = await openSession(deps, admin, '127.0.0.1');
    clock.advance(60_000);
    // A restart with a new value: the row is deleted and filed again, unrevoked, under the same id.
    await ensureBootstrapAdmin(store, { adminToken: 'new-admin-token-0123456789', adminEmail: 'admin@corp.example', now: clock.now(), logger });
    const fresh = await openSession(deps, admin, '127.0.0.1');
    clock.advance(60_000);
    expect(await resumeSession(deps, leaked.id)).toEqual({ ended: 'token_revoked' });
    expect(await store.consoleSessions.get(hashSessionId(leaked.id))).toBeUndefined();
    expect(await resumeSession(deps, fresh.id)).toMatchObject({ active: { caller: admin } });
    const ended = await store.sql.all<{ actor: string; data: string }>("SELECT actor, data FROM audit_events WHERE type = 'console.signed_out'");
    expect(ended.map((e) => [e.actor, JSON.parse(e.data)])).toEqual([['admin@corp.example', { tokenId: 'admin', session: hashSessionId(leaked.id).slice(0, 16), reason: 'token_revoked' }]]);

    // Revoked, then replaced: the revocation is gone with the old row, and the old session must not come back with the new one.
    const before = await openSession(deps, admin, '127.0.0.1');
    clock.advance(60_000);
    await store.tokens.revoke(BOOTSTRAP_TOKEN_ID, clock.now());
    clock.advance(60_000);
    await ensureBootstrapAdmin(store, { adminToken: 'third-admin-token-0123456789', adminEmail: 'admin@corp.example', now: clock.now(), logger });
    expect((await store.tokens.get(BOOTSTRAP_TOKEN_ID))!.revokedAt).toBeNull();
    expect(await resumeSession(deps, before.id)).toEqual({ ended: 'token_revoked' });
  });

  it('keeps a session whose token the relay that issued it dated later, its clock running ahead: only the bootstrap id is ever reused', async () => {
    const { store, clock, deps } = await setup();
    const ahead = new Date(clock.now().getTime() + 5_000);
    const { record } = await store.tokens.create({ email: 'counsel@lawfirm.example', role: 'responder', at: ahead });
    const { id } = await openSession(deps, callerFromToken(record), '127.0.0.1');
    expect(await resumeSession(deps, id)).toMatchObject({ active: { caller: { tokenId: record.id } } });
  });

  it('sign-out deletes the session and is audited once; ended sessions are purged at the next sign-in', async () => {
    const { store, clock, caller, deps } = await setup();
    const { id, session } = await openSession(deps, caller, '127.0.0.1');
    const stale = await openSession(deps, caller, '127.0.0.1');
    await endSession(deps, session, 'signed_out');
    await endSession(deps, session, 'signed_out');
    expect(await resumeSession(deps, id)).toEqual({ ended: 'unknown' });
    expect(await store.sql.all("SELECT type FROM audit_events WHERE type = 'console.signed_out'")).toHaveLength(1);
    clock.advance(SESSION_IDLE_MS + 1);
    await openSession(deps, caller, '127.0.0.1');
    expect(await store.consoleSessions.get(hashSessionId(stale.id))).toBeUndefined();
    const [last] = await store.sql.all<{ data: string }>("SELECT data FROM audit_events WHERE type = 'console.signed_in' ORDER BY seq DESC LIMIT 1");
    expect(JSON.parse(last!.data)).toMatchObject({ endedSessionsPurged: 1 });
  });

  it('a flash is shown once', async () => {
    const { caller, deps } = await setup();
    const { id } = await openSession(deps, caller, '127.0.0.1');
    const resumed = async () => ((await resumeSession(deps, id)) as { active: { session: Parameters<typeof takeFlash>[1] } }).active.session;
    expect(await leaveFlash(quiet(deps), await resumed(), { kind: 'nudge', results: [{ email: 'sec@corp.example', status: 'queued' }, { email: 'ic@corp.example', status: 'skipped', reason: 'no_phone' }] })).toBe(true);
    expect(await takeFlash(deps, await resumed())).toEqual({
      kind: 'nudge',
      queued: 1,
      skipped: 1,
      results: [{ email: 'sec@corp.example', status: 'queued' }, { email: 'ic@corp.example', status: 'skipped', reason: 'no_phone' }],
      more: 0,
    });
    expect(await takeFlash(deps, await resumed())).toBeUndefined();
  });

  it('a result longer than a page shows is clipped with a count of the rest, never refused', async () => {
    const { caller, deps } = await setup();
    const { id } = await openSession(deps, caller, '127.0.0.1');
    const resumed = async () => ((await resumeSession(deps, id)) as { active: { session: Parameters<typeof takeFlash>[1] } }).active.session;
    // A nudge to everyone on a roster of 1,500 (what the API allows with "to": "roster").
    const results = Array.from({ length: 1500 }, (_, i) => (i % 3 === 0 ? { email: `m${i}@corp.example`, status: 'skipped', reason: 'no_phone' } : { email: `m${i}@corp.example`, status: 'queued' }));
    expect(await leaveFlash(quiet(deps), await resumed(), { kind: 'nudge', results })).toBe(true);
    const nudge = await takeFlash(deps, await resumed());
    expect(nudge).toEqual({ kind: 'nudge', queued: 1000, skipped: 500, results: results.slice(0, 1000), more: 500 });
    expect(flashBlock(nudge).toString()).toContain('<h2 id="flash-title">SMS nudge: 1000 queued, 500 skipped</h2>');
    expect(flashBlock(nudge).toString()).toContain('<p>…and 500 more members not listed here.</p>');

    const notFound = Array.from({ length: 1001 }, (_, i) => `gone${i}@corp.example`);
    expect(await leaveFlash(quiet(deps), await resumed(), { kind: 'slack', name: 'ir-amber-otter', kicked: 0, invited: 0, topicRestored: false, notFound })).toBe(true);
    const slack = await takeFlash(deps, await resumed());
    expect(slack).toMatchObject({ kind: 'slack', notFound: notFound.slice(0, 1000), more: 1 });
    expect(flashBlock(slack).toString()).toContain('gone999@corp.example and 1 more.</p>');

    expect(await leaveFlash(quiet(deps), await resumed(), { kind: 'notice', text: 'x'.repeat(5000) })).toBe(true);
    expect(await takeFlash(deps, await resumed())).toEqual({ kind: 'notice', text: `${'x'.repeat(1999)}…` });
  });
});
