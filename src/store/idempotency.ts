/**
 * Idempotency-Key records: the first successful answer per caller and key,
 * with a fingerprint of the request it answered, replayed for repeats so
 * nothing is sent twice. Keys expire (see IDEMPOTENCY_TTL_MS in
 * src/services/idempotency.ts).
 */
import type { SqlExecutor } from './sql.js';

/** A remembered answer. */
export interface StoredAnswer {
  route: string;
  /** SHA-256 of the request (route and canonical body); null for keys stored before fingerprints existed. */
  fingerprint: string | null;
  status: number;
  response: unknown;
  createdMs: number;
}

/** Idempotency storage. */
export class IdempotencyStore {
  constructor(private readonly sql: SqlExecutor) {}

  /** The answer stored for this caller and key, if any was stored at or after `notBeforeMs`. */
  async get(tokenId: string, key: string, notBeforeMs = 0): Promise<StoredAnswer | undefined> {
    const row = await this.sql.get<{ route: string; fingerprint: string | null; status: number; response: string; created_ms: number }>(
      'SELECT route, fingerprint, status, response, created_ms FROM idempotency WHERE token_id = ? AND key = ? AND created_ms >= ?',
      [tokenId, key, notBeforeMs],
    );
    return row ? { route: row.route, fingerprint: row.fingerprint, status: row.status, response: JSON.parse(row.response) as unknown, createdMs: row.created_ms } : undefined;
  }

  /**
   * Records the answer; false when another request with the same key got
   * there first. An expired record for the key is replaced.
   */
  async put(tokenId: string, key: string, answer: Omit<StoredAnswer, 'createdMs'>, at: Date, expiredBeforeMs: number): Promise<boolean> {
    await this.sql.run('DELETE FROM idempotency WHERE token_id = ? AND key = ? AND created_ms < ?', [tokenId, key, expiredBeforeMs]);
    const changes = await this.sql.run(
      'INSERT INTO idempotency (token_id, key, route, fingerprint, status, response, created_at, created_ms) VALUES (?, ?, ?, ?, ?, ?, ?, ?) ON CONFLICT (token_id, key) DO NOTHING',
      [tokenId, key, answer.route, answer.fingerprint, answer.status, JSON.stringify(answer.response), at.toISOString(), at.getTime()],
    );
    return changes === 1;
  }

  /** Forgets every key made before `beforeMs`; returns how many. */
  async purgeExpired(beforeMs: number): Promise<number> {
    return this.sql.run('DELETE FROM idempotency WHERE created_ms < ?', [beforeMs]);
  }
}
