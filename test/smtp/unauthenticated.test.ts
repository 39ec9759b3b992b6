/**
 * Unauthenticated SMTP clients cannot grow the audit log (issue 10 §16):
 * connections that never log in and failed AUTH attempts are counted in
 * memory and audited as one `smtp.unauthenticated_summary` per interval,
 * with exact counts; what an authenticated user does is still audited event
 * by event. The real listener on port 0, raw sockets, the real store.
 */
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { afterAll, afterEach, beforeAll, describe, expect, it } from 'vitest';
import { startSmtpListener, type SmtpListener } from '../../src/smtp/listener.js';
import { loadOrCreateTlsCertificate, type TlsMaterial } from '../../src/smtp/tls.js';
import { networkOf, UnauthenticatedTally } from '../../src/smtp/unauthenticated.js';
import { BACKENDS, createTestRelay, type TestRelay } from '../helpers/relay.js';
import { connectRaw, type RawSmtp } from './raw-client.js';

let tls: TlsMaterial;
let tlsDir: string;
beforeAll(async () => {
  tlsDir = fs.mkdtempSync(path.join(os.tmpdir(), 'relay-unauth-tls-'));
  tls = await loadOrCreateTlsCertificate({ dataDir: tlsDir });
});
afterAll(() => fs.rmSync(tlsDir, { recursive: true, force: true }));

let relay: TestRelay | undefined;
let listener: SmtpListener | undefined;
const raws: RawSmtp[] = [];
afterEach(async () => {
  for (const r of raws.splice(0)) r.close();
  await listener?.close();
  await relay?.ctx.store.close();
  listener = undefined;
  relay = undefined;
});

interface Event {
  seq: number;
  type: string;
  actor: string | null;
  outcome: string;
  data: Record<string, unknown>;
}

async function eventsAfter(r: TestRelay, seq: number): Promise<Event[]> {
  const rows = await r.ctx.store.sql.all<Omit<Event, 'data'> & { data: string }>('SELECT seq, type, actor, outcome, data FROM audit_events WHERE seq > ? ORDER BY seq', [seq]);
  return rows.map((row) => ({ ...row, data: JSON.parse(row.data) as Record<string, unknown> }));
}

async function headSeq(r: TestRelay): Promise<number> {
  return (await r.ctx.store.audit.head()).seq;
}

/** relay_smtp_unauthenticated_total by reason. */
async function counted(r: TestRelay): Promise<Record<string, number>> {
  const metric = await r.ctx.metrics.smtpUnauthenticated.get();
  return Object.fromEntries(metric.values.map((v) => [String(v.labels['reason']), v.value]));
}

async function eventually<T>(probe: () => Promise<T | undefined>, timeoutMs = 10_000): Promise<T> {
  const deadline = Date.now() + timeoutMs;
  for (;;) {
    const value = await probe();
    if (value !== undefined) return value;
    if (Date.now() > deadline) throw new Error('condition not met in time');
    await new Promise((resolve) => setTimeout(resolve, 20));
  }
}

async function raw(port: number): Promise<RawSmtp> {
  const r = await connectRaw(port);
  raws.push(r);
  return r;
}

describe.each(BACKENDS)('unauthenticated SMTP clients (%s)', (backend) => {
  it('50 connections and 50 failed AUTHs add one summary event with the exact counts; a logged-in session is still audited', async () => {
    relay = await createTestRelay({}, { backend });
    const r = relay;
    const ic = await r.tokenFor('ic@corp.example');
    listener = await startSmtpListener(r.ctx, { host: '127.0.0.1', port: 0, tls });
    const port = listener.port;
    const before = await headSeq(r);

    // 50 connections that greet and leave without logging in.
    for (let i = 0; i < 50; i++) {
      const c = await raw(port);
      expect((await c.command('EHLO scanner.test')).code).toBe(250);
      expect((await c.command('QUIT')).code).toBe(221);
      await c.closed;
    }
    // 50 failed AUTHs, two per connection (under the per-connection cut of 3): one
    // username that is a pasted token, then 49 guessed addresses with a wrong token.
    const pastedToken = 'ir_0123456789abcdef_' + 'P'.repeat(43);
    const attempts = [pastedToken, ...Array.from({ length: 49 }, (_, i) => `guess${i}@corp.example`)];
    const codes: number[] = [];
    for (let i = 0; i < attempts.length; i += 2) {
      const c = await raw(port);
      await c.startTls(tls.cert);
      for (const user of attempts.slice(i, i + 2)) codes.push((await c.authPlain(user, 'not-a-token')).code);
      expect((await c.command('QUIT')).code).toBe(221);
      await c.closed;
    }
    // The back-off is unchanged: 20 free failures from one IP, the 21st opens a
    // 2 s window (the test clock stands still), and every later attempt is refused unchecked.
    expect(codes).toEqual([...Array<number>(21).fill(535), ...Array<number>(29).fill(454)]);

    // Counted, not audited: 75 connections never logged in.
    const counts = await eventually(async () => {
      const c = await counted(r);
      return c['connection'] === 75 ? c : undefined;
    });
    expect(counts).toEqual({ connection: 75, bad_username: 1, unknown_token: 20, backoff: 29 });
    expect(await eventsAfter(r, before)).toEqual([]);

    // A responder logs in once the window has passed: their session is audited as before.
    r.clock.advance(2_001);
    const me = await raw(port);
    await me.startTls(tls.cert);
    expect((await me.authPlain('ic@corp.example', ic)).code).toBe(235);
    expect((await me.command('QUIT')).code).toBe(221);
    await me.closed;
    const session = await eventually(async () => (await eventsAfter(r, before)).find((e) => e.type === 'smtp.session'));
    expect(session).toMatchObject({ actor: 'ic@corp.example', outcome: 'ok', data: { via: 'smtp', tls: true, user: 'ic@corp.example', authFailures: 0, accepted: 0, refused: {} } });

    await listener.summarizeUnauthenticated();
    const added = await eventsAfter(r, before);
    expect(added.map((e) => e.type)).toEqual(['smtp.session', 'smtp.unauthenticated_summary']);
    const summary = added[1]!;
    expect(summary).toMatchObject({ actor: null, outcome: 'refused' });
    const data = summary.data as Record<string, unknown> & { usernames: Array<Record<string, unknown>> };
    expect({ ...data, usernames: undefined }).toEqual({
      via: 'smtp',
      replica: r.ctx.replicaId,
      from: expect.any(String),
      until: r.clock.now().toISOString(),
      connections: { total: 75, beforeGreeting: 0, cut: {} },
      authFailures: { total: 50, reasons: { bad_username: 1, unknown_token: 20, backoff: 29 } },
      networks: [{ network: '127.0.0.0/24', connections: 75, authFailures: 50 }],
      networksOmitted: 0,
      usernames: undefined,
      usernamesOmitted: 0,
    });
    expect(data.usernames).toHaveLength(50);
    expect(data.usernames).toContainEqual({ username: 'guess48@corp.example', authFailures: 1 });
    // The pasted token is kept only as a short hash.
    expect(data.usernames).toContainEqual({ usernameSha256: expect.stringMatching(/^[0-9a-f]{16}$/), authFailures: 1 });
    expect(JSON.stringify(await r.ctx.store.sql.all('SELECT * FROM audit_events'))).not.toContain(pastedToken);

    // Nothing new: no event.
    await listener.summarizeUnauthenticated();
    expect(await eventsAfter(r, before)).toHaveLength(2);
    expect((await r.ctx.store.audit.verify()).ok).toBe(true);
  });

  it('audits a valid token presented for another address at once, with its id, and counts it', async () => {
    relay = await createTestRelay({}, { backend });
    const r = relay;
    const sec = await r.tokenFor('sec@corp.example');
    listener = await startSmtpListener(r.ctx, { host: '127.0.0.1', port: 0, tls });
    const before = await headSeq(r);
    const c = await raw(listener.port);
    await c.startTls(tls.cert);
    expect((await c.authPlain('ic@corp.example', sec)).code).toBe(535);
    const [event] = await eventsAfter(r, before);
    expect(event).toMatchObject({
      type: 'smtp.auth_failed',
      actor: 'ic@corp.example',
      outcome: 'refused',
      data: { reason: 'token_of_other_user', tokenId: (await r.ctx.store.tokens.verify(sec))!.id, username: 'ic@corp.example', ip: '127.0.0.1' },
    });
    expect(JSON.stringify(event)).not.toContain(sec);
    expect(await counted(r)).toEqual({ token_of_other_user: 1 });
  });

  it('counts a connection cut before the greeting, and audits the last summary at close', async () => {
    relay = await createTestRelay({}, { backend });
    const r = relay;
    listener = await startSmtpListener(r.ctx, { host: '127.0.0.1', port: 0, tls, limits: { maxClients: 1 } });
    const before = await headSeq(r);
    const first = await raw(listener.port);
    expect(first.greeting.code).toBe(220);
    const second = await raw(listener.port);
    expect(second.greeting.code).toBe(421);
    await second.closed;
    first.close();
    await eventually(async () => ((await counted(r))['connection'] === 1 ? true : undefined));
    await listener.close();
    const [summary, ...rest] = await eventsAfter(r, before);
    expect(rest).toEqual([]);
    expect(summary).toMatchObject({ type: 'smtp.unauthenticated_summary', data: { connections: { total: 2, beforeGreeting: 1, cut: {} }, authFailures: { total: 0, reasons: {} } } });
    expect(await counted(r)).toEqual({ connection: 1, before_greeting: 1 });
  });
});

describe('the tally', () => {
  const noCounter = { inc: () => undefined };

  it('buckets IPv4 by /24 and IPv6 by /64', () => {
    expect(networkOf('203.0.113.77')).toBe('203.0.113.0/24');
    expect(networkOf('::ffff:198.51.100.9')).toBe('198.51.100.0/24');
    expect(networkOf('2001:db8:1:2:3:4:5:6')).toBe('2001:db8:1:2::/64');
  });

  it('keeps its maps bounded: past the limit, new networks and addresses are only counted as omitted', () => {
    const at = new Date('2026-01-01T00:00:00.000Z');
    const tally = new UnauthenticatedTally(noCounter, at, 3);
    for (let i = 0; i < 10; i++) tally.authFailure('unknown_token', `192.0.${i}.1`, `u${i}@corp.example`);
    const summary = tally.take('r1', new Date(at.getTime() + 1000))!;
    expect(summary.networks.map((n) => n.network)).toEqual(['192.0.0.0/24', '192.0.1.0/24', '192.0.2.0/24']);
    expect(summary.networksOmitted).toBe(7);
    expect(summary.usernames).toHaveLength(3);
    expect(summary.usernamesOmitted).toBe(7);
    expect(summary.authFailures.total).toBe(10);
    // Taken: the next interval starts empty, and an empty one has nothing to report.
    expect(tally.take('r1', new Date(at.getTime() + 2000))).toBeUndefined();
  });

  it('counts two spellings of one address (a Unicode domain, its A-label, any case) as one claimant, under the normalised form', () => {
    const tally = new UnauthenticatedTally(noCounter, new Date());
    tally.authFailure('unknown_token', '192.0.2.1', 'Ana@Bücher.example');
    tally.authFailure('unknown_token', '192.0.2.1', 'ana@xn--bcher-kva.example');
    tally.authFailure('unknown_token', '192.0.2.1', ' ANA@XN--BCHER-KVA.EXAMPLE ');
    const summary = tally.take('r1', new Date())!;
    expect(summary.usernames).toEqual([{ username: 'ana@xn--bcher-kva.example', authFailures: 3 }]);
    expect(summary.usernamesOmitted).toBe(0);
  });

  it('names the 50 busiest networks, most first, and counts the rest', () => {
    const tally = new UnauthenticatedTally(noCounter, new Date());
    for (let i = 0; i < 60; i++) for (let k = 0; k <= i; k++) tally.connection(`10.0.${i}.9`);
    const summary = tally.take('r1', new Date())!;
    expect(summary.networks).toHaveLength(50);
    expect(summary.networks[0]).toEqual({ network: '10.0.59.0/24', connections: 60, authFailures: 0 });
    expect(summary.networks[49]).toEqual({ network: '10.0.10.0/24', connections: 11, authFailures: 0 });
    expect(summary.networksOmitted).toBe(10);
  });
});
