/**
 * Send-limit token buckets in the database (table send_limits), so every
 * relay sharing it draws from the same bucket per caller. One statement takes
 * a token when there is one: no read-then-write race between relays.
 */
import type { SqlExecutor } from './sql.js';

/** The send_limits table. */
export class SendLimitStore {
  constructor(private readonly sql: SqlExecutor) {}

  /**
   * Takes one token from `key`'s bucket at `nowMs` (refilled at `ratePerMs`
   * up to `burst`); when none is left, says how long until one is.
   */
  async take(key: string, nowMs: number, ratePerMs: number, burst: number): Promise<{ ok: true } | { ok: false; retryAfterMs: number }> {
    const least = this.sql.dialect === 'postgres' ? 'LEAST' : 'MIN';
    // The refilled level, computed in the statement from the row as it is when the row is locked.
    // Casts: PostgreSQL infers a parameter's type from its neighbours and would read the rate as an integer.
    const level = `${least}(CAST(? AS DOUBLE PRECISION), send_limits.tokens + (? - send_limits.at_ms) * CAST(? AS DOUBLE PRECISION))`;
    const taken = await this.sql.get<{ tokens: number }>(
      `INSERT INTO send_limits (key, tokens, at_ms) VALUES (?, CAST(? AS DOUBLE PRECISION), ?)
       ON CONFLICT (key) DO UPDATE SET tokens = ${level} - 1, at_ms = ?
       WHERE ${level} >= 1
       RETURNING tokens`,
      [key, burst - 1, nowMs, burst, nowMs, ratePerMs, nowMs, burst, nowMs, ratePerMs],
    );
    if (taken !== undefined) return { ok: true };
    const row = await this.sql.get<{ tokens: number; at_ms: number }>('SELECT tokens, at_ms FROM send_limits WHERE key = ?', [key]);
    const level0 = row ? Math.min(burst, row.tokens + (nowMs - row.at_ms) * ratePerMs) : burst;
    return { ok: false, retryAfterMs: Math.max(0, (1 - level0) / ratePerMs) };
  }
}
