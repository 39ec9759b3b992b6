/**
 * Revoking and withdrawing keys (issue 10 §7, issue 12 §7) with real gpg:
 * the revocation certificate gpg writes when it makes a key, or a revoked
 * copy of the stored key, is verified against the key on file and takes
 * effect at once: mail to that address is refused (422 unusable_public_key,
 * revoked) and nothing reaches the upstream, until a usable key is given.
 * A revocation of another key is refused; a key can also be withdrawn. On
 * both store backends, with the delivery worker and a real upstream.
 */
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { pino } from 'pino';
import { afterAll, afterEach, beforeAll, beforeEach, describe, expect, it } from 'vitest';
import { createSmtpChannel } from '../../src/channels/email/smtp.js';
import { DeliveryWorker } from '../../src/workers/delivery.js';
import { createGpgHome, type GeneratedKey, type GpgHome } from '../helpers/gpg.js';
import { BACKENDS, createTestRelay, type TestRelay } from '../helpers/relay.js';
import { startUpstream, type Upstream } from '../helpers/upstream.js';

const auth = (token: string) => ({ Authorization: `Bearer ${token}` });
const COUNSEL = 'counsel@lawfirm.example';

let keyring: GpgHome;
let counsel: GeneratedKey;
let counselNext: GeneratedKey;
let stranger: GeneratedKey;
let expiring: GeneratedKey;
/** gpg's own revocation certificate for counsel's key, as it wrote it (the ':' guard on the armor line included). */
let certificate: string;
/** A certificate for another key than the one on file. */
let strangerCertificate: string;
/** stranger's key exported after gpg applied its revocation. */
let strangerRevoked: string;

beforeAll(async () => {
  keyring = await createGpgHome();
  [counsel, counselNext, stranger, expiring] = await Promise.all([
    keyring.generateKey(COUNSEL, 'Outside Counsel'),
    keyring.generateKey(COUNSEL, 'Outside Counsel (new key)'),
    keyring.generateKey(COUNSEL, 'Someone Else'),
    keyring.generateKey('late@lawfirm.example', 'Late', { expire: '1d' }),
  ]);
  const rev = (fpr: string) => fs.readFileSync(path.join(keyring.dir, 'openpgp-revocs.d', `${fpr}.rev`), 'utf8');
  certificate = rev(counsel.fingerprint);
  strangerCertificate = rev(stranger.fingerprint);
  expect(certificate).toMatch(/^:-----BEGIN PGP PUBLIC KEY BLOCK-----$/m);
  strangerRevoked = await keyring.revoke(stranger.fingerprint);
}, 120_000);

afterAll(async () => {
  await keyring.cleanup();
});

describe.each(BACKENDS)('revoking and withdrawing keys (%s)', (backend) => {
  let upstream: Upstream;
  let relay: TestRelay;
  let worker: DeliveryWorker;
  let channel: ReturnType<typeof createSmtpChannel>;
  let ic: string;
  let owner: string;
  let deputy: string;
  let sec: string;
  let codename: string;

  beforeEach(async () => {
    upstream = await startUpstream();
    relay = await createTestRelay({ smtpUpstream: upstream.url }, { backend });
    channel = createSmtpChannel(upstream.url);
    worker = new DeliveryWorker(relay.ctx, { channels: { email: channel }, baseBackoffMs: 10, random: () => 0 });
    ic = await relay.tokenFor('ic@corp.example');
    owner = await relay.tokenFor(COUNSEL);
    deputy = await relay.tokenFor('deputy@corp.example');
    sec = await relay.tokenFor('sec@corp.example');
    codename = (await relay.request.post('/v1/incidents').set(auth(ic)).send({})).body.codename;
    for (const [email, role] of [
      [COUNSEL, 'external'],
      ['deputy@corp.example', 'deputy'],
      ['sec@corp.example', 'security'],
    ]) {
      expect((await relay.request.put(`/v1/incidents/${codename}/roster/${email}`).set(auth(ic)).send({ name: 'N', role })).status).toBe(201);
    }
    expect((await relay.request.put(`/v1/keys/${COUNSEL}`).set(auth(owner)).send({ publicKey: counsel.armoredPublic })).status).toBe(200);
  });

  afterEach(async () => {
    await worker.stop();
    channel.close();
    await upstream.stop();
  });

  const send = () => relay.request.post(`/v1/incidents/${codename}/emails`).set(auth(ic)).send({ to: [COUNSEL], text: 'privileged' });
  const putKey = (token: string, body: string) => relay.request.put(`/v1/keys/${COUNSEL}`).set(auth(token)).set('Content-Type', 'text/plain').send(body);
  const keyNow = async () => (await relay.request.get(`/v1/keys/${COUNSEL}?incident=${codename}`).set(auth(ic))).body;

  it("takes gpg's revocation certificate from the owner as it is, and refuses mail to that address at once, until a new key", async () => {
    expect((await send()).status).toBe(202);
    await worker.drain();
    expect(await upstream.waitFor(1)).toHaveLength(1);

    const revoked = await putKey(owner, certificate);
    expect(revoked.status).toBe(200);
    expect(revoked.body).toEqual({ email: COUNSEL, fingerprint: counsel.fingerprint, revoked: true, copies: 1 });
    expect(await keyNow()).toMatchObject({ fingerprint: counsel.fingerprint, scope: 'relay', status: 'revoked', reason: 'revoked' });

    const refused = await send();
    expect(refused.status).toBe(422);
    expect(refused.body.error).toMatchObject({ code: 'unusable_public_key', rule: 'encryption', details: { recipients: [COUNSEL], reasons: { [COUNSEL]: 'revoked' } } });
    const preview = await relay.request.post(`/v1/incidents/${codename}/emails?dryRun=true`).set(auth(ic)).send({ to: [COUNSEL], text: 'x' });
    expect(preview.body.unusableKeys).toEqual([{ email: COUNSEL, reason: 'revoked' }]);
    await worker.drain();
    expect(upstream.received).toHaveLength(1);

    // The same certificate again: nothing changes, nothing grows.
    const stored = (await relay.ctx.store.keys.get(COUNSEL))!.armored;
    expect((await putKey(owner, certificate)).body).toMatchObject({ revoked: true });
    expect((await relay.ctx.store.keys.get(COUNSEL))!.armored).toBe(stored);

    const events = await relay.ctx.store.audit.query({ type: 'key.revoked', limit: 10 });
    expect(events.map((e) => [e.actor, e.incidentId, e.data])).toEqual([[COUNSEL, null, { email: COUNSEL, fingerprint: counsel.fingerprint, scope: 'relay', via: 'certificate' }]]);

    expect((await putKey(owner, counselNext.armoredPublic)).status).toBe(200);
    expect(await keyNow()).toMatchObject({ fingerprint: counselNext.fingerprint, status: 'usable' });
    expect((await send()).status).toBe(202);
    await worker.drain();
    expect(await upstream.waitFor(2)).toHaveLength(2);
  });

  it('takes a revoked copy of the stored key through the roster, and revokes every stored copy of it, in every incident', async () => {
    // The relay-wide copy comes from RELAY_KEYS_DIR this time.
    const dir = fs.mkdtempSync(path.join(os.tmpdir(), 'relay-keys-'));
    fs.writeFileSync(path.join(dir, 'counsel.asc'), counsel.armoredPublic);
    expect((await relay.request.delete(`/v1/keys/${COUNSEL}`).set(auth(owner))).status).toBe(204);
    expect(await relay.ctx.keys.loadDirectory(dir, pino({ level: 'silent' }))).toEqual({ filed: 1, skipped: 0 });
    expect((await relay.ctx.store.keys.get(COUNSEL))!.source).toBe('keys-dir');
    const other = (await relay.request.post('/v1/incidents').set(auth(ic)).send({})).body.codename;
    expect((await relay.request.put(`/v1/incidents/${other}/roster/${COUNSEL}`).set(auth(ic)).send({ name: 'C', role: 'external', publicKey: counsel.armoredPublic })).status).toBe(201);
    const exported = await (async () => {
      // A revoked copy of counsel's key, made the way gpg users make one.
      const home = await createGpgHome();
      try {
        await home.importKey(counsel.armoredPublic);
        // gpg imports the certificate, then exits 2 for want of a trustdb in this bare home: look at what it says instead.
        const imported = await home.run(['--import'], certificate.replace(/^:-----BEGIN/m, '-----BEGIN'), true);
        expect(imported.stderr).toContain('revocation certificate imported');
        return await home.exportPublic(counsel.fingerprint);
      } finally {
        await home.cleanup();
      }
    })();
    const res = await relay.request.patch(`/v1/incidents/${codename}/roster/${COUNSEL}`).set(auth(deputy)).send({ publicKey: exported });
    expect(res.status).toBe(200);
    expect(res.body.key).toMatchObject({ fingerprint: counsel.fingerprint, status: 'revoked' });
    for (const c of [codename, other]) {
      expect((await relay.request.get(`/v1/keys/${COUNSEL}?incident=${c}`).set(auth(ic))).body, c).toMatchObject({ fingerprint: counsel.fingerprint, status: 'revoked' });
    }
    const events = await relay.ctx.store.audit.query({ type: 'key.revoked', limit: 10 });
    expect(events.map((e) => e.data['scope']).sort()).toEqual(['incident', 'relay']);
    expect(events.every((e) => e.actor === 'deputy@corp.example' && e.data['via'] === 'revoked-key')).toBe(true);
    expect((await send()).body.error).toMatchObject({ code: 'unusable_public_key' });
    // The keys directory cannot bring the unrevoked key back at the next start.
    await relay.ctx.keys.loadDirectory(dir, pino({ level: 'silent' }));
    fs.rmSync(dir, { recursive: true, force: true });
    expect(await keyNow()).toMatchObject({ status: 'revoked' });
    expect((await relay.request.get(`/v1/keys/${COUNSEL}`).set(auth(ic))).body).toMatchObject({ scope: 'relay', status: 'revoked' });
  });

  it('refuses a revocation of another key (revocation_mismatch) and a revoked key that is not on file (unusable_public_key); nothing changes', async () => {
    const before = await relay.ctx.store.sql.all('SELECT * FROM public_keys');
    const mismatch = await putKey(owner, strangerCertificate);
    expect(mismatch.status).toBe(422);
    expect(mismatch.body.error).toMatchObject({ code: 'revocation_mismatch', details: { reason: 'other_key', fingerprints: [counsel.fingerprint] } });
    expect(mismatch.body.error.message).toMatch(/Nothing changed/);
    const unknownRevoked = await putKey(owner, strangerRevoked);
    expect(unknownRevoked.status).toBe(422);
    expect(unknownRevoked.body.error).toMatchObject({ code: 'unusable_public_key', details: { reason: 'revoked' } });
    expect(await relay.ctx.store.sql.all('SELECT * FROM public_keys')).toEqual(before);
    expect(await relay.ctx.store.audit.query({ type: 'key.revoked', limit: 10 })).toEqual([]);
    expect((await send()).status).toBe(202);
  });

  it('lets the commander revoke through /v1/keys but not file a key there; deputies and others are told what they can do', async () => {
    const filed = await putKey(ic, counselNext.armoredPublic);
    expect(filed.status).toBe(403);
    expect(filed.body.error.message).toContain(`re-add the member with publicKey: PUT /v1/incidents/${codename}/roster/${COUNSEL}`);
    const byDeputy = await putKey(deputy, certificate);
    expect(byDeputy.status).toBe(403);
    expect(byDeputy.body.error.message).toContain(`PUT /v1/incidents/${codename}/roster/${COUNSEL}`);
    const bySec = await putKey(sec, certificate);
    expect(bySec.status).toBe(403);
    expect(bySec.body.error.message).toContain(`ask the commander of the incident ${COUNSEL} is on`);
    expect((await keyNow()).status).toBe('usable');
    const byCommander = await putKey(ic, certificate);
    expect(byCommander.status).toBe(200);
    expect((await keyNow()).status).toBe('revoked');
  });

  it('withdraws the relay-wide key for its owner or an admin (key.withdrawn); mail then finds no key', async () => {
    const byIc = await relay.request.delete(`/v1/keys/${COUNSEL}`).set(auth(ic));
    expect(byIc.status).toBe(403);
    expect(byIc.body.error.message).toContain(`DELETE /v1/incidents/${codename}/roster/${COUNSEL}/key`);
    expect((await relay.request.delete(`/v1/keys/${COUNSEL}`).set(auth(owner))).status).toBe(204);
    expect((await relay.request.get(`/v1/keys/${COUNSEL}`).set(auth(owner))).status).toBe(404);
    expect((await relay.request.delete(`/v1/keys/${COUNSEL}`).set(auth(relay.admin))).status).toBe(404);
    expect((await send()).body.error).toMatchObject({ code: 'missing_public_key' });
    const events = await relay.ctx.store.audit.query({ type: 'key.withdrawn', limit: 10 });
    expect(events.map((e) => [e.actor, e.data])).toEqual([[COUNSEL, { email: COUNSEL, fingerprint: counsel.fingerprint, scope: 'relay' }]]);
  });

  it('shows the key in effect with its scope and status, to those who may see the incident', async () => {
    expect((await relay.request.get(`/v1/keys/${COUNSEL}`).set(auth(sec))).body).toEqual({ email: COUNSEL, fingerprint: counsel.fingerprint, algorithm: expect.any(String), expiresAt: null, scope: 'relay', status: 'usable' });
    expect((await relay.request.put(`/v1/incidents/${codename}/roster/late@lawfirm.example`).set(auth(ic)).send({ name: 'L', role: 'legal', publicKey: expiring.armoredPublic })).status).toBe(201);
    const late = () => relay.request.get(`/v1/keys/late@lawfirm.example?incident=${codename}`).set(auth(sec));
    expect((await late()).body).toMatchObject({ fingerprint: expiring.fingerprint, scope: 'incident', status: 'usable' });
    relay.clock.advance(2 * 24 * 3600_000);
    expect((await late()).body).toMatchObject({ scope: 'incident', status: 'expired', reason: 'expired' });
    // Not relay-wide, and not to someone off that incident's roster.
    expect((await relay.request.get('/v1/keys/late@lawfirm.example').set(auth(sec))).status).toBe(404);
    const outsider = await relay.tokenFor('outsider@corp.example');
    expect((await relay.request.get(`/v1/keys/late@lawfirm.example?incident=${codename}`).set(auth(outsider))).status).toBe(404);
  });

  it('refuses the message when the key is revoked between the decision and the encryption', async () => {
    const states = await relay.ctx.keys.keyStates([COUNSEL], relay.clock.now(), null);
    expect(states.get(COUNSEL)).toEqual({ state: 'usable' });
    expect((await relay.ctx.keys.publicKeys([COUNSEL], null)).length).toBe(1);
    expect(await relay.ctx.keys.revoke(COUNSEL, certificate, COUNSEL)).toMatchObject({ revoked: true });
    await expect(relay.ctx.keys.publicKeys([COUNSEL], null)).rejects.toMatchObject({ code: 'unusable_public_key', details: { reason: 'revoked' } });
  });
});
