/**
 * Hostile input over SMTP submission (issue 10 items 1 and 14), end to end:
 * the real listener on port 0 with STARTTLS, the real pipeline, a real
 * DeliveryWorker to a real smtp-server upstream, spoken to by a raw client.
 *
 * - Source-routed addresses (`%`, `!`, `@route:`, quoted local parts) are
 *   refused at MAIL, RCPT and DATA (To/Cc/From/Sender headers) with
 *   `invalid_request` and a hint, and nothing reaches the upstream.
 * - Messages built to make the MIME parser slow are answered at once, with a
 *   permanent 5xx when they can never be accepted, while the relay keeps
 *   answering other clients.
 */
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { afterAll, afterEach, beforeAll, beforeEach, describe, expect, it } from 'vitest';
import { createSmtpChannel } from '../../src/channels/email/smtp.js';
import { startSmtpListener, type SmtpListener } from '../../src/smtp/listener.js';
import { loadOrCreateTlsCertificate, type TlsMaterial } from '../../src/smtp/tls.js';
import { DeliveryWorker } from '../../src/workers/delivery.js';
import { createTestRelay, type TestRelay } from '../helpers/relay.js';
import { startUpstream, type Upstream } from '../helpers/upstream.js';
import { connectRaw, type RawSmtp } from '../smtp/raw-client.js';

const auth = (token: string) => ({ Authorization: `Bearer ${token}` });

let tls: TlsMaterial;
let tlsDir: string;
let upstream: Upstream;
let relay: TestRelay;
let worker: DeliveryWorker;
let channel: ReturnType<typeof createSmtpChannel>;
let listener: SmtpListener;
let ic: string;
const raws: RawSmtp[] = [];

beforeAll(async () => {
  tlsDir = fs.mkdtempSync(path.join(os.tmpdir(), 'relay-hostile-smtp-'));
  tls = await loadOrCreateTlsCertificate({ dataDir: tlsDir });
}, 60_000);

afterAll(() => fs.rmSync(tlsDir, { recursive: true, force: true }));

beforeEach(async () => {
  upstream = await startUpstream();
  relay = await createTestRelay({ smtpUpstream: upstream.url });
  channel = createSmtpChannel(upstream.url);
  worker = new DeliveryWorker(relay.ctx, { channels: { email: channel }, baseBackoffMs: 10, random: () => 0 });
  ic = await relay.tokenFor('ic@corp.example');
  expect((await relay.request.post('/v1/incidents').set(auth(ic)).send({ codename: 'amber-otter' })).status).toBe(201);
  for (const email of ['sec@corp.example', 'exec@corp.example']) {
    expect((await relay.request.put(`/v1/incidents/amber-otter/roster/${email}`).set(auth(ic)).send({ name: 'Member', role: 'security' })).status).toBe(201);
  }
  listener = await startSmtpListener(relay.ctx, { host: '127.0.0.1', port: 0, tls });
});

afterEach(async () => {
  for (const r of raws.splice(0)) r.close();
  await listener.close();
  await worker.stop();
  channel.close();
  await upstream.stop();
});

/** A raw session through STARTTLS and AUTH as the commander. */
async function loggedIn(): Promise<RawSmtp> {
  const r = await connectRaw(listener.port);
  raws.push(r);
  await r.startTls(tls.cert);
  expect((await r.authPlain('ic@corp.example', ic)).code).toBe(235);
  return r;
}

const message = (headers: string[], body = 'Body line.') => [...headers, 'MIME-Version: 1.0', 'Content-Type: text/plain; charset=utf-8', '', body, ''].join('\r\n');

async function deliveriesCount(): Promise<number> {
  return (await relay.ctx.store.sql.get<{ n: number }>('SELECT COUNT(*) AS n FROM deliveries'))!.n;
}

async function expectNothingDelivered(): Promise<void> {
  expect(await deliveriesCount()).toBe(0);
  await worker.drain();
  expect(upstream.received).toHaveLength(0);
}

/**
 * Puts a routed address straight into the roster, as an older relay would have
 * accepted it over HTTP: the SMTP listener must refuse it on its own account,
 * not only because it is off the roster.
 */
async function rosterHoldsDirectly(email: string): Promise<void> {
  const incident = (await relay.ctx.store.incidents.byCodename('amber-otter'))!;
  await relay.ctx.store.incidents.upsertMember(incident.id, { email, name: 'Routed', role: 'external' }, relay.clock.now());
}

describe('source-routed addresses over SMTP', () => {
  it.each([
    ['the percent hack', 'counsel%lawfirm.example@corp.example', 'source routing (%) is not allowed; address the recipient directly as name@their-domain.'],
    ['a bang path', 'lawfirm.example!counsel@corp.example', 'bang paths (!) are not allowed; address the recipient directly as name@their-domain.'],
    ['a quoted local part', '"counsel"@corp.example', 'quoted local parts ("..."@ or \\) are not accepted; use the plain address name@domain.'],
  ])('RCPT TO with %s is refused with 550 and the hint, DATA after it too, nothing delivered', async (_name, address, hint) => {
    await rosterHoldsDirectly(address);
    const r = await loggedIn();
    expect((await r.command('MAIL FROM:<ic@corp.example>')).code).toBe(250);
    const routed = await r.command(`RCPT TO:<${address}>`);
    expect(routed.code).toBe(550);
    expect(routed.text).toBe(`5.7.1 invalid_request: RCPT TO "${address}" ${hint}`);
    expect((await r.command('RCPT TO:<sec@corp.example>')).code).toBe(250);
    const [, done] = await r.data(message(['From: ic@corp.example', `To: sec@corp.example`]));
    expect(done!.code).toBe(550);
    expect(done!.text).toBe(`5.7.1 invalid_request: RCPT TO "${address}" ${hint}`);
    await expectNothingDelivered();
  });

  it('an RFC 5321 source route in RCPT TO is dropped by smtp-server, never followed: the mail goes to the final address only', async () => {
    const r = await loggedIn();
    expect((await r.command('MAIL FROM:<ic@corp.example>')).code).toBe(250);
    expect((await r.command('RCPT TO:<@lawfirm.example,@relay.lawfirm.example:sec@corp.example>')).code).toBe(250);
    const [, done] = await r.data(message(['From: ic@corp.example', 'To: sec@corp.example']));
    expect(done!.code).toBe(250);
    await worker.drain();
    const [mail] = await upstream.waitFor(1);
    expect(mail!.to).toEqual(['sec@corp.example']);
    expect(mail!.raw.toString('latin1')).not.toContain('lawfirm');
  });

  it('MAIL FROM with a routed address is refused for what it is, with the hint', async () => {
    const r = await loggedIn();
    const reply = await r.command('MAIL FROM:<ic%lawfirm.example@corp.example>');
    expect(reply.code).toBe(550);
    expect(reply.text).toBe('5.7.1 invalid_request: MAIL FROM "ic%lawfirm.example@corp.example" source routing (%) is not allowed; address the recipient directly as name@their-domain.');
    await expectNothingDelivered();
  });

  it.each([
    ['a Cc: the envelope does not name', ['From: ic@corp.example', 'To: sec@corp.example', 'Cc: counsel%lawfirm.example@corp.example'], 'The Cc: header address "counsel%lawfirm.example@corp.example" source routing (%) is not allowed'],
    ['a To: with a bang path among good ones', ['From: ic@corp.example', 'To: sec@corp.example, lawfirm.example!counsel@corp.example'], 'The To: header address "lawfirm.example!counsel@corp.example" bang paths (!) are not allowed'],
    ['a To: source route without brackets', ['From: ic@corp.example', 'To: @lawfirm.example:sec@corp.example'], 'The To: header holds "@lawfirm.example:...": source routes (@host:...) are not allowed'],
    ['a From:', ['From: ic%lawfirm.example@corp.example', 'To: sec@corp.example'], 'The From: header address "ic%lawfirm.example@corp.example" source routing (%) is not allowed'],
    ['a Sender:', ['From: ic@corp.example', 'Sender: ic!lawfirm@corp.example', 'To: sec@corp.example'], 'The Sender: header address "ic!lawfirm@corp.example" bang paths (!) are not allowed'],
  ])('a routed address in %s is refused at DATA, not ignored; nothing delivered', async (_name, headers, text) => {
    const r = await loggedIn();
    expect((await r.command('MAIL FROM:<ic@corp.example>')).code).toBe(250);
    expect((await r.command('RCPT TO:<sec@corp.example>')).code).toBe(250);
    const [, done] = await r.data(message(headers));
    expect(done!.code).toBe(550);
    expect(done!.text.slice(0, text.length + 23)).toBe(`5.7.1 invalid_request: ${text}`);
    await expectNothingDelivered();
  });
});

/** Sends `data` as one DATA transaction on a fresh session, and times the reply. */
async function submitTimed(data: Buffer | string, rcpt = 'sec@corp.example'): Promise<{ code: number; text: string; ms: number }> {
  const r = await loggedIn();
  expect((await r.command('MAIL FROM:<ic@corp.example>')).code).toBe(250);
  expect((await r.command(`RCPT TO:<${rcpt}>`)).code).toBe(250);
  const started = performance.now();
  const [go, done] = await r.data(data);
  expect(go.code).toBe(354);
  return { code: done!.code, text: done!.text, ms: performance.now() - started };
}

/**
 * Runs `work` while another client keeps asking the relay something (an HTTP
 * request to the same app and a NOOP on a second SMTP session, in turn);
 * returns the work's result and the slowest answer the other client got.
 */
async function whileProbing<T>(work: () => Promise<T>): Promise<{ result: T; slowestMs: number; probes: number }> {
  const probe = await loggedIn();
  let done = false;
  let slowestMs = 0;
  let probes = 0;
  const probing = (async () => {
    while (!done) {
      const started = performance.now();
      if (probes % 2 === 0) expect((await relay.request.get('/healthz')).status).toBe(200);
      else expect((await probe.command('NOOP')).code).toBe(250);
      slowestMs = Math.max(slowestMs, performance.now() - started);
      probes++;
      await new Promise((resolve) => setTimeout(resolve, 20));
    }
  })();
  try {
    return { result: await work(), slowestMs, probes };
  } finally {
    done = true;
    await probing;
  }
}

const multipart = (headers: string[], parts: string[]) =>
  [...headers, 'MIME-Version: 1.0', 'Content-Type: multipart/mixed; boundary="b"', '', ...parts.map((p) => `--b\r\n${p}`), '--b--', ''].join('\r\n');

// A generous bound: a loaded two-core CI box answers a probe well within it,
// while the parser stalls these messages caused were 5 to 73 seconds long.
const PROBE_BOUND_MS = 3_000;

describe('messages built to stall the parser', () => {
  it('an HTML-only message of 300,000 <div> with a subject is carried as it is, and the relay keeps answering', async () => {
    const html = `<html><body>${'<div>'.repeat(300_000)}</body></html>`;
    const data = ['From: ic@corp.example', 'To: sec@corp.example', 'Subject: status', 'MIME-Version: 1.0', 'Content-Type: text/html; charset=utf-8', '', html, ''].join('\r\n');
    const { result, slowestMs, probes } = await whileProbing(() => submitTimed(data));
    expect(result.code).toBe(250);
    expect(probes).toBeGreaterThan(0);
    expect(slowestMs).toBeLessThan(PROBE_BOUND_MS);
    await worker.drain();
    const [mail] = await upstream.waitFor(1);
    // The Topic line went in after <body>, and the HTML is otherwise the sender's.
    expect(mail!.raw.toString('latin1')).toContain('<p>Topic: status</p>');
  }, 60_000);

  it('an HTML body of 2 MB of "<body" with a subject is composed in linear time', async () => {
    const data = ['From: ic@corp.example', 'To: sec@corp.example', 'Subject: status', 'MIME-Version: 1.0', 'Content-Type: text/html; charset=utf-8', '', '<body'.repeat(400_000), ''].join('\r\n');
    const { result, slowestMs } = await whileProbing(() => submitTimed(data));
    expect(result.code).toBe(250);
    expect(slowestMs).toBeLessThan(PROBE_BOUND_MS);
  }, 60_000);

  it('MIME parts with 800 KB group-address headers are refused at once with 552 (permanent), and the relay keeps answering', async () => {
    const part = `To: ${'a:'.repeat(400_000)}\r\nContent-Type: text/plain\r\n\r\nx`;
    const data = multipart(['From: ic@corp.example', 'To: sec@corp.example'], Array.from({ length: 28 }, () => part));
    expect(data.length).toBeGreaterThan(22_000_000);
    const { result, slowestMs } = await whileProbing(() => submitTimed(data));
    expect({ code: result.code, text: result.text }).toEqual({
      code: 552,
      text: '5.3.4 payload_too_large: The To header of MIME part 2 is longer than 32768 bytes; shorten it (a To: or Cc: of up to 100 recipients fits easily).',
    });
    expect(slowestMs).toBeLessThan(PROBE_BOUND_MS);
    await expectNothingDelivered();
  }, 60_000);

  it('more MIME parts than the relay reads are refused with 552', async () => {
    const data = multipart(['From: ic@corp.example', 'To: sec@corp.example'], Array.from({ length: 300 }, () => 'Content-Type: text/plain\r\n\r\nx'));
    const result = await submitTimed(data);
    expect({ code: result.code, text: result.text }).toEqual({
      code: 552,
      text: '5.3.4 payload_too_large: The message has more than 250 MIME parts; send fewer attachments, or put them in one archive.',
    });
    await expectNothingDelivered();
  });

  it('a multipart boundary the relay will not read is refused with 550 5.6.0 message_unparsable, so the client does not resend it', async () => {
    const data = ['From: ic@corp.example', 'To: sec@corp.example', 'MIME-Version: 1.0', "Content-Type: multipart/mixed; boundary*0=a; boundary*1=b", '', '--ab', 'Content-Type: text/plain', '', 'x', '--ab--', ''].join('\r\n');
    const result = await submitTimed(data);
    expect({ code: result.code, text: result.text }).toEqual({
      code: 550,
      text: '5.6.0 message_unparsable: MIME part 1 gives its boundary in RFC 2231 form (boundary*=); send it with a plain boundary parameter.',
    });
    await expectNothingDelivered();
  });
});
