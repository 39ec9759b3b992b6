/**
 * Hostile input on the HTTP API (issue 7): slow clients, oversize and deeply
 * nested bodies, absurd recipient lists, malformed JSON, header injection in
 * every field that reaches a header, path traversal in attachment names,
 * malformed key armour, unknown incidents, and per-token rate limits. Each
 * gets a clear 4xx refusal with the registry code, nothing is queued or
 * stored, the process stays up, and memory stays bounded.
 */
import fs from 'node:fs';
import http from 'node:http';
import net from 'node:net';
import os from 'node:os';
import path from 'node:path';
import { simpleParser } from 'mailparser';
import * as openpgp from 'openpgp';
import { pino } from 'pino';
import supertest from 'supertest';
import { afterAll, afterEach, beforeAll, beforeEach, describe, expect, it } from 'vitest';
import { createOutboxDirChannel } from '../../src/channels/email/outbox-dir.js';
import { testConfig } from '../../src/config.js';
import { createApp, jsonBodyLimit } from '../../src/http/app.js';
import { startRelay } from '../../src/main.js';
import { RateLimiter } from '../../src/services/rate-limit.js';
import { DeliveryWorker } from '../../src/workers/delivery.js';
import { createTestRelay, type TestRelay } from '../helpers/relay.js';

const MAX_MESSAGE_BYTES = 1024 * 1024;

let relay: TestRelay;
let server: http.Server;
let port: number;
let ic: string;
let codename: string;
let counselKey: { publicKey: string; privateKey: string };

const auth = (token = ic) => ({ Authorization: `Bearer ${token}` });

beforeAll(async () => {
  // The key before the relay: the relay's clock stops when it is made, and a
  // key created after that would not be valid yet at the relay's "now".
  const generated = await openpgp.generateKey({ userIDs: [{ name: 'Outside Counsel', email: 'counsel@lawfirm.example' }], format: 'armored' });
  counselKey = { publicKey: generated.publicKey, privateKey: generated.privateKey };
  relay = await createTestRelay({ maxMessageBytes: MAX_MESSAGE_BYTES });
  // A real listener too, for the clients that misbehave below the HTTP library.
  server = http.createServer(relay.app);
  await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', () => resolve()));
  port = (server.address() as net.AddressInfo).port;
  ic = await relay.tokenFor('ic@corp.example');
  codename = (await relay.request.post('/v1/incidents').set(auth()).send({})).body.codename as string;
  for (const email of ['sec@corp.example', 'exec@corp.example']) {
    expect((await relay.request.put(`/v1/incidents/${codename}/roster/${email}`).set(auth()).send({ name: 'Sec', role: 'security', phone: '+15555550100' })).status).toBe(201);
  }
}, 60_000);

// Each test starts from an empty outbox, so "nothing queued" is simply zero.
beforeEach(async () => {
  await relay.ctx.store.sql.run('DELETE FROM deliveries');
});

afterAll(async () => {
  server.closeAllConnections();
  await new Promise<void>((resolve) => server.close(() => resolve()));
  await relay.ctx.store.close();
});

async function count(table: string, where = '1 = 1'): Promise<number> {
  return (await relay.ctx.store.sql.get<{ n: number }>(`SELECT COUNT(*) AS n FROM ${table} WHERE ${where}`))!.n;
}

const emailsUrl = () => `/v1/incidents/${codename}/emails`;

async function stillUp(): Promise<void> {
  const res = await fetch(`http://127.0.0.1:${port}/healthz`);
  expect(res.status).toBe(200);
}

interface RawResponse {
  status: number;
  text: string;
  /** Body bytes written before the response arrived (or the socket closed). */
  bodySent: number;
}

/**
 * Writes `head`, then up to `bodyBytes` of body in 64 KiB blocks (chunked when
 * asked), and resolves with the response. Stops sending as soon as a response
 * starts unless `keepSending`, which pushes every byte first.
 */
function rawRequest(head: string, bodyBytes: number, options: { chunked?: boolean; keepSending?: boolean } = {}): Promise<RawResponse> {
  return new Promise((resolve) => {
    const socket = net.connect(port, '127.0.0.1');
    let text = '';
    let sent = 0;
    let done = false;
    let responded = false;
    const finish = (): void => {
      if (done) return;
      done = true;
      socket.destroy();
      resolve({ status: Number(/^HTTP\/1\.1 (\d{3})/.exec(text)?.[1] ?? 0), text, bodySent: sent });
    };
    socket.setEncoding('latin1');
    socket.on('data', (data: string) => {
      text += data;
      responded = true;
      const end = text.indexOf('\r\n\r\n');
      const length = end < 0 ? undefined : /^content-length: (\d+)/im.exec(text.slice(0, end))?.[1];
      if (length !== undefined && text.length >= end + 4 + Number(length) && (!options.keepSending || sent >= bodyBytes)) finish();
    });
    socket.on('close', finish);
    socket.on('error', finish);
    socket.on('connect', () => {
      socket.write(head);
      const block = Buffer.alloc(64 * 1024, 0x61);
      // One block per turn of the event loop, so a response can arrive (and stop us) between blocks.
      const pump = (): void => {
        if (done) return;
        if (sent < bodyBytes && (options.keepSending || !responded)) {
          const n = Math.min(block.length, bodyBytes - sent);
          const data = options.chunked ? Buffer.concat([Buffer.from(`${n.toString(16)}\r\n`), block.subarray(0, n), Buffer.from('\r\n')]) : block.subarray(0, n);
          sent += n;
          if (socket.write(data)) setImmediate(pump);
          else socket.once('drain', pump);
          return;
        }
        if (options.chunked && sent >= bodyBytes) socket.write('0\r\n\r\n');
        if (responded && text.includes('\r\n\r\n')) finish();
      };
      pump();
    });
  });
}

function postHead(pathname: string, headers: Record<string, string>): string {
  return `POST ${pathname} HTTP/1.1\r\nHost: 127.0.0.1\r\n${Object.entries(headers)
    .map(([k, v]) => `${k}: ${v}\r\n`)
    .join('')}\r\n`;
}

describe('slow clients', () => {
  it('the relay as started cuts off clients that trickle headers or bodies', async () => {
    const dataDir = fs.mkdtempSync(path.join(os.tmpdir(), 'relay-hostile-'));
    const running = await startRelay(testConfig({ dataDir, httpPort: 0, smtpPort: 0, internalDomains: ['corp.example'], mailDomain: 'corp.example', keysDir: undefined }), pino({ level: 'silent' }));
    try {
      // Node answers 408 and closes once these run out (checked every connectionsCheckingInterval).
      expect(running.httpServer.headersTimeout).toBeGreaterThan(0);
      expect(running.httpServer.headersTimeout).toBeLessThanOrEqual(20_000);
      expect(running.httpServer.requestTimeout).toBeGreaterThan(0);
      expect(running.httpServer.requestTimeout).toBeLessThanOrEqual(120_000);
    } finally {
      await running.stop();
      fs.rmSync(dataDir, { recursive: true, force: true });
    }
  }, 60_000);

  it('a trickling client is dropped with 408 while others are served at once (the same app, timeouts lowered)', async () => {
    const slowServer = http.createServer({ headersTimeout: 400, requestTimeout: 800, connectionsCheckingInterval: 50 }, relay.app);
    await new Promise<void>((resolve) => slowServer.listen(0, '127.0.0.1', () => resolve()));
    const slowPort = (slowServer.address() as net.AddressInfo).port;
    try {
      const trickle = (withBody: boolean) =>
        new Promise<{ text: string; ms: number }>((resolve) => {
          const started = Date.now();
          const socket = net.connect(slowPort, '127.0.0.1');
          let text = '';
          socket.setEncoding('latin1');
          socket.on('data', (d: string) => (text += d));
          socket.on('close', () => {
            clearInterval(timer);
            resolve({ text, ms: Date.now() - started });
          });
          socket.on('error', () => undefined);
          // Headers: a request line, then a header name that never ends. Body: complete headers, then a trickle.
          socket.write(withBody ? postHead(emailsUrl(), { Authorization: `Bearer ${ic}`, 'Content-Type': 'application/json', 'Content-Length': '100000' }) : 'GET /healthz HTTP/1.1\r\nHost: 127.0.0.1\r\n');
          // One byte every 50 ms: of the header when trickling headers, of the body otherwise.
          const timer = setInterval(() => {
            if (socket.destroyed) return;
            socket.write(withBody ? ' ' : 'X');
          }, 50);
        });
      const slowClients = Array.from({ length: 20 }, (_, i) => trickle(i % 2 === 1));
      // Meanwhile an ordinary client is answered at once.
      const started = Date.now();
      const ok = await fetch(`http://127.0.0.1:${slowPort}/healthz`);
      expect(ok.status).toBe(200);
      expect(Date.now() - started).toBeLessThan(2_500);
      for (const { text, ms } of await Promise.all(slowClients)) {
        expect(text).toMatch(/^HTTP\/1\.1 408/);
        expect(ms).toBeLessThan(5_000);
      }
      expect(await count('deliveries')).toBe(0);
    } finally {
      slowServer.closeAllConnections();
      await new Promise<void>((resolve) => slowServer.close(() => resolve()));
    }
  });
});

describe('oversize bodies', () => {
  const limit = jsonBodyLimit(MAX_MESSAGE_BYTES);

  it('a declared Content-Length over the limit is refused with 413 before the body is read', async () => {
    const res = await rawRequest(postHead(emailsUrl(), { Authorization: `Bearer ${ic}`, 'Content-Type': 'application/json', 'Content-Length': String(100 * 1024 * 1024) }), 100 * 1024 * 1024);
    expect(res.status).toBe(413);
    expect(res.text).toContain(`"code":"payload_too_large","message":"The request body is ${100 * 1024 * 1024} bytes; this relay accepts at most ${limit} (RELAY_MAX_MESSAGE_BYTES); send smaller attachments."`);
    // The answer came while almost all of the 100 MiB was still unsent.
    expect(res.bodySent).toBeLessThan(8 * 1024 * 1024);
    await stillUp();
  });

  it('without a token, a huge body is refused with 401 unread: nobody unauthenticated makes the relay read', async () => {
    const res = await rawRequest(postHead(emailsUrl(), { 'Content-Type': 'application/json', 'Content-Length': String(100 * 1024 * 1024) }), 100 * 1024 * 1024);
    expect(res.status).toBe(401);
    expect(res.bodySent).toBeLessThan(8 * 1024 * 1024);
  });

  it('a chunked body over the limit is refused with 413 (read and discarded, never buffered: see the memory test)', async () => {
    const res = await rawRequest(postHead(emailsUrl(), { Authorization: `Bearer ${ic}`, 'Content-Type': 'application/json', 'Transfer-Encoding': 'chunked' }), 4 * limit, { chunked: true });
    expect(res.status).toBe(413);
    expect(res.text).toContain('"code":"payload_too_large"');
    await stillUp();
  });

  it('memory stays bounded while clients keep pushing oversize bodies', async () => {
    const before = process.memoryUsage().rss;
    for (let i = 0; i < 5; i++) {
      const res = await rawRequest(postHead(emailsUrl(), { Authorization: `Bearer ${ic}`, 'Content-Type': 'application/json', 'Transfer-Encoding': 'chunked' }), 40 * 1024 * 1024, { chunked: true, keepSending: true });
      expect(res.status).toBe(413);
    }
    // 200 MiB went at the server; what it kept is at most a few limits' worth.
    const grown = process.memoryUsage().rss - before;
    expect(grown, `rss grew by ${(grown / 1024 / 1024).toFixed(1)} MiB`).toBeLessThan(100 * 1024 * 1024);
    expect(await count('deliveries')).toBe(0);
    await stillUp();
  }, 60_000);

  it('content over RELAY_MAX_MESSAGE_BYTES inside a body under the JSON limit is refused with 413, nothing queued', async () => {
    const res = await relay.request.post(emailsUrl()).set(auth()).send({ to: ['sec@corp.example'], text: 'x'.repeat(MAX_MESSAGE_BYTES + 1) });
    expect(res.status).toBe(413);
    expect(res.body.error.code).toBe('payload_too_large');
    expect(await count('deliveries')).toBe(0);
  });

  it('a text/plain key over 64 KiB is refused with 413', async () => {
    const res = await relay.request.put('/v1/keys/ic@corp.example').set(auth()).type('text/plain').send('A'.repeat(70 * 1024));
    expect(res.status).toBe(413);
    expect(res.body.error.code).toBe('payload_too_large');
  });
});

describe('bodies are parsed only under /v1, after authentication', () => {
  it.each<[string, number, string]>([
    ['/healthz', 405, 'method_not_allowed'],
    ['/nope', 404, 'not_found'],
    ['/metrics', 405, 'method_not_allowed'],
  ])('malformed JSON posted to %s without a token is not parsed: %i %s, not 400', async (pathname, status, code) => {
    const res = await fetch(`http://127.0.0.1:${port}${pathname}`, { method: 'POST', headers: { 'Content-Type': 'application/json' }, body: '{"unterminated": [' });
    expect(res.status).toBe(status);
    expect(((await res.json()) as { error: { code: string } }).error.code).toBe(code);
  });

  it('a text/plain body outside /v1 is not parsed either', async () => {
    const res = await fetch(`http://127.0.0.1:${port}/nope`, { method: 'POST', headers: { 'Content-Type': 'text/plain' }, body: 'A'.repeat(70 * 1024) });
    // Parsed, it would be 413 (over the 64 KiB text limit).
    expect(res.status).toBe(404);
  });

  it('a huge declared body outside /v1 is answered without being read: 404, not 413', async () => {
    const res = await rawRequest(postHead('/nope', { 'Content-Type': 'application/json', 'Content-Length': String(100 * 1024 * 1024) }), 100 * 1024 * 1024);
    expect(res.status).toBe(404);
    expect(res.text).toContain('"code":"not_found"');
    expect(res.bodySent).toBeLessThan(8 * 1024 * 1024);
    await stillUp();
  });

  it('an unauthenticated chunked body of malformed JSON to /v1 is refused with 401 before any parser', async () => {
    const res = await rawRequest(postHead(emailsUrl(), { 'Content-Type': 'application/json', 'Transfer-Encoding': 'chunked' }), 4 * jsonBodyLimit(MAX_MESSAGE_BYTES), { chunked: true });
    // 'aaaa…' is not JSON: a parser would have answered 400 (or 413), never 401.
    expect(res.status).toBe(401);
    expect(res.text).toContain('"code":"unauthenticated"');
    expect(res.bodySent).toBeLessThan(8 * 1024 * 1024);
    await stillUp();
  });
});

describe('malformed and deeply nested JSON', () => {
  const depth = 100_000;
  it.each<[string, string]>([
    ['arrays nested 100k deep', '['.repeat(depth) + ']'.repeat(depth)],
    ['objects nested 100k deep in a field', `{"to":${'{"a":'.repeat(depth)}1${'}'.repeat(depth)},"text":"x"}`],
    ['arrays nested 100k deep in the recipients', `{"to":${'['.repeat(depth)}${']'.repeat(depth)},"text":"x"}`],
    ['unterminated', '{"to": ["sec@corp.example"], "text": "x"'],
    ['a trailing comma', '{"to": ["sec@corp.example"], "text": "x",}'],
    ['unquoted keys', '{to: ["sec@corp.example"], text: "x"}'],
    ['a bare string', '"hello"'],
    ['null', 'null'],
    ['a number', '12'],
    ['empty', ''],
  ])('%s → 400 invalid_request, nothing queued, process up', async (_name, body) => {
    // fetch sends the bytes as they are (supertest would re-encode a Buffer as JSON).
    const res = await fetch(`http://127.0.0.1:${port}${emailsUrl()}`, { method: 'POST', headers: { ...auth(), 'Content-Type': 'application/json' }, body: Buffer.from(body, 'latin1') });
    expect(res.status).toBe(400);
    expect(((await res.json()) as { error: { code: string } }).error.code).toBe('invalid_request');
    expect(await count('deliveries')).toBe(0);
    await stillUp();
  });

  it.each<[string, string, string]>([
    ['POST', '/v1/incidents', 'incident'],
    ['POST', '/v1/tokens', 'token'],
    ['PUT', '/v1/incidents/:codename/roster/new@corp.example', 'roster'],
    ['PUT', '/v1/keys/ic@corp.example', 'key'],
    ['POST', '/v1/incidents/:codename/sms', 'sms'],
  ])('%s %s with 100k-deep JSON → 400', async (method, url) => {
    const token = url === '/v1/tokens' ? relay.admin : ic;
    const req = method === 'POST' ? relay.request.post(url.replace(':codename', codename)) : relay.request.put(url.replace(':codename', codename));
    const res = await req.set(auth(token)).set('Content-Type', 'application/json').send('['.repeat(depth) + ']'.repeat(depth));
    expect(res.status).toBe(400);
    expect(res.body.error.code).toBe('invalid_request');
  });

  it('a body that is not JSON at all (form, text, octets) is refused', async () => {
    for (const [type, body] of [
      ['application/x-www-form-urlencoded', 'to=sec%40corp.example&text=x'],
      ['text/plain', '{"to":["sec@corp.example"],"text":"x"}'],
      ['application/octet-stream', 'to sec'],
    ] as const) {
      const res = await relay.request.post(emailsUrl()).set(auth()).set('Content-Type', type).send(body);
      expect(res.status, type).toBe(400);
      expect(res.body.error.code).toBe('invalid_request');
    }
    expect(await count('deliveries')).toBe(0);
  });
});

describe('prototype pollution through the JSON body', () => {
  // The prototypes a polluting parser (a naive deep merge, `target[key] = value`
  // for "__proto__") would write to. Their own keys are compared before and after.
  const PROTOTYPES: ReadonlyArray<[string, object]> = [
    ['Object.prototype', Object.prototype],
    ['Array.prototype', Array.prototype],
    ['Function.prototype', Function.prototype],
  ];
  const ownKeys = (): Record<string, string[]> => Object.fromEntries(PROTOTYPES.map(([name, proto]) => [name, Reflect.ownKeys(proto).map(String).sort()]));
  let before: Record<string, string[]>;
  beforeEach(() => {
    before = ownKeys();
  });
  afterEach(() => {
    // Undo whatever leaked, so one failure here cannot poison every later test.
    for (const [name, proto] of PROTOTYPES) {
      for (const key of Reflect.ownKeys(proto)) if (!before[name]!.includes(String(key))) Reflect.deleteProperty(proto, key);
    }
  });

  // "bcc" is a field the email route knows: a body that inherited it (from a
  // polluted Object.prototype, or from a prototype the parser gave the body)
  // would carry a recipient nobody named into the decision. "polluted" and
  // "role" are sentinels no code reads.
  const inherited = '{"bcc":["exec@corp.example"],"polluted":"yes","role":"admin"}';
  it.each<[string, string]>([
    ['__proto__ with a known field', '{"__proto__":{"bcc":["exec@corp.example"]},"to":["sec@corp.example"],"text":"x"}'],
    ['__proto__ with sentinels', `{"__proto__":${inherited},"to":["sec@corp.example"],"text":"x"}`],
    ['constructor.prototype with a known field', '{"constructor":{"prototype":{"bcc":["exec@corp.example"]}},"to":["sec@corp.example"],"text":"x"}'],
    ['constructor.prototype with sentinels', `{"constructor":{"prototype":${inherited}},"to":["sec@corp.example"],"text":"x"}`],
    ['__proto__ inside an attachment', `{"to":["sec@corp.example"],"text":"x","attachments":[{"__proto__":${inherited},"filename":"a.txt","contentType":"text/plain","content":"eA=="}]}`],
    ['__proto__ inside an array', `{"to":["sec@corp.example"],"text":"x","references":{"__proto__":${inherited}}}`],
  ])('%s → 400, nothing queued, no prototype touched, and the next message carries nothing inherited', async (_name, body) => {
    const emails = await count('emails');
    const res = await fetch(`http://127.0.0.1:${port}${emailsUrl()}`, { method: 'POST', headers: { ...auth(), 'Content-Type': 'application/json' }, body: Buffer.from(body, 'latin1') });
    const answer = (await res.json()) as { error?: { code: string }; recipients?: string[] };
    // Pollution, if it happened, is reported first: it explains every other failure.
    expect(ownKeys()).toEqual(before);
    const probe = {} as Record<string, unknown>;
    expect([probe['polluted'], probe['role'], probe['bcc'], ([] as unknown as Record<string, unknown>)['polluted']]).toEqual([undefined, undefined, undefined, undefined]);
    // The key is refused as an unknown field: it is an own key of the parsed
    // body, never its prototype, so it cannot slip past the schema.
    expect(answer.error?.code, JSON.stringify(answer)).toBe('invalid_request');
    expect(res.status).toBe(400);
    expect(await count('deliveries')).toBe(0);
    expect(await count('emails')).toBe(emails);
    // A clean message afterwards goes to exactly whom it names: nothing inherited joins it.
    const clean = await relay.request.post(emailsUrl()).set(auth()).send({ to: ['sec@corp.example'], text: 'clean' });
    expect(clean.status).toBe(202);
    expect(clean.body.recipients).toEqual(['sec@corp.example']);
    const queued = await relay.ctx.store.sql.all<{ envelope: string }>('SELECT envelope FROM deliveries');
    expect(queued.map((d) => JSON.parse(d.envelope).to)).toEqual([['sec@corp.example']]);
    await stillUp();
  });
});

describe('absurd recipient lists', () => {
  const many = Array.from({ length: 10_000 }, (_, i) => `r${i}@corp.example`);
  it.each(['to', 'cc', 'bcc'])('10,000 addresses in %s → 400, nothing queued', async (field) => {
    const body: Record<string, unknown> = { to: ['sec@corp.example'], text: 'x', [field]: many };
    const res = await relay.request.post(emailsUrl()).set(auth()).send(body);
    expect(res.status).toBe(400);
    expect(res.body.error.code).toBe('invalid_request');
    expect(await count('deliveries')).toBe(0);
  });

  it('101 distinct recipients spread over To, Cc and Bcc → 400, nothing queued', async () => {
    const res = await relay.request.post(emailsUrl()).set(auth()).send({ to: many.slice(0, 50), cc: many.slice(50, 100), bcc: many.slice(100, 101), text: 'x' });
    expect(res.status).toBe(400);
    expect(res.body.error.message).toMatch(/At most 100 recipients/);
    expect(await count('deliveries')).toBe(0);
  });

  it('10,000 SMS recipients → 400', async () => {
    const res = await relay.request.post(`/v1/incidents/${codename}/sms`).set(auth()).send({ to: many });
    expect(res.status).toBe(400);
    expect(await count('deliveries')).toBe(0);
  });
});

describe('header injection in every header-bound field', () => {
  // CR, LF, both, NUL, and the line breaks some readers honour (NEL, LS, PS).
  const BREAKS = ['\r', '\n', '\r\n', '\0', '\u0085', '\u2028', '\u2029'];
  const evil = (b: string) => `x${b}Bcc: stranger@evil.example`;
  const good = { to: ['sec@corp.example'], text: 'hello' };
  const attachment = { filename: 'a.txt', contentType: 'text/plain', content: 'eA==' };
  const FIELDS: [string, (b: string) => Record<string, unknown>][] = [
    ['subject', (b) => ({ ...good, subject: evil(b) })],
    ['to', (b) => ({ ...good, to: [`sec@corp.example${b}`] })],
    ['cc', (b) => ({ ...good, cc: [`exec@corp.example${b}Bcc: stranger@evil.example`] })],
    ['bcc', (b) => ({ ...good, bcc: [`${b}exec@corp.example`] })],
    ['attachment filename', (b) => ({ ...good, attachments: [{ ...attachment, filename: `a${b}.txt` }] })],
    ['attachment contentType', (b) => ({ ...good, attachments: [{ ...attachment, contentType: `text/plain${b}X-Evil: 1` }] })],
    ['inReplyTo', (b) => ({ ...good, inReplyTo: `<a@b.example>${b}Bcc: stranger@evil.example` })],
    ['references', (b) => ({ ...good, references: [`<a@b.example>${b}<c@d.example>`] })],
  ];

  for (const [field, build] of FIELDS) {
    it.each(BREAKS.map((b) => [JSON.stringify(b), b]))(`email ${field} with %s → 400, nothing queued`, async (_label, b) => {
      const before = await count('deliveries');
      const res = await relay.request.post(emailsUrl()).set(auth()).send(build(b));
      expect(res.status).toBe(400);
      expect(res.body.error.code).toBe('invalid_request');
      expect(await count('deliveries')).toBe(before);
    });
  }

  it.each(BREAKS.map((b) => [JSON.stringify(b), b]))('roster name with %s → 400, roster unchanged', async (_label, b) => {
    const res = await relay.request.put(`/v1/incidents/${codename}/roster/newbie@corp.example`).set(auth()).send({ name: `New${b}Bcc: stranger@evil.example`, role: 'security' });
    expect(res.status).toBe(400);
    expect(res.body.error.code).toBe('invalid_request');
    expect(await relay.ctx.store.incidents.member((await relay.ctx.store.incidents.byCodename(codename))!.id, 'newbie@corp.example')).toBeUndefined();
  });

  it('roster name with a tab → 400: the composer would refuse it in From/To, so it is never stored', async () => {
    const res = await relay.request.put(`/v1/incidents/${codename}/roster/newbie@corp.example`).set(auth()).send({ name: 'New\tName', role: 'security' });
    expect(res.status).toBe(400);
  });

  it.each(BREAKS.map((b) => [JSON.stringify(b), b]))('token label with %s → 400, no token issued', async (_label, b) => {
    const before = await count('tokens');
    const res = await relay.request.post('/v1/tokens').set(auth(relay.admin)).send({ email: 'new@corp.example', role: 'responder', label: `ci${b}admin` });
    expect(res.status).toBe(400);
    expect(res.body.error.code).toBe('invalid_request');
    expect(await count('tokens')).toBe(before);
  });

  it('CR/LF smuggled into a path parameter → 400', async () => {
    const res = await relay.request.put(`/v1/incidents/${codename}/roster/${encodeURIComponent('a@corp.example\r\nBcc: x@evil.example')}`).set(auth()).send({ name: 'A', role: 'security' });
    expect(res.status).toBe(400);
  });

  it('a subject that only looks like an encoded Subject and Bcc still yields exactly one Subject header and no Bcc', async () => {
    const res = await relay.request.post(emailsUrl()).set(auth()).send({ ...good, subject: '=?utf-8?b?U3ViamVjdDogaGlqYWNrZWQ=?= Bcc: stranger@evil.example' });
    expect(res.status).toBe(202);
    const row = (await relay.ctx.store.sql.get<{ body: Buffer }>('SELECT body FROM deliveries WHERE email_id = ?', [res.body.id]))!;
    const head = row.body.toString('latin1').split('\r\n\r\n')[0]!;
    expect(head.split('\r\n').filter((l) => /^subject:/i.test(l))).toEqual(['Subject: Attorney Work Project']);
    expect(head).not.toMatch(/^bcc:/im);
    await relay.ctx.store.sql.run('DELETE FROM deliveries WHERE email_id = ?', [res.body.id]);
  });
});

describe('source-routed addresses (issue 10 item 1)', () => {
  const HINTS = {
    percent: 'source routing (%) is not allowed; address the recipient directly as name@their-domain',
    bang: 'bang paths (!) are not allowed; address the recipient directly as name@their-domain',
    route: 'source routes (@host:...) are not allowed; address the recipient directly as name@their-domain',
    quoted: 'quoted local parts ("..."@ or \\) are not accepted; use the plain address name@domain',
  };
  const ROUTED: [string, string, string][] = [
    ['the percent hack', 'counsel%lawfirm.example@corp.example', HINTS.percent],
    ['a bang path', 'lawfirm.example!counsel@corp.example', HINTS.bang],
    ['a source route', '@lawfirm.example:counsel@corp.example', HINTS.route],
    ['a quoted local part', '"counsel@lawfirm.example"@corp.example', HINTS.quoted],
  ];

  it.each(ROUTED.flatMap(([name, address, hint]) => (['to', 'cc', 'bcc'] as const).map((field) => [`${field} with ${name}`, field, address, hint] as const)))(
    'email %s → 400 invalid_request naming the field and the hint, nothing queued',
    async (_name, field, address, hint) => {
      const res = await relay.request
        .post(emailsUrl())
        .set(auth())
        .send({ to: ['sec@corp.example'], ...{ [field]: field === 'to' ? ['sec@corp.example', address] : [address] }, text: 'x' });
      expect(res.status).toBe(400);
      const index = field === 'to' ? 1 : 0;
      expect(res.body.error).toEqual({
        code: 'invalid_request',
        message: `Invalid request body: ${field}.${index} "${address}" ${hint}`,
        details: { fields: [{ field: `${field}.${index}`, problem: `"${address}" ${hint}` }] },
      });
      expect(await count('deliveries')).toBe(0);
    },
  );

  it.each(ROUTED)('roster entry for %s → 400 with the hint, roster unchanged (it would have passed as internal and gone out in clear)', async (_name, address, hint) => {
    const res = await relay.request.put(`/v1/incidents/${codename}/roster/${encodeURIComponent(address)}`).set(auth()).send({ name: 'Counsel', role: 'external' });
    expect(res.status).toBe(400);
    expect(res.body.error).toEqual({ code: 'invalid_request', message: `The address in the path "${address}" ${hint}.`, details: { field: 'The address in the path', reason: expect.any(String) } });
    expect(await count('roster', `email = '${address.replace(/'/g, "''")}'`)).toBe(0);
  });

  it.each(ROUTED)('key upload, token and incident commander with %s → 400, nothing stored or issued', async (_name, address, hint) => {
    const tokens = await count('tokens');
    const incidents = await count('incidents');
    const key = await relay.request.put(`/v1/keys/${encodeURIComponent(address)}`).set(auth(relay.admin)).send({ publicKey: counselKey.publicKey });
    expect([key.status, key.body.error.message]).toEqual([400, `The address in the path "${address}" ${hint}.`]);
    const token = await relay.request.post('/v1/tokens').set(auth(relay.admin)).send({ email: address, role: 'responder' });
    expect([token.status, token.body.error.message]).toEqual([400, `Invalid request body: email "${address}" ${hint}`]);
    const incident = await relay.request.post('/v1/incidents').set(auth(relay.admin)).send({ commander: address });
    expect([incident.status, incident.body.error.message]).toEqual([400, `Invalid request body: commander "${address}" ${hint}`]);
    expect(await count('tokens')).toBe(tokens);
    expect(await count('incidents')).toBe(incidents);
    expect(await count('public_keys', `email = '${address.replace(/'/g, "''")}'`)).toBe(0);
  });

  it('an SMS to a routed address → 400, nothing queued', async () => {
    const res = await relay.request.post(`/v1/incidents/${codename}/sms`).set(auth()).send({ to: ['sec@corp.example', 'counsel%lawfirm.example@corp.example'] });
    expect(res.status).toBe(400);
    expect(res.body.error.code).toBe('invalid_request');
    expect(await count('deliveries')).toBe(0);
  });
});

describe('malformed percent-escapes in path parameters (issue 10 item 18)', () => {
  it.each([
    ['DELETE', '/v1/tokens/%zz'],
    ['GET', `/v1/incidents/%E0%A4%A`],
    ['PUT', `/v1/incidents/:c/roster/a%zz@corp.example`],
    ['GET', `/v1/incidents/:c/emails/%`],
    ['GET', '/v1/keys/%C0%AFx@corp.example'],
  ])('%s %s → 400 invalid_request, no stack trace logged as an error', async (method, url) => {
    const lines: { level: number; msg: string; err?: { stack?: string } }[] = [];
    const logger = pino({ level: 'debug' }, { write: (line: string) => void lines.push(JSON.parse(line) as (typeof lines)[number]) });
    const app = createApp({ ...relay.ctx, logger });
    const path = url.replace(':c', codename);
    const r = supertest(app);
    const req = method === 'GET' ? r.get(path) : method === 'PUT' ? r.put(path).send({ name: 'A', role: 'security' }) : r.delete(path);
    const res = await req.set(auth(relay.admin));
    expect(res.status).toBe(400);
    expect(res.body).toEqual({
      error: {
        code: 'invalid_request',
        message: 'The URL path holds a malformed percent-escape (a % not followed by two hex digits, or bytes that are not UTF-8); write % as %25 and encode the rest as UTF-8.',
      },
    });
    expect(lines.filter((l) => l.level >= 50)).toEqual([]);
    expect(lines.some((l) => l.err?.stack !== undefined)).toBe(false);
  });
});

describe('path traversal in attachment names', () => {
  it.each(['../../etc/passwd', '..\\..\\windows\\win.ini', '/etc/passwd', 'C:\\Windows\\system.ini', 'reports/q3.pdf', '.bashrc', '..', '.', ' ', ''])('%j → 400, nothing queued', async (filename) => {
    const res = await relay.request.post(emailsUrl()).set(auth()).send({ to: ['sec@corp.example'], text: 'x', attachments: [{ filename, contentType: 'text/plain', content: 'eA==' }] });
    expect(res.status).toBe(400);
    expect(res.body.error.code).toBe('invalid_request');
    expect(await count('deliveries')).toBe(0);
  });

  it('a percent-encoded or look-alike name is carried as a literal label, and the local outbox names files by id only', async () => {
    const names = ['%2e%2e%2f%2e%2e%2fetc%2fpasswd', '%2e%2e%5cwin.ini', '…／etc／passwd'];
    const res = await relay.request
      .post(emailsUrl())
      .set(auth())
      .send({ to: ['sec@corp.example'], text: 'x', attachments: names.map((filename) => ({ filename, contentType: 'text/plain', content: 'eA==' })) });
    expect(res.status).toBe(202);
    const dir = fs.mkdtempSync(path.join(os.tmpdir(), 'relay-outbox-'));
    try {
      await new DeliveryWorker(relay.ctx, { channels: { email: createOutboxDirChannel(dir) } }).drain();
      const files = fs.readdirSync(dir);
      expect(files).toHaveLength(1);
      expect(files[0]).toMatch(/^[0-9a-f-]{36}\.eml$/);
      const parsed = await simpleParser(fs.readFileSync(path.join(dir, files[0]!)));
      // RFC 2231 encoding keeps '%' literal: a reader decodes exactly what was sent, never "../".
      expect(parsed.attachments.map((a) => a.filename)).toEqual(names);
    } finally {
      fs.rmSync(dir, { recursive: true, force: true });
    }
  });
});

describe('malformed key armour', () => {
  const body = () => counselKey.publicKey;
  const cases: [string, () => Promise<string> | string][] = [
    ['truncated armour (no END line)', () => body().slice(0, Math.floor(body().length / 2))],
    [
      'truncated packets inside a complete armour',
      () => {
        const lines = body().split('\n');
        const start = lines.findIndex((l) => l === '') + 1;
        return [...lines.slice(0, start + 2), '-----END PGP PUBLIC KEY BLOCK-----', ''].join('\n');
      },
    ],
    [
      'corrupted packet bytes',
      () => {
        const lines = body().split('\n');
        const mid = Math.floor(lines.length / 2);
        lines[mid] = lines[mid]!.split('').reverse().join('');
        return lines.join('\n');
      },
    ],
    ['binary junk', () => Buffer.from(Array.from({ length: 3000 }, (_, i) => (i * 7919) % 256)).toString('latin1')],
    ['junk inside a PUBLIC KEY armour', () => `-----BEGIN PGP PUBLIC KEY BLOCK-----\n\n${Buffer.alloc(900, 0xa5).toString('base64').replace(/.{64}/g, '$&\n')}\n-----END PGP PUBLIC KEY BLOCK-----\n`],
    ['a PGP MESSAGE', async () => (await openpgp.encrypt({ message: await openpgp.createMessage({ text: 'hi' }), encryptionKeys: await openpgp.readKey({ armoredKey: body() }) })) as string],
    ['a PGP SIGNATURE', async () => (await openpgp.sign({ message: await openpgp.createMessage({ text: 'hi' }), signingKeys: await openpgp.readPrivateKey({ armoredKey: counselKey.privateKey }), detached: true })) as string],
    ['a private key', () => counselKey.privateKey],
    ['a private key under a PUBLIC KEY header', () => counselKey.privateKey.replace(/PRIVATE KEY BLOCK/g, 'PUBLIC KEY BLOCK')],
    ['two public keys', () => body() + '\n' + body()],
    ['an empty body', () => ''],
  ];

  it.each(cases)('%s → a 4xx refusal on every upload path, nothing stored', async (name, make) => {
    const armored = await make();
    const owner = await relay.tokenFor('counsel@lawfirm.example');
    const text = await relay.request.put('/v1/keys/counsel@lawfirm.example').set(auth(owner)).type('text/plain').send(armored);
    const json = await relay.request.put('/v1/keys/counsel@lawfirm.example').set(auth(owner)).send({ publicKey: armored });
    const roster = await relay.request.put(`/v1/incidents/${codename}/roster/counsel@lawfirm.example`).set(auth()).send({ name: 'Counsel', role: 'external', publicKey: armored });
    for (const res of [text, json, roster]) {
      // Bytes flipped inside a packet can leave a parseable primary key whose subkey
      // binding no longer verifies: that is an unusable key (422), still never a 5xx.
      const allowed = name === 'corrupted packet bytes' ? ['invalid_request', 'unusable_public_key'] : ['invalid_request'];
      expect(res.status, JSON.stringify(res.body)).toBe(res.body.error?.code === 'unusable_public_key' ? 422 : 400);
      expect(allowed).toContain(res.body.error.code);
      // Never an echo of what was sent.
      expect(JSON.stringify(res.body)).not.toContain(armored.slice(40, 80) || '\u0000');
    }
    expect(await relay.ctx.keys.get('counsel@lawfirm.example')).toBeUndefined();
    expect(await relay.ctx.store.incidents.member((await relay.ctx.store.incidents.byCodename(codename))!.id, 'counsel@lawfirm.example')).toBeUndefined();
  });

  it('a key whose user ID is someone else → 422 unusable_public_key', async () => {
    const res = await relay.request.put('/v1/keys/ic@corp.example').set(auth()).type('text/plain').send(body());
    expect(res.status).toBe(422);
    expect(res.body.error).toMatchObject({ code: 'unusable_public_key', details: { reason: 'user_id_mismatch' } });
  });

  it('a wrong CRC24 line alone is not an error: the key is read and its self-signatures decide', async () => {
    // RFC 9580 §6.1: a mismatched armour checksum must not cause rejection;
    // integrity comes from the key's signatures, which are verified.
    const armored = body().replace(/^=[A-Za-z0-9+/]{4}$/m, '=AAAA');
    expect(armored).not.toBe(body());
    const res = await relay.request.put('/v1/keys/counsel@lawfirm.example').set(auth(await relay.tokenFor('counsel@lawfirm.example'))).type('text/plain').send(armored);
    expect(res.status).toBe(200);
    expect(res.body.fingerprint).toBe((await openpgp.readKey({ armoredKey: body() })).getFingerprint().toUpperCase());
    expect(await relay.ctx.store.sql.run('DELETE FROM public_keys WHERE email = ?', ['counsel@lawfirm.example'])).toBe(1);
  });
});

describe('unknown incidents', () => {
  const routes: [string, string, Record<string, unknown> | undefined][] = [
    ['GET', '/v1/incidents/:c', undefined],
    ['PATCH', '/v1/incidents/:c', { status: 'closed' }],
    ['GET', '/v1/incidents/:c/roster', undefined],
    ['PUT', '/v1/incidents/:c/roster/sec@corp.example', { name: 'Sec', role: 'security' }],
    ['DELETE', '/v1/incidents/:c/roster/sec@corp.example', undefined],
    ['GET', '/v1/incidents/:c/audit', undefined],
    ['POST', '/v1/incidents/:c/emails', { to: ['sec@corp.example'], text: 'x' }],
    ['GET', '/v1/incidents/:c/emails/00000000-0000-0000-0000-000000000000', undefined],
    ['POST', '/v1/incidents/:c/sms', { to: 'roster' }],
    ['POST', '/v1/incidents/:c/slack/sync', {}],
  ];
  const send = (method: string, url: string, token: string, body?: Record<string, unknown>) => {
    const r = relay.request;
    const req = method === 'GET' ? r.get(url) : method === 'PATCH' ? r.patch(url) : method === 'PUT' ? r.put(url) : method === 'DELETE' ? r.delete(url) : r.post(url);
    return body === undefined ? req.set(auth(token)) : req.set(auth(token)).send(body);
  };

  it.each(routes)('%s %s → 404 for a codename that does not exist, for a non-member, and for a traversal attempt', async (method, url, body) => {
    const before = await count('deliveries');
    const outsider = await relay.tokenFor('outsider@corp.example');
    for (const [c, token] of [
      ['no-such-incident', ic],
      [codename, outsider],
      ['..%2f..%2fv1%2ftokens', ic],
    ] as const) {
      const res = await send(method, url.replace(':c', c), token, body);
      expect(res.status, `${method} ${url} as ${token === ic ? 'ic' : 'outsider'} on ${c}`).toBe(404);
      expect(res.body.error.code).toBe('not_found');
    }
    expect(await count('deliveries')).toBe(before);
  });
});

describe('rate limits per token on the sending routes', () => {
  it('SMS: 429 rate_limited with Retry-After, shared with email, and nothing more queued', async () => {
    const limited = await createTestRelay();
    limited.ctx.sendLimiter = new RateLimiter({ perMinute: 1, burst: 1 });
    const token = await limited.tokenFor('ic@corp.example');
    const a = { Authorization: `Bearer ${token}` };
    const c = (await limited.request.post('/v1/incidents').set(a).send({})).body.codename as string;
    await limited.request.put(`/v1/incidents/${c}/roster/sec@corp.example`).set(a).send({ name: 'Sec', role: 'security', phone: '+15555550100' });
    const queued = async () => (await limited.ctx.store.sql.get<{ n: number }>('SELECT COUNT(*) AS n FROM deliveries'))!.n;

    const first = await limited.request.post(`/v1/incidents/${c}/sms`).set(a).send({ to: ['sec@corp.example'] });
    expect(first.status).toBe(202);
    const afterFirst = await queued();
    const second = await limited.request.post(`/v1/incidents/${c}/sms`).set(a).send({ to: ['sec@corp.example'] });
    expect(second.status).toBe(429);
    expect(second.body.error.code).toBe('rate_limited');
    expect(second.headers['retry-after']).toBe('60');
    // One bucket per token across routes: the email route is limited too.
    const email = await limited.request.post(`/v1/incidents/${c}/emails`).set(a).send({ to: ['sec@corp.example'], text: 'x' });
    expect(email.status).toBe(429);
    expect(await queued()).toBe(afterFirst);
    // Another token has its own bucket.
    const other = await limited.tokenFor('ic@corp.example');
    expect((await limited.request.post(`/v1/incidents/${c}/emails`).set({ Authorization: `Bearer ${other}` }).send({ to: ['sec@corp.example'], text: 'x' })).status).toBe(202);
  });
});
