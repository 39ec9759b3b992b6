/**
 * The policy preview (issue 12 §1, SPEC §8): POST …/emails?dryRun=true runs
 * the same decision as a send and answers what would happen, with every
 * problem at once, without queueing or sending anything; audited as
 * email.preview and rate-limited like a send. On both store backends.
 */
import { afterAll, beforeAll, beforeEach, describe, expect, it } from 'vitest';
import { RateLimiter } from '../../src/services/rate-limit.js';
import { createGpgHome, type GeneratedKey, type GpgHome } from '../helpers/gpg.js';
import { BACKENDS, createTestRelay, type TestRelay } from '../helpers/relay.js';

const auth = (token: string) => ({ Authorization: `Bearer ${token}` });

let gpg: GpgHome;
let counsel: GeneratedKey;
let expiring: GeneratedKey;

beforeAll(async () => {
  gpg = await createGpgHome();
  [counsel, expiring] = await Promise.all([
    gpg.generateKey('counsel@lawfirm.example', 'Outside Counsel'),
    gpg.generateKey('late@lawfirm.example', 'Late Counsel', { expire: '1d' }),
  ]);
}, 120_000);

afterAll(async () => {
  await gpg.cleanup();
});

describe.each(BACKENDS)('policy preview (%s)', (backend) => {
  let relay: TestRelay;
  let ic: string;
  let sec: string;
  let codename: string;

  const count = async (table: string): Promise<number> => (await relay.ctx.store.sql.get<{ n: number }>(`SELECT COUNT(*) AS n FROM ${table}`))!.n;
  const preview = (body: Record<string, unknown>, token = ic, query = '?dryRun=true') => relay.request.post(`/v1/incidents/${codename}/emails${query}`).set(auth(token)).send(body);

  beforeEach(async () => {
    relay = await createTestRelay({}, { backend });
    ic = await relay.tokenFor('ic@corp.example');
    sec = await relay.tokenFor('sec@corp.example');
    codename = (await relay.request.post('/v1/incidents').set(auth(ic)).send({})).body.codename;
    const put = (email: string, body: Record<string, unknown>) => relay.request.put(`/v1/incidents/${codename}/roster/${email}`).set(auth(ic)).send({ name: email.split('@')[0], ...body });
    expect((await put('sec@corp.example', { role: 'security' })).status).toBe(201);
    expect((await put('counsel@lawfirm.example', { role: 'external', publicKey: counsel.armoredPublic })).status).toBe(201);
    expect((await put('carol@lawfirm.example', { role: 'legal' })).status).toBe(201);
    expect((await put('late@lawfirm.example', { role: 'legal', publicKey: expiring.armoredPublic })).status).toBe(201);
  });

  it('lists every off-roster address, missing key and unusable key at once, and queues, sends and stores nothing', async () => {
    // Two days on: late@'s key has expired.
    relay.clock.advance(2 * 24 * 3600_000);
    const before = { emails: await count('emails'), deliveries: await count('deliveries'), idempotency: await count('idempotency') };
    const res = await preview({
      to: ['counsel@lawfirm.example', 'carol@lawfirm.example'],
      cc: ['late@lawfirm.example', 'nosy@corp.example'],
      bcc: ['stranger@elsewhere.example'],
      subject: 'Draft',
      text: 'draft',
    });
    expect(res.status).toBe(200);
    expect(res.body).toEqual({
      outcome: 'refuse',
      encrypted: true,
      encryptReason: 'external-recipient',
      rules: expect.any(Array),
      recipients: { to: ['counsel@lawfirm.example', 'carol@lawfirm.example'], cc: ['late@lawfirm.example', 'nosy@corp.example'], bcc: ['stranger@elsewhere.example'] },
      externalRecipients: ['counsel@lawfirm.example', 'carol@lawfirm.example', 'late@lawfirm.example', 'stranger@elsewhere.example'],
      offRoster: ['nosy@corp.example', 'stranger@elsewhere.example'],
      missingKeys: ['carol@lawfirm.example', 'nosy@corp.example', 'stranger@elsewhere.example'],
      unusableKeys: [{ email: 'late@lawfirm.example', reason: 'expired' }],
      // The refusal a send would get: the first rule that fails, roster before encryption.
      error: { code: 'recipient_not_on_roster', message: expect.stringContaining('nosy@corp.example, stranger@elsewhere.example'), rule: 'roster', details: { recipients: ['nosy@corp.example', 'stranger@elsewhere.example'] } },
    });
    expect(Object.fromEntries((res.body.rules as { rule: string; result: string }[]).map((r) => [r.rule, r.result]))).toEqual({
      subject: 'pass',
      codename: 'pass',
      'incident-open': 'pass',
      sender: 'pass',
      roster: 'fail',
      'security-team': 'pass',
      encryption: 'fail',
      bcc: 'pass',
    });
    expect({ emails: await count('emails'), deliveries: await count('deliveries'), idempotency: await count('idempotency') }).toEqual(before);
  });

  it('decides exactly as the send does: same rules, same refusal, and an accept when the send would accept', async () => {
    const draft = { to: ['counsel@lawfirm.example', 'carol@lawfirm.example'], text: 'x' };
    const dry = await preview(draft);
    const sent = await preview(draft, ic, '');
    expect(sent.status).toBe(422);
    expect(dry.body.error).toEqual(sent.body.error);
    const incident = (await relay.ctx.store.incidents.byCodename(codename))!;
    const events = await relay.ctx.store.audit.listForIncident(incident.id);
    const decision = events.filter((e) => e.type === 'email.decision').at(-1)!;
    const previewed = events.filter((e) => e.type === 'email.preview').at(-1)!;
    expect(previewed.data['rules']).toEqual(decision.data['rules']);
    expect(dry.body.rules).toEqual(decision.data['rules']);

    const ok = await preview({ to: ['counsel@lawfirm.example'], cc: ['sec@corp.example'], text: 'x' });
    // sec@ has no key and the message is encrypted: refused. Without sec@ it is accepted.
    expect(ok.body).toMatchObject({ outcome: 'refuse', missingKeys: ['sec@corp.example'], offRoster: [] });
    const accept = await preview({ to: ['counsel@lawfirm.example'], text: 'x' });
    expect(accept.body).toEqual({
      outcome: 'accept',
      encrypted: true,
      encryptReason: 'external-recipient',
      rules: expect.any(Array),
      recipients: { to: ['counsel@lawfirm.example'], cc: [], bcc: [] },
      externalRecipients: ['counsel@lawfirm.example'],
      offRoster: [],
      missingKeys: [],
      unusableKeys: [],
    });
    const plain = await preview({ to: ['sec@corp.example'], text: 'x' });
    expect(plain.body).toMatchObject({ outcome: 'accept', encrypted: false, encryptReason: null, externalRecipients: [], missingKeys: [] });
    expect(await count('deliveries')).toBe(0);
  });

  it('is audited as email.preview with every rule, counts rather than lists, and no content', async () => {
    await preview({ to: ['carol@lawfirm.example', 'nosy@corp.example'], subject: 'SECRET-SUBJECT', text: 'SECRET-BODY' });
    const incident = (await relay.ctx.store.incidents.byCodename(codename))!;
    const event = (await relay.ctx.store.audit.listForIncident(incident.id)).filter((e) => e.type === 'email.preview').at(-1)!;
    expect(event).toMatchObject({
      actor: 'ic@corp.example',
      outcome: 'refused',
      data: {
        via: 'http',
        code: 'recipient_not_on_roster',
        encrypted: true,
        encryptReason: 'external-recipient',
        recipients: { to: ['carol@lawfirm.example', 'nosy@corp.example'], cc: [], bcc: [] },
        offRoster: 1,
        missingKeys: 2,
        unusableKeys: 0,
        bytes: Buffer.byteLength('SECRET-SUBJECTSECRET-BODY'),
      },
    });
    expect((event.data['rules'] as unknown[]).length).toBe(8);
    expect(JSON.stringify(event)).not.toMatch(/SECRET-/);
  });

  it('refuses with 413, as the send does, a message whose encoded form would store more than a request may (0.7 × RELAY_MAX_MESSAGE_BYTES of non-ASCII text)', async () => {
    relay.ctx.config.maxMessageBytes = 100_000;
    // 70,000 UTF-8 bytes: under RELAY_MAX_MESSAGE_BYTES as content, about 210,000 once quoted-printable, over the 200,000 a request may store.
    const body = { to: ['sec@corp.example'], text: 'é'.repeat(35_000) };
    const before = { emails: await count('emails'), deliveries: await count('deliveries') };
    const previewed = await preview(body);
    expect(previewed.status).toBe(413);
    expect(previewed.body.error).toMatchObject({ code: 'payload_too_large', details: { copies: 1, limit: 200_000 } });
    const sent = await preview(body, ic, '');
    expect(sent.status).toBe(413);
    expect(sent.body.error).toEqual(previewed.body.error);
    expect({ emails: await count('emails'), deliveries: await count('deliveries') }).toEqual(before);
    const audited = await relay.ctx.store.sql.all<{ type: string; outcome: string; data: string }>("SELECT type, outcome, data FROM audit_events WHERE type IN ('email.preview', 'email.decision') ORDER BY seq");
    expect(audited.map((e) => [e.type, e.outcome, (JSON.parse(e.data) as Record<string, unknown>)['code'], (JSON.parse(e.data) as Record<string, unknown>)['stage']])).toEqual([
      ['email.preview', 'refused', 'payload_too_large', 'budget'],
      ['email.decision', 'refused', 'payload_too_large', 'budget'],
    ]);
  });

  it('is rate-limited like a send, sharing its bucket', async () => {
    relay.ctx.sendLimiter = new RateLimiter({ perMinute: 1, burst: 2 });
    expect((await preview({ to: ['sec@corp.example'], text: 'x' })).status).toBe(200);
    expect((await preview({ to: ['sec@corp.example'], text: 'x' }, ic, '')).status).toBe(202);
    const limited = await preview({ to: ['sec@corp.example'], text: 'x' });
    expect(limited.status).toBe(429);
    expect(limited.body.error.code).toBe('rate_limited');
    expect(Number(limited.headers['retry-after'])).toBeGreaterThan(0);
  });

  it('answers bad input with 400, as a send does, and a dryRun other than true or false with 400 and no send', async () => {
    const bad = await preview({ to: ['not an address'], text: 'x' });
    expect(bad.status).toBe(400);
    expect(bad.body.error.code).toBe('invalid_request');
    expect((await preview({ to: ['sec@corp.example'], text: 'x', from: 'ceo@corp.example' })).body.error).toMatchObject({ code: 'invalid_request', rule: 'sender' });
    expect((await preview({ to: [], text: 'x' })).status).toBe(400);
    for (const query of ['?dryRun=yes', '?dryRun=1', '?dryRun=true&dryRun=true']) {
      const res = await preview({ to: ['sec@corp.example'], text: 'x' }, ic, query);
      expect(res.status, query).toBe(400);
      expect(res.body.error).toMatchObject({ code: 'invalid_request', details: { field: 'dryRun' } });
    }
    expect(await count('deliveries')).toBe(0);
    // dryRun=false is a send.
    expect((await preview({ to: ['sec@corp.example'], text: 'x' }, ic, '?dryRun=false')).status).toBe(202);
  });

  it('is for the roster only, like a send: a non-member gets 404, any member may preview', async () => {
    const outsider = await relay.tokenFor('outsider@corp.example');
    const res = await preview({ to: ['sec@corp.example'], text: 'x' }, outsider);
    expect(res.status).toBe(404);
    const res2 = await preview({ to: ['sec@corp.example'], text: 'x' }, sec);
    expect(res2.body.outcome).toBe('accept');
  });

  it('tells each caller what they can do about a missing key: the commander re-adds the member, the owner uploads, others ask the commander', async () => {
    const forCommander = await preview({ to: ['carol@lawfirm.example'], text: 'x' });
    expect(forCommander.body.error.message).toBe(
      `This message must be encrypted (external-recipient) but there is no public key for carol@lawfirm.example. Nothing was sent; re-add carol@lawfirm.example with publicKey: PUT /v1/incidents/${codename}/roster/carol@lawfirm.example.`,
    );
    const forOthers = await preview({ to: ['carol@lawfirm.example'], text: 'x' }, sec);
    expect(forOthers.body.error.message).toBe(
      "This message must be encrypted (external-recipient) but there is no public key for carol@lawfirm.example. Nothing was sent; ask the incident's commander (ic@corp.example) to add a key for carol@lawfirm.example.",
    );
    const carol = await relay.tokenFor('carol@lawfirm.example');
    const forOwner = await preview({ to: ['carol@lawfirm.example', 'sec@corp.example'], text: 'x' }, carol);
    expect(forOwner.body.error.message).toBe(
      "This message must be encrypted (external-recipient) but there is no public key for carol@lawfirm.example, sec@corp.example. Nothing was sent; upload a key of yours with PUT /v1/keys/carol@lawfirm.example; ask the incident's commander (ic@corp.example) to add a key for sec@corp.example.",
    );
    // The send gives the same words as the preview.
    const sent = await preview({ to: ['carol@lawfirm.example'], text: 'x' }, sec, '');
    expect(sent.body.error.message).toBe(forOthers.body.error.message);
  });
});
