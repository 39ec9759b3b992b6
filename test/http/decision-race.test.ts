/**
 * Encryption takes time; a roster change or a close that lands meanwhile must
 * still stop the message. The encryptor here makes the change mid-compose.
 */
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { inThreadEncryptor, type Encryptor } from '../../src/pgp/pgp-mime.js';
import { createGpgHome, type GeneratedKey, type GpgHome } from '../helpers/gpg.js';
import { createTestRelay, type TestRelay } from '../helpers/relay.js';

const auth = (token: string) => ({ Authorization: `Bearer ${token}` });

let gpg: GpgHome;
let counsel: GeneratedKey;
beforeAll(async () => {
  gpg = await createGpgHome();
  counsel = await gpg.generateKey('counsel@lawfirm.example', 'Counsel');
}, 60_000);
afterAll(async () => {
  await gpg.cleanup();
});

async function setUp(duringCompose: (relay: TestRelay, codename: string) => Promise<void> | void): Promise<{ relay: TestRelay; codename: string; ic: string }> {
  const relay = await createTestRelay();
  const ic = await relay.tokenFor('ic@corp.example');
  const { body } = await relay.request.post('/v1/incidents').set(auth(ic)).send({});
  await relay.request.put(`/v1/incidents/${body.codename}/roster/counsel@lawfirm.example`).set(auth(ic)).send({ name: 'Counsel', role: 'external', publicKey: counsel.armoredPublic });
  // Rule security-team: mail goes only once the incident has a security member.
  await relay.request.put(`/v1/incidents/${body.codename}/roster/sec@corp.example`).set(auth(ic)).send({ name: 'Security', role: 'security' });
  const inner = inThreadEncryptor(relay.ctx.relayKey.privateKey);
  const racing: Encryptor = {
    signerFingerprint: inner.signerFingerprint,
    seal: async (payload, copies, date) => {
      await duringCompose(relay, body.codename);
      return inner.seal(payload, copies, date);
    },
  };
  relay.ctx.encryptor = racing;
  return { relay, codename: body.codename, ic };
}

const queued = async (relay: TestRelay): Promise<number> => (await relay.ctx.store.sql.get<{ n: number }>('SELECT COUNT(*) AS n FROM deliveries'))!.n;
const lastEvent = async (relay: TestRelay, codename: string) => (await relay.ctx.store.audit.listForIncident((await relay.ctx.store.incidents.byCodename(codename))!.id)).at(-1)!;

describe('changes that land while a message is being encrypted', () => {
  it('a recipient removed mid-compose gets nothing, and the refusal is audited', async () => {
    const { relay, codename, ic } = await setUp(async (r, c) => {
      const incident = (await r.ctx.store.incidents.byCodename(c))!;
      expect(await r.ctx.store.incidents.removeMember(incident.id, 'counsel@lawfirm.example', r.ctx.now())).toBe(true);
    });
    const res = await relay.request.post(`/v1/incidents/${codename}/emails`).set(auth(ic)).send({ to: ['counsel@lawfirm.example'], text: 'x' });
    expect(res.status).toBe(403);
    expect(res.body.error).toMatchObject({ code: 'recipient_not_on_roster', rule: 'roster', details: { recipients: ['counsel@lawfirm.example'] } });
    expect(await queued(relay)).toBe(0);
    const last = await lastEvent(relay, codename);
    expect(last).toMatchObject({ type: 'email.decision', outcome: 'refused', data: { code: 'recipient_not_on_roster', changedDuringCompose: true } });
  });

  it('an incident closed mid-compose accepts nothing', async () => {
    const { relay, codename, ic } = await setUp(async (r, c) => {
      expect(await r.ctx.store.incidents.close((await r.ctx.store.incidents.byCodename(c))!.id, r.ctx.now())).toBe(true);
    });
    const res = await relay.request.post(`/v1/incidents/${codename}/emails`).set(auth(ic)).send({ to: ['counsel@lawfirm.example'], text: 'x' });
    expect(res.status).toBe(409);
    expect(res.body.error.code).toBe('incident_closed');
    expect(await queued(relay)).toBe(0);
  });

  it('an encryption failure refuses the message, queues nothing, and is audited as failed at compose', async () => {
    const { relay, codename, ic } = await setUp(() => undefined);
    relay.ctx.encryptor = { signerFingerprint: relay.ctx.relayKey.fingerprint, seal: () => Promise.reject(new Error('worker died')) };
    const res = await relay.request.post(`/v1/incidents/${codename}/emails`).set(auth(ic)).send({ to: ['counsel@lawfirm.example'], text: 'x' });
    expect(res.status).toBe(500);
    expect(res.body).toEqual({ error: { code: 'internal', message: expect.any(String) } });
    expect(JSON.stringify(res.body)).not.toContain('worker died');
    expect(await queued(relay)).toBe(0);
    const last = await lastEvent(relay, codename);
    expect(last).toMatchObject({ type: 'email.decision', outcome: 'failed', data: { code: 'internal', stage: 'compose' } });
  });
});
