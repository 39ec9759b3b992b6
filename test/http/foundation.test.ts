import { afterAll, beforeAll, beforeEach, describe, expect, it } from 'vitest';
import { createGpgHome, type GeneratedKey, type GpgHome } from '../helpers/gpg.js';
import { createTestRelay, type TestRelay } from '../helpers/relay.js';

const auth = (token: string) => ({ Authorization: `Bearer ${token}` });

let gpg: GpgHome;
let counselKey: GeneratedKey;
let icKey: GeneratedKey;
let expiringKey: GeneratedKey;
let weakKey: GeneratedKey;

beforeAll(async () => {
  gpg = await createGpgHome();
  [counselKey, icKey, expiringKey, weakKey] = await Promise.all([
    gpg.generateKey('counsel@lawfirm.example', 'Outside Counsel'),
    gpg.generateKey('ic@corp.example', 'Incident Commander'),
    gpg.generateKey('short@lawfirm.example', 'Short Lived', { expire: '1d' }),
    gpg.generateKey('weak@lawfirm.example', 'Weak Key', { algo: 'rsa1024' }),
  ]);
}, 120_000);

afterAll(async () => {
  await gpg.cleanup();
});

let relay: TestRelay;
let ic: string;
beforeEach(async () => {
  relay = await createTestRelay();
  ic = await relay.tokenFor('ic@corp.example');
});

/** Counts rows, to show a refusal changed nothing. */
async function snapshot(r: TestRelay): Promise<Record<string, number>> {
  const count = async (table: string) => (await r.ctx.store.sql.get<{ n: number }>(`SELECT COUNT(*) AS n FROM ${table}`))!.n;
  return { incidents: await count('incidents'), roster: await count('roster'), tokens: await count('tokens'), keys: await count('public_keys') };
}

async function declare(token = ic, body: Record<string, unknown> = {}): Promise<string> {
  const res = await relay.request.post('/v1/incidents').set(auth(token)).send(body);
  expect(res.status).toBe(201);
  return res.body.codename as string;
}

describe('health and errors', () => {
  it('answers /healthz without a token', async () => {
    const res = await relay.request.get('/healthz');
    expect(res.status).toBe(200);
    expect(res.body).toEqual({ status: 'ok', store: relay.ctx.store.dialect });
  });

  it('refuses /v1 without a token, with an unknown token and with a revoked one', async () => {
    expect((await relay.request.get('/v1/incidents')).body.error.code).toBe('unauthenticated');
    const unknown = await relay.request.get('/v1/incidents').set(auth('ir_0123456789abcdef_' + 'A'.repeat(43)));
    expect(unknown.status).toBe(401);
    expect(unknown.body.error.code).toBe('unauthenticated');

    const created = await relay.request.post('/v1/tokens').set(auth(relay.admin)).send({ email: 'sec@corp.example', role: 'responder', label: 'laptop' });
    expect(created.status).toBe(201);
    expect(created.body.token).toMatch(/^ir_[a-z0-9]{16}_[A-Za-z0-9_-]{43}$/);
    expect((await relay.request.get('/v1/incidents').set(auth(created.body.token))).status).toBe(200);
    expect((await relay.request.delete(`/v1/tokens/${created.body.id}`).set(auth(relay.admin))).status).toBe(204);
    const revoked = await relay.request.get('/v1/incidents').set(auth(created.body.token));
    expect(revoked.status).toBe(401);
    expect(revoked.body.error.code).toBe('unauthenticated');
  });

  it('stores tokens hashed, never in clear', async () => {
    const created = await relay.request.post('/v1/tokens').set(auth(relay.admin)).send({ email: 'sec@corp.example', role: 'responder' });
    const row = (await relay.ctx.store.sql.get<{ hash: string }>('SELECT hash FROM tokens WHERE id = ?', [created.body.id]))!;
    expect(row.hash).toMatch(/^[0-9a-f]{64}$/);
    const dump = JSON.stringify(await relay.ctx.store.sql.all('SELECT * FROM tokens')) + JSON.stringify(await relay.ctx.store.sql.all('SELECT * FROM audit_events'));
    expect(dump).not.toContain(created.body.token);
  });

  it('only admins issue tokens', async () => {
    const res = await relay.request.post('/v1/tokens').set(auth(ic)).send({ email: 'x@corp.example', role: 'admin' });
    expect(res.status).toBe(403);
    expect(res.body.error.code).toBe('forbidden');
  });

  it.each([
    ['malformed JSON', '{"email": ', 'application/json', 400, 'invalid_request'],
    ['unknown field', JSON.stringify({ email: 'a@corp.example', role: 'responder', extra: 1 }), 'application/json', 400, 'invalid_request'],
    ['bad email', JSON.stringify({ email: 'not-an-address', role: 'responder' }), 'application/json', 400, 'invalid_request'],
    ['CR/LF in label', JSON.stringify({ email: 'a@corp.example', role: 'responder', label: 'x\r\nBcc: evil@x.example' }), 'application/json', 400, 'invalid_request'],
    ['unknown role', JSON.stringify({ email: 'a@corp.example', role: 'root' }), 'application/json', 400, 'invalid_request'],
  ])('refuses %s with the JSON error body and changes nothing', async (_name, body, type, status, code) => {
    const before = await snapshot(relay);
    const res = await relay.request.post('/v1/tokens').set(auth(relay.admin)).set('Content-Type', type).send(body);
    expect(res.status).toBe(status);
    expect(res.body.error.code).toBe(code);
    expect(typeof res.body.error.message).toBe('string');
    expect(await snapshot(relay)).toEqual(before);
  });

  it('answers unknown routes and wrong methods with the JSON error body', async () => {
    const unknown = await relay.request.get('/v1/nothing-here').set(auth(ic));
    expect(unknown.status).toBe(404);
    expect(unknown.body.error.code).toBe('not_found');
    const wrong = await relay.request.put('/v1/incidents').set(auth(ic)).send({});
    expect(wrong.status).toBe(405);
    expect(wrong.body.error.code).toBe('method_not_allowed');
  });

  it('refuses an oversize body with payload_too_large', async () => {
    const small = await createTestRelay({ maxMessageBytes: 2048 });
    const res = await small.request
      .post('/v1/tokens')
      .set(auth(small.admin))
      .send({ email: 'a@corp.example', role: 'responder', label: 'x'.repeat(200_000) });
    expect(res.status).toBe(413);
    expect(res.body.error.code).toBe('payload_too_large');
  });

  it('serves metrics to admins only', async () => {
    expect((await relay.request.get('/metrics').set(auth(ic))).status).toBe(403);
    const res = await relay.request.get('/metrics').set(auth(relay.admin));
    expect(res.status).toBe(200);
    expect(res.text).toContain('relay_http_requests_total');
    // Counted from the store at scrape time (no delivery worker runs here).
    expect(res.text).toMatch(/relay_queue_depth\{channel="email"\} \d+/);
  });
});

describe('incidents', () => {
  it('declares an incident with a generated innocuous codename and the caller as commander', async () => {
    const res = await relay.request.post('/v1/incidents').set(auth(ic)).send({});
    expect(res.status).toBe(201);
    expect(res.body.codename).toMatch(/^[a-z]+-[a-z]+(-\d+)?$/);
    expect(res.body.status).toBe('open');
    expect(res.body.commander).toBe('ic@corp.example');
    const roster = await relay.request.get(`/v1/incidents/${res.body.codename}/roster`).set(auth(ic));
    expect(roster.body.roster.map((m: { email: string; role: string }) => [m.email, m.role])).toEqual([['ic@corp.example', 'commander']]);
  });

  it('takes a chosen codename once, and refuses malformed ones', async () => {
    expect(await declare(ic, { codename: 'sapphire-unicorn' })).toBe('sapphire-unicorn');
    for (const codename of ['sapphire-unicorn', 'Sapphire', 'ab', 'has space', 'x'.repeat(81), 'db-breach\n']) {
      const before = await snapshot(relay);
      const res = await relay.request.post('/v1/incidents').set(auth(ic)).send({ codename });
      expect(res.status, codename).toBe(400);
      expect(res.body.error.code).toBe('invalid_request');
      expect(await snapshot(relay)).toEqual(before);
    }
  });

  it('requires an admin to name the commander', async () => {
    const res = await relay.request.post('/v1/incidents').set(auth(relay.admin)).send({});
    expect(res.status).toBe(400);
    expect(res.body.error.code).toBe('invalid_request');
    const named = await relay.request.post('/v1/incidents').set(auth(relay.admin)).send({ commander: 'ic@corp.example' });
    expect(named.status).toBe(201);
    expect(named.body.commander).toBe('ic@corp.example');
  });

  it('hides incidents from non-members with 404, shows them to admins', async () => {
    const codename = await declare();
    const outsider = await relay.tokenFor('nosy@corp.example');
    for (const [method, path] of [
      ['get', `/v1/incidents/${codename}`],
      ['get', `/v1/incidents/${codename}/roster`],
      ['get', `/v1/incidents/${codename}/audit`],
      ['patch', `/v1/incidents/${codename}`],
      ['put', `/v1/incidents/${codename}/roster/nosy@corp.example`],
    ] as const) {
      const res = await relay.request[method](path).set(auth(outsider)).send({ status: 'closed', name: 'N', role: 'security' });
      expect(res.status, `${method} ${path}`).toBe(404);
      expect(res.body.error.code).toBe('not_found');
    }
    const missing = await relay.request.get('/v1/incidents/no-such-thing').set(auth(outsider));
    expect(missing.body).toEqual({ error: { code: 'not_found', message: expect.any(String) } });
    expect((await relay.request.get('/v1/incidents').set(auth(outsider))).body.incidents).toEqual([]);
    expect((await relay.request.get(`/v1/incidents/${codename}`).set(auth(relay.admin))).status).toBe(200);
    expect((await relay.request.get('/v1/incidents').set(auth(relay.admin))).body.incidents).toHaveLength(1);
  });

  it('lets the commander close, not other roster roles', async () => {
    const codename = await declare();
    await relay.request.put(`/v1/incidents/${codename}/roster/sec@corp.example`).set(auth(ic)).send({ name: 'Sec', role: 'security' });
    const sec = await relay.tokenFor('sec@corp.example');
    const refused = await relay.request.patch(`/v1/incidents/${codename}`).set(auth(sec)).send({ status: 'closed' });
    expect(refused.status).toBe(403);
    expect(refused.body.error.code).toBe('forbidden');
    const bad = await relay.request.patch(`/v1/incidents/${codename}`).set(auth(ic)).send({ status: 'archived' });
    expect(bad.status).toBe(400);
    const closed = await relay.request.patch(`/v1/incidents/${codename}`).set(auth(ic)).send({ status: 'closed' });
    expect(closed.status).toBe(200);
    expect(closed.body.status).toBe('closed');
    expect(closed.body.closedAt).toBe(relay.clock.now().toISOString());
  });
});

describe('roster', () => {
  it('creates with 201, updates with 200, removes with history kept', async () => {
    const codename = await declare();
    const path = `/v1/incidents/${codename}/roster/Sec@Corp.example`;
    const created = await relay.request.put(path).set(auth(ic)).send({ name: 'Sec One', role: 'security', phone: '+15555550101' });
    expect(created.status).toBe(201);
    expect(created.body).toMatchObject({ email: 'sec@corp.example', name: 'Sec One', role: 'security', phone: '+15555550101', status: 'active', key: null });
    const updated = await relay.request.put(path).set(auth(ic)).send({ name: 'Sec One', role: 'deputy' });
    expect(updated.status).toBe(200);
    expect(updated.body.role).toBe('deputy');
    expect((await relay.request.delete(path).set(auth(ic))).status).toBe(204);
    const roster = await relay.request.get(`/v1/incidents/${codename}/roster`).set(auth(ic));
    expect(roster.body.roster.map((m: { email: string }) => m.email)).toEqual(['ic@corp.example']);
    const row = await relay.ctx.store.sql.get('SELECT status, removed_at FROM roster WHERE email = ?', ['sec@corp.example']);
    expect(row).toEqual({ status: 'removed', removed_at: relay.clock.now().toISOString() });
    const again = await relay.request.delete(path).set(auth(ic));
    expect(again.status).toBe(404);
  });

  it('lets commander and deputy manage, refuses other roles with 403', async () => {
    const codename = await declare();
    await relay.request.put(`/v1/incidents/${codename}/roster/dep@corp.example`).set(auth(ic)).send({ name: 'Dep', role: 'deputy' });
    await relay.request.put(`/v1/incidents/${codename}/roster/exec@corp.example`).set(auth(ic)).send({ name: 'Exec', role: 'executive' });
    const dep = await relay.tokenFor('dep@corp.example');
    const exec = await relay.tokenFor('exec@corp.example');
    expect((await relay.request.put(`/v1/incidents/${codename}/roster/sec@corp.example`).set(auth(dep)).send({ name: 'Sec', role: 'security' })).status).toBe(201);
    const refused = await relay.request.put(`/v1/incidents/${codename}/roster/x@corp.example`).set(auth(exec)).send({ name: 'X', role: 'security' });
    expect(refused.status).toBe(403);
    expect(refused.body.error.code).toBe('forbidden');
    expect((await relay.request.get(`/v1/incidents/${codename}/audit`).set(auth(exec))).status).toBe(403);
  });

  it.each([
    ['unknown role', { name: 'X', role: 'janitor' }],
    ['CR/LF in name', { name: 'X\r\nBcc: a@b.example', role: 'security' }],
    ['bad phone', { name: 'X', role: 'security', phone: '555-0101' }],
    ['unknown field', { name: 'X', role: 'security', pager: 1 }],
    ['empty name', { name: ' ', role: 'security' }],
  ])('refuses %s and changes nothing', async (_n, body) => {
    const codename = await declare();
    const before = await snapshot(relay);
    const res = await relay.request.put(`/v1/incidents/${codename}/roster/x@corp.example`).set(auth(ic)).send(body);
    expect(res.status).toBe(400);
    expect(res.body.error.code).toBe('invalid_request');
    expect(await snapshot(relay)).toEqual(before);
  });

  it('refuses a bad address in the path', async () => {
    const codename = await declare();
    const res = await relay.request.put(`/v1/incidents/${codename}/roster/not-an-address`).set(auth(ic)).send({ name: 'X', role: 'security' });
    expect(res.status).toBe(400);
    expect(res.body.error.code).toBe('invalid_request');
  });

  it('files outside counsel with a gpg key, and refuses a member whose key is unusable without changing anything', async () => {
    const codename = await declare();
    const added = await relay.request
      .put(`/v1/incidents/${codename}/roster/counsel@lawfirm.example`)
      .set(auth(ic))
      .send({ name: 'Outside Counsel', role: 'external', publicKey: counselKey.armoredPublic });
    expect(added.status).toBe(201);
    expect(added.body.key.fingerprint).toBe(counselKey.fingerprint);

    const before = await snapshot(relay);
    const wrong = await relay.request
      .put(`/v1/incidents/${codename}/roster/other@lawfirm.example`)
      .set(auth(ic))
      .send({ name: 'Other', role: 'external', publicKey: counselKey.armoredPublic });
    expect(wrong.status).toBe(422);
    expect(wrong.body.error).toMatchObject({ code: 'unusable_public_key', details: { recipients: ['other@lawfirm.example'], reason: 'user_id_mismatch' } });
    expect(await snapshot(relay)).toEqual(before);
  });
});

describe('keys', () => {
  it('accepts a key made by gpg --quick-gen-key and shows its metadata', async () => {
    const counsel = await relay.tokenFor('counsel@lawfirm.example');
    const res = await relay.request.put('/v1/keys/counsel@lawfirm.example').set(auth(counsel)).set('Content-Type', 'text/plain').send(counselKey.armoredPublic);
    expect(res.status).toBe(200);
    expect(res.body).toEqual({ email: 'counsel@lawfirm.example', fingerprint: counselKey.fingerprint, algorithm: expect.any(String), expiresAt: null });
    const got = await relay.request.get('/v1/keys/counsel@lawfirm.example').set(auth(ic));
    expect(got.body.fingerprint).toBe(counselKey.fingerprint);
    expect(JSON.stringify(got.body)).not.toContain('BEGIN PGP');
  });

  it('takes JSON {publicKey} too, and only from the owner or an admin', async () => {
    const refused = await relay.request.put('/v1/keys/counsel@lawfirm.example').set(auth(ic)).send({ publicKey: counselKey.armoredPublic });
    expect(refused.status).toBe(403);
    const res = await relay.request.put('/v1/keys/ic@corp.example').set(auth(ic)).send({ publicKey: icKey.armoredPublic });
    expect(res.status).toBe(200);
    expect(res.body.fingerprint).toBe(icKey.fingerprint);
  });

  it.each([
    ['garbage', () => 'hello', 'counsel@lawfirm.example', 400, 'invalid_request', undefined],
    ['wrong user ID', () => counselKey.armoredPublic, 'someone@lawfirm.example', 422, 'unusable_public_key', 'user_id_mismatch'],
    ['weak RSA', () => weakKey.armoredPublic, 'weak@lawfirm.example', 422, 'unusable_public_key', 'weak_key'],
  ])('refuses a %s key and stores nothing', async (_n, key, email, status, code, reason) => {
    const before = await snapshot(relay);
    const res = await relay.request.put(`/v1/keys/${email}`).set(auth(relay.admin)).set('Content-Type', 'text/plain').send(key());
    expect(res.status).toBe(status);
    expect(res.body.error.code).toBe(code);
    if (reason) expect(res.body.error.details.reason).toBe(reason);
    expect(await snapshot(relay)).toEqual(before);
  });

  it('refuses a key that has expired by the time it is uploaded', async () => {
    relay.clock.advance(3 * 86_400_000);
    const res = await relay.request.put('/v1/keys/short@lawfirm.example').set(auth(relay.admin)).set('Content-Type', 'text/plain').send(expiringKey.armoredPublic);
    expect(res.status).toBe(422);
    expect(res.body.error).toMatchObject({ code: 'unusable_public_key', details: { reason: 'expired' } });
  });

  it('serves the relay public key, which gpg imports', async () => {
    const res = await relay.request.get('/v1/relay-key').set(auth(ic));
    expect(res.status).toBe(200);
    expect(res.headers['content-type']).toMatch(/^text\/plain/);
    expect(res.text).toContain('-----BEGIN PGP PUBLIC KEY BLOCK-----');
    expect(res.text).not.toContain('PRIVATE');
    await gpg.importKey(res.text);
    const listed = await gpg.run(['--with-colons', '--list-keys', relay.ctx.relayKey.fingerprint]);
    expect(listed.stdout.toString()).toContain(relay.ctx.relayKey.fingerprint);
  });
});

describe('audit', () => {
  it('records changes without secrets, and verification catches an edit behind the store', async () => {
    const codename = await declare();
    await relay.request.put(`/v1/incidents/${codename}/roster/counsel@lawfirm.example`).set(auth(ic)).send({ name: 'Counsel', role: 'external', publicKey: counselKey.armoredPublic });
    const events = await relay.request.get(`/v1/incidents/${codename}/audit`).set(auth(ic));
    expect(events.body.events.map((e: { type: string }) => e.type)).toEqual(['incident.created', 'roster.added', 'key.stored']);
    expect(events.body.events[1]).toMatchObject({ actor: 'ic@corp.example', outcome: 'ok', data: { email: 'counsel@lawfirm.example', role: 'external' } });
    expect(JSON.stringify(await relay.ctx.store.sql.all('SELECT * FROM audit_events'))).not.toContain('BEGIN PGP');

    const good = await relay.request.get('/v1/audit/verify').set(auth(relay.admin));
    expect(good.body).toEqual({ ok: true, events: 3, head: expect.stringMatching(/^[0-9a-f]{64}$/), from: 0, checkpoints: { signed: 0, verified: 0 } });
    expect((await relay.request.get('/v1/audit/verify').set(auth(ic))).status).toBe(403);

    // Behind the store, as an attacker with the database would.
    const { sql, dialect } = relay.ctx.store;
    await expect(sql.run("UPDATE audit_events SET actor = 'mallory@corp.example' WHERE seq = 2")).rejects.toThrow(/append-only/);
    await expect(sql.run('DELETE FROM audit_events WHERE seq = 2')).rejects.toThrow(/append-only/);
    await sql.exec(dialect === 'postgres' ? 'DROP TRIGGER audit_events_no_update ON audit_events' : 'DROP TRIGGER audit_events_no_update');
    expect(await sql.run("UPDATE audit_events SET actor = 'mallory@corp.example' WHERE seq = 2")).toBe(1);
    const bad = await relay.request.get('/v1/audit/verify').set(auth(relay.admin));
    expect(bad.body).toMatchObject({ ok: false, events: 3, brokenAt: 2 });
  });
});
