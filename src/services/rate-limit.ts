/**
 * Per-token rate limits on the sending routes: a token bucket per caller, so
 * a leaked or runaway token cannot flood recipients or the queue. With one
 * relay (SQLite) the buckets live in memory; with several relays on
 * PostgreSQL they live in the database, so a token gets the same allowance
 * however many replicas it reaches.
 */
import { RelayError } from '../errors.js';
import type { SendLimitStore } from '../store/limits.js';

export interface RateLimit {
  /** Sustained sends per minute. */
  perMinute: number;
  /** Sends allowed in a burst above the sustained rate. */
  burst: number;
}

/** Defaults: generous for people and scripts in an incident, tight enough to stop a flood. */
export const DEFAULT_SEND_LIMIT: RateLimit = { perMinute: 120, burst: 60 };

/** Takes one send for a caller, or refuses with rate_limited and a Retry-After. */
export interface SendLimiter {
  take(key: string, now: Date): Promise<void>;
}

function refusal(retryAfterMs: number): RelayError {
  const retryAfter = Math.max(1, Math.ceil(retryAfterMs / 1000));
  return new RelayError('rate_limited', `Too many messages from this token; try again in ${retryAfter} s.`, { retryAfter });
}

/** Token buckets in this process, keyed by caller. */
export class RateLimiter implements SendLimiter {
  private readonly buckets = new Map<string, { tokens: number; atMs: number }>();

  constructor(private readonly limit: RateLimit = DEFAULT_SEND_LIMIT) {}

  /** Takes one send for `key` at `now`, or throws rate_limited saying when to retry. */
  async take(key: string, now: Date): Promise<void> {
    const ratePerMs = this.limit.perMinute / 60_000;
    const bucket = this.buckets.get(key) ?? { tokens: this.limit.burst, atMs: now.getTime() };
    bucket.tokens = Math.min(this.limit.burst, bucket.tokens + (now.getTime() - bucket.atMs) * ratePerMs);
    bucket.atMs = now.getTime();
    this.buckets.set(key, bucket);
    if (bucket.tokens < 1) throw refusal((1 - bucket.tokens) / ratePerMs);
    bucket.tokens -= 1;
    // Forget idle callers so the map does not grow with every token ever seen.
    if (this.buckets.size > 10_000) {
      for (const [k, b] of this.buckets) if (b.tokens >= this.limit.burst) this.buckets.delete(k);
    }
  }
}

/** Token buckets in the database, shared by every relay on it. */
export class StoreRateLimiter implements SendLimiter {
  constructor(
    private readonly store: SendLimitStore,
    private readonly limit: RateLimit = DEFAULT_SEND_LIMIT,
  ) {}

  async take(key: string, now: Date): Promise<void> {
    const taken = await this.store.take(key, now.getTime(), this.limit.perMinute / 60_000, this.limit.burst);
    if (!taken.ok) throw refusal(taken.retryAfterMs);
  }
}
