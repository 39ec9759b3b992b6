/**
 * SMS nudges end to end: the real app and DeliveryWorker, the real twilio SDK
 * (through our RequestClient subclass) against a local server that answers
 * like Twilio's Messages API, and a file-backed store we can grep.
 */
import { createHash } from 'node:crypto';
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import twilio from 'twilio';
import { afterEach, beforeEach, describe, expect, it } from 'vitest';
import { createSmsOutboxChannel } from '../../src/channels/sms/outbox-jsonl.js';
import { createTwilioChannel } from '../../src/channels/sms/twilio.js';
import { DeliveryWorker } from '../../src/workers/delivery.js';
import { startFakeTwilio, type FakeTwilio } from '../helpers/fake-twilio.js';
import { createTestRelay, type TestRelay } from '../helpers/relay.js';

const NUDGE = 'Please join Slack ASAP.';
const FROM = '+15555550100';
const PHONES = { sec: '+15555550101', exec: '+15555550102', counsel: '+447700900123', gone: '+15555550109' } as const;
const INTERVAL = 5 * 60_000;
const auth = (token: string) => ({ Authorization: `Bearer ${token}` });
const sha256 = (s: string) => createHash('sha256').update(s, 'utf8').digest('hex');

let fake: FakeTwilio;
let relay: TestRelay;
let worker: DeliveryWorker;
let dir: string;
let dbFile: string;
let ic: string;
let codename: string;

async function addMember(email: string, role: string, phone?: string): Promise<void> {
  const res = await relay.request.put(`/v1/incidents/${codename}/roster/${email}`).set(auth(ic)).send({ name: email.split('@')[0], role, ...(phone ? { phone } : {}) });
  expect(res.status).toBe(201);
}

function nudge(body: Record<string, unknown>, token = ic, key?: string) {
  const req = relay.request.post(`/v1/incidents/${codename}/sms`).set(auth(token));
  if (key) req.set('Idempotency-Key', key);
  return req.send(body);
}

async function count(table: 'deliveries' | 'sms_messages'): Promise<number> {
  return (await relay.ctx.store.sql.get<{ n: number }>(`SELECT COUNT(*) AS n FROM ${table}`))!.n;
}

async function events(type: string): Promise<{ actor: string | null; outcome: string; data: Record<string, unknown> }[]> {
  const incident = await relay.ctx.store.incidents.byCodename(codename);
  expect(incident).toBeDefined();
  return (await relay.ctx.store.audit.listForIncident(incident!.id)).filter((e) => e.type === type);
}

/** Everything the store holds: every row of every table as SQL sees it, plus the raw database and WAL bytes (SQLite: see relayOver). */
async function wholeDatabase(): Promise<string> {
  const { sql } = relay.ctx.store;
  expect(sql.dialect).toBe('sqlite');
  expect(fs.existsSync(dbFile)).toBe(true);
  const tables = await sql.all<{ name: string }>("SELECT name FROM sqlite_master WHERE type = 'table'");
  expect(tables.map((t) => t.name)).toEqual(expect.arrayContaining(['audit_events', 'deliveries', 'sms_messages']));
  const rows: string[] = [];
  for (const { name } of tables) rows.push(JSON.stringify(await sql.all(`SELECT * FROM "${name}"`), (_k, v: unknown) => (Buffer.isBuffer(v) ? v.toString('latin1') : v)));
  const files = [dbFile, `${dbFile}-wal`].filter((f) => fs.existsSync(f)).map((f) => fs.readFileSync(f).toString('latin1'));
  return [...rows, ...files].join('\n');
}

/**
 * A relay over the SQLite file `dbFile`. SQLite on purpose, whatever TEST_STORE
 * says: these tests grep the raw database and WAL bytes for what must never be
 * stored, and reopen the same file to restart the relay.
 */
function relayOver(file: string): Promise<TestRelay> {
  return createTestRelay(
    { twilio: { accountSid: fake.accountSid, authToken: fake.authToken, from: FROM }, twilioApiBaseUrl: fake.url, smsNudgeInterval: INTERVAL },
    { backend: 'sqlite', file },
  );
}

beforeEach(async () => {
  fake = await startFakeTwilio();
  dir = fs.mkdtempSync(path.join(os.tmpdir(), 'relay-sms-'));
  dbFile = path.join(dir, 'relay.db');
  relay = await relayOver(dbFile);
  const channel = createTwilioChannel({ accountSid: fake.accountSid, authToken: fake.authToken, from: FROM, apiBaseUrl: fake.url });
  worker = new DeliveryWorker(relay.ctx, { channels: { sms: channel }, baseBackoffMs: 1000, random: () => 0 });
  ic = await relay.tokenFor('ic@corp.example');
  const res = await relay.request.post('/v1/incidents').set(auth(ic)).send({ codename: 'amber-otter' });
  codename = res.body.codename;
  await addMember('sec@corp.example', 'security', PHONES.sec);
  await addMember('exec@corp.example', 'executive', PHONES.exec);
  await addMember('counsel@lawfirm.example', 'external', PHONES.counsel);
  await addMember('legal@corp.example', 'legal');
  await addMember('gone@corp.example', 'security', PHONES.gone);
  expect((await relay.request.delete(`/v1/incidents/${codename}/roster/gone@corp.example`).set(auth(ic))).status).toBe(204);
});

afterEach(async () => {
  await worker.stop();
  await fake.stop();
  await relay.ctx.store.close();
  fs.rmSync(dir, { recursive: true, force: true });
});

describe('sending the nudge', () => {
  it('reaches Twilio with the exact To, From and Body, through the SDK and the durable queue', async () => {
    const res = await nudge({ to: ['sec@corp.example', 'Counsel@Lawfirm.example'] });
    expect(res.status).toBe(202);
    expect(res.body).toEqual({ results: [{ email: 'sec@corp.example', status: 'queued' }, { email: 'counsel@lawfirm.example', status: 'queued' }] });
    // Accepted means durable: queued before any send.
    expect(fake.requests).toHaveLength(0);
    expect(await relay.ctx.store.outbox.queuedCount('sms')).toBe(2);

    await worker.drain();
    const sent = fake.delivered();
    expect(sent.map((r) => ({ to: r.to, from: r.from, body: r.body, path: r.path, authorized: r.authorized })).sort((a, b) => a.to!.localeCompare(b.to!))).toEqual([
      { to: PHONES.sec, from: FROM, body: NUDGE, path: `/2010-04-01/Accounts/${fake.accountSid}/Messages.json`, authorized: true },
      { to: PHONES.counsel, from: FROM, body: NUDGE, path: `/2010-04-01/Accounts/${fake.accountSid}/Messages.json`, authorized: true },
    ].sort((a, b) => a.to.localeCompare(b.to)));
    // Only To, From and Body: no status callback or other field that could carry anything.
    expect(Object.keys(sent[0]!.form).sort()).toEqual(['Body', 'From', 'To']);

    const rows = await relay.ctx.store.sql.all<{ status: string; body: Buffer | null; provider_id: string }>("SELECT status, body, provider_id FROM deliveries WHERE channel = 'sms'");
    expect(rows.map((r) => [r.status, r.body])).toEqual([['sent', null], ['sent', null]]);
    expect(rows.every((r) => /^SM[0-9a-f]{32}$/.test(r.provider_id))).toBe(true);
    expect(await events('sms.delivered')).toHaveLength(2);
    const decision = (await events('sms.decision'))[0]!;
    expect(decision).toMatchObject({ actor: 'ic@corp.example', outcome: 'ok', data: { recipients: ['sec@corp.example', 'counsel@lawfirm.example'] } });
  });

  it('accepts a body that is exactly the nudge, and "roster" with per-member results', async () => {
    const res = await nudge({ to: 'roster', body: NUDGE });
    expect(res.status).toBe(202);
    expect(res.body.results).toEqual([
      { email: 'counsel@lawfirm.example', status: 'queued' },
      { email: 'exec@corp.example', status: 'queued' },
      { email: 'ic@corp.example', status: 'skipped', reason: 'no_phone' },
      { email: 'legal@corp.example', status: 'skipped', reason: 'no_phone' },
      { email: 'sec@corp.example', status: 'queued' },
    ]);
    await worker.drain();
    expect(fake.delivered().map((r) => r.to).sort()).toEqual([PHONES.counsel, PHONES.exec, PHONES.sec].sort());
    expect(fake.delivered().every((r) => r.body === NUDGE)).toBe(true);
  });

  it('skips a removed member named explicitly, and texts nobody off the active roster', async () => {
    const res = await nudge({ to: ['gone@corp.example', 'exec@corp.example'] });
    expect(res.status).toBe(202);
    expect(res.body.results).toEqual([
      { email: 'gone@corp.example', status: 'skipped', reason: 'removed' },
      { email: 'exec@corp.example', status: 'queued' },
    ]);
    await worker.drain();
    expect(fake.requests.map((r) => r.to)).toEqual([PHONES.exec]);
  });

  it('uses a messaging service SID when TWILIO_FROM is one', async () => {
    const service = `MG${'a'.repeat(32)}`;
    const mg = new DeliveryWorker(relay.ctx, { channels: { sms: createTwilioChannel({ accountSid: fake.accountSid, authToken: fake.authToken, from: service, apiBaseUrl: fake.url }) } });
    await nudge({ to: ['sec@corp.example'] });
    await mg.drain();
    expect(fake.delivered().map((r) => [r.to, r.from, r.messagingServiceSid, r.body])).toEqual([[PHONES.sec, undefined, service, NUDGE]]);
  });
});

describe('what never reaches Twilio', () => {
  const SECRET = 'prod-db-3 is exfiltrating to 203.0.113.7';

  it.each([
    ['the nudge with text added', `${NUDGE} ${SECRET}`],
    ['other text', SECRET],
    ['a lookalike of the nudge', `Please join Sl\u0430ck ASAP. ${SECRET}`],
    ['the nudge with a trailing newline', `${NUDGE}\n${SECRET}`],
  ])('blocked text: %s → 422, audited by length and hash, stored nowhere', async (_name, body) => {
    const res = await nudge({ to: ['sec@corp.example'], body });
    expect(res.status).toBe(422);
    expect(res.body.error).toMatchObject({ code: 'sms_content_blocked', rule: 'sms' });
    expect(JSON.stringify(res.body)).not.toContain(SECRET);
    await worker.drain();
    expect(fake.requests).toHaveLength(0);
    expect(await count('deliveries')).toBe(0);
    expect(await count('sms_messages')).toBe(0);
    const [event] = await events('sms.decision');
    expect(event).toMatchObject({ outcome: 'refused', data: { code: 'sms_content_blocked', blockedLength: [...body].length, blockedSha256: sha256(body) } });
    expect(await wholeDatabase()).not.toContain(SECRET);
    expect(await wholeDatabase()).not.toContain('exfiltrating');
  });

  it('an off-roster address refuses the whole request, naming it', async () => {
    const res = await nudge({ to: ['sec@corp.example', 'nosy@corp.example'] });
    expect(res.status).toBe(403);
    expect(res.body.error).toMatchObject({ code: 'recipient_not_on_roster', rule: 'roster', details: { recipients: ['nosy@corp.example'] } });
    await worker.drain();
    expect(fake.requests).toHaveLength(0);
    expect(await count('deliveries')).toBe(0);
    expect((await events('sms.decision'))[0]).toMatchObject({ outcome: 'refused', data: { code: 'recipient_not_on_roster' } });
  });

  it('a raw phone number is refused (400), audited by hash only', async () => {
    const number = '+15555559999';
    const res = await nudge({ to: ['sec@corp.example', number] });
    expect(res.status).toBe(400);
    expect(res.body.error).toMatchObject({ code: 'invalid_request' });
    expect(res.body.error.message).toMatch(/roster email address, not by phone number/);
    await worker.drain();
    expect(fake.requests).toHaveLength(0);
    expect((await events('sms.decision'))[0]).toMatchObject({ outcome: 'refused', data: { code: 'invalid_request', otherRecipientsSha256: [sha256(number)] } });
    expect(await wholeDatabase()).not.toContain(number);
  });

  it('a second nudge inside RELAY_SMS_NUDGE_INTERVAL is skipped, counted from the store across restarts', async () => {
    expect((await nudge({ to: ['sec@corp.example'] })).body.results).toEqual([{ email: 'sec@corp.example', status: 'queued' }]);
    relay.clock.advance(INTERVAL - 1000);
    expect((await nudge({ to: ['sec@corp.example', 'exec@corp.example'] })).body.results).toEqual([
      { email: 'sec@corp.example', status: 'skipped', reason: 'recently_nudged' },
      { email: 'exec@corp.example', status: 'queued' },
    ]);
    await worker.drain();
    expect(fake.requests.map((r) => r.to)).toEqual([PHONES.sec, PHONES.exec]);

    // A restart: a new relay over the same database file, a clock only 2 s on.
    const at = relay.clock.current;
    await worker.stop();
    await relay.ctx.store.close();
    relay = await relayOver(dbFile);
    relay.clock.current = new Date(at.getTime() + 2000);
    worker = new DeliveryWorker(relay.ctx, { channels: { sms: createTwilioChannel({ accountSid: fake.accountSid, authToken: fake.authToken, from: FROM, apiBaseUrl: fake.url }) } });
    ic = await relay.tokenFor('ic@corp.example');
    expect((await nudge({ to: ['sec@corp.example', 'exec@corp.example'] })).body.results).toEqual([
      { email: 'sec@corp.example', status: 'queued' },
      { email: 'exec@corp.example', status: 'skipped', reason: 'recently_nudged' },
    ]);
    await worker.drain();
    expect(fake.requests.map((r) => r.to)).toEqual([PHONES.sec, PHONES.exec, PHONES.sec]);
  });

  it('a closed incident sends nothing (409)', async () => {
    expect((await relay.request.patch(`/v1/incidents/${codename}`).set(auth(ic)).send({ status: 'closed' })).status).toBe(200);
    const res = await nudge({ to: ['sec@corp.example'] });
    expect(res.status).toBe(409);
    expect(res.body.error).toMatchObject({ code: 'incident_closed', rule: 'incident-open' });
    expect(await count('deliveries')).toBe(0);
  });

  it('a sender off the roster gets 404, an admin off the roster 403, and nothing is queued', async () => {
    const outsider = await relay.tokenFor('nosy@corp.example');
    expect((await nudge({ to: ['sec@corp.example'] }, outsider)).status).toBe(404);
    const admin = await nudge({ to: ['sec@corp.example'] }, relay.admin);
    expect(admin.status).toBe(403);
    expect(admin.body.error).toMatchObject({ code: 'forbidden', rule: 'roster' });
    expect(await count('deliveries')).toBe(0);
  });

  it.each([
    ['no "to"', {}],
    ['an empty list', { to: [] }],
    ['an unknown field', { to: ['sec@corp.example'], from: '+15555550199' }],
    ['a body that is not a string', { to: ['sec@corp.example'], body: 42 }],
    ['"to" a single address', { to: 'sec@corp.example' }],
  ])('a malformed request is 400: %s', async (_name, body) => {
    const res = await nudge(body);
    expect(res.status).toBe(400);
    expect(res.body.error.code).toBe('invalid_request');
    expect(await count('deliveries')).toBe(0);
  });

  it('the channel itself refuses any body but the nudge, even one put straight into the queue', async () => {
    const incidentId = (await relay.ctx.store.incidents.byCodename(codename))!.id;
    await relay.ctx.store.outbox.enqueue([{ id: 'rogue', channel: 'sms', incidentId, envelope: { kind: 'sms', to: PHONES.sec }, body: Buffer.from(`${NUDGE} ${SECRET}`) }], relay.clock.now());
    await worker.drain();
    expect(fake.requests).toHaveLength(0);
    expect(await relay.ctx.store.outbox.get('rogue')).toMatchObject({ status: 'failed', body: null, attempts: 1 });
    expect((await events('sms.delivery_failed'))[0]!.data['error']).toMatch(/other than the fixed nudge/);
  });
});

describe('Idempotency-Key', () => {
  it('replays the first answer and queues nothing again', async () => {
    const first = await nudge({ to: ['sec@corp.example'] }, ic, 'nudge-1');
    relay.clock.advance(INTERVAL * 2);
    const second = await nudge({ to: ['sec@corp.example'] }, ic, 'nudge-1');
    expect(second.status).toBe(202);
    expect(second.body).toEqual(first.body);
    expect(await count('deliveries')).toBe(1);
    // The key is bound to the request it first answered: another request with it sends nothing and says so.
    const other = await nudge({ to: ['exec@corp.example'] }, ic, 'nudge-1');
    expect(other.status).toBe(422);
    expect(other.body.error.code).toBe('idempotency_key_reused');
    const emailRoute = await relay.request.post(`/v1/incidents/${codename}/emails`).set(auth(ic)).set('Idempotency-Key', 'nudge-1').send({ to: ['sec@corp.example'], text: 'x' });
    expect(emailRoute.status).toBe(422);
    expect(emailRoute.body.error.code).toBe('idempotency_key_reused');
    expect(await count('deliveries')).toBe(1);
    await worker.drain();
    expect(fake.requests.map((r) => r.to)).toEqual([PHONES.sec]);
  });
});

describe('delivery failures', () => {
  it('retries a 503 with backoff and delivers once Twilio recovers', async () => {
    fake.failNext({ status: 503 });
    await nudge({ to: ['sec@corp.example'] });
    await worker.drain();
    expect(fake.requests.map((r) => r.status)).toEqual([503]);
    const smsDeliveries = await relay.ctx.store.sql.all<{ id: string }>("SELECT id FROM deliveries WHERE channel = 'sms'");
    expect(smsDeliveries).toHaveLength(1);
    const [delivery] = smsDeliveries;
    expect(await relay.ctx.store.outbox.get(delivery!.id)).toMatchObject({ status: 'queued', attempts: 1 });
    const [retry] = await events('sms.delivery_retry');
    expect(retry!.data).toMatchObject({ retryInMs: 500 });
    expect(String(retry!.data['error'])).toMatch(/Twilio unavailable \(HTTP 503/);
    // Twilio's message quotes the number: it is not copied.
    expect(String(retry!.data['error'])).not.toContain(PHONES.sec);

    relay.clock.advance(500);
    await worker.drain();
    expect(fake.requests.map((r) => [r.status, r.to, r.body])).toEqual([
      [503, PHONES.sec, NUDGE],
      [201, PHONES.sec, NUDGE],
    ]);
    expect(await relay.ctx.store.outbox.get(delivery!.id)).toMatchObject({ status: 'sent', attempts: 2, body: null });
  });

  it('honours Retry-After on a 429', async () => {
    fake.failNext({ status: 429, retryAfter: '30' });
    await nudge({ to: ['sec@corp.example'] });
    await worker.drain();
    expect((await events('sms.delivery_retry'))[0]!.data).toMatchObject({ retryInMs: 30_000 });
    relay.clock.advance(29_000);
    await worker.drain();
    expect(fake.requests).toHaveLength(1);
    relay.clock.advance(1_000);
    await worker.drain();
    expect(fake.requests.map((r) => r.status)).toEqual([429, 201]);
  });

  it('fails a 400 (21211 invalid number) without retrying, and audits it', async () => {
    fake.failNext({ status: 400, code: 21211 });
    await nudge({ to: ['sec@corp.example'] });
    await worker.drain();
    relay.clock.advance(3_600_000);
    await worker.drain();
    expect(fake.requests).toHaveLength(1);
    const failed = await events('sms.delivery_failed');
    expect(failed).toHaveLength(1);
    expect(failed[0]).toMatchObject({ outcome: 'failed', data: { attempt: 1 } });
    expect(String(failed[0]!.data['error'])).toMatch(/HTTP 400, error 21211/);
    expect(String(failed[0]!.data['error'])).not.toContain(PHONES.sec);
  });

  it('fails an unsubscribed recipient (21610) without retrying', async () => {
    fake.failNext({ status: 400, code: 21610 });
    await nudge({ to: ['sec@corp.example'] });
    await worker.drain();
    relay.clock.advance(3_600_000);
    await worker.drain();
    expect(fake.requests).toHaveLength(1);
    expect(String((await events('sms.delivery_failed'))[0]!.data['error'])).toMatch(/21610: the recipient has unsubscribed/);
  });

  it('retries when Twilio cannot be reached', async () => {
    await fake.stop();
    await nudge({ to: ['sec@corp.example'] });
    await worker.drain();
    const [retry] = await events('sms.delivery_retry');
    expect(String(retry!.data['error'])).toMatch(/cannot reach Twilio: ECONNREFUSED/);
    fake = await startFakeTwilio(); // so afterEach has one to stop
  });
});

describe('without Twilio credentials', () => {
  it('writes each nudge as a line of <data>/outbox/sms.jsonl', async () => {
    const file = path.join(dir, 'outbox', 'sms.jsonl');
    const local = new DeliveryWorker(relay.ctx, { channels: { sms: createSmsOutboxChannel(file, relay.clock.now) } });
    await nudge({ to: ['sec@corp.example', 'exec@corp.example'] });
    await local.drain();
    const lines = fs.readFileSync(file, 'utf8').trimEnd().split('\n').map((l) => JSON.parse(l) as Record<string, string>);
    expect(lines.map((l) => [l['to'], l['body'], l['at']]).sort()).toEqual([
      [PHONES.sec, NUDGE, relay.clock.now().toISOString()],
      [PHONES.exec, NUDGE, relay.clock.now().toISOString()],
    ]);
    expect(fs.statSync(file).mode & 0o777).toBe(0o600);
    expect(fake.requests).toHaveLength(0);
  });
});

describe('inbound webhook POST /webhooks/twilio/sms', () => {
  const PUBLIC = 'https://relay.corp.example/webhooks/twilio/sms';
  const INBOUND = 'the attacker is in the vpn concentrator, call me';

  function inbound(from: string, options: { signature?: string; text?: string } = {}) {
    const params = { MessageSid: `SM${'1'.repeat(32)}`, AccountSid: fake.accountSid, From: from, To: FROM, Body: options.text ?? INBOUND, NumMedia: '0' };
    const signature = options.signature ?? twilio.getExpectedTwilioSignature(fake.authToken, PUBLIC, params);
    return relay.request.post('/webhooks/twilio/sms').set('Host', 'relay.corp.example').set('X-Twilio-Signature', signature).type('form').send(params);
  }

  it('refuses a bad or missing signature with 403', async () => {
    const bad = await inbound(PHONES.sec, { signature: 'bm90IGEgc2lnbmF0dXJl' });
    expect(bad.status).toBe(403);
    expect(bad.body.error.code).toBe('forbidden');
    const none = await relay.request.post('/webhooks/twilio/sms').type('form').send({ From: PHONES.sec, Body: INBOUND });
    expect(none.status).toBe(403);
    // Signed for other text: the signature covers every parameter.
    const params = { From: PHONES.sec, Body: 'hello' };
    const tampered = await relay.request
      .post('/webhooks/twilio/sms')
      .set('Host', 'relay.corp.example')
      .set('X-Twilio-Signature', twilio.getExpectedTwilioSignature(fake.authToken, PUBLIC, params))
      .type('form')
      .send({ ...params, Body: 'hello!' });
    expect(tampered.status).toBe(403);
    expect(await count('sms_messages')).toBe(0);
    expect(await wholeDatabase()).not.toContain('vpn concentrator');
  });

  it('answers a member with TwiML that sends the nudge again, subject to the interval, and keeps no text', async () => {
    const first = await inbound(PHONES.sec);
    expect(first.status).toBe(200);
    expect(first.headers['content-type']).toMatch(/^text\/xml/);
    expect(first.text).toBe(`<?xml version="1.0" encoding="UTF-8"?><Response><Message>${NUDGE}</Message></Response>`);

    const again = await inbound(PHONES.sec);
    expect(again.text).toBe('<?xml version="1.0" encoding="UTF-8"?><Response/>');
    // The TwiML nudge counts towards the interval of the API too.
    expect((await nudge({ to: ['sec@corp.example'] })).body.results).toEqual([{ email: 'sec@corp.example', status: 'skipped', reason: 'recently_nudged' }]);
    relay.clock.advance(INTERVAL);
    expect((await inbound(PHONES.sec)).text).toContain(`<Message>${NUDGE}</Message>`);

    const audited = await events('sms.inbound');
    expect(audited.map((e) => [e.actor, e.data['sender'], e.data['email'], e.data['reply']])).toEqual([
      ['sec@corp.example', 'member', 'sec@corp.example', 'nudge'],
      ['sec@corp.example', 'member', 'sec@corp.example', 'recently_nudged'],
      ['sec@corp.example', 'member', 'sec@corp.example', 'nudge'],
    ]);
    expect(await wholeDatabase()).not.toContain(INBOUND);
    expect(await wholeDatabase()).not.toContain('vpn concentrator');
  });

  it('answers an unknown number with an empty Response and audits only its hash', async () => {
    const stranger = '+15555550777';
    const res = await inbound(stranger);
    expect(res.status).toBe(200);
    expect(res.text).toBe('<?xml version="1.0" encoding="UTF-8"?><Response/>');
    const all = await relay.ctx.store.sql.all<{ data: string }>("SELECT data FROM audit_events WHERE type = 'sms.inbound'");
    expect(all.map((r) => JSON.parse(r.data) as Record<string, unknown>)).toEqual([{ messageSid: `SM${'1'.repeat(32)}`, sender: 'unknown', fromSha256: sha256(stranger), reply: 'none' }]);
    expect(await wholeDatabase()).not.toContain(stranger);
    expect(await wholeDatabase()).not.toContain(INBOUND);
  });

  it('does not answer a member whose incidents are all closed', async () => {
    await relay.request.patch(`/v1/incidents/${codename}`).set(auth(ic)).send({ status: 'closed' });
    const res = await inbound(PHONES.sec);
    expect(res.text).toBe('<?xml version="1.0" encoding="UTF-8"?><Response/>');
    expect((await events('sms.inbound'))[0]).toMatchObject({ actor: 'sec@corp.example', data: { reply: 'none' } });
  });

  it('does not answer a member while the incident has no security member (rule security-team)', async () => {
    const demoted = await relay.request.put(`/v1/incidents/${codename}/roster/sec@corp.example`).set(auth(ic)).send({ name: 'sec', role: 'executive', phone: PHONES.sec });
    expect(demoted.status).toBe(200);
    const res = await inbound(PHONES.sec);
    expect(res.text).toBe('<?xml version="1.0" encoding="UTF-8"?><Response/>');
    expect(await count('sms_messages')).toBe(0);
    expect((await events('sms.inbound'))[0]).toMatchObject({ actor: 'sec@corp.example', data: { reply: 'security_team_missing' } });
  });

  it('is 404 when Twilio is not configured', async () => {
    const plain = await createTestRelay();
    const res = await plain.request.post('/webhooks/twilio/sms').type('form').send({ From: PHONES.sec, Body: INBOUND });
    expect(res.status).toBe(404);
    expect(res.body.error.code).toBe('not_found');
    await plain.ctx.store.close();
  });
});
