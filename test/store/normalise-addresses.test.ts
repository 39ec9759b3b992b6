/**
 * Addresses stored before every entry point normalised them (a Unicode
 * domain, mixed case) are rewritten at start, after the SQL migrations, on
 * both backends: rows normalised, a duplicate merged into the normalised row,
 * unsent announcements re-hashed with their approvals voided, the audit log
 * untouched, and a second start changes nothing.
 */
import { mkdtempSync, rmSync } from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { afterEach, describe, expect, it } from 'vitest';
import { announcementHash } from '../../src/policy/gates.js';
import type { Store } from '../../src/store/index.js';
import { freshDatabaseUrl } from '../helpers/postgres.js';
import { BACKENDS, TestClock, createTestRelay, openTestStore, type TestRelay } from '../helpers/relay.js';

const OLD = 'secops@bücher.example';
const NEW = 'secops@xn--bcher-kva.example';
const ANA_OLD = 'Ana@Bücher.example';
const ANA_NEW = 'ana@xn--bcher-kva.example';
const DUP_OLD = 'dup@BÜCHER.example';
const DUP_NEW = 'dup@xn--bcher-kva.example';

const dirs: string[] = [];
const relays: TestRelay[] = [];
const stores: Store[] = [];
afterEach(async () => {
  await Promise.all(relays.splice(0).map((r) => r.ctx.store.close()));
  await Promise.all(stores.splice(0).map((s) => s.close()));
  for (const d of dirs.splice(0)) rmSync(d, { recursive: true, force: true });
});

const auth = (token: string) => ({ Authorization: `Bearer ${token}` });

describe.each(BACKENDS)('old-form addresses on %s', (backend) => {
  async function place(): Promise<{ file?: string; url?: string }> {
    if (backend === 'postgres') return { url: await freshDatabaseUrl() };
    const dir = mkdtempSync(path.join(os.tmpdir(), 'normalise-'));
    dirs.push(dir);
    return { file: path.join(dir, 'relay.db') };
  }
  const open = async (where: { file?: string; url?: string }, clock: TestClock) => {
    const store = await openTestStore(backend, clock.now, where.file, where.url);
    stores.push(store);
    return store;
  };

  /** A database as a relay before the change left it: rows written in the old form, straight into the tables. */
  async function seed(where: { file?: string; url?: string }) {
    const clock = new TestClock();
    const store = await open(where, clock);
    const at = clock.now().toISOString();
    await store.incidents.create({ id: 'inc-1', codename: 'blue-heron', createdBy: 'ic@corp.example', at: clock.now() });
    const member = (email: string, role: string) =>
      store.sql.run("INSERT INTO roster (incident_id, email, name, role, status, added_at, updated_at) VALUES ('inc-1', ?, 'N', ?, 'active', ?, ?)", [email, role, at, at]);
    await member('ic@corp.example', 'commander');
    await member(OLD, 'security');
    await member(ANA_OLD, 'responder');
    // The same person twice: the old row beside one the normalised route wrote since.
    await member(DUP_OLD, 'legal');
    await member(DUP_NEW, 'responder');
    await store.sql.run("INSERT INTO tokens (id, email, role, hash, created_at) VALUES ('t1', ?, 'responder', 'h1', ?)", [ANA_OLD, at]);
    await store.sql.run("INSERT INTO audiences (name, addresses, updated_by, updated_at) VALUES ('press', ?, 'admin@corp.example', ?)", [JSON.stringify([OLD, NEW, 'b@corp.example']), at]);
    const draft = { kind: 'internal' as const, title: 'T', text: 'x', audience: [ANA_OLD, 'b@corp.example'] };
    const oldHash = announcementHash(draft);
    await store.sql.run(
      `INSERT INTO announcements (id, incident_id, kind, title, text, audience, content_hash, checked_hash, state, author, created_at, updated_at)
       VALUES ('a1', 'inc-1', 'internal', 'T', 'x', ?, ?, ?, 'approved', ?, ?, ?)`,
      [JSON.stringify(draft.audience), oldHash, oldHash, ANA_OLD, at, at],
    );
    await store.sql.run("INSERT INTO announcement_approvals (id, announcement_id, ordinal, approver, role, content_hash, approved_at) VALUES ('p1', 'a1', 1, ?, 'legal', ?, ?)", [DUP_OLD, oldHash, at]);
    // Mail Ana queued before the upgrade, to the security member, and a nudge for them: the worker checks these against the roster.
    const delivery = (id: string, channel: string, envelope: unknown, smsId: string | null) =>
      store.sql.run(
        "INSERT INTO deliveries (id, channel, email_id, sms_id, incident_id, envelope, body, body_kind, status, attempts, created_ms, next_attempt_ms) VALUES (?, ?, NULL, ?, 'inc-1', ?, ?, 'raw', 'queued', 0, 1, 1)",
        [id, channel, smsId, JSON.stringify(envelope), Buffer.from('x')],
      );
    await delivery('d-mail', 'email', { kind: 'email', from: ANA_OLD, to: [OLD, 'ic@corp.example'] }, null);
    await store.sql.run("INSERT INTO sms_messages (id, incident_id, email, phone, created_at, created_ms) VALUES ('s1', 'inc-1', ?, '+15555550100', ?, 1)", [OLD, at]);
    await delivery('d-sms', 'sms', { kind: 'sms', to: '+15555550100', body: 'Please join Slack ASAP.' }, 's1');
    // The audit log keeps what it said: an event naming the old form.
    await store.audit.append({ type: 'roster.added', actor: 'ic@corp.example', incidentId: 'inc-1', outcome: 'ok', data: { email: OLD } });
    await store.close();
    stores.splice(stores.indexOf(store), 1);
    return { oldHash };
  }

  it('are normalised at start: duplicates merged, drafts re-hashed with approvals voided, the member reachable and removable, a second start changes nothing', async () => {
    const where = await place();
    const { oldHash } = await seed(where);
    const relay = await createTestRelay(
      { internalDomains: ['corp.example', 'xn--bcher-kva.example'], securityTeam: [NEW] },
      { backend, file: where.file, databaseUrl: where.url },
    );
    relays.push(relay);
    const { store } = relay.ctx;

    const roster = await store.sql.all<{ email: string; role: string }>("SELECT email, role FROM roster WHERE incident_id = 'inc-1' ORDER BY email");
    expect(roster).toEqual([
      { email: ANA_NEW, role: 'responder' },
      // The normalised row is kept; the old `legal` row is dropped.
      { email: DUP_NEW, role: 'responder' },
      { email: 'ic@corp.example', role: 'commander' },
      { email: NEW, role: 'security' },
    ]);
    expect((await store.tokens.get('t1'))!.email).toBe(ANA_NEW);
    // Queued mail and the nudge's record in the roster's spelling, so the worker's roster check keeps them.
    expect(JSON.parse((await store.sql.get<{ envelope: string }>("SELECT envelope FROM deliveries WHERE id = 'd-mail'"))!.envelope)).toEqual({ kind: 'email', from: ANA_NEW, to: [NEW, 'ic@corp.example'] });
    expect(await store.outbox.smsMember('s1')).toBe(NEW);
    expect((await store.announcements.audience('press'))!.addresses).toEqual([NEW, 'b@corp.example']);

    const a = (await store.announcements.get('inc-1', 'a1'))!;
    expect(a.audience).toEqual([ANA_NEW, 'b@corp.example']);
    expect(a.author).toBe(ANA_NEW);
    expect(a.contentHash).toBe(announcementHash({ kind: 'internal', title: 'T', text: 'x', audience: [ANA_NEW, 'b@corp.example'] }));
    expect(a.contentHash).not.toBe(oldHash);
    expect(a).toMatchObject({ state: 'draft', checkedHash: null });
    expect(await store.announcements.approvals('a1')).toMatchObject([{ approver: DUP_NEW, voidedAt: relay.clock.now().toISOString(), voidReason: 'address_normalised' }]);

    const events = await store.audit.listForIncident('inc-1');
    expect(events.find((e) => e.type === 'roster.added')!.data).toEqual({ email: OLD });
    expect(events.find((e) => e.type === 'announcement.audience_normalised')).toMatchObject({
      actor: null,
      outcome: 'ok',
      data: { announcementId: 'a1', previousHash: oldHash, contentHash: a.contentHash, audienceCount: 2, addressesRewritten: 1, voidedApprovals: 1 },
    });
    const summary = await store.sql.all<{ data: string }>("SELECT data FROM audit_events WHERE type = 'store.addresses_normalised'");
    expect(summary.map((s) => JSON.parse(s.data))).toEqual([
      {
        rewritten: {
          'roster.email': 2,
          'tokens.email': 1,
          'announcements.author': 1,
          'announcement_approvals.approver': 1,
          'audiences.addresses': 1,
          'announcements.audience': 1,
          'deliveries.envelope': 2,
          'sms_messages.email': 1,
        },
        merged: { roster: 1 },
        unreadable: 0,
        announcementsVoided: 1,
      },
    ]);

    // The security member is on the roster under the address mail is sent to.
    const ic = await relay.tokenFor('ic@corp.example');
    const sent = await relay.request.post('/v1/incidents/blue-heron/emails').set(auth(ic)).send({ to: [NEW], text: 'x' });
    expect(sent.status).toBe(202);
    // The route normalises the path parameter, and now finds the row.
    const removed = await relay.request.delete(`/v1/incidents/blue-heron/roster/${encodeURIComponent(ANA_OLD)}`).set(auth(ic));
    expect(removed.status).toBe(204);
    expect((await store.incidents.member('inc-1', ANA_NEW))!.status).toBe('removed');
    // Her queued mail goes with her: the removal finds it under the one spelling.
    expect((await store.sql.get<{ status: string }>("SELECT status FROM deliveries WHERE id = 'd-mail'"))!.status).toBe('cancelled');

    // A second start: nothing left to rewrite, nothing appended.
    const before = await store.sql.get<{ n: number }>('SELECT COUNT(*) AS n FROM audit_events');
    const rosterBefore = await store.sql.all('SELECT * FROM roster ORDER BY email');
    await store.close();
    relays.splice(0);
    const again = await open(where, relay.clock);
    expect(await again.sql.get<{ n: number }>('SELECT COUNT(*) AS n FROM audit_events')).toEqual(before);
    expect(await again.sql.all('SELECT * FROM roster ORDER BY email')).toEqual(rosterBefore);
  });
});
