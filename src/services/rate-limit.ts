/**
 * Per-token rate limits on the sending routes: a token bucket per caller, so
 * a leaked or runaway token cannot flood recipients or the queue.
 */
import { RelayError } from '../errors.js';

export interface RateLimit {
  /** Sustained sends per minute. */
  perMinute: number;
  /** Sends allowed in a burst above the sustained rate. */
  burst: number;
}

/** Defaults: generous for people and scripts in an incident, tight enough to stop a flood. */
export const DEFAULT_SEND_LIMIT: RateLimit = { perMinute: 120, burst: 60 };

/** Token buckets keyed by caller; `take` refuses with rate_limited and a Retry-After. */
export class RateLimiter {
  private readonly buckets = new Map<string, { tokens: number; atMs: number }>();

  constructor(private readonly limit: RateLimit = DEFAULT_SEND_LIMIT) {}

  /** Takes one send for `key` at `now`, or throws rate_limited saying when to retry. */
  take(key: string, now: Date): void {
    const ratePerMs = this.limit.perMinute / 60_000;
    const bucket = this.buckets.get(key) ?? { tokens: this.limit.burst, atMs: now.getTime() };
    bucket.tokens = Math.min(this.limit.burst, bucket.tokens + (now.getTime() - bucket.atMs) * ratePerMs);
    bucket.atMs = now.getTime();
    this.buckets.set(key, bucket);
    if (bucket.tokens < 1) {
      const retryAfter = Math.ceil((1 - bucket.tokens) / ratePerMs / 1000);
      throw new RelayError('rate_limited', `Too many messages from this token; try again in ${retryAfter} s.`, { retryAfter });
    }
    bucket.tokens -= 1;
    // Forget idle callers so the map does not grow with every token ever seen.
    if (this.buckets.size > 10_000) {
      for (const [k, b] of this.buckets) if (b.tokens >= this.limit.burst) this.buckets.delete(k);
    }
  }
}
