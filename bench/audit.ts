/**
 * Audit verification: a file-backed store filled with 100,000 chained events
 * (decision-sized data), then AuditLog.verify() timed beside its reference,
 * a plain scan of the same rows without hashing (the SQLite floor). The scan
 * reads through the store's executor in the same pages of 1,000 rows as
 * verify() does, so the ratio is the cost of canonical JSON and SHA-256 alone.
 */
import { mkdtempSync, rmSync, statSync } from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { randomUUID } from 'node:crypto';
import type { Store } from '../src/store/index.js';
import { fromDist, now, round } from './lib.js';

/** Figures of the audit scenario. */
export interface AuditResult {
  events: number;
  appendMs: number;
  verifyMs: number;
  verifyEventsPerSecond: number;
  scanMs: number;
  /** verify time / scan time. */
  ratio: number;
  ok: boolean;
  dbBytes: number;
}

const RULES = ['incident-open', 'sender', 'roster', 'encryption', 'subject', 'bcc', 'codename'].map((rule) => ({ rule, result: 'pass', reason: 'bench' }));

// As AuditLog.verify() pages the chain.
const SCAN_PAGE = 1000;

/** Fills a fresh store with `events` appends (1,000 per transaction), then times verify() and a bare scan. */
export async function auditBench(events: number): Promise<AuditResult> {
  const { openStore } = await fromDist<typeof import('../src/store/index.js')>('store/index.js');
  const dir = mkdtempSync(path.join(os.tmpdir(), 'relay-bench-audit-'));
  const file = path.join(dir, 'relay.db');
  let store: Store | undefined;
  try {
    store = await openStore({ file }, { now: () => new Date() });
    const s = store;
    const appendStart = now();
    for (let done = 0; done < events; ) {
      const batch = Math.min(1000, events - done);
      await s.transaction(async (tx) => {
        for (let i = 0; i < batch; i++) {
          await tx.audit.append({
            type: 'email.decision',
            actor: 'ic@corp.example',
            incidentId: null,
            outcome: 'ok',
            data: { via: 'http', emailId: randomUUID(), messageId: `<${randomUUID()}@corp.example>`, encrypted: true, rules: RULES, recipients: { to: ['sec@corp.example', 'counsel@lawfirm.example'], cc: ['exec@corp.example'], bcc: [] }, copies: 1, bytes: 4096 },
          });
        }
      });
      done += batch;
    }
    const appendMs = now() - appendStart;

    const scanStart = now();
    let scanned = 0;
    for (let lastSeq = 0; ; ) {
      const rows = await s.sql.all<{ seq: number }>('SELECT * FROM audit_events WHERE seq > ? ORDER BY seq LIMIT ?', [lastSeq, SCAN_PAGE]);
      scanned += rows.length;
      if (rows.length < SCAN_PAGE) break;
      lastSeq = rows[rows.length - 1]!.seq;
    }
    const scanMs = now() - scanStart;

    const verifyStart = now();
    const verification = await s.audit.verify();
    const verifyMs = now() - verifyStart;
    if (scanned !== events) throw new Error(`audit scan saw ${scanned} of ${events} events`);
    return {
      events: verification.events,
      appendMs: round(appendMs, 0),
      verifyMs: round(verifyMs, 0),
      verifyEventsPerSecond: round((verification.events * 1000) / verifyMs, 0),
      scanMs: round(scanMs, 0),
      ratio: round(verifyMs / scanMs, 2),
      ok: verification.ok && verification.events === events,
      dbBytes: statSync(file).size,
    };
  } finally {
    await store?.close();
    rmSync(dir, { recursive: true, force: true });
  }
}
