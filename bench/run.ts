/**
 * `npm run bench`: builds (npm script), then measures the production build of
 * the relay end to end, each figure beside its in-run reference as a ratio.
 * Prints a table and writes bench/results.json. See BENCHMARKS.md.
 *
 * Scale with BENCH_SCALE (default 1; 0.2 for a quick smoke run). BENCH_ONLY=c,e
 * runs only those scenarios (a+b+d share one relay, so any of them runs all three).
 */
import { randomBytes } from 'node:crypto';
import { execFile } from 'node:child_process';
import { mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import type { ChildProcess } from 'node:child_process';
import { auditBench, type AuditResult } from './audit.js';
import { contentFor, createWorld, encryptedRequest, encryptionKeys, plainRequest, setUpIncident, TEXT_4K, TOPIC, type Incident, type World } from './fixtures.js';
import { ask, expectStatus, forkTs, fromDist, httpClient, now, ROOT, round, waitFor } from './lib.js';
import { httpLoad, smtpLoad, type LoadResult } from './load.js';
import { composeRate, encryptorRate, rawEncryptRate, type ReferenceRate } from './references.js';
import type { RelayChildArgs, RelayChildMemory, RelayChildReady } from './relay-child.js';
import type { RawLargeArgs, RawLargeResult } from './raw-large-child.js';
import { startSink, type Sink } from './upstream.js';

const SCALE = Number(process.env['BENCH_SCALE'] ?? '1');
const ONLY = new Set((process.env['BENCH_ONLY'] ?? 'a,b,c,d,e,f').split(',').map((s) => s.trim()));
const wants = (...ids: string[]): boolean => ids.some((id) => ONLY.has(id));
if (!(SCALE > 0)) throw new Error('BENCH_SCALE must be a positive number');
const n = (count: number): number => Math.max(8, Math.round(count * SCALE));

/** Messages per run, chosen so the whole bench takes 2 to 3 minutes on 2 cores. */
const COUNTS = {
  encrypted: { 1: n(200), 8: n(800), 32: n(1600) },
  plain: { 1: n(400), 8: n(1500), 32: n(3000) },
  smtp: n(800),
  warmup: n(50),
  auditEvents: 100_000,
  largeBytes: 25_000_000,
} as const;
const LEVELS = [1, 8, 32] as const;

const log = (line: string): void => {
  process.stderr.write(`[bench] ${line}\n`);
};

// ------------------------------------------------------------------ the relay under test

interface RelayUnderTest {
  ready: RelayChildReady;
  incident: Incident;
  child: ChildProcess;
  stop(): Promise<void>;
}

async function startRelayChild(world: World, sink: Sink, pool: boolean, tmp: string, shared: { databaseUrl?: string; incident?: Incident } = {}): Promise<RelayUnderTest> {
  const dataDir = mkdtempSync(path.join(tmp, `relay-${pool ? 'pool' : 'nopool'}-`));
  const args: RelayChildArgs = { dataDir, upstreamUrl: sink.url, adminToken: world.adminToken, keyFile: world.relayKeyFile, pool, ...(shared.databaseUrl ? { databaseUrl: shared.databaseUrl } : {}) };
  const child = forkTs('./relay-child.ts', [JSON.stringify(args)]);
  const ready = await waitFor<RelayChildReady>(child, 'ready');
  // A second relay on the same database serves the incident the first one set up.
  let incident = shared.incident;
  if (incident === undefined) {
    const client = httpClient(ready.httpPort, 1);
    incident = await setUpIncident(client, world);
    client.close();
  }
  return {
    ready,
    incident,
    child,
    async stop() {
      await ask(child, { type: 'stop' }, 'stopped', 60_000).catch(() => child.kill('SIGKILL'));
    },
  };
}

function http(relay: RelayUnderTest, body: Record<string, unknown>, count: number, concurrency: number, sink: Sink): Promise<LoadResult> {
  return httpLoad({ port: relay.ready.httpPort, token: relay.incident.icToken, codename: relay.incident.codename, body, count, concurrency, sink });
}

// ------------------------------------------------------------------ scenarios

async function encryptedAndPlain(world: World, sink: Sink, tmp: string): Promise<{ encrypted: LoadResult[]; plain: LoadResult[]; smtp: LoadResult }> {
  const relay = await startRelayChild(world, sink, true, tmp);
  try {
    await http(relay, encryptedRequest(), COUNTS.warmup, 8, sink);
    await http(relay, plainRequest(), COUNTS.warmup, 8, sink);
    const encrypted: LoadResult[] = [];
    for (const c of LEVELS) {
      encrypted.push(await http(relay, encryptedRequest(), COUNTS.encrypted[c], c, sink));
      log(`encrypted, pool on, c=${c}: ${encrypted.at(-1)!.e2eRate} msg/s`);
    }
    const plain: LoadResult[] = [];
    for (const c of LEVELS) {
      plain.push(await http(relay, plainRequest(), COUNTS.plain[c], c, sink));
      log(`plain, c=${c}: ${plain.at(-1)!.e2eRate} msg/s`);
    }
    const p = world.people;
    const smtp = await smtpLoad({
      port: relay.ready.smtpPort,
      tlsCert: relay.ready.tlsCert,
      user: p.ic.email,
      token: relay.incident.icToken,
      codename: relay.incident.codename,
      message: { to: [p.sec.email, p.counsel.email], cc: [p.exec.email], subject: TOPIC, text: TEXT_4K },
      count: COUNTS.smtp,
      concurrency: 8,
      sink,
    });
    log(`smtp, c=8: ${smtp.e2eRate} msg/s`);
    return { encrypted, plain, smtp };
  } finally {
    await relay.stop();
  }
}

async function encryptedWithoutPool(world: World, sink: Sink, tmp: string): Promise<LoadResult[]> {
  const relay = await startRelayChild(world, sink, false, tmp);
  try {
    await http(relay, encryptedRequest(), COUNTS.warmup, 8, sink);
    const results: LoadResult[] = [];
    for (const c of LEVELS) {
      results.push(await http(relay, encryptedRequest(), COUNTS.encrypted[c], c, sink));
      log(`encrypted, pool off, c=${c}: ${results.at(-1)!.e2eRate} msg/s`);
    }
    return results;
  } finally {
    await relay.stop();
  }
}

/** Figures of the 25 MB attachment scenario. */
interface LargeResult {
  attachmentBytes: number;
  requestBytes: number;
  deliveredBytes: number;
  acceptMs: number;
  endToEndMs: number;
  baselineRss: number;
  peakRss: number;
  peakGrowth: number;
  /** Peak RSS growth over the attachment size (target < 4). */
  growthRatio: number;
  /** Absolute peak RSS over the attachment size. */
  peakRatio: number;
  peakResetWorked: boolean;
  reference: RawLargeResult;
}

async function large(world: World, sink: Sink, tmp: string): Promise<LargeResult> {
  const relay = await startRelayChild(world, sink, true, tmp);
  let measured: Omit<LargeResult, 'reference'>;
  try {
    // One small encrypted message first, so the workers, openpgp and nodemailer are loaded before the baseline.
    await http(relay, { to: [world.people.counsel.email], text: 'warm-up' }, 2, 1, sink);
    const attachment = randomBytes(COUNTS.largeBytes);
    const body = Buffer.from(
      JSON.stringify({
        to: [world.people.counsel.email],
        subject: 'Disk image',
        text: 'See attached.',
        attachments: [{ filename: 'disk-image.bin', contentType: 'application/octet-stream', content: attachment.toString('base64') }],
      }),
    );
    await new Promise((resolve) => setTimeout(resolve, 500)); // let the child settle (GC, timers) before the baseline
    await ask(relay.child, { type: 'reset-peak' }, 'reset-peak');
    const before = await ask<RelayChildMemory>(relay.child, { type: 'memory' }, 'memory');
    const bytesBefore = sink.bytes();
    const client = httpClient(relay.ready.httpPort, 1);
    const t0 = now();
    const answer = await client.request('POST', `/v1/incidents/${relay.incident.codename}/emails`, relay.incident.icToken, body);
    const t1 = now();
    client.close();
    const { messageId } = expectStatus<{ messageId: string }>(answer, 202, 'send the 25 MB attachment');
    await sink.expect([messageId], 180_000);
    const t2 = sink.arrivals.get(messageId)!;
    const after = await ask<RelayChildMemory>(relay.child, { type: 'memory' }, 'memory');
    measured = {
      attachmentBytes: COUNTS.largeBytes,
      requestBytes: body.length,
      deliveredBytes: sink.bytes() - bytesBefore,
      acceptMs: round(t1 - t0, 0),
      endToEndMs: round(t2 - t0, 0),
      baselineRss: before.rss,
      peakRss: after.peak,
      peakGrowth: after.peak - before.rss,
      growthRatio: round((after.peak - before.rss) / COUNTS.largeBytes, 2),
      peakRatio: round(after.peak / COUNTS.largeBytes, 2),
      peakResetWorked: after.resetWorked,
    };
  } finally {
    await relay.stop();
  }
  const keysFile = path.join(tmp, 'raw-large-keys.json');
  writeFileSync(keysFile, JSON.stringify({ relayPrivate: world.relayPrivate.armor(), recipients: [world.people.counsel.publicArmored, world.people.ic.publicArmored] }), { mode: 0o600 });
  const args: RawLargeArgs = { keysFile, attachmentBytes: COUNTS.largeBytes };
  const reference = await waitFor<RawLargeResult>(forkTs('./raw-large-child.ts', [JSON.stringify(args)]), 'raw-large', 180_000);
  return { ...measured, reference };
}

/**
 * Scenario f: the same encrypted load on PostgreSQL (a throw-away cluster from
 * the Debian server binaries, dev/pg-cluster.ts), with one relay, then with
 * two relays on the one database sharing the load.
 */
async function postgres(world: World, sink: Sink, tmp: string): Promise<{ one: LoadResult[]; two: LoadResult } | undefined> {
  const { startPostgresCluster } = await import('../dev/pg-cluster.js');
  let cluster: Awaited<ReturnType<typeof startPostgresCluster>>;
  try {
    cluster = await startPostgresCluster();
  } catch (err) {
    log(`postgres: skipped (${err instanceof Error ? err.message : String(err)})`);
    return undefined;
  }
  const pg = (await import('pg')).default;
  const admin = new pg.Client({ connectionString: cluster.url });
  await admin.connect();
  await admin.query("CREATE DATABASE relay_bench TEMPLATE template0 ENCODING 'UTF8'");
  await admin.end();
  const databaseUrl = cluster.url.replace(/\/postgres$/, '/relay_bench');
  const first = await startRelayChild(world, sink, true, tmp, { databaseUrl });
  let second: RelayUnderTest | undefined;
  try {
    await http(first, encryptedRequest(), COUNTS.warmup, 8, sink);
    const one: LoadResult[] = [];
    for (const c of [8, 32] as const) {
      one.push(await http(first, encryptedRequest(), COUNTS.encrypted[c], c, sink));
      log(`postgres, 1 relay, encrypted, c=${c}: ${one.at(-1)!.e2eRate} msg/s`);
    }
    second = await startRelayChild(world, sink, true, tmp, { databaseUrl, incident: first.incident });
    const two = await httpLoad({
      port: [first.ready.httpPort, second.ready.httpPort],
      token: first.incident.icToken,
      codename: first.incident.codename,
      body: encryptedRequest(),
      count: COUNTS.encrypted[32],
      concurrency: 32,
      sink,
    });
    log(`postgres, 2 relays, encrypted, c=32: ${two.e2eRate} msg/s`);
    return { one, two };
  } finally {
    await second?.stop();
    await first.stop();
    cluster.stop();
  }
}

// ------------------------------------------------------------------ conditions

/** Samples `pgrep -f vitest` every 2 s in the background: other suites on this machine disturb the figures. */
function watchForVitest(): { stop(): { samples: number; busy: number } } {
  let samples = 0;
  let busy = 0;
  const timer = setInterval(() => {
    execFile('pgrep', ['-f', 'vitest'], (err, stdout) => {
      samples += 1;
      if (!err && stdout.trim() !== '') busy += 1;
    });
  }, 2000);
  timer.unref();
  return {
    stop() {
      clearInterval(timer);
      return { samples, busy };
    },
  };
}

// ------------------------------------------------------------------ report

interface Row {
  scenario: string;
  n: string;
  rate: string;
  accept: string;
  delivery: string;
  reference: string;
  ratio: string;
  target: string;
}

const ms = (l: { p50: number; p99: number }): string => `${l.p50} / ${l.p99}`;
const mb = (bytes: number): string => `${(bytes / 1e6).toFixed(1)} MB`;

function loadRow(scenario: string, r: LoadResult, reference: ReferenceRate, referenceName: string, target?: number): Row {
  const ratio = r.e2eRate / reference.rate;
  return {
    scenario: `${scenario}, c=${r.concurrency}`,
    n: String(r.count),
    rate: `${r.e2eRate} (accept ${r.acceptRate})`,
    accept: ms(r.accept),
    delivery: ms(r.delivery),
    reference: `${referenceName} ${reference.rate}/s`,
    ratio: ratio < 0.01 ? ratio.toExponential(1) : ratio.toFixed(2),
    target: target === undefined ? '-' : `≥ ${target} ${ratio >= target ? 'met' : 'NOT met'}`,
  };
}

/** Prints the table; BENCH_MARKDOWN=1 prints it as a Markdown table (for BENCHMARKS.md). */
function printTable(rows: Row[]): void {
  const header: Row = { scenario: 'scenario', n: 'n', rate: 'msg/s e2e', accept: 'accept p50/p99 ms', delivery: 'delivery p50/p99 ms', reference: 'reference', ratio: 'ratio', target: 'target' };
  const keys = Object.keys(header) as (keyof Row)[];
  const widths = keys.map((k) => Math.max(...[header, ...rows].map((r) => r[k].length)));
  const markdown = process.env['BENCH_MARKDOWN'] === '1';
  const line = (r: Row): string => {
    const cells = keys.map((k, i) => r[k].padEnd(widths[i]!)).join(' | ');
    return markdown ? `| ${cells} |` : cells;
  };
  const rule = markdown ? `|${widths.map((w) => '-'.repeat(w + 2)).join('|')}|` : widths.map((w) => '-'.repeat(w)).join('-|-');
  process.stdout.write(`${line(header)}\n${rule}\n${rows.map(line).join('\n')}\n`);
}

// ------------------------------------------------------------------ main

async function main(): Promise<void> {
  const started = now();
  const startedAt = new Date().toISOString();
  const vitest = watchForVitest();
  const loadStart = os.loadavg();
  const tmp = mkdtempSync(path.join(os.tmpdir(), 'relay-bench-'));
  const sink = await startSink();
  try {
    log(`scale ${SCALE}: encrypted ${JSON.stringify(COUNTS.encrypted)}, plain ${JSON.stringify(COUNTS.plain)}, smtp ${COUNTS.smtp}, audit ${COUNTS.auditEvents}, attachment ${COUNTS.largeBytes} bytes`);
    const world = await createWorld(path.join(tmp, 'keys'));
    const { composePlain, composeProtectedPart } = await fromDist<typeof import('../src/mime/compose.js')>('mime/compose.js');

    const rows: Row[] = [];
    let rawA: ReferenceRate | undefined;
    let rawB: ReferenceRate | undefined;
    let composePlainRef: ReferenceRate | undefined;
    let poolAlone: ReferenceRate | undefined;
    let on: Awaited<ReturnType<typeof encryptedAndPlain>> | undefined;
    let off: LoadResult[] | undefined;
    if (wants('a', 'b', 'd')) {
      log('reference: raw openpgp sign+encrypt, one thread');
      const encPayload = composeProtectedPart(contentFor('encrypted', world));
      rawA = await rawEncryptRate(encPayload, encryptionKeys(world), world.relayPrivate);
      const plainContent = contentFor('plain', world);
      composePlainRef = await composeRate(() => composePlain(plainContent));
      const { EncryptionPool } = await fromDist<typeof import('../src/pgp/pool.js')>('pgp/pool.js');
      const pool = new EncryptionPool(world.relayPrivate);
      poolAlone = await encryptorRate(pool, encPayload, encryptionKeys(world), 8);
      await pool.close();
      log(`raw ${rawA.rate}/s, ${pool.size}-worker pool alone ${poolAlone.rate}/s, composePlain ${composePlainRef.rate}/s`);
      on = await encryptedAndPlain(world, sink, tmp);
      log('reference again, before the pool-off run');
      rawB = await rawEncryptRate(encPayload, encryptionKeys(world), world.relayPrivate);
      off = await encryptedWithoutPool(world, sink, tmp);
      const httpC8 = on.encrypted.find((r) => r.concurrency === 8)!;
      const refA = rawA;
      const refB = rawB;
      const refPlain = composePlainRef;
      rows.push(
        {
          scenario: `a. reference: ${os.availableParallelism()}-worker pool alone, c=8`,
          n: String(poolAlone.count),
          rate: `${poolAlone.rate} (no HTTP/SQLite/SMTP)`,
          accept: '-',
          delivery: '-',
          reference: `raw openpgp ${refA.rate}/s`,
          ratio: (poolAlone.rate / refA.rate).toFixed(2),
          target: '-',
        },
        ...on.encrypted.map((r) => loadRow('a. encrypted 4 KB, 3 rcpts, pool on', r, refA, 'raw openpgp', 0.8)),
        ...off.map((r) => loadRow('a. encrypted 4 KB, 3 rcpts, pool off', r, refB, 'raw openpgp', 0.8)),
        ...on.plain.map((r) => loadRow('b. plain 4 KB, 3 internal rcpts', r, refPlain, 'composePlain')),
        loadRow('d. SMTP submission (nodemailer), encrypted', on.smtp, { rate: httpC8.e2eRate, count: httpC8.count, ms: 0 }, 'HTTP c=8'),
      );
    }

    let big: LargeResult | undefined;
    if (wants('c')) {
      log('large attachment');
      big = await large(world, sink, tmp);
      rows.push({
        scenario: 'c. 25 MB attachment, external',
        n: '1',
        rate: `accept ${big.acceptMs} ms, e2e ${big.endToEndMs} ms`,
        accept: `peak RSS ${mb(big.peakRss)}`,
        delivery: `growth ${mb(big.peakGrowth)}`,
        reference: `raw encrypt ${big.reference.encryptMs} ms, +${mb(big.reference.encryptPeakGrowth)}`,
        ratio: `${big.growthRatio}× size`,
        target: `< 4× ${big.growthRatio < 4 ? 'met' : 'NOT met'}`,
      });
    }

    let onPostgres: Awaited<ReturnType<typeof postgres>>;
    if (wants('f')) {
      log('postgres: one relay, then two on one database');
      const encPayload = composeProtectedPart(contentFor('encrypted', world));
      const rawF = await rawEncryptRate(encPayload, encryptionKeys(world), world.relayPrivate);
      onPostgres = await postgres(world, sink, tmp);
      if (onPostgres) {
        const sqliteC32 = on?.encrypted.find((r) => r.concurrency === 32);
        rows.push(
          ...onPostgres.one.map((r) => loadRow('f. PostgreSQL, 1 relay, encrypted 4 KB, pool on', r, rawF, 'raw openpgp', 0.8)),
          loadRow('f. PostgreSQL, 2 relays, encrypted 4 KB, pool on', onPostgres.two, rawF, 'raw openpgp', 0.8),
          ...(sqliteC32 ? [loadRow('f. (SQLite, 1 relay, same load, from a.)', sqliteC32, rawF, 'raw openpgp', 0.8)] : []),
        );
      }
    }

    let audit: AuditResult | undefined;
    if (wants('e')) {
      log('audit verification');
      audit = await auditBench(COUNTS.auditEvents);
      rows.push({
        scenario: 'e. audit verify, 100k events',
        n: String(audit.events),
        rate: `${audit.verifyEventsPerSecond} events/s`,
        accept: `verify ${audit.verifyMs} ms`,
        delivery: `append ${audit.appendMs} ms`,
        reference: `bare scan ${audit.scanMs} ms`,
        ratio: audit.ratio.toFixed(2),
        target: audit.ok ? 'chain ok' : 'CHAIN BROKEN',
      });
    }
    printTable(rows);

    const conditions = vitest.stop();
    const results = {
      startedAt,
      durationSeconds: round((now() - started) / 1000, 0),
      scale: SCALE,
      counts: COUNTS,
      machine: {
        cpus: os.cpus().length,
        model: os.cpus()[0]?.model ?? 'unknown',
        node: process.version,
        platform: `${os.platform()} ${os.release()}`,
        totalMemoryBytes: os.totalmem(),
        loadavgStart: loadStart.map((v) => round(v, 2)),
        loadavgEnd: os.loadavg().map((v) => round(v, 2)),
      },
      conditions: {
        vitestSamples: conditions.samples,
        vitestSamplesBusy: conditions.busy,
        note: 'load generator, upstream sink and relay share the machine; the relay runs in its own process',
      },
      references: { rawEncryptBeforePoolOn: rawA, rawEncryptBeforePoolOff: rawB, poolAlone, composePlain: composePlainRef },
      encrypted: { poolOn: on?.encrypted, poolOff: off },
      plain: on?.plain,
      smtp: on ? { ...on.smtp, httpReference: on.encrypted.find((r) => r.concurrency === 8)?.e2eRate } : undefined,
      large: big,
      postgres: onPostgres,
      audit,
      rows,
    };
    writeFileSync(path.join(ROOT, 'bench', 'results.json'), JSON.stringify(results, null, 2) + '\n');
    log(`done in ${results.durationSeconds} s; vitest seen in ${conditions.busy} of ${conditions.samples} samples; wrote bench/results.json`);
  } finally {
    await sink.stop();
    rmSync(tmp, { recursive: true, force: true });
  }
}

main().catch((err: unknown) => {
  process.stderr.write(`bench failed: ${err instanceof Error ? (err.stack ?? err.message) : String(err)}\n`);
  process.exitCode = 1;
});
