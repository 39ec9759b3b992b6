/**
 * The upstream refuses the relay itself (issue 10 §10, §12): a rotated
 * password (535 at AUTH), a 554 greeting, a STARTTLS that fails or is missing
 * where it is required, an untrusted certificate, Twilio's 401/20003. The
 * real app and DeliveryWorker, the real nodemailer and twilio channels, real
 * servers. What must hold: no message is failed or purged — each stays queued
 * with its lastError and body — the admin hears it once (one error line, a
 * /healthz warning, the metrics), and every message goes out once the
 * upstream is fixed. A 5xx to DATA still fails the message, as before.
 */
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { Writable } from 'node:stream';
import { pino } from 'pino';
import { afterEach, beforeEach, describe, expect, it } from 'vitest';
import { createSmtpChannel, upstreamTlsPolicy, type SmtpChannelOptions } from '../../src/channels/email/smtp.js';
import { ChannelHealth, watchChannel } from '../../src/channels/health.js';
import { createTwilioChannel } from '../../src/channels/sms/twilio.js';
import type { UpstreamProblem } from '../../src/channels/channel.js';
import { loadOrCreateTlsCertificate, type TlsMaterial } from '../../src/smtp/tls.js';
import { DeliveryWorker } from '../../src/workers/delivery.js';
import { startFakeTwilio, type FakeTwilio } from '../helpers/fake-twilio.js';
import { startFaultySmtp, type FaultySmtp } from '../helpers/faulty-smtp.js';
import { createTestRelay, type TestRelay } from '../helpers/relay.js';
import { startUpstream, type Upstream } from '../helpers/upstream.js';

const TIMEOUTS = { connectionTimeout: 1_000, greetingTimeout: 1_000, socketTimeout: 2_000 };
const OLD_PASSWORD = 'old-S3cret-pw';
const NEW_PASSWORD = 'new-S3cret-pw';
const b64 = (s: string) => Buffer.from(s).toString('base64');

let relay: TestRelay;
let ic: string;
let codename: string;
let logs: { level: number; msg: string; [k: string]: unknown }[];
let channels: { close(): void }[];
let workers: DeliveryWorker[];
let upstream: Upstream | undefined;
let faulty: FaultySmtp | undefined;
let tmp: string;

const auth = (token: string) => ({ Authorization: `Bearer ${token}` });

beforeEach(async () => {
  relay = await createTestRelay();
  // The relay's health, logging somewhere the test can read.
  logs = [];
  const sink = new Writable({
    write(chunk: Buffer, _enc, done) {
      for (const line of chunk.toString('utf8').split('\n').filter(Boolean)) logs.push(JSON.parse(line));
      done();
    },
  });
  relay.ctx.health = new ChannelHealth({ logger: pino({ level: 'info' }, sink), metrics: relay.ctx.metrics, now: relay.clock.now });
  channels = [];
  workers = [];
  tmp = fs.mkdtempSync(path.join(os.tmpdir(), 'relay-upstream-health-'));
  ic = await relay.tokenFor('ic@corp.example');
  codename = (await relay.request.post('/v1/incidents').set(auth(ic)).send({})).body.codename as string;
  for (const email of ['sec@corp.example', 'exec@corp.example']) {
    expect((await relay.request.put(`/v1/incidents/${codename}/roster/${email}`).set(auth(ic)).send({ name: email.split('@')[0], role: 'security' })).status).toBe(201);
  }
});

afterEach(async () => {
  for (const w of workers) await w.stop();
  for (const c of channels) c.close();
  await upstream?.stop();
  await faulty?.stop();
  upstream = undefined;
  faulty = undefined;
  fs.rmSync(tmp, { recursive: true, force: true });
});

/** A worker over a channel to `url`, watched as main.ts watches it; tiny backoff, the test's clock. */
function deliverVia(url: string, options: SmtpChannelOptions = {}): DeliveryWorker {
  const channel = createSmtpChannel(url, { timeouts: TIMEOUTS, ...options });
  channels.push(channel);
  const worker = new DeliveryWorker(relay.ctx, { channels: { email: watchChannel('email', channel, relay.ctx.health!) }, baseBackoffMs: 10, random: () => 0 });
  workers.push(worker);
  return worker;
}

async function send(n: number): Promise<{ id: string; messageId: string }[]> {
  const accepted: { id: string; messageId: string }[] = [];
  for (let i = 0; i < n; i++) {
    const res = await relay.request.post(`/v1/incidents/${codename}/emails`).set(auth(ic)).send({ to: ['sec@corp.example'], cc: ['exec@corp.example'], text: `message ${i}` });
    expect(res.status).toBe(202);
    accepted.push({ id: res.body.id as string, messageId: res.body.messageId as string });
  }
  return accepted;
}

/** The email's overall state (the view also lists each copy, which these tests do not look at). */
async function status(id: string): Promise<{ id: string; status: string; attempts: number; lastError?: string }> {
  const { id: emailId, status: state, attempts, lastError } = (await relay.request.get(`/v1/incidents/${codename}/emails/${id}`).set(auth(ic))).body;
  return { id: emailId, status: state, attempts, ...(lastError !== undefined ? { lastError } : {}) };
}

function messageIdOf(raw: Buffer): string {
  return /^Message-ID: (<[^>\r\n]+>)/im.exec(raw.toString('latin1'))?.[1] ?? '';
}

async function count(sql: string): Promise<number> {
  return (await relay.ctx.store.sql.get<{ n: number }>(sql))!.n;
}

async function metricsText(): Promise<string> {
  const res = await relay.request.get('/metrics').set(auth(relay.admin));
  expect(res.status).toBe(200);
  return res.text;
}

/**
 * Two rounds of attempts against a broken upstream: every message is still
 * queued with the upstream's reply as lastError and its body kept, nothing
 * was failed, the admin got exactly one error line, /healthz (200) and the
 * metrics say which problem.
 */
async function expectHeld(worker: DeliveryWorker, sent: { id: string }[], problem: UpstreamProblem, lastError: RegExp): Promise<void> {
  await worker.drain();
  relay.clock.advance(60_000);
  await worker.drain();
  for (const s of sent) expect(await status(s.id)).toMatchObject({ status: 'queued', attempts: 2, lastError: expect.stringMatching(lastError) });
  // Not purged: the composed bytes wait for the fix.
  expect(await count("SELECT COUNT(*) AS n FROM deliveries WHERE status = 'queued' AND body IS NOT NULL")).toBe(sent.length);
  expect(await count("SELECT COUNT(*) AS n FROM deliveries WHERE status = 'failed'")).toBe(0);
  expect(await count("SELECT COUNT(*) AS n FROM audit_events WHERE type = 'email.delivery_failed'")).toBe(0);
  expect(await count("SELECT COUNT(*) AS n FROM audit_events WHERE type = 'email.delivery_retry'")).toBe(sent.length * 2);

  const errors = logs.filter((l) => l.level === 50);
  expect(errors).toHaveLength(1);
  expect(errors[0]).toMatchObject({ channel: 'email', problem, msg: expect.stringMatching(/^email upstream unhealthy: .*Queued messages are kept and retried/) });

  const health = await relay.request.get('/healthz');
  // Still 200: the relay accepts and keeps messages, so a load balancer must not pull it.
  expect(health.status).toBe(200);
  expect(health.body).toEqual({ status: 'ok', store: relay.ctx.store.dialect, warnings: [{ channel: 'email', problem, since: expect.any(String), failures: sent.length * 2, message: expect.any(String) }] });

  const metrics = await metricsText();
  expect(metrics).toContain(`relay_upstream_failures_total{channel="email",problem="${problem}"} ${sent.length * 2}`);
  expect(metrics).toContain('relay_channel_healthy{channel="email"} 0');
}

/** After the fix: every message arrived once, is sent, and the admin heard the recovery once. */
async function expectRecovered(worker: DeliveryWorker, target: Upstream, sent: { id: string; messageId: string }[]): Promise<void> {
  relay.clock.advance(60_000);
  await worker.drain();
  const mails = await target.waitFor(sent.length, 10_000);
  expect(mails.map((m) => messageIdOf(m.raw)).sort()).toEqual(sent.map((s) => s.messageId).sort());
  for (const s of sent) expect(await status(s.id)).toEqual({ id: s.id, status: 'sent', attempts: 3 });
  expect(await count('SELECT COUNT(*) AS n FROM deliveries WHERE body IS NOT NULL')).toBe(0);
  expect(logs.filter((l) => l.level === 30)).toEqual([expect.objectContaining({ channel: 'email', msg: expect.stringMatching(/^email upstream recovered after \d+ failed attempt\(s\)/) })]);
  expect((await relay.request.get('/healthz')).body).toEqual({ status: 'ok', store: relay.ctx.store.dialect });
  expect(await metricsText()).toContain('relay_channel_healthy{channel="email"} 1');
}

describe('the upstream refuses the relay’s login', () => {
  it('535 at AUTH (a rotated password): every message stays queued; delivered once RELAY_SMTP_UPSTREAM has the new password', async () => {
    upstream = await startUpstream(0, { auth: { user: 'relay@corp.example', pass: NEW_PASSWORD } });
    const url = (pass: string) => `smtp://relay%40corp.example:${pass}@127.0.0.1:${upstream!.port}`;
    const broken = deliverVia(url(OLD_PASSWORD));
    const sent = await send(3);
    await expectHeld(broken, sent, 'auth', /^upstream unavailable: EAUTH 535 5\.7\.8 Authentication credentials invalid/);
    expect(logs.find((l) => l.level === 50)!.msg).toBe(
      "email upstream unhealthy: the upstream refused the relay's login (535): check the credentials in RELAY_SMTP_UPSTREAM. Queued messages are kept and retried with backoff until RELAY_DELIVERY_MAX_AGE.",
    );
    expect(upstream.received).toHaveLength(0);
    expect(upstream.logins.every((l) => l.user === 'relay@corp.example' && !l.ok)).toBe(true);

    // The operator puts the new password in RELAY_SMTP_UPSTREAM and restarts: a new channel and worker over the same store.
    await broken.stop();
    await expectRecovered(deliverVia(url(NEW_PASSWORD)), upstream, sent);

    // The password never reached what users, auditors or the admin's log see.
    const seen = JSON.stringify([await relay.ctx.store.sql.all('SELECT * FROM audit_events'), await relay.ctx.store.sql.all('SELECT last_error FROM deliveries'), logs]);
    for (const secret of [OLD_PASSWORD, NEW_PASSWORD]) expect(seen).not.toContain(secret);
  });

  it('an upstream that quotes the AUTH command in its 535: the password is redacted from lastError, audit and log', async () => {
    faulty = await startFaultySmtp('echo-auth');
    const w = deliverVia(`smtp://relay:${OLD_PASSWORD}@127.0.0.1:${faulty.port}`);
    const [s] = await send(1);
    await expectHeld(w, [s!], 'auth', /^upstream unavailable: EAUTH 535 5\.7\.8 authentication failed for: AUTH PLAIN \[redacted\]$/);
    const seen = JSON.stringify([await relay.ctx.store.sql.all('SELECT * FROM audit_events'), await relay.ctx.store.sql.all('SELECT last_error FROM deliveries'), logs]);
    expect(seen).not.toContain(OLD_PASSWORD);
    expect(seen).not.toContain(b64(`\u0000relay\u0000${OLD_PASSWORD}`));
  });
});

describe('the upstream refuses the session', () => {
  it('a 554 greeting: queued, not failed; delivered once a working server answers on that port', async () => {
    faulty = await startFaultySmtp('reject-greeting');
    const w = deliverVia(faulty.url);
    const sent = await send(2);
    await expectHeld(w, sent, 'greeting', /^upstream unavailable: EPROTOCOL 554 go away$/);
    expect(logs.find((l) => l.level === 50)!.msg).toMatch(/^email upstream unhealthy: the upstream refused the session \(554\): check that it accepts mail from this host\./);
    const port = faulty.port;
    await faulty.stop();
    faulty = undefined;
    upstream = await startUpstream(port);
    await expectRecovered(w, upstream, sent);
  });
});

describe('TLS to the upstream', () => {
  let cert: TlsMaterial;
  beforeEach(async () => {
    cert = await loadOrCreateTlsCertificate({ dataDir: tmp, listenHost: '127.0.0.1' });
  });

  it('STARTTLS announced but refused (454): queued as a tls problem, never sent in clear; delivered once the upstream is fixed', async () => {
    faulty = await startFaultySmtp('refuse-starttls');
    const w = deliverVia(faulty.url);
    const sent = await send(2);
    await expectHeld(w, sent, 'tls', /^upstream unavailable: ETLS 454 4\.7\.0 TLS not available/);
    expect(faulty.halfTaken).toEqual([]);
    const port = faulty.port;
    await faulty.stop();
    faulty = undefined;
    // Fixed: STARTTLS works, with a certificate the relay trusts (NODE_EXTRA_CA_CERTS in production).
    upstream = await startUpstream(port, { tls: cert });
    await w.stop();
    await expectRecovered(deliverVia(upstream.url, { tls: { ca: cert.cert } }), upstream, sent);
    expect(upstream.received.every((m) => m.secure)).toBe(true);
  });

  it('an untrusted certificate on STARTTLS: queued as a tls problem, nothing in clear; delivered over TLS once trusted', async () => {
    upstream = await startUpstream(0, { tls: cert });
    const w = deliverVia(upstream.url);
    const sent = await send(2);
    await expectHeld(w, sent, 'tls', /^upstream unavailable: ESOCKET self-signed certificate$/);
    expect(upstream.received).toHaveLength(0);
    await w.stop();
    const trusted = deliverVia(upstream.url, { tls: { ca: cert.cert } });
    await expectRecovered(trusted, upstream, sent);
    expect(upstream.received.every((m) => m.secure)).toBe(true);
  });

  it('STARTTLS required (the policy off loopback) against an upstream without it: queued, nothing sent in clear; RELAY_SMTP_UPSTREAM_ALLOW_INSECURE=true lets it go', async () => {
    upstream = await startUpstream();
    // What the relay decides for any host that is not loopback.
    const required = upstreamTlsPolicy('smtp://mail.corp.example:587', false);
    expect(required.requireTLS).toBe(true);
    const w = deliverVia(upstream.url, { tlsPolicy: required });
    const sent = await send(2);
    await expectHeld(w, sent, 'tls', /^upstream unavailable: ETLS 5\d\d /);
    expect(logs.find((l) => l.level === 50)!.msg).toMatch(/RELAY_SMTP_UPSTREAM_ALLOW_INSECURE=true only where the path to it is trusted/);
    expect(upstream.received).toHaveLength(0);
    await w.stop();
    await expectRecovered(deliverVia(upstream.url, { tlsPolicy: upstreamTlsPolicy('smtp://mail.corp.example:587', true) }), upstream, sent);
    expect(upstream.received.every((m) => !m.secure)).toBe(true);
  });

  // A real non-loopback address of this machine, when it has one: the relay's own default decides, nothing forced.
  const external = Object.values(os.networkInterfaces())
    .flat()
    .find((i) => i !== undefined && !i.internal && i.family === 'IPv4')?.address;

  it.skipIf(external === undefined)('an upstream on a non-loopback address without STARTTLS: refused by default; with a certificate for that address, delivered over TLS', async () => {
    upstream = await startUpstream(0, { host: external! });
    const w = deliverVia(upstream.url);
    const sent = await send(1);
    await expectHeld(w, sent, 'tls', /^upstream unavailable: ETLS /);
    expect(upstream.received).toHaveLength(0);
    await w.stop();
    const port = upstream.port;
    await upstream.stop();
    const certForHost = await loadOrCreateTlsCertificate({ dataDir: fs.mkdtempSync(path.join(tmp, 'ext-')), listenHost: external! });
    upstream = await startUpstream(port, { host: external!, tls: certForHost });
    await expectRecovered(deliverVia(upstream.url, { tls: { ca: certForHost.cert } }), upstream, sent);
    expect(upstream.received.every((m) => m.secure)).toBe(true);
  });
});

describe('what is still permanent', () => {
  it('a 550 to DATA fails the message at once and says nothing about the upstream’s health', async () => {
    upstream = await startUpstream();
    const w = deliverVia(upstream.url);
    upstream.failWith = 550;
    const [s] = await send(1);
    await w.drain();
    expect(await status(s!.id)).toMatchObject({ status: 'failed', attempts: 1, lastError: expect.stringContaining('550') });
    expect(await count('SELECT COUNT(*) AS n FROM deliveries WHERE body IS NOT NULL')).toBe(0);
    expect((await relay.request.get('/healthz')).body).toEqual({ status: 'ok', store: relay.ctx.store.dialect });
    expect(logs.filter((l) => l.level >= 50)).toEqual([]);
    expect(await metricsText()).toContain('relay_channel_healthy{channel="email"} 1');
  });
});

describe('Twilio refuses the relay’s credentials', () => {
  let fake: FakeTwilio;
  const FROM = '+15555550100';

  beforeEach(async () => {
    fake = await startFakeTwilio();
    expect((await relay.request.put(`/v1/incidents/${codename}/roster/sec@corp.example`).set(auth(ic)).send({ name: 'sec', role: 'security', phone: '+15555550101' })).status).toBe(200);
  });

  afterEach(async () => {
    await fake.stop();
  });

  function smsWorker(authToken: string): DeliveryWorker {
    const channel = createTwilioChannel({ accountSid: fake.accountSid, authToken, from: FROM, apiBaseUrl: fake.url });
    const worker = new DeliveryWorker(relay.ctx, { channels: { sms: watchChannel('sms', channel, relay.ctx.health!) }, baseBackoffMs: 10, random: () => 0 });
    workers.push(worker);
    return worker;
  }

  it('401 / 20003: the nudge stays queued with the reason; sent once TWILIO_AUTH_TOKEN is fixed', async () => {
    const broken = smsWorker('rotated-away-token');
    const res = await relay.request.post(`/v1/incidents/${codename}/sms`).set(auth(ic)).send({ to: ['sec@corp.example'] });
    expect(res.status).toBe(202);
    await broken.drain();
    relay.clock.advance(60_000);
    await broken.drain();
    expect(fake.requests.map((r) => [r.status, r.authorized])).toEqual([
      [401, false],
      [401, false],
    ]);
    const [row] = await relay.ctx.store.sql.all<{ id: string; status: string; attempts: number; lastError: string; kept: number }>(
      `SELECT id, status, attempts, last_error AS "lastError", CASE WHEN body IS NOT NULL THEN 1 ELSE 0 END AS kept FROM deliveries WHERE channel = 'sms'`,
    );
    expect(row).toMatchObject({
      status: 'queued',
      attempts: 2,
      kept: 1,
      lastError: "Twilio refused the relay's credentials (HTTP 401, error 20003: authentication failed: check TWILIO_ACCOUNT_SID and TWILIO_AUTH_TOKEN)",
    });
    expect(await count("SELECT COUNT(*) AS n FROM audit_events WHERE type = 'sms.delivery_failed'")).toBe(0);
    expect((await relay.request.get('/healthz')).body).toEqual({
      status: 'ok',
      store: relay.ctx.store.dialect,
      warnings: [
        {
          channel: 'sms',
          problem: 'auth',
          since: expect.any(String),
          failures: 2,
          message: "Twilio refused the relay's credentials (HTTP 401, error 20003: authentication failed: check TWILIO_ACCOUNT_SID and TWILIO_AUTH_TOKEN): check TWILIO_ACCOUNT_SID and TWILIO_AUTH_TOKEN",
        },
      ],
    });
    expect(logs.filter((l) => l.level === 50)).toHaveLength(1);
    expect(await metricsText()).toContain('relay_upstream_failures_total{channel="sms",problem="auth"} 2');

    await broken.stop();
    const fixed = smsWorker(fake.authToken);
    relay.clock.advance(60_000);
    await fixed.drain();
    expect(fake.delivered().map((r) => [r.to, r.body])).toEqual([['+15555550101', 'Please join Slack ASAP.']]);
    expect(await relay.ctx.store.outbox.get(row!.id)).toMatchObject({ status: 'sent', attempts: 3, body: null });
    expect((await relay.request.get('/healthz')).body).toEqual({ status: 'ok', store: relay.ctx.store.dialect });
    // The auth token never reaches the store or the log.
    const seen = JSON.stringify([await relay.ctx.store.sql.all('SELECT * FROM audit_events'), await relay.ctx.store.sql.all('SELECT last_error FROM deliveries'), logs]);
    expect(seen).not.toContain('rotated-away-token');
    expect(seen).not.toContain(fake.authToken);
  });
});
