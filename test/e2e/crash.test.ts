/**
 * `kill -9` under load (issue 7, SPEC §6 "accepted means durable"): the built
 * relay is run as an operator runs it, its upstream is down, a thousand
 * messages are accepted while sixteen requests at a time are in flight and
 * the worker is busy failing retries, and the process is killed without
 * warning. After the upstream comes back and the relay restarts on the same
 * data dir, every Message-ID that was answered 202 must arrive. Duplicates are
 * allowed (at-least-once); a missing one is a lost message. On SQLite and on
 * PostgreSQL, where the restarted relay is a new replica that must take over
 * the leases the dead one held on its in-flight deliveries.
 */
import { randomBytes } from 'node:crypto';
import path from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { buildDist } from '../helpers/build.js';
import { freshDatabaseUrl } from '../helpers/postgres.js';
import { BANNER_END, bannerPorts, freePort, killRelayProcesses, relayEnv, startRelayProcess, stopRelayProcess, tempDirs, waitForOutput } from '../helpers/process.js';
import { startUpstream, type Upstream } from '../helpers/upstream.js';

const MESSAGES = 1_000;
const CONCURRENCY = 16;
// The per-token limit allows a burst of 60 (src/services/rate-limit.ts); 20 senders × 55 stays inside it.
const SENDERS = 20;
const MAX_ATTEMPTS = SENDERS * 55;

const temp = tempDirs();
let upstream: Upstream | undefined;

beforeAll(() => {
  buildDist();
}, 240_000);

afterAll(async () => {
  killRelayProcesses();
  await upstream?.stop();
  temp.cleanup();
});

function messageIdOf(raw: Buffer): string {
  return /^Message-ID: (<[^>\r\n]+>)/im.exec(raw.toString('latin1'))?.[1] ?? '';
}

/** The store of each run: the default SQLite file in the data dir, or a PostgreSQL database. */
const STORES: Array<[string, () => Promise<Record<string, string>>]> = [
  ['SQLite', async () => ({})],
  // A short lease, so the deliveries the killed relay held are taken over well within the deadline below.
  ['PostgreSQL', async () => ({ RELAY_DATABASE_URL: await freshDatabaseUrl(), RELAY_DELIVERY_LEASE: '2s' })],
];

describe.each(STORES)('kill -9 under load on %s', (_name, storeEnv) => {
  it(`delivers every one of ${MESSAGES} accepted messages after a SIGKILL and a restart`, async () => {
    const upstreamPort = await freePort();
    const adminToken = randomBytes(24).toString('base64url');
    const env = relayEnv({
      ...(await storeEnv()),
      RELAY_DATA_DIR: path.join(temp.make('relay-crash-'), 'data'),
      RELAY_HTTP_PORT: '0',
      RELAY_SMTP_PORT: '0',
      RELAY_ADMIN_TOKEN: adminToken,
      RELAY_INTERNAL_DOMAINS: 'corp.example',
      // Nothing listens here yet: every delivery attempt fails and is rescheduled.
      RELAY_SMTP_UPSTREAM: `smtp://127.0.0.1:${upstreamPort}`,
      RELAY_LOG_LEVEL: 'error',
    });
    const cwd = temp.make('relay-crash-cwd-');
    let base = '';
    const call = async (token: string, method: string, url: string, body?: unknown): Promise<{ status: number; json: Record<string, unknown> }> => {
      const res = await fetch(base + url, {
        method,
        headers: { authorization: `Bearer ${token}`, 'content-type': 'application/json' },
        ...(body === undefined ? {} : { body: JSON.stringify(body) }),
      });
      return { status: res.status, json: (await res.json()) as Record<string, unknown> };
    };

    const first = startRelayProcess(env, cwd);
    await waitForOutput(first, BANNER_END, 60_000);
    base = `http://127.0.0.1:${bannerPorts(first.output().stdout).http}`;

    const incident = await call(adminToken, 'POST', '/v1/incidents', { commander: 'ic@corp.example' });
    expect(incident.status).toBe(201);
    const codename = incident.json['codename'] as string;
    const roster = (email: string) => call(adminToken, 'PUT', `/v1/incidents/${codename}/roster/${email}`, { name: email.split('@')[0], role: 'security' });
    expect((await roster('sec@corp.example')).status).toBe(201);
    const tokens: string[] = [];
    for (let i = 0; i < SENDERS; i++) {
      const email = `responder${i}@corp.example`;
      expect((await roster(email)).status).toBe(201);
      const issued = await call(adminToken, 'POST', '/v1/tokens', { email, role: 'responder' });
      expect(issued.status).toBe(201);
      tokens.push(issued.json['token'] as string);
    }

    // Sixteen senders at a time; the moment the thousandth 202 arrives, SIGKILL,
    // with the other requests still in flight and the worker mid-retry.
    const accepted: string[] = [];
    let next = 0;
    let killed = false;
    let lostInFlight = 0;
    const sender = async (): Promise<void> => {
      while (!killed && next < MAX_ATTEMPTS) {
        const i = next++;
        try {
          const res = await call(tokens[i % SENDERS]!, 'POST', `/v1/incidents/${codename}/emails`, { to: ['sec@corp.example'], text: `load ${i}` });
          expect(res.status, JSON.stringify(res.json)).toBe(202);
          accepted.push(res.json['messageId'] as string);
          if (accepted.length >= MESSAGES && !killed) {
            killed = true;
            first.child.kill('SIGKILL');
          }
        } catch (err) {
          // Only the requests cut off by the kill may fail, and they were never answered 202.
          if (!killed) throw err;
          lostInFlight += 1;
        }
      }
    };
    await Promise.all(Array.from({ length: CONCURRENCY }, sender));
    expect(await first.exited).toEqual({ code: null, signal: 'SIGKILL' });
    expect(accepted.length).toBeGreaterThanOrEqual(MESSAGES);
    expect(new Set(accepted).size).toBe(accepted.length);

    // The upstream comes back; the relay restarts on the same data dir.
    upstream = await startUpstream(upstreamPort);
    const second = startRelayProcess(env, cwd);
    await waitForOutput(second, BANNER_END, 60_000);

    const wanted = new Set(accepted);
    const deadline = Date.now() + 45_000;
    let arrived = new Set<string>();
    while (Date.now() < deadline) {
      arrived = new Set(upstream.received.map((m) => messageIdOf(m.raw)));
      if ([...wanted].every((id) => arrived.has(id))) break;
      await new Promise((resolve) => setTimeout(resolve, 200));
    }
    const missing = [...wanted].filter((id) => !arrived.has(id));
    expect(missing, `${missing.length} accepted message(s) never arrived (${lostInFlight} requests were cut off by the kill)`).toEqual([]);
    // Whatever else arrived was a request the kill cut off after its commit: delivered, never answered.
    expect(arrived.size - wanted.size).toBeLessThanOrEqual(lostInFlight);
    for (const mail of upstream.received) expect(mail.to).toEqual(['sec@corp.example']);

    expect(await stopRelayProcess(second)).toEqual({ code: 0, signal: null });
    await upstream.stop();
    upstream = undefined;
  }, 150_000);
});
