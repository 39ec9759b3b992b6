/**
 * Signed checkpoints of the audit chain (issue 10 §16-17): the chain's head
 * (seq, hash) at a time, with the relay key's fingerprint and a detached
 * OpenPGP signature over them. Append-only (triggers refuse UPDATE and
 * DELETE). This repository only stores and reads them; signing and checking
 * signatures is src/services/audit-checkpoints.ts.
 */
import { placeholders, type SqlExecutor } from './sql.js';

/** One stored checkpoint. */
export interface AuditCheckpoint {
  seq: number;
  hash: string;
  /** ISO 8601, when it was signed. */
  at: string;
  /** The signing key's fingerprint, 40 uppercase hex digits. */
  fingerprint: string;
  /** ASCII-armored detached OpenPGP signature over checkpointText(). */
  signature: string;
}

/** A checkpoint beside the hash the chain holds at its seq now (null: no event there any more). */
export interface CheckpointAgainstChain extends AuditCheckpoint {
  chainHash: string | null;
}

interface Row {
  seq: number;
  hash: string;
  at: string;
  fingerprint: string;
  signature: string;
  chain_hash?: string | null;
}

function toCheckpoint(row: Row): AuditCheckpoint {
  return { seq: row.seq, hash: row.hash, at: row.at, fingerprint: row.fingerprint, signature: row.signature };
}

/** The audit_checkpoints table. */
export class CheckpointStore {
  constructor(private readonly sql: SqlExecutor) {}

  /** Stores a checkpoint; false when one for that seq exists already (another relay signed it first). */
  async add(checkpoint: AuditCheckpoint): Promise<boolean> {
    const changes = await this.sql.run('INSERT INTO audit_checkpoints (seq, hash, at, fingerprint, signature) VALUES (?, ?, ?, ?, ?) ON CONFLICT (seq) DO NOTHING', [
      checkpoint.seq,
      checkpoint.hash,
      checkpoint.at,
      checkpoint.fingerprint,
      checkpoint.signature,
    ]);
    return changes === 1;
  }

  /** The newest checkpoint, if any. */
  async latest(): Promise<AuditCheckpoint | undefined> {
    const row = await this.sql.get<Row>('SELECT seq, hash, at, fingerprint, signature FROM audit_checkpoints ORDER BY seq DESC LIMIT 1');
    return row ? toCheckpoint(row) : undefined;
  }

  /** Checkpoints after `afterSeq`, oldest first, at most `limit`. */
  async list(afterSeq: number, limit: number): Promise<AuditCheckpoint[]> {
    const rows = await this.sql.all<Row>('SELECT seq, hash, at, fingerprint, signature FROM audit_checkpoints WHERE seq > ? ORDER BY seq LIMIT ?', [afterSeq, limit]);
    return rows.map(toCheckpoint);
  }

  /** Like list, each with the hash the chain holds at that seq now, for verification. */
  async listAgainstChain(afterSeq: number, limit: number): Promise<CheckpointAgainstChain[]> {
    const rows = await this.sql.all<Row>(
      `SELECT c.seq, c.hash, c.at, c.fingerprint, c.signature, e.hash AS chain_hash
       FROM audit_checkpoints c LEFT JOIN audit_events e ON e.seq = c.seq
       WHERE c.seq > ? ORDER BY c.seq LIMIT ?`,
      [afterSeq, limit],
    );
    return rows.map((row) => ({ ...toCheckpoint(row), chainHash: row.chain_hash ?? null }));
  }

  /** Which of `pairs` have a checkpoint with exactly that hash: the chain's own record of each checkpoint is checked against the table. */
  async present(pairs: ReadonlyArray<{ seq: number; hash: string }>): Promise<Set<number>> {
    if (pairs.length === 0) return new Set();
    const rows = await this.sql.all<{ seq: number; hash: string }>(
      `SELECT seq, hash FROM audit_checkpoints WHERE seq IN (${placeholders(pairs.length)})`,
      pairs.map((p) => p.seq),
    );
    const stored = new Map(rows.map((r) => [r.seq, r.hash]));
    return new Set(pairs.filter((p) => stored.get(p.seq) === p.hash).map((p) => p.seq));
  }
}
