/**
 * Back-off against password guessing on AUTH. Failures are counted per key
 * (the claimed address, the client IP); after `freeFailures` a key is refused
 * outright for a delay that doubles with every further failure, up to
 * `maxDelayMs`. While a key is refused, credentials are not even checked, so a
 * guesser learns nothing and the guess rate is bounded by the delay.
 *
 * In memory by design: a restart forgets the counts, which costs an attacker
 * a restart they cannot cause, and nothing about failures is written to disk
 * but the audit events.
 */

/** How one kind of key backs off. */
export interface BackoffPolicy {
  /** Failures allowed before the first refusal. */
  freeFailures: number;
  /** Delay after the first failure past `freeFailures`; doubles with each further one. */
  baseDelayMs: number;
  maxDelayMs: number;
  /** A key with no failure for this long starts again from zero. */
  forgetAfterMs: number;
}

/** Per claimed address: a responder mistyping a token a few times is not locked out. */
export const ADDRESS_BACKOFF: BackoffPolicy = { freeFailures: 5, baseDelayMs: 2_000, maxDelayMs: 15 * 60_000, forgetAfterMs: 60 * 60_000 };
/** Per client IP: more room, since an office NAT puts many responders behind one address. */
export const IP_BACKOFF: BackoffPolicy = { freeFailures: 20, baseDelayMs: 2_000, maxDelayMs: 15 * 60_000, forgetAfterMs: 60 * 60_000 };

interface Entry {
  failures: number;
  lastFailure: number;
  blockedUntil: number;
}

// Bounds memory under a flood of distinct usernames or addresses; the oldest entries go first.
const MAX_ENTRIES = 50_000;

/** Failure counts and refusal windows for one kind of key. */
export class Backoff {
  private readonly entries = new Map<string, Entry>();

  constructor(private readonly policy: BackoffPolicy) {}

  /** Milliseconds `key` is still refused for at `now`, or 0. */
  blockedFor(key: string, now: Date): number {
    const entry = this.live(key, now.getTime());
    return entry ? Math.max(0, entry.blockedUntil - now.getTime()) : 0;
  }

  /** Records a failure; returns the refusal window it opened in ms (0 while failures are still free). */
  fail(key: string, now: Date): number {
    const at = now.getTime();
    const entry = this.live(key, at) ?? { failures: 0, lastFailure: at, blockedUntil: 0 };
    entry.failures += 1;
    entry.lastFailure = at;
    const over = entry.failures - this.policy.freeFailures;
    const delay = over <= 0 ? 0 : Math.min(this.policy.maxDelayMs, this.policy.baseDelayMs * 2 ** Math.min(over - 1, 30));
    entry.blockedUntil = at + delay;
    // Re-insert so Map order is least recently failed first, for eviction.
    this.entries.delete(key);
    this.entries.set(key, entry);
    if (this.entries.size > MAX_ENTRIES) {
      const oldest = this.entries.keys().next();
      if (!oldest.done) this.entries.delete(oldest.value);
    }
    return delay;
  }

  /** Forgets `key` after a successful login. */
  succeed(key: string): void {
    this.entries.delete(key);
  }

  private live(key: string, at: number): Entry | undefined {
    const entry = this.entries.get(key);
    if (entry && at - entry.lastFailure > this.policy.forgetAfterMs && at >= entry.blockedUntil) {
      this.entries.delete(key);
      return undefined;
    }
    return entry;
  }
}

/** The IP key: IPv4-mapped IPv6 is the IPv4 address; other IPv6 addresses count per /64, which one host usually controls whole. */
export function ipKey(remoteAddress: string): string {
  const address = remoteAddress.toLowerCase().replace(/^::ffff:(?=\d+\.\d+\.\d+\.\d+$)/, '');
  if (!address.includes(':')) return address;
  const [head = '', tail = ''] = address.split('::');
  const left = head === '' ? [] : head.split(':');
  const right = tail === '' ? [] : tail.split(':');
  const groups = address.includes('::') ? [...left, ...Array<string>(Math.max(0, 8 - left.length - right.length)).fill('0'), ...right] : left;
  return `${groups
    .slice(0, 4)
    .map((g) => g.replace(/^0+(?=.)/, ''))
    .join(':')}::/64`;
}
