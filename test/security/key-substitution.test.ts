/**
 * Keys given with a roster entry are vouched for in that incident only, and a
 * deputy cannot take over an incident. Both were found in review: a responder
 * could declare an incident of their own and swap outside counsel's key for
 * every incident; a deputy could demote the commander and close the incident.
 */
import { afterAll, beforeAll, beforeEach, describe, expect, it } from 'vitest';
import { createGpgHome, type GeneratedKey, type GpgHome } from '../helpers/gpg.js';
import { armoredPartOf, queuedMessage } from '../helpers/pgp-mime.js';
import { putMember } from '../../src/services/incidents.js';
import { callerFromToken } from '../../src/services/tokens.js';
import { createTestRelay, type TestRelay } from '../helpers/relay.js';

const auth = (token: string) => ({ Authorization: `Bearer ${token}` });

let gpg: GpgHome;
let counselReal: GeneratedKey;
let counselFake: GeneratedKey;
beforeAll(async () => {
  gpg = await createGpgHome();
  // Two keys with counsel's address: the real one, and one Mallory made.
  [counselReal, counselFake] = await Promise.all([gpg.generateKey('counsel@lawfirm.example', 'Outside Counsel'), gpg.generateKey('counsel@lawfirm.example', 'Not Counsel')]);
}, 120_000);
afterAll(async () => {
  await gpg.cleanup();
});

let relay: TestRelay;
let ic: string;
let mallory: string;
beforeEach(async () => {
  relay = await createTestRelay();
  ic = await relay.tokenFor('ic@corp.example');
  mallory = await relay.tokenFor('mallory@corp.example');
});

async function declare(token: string): Promise<string> {
  const res = await relay.request.post('/v1/incidents').set(auth(token)).send({});
  expect(res.status).toBe(201);
  return res.body.codename as string;
}

/** An incident whose mail may go: rule security-team wants a security member on its roster. */
async function declareForMail(token: string): Promise<string> {
  const codename = await declare(token);
  expect((await relay.request.put(`/v1/incidents/${codename}/roster/soc@corp.example`).set(auth(token)).send({ name: 'SOC', role: 'security' })).status).toBe(201);
  return codename;
}

async function recipientsOfQueuedCopy(emailId: string): Promise<string[]> {
  return gpg.recipientKeyIds(await armoredPartOf(await queuedMessage(relay.ctx.store, { emailId })));
}

describe('incident-scoped roster keys', () => {
  it("a key vouched for in one's own incident does not replace counsel's key in another", async () => {
    const a = await declareForMail(ic);
    const added = await relay.request.put(`/v1/incidents/${a}/roster/counsel@lawfirm.example`).set(auth(ic)).send({ name: 'Counsel', role: 'external', publicKey: counselReal.armoredPublic });
    expect(added.body.key.fingerprint).toBe(counselReal.fingerprint);

    const b = await declareForMail(mallory);
    const swapped = await relay.request.put(`/v1/incidents/${b}/roster/counsel@lawfirm.example`).set(auth(mallory)).send({ name: 'Counsel', role: 'external', publicKey: counselFake.armoredPublic });
    expect(swapped.status).toBe(201);
    expect(swapped.body.key.fingerprint).toBe(counselFake.fingerprint);

    // Incident A still shows and uses the real key.
    const roster = await relay.request.get(`/v1/incidents/${a}/roster`).set(auth(ic));
    expect(roster.body.roster.find((m: { email: string }) => m.email === 'counsel@lawfirm.example').key.fingerprint).toBe(counselReal.fingerprint);
    const sent = await relay.request.post(`/v1/incidents/${a}/emails`).set(auth(ic)).send({ to: ['counsel@lawfirm.example'], text: 'privileged' });
    expect(sent.status).toBe(202);
    expect(await recipientsOfQueuedCopy(sent.body.id)).toEqual([counselReal.encryptionSubkeyFingerprint!.slice(-16)]);
    // Nor did the relay-wide key change.
    expect(await relay.ctx.keys.get('counsel@lawfirm.example')).toBeUndefined();
  });

  it("without any key for counsel in incident A, another incident's key is not borrowed", async () => {
    const b = await declareForMail(mallory);
    await relay.request.put(`/v1/incidents/${b}/roster/counsel@lawfirm.example`).set(auth(mallory)).send({ name: 'Counsel', role: 'external', publicKey: counselFake.armoredPublic });
    const a = await declareForMail(ic);
    await relay.request.put(`/v1/incidents/${a}/roster/counsel@lawfirm.example`).set(auth(ic)).send({ name: 'Counsel', role: 'external' });
    const res = await relay.request.post(`/v1/incidents/${a}/emails`).set(auth(ic)).send({ to: ['counsel@lawfirm.example'], text: 'privileged' });
    expect(res.status).toBe(422);
    expect(res.body.error).toMatchObject({ code: 'missing_public_key', details: { recipients: ['counsel@lawfirm.example'] } });
  });

  it("falls back to the owner's relay-wide key, and an incident key takes precedence in its incident", async () => {
    const counsel = await relay.tokenFor('counsel@lawfirm.example');
    expect((await relay.request.put('/v1/keys/counsel@lawfirm.example').set(auth(counsel)).send({ publicKey: counselReal.armoredPublic })).status).toBe(200);
    const a = await declareForMail(ic);
    await relay.request.put(`/v1/incidents/${a}/roster/counsel@lawfirm.example`).set(auth(ic)).send({ name: 'Counsel', role: 'external' });
    const viaOwner = await relay.request.post(`/v1/incidents/${a}/emails`).set(auth(ic)).send({ to: ['counsel@lawfirm.example'], text: 'x' });
    expect(await recipientsOfQueuedCopy(viaOwner.body.id)).toEqual([counselReal.encryptionSubkeyFingerprint!.slice(-16)]);

    const b = await declareForMail(mallory);
    await relay.request.put(`/v1/incidents/${b}/roster/counsel@lawfirm.example`).set(auth(mallory)).send({ name: 'Counsel', role: 'external', publicKey: counselFake.armoredPublic });
    const inB = await relay.request.post(`/v1/incidents/${b}/emails`).set(auth(mallory)).send({ to: ['counsel@lawfirm.example'], text: 'x' });
    expect(await recipientsOfQueuedCopy(inB.body.id)).toEqual([counselFake.encryptionSubkeyFingerprint!.slice(-16)]);
    const againA = await relay.request.post(`/v1/incidents/${a}/emails`).set(auth(ic)).send({ to: ['counsel@lawfirm.example'], text: 'y' });
    expect(await recipientsOfQueuedCopy(againA.body.id)).toEqual([counselReal.encryptionSubkeyFingerprint!.slice(-16)]);
  });
});

describe('the commander role', () => {
  it('a deputy cannot demote, remove or replace the commander; the commander can hand over', async () => {
    const codename = await declare(ic);
    await relay.request.put(`/v1/incidents/${codename}/roster/dep@corp.example`).set(auth(ic)).send({ name: 'Dep', role: 'deputy' });
    const dep = await relay.tokenFor('dep@corp.example');
    for (const [method, path, body] of [
      ['put', `/v1/incidents/${codename}/roster/ic@corp.example`, { name: 'IC', role: 'scribe' }],
      ['put', `/v1/incidents/${codename}/roster/dep@corp.example`, { name: 'Dep', role: 'commander' }],
      ['put', `/v1/incidents/${codename}/roster/new@corp.example`, { name: 'New', role: 'commander' }],
      ['delete', `/v1/incidents/${codename}/roster/ic@corp.example`, {}],
    ] as const) {
      const res = await relay.request[method](path).set(auth(dep)).send(body);
      expect(res.status, `${method} ${path}`).toBe(403);
      expect(res.body.error.code).toBe('forbidden');
    }
    const roster = await relay.request.get(`/v1/incidents/${codename}/roster`).set(auth(ic));
    expect(roster.body.roster.map((m: { email: string; role: string }) => `${m.email}:${m.role}`)).toEqual(['dep@corp.example:deputy', 'ic@corp.example:commander']);
    // A deputy still manages everyone else.
    expect((await relay.request.put(`/v1/incidents/${codename}/roster/sec@corp.example`).set(auth(dep)).send({ name: 'Sec', role: 'security' })).status).toBe(201);
    // The commander may hand over.
    expect((await relay.request.put(`/v1/incidents/${codename}/roster/dep@corp.example`).set(auth(ic)).send({ name: 'Dep', role: 'commander' })).status).toBe(200);
  });

  it('a deputy demoted before their change runs is refused, and nothing changes', async () => {
    const codename = await declare(ic);
    await relay.request.put(`/v1/incidents/${codename}/roster/dep@corp.example`).set(auth(ic)).send({ name: 'Dep', role: 'deputy' });
    const incident = (await relay.ctx.store.incidents.byCodename(codename))!;
    const dep = (await relay.ctx.store.tokens.verify(await relay.tokenFor('dep@corp.example')))!;
    // The route let the deputy in; the commander demotes them before putMember runs.
    await relay.ctx.store.incidents.upsertMember(incident.id, { email: 'dep@corp.example', name: 'Dep', role: 'scribe' }, relay.clock.now());
    await expect(putMember(relay.ctx, callerFromToken(dep), incident, { email: 'x@corp.example', name: 'X', role: 'security' })).rejects.toMatchObject({ code: 'forbidden' });
    expect(await relay.ctx.store.incidents.member(incident.id, 'x@corp.example')).toBeUndefined();
  });

  it('a deputy demoted while their key upload was being checked is refused at commit', async () => {
    const codename = await declare(ic);
    await relay.request.put(`/v1/incidents/${codename}/roster/dep@corp.example`).set(auth(ic)).send({ name: 'Dep', role: 'deputy' });
    const incident = (await relay.ctx.store.incidents.byCodename(codename))!;
    const dep = (await relay.ctx.store.tokens.verify(await relay.tokenFor('dep@corp.example')))!;
    // putMember checks the deputy, then validates the key (slow: it may take
    // seconds), then commits. The commander demotes the deputy in between:
    // only the check inside the committing transaction can still refuse.
    const validate = relay.ctx.keys.validate.bind(relay.ctx.keys);
    let demotedMidway = false;
    relay.ctx.keys.validate = async (email, armored) => {
      const parsed = await validate(email, armored);
      const demoted = await relay.request.put(`/v1/incidents/${codename}/roster/dep@corp.example`).set(auth(ic)).send({ name: 'Dep', role: 'scribe' });
      expect(demoted.status).toBe(200);
      demotedMidway = true;
      return parsed;
    };
    await expect(
      putMember(relay.ctx, callerFromToken(dep), incident, {
        email: 'counsel@lawfirm.example',
        name: 'Counsel',
        role: 'external',
        publicKey: counselFake.armoredPublic,
      }),
    ).rejects.toMatchObject({ code: 'forbidden' });
    // The first check let the deputy through: the refusal came at commit.
    expect(demotedMidway).toBe(true);
    // Nothing of the change landed: no member, no key, no audit event for them.
    expect(await relay.ctx.store.incidents.member(incident.id, 'counsel@lawfirm.example')).toBeUndefined();
    expect(await relay.ctx.keys.get('counsel@lawfirm.example', incident.id)).toBeUndefined();
    const events = await relay.ctx.store.audit.listForIncident(incident.id);
    expect(events.filter((e) => JSON.stringify(e.data).includes('counsel@lawfirm.example'))).toEqual([]);
    expect((await relay.ctx.store.incidents.member(incident.id, 'dep@corp.example'))?.role).toBe('scribe');
  });
});
