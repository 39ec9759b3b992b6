/**
 * Incidents and rosters, issue 12 §5-6: the private label (one line, shown
 * to the roster and admins only), the status filter, reopening a closed
 * incident, and roster PATCH changing only the fields given. On both store
 * backends.
 */
import { afterAll, beforeAll, beforeEach, describe, expect, it } from 'vitest';
import { createGpgHome, type GeneratedKey, type GpgHome } from '../helpers/gpg.js';
import { BACKENDS, createTestRelay, type TestRelay } from '../helpers/relay.js';

const auth = (token: string) => ({ Authorization: `Bearer ${token}` });

let gpg: GpgHome;
let counsel: GeneratedKey;
let counselNew: GeneratedKey;
let weak: GeneratedKey;

beforeAll(async () => {
  gpg = await createGpgHome();
  [counsel, counselNew, weak] = await Promise.all([
    gpg.generateKey('counsel@lawfirm.example', 'Outside Counsel'),
    gpg.generateKey('counsel@lawfirm.example', 'Outside Counsel (new)'),
    gpg.generateKey('counsel@lawfirm.example', 'Weak', { algo: 'rsa1024' }),
  ]);
}, 120_000);

afterAll(async () => {
  await gpg.cleanup();
});

describe.each(BACKENDS)('incidents and rosters (%s)', (backend) => {
  let relay: TestRelay;
  let ic: string;
  let deputy: string;
  let codename: string;

  const auditTypes = async (): Promise<string[]> => (await relay.ctx.store.audit.query({ limit: 1000 })).map((e) => e.type);

  beforeEach(async () => {
    relay = await createTestRelay({}, { backend });
    ic = await relay.tokenFor('ic@corp.example');
    deputy = await relay.tokenFor('deputy@corp.example');
    const res = await relay.request.post('/v1/incidents').set(auth(ic)).send({ label: 'Ransomware at plant 3' });
    expect(res.status).toBe(201);
    codename = res.body.codename;
    expect((await relay.request.put(`/v1/incidents/${codename}/roster/deputy@corp.example`).set(auth(ic)).send({ name: 'Deputy', role: 'deputy' })).status).toBe(201);
  });

  describe('the label', () => {
    it('is shown to the roster and admins, and an outsider learns nothing (404, not in their list)', async () => {
      const outsider = await relay.tokenFor('outsider@corp.example');
      for (const token of [ic, deputy, relay.admin]) {
        expect((await relay.request.get(`/v1/incidents/${codename}`).set(auth(token))).body.label).toBe('Ransomware at plant 3');
      }
      expect((await relay.request.get('/v1/incidents').set(auth(deputy))).body.incidents[0].label).toBe('Ransomware at plant 3');
      const hidden = await relay.request.get(`/v1/incidents/${codename}`).set(auth(outsider));
      expect(hidden.status).toBe(404);
      expect(hidden.text).not.toContain('Ransomware');
      expect((await relay.request.get('/v1/incidents').set(auth(outsider))).text).not.toContain('Ransomware');
      // Removed from the roster: no longer theirs to see.
      expect((await relay.request.delete(`/v1/incidents/${codename}/roster/deputy@corp.example`).set(auth(ic))).status).toBe(204);
      expect((await relay.request.get(`/v1/incidents/${codename}`).set(auth(deputy))).status).toBe(404);
    });

    it.each([
      ['a line feed', 'Plant 3\nbreach'],
      ['a carriage return', 'Plant 3\rbreach'],
      ['a NUL', 'Plant\u00003'],
      ['a Unicode line separator', 'Plant 3\u2028breach'],
      // README: a label has no control characters, tab included.
      ['a tab', 'Plant 3\tbreach'],
      ['201 characters', 'x'.repeat(201)],
      ['nothing but spaces', '   '],
    ])('refuses %s with 400 and creates nothing', async (_what, label) => {
      const before = (await relay.ctx.store.incidents.list()).length;
      const res = await relay.request.post('/v1/incidents').set(auth(ic)).send({ label });
      expect(res.status).toBe(400);
      expect(res.body.error).toMatchObject({ code: 'invalid_request', details: { fields: [{ field: 'label' }] } });
      expect((await relay.ctx.store.incidents.list()).length).toBe(before);
      const patch = await relay.request.patch(`/v1/incidents/${codename}`).set(auth(ic)).send({ label });
      expect(patch.status).toBe(400);
      expect((await relay.ctx.store.incidents.byCodename(codename))!.label).toBe('Ransomware at plant 3');
    });

    it('is changed and cleared by the commander, audited by length only; a deputy may not', async () => {
      expect((await relay.request.patch(`/v1/incidents/${codename}`).set(auth(deputy)).send({ label: 'x' })).status).toBe(403);
      const changed = await relay.request.patch(`/v1/incidents/${codename}`).set(auth(ic)).send({ label: 'Phishing wave' });
      expect(changed.status).toBe(200);
      expect(changed.body.label).toBe('Phishing wave');
      const cleared = await relay.request.patch(`/v1/incidents/${codename}`).set(auth(ic)).send({ label: null });
      expect(cleared.body.label).toBeNull();
      const events = (await relay.ctx.store.audit.query({ typePrefix: 'incident.', limit: 100 })).map((e) => [e.type, e.data]);
      expect(events).toEqual([
        ['incident.created', { codename, commander: 'ic@corp.example', labelLength: 21 }],
        ['incident.labelled', { labelLength: 13 }],
        ['incident.labelled', { cleared: true }],
      ]);
      const log = JSON.stringify(await relay.ctx.store.audit.query({ limit: 1000 }));
      expect(log).not.toContain('Ransomware');
      expect(log).not.toContain('Phishing');
    });
  });

  describe('status filter and reopening', () => {
    it('lists only open or only closed incidents when asked, and refuses another status', async () => {
      const second = (await relay.request.post('/v1/incidents').set(auth(ic)).send({})).body.codename;
      expect((await relay.request.patch(`/v1/incidents/${second}`).set(auth(ic)).send({ status: 'closed' })).status).toBe(200);
      const codenames = async (query: string) => (await relay.request.get(`/v1/incidents${query}`).set(auth(ic))).body.incidents.map((i: { codename: string }) => i.codename);
      expect(await codenames('?status=open')).toEqual([codename]);
      expect(await codenames('?status=closed')).toEqual([second]);
      expect((await codenames('')).sort()).toEqual([codename, second].sort());
      expect((await relay.request.get('/v1/incidents?status=archived').set(auth(ic))).status).toBe(400);
      expect((await relay.request.get('/v1/incidents?status=closed').set(auth(relay.admin))).body.incidents.map((i: { codename: string }) => i.codename)).toEqual([second]);
    });

    it('reopens a closed incident for the commander or an admin, audited; a deputy may not; mail flows again', async () => {
      // Rule security-team: mail needs a security member on the roster.
      expect((await relay.request.put(`/v1/incidents/${codename}/roster/sec@corp.example`).set(auth(ic)).send({ name: 'Sec', role: 'security' })).status).toBe(201);
      expect((await relay.request.patch(`/v1/incidents/${codename}`).set(auth(ic)).send({ status: 'closed' })).status).toBe(200);
      const send = () => relay.request.post(`/v1/incidents/${codename}/emails`).set(auth(ic)).send({ to: ['deputy@corp.example'], text: 'x' });
      expect((await send()).status).toBe(409);
      const refused = await relay.request.patch(`/v1/incidents/${codename}`).set(auth(deputy)).send({ status: 'open' });
      expect(refused.status).toBe(403);
      expect((await relay.ctx.store.incidents.byCodename(codename))!.status).toBe('closed');
      const reopened = await relay.request.patch(`/v1/incidents/${codename}`).set(auth(ic)).send({ status: 'open' });
      expect(reopened.status).toBe(200);
      expect(reopened.body).toMatchObject({ status: 'open', closedAt: null, label: 'Ransomware at plant 3' });
      expect((await send()).status).toBe(202);
      // Again: a no-op, not a second event.
      expect((await relay.request.patch(`/v1/incidents/${codename}`).set(auth(ic)).send({ status: 'open' })).status).toBe(200);
      expect((await relay.request.patch(`/v1/incidents/${codename}`).set(auth(relay.admin)).send({ status: 'closed' })).status).toBe(200);
      expect((await relay.request.patch(`/v1/incidents/${codename}`).set(auth(relay.admin)).send({ status: 'open' })).status).toBe(200);
      const events = (await relay.ctx.store.audit.query({ typePrefix: 'incident.', limit: 100 })).map((e) => [e.type, e.actor]);
      expect(events).toEqual([
        ['incident.created', 'ic@corp.example'],
        ['incident.closed', 'ic@corp.example'],
        ['incident.reopened', 'ic@corp.example'],
        ['incident.closed', 'admin@corp.example'],
        ['incident.reopened', 'admin@corp.example'],
      ]);
      expect((await relay.request.patch(`/v1/incidents/${codename}`).set(auth(ic)).send({})).status).toBe(400);
    });
  });

  describe('roster PATCH', () => {
    const patch = (body: Record<string, unknown>, token = ic, email = 'sec@corp.example') => relay.request.patch(`/v1/incidents/${codename}/roster/${email}`).set(auth(token)).send(body);

    beforeEach(async () => {
      const res = await relay.request
        .put(`/v1/incidents/${codename}/roster/sec@corp.example`)
        .set(auth(ic))
        .send({ name: 'Sec Lead', role: 'security', phone: '+15555550100', slackUserId: 'U0SEC0001' });
      expect(res.status).toBe(201);
    });

    it('changes only the fields given', async () => {
      const before = (await relay.ctx.store.incidents.member((await relay.ctx.store.incidents.byCodename(codename))!.id, 'sec@corp.example'))!;
      const res = await patch({ role: 'service-owner' });
      expect(res.status).toBe(200);
      expect(res.body).toMatchObject({ email: 'sec@corp.example', name: 'Sec Lead', role: 'service-owner', phone: '+15555550100', slackUserId: 'U0SEC0001', status: 'active', addedAt: before.addedAt });
      expect((await patch({ name: 'Security' })).body).toMatchObject({ name: 'Security', role: 'service-owner', phone: '+15555550100' });
      expect((await patch({ phone: null })).body).toMatchObject({ name: 'Security', role: 'service-owner', phone: null, slackUserId: 'U0SEC0001' });
      expect((await patch({ slackUserId: null, phone: '+15555550111' })).body).toMatchObject({ phone: '+15555550111', slackUserId: null, name: 'Security' });
      expect((await auditTypes()).filter((t) => t === 'roster.updated')).toHaveLength(4);
    });

    it('refuses bad fields, an empty body, a member who is not on the roster, and a deputy touching the commander', async () => {
      for (const body of [{}, { phone: '555-0100' }, { role: 'boss' }, { name: 'a\nb' }, { name: '' }, { email: 'x@corp.example' }]) {
        const res = await patch(body);
        expect(res.status, JSON.stringify(body)).toBe(400);
      }
      expect((await patch({ role: 'deputy' }, ic, 'nobody@corp.example')).status).toBe(404);
      expect((await patch({ name: 'Boss' }, deputy, 'ic@corp.example')).status).toBe(403);
      expect((await patch({ role: 'commander' }, deputy)).status).toBe(403);
      const sec = await relay.tokenFor('sec@corp.example');
      expect((await patch({ name: 'Me' }, sec)).status).toBe(403);
      expect((await relay.ctx.store.incidents.member((await relay.ctx.store.incidents.byCodename(codename))!.id, 'sec@corp.example'))!.name).toBe('Sec Lead');
    });

    it('checks a publicKey exactly as PUT does, and changes nothing when it is refused', async () => {
      const target = 'counsel@lawfirm.example';
      expect((await relay.request.put(`/v1/incidents/${codename}/roster/${target}`).set(auth(ic)).send({ name: 'Counsel', role: 'external' })).status).toBe(201);
      const weakRes = await patch({ publicKey: weak.armoredPublic, name: 'Renamed' }, ic, target);
      expect(weakRes.status).toBe(422);
      expect(weakRes.body.error).toMatchObject({ code: 'unusable_public_key', details: { reason: 'weak_key' } });
      expect((await patch({ publicKey: 'not a key' }, ic, target)).status).toBe(400);
      const member = (await relay.request.get(`/v1/incidents/${codename}/roster`).set(auth(ic))).body.roster.find((m: { email: string }) => m.email === target);
      expect(member).toMatchObject({ name: 'Counsel', key: null });

      const filed = await patch({ publicKey: counsel.armoredPublic }, ic, target);
      expect(filed.status).toBe(200);
      expect(filed.body).toMatchObject({ name: 'Counsel', role: 'external', key: { fingerprint: counsel.fingerprint, scope: 'incident', status: 'usable' } });
      const replaced = await patch({ publicKey: counselNew.armoredPublic }, deputy, target);
      expect(replaced.body.key.fingerprint).toBe(counselNew.fingerprint);
    });

    it('withdraws the member\'s incident key with publicKey: null or DELETE …/key, audited; the relay-wide key then holds', async () => {
      const target = 'counsel@lawfirm.example';
      const owner = await relay.tokenFor(target);
      expect((await relay.request.put(`/v1/keys/${target}`).set(auth(owner)).send({ publicKey: counselNew.armoredPublic })).status).toBe(200);
      expect((await relay.request.put(`/v1/incidents/${codename}/roster/${target}`).set(auth(ic)).send({ name: 'Counsel', role: 'external', publicKey: counsel.armoredPublic })).status).toBe(201);
      const keyIn = async () => (await relay.request.get(`/v1/keys/${target}?incident=${codename}`).set(auth(ic))).body;
      expect(await keyIn()).toMatchObject({ fingerprint: counsel.fingerprint, scope: 'incident' });
      const withdrawn = await patch({ publicKey: null }, ic, target);
      expect(withdrawn.status).toBe(200);
      expect(withdrawn.body.key).toMatchObject({ fingerprint: counselNew.fingerprint, scope: 'relay' });
      expect(await keyIn()).toMatchObject({ fingerprint: counselNew.fingerprint, scope: 'relay' });
      // Again through DELETE: nothing left in the incident to withdraw.
      expect((await relay.request.delete(`/v1/incidents/${codename}/roster/${target}/key`).set(auth(ic))).status).toBe(404);
      expect((await patch({ publicKey: counsel.armoredPublic }, ic, target)).status).toBe(200);
      expect((await relay.request.delete(`/v1/incidents/${codename}/roster/${target}/key`).set(auth(deputy))).status).toBe(204);
      expect(await keyIn()).toMatchObject({ fingerprint: counselNew.fingerprint, scope: 'relay' });
      const sec = await relay.tokenFor('sec@corp.example');
      expect((await relay.request.delete(`/v1/incidents/${codename}/roster/${target}/key`).set(auth(sec))).status).toBe(403);
      const withdrawals = (await relay.ctx.store.audit.query({ type: 'key.withdrawn', limit: 10 })).map((e) => [e.actor, e.data]);
      expect(withdrawals).toEqual([
        ['ic@corp.example', { email: target, fingerprint: counsel.fingerprint, scope: 'incident' }],
        ['deputy@corp.example', { email: target, fingerprint: counsel.fingerprint, scope: 'incident' }],
      ]);
    });
  });
});
