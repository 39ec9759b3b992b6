/**
 * Several relays on one PostgreSQL database (issue 11, "done when"): two
 * built relays run as an operator runs them, sharing one database, one relay
 * key and one real smtp-server upstream. A thousand messages go in through
 * both relays' HTTP and SMTP listeners; one relay is killed with SIGKILL in
 * the middle of the load. Then:
 *
 * - every accepted message arrives at the upstream (the survivor takes over
 *   the dead relay's leased deliveries once the leases expire);
 * - none arrives twice except those the dead relay had in flight at the kill
 *   (counted from the leases it held);
 * - the one audit chain verifies, and each accepted message's decision is
 *   audited exactly once.
 */
import { randomBytes } from 'node:crypto';
import fs from 'node:fs';
import path from 'node:path';
import nodemailer, { type Transporter } from 'nodemailer';
import pg from 'pg';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { loadOrCreateRelayKey } from '../../src/pgp/relay-key.js';
import { buildDist } from '../helpers/build.js';
import { freshDatabaseUrl } from '../helpers/postgres.js';
import { BANNER_END, bannerPorts, killRelayProcesses, relayEnv, startRelayProcess, stopRelayProcess, tempDirs, waitForOutput, type RelayProcess } from '../helpers/process.js';
import { startUpstream, type Upstream } from '../helpers/upstream.js';

const MESSAGES = 1_000;
// Killed once this many messages were accepted: the rest go through the survivor.
const KILL_AFTER = 400;
const CONCURRENCY = 16;
// Send limits are shared by the replicas (a burst of 60 per token): 30 senders × 40 stays inside it.
const SENDERS = 30;
const PER_SENDER = 40;

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

/** The replica id a relay printed in its banner. */
function replicaOf(relay: RelayProcess): string {
  const id = /\(replica ([^)]+)\)/.exec(relay.output().stdout)?.[1];
  if (!id) throw new Error(`no replica id in the banner:\n${relay.output().stdout}`);
  return id;
}

describe('two relays on one PostgreSQL database', () => {
  it(`deliver every one of ${MESSAGES} messages accepted over both, with one killed mid-load`, async () => {
    upstream = await startUpstream();
    const databaseUrl = await freshDatabaseUrl();
    const keyDir = temp.make('relay-replicas-key-');
    const { path: keyFile } = await loadOrCreateRelayKey({ dataDir: keyDir, userId: { name: 'incident-relay', email: 'relay@corp.example' } });
    const adminToken = randomBytes(24).toString('base64url');
    const envFor = (name: string) =>
      relayEnv({
        RELAY_DATA_DIR: path.join(temp.make(`relay-${name}-`), 'data'),
        RELAY_DATABASE_URL: databaseUrl,
        // Every replica signs with the same key (a relay with another key refuses to start).
        RELAY_KEY_FILE: keyFile,
        RELAY_HTTP_PORT: '0',
        RELAY_SMTP_PORT: '0',
        RELAY_ADMIN_TOKEN: adminToken,
        RELAY_INTERNAL_DOMAINS: 'corp.example',
        RELAY_SMTP_UPSTREAM: upstream!.url,
        // A short lease: the survivor takes over the dead relay's deliveries after 3 s.
        RELAY_DELIVERY_LEASE: '3s',
        // Test clients log in without STARTTLS, on loopback only.
        RELAY_SMTP_ALLOW_INSECURE_AUTH: 'true',
        RELAY_LOG_LEVEL: 'error',
      });
    const relays = [startRelayProcess(envFor('a'), temp.make('relay-a-cwd-')), startRelayProcess(envFor('b'), temp.make('relay-b-cwd-'))];
    for (const relay of relays) await waitForOutput(relay, BANNER_END, 60_000);
    const ports = relays.map((r) => bannerPorts(r.output().stdout));
    const [victim, survivor] = relays as [RelayProcess, RelayProcess];
    const victimReplica = replicaOf(victim);

    const call = async (relay: number, token: string, method: string, url: string, body?: unknown): Promise<{ status: number; json: Record<string, unknown> }> => {
      const res = await fetch(`http://127.0.0.1:${ports[relay]!.http}${url}`, {
        method,
        headers: { authorization: `Bearer ${token}`, 'content-type': 'application/json' },
        ...(body === undefined ? {} : { body: JSON.stringify(body) }),
      });
      return { status: res.status, json: (await res.json()) as Record<string, unknown> };
    };

    // Set up through both relays: they share everything in the database.
    const incident = await call(0, adminToken, 'POST', '/v1/incidents', { commander: 'ic@corp.example' });
    expect(incident.status).toBe(201);
    const codename = incident.json['codename'] as string;
    expect((await call(1, adminToken, 'PUT', `/v1/incidents/${codename}/roster/sec@corp.example`, { name: 'Sec', role: 'security' })).status).toBe(201);
    const senders: Array<{ email: string; token: string }> = [];
    for (let i = 0; i < SENDERS; i++) {
      const email = `responder${i}@corp.example`;
      expect((await call(i % 2, adminToken, 'PUT', `/v1/incidents/${codename}/roster/${email}`, { name: `R${i}`, role: 'service-owner' })).status).toBe(201);
      const issued = await call(i % 2, adminToken, 'POST', '/v1/tokens', { email, role: 'responder' });
      expect(issued.status).toBe(201);
      senders.push({ email, token: issued.json['token'] as string });
    }

    const transports = new Map<string, Transporter>();
    const smtpTo = (relay: number, sender: { email: string; token: string }): Transporter => {
      const key = `${relay} ${sender.email}`;
      let transport = transports.get(key);
      if (!transport) {
        transport = nodemailer.createTransport({ host: '127.0.0.1', port: ports[relay]!.smtp, secure: false, ignoreTLS: true, auth: { user: sender.email, pass: sender.token } });
        transports.set(key, transport);
      }
      return transport;
    };

    // Sixteen at a time, round-robin over {victim, survivor} × {HTTP, SMTP}; once
    // KILL_AFTER are accepted the victim is SIGKILLed and the rest go to the survivor.
    const accepted: string[] = [];
    const viaCount: Record<'http' | 'smtp', [number, number]> = { http: [0, 0], smtp: [0, 0] };
    let next = 0;
    let killed = false;
    let cutOff = 0;
    let inFlightAtKill = new Set<string>();
    const inspect = new pg.Client({ connectionString: databaseUrl });
    await inspect.connect();
    const sendOne = async (i: number): Promise<void> => {
      const sender = senders[i % SENDERS]!;
      const relay = killed ? 1 : i % 2;
      const via = Math.floor(i / 2) % 2 === 0 ? 'http' : 'smtp';
      try {
        let messageId: string;
        if (via === 'http') {
          const res = await call(relay, sender.token, 'POST', `/v1/incidents/${codename}/emails`, { to: ['sec@corp.example'], subject: `load ${i}`, text: `load ${i}` });
          expect(res.status, JSON.stringify(res.json)).toBe(202);
          messageId = res.json['messageId'] as string;
        } else {
          const info = await smtpTo(relay, sender).sendMail({ from: sender.email, to: 'sec@corp.example', subject: `load ${i}`, text: `load ${i}`, headers: { 'X-Incident': codename } });
          messageId = /queued as (<[^>]+>)/.exec(String(info.response))![1]!;
        }
        accepted.push(messageId);
        viaCount[via][relay as 0 | 1] += 1;
      } catch (err) {
        // Only requests to the victim cut off by the kill may fail; they were never answered 202/250.
        if (!(killed && relay === 0)) throw err;
        cutOff += 1;
      }
      if (accepted.length >= KILL_AFTER && !killed) {
        killed = true;
        victim.child.kill('SIGKILL');
        await victim.exited;
        // What the victim held a lease on when it died: the only deliveries that may arrive twice.
        const { rows } = await inspect.query<{ message_id: string }>(
          "SELECT e.message_id FROM deliveries d JOIN emails e ON e.id = d.email_id WHERE d.lease_owner = $1 AND d.status = 'queued'",
          [victimReplica],
        );
        inFlightAtKill = new Set(rows.map((r) => r.message_id));
      }
    };
    const worker = async (): Promise<void> => {
      while (accepted.length < MESSAGES && next < SENDERS * PER_SENDER) await sendOne(next++);
    };
    await Promise.all(Array.from({ length: CONCURRENCY }, worker));
    for (const t of transports.values()) t.close();
    expect(killed).toBe(true);
    expect(accepted.length).toBeGreaterThanOrEqual(MESSAGES);
    expect(new Set(accepted).size).toBe(accepted.length);
    // Both relays took messages over both listeners before the kill.
    expect(viaCount.http[0]).toBeGreaterThan(0);
    expect(viaCount.smtp[0]).toBeGreaterThan(0);
    expect(viaCount.http[1]).toBeGreaterThan(0);
    expect(viaCount.smtp[1]).toBeGreaterThan(0);

    const wanted = new Set(accepted);
    const deadline = Date.now() + 90_000;
    let arrived: string[] = [];
    while (Date.now() < deadline) {
      arrived = upstream.received.map((m) => messageIdOf(m.raw));
      if ([...wanted].every((id) => arrived.includes(id))) break;
      await new Promise((resolve) => setTimeout(resolve, 250));
    }
    // A moment more, so a late duplicate would be seen.
    await new Promise((resolve) => setTimeout(resolve, 1500));
    arrived = upstream.received.map((m) => messageIdOf(m.raw));
    const counts = new Map<string, number>();
    for (const id of arrived) counts.set(id, (counts.get(id) ?? 0) + 1);
    const missing = [...wanted].filter((id) => !counts.has(id));
    expect(missing, `${missing.length} accepted message(s) never arrived`).toEqual([]);
    const twice = [...counts].filter(([, n]) => n > 1).map(([id]) => id);
    const twiceOutsideFlight = twice.filter((id) => !inFlightAtKill.has(id));
    expect(twiceOutsideFlight, 'delivered twice although not in flight at the kill').toEqual([]);
    // Unanswered requests cut off by the kill may have committed: at most that many extra messages.
    const extra = [...counts.keys()].filter((id) => !wanted.has(id));
    expect(extra.length).toBeLessThanOrEqual(cutOff);
    for (const mail of upstream.received) expect(mail.to).toEqual(['sec@corp.example']);
    console.info(
      `two relays: ${accepted.length} accepted (victim http ${viaCount.http[0]}, smtp ${viaCount.smtp[0]}; survivor http ${viaCount.http[1]}, smtp ${viaCount.smtp[1]}), ` +
        `${inFlightAtKill.size} in flight at the kill, ${twice.length} delivered twice, ${cutOff} requests cut off, ${extra.length} committed but unanswered`,
    );

    // One audit chain, intact after concurrent appends from two relays and a kill.
    const verify = await call(1, adminToken, 'GET', '/v1/audit/verify');
    expect(verify.json).toMatchObject({ ok: true });
    // Each accepted message's decision is on the record exactly once.
    const { rows: decisions } = await inspect.query<{ data: string }>("SELECT data FROM audit_events WHERE type = 'email.decision' AND outcome = 'ok'");
    const decided = new Map<string, number>();
    for (const row of decisions) {
      const id = (JSON.parse(row.data) as { messageId: string }).messageId;
      decided.set(id, (decided.get(id) ?? 0) + 1);
    }
    for (const id of wanted) expect(decided.get(id), `decisions recorded for ${id}`).toBe(1);
    await inspect.end();

    expect(await stopRelayProcess(survivor)).toEqual({ code: 0, signal: null });
    expect(fs.existsSync(keyFile)).toBe(true);
  }, 240_000);
});
