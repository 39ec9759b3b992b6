/**
 * Tokens (issue 12 §3): GET /v1/tokens shows metadata and never a secret;
 * an incident's commander issues responder tokens for an active member of
 * its roster, and nobody else does without being an admin; a responder
 * revokes their own; last use is written at most once a minute. On both
 * store backends.
 */
import { afterAll, beforeAll, beforeEach, describe, expect, it } from 'vitest';
import { possibleIncidents } from '../../src/smtp/incident-resolution.js';
import { TOKEN_USE_RESOLUTION_MS, callerFromToken } from '../../src/services/tokens.js';
import { createGpgHome, type GeneratedKey, type GpgHome } from '../helpers/gpg.js';
import { BACKENDS, createTestRelay, type TestRelay } from '../helpers/relay.js';

const auth = (token: string) => ({ Authorization: `Bearer ${token}` });

let gpg: GpgHome;
let counselKey: GeneratedKey;
beforeAll(async () => {
  gpg = await createGpgHome();
  counselKey = await gpg.generateKey('counsel@lawfirm.example', 'Counsel');
});
afterAll(async () => {
  await gpg.cleanup();
});

describe.each(BACKENDS)('tokens (%s)', (backend) => {
  let relay: TestRelay;
  let ic: string;
  let deputy: string;
  let codename: string;
  let other: string;

  const issue = (token: string, body: Record<string, unknown>) => relay.request.post('/v1/tokens').set(auth(token)).send(body);
  const tokenRows = async (): Promise<number> => (await relay.ctx.store.sql.get<{ n: number }>('SELECT COUNT(*) AS n FROM tokens'))!.n;

  beforeEach(async () => {
    relay = await createTestRelay({}, { backend });
    ic = await relay.tokenFor('ic@corp.example');
    deputy = await relay.tokenFor('deputy@corp.example');
    codename = (await relay.request.post('/v1/incidents').set(auth(ic)).send({})).body.codename;
    for (const [email, role] of [
      ['deputy@corp.example', 'deputy'],
      ['counsel@lawfirm.example', 'external'],
      ['gone@corp.example', 'security'],
    ]) {
      expect((await relay.request.put(`/v1/incidents/${codename}/roster/${email}`).set(auth(ic)).send({ name: email!.split('@')[0], role })).status).toBe(201);
    }
    expect((await relay.request.delete(`/v1/incidents/${codename}/roster/gone@corp.example`).set(auth(ic))).status).toBe(204);
    // Another incident, commanded by someone else, with counsel on it too.
    const otherIc = await relay.tokenFor('other-ic@corp.example');
    other = (await relay.request.post('/v1/incidents').set(auth(otherIc)).send({})).body.codename;
    expect((await relay.request.put(`/v1/incidents/${other}/roster/counsel@lawfirm.example`).set(auth(otherIc)).send({ name: 'C', role: 'external' })).status).toBe(201);
    expect((await relay.request.put(`/v1/incidents/${other}/roster/ic@corp.example`).set(auth(otherIc)).send({ name: 'IC', role: 'deputy' })).status).toBe(201);
  });

  it('lets the commander issue a responder token for an active member, audited with the incident; it works at once', async () => {
    const res = await issue(ic, { email: 'counsel@lawfirm.example', role: 'responder', label: 'counsel laptop', incident: codename });
    expect(res.status).toBe(201);
    expect(res.body).toEqual({ id: expect.any(String), token: expect.stringMatching(/^ir_[a-z0-9]{16}_[A-Za-z0-9_-]{43}$/), email: 'counsel@lawfirm.example', role: 'responder', label: 'counsel laptop', createdAt: expect.any(String) });
    expect((await relay.request.get(`/v1/incidents/${codename}`).set(auth(res.body.token))).status).toBe(200);
    const incident = (await relay.ctx.store.incidents.byCodename(codename))!;
    const event = (await relay.ctx.store.audit.listForIncident(incident.id)).filter((e) => e.type === 'token.created').at(-1)!;
    expect(event).toMatchObject({ actor: 'ic@corp.example', incidentId: incident.id, data: { id: res.body.id, email: 'counsel@lawfirm.example', role: 'responder', forRoster: true } });
    expect(JSON.stringify(event)).not.toContain(res.body.token);
  });

  it.each([
    ['a deputy', () => deputy, () => ({ email: 'counsel@lawfirm.example', role: 'responder', incident: codename }), 403, 'forbidden'],
    ['the commander of another incident (on this one as deputy there)', () => ic, () => ({ email: 'counsel@lawfirm.example', role: 'responder', incident: other }), 403, 'forbidden'],
    ['a commander, for an address off the roster', () => ic, () => ({ email: 'nosy@corp.example', role: 'responder', incident: codename }), 403, 'forbidden'],
    ['a commander, for a member who was removed', () => ic, () => ({ email: 'gone@corp.example', role: 'responder', incident: codename }), 403, 'forbidden'],
    ['a commander, asking for role admin', () => ic, () => ({ email: 'counsel@lawfirm.example', role: 'admin', incident: codename }), 403, 'forbidden'],
    ['a commander, without naming the incident', () => ic, () => ({ email: 'counsel@lawfirm.example', role: 'responder' }), 403, 'forbidden'],
    ['a commander, naming an incident they are not on', () => ic, () => ({ email: 'counsel@lawfirm.example', role: 'responder', incident: 'amber-otter' }), 404, 'not_found'],
    ['a commander, with an unknown field', () => ic, () => ({ email: 'counsel@lawfirm.example', role: 'responder', incident: codename, scope: 'all' }), 400, 'invalid_request'],
  ])('refuses %s, and creates nothing', async (_who, token, body, status, code) => {
    const before = await tokenRows();
    const res = await issue(token(), body());
    expect(res.status).toBe(status);
    expect(res.body.error.code).toBe(code);
    expect(await tokenRows()).toBe(before);
  });

  it('holds a token the commander issued to that incident only: no other incident, no declaring, no relay-wide key, no approving', async () => {
    const scoped = (await issue(ic, { email: 'counsel@lawfirm.example', role: 'responder', incident: codename })).body.token as string;
    // Counsel is on `other` too, but this token was issued by this incident's commander.
    expect((await relay.request.get(`/v1/incidents/${codename}`).set(auth(scoped))).status).toBe(200);
    const elsewhere = await relay.request.get(`/v1/incidents/${other}`).set(auth(scoped));
    expect([elsewhere.status, elsewhere.body.error.code]).toEqual([404, 'not_found']);
    expect((await relay.request.get('/v1/incidents').set(auth(scoped))).body.incidents.map((i: { codename: string }) => i.codename)).toEqual([codename]);
    const record = (await relay.ctx.store.tokens.verify(scoped))!;
    expect((await possibleIncidents(relay.ctx, callerFromToken(record))).map((i) => i.codename)).toEqual([codename]);

    const refusals = [
      await relay.request.post('/v1/incidents').set(auth(scoped)).send({}),
      await relay.request.put('/v1/keys/counsel@lawfirm.example').set(auth(scoped)).set('Content-Type', 'text/plain').send(counselKey.armoredPublic),
      await relay.request.delete('/v1/keys/counsel@lawfirm.example').set(auth(scoped)),
    ];
    for (const res of refusals) {
      expect([res.status, res.body.error.code]).toEqual([403, 'forbidden']);
      expect(res.body.error.message).toContain('issued for one incident');
    }
    expect(await relay.ctx.store.keys.getFor('counsel@lawfirm.example', null)).toBeUndefined();

    // The holder's other tokens (here an admin-issued one, and the admin's own once the admin is on the roster)
    // are not this token's to list or revoke: the commander who issued it could otherwise lock them out.
    const own = await issue(relay.admin, { email: 'counsel@lawfirm.example', role: 'responder' });
    const listed = await relay.request.get('/v1/tokens').set(auth(scoped));
    expect(listed.body.tokens.map((t: { id: string; incident: string | null }) => [t.id, t.incident])).toEqual([[record.id, codename]]);
    const revokeOther = await relay.request.delete(`/v1/tokens/${own.body.id}`).set(auth(scoped));
    expect([revokeOther.status, revokeOther.body.error.code]).toEqual([404, 'not_found']);
    expect((await relay.request.put(`/v1/incidents/${codename}/roster/admin@corp.example`).set(auth(ic)).send({ name: 'Admin', role: 'executive' })).status).toBe(201);
    const asAdminIssued = await issue(ic, { email: 'admin@corp.example', role: 'responder', incident: codename });
    const asAdmin = asAdminIssued.body.token as string;
    const adminTokens = (await relay.ctx.store.tokens.list('admin@corp.example')).map((t) => t.id).filter((id) => id !== asAdminIssued.body.id);
    expect(adminTokens).toHaveLength(1);
    for (const id of adminTokens) expect((await relay.request.delete(`/v1/tokens/${id}`).set(auth(asAdmin))).status).toBe(404);
    expect((await relay.request.get('/v1/incidents').set(auth(relay.admin))).status).toBe(200);
    expect((await relay.request.get('/v1/incidents').set(auth(own.body.token))).status).toBe(200);

    // The commander puts a "legal" member on the roster and issues its token: it may not approve.
    expect((await relay.request.put(`/v1/incidents/${codename}/roster/sock@corp.example`).set(auth(ic)).send({ name: 'Sock', role: 'legal' })).status).toBe(201);
    const sock = (await issue(ic, { email: 'sock@corp.example', role: 'responder', incident: codename })).body.token as string;
    const draft = await relay.request.post(`/v1/incidents/${codename}/announcements`).set(auth(deputy)).send({ kind: 'external', title: 'Service notice, 2026-11-28', text: 'We found and fixed a problem.', audience: { addresses: ['press@news.example'] } });
    expect([draft.status, draft.body.error]).toEqual([201, undefined]);
    expect((await relay.request.post(`/v1/incidents/${codename}/announcements/${draft.body.id}/check`).set(auth(deputy))).status).toBe(200);
    const approval = await relay.request.post(`/v1/incidents/${codename}/announcements/${draft.body.id}/approve`).set(auth(sock));
    expect([approval.status, approval.body.error.code]).toEqual([403, 'forbidden']);
    expect(approval.body.error.message).toContain('may not approve an announcement');
    expect(await relay.ctx.store.announcements.approvals(draft.body.id)).toEqual([]);
  });

  it('lists token metadata: all for an admin, their own for a responder, never a secret or its hash', async () => {
    const counsel = await issue(ic, { email: 'counsel@lawfirm.example', role: 'responder', incident: codename });
    const admins = await relay.request.get('/v1/tokens').set(auth(relay.admin));
    expect(admins.status).toBe(200);
    const tokens = admins.body.tokens as Record<string, unknown>[];
    expect(tokens.map((t) => t['email']).sort()).toEqual(['admin@corp.example', 'counsel@lawfirm.example', 'deputy@corp.example', 'ic@corp.example', 'other-ic@corp.example']);
    for (const t of tokens) expect(Object.keys(t).sort()).toEqual(['createdAt', 'createdBy', 'email', 'id', 'incident', 'label', 'lastUsedAt', 'revokedAt', 'role']);
    expect(tokens.find((t) => t['email'] === 'counsel@lawfirm.example')).toMatchObject({ id: counsel.body.id, role: 'responder', createdBy: 'ic@corp.example', revokedAt: null, lastUsedAt: null, incident: codename });
    expect(tokens.find((t) => t['email'] === 'ic@corp.example')).toMatchObject({ incident: null });
    const raw = admins.text;
    const hashes = (await relay.ctx.store.sql.all<{ hash: string }>('SELECT hash FROM tokens')).map((r) => r.hash);
    for (const secret of [counsel.body.token, ic, deputy, relay.admin, ...hashes]) expect(raw).not.toContain(secret);
    const mine = await relay.request.get('/v1/tokens').set(auth(counsel.body.token));
    expect(mine.body.tokens.map((t: { id: string }) => t.id)).toEqual([counsel.body.id]);
  });

  it('lets a responder revoke their own token but not anyone else\'s; an admin revokes any', async () => {
    const counsel = await issue(ic, { email: 'counsel@lawfirm.example', role: 'responder', incident: codename });
    const icId = (await relay.request.get('/v1/tokens').set(auth(ic))).body.tokens[0].id as string;
    const foreign = await relay.request.delete(`/v1/tokens/${icId}`).set(auth(counsel.body.token));
    expect(foreign.status).toBe(404);
    expect((await relay.request.get('/v1/incidents').set(auth(ic))).status).toBe(200);
    expect((await relay.request.delete(`/v1/tokens/${counsel.body.id}`).set(auth(counsel.body.token))).status).toBe(204);
    expect((await relay.request.get('/v1/incidents').set(auth(counsel.body.token))).status).toBe(401);
    expect((await relay.request.delete(`/v1/tokens/${icId}`).set(auth(relay.admin))).status).toBe(204);
    expect((await relay.request.get('/v1/incidents').set(auth(ic))).status).toBe(401);
    const revoked = (await relay.ctx.store.audit.query({ type: 'token.revoked', limit: 10 })).map((e) => [e.actor, e.data['id']]);
    expect(revoked).toEqual([
      ['counsel@lawfirm.example', counsel.body.id],
      ['admin@corp.example', icId],
    ]);
  });

  it('records the last use to the minute: one write a minute however many requests, none while the token is idle', async () => {
    const id = (await relay.request.get('/v1/tokens').set(auth(deputy))).body.tokens[0].id as string;
    const lastUsed = async () => (await relay.ctx.store.tokens.get(id))!.lastUsedAt;
    const first = relay.clock.now().toISOString();
    expect(await lastUsed()).toBe(first);
    relay.clock.advance(TOKEN_USE_RESOLUTION_MS - 1);
    for (let i = 0; i < 5; i++) await relay.request.get('/v1/incidents').set(auth(deputy));
    expect(await lastUsed()).toBe(first);
    relay.clock.advance(1);
    await relay.request.get('/v1/incidents').set(auth(deputy));
    expect(await lastUsed()).toBe(relay.clock.now().toISOString());
    // Another relay on the same database, the same minute: the database condition holds it back too.
    expect(await relay.ctx.store.tokens.markUsed(id, new Date(relay.clock.now().getTime() + 1000), TOKEN_USE_RESOLUTION_MS)).toBe(false);
    expect(await lastUsed()).toBe(relay.clock.now().toISOString());
    // A refused token is not a use.
    relay.clock.advance(10 * TOKEN_USE_RESOLUTION_MS);
    await relay.request.get('/v1/incidents').set(auth(deputy.slice(0, -1) + (deputy.endsWith('A') ? 'B' : 'A')));
    expect(await lastUsed()).not.toBe(relay.clock.now().toISOString());
  });
});
