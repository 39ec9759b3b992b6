/**
 * The composition root's SMS wiring: startRelay sends nudges through Twilio
 * when TWILIO_* are set (here at a local fake via TWILIO_API_BASE_URL), and to
 * <data>/outbox/sms.jsonl when they are not; the webhook is mounted outside /v1.
 */
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { pino } from 'pino';
import supertest from 'supertest';
import twilio from 'twilio';
import { afterEach, beforeEach, expect, it } from 'vitest';
import { testConfig, type RelayConfig } from '../../../src/config.js';
import { startRelay, type RunningRelay } from '../../../src/main.js';
import { startFakeTwilio, type FakeTwilio } from '../../helpers/fake-twilio.js';

const ADMIN = 'admin-token-for-the-sms-wiring-test-0123456789';
const NUDGE = 'Please join Slack ASAP.';
const auth = (token: string) => ({ Authorization: `Bearer ${token}` });

let fake: FakeTwilio;
let relay: RunningRelay | undefined;
let dataDir: string;

beforeEach(async () => {
  fake = await startFakeTwilio();
  dataDir = fs.mkdtempSync(path.join(os.tmpdir(), 'relay-sms-main-'));
});

afterEach(async () => {
  await relay?.stop();
  relay = undefined;
  await fake.stop();
  fs.rmSync(dataDir, { recursive: true, force: true });
});

async function waitFor(check: () => boolean, what: string, ms = 5000): Promise<void> {
  const deadline = Date.now() + ms;
  while (!check()) {
    if (Date.now() > deadline) throw new Error(`timed out waiting for ${what}`);
    await new Promise((r) => setTimeout(r, 20));
  }
}

async function start(overrides: Partial<RelayConfig>): Promise<ReturnType<typeof supertest>> {
  const config = testConfig({ dataDir, httpPort: 0, keysDir: undefined, internalDomains: ['corp.example'], mailDomain: 'corp.example', adminToken: ADMIN, ...overrides });
  relay = await startRelay(config, pino({ level: 'silent' }));
  const api = supertest(`http://127.0.0.1:${relay.httpPort}`);
  expect((await api.post('/v1/incidents').set(auth(ADMIN)).send({ commander: 'ic@corp.example', codename: 'misty-heron' })).status).toBe(201);
  expect((await api.put('/v1/incidents/misty-heron/roster/sec@corp.example').set(auth(ADMIN)).send({ name: 'Sec', role: 'security', phone: '+15555550101' })).status).toBe(201);
  return api;
}

it('sends through Twilio when configured, and serves the signed webhook', async () => {
  const api = await start({ twilio: { accountSid: fake.accountSid, authToken: fake.authToken, from: '+15555550100' }, twilioApiBaseUrl: fake.url });
  const ic = (await relay!.ctx.store.tokens.create({ email: 'ic@corp.example', role: 'responder', at: new Date() })).token;
  const res = await api.post('/v1/incidents/misty-heron/sms').set(auth(ic)).send({ to: ['sec@corp.example'] });
  expect(res.status).toBe(202);
  await waitFor(() => fake.delivered().length === 1, 'the nudge to reach the fake Twilio');
  expect(fake.delivered().map((r) => [r.to, r.from, r.body])).toEqual([['+15555550101', '+15555550100', NUDGE]]);
  expect(fs.existsSync(path.join(dataDir, 'outbox', 'sms.jsonl'))).toBe(false);

  // Behind no proxy: Twilio would sign http://<host>/webhooks/twilio/sms as reached.
  const params = { From: '+15555550199', Body: 'who is this' };
  const url = `http://127.0.0.1:${relay!.httpPort}/webhooks/twilio/sms`;
  const hook = await api.post('/webhooks/twilio/sms').set('X-Twilio-Signature', twilio.getExpectedTwilioSignature(fake.authToken, url, params)).type('form').send(params);
  expect(hook.status).toBe(200);
  expect(hook.text).toBe('<?xml version="1.0" encoding="UTF-8"?><Response/>');
});

it('writes <data>/outbox/sms.jsonl when Twilio is not configured, and has no webhook', async () => {
  const api = await start({ twilio: undefined });
  const ic = (await relay!.ctx.store.tokens.create({ email: 'ic@corp.example', role: 'responder', at: new Date() })).token;
  expect((await api.post('/v1/incidents/misty-heron/sms').set(auth(ic)).send({ to: 'roster' })).status).toBe(202);
  const file = path.join(dataDir, 'outbox', 'sms.jsonl');
  await waitFor(() => fs.existsSync(file) && fs.readFileSync(file, 'utf8').endsWith('\n'), 'sms.jsonl');
  const lines = fs.readFileSync(file, 'utf8').trimEnd().split('\n').map((l) => JSON.parse(l) as Record<string, unknown>);
  expect(lines).toEqual([{ id: expect.any(String), to: '+15555550101', body: NUDGE, at: expect.any(String) }]);
  expect(fake.requests).toHaveLength(0);
  expect((await api.post('/webhooks/twilio/sms').type('form').send({ From: '+15555550101' })).status).toBe(404);
});
