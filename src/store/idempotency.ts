/**
 * Idempotency-Key records: the first successful answer per caller and key,
 * replayed for repeats so nothing is sent twice.
 */
import { prepared, type Db, type Prepared } from './db.js';

export interface StoredAnswer {
  route: string;
  status: number;
  response: unknown;
}

/** Idempotency storage. */
export class IdempotencyStore {
  private readonly sql: Prepared;

  constructor(db: Db) {
    this.sql = prepared(db);
  }

  get(tokenId: string, key: string): StoredAnswer | undefined {
    const row = this.sql('SELECT route, status, response FROM idempotency WHERE token_id = ? AND key = ?').get(tokenId, key) as
      | { route: string; status: number; response: string }
      | undefined;
    return row ? { route: row.route, status: row.status, response: JSON.parse(row.response) as unknown } : undefined;
  }

  /** Records the answer; false when another request with the same key got there first. */
  put(tokenId: string, key: string, answer: StoredAnswer, at: Date): boolean {
    return (
      this.sql('INSERT OR IGNORE INTO idempotency (token_id, key, route, status, response, created_at) VALUES (?, ?, ?, ?, ?, ?)')
        .run(tokenId, key, answer.route, answer.status, JSON.stringify(answer.response), at.toISOString()).changes === 1
    );
  }
}
