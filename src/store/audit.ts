/**
 * The append-only, hash-chained audit log (SPEC §6). Each event stores the
 * hash of the one before and its own hash over a canonical serialisation, so
 * an edit anywhere breaks verification from that event on. Triggers in the
 * schema refuse UPDATE and DELETE.
 */
import { createHash } from 'node:crypto';
import type { SqlExecutor } from './sql.js';

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
  /** Events up to this seq were taken as verified (a signed checkpoint); 0 = recomputed from genesis. */
  from: number;
}

/** The type of the event that records a signed checkpoint in the chain itself. */
export const CHECKPOINT_EVENT = 'audit.checkpoint';

/** A checkpoint as an `audit.checkpoint` event records it. */
export interface CheckpointRecord {
  /** The event that records it. */
  eventSeq: number;
  seq: number;
  hash: string;
}

/** Options of AuditLog.verify. */
export interface VerifyOptions {
  /** Start after this event, whose hash is trusted (a checkpoint that holds); default genesis. */
  from?: { seq: number; hash: string };
  /** Called with the checkpoint records of each page read. */
  recorded?: (records: CheckpointRecord[]) => Promise<void>;
}

/** What AuditLog.query selects; every field given must match. */
export interface AuditFilter {
  incidentId?: string | undefined;
  /** Exactly this type. */
  type?: string | undefined;
  /** Types starting with this (`smtp.` for every SMTP event). */
  typePrefix?: string | undefined;
  actor?: string | undefined;
  /** ISO time, inclusive. */
  since?: string | undefined;
  /** ISO time, exclusive. */
  until?: string | undefined;
  /** Only events with a greater sequence number (paging). */
  after?: number | undefined;
  limit: number;
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

/** An audit_events row as stored. */
export interface AuditRow {
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

/** An event's hash over its canonical serialisation, linked to the hash before it. Exported for tests that build or rewrite chains. */
export function eventHash(prevHash: string, row: Omit<AuditRow, 'prev_hash' | 'hash'>): string {
  const canonical = canonicalJson({ seq: row.seq, at: row.at, type: row.type, actor: row.actor, incidentId: row.incident_id, outcome: row.outcome, data: row.data });
  return createHash('sha256').update(prevHash).update('\n').update(canonical).digest('hex');
}

function toEvent(row: AuditRow): AuditEvent {
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

/** Runs `fn` in a transaction: the store's own for a top-level append, the caller's inside one. */
export type InTransaction = <T>(fn: (sql: SqlExecutor) => Promise<T>) => Promise<T>;

// An arbitrary constant: the advisory lock every PostgreSQL append takes, so
// relays sharing the database read the head and insert after it one at a time
// and the chain never forks. It is held until the appending transaction ends.
const AUDIT_CHAIN_LOCK = 7_263_402;

// Verification reads the chain in pages, so memory stays flat however long it
// is, and yields between pages; 500 events (a query and 500 SHA-256) keep one
// slice of work to a few milliseconds.
const VERIFY_PAGE = 500;

function checkpointRecord(row: AuditRow): CheckpointRecord {
  // An unparseable record is reported as one that matches no checkpoint (seq -1), never thrown.
  try {
    const data = JSON.parse(row.data) as { seq?: unknown; hash?: unknown };
    if (typeof data.seq === 'number' && typeof data.hash === 'string') return { eventSeq: row.seq, seq: data.seq, hash: data.hash };
  } catch {
    // fall through
  }
  return { eventSeq: row.seq, seq: -1, hash: '' };
}

/** Appends to and reads the audit chain. Append inside the transaction of the change it records. */
export class AuditLog {
  constructor(
    private readonly sql: SqlExecutor,
    private readonly now: () => Date,
    private readonly inTransaction: InTransaction,
  ) {}

  /** Appends one event linked to the current head. */
  async append(input: AuditInput): Promise<AuditEvent> {
    assertNoContent(input.data, input.type);
    return this.inTransaction(async (sql) => {
      if (sql.dialect === 'postgres') await sql.get('SELECT pg_advisory_xact_lock(?)', [AUDIT_CHAIN_LOCK]);
      const head = await sql.get<{ seq: number; hash: string }>('SELECT seq, hash FROM audit_events ORDER BY seq DESC LIMIT 1');
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
      const row: AuditRow = { ...base, prev_hash: prevHash, hash: eventHash(prevHash, base) };
      await sql.run('INSERT INTO audit_events (seq, at, type, actor, incident_id, outcome, data, prev_hash, hash) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?)', [
        row.seq,
        row.at,
        row.type,
        row.actor,
        row.incident_id,
        row.outcome,
        row.data,
        row.prev_hash,
        row.hash,
      ]);
      return toEvent(row);
    });
  }

  /** The incident's events in order, optionally after a sequence number. */
  async listForIncident(incidentId: string, options: { after?: number; limit?: number } = {}): Promise<AuditEvent[]> {
    return this.query({ incidentId, after: options.after, limit: options.limit ?? 1000 });
  }

  /**
   * Events matching every filter given, in chain order (seq) after `after`,
   * at most `limit` (capped at 1000). Times compare as the ISO strings the
   * log stores: `since` inclusive, `until` exclusive.
   */
  async query(filter: AuditFilter): Promise<AuditEvent[]> {
    const where = ['seq > ?'];
    const params: (string | number)[] = [filter.after ?? 0];
    if (filter.incidentId !== undefined) {
      where.push('incident_id = ?');
      params.push(filter.incidentId);
    }
    if (filter.type !== undefined) {
      where.push('type = ?');
      params.push(filter.type);
    }
    if (filter.typePrefix !== undefined) {
      // substr rather than LIKE: no wildcard in the prefix to escape, the same on both dialects.
      where.push('substr(type, 1, ?) = ?');
      params.push(filter.typePrefix.length, filter.typePrefix);
    }
    if (filter.actor !== undefined) {
      where.push('actor = ?');
      params.push(filter.actor);
    }
    if (filter.since !== undefined) {
      where.push('at >= ?');
      params.push(filter.since);
    }
    if (filter.until !== undefined) {
      where.push('at < ?');
      params.push(filter.until);
    }
    const limit = Math.max(1, Math.min(filter.limit, 1000));
    const rows = await this.sql.all<AuditRow>(`SELECT * FROM audit_events WHERE ${where.join(' AND ')} ORDER BY seq LIMIT ?`, [...params, limit]);
    return rows.map(toEvent);
  }

  /**
   * Recomputes the chain, from genesis or from a trusted point `from` (seq,
   * hash: a signed checkpoint that holds) to the head; ok is false from the
   * first edited, inserted or removed event in that range. Reads in pages and
   * yields to the event loop between them, so a long chain never holds the
   * loop for more than one page of work. `recorded` hears, page by page, the
   * checkpoints the chain itself records (`audit.checkpoint` events).
   */
  async verify(options: VerifyOptions = {}): Promise<AuditVerification> {
    const from = options.from ?? { seq: 0, hash: GENESIS_HASH };
    let prevHash = from.hash;
    let events = from.seq;
    let brokenAt: number | undefined;
    let lastSeq = from.seq;
    for (;;) {
      const rows = await this.sql.all<AuditRow>('SELECT * FROM audit_events WHERE seq > ? ORDER BY seq LIMIT ?', [lastSeq, VERIFY_PAGE]);
      const recorded: CheckpointRecord[] = [];
      for (const row of rows) {
        events += 1;
        const intact = row.seq === events && row.prev_hash === prevHash && row.hash === eventHash(prevHash, row);
        if (!intact && brokenAt === undefined) brokenAt = row.seq;
        if (row.type === CHECKPOINT_EVENT) recorded.push(checkpointRecord(row));
        prevHash = row.hash;
        lastSeq = row.seq;
      }
      if (recorded.length > 0) await options.recorded?.(recorded);
      if (rows.length < VERIFY_PAGE) break;
      // One page at a time: /healthz and every other request get the loop between pages.
      await new Promise<void>((resolve) => setImmediate(resolve));
    }
    const result = { ok: brokenAt === undefined, events, head: prevHash, from: from.seq };
    return brokenAt === undefined ? result : { ...result, brokenAt };
  }

  /** The newest event's seq and hash; seq 0 and the genesis hash for an empty chain. */
  async head(): Promise<{ seq: number; hash: string; type: string | null }> {
    const row = await this.sql.get<{ seq: number; hash: string; type: string }>('SELECT seq, hash, type FROM audit_events ORDER BY seq DESC LIMIT 1');
    return row ?? { seq: 0, hash: GENESIS_HASH, type: null };
  }
}
