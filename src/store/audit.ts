/**
 * The append-only, hash-chained audit log (SPEC §6). Each event stores the
 * hash of the one before and its own hash over a canonical serialisation, so
 * an edit anywhere breaks verification from that event on. Triggers in the
 * schema refuse UPDATE and DELETE.
 */
import { createHash } from 'node:crypto';
import { prepared, type Db, type Prepared } from './db.js';

export type AuditOutcome = 'ok' | 'refused' | 'failed' | 'retry' | 'corrected';

export interface AuditInput {
  type: string;
  actor: string | null;
  incidentId?: string | null;
  outcome: AuditOutcome;
  data?: Record<string, unknown>;
}

export interface AuditEvent {
  seq: number;
  at: string;
  type: string;
  actor: string | null;
  incidentId: string | null;
  outcome: AuditOutcome;
  data: Record<string, unknown>;
  prevHash: string;
  hash: string;
}

export interface AuditVerification {
  ok: boolean;
  events: number;
  head: string;
  /** The first event whose hash or link does not hold. */
  brokenAt?: number;
}

export const GENESIS_HASH = '0'.repeat(64);

// Field names that would carry content or secrets; the audit log refuses them
// outright so a careless caller fails loudly in tests instead of leaking.
const FORBIDDEN_KEYS = new Set(['body', 'text', 'html', 'subject', 'topic', 'token', 'password', 'armored', 'publickey', 'privatekey', 'content', 'passphrase']);

/** JSON with object keys sorted at every depth: one byte string per value. */
export function canonicalJson(value: unknown): string {
  if (value === null || typeof value !== 'object') return JSON.stringify(value) ?? 'null';
  if (Array.isArray(value)) return `[${value.map(canonicalJson).join(',')}]`;
  const entries = Object.entries(value as Record<string, unknown>)
    .filter(([, v]) => v !== undefined)
    .sort(([a], [b]) => (a < b ? -1 : a > b ? 1 : 0));
  return `{${entries.map(([k, v]) => `${JSON.stringify(k)}:${canonicalJson(v)}`).join(',')}}`;
}

function assertNoContent(data: unknown, where: string): void {
  if (data === null || typeof data !== 'object') return;
  for (const [key, value] of Object.entries(data as Record<string, unknown>)) {
    if (FORBIDDEN_KEYS.has(key.toLowerCase())) throw new Error(`audit data may not carry "${key}" (${where}): record a length or hash instead`);
    assertNoContent(value, where);
  }
}

interface Row {
  seq: number;
  at: string;
  type: string;
  actor: string | null;
  incident_id: string | null;
  outcome: AuditOutcome;
  data: string;
  prev_hash: string;
  hash: string;
}

function eventHash(prevHash: string, row: Omit<Row, 'prev_hash' | 'hash'>): string {
  const canonical = canonicalJson({ seq: row.seq, at: row.at, type: row.type, actor: row.actor, incidentId: row.incident_id, outcome: row.outcome, data: row.data });
  return createHash('sha256').update(prevHash).update('\n').update(canonical).digest('hex');
}

function toEvent(row: Row): AuditEvent {
  return {
    seq: row.seq,
    at: row.at,
    type: row.type,
    actor: row.actor,
    incidentId: row.incident_id,
    outcome: row.outcome,
    data: JSON.parse(row.data) as Record<string, unknown>,
    prevHash: row.prev_hash,
    hash: row.hash,
  };
}

/** Appends to and reads the audit chain. Call append inside the transaction of the change it records. */
export class AuditLog {
  private readonly insert;
  private readonly headStmt;
  private readonly sql: Prepared;

  constructor(
    db: Db,
    private readonly now: () => Date,
  ) {
    this.sql = prepared(db);
    this.insert = db.prepare(
      'INSERT INTO audit_events (seq, at, type, actor, incident_id, outcome, data, prev_hash, hash) VALUES (@seq, @at, @type, @actor, @incident_id, @outcome, @data, @prev_hash, @hash)',
    );
    this.headStmt = db.prepare('SELECT seq, hash FROM audit_events ORDER BY seq DESC LIMIT 1');
  }

  /** Appends one event linked to the current head. */
  append(input: AuditInput): AuditEvent {
    assertNoContent(input.data, input.type);
    const head = this.headStmt.get() as { seq: number; hash: string } | undefined;
    const base = {
      seq: (head?.seq ?? 0) + 1,
      at: this.now().toISOString(),
      type: input.type,
      actor: input.actor,
      incident_id: input.incidentId ?? null,
      outcome: input.outcome,
      data: canonicalJson(input.data ?? {}),
    };
    const prevHash = head?.hash ?? GENESIS_HASH;
    const row: Row = { ...base, prev_hash: prevHash, hash: eventHash(prevHash, base) };
    this.insert.run(row);
    return toEvent(row);
  }

  /** The incident's events in order, optionally after a sequence number. */
  listForIncident(incidentId: string, options: { after?: number; limit?: number } = {}): AuditEvent[] {
    const rows = this.sql('SELECT * FROM audit_events WHERE incident_id = ? AND seq > ? ORDER BY seq LIMIT ?')
      .all(incidentId, options.after ?? 0, Math.min(options.limit ?? 1000, 1000)) as Row[];
    return rows.map(toEvent);
  }

  /** Recomputes the whole chain; ok is false from the first edited, inserted or removed event. */
  verify(): AuditVerification {
    let prevHash = GENESIS_HASH;
    let events = 0;
    let brokenAt: number | undefined;
    for (const row of this.sql('SELECT * FROM audit_events ORDER BY seq').iterate() as IterableIterator<Row>) {
      events += 1;
      const intact = row.seq === events && row.prev_hash === prevHash && row.hash === eventHash(prevHash, row);
      if (!intact && brokenAt === undefined) brokenAt = row.seq;
      prevHash = row.hash;
    }
    return brokenAt === undefined ? { ok: true, events, head: prevHash } : { ok: false, events, head: prevHash, brokenAt };
  }
}
