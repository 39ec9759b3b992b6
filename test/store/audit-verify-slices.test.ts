/**
 * Verifying a long audit chain never holds the event loop (issue 10 §16):
 * while `GET /v1/audit/verify?full=true` recomputes a chain of many
 * thousand events, `/healthz` keeps answering within a bound; and once a
 * checkpoint is signed, the default verification recomputes only the tail.
 */
import { createServer, type Server } from 'node:http';
import type { AddressInfo } from 'node:net';
import { afterEach, describe, expect, it } from 'vitest';
import { AuditVerifier, createCheckpoint, type AuditReport } from '../../src/services/audit-checkpoints.js';
import { canonicalJson, eventHash, type AuditRow } from '../../src/store/audit.js';
import type { Store } from '../../src/store/index.js';
import { BACKENDS, createTestRelay, type TestRelay } from '../helpers/relay.js';

// Enough that one unbroken pass takes well over a second on a slow machine.
const EVENTS = 150_000;
// What /healthz may take at worst while the verification runs (one slice is a few ms; the rest is slack for a loaded machine).
const HEALTHZ_BOUND_MS = 250;

let relay: TestRelay | undefined;
let server: Server | undefined;
afterEach(async () => {
  await new Promise<void>((resolve) => (server ? server.close(() => resolve()) : resolve()));
  await relay?.ctx.store.close();
  server = undefined;
  relay = undefined;
});

/** Appends `n` valid events straight into the table, in batches: the chain a busy relay would have written. */
async function appendChain(store: Store, n: number): Promise<void> {
  let { seq, hash } = await store.audit.head();
  const at = new Date().toISOString();
  const BATCH = 500;
  for (let done = 0; done < n; ) {
    const rows: AuditRow[] = [];
    for (let i = 0; i < BATCH && done < n; i++, done++) {
      seq += 1;
      const base = { seq, at, type: 'email.decision', actor: 'ic@corp.example', incident_id: 'incident-1', outcome: 'ok' as const, data: canonicalJson({ via: 'http', recipients: { to: ['sec@corp.example'], cc: [], bcc: ['legal@corp.example'] }, n: seq }) };
      const row: AuditRow = { ...base, prev_hash: hash, hash: eventHash(hash, base) };
      hash = row.hash;
      rows.push(row);
    }
    await store.sql.run(
      `INSERT INTO audit_events (seq, at, type, actor, incident_id, outcome, data, prev_hash, hash) VALUES ${rows.map(() => '(?, ?, ?, ?, ?, ?, ?, ?, ?)').join(', ')}`,
      rows.flatMap((r) => [r.seq, r.at, r.type, r.actor, r.incident_id, r.outcome, r.data, r.prev_hash, r.hash]),
    );
  }
}

describe.each(BACKENDS)('verifying a long chain (%s)', (backend) => {
  it(`keeps /healthz answering within ${HEALTHZ_BOUND_MS} ms while ${EVENTS} events are recomputed, then verifies only the tail after a checkpoint`, async () => {
    relay = await createTestRelay({}, { backend });
    const r = relay;
    await appendChain(r.ctx.store, EVENTS);
    server = createServer(r.app);
    await new Promise<void>((resolve) => server!.listen(0, '127.0.0.1', resolve));
    const base = `http://127.0.0.1:${(server.address() as AddressInfo).port}`;

    const started = performance.now();
    let finished = 0;
    const verified = fetch(`${base}/v1/audit/verify?full=true`, { headers: { Authorization: `Bearer ${r.admin}` } }).then(async (res) => {
      finished = performance.now();
      expect(res.status).toBe(200);
      return (await res.json()) as AuditReport;
    });
    const latencies: number[] = [];
    while (finished === 0) {
      const t = performance.now();
      const health = await fetch(`${base}/healthz`);
      expect(health.status).toBe(200);
      await health.arrayBuffer();
      latencies.push(performance.now() - t);
    }
    const report = await verified;
    expect(report).toMatchObject({ ok: true, events: EVENTS, from: 0 });
    const took = finished - started;
    console.info(`${backend}: full verification of ${EVENTS} events took ${Math.round(took)} ms; ${latencies.length} /healthz answers, the slowest ${Math.round(Math.max(...latencies))} ms, the median ${Math.round([...latencies].sort((a, b) => a - b)[Math.floor(latencies.length / 2)]!)} ms`);
    // The bound means something only when the whole pass takes far longer than it.
    expect(took, 'the verification was too quick to show anything: raise EVENTS').toBeGreaterThan(4 * HEALTHZ_BOUND_MS);
    expect(latencies.length).toBeGreaterThan(10);
    expect(Math.max(...latencies), `healthz latencies while a ${Math.round(took)} ms verification ran`).toBeLessThan(HEALTHZ_BOUND_MS);

    // A signed checkpoint at the head: the default verification now starts there.
    const outcome = await createCheckpoint({ store: r.ctx.store, relayKey: r.ctx.relayKey, now: r.clock.now, logger: r.ctx.logger }, new AuditVerifier(r.ctx));
    expect(outcome).toHaveProperty('signed.seq', EVENTS);
    const tail = await fetch(`${base}/v1/audit/verify`, { headers: { Authorization: `Bearer ${r.admin}` } });
    expect(await tail.json()).toMatchObject({ ok: true, events: EVENTS + 1, from: EVENTS, checkpoints: { signed: 1, verified: 1, latest: { seq: EVENTS } } });
  }, 180_000);
});
