/**
 * What unauthenticated SMTP clients cause, counted in memory (issue 10 §16).
 *
 * Anyone who can reach the submission port can connect and fail AUTH as often
 * as the back-off lets them. An fsync'ed, undeletable audit event for each of
 * those would let strangers grow the audit log at will, so connections that
 * never authenticate and failed AUTH attempts are counted here instead — by
 * reason, by network (IPv4 /24, IPv6 /64) and by claimed address, in bounded
 * maps — and the listener appends one `smtp.unauthenticated_summary` event per
 * interval when there is something to report. What an authenticated user
 * does stays audited event by event.
 *
 * Per relay, not per database: each replica summarises its own listener's
 * traffic, so no lease is needed and nothing is lost when replicas come and go.
 */
import { createHash } from 'node:crypto';
import type { Counter } from 'prom-client';
import { normalisedEmail } from '../validation.js';
import { ipKey } from './backoff.js';

/** Why an unauthenticated client was counted (the `reason` label of relay_smtp_unauthenticated_total). */
export type UnauthenticatedReason =
  /** A connection that closed without a successful AUTH. */
  | 'connection'
  /** A connection cut before the greeting (over maxClients, or gone at once). */
  | 'before_greeting'
  /** A failed AUTH attempt, by its reason. */
  | 'unknown_token'
  | 'token_of_other_user'
  | 'authzid_mismatch'
  | 'bad_username'
  | 'backoff';

/** Networks or addresses tracked per interval; beyond this, new ones are only counted as omitted. */
export const MAX_TRACKED_KEYS = 10_000;
/** How many networks and addresses the summary names (the busiest); the rest are counted. */
export const SUMMARY_TOP = 50;

/** The IPv4 /24 or IPv6 /64 a client address belongs to, as `a.b.c.0/24` or `x:x:x:x::/64`. */
export function networkOf(remoteAddress: string): string {
  const key = ipKey(remoteAddress);
  if (key.endsWith('/64')) return key;
  const octets = key.split('.');
  return octets.length === 4 ? `${octets.slice(0, 3).join('.')}.0/24` : key.slice(0, 64);
}

// A username that is not an address may be a token pasted into the wrong field: only a hash of it is kept.
// An address is counted under its normalised form, so two spellings of one (`Bücher`, `xn--bcher-kva`) are one claimant.
function claimedKey(username: string): string {
  const address = normalisedEmail(username.trim());
  if (address !== undefined) return address;
  return `sha256:${createHash('sha256').update(username.trim().toLowerCase(), 'utf8').digest('hex').slice(0, 16)}`;
}

interface NetworkCount {
  connections: number;
  authFailures: number;
}

/** The summary's data, as audited. */
export interface UnauthenticatedSummary {
  via: 'smtp';
  replica: string;
  from: string;
  until: string;
  connections: { total: number; beforeGreeting: number; cut: Record<string, number> };
  authFailures: { total: number; reasons: Record<string, number> };
  /** The busiest networks, most first. */
  networks: Array<{ network: string } & NetworkCount>;
  networksOmitted: number;
  /** The addresses most AUTH failures claimed, most first (a non-address as `usernameSha256`). */
  usernames: Array<({ username: string } | { usernameSha256: string }) & { authFailures: number }>;
  usernamesOmitted: number;
}

/** A bounded map of counters: keys beyond `max` are not stored, only counted as omitted. */
class BoundedCounts<V> {
  readonly entries = new Map<string, V>();
  omitted = 0;
  constructor(
    private readonly make: () => V,
    private readonly max: number,
  ) {}

  get(key: string): V | undefined {
    let value = this.entries.get(key);
    if (value === undefined) {
      if (this.entries.size >= this.max) {
        this.omitted += 1;
        return undefined;
      }
      value = this.make();
      this.entries.set(key, value);
    }
    return value;
  }
}

/** Counts unauthenticated traffic of one listener between summaries. */
export class UnauthenticatedTally {
  private from!: Date;
  private connections!: number;
  private beforeGreeting!: number;
  private cut!: Record<string, number>;
  private failures!: number;
  private reasons!: Record<string, number>;
  private networks!: BoundedCounts<NetworkCount>;
  private usernames!: BoundedCounts<{ count: number }>;

  constructor(
    private readonly counter: Pick<Counter<'reason'>, 'inc'>,
    now: Date,
    private readonly maxKeys = MAX_TRACKED_KEYS,
  ) {
    this.reset(now);
  }

  /** A connection closed without authenticating; `cut` says why the relay closed it, when it did. */
  connection(remoteAddress: string, how: { beforeGreeting?: boolean; cut?: string | undefined } = {}): void {
    const reason: UnauthenticatedReason = how.beforeGreeting ? 'before_greeting' : 'connection';
    this.counter.inc({ reason });
    this.connections += 1;
    if (how.beforeGreeting) this.beforeGreeting += 1;
    if (how.cut !== undefined) this.cut[how.cut] = (this.cut[how.cut] ?? 0) + 1;
    const network = this.networks.get(networkOf(remoteAddress));
    if (network) network.connections += 1;
  }

  /** A failed AUTH attempt. */
  authFailure(reason: Exclude<UnauthenticatedReason, 'connection' | 'before_greeting'>, remoteAddress: string, username: string): void {
    this.counter.inc({ reason });
    this.failures += 1;
    this.reasons[reason] = (this.reasons[reason] ?? 0) + 1;
    const network = this.networks.get(networkOf(remoteAddress));
    if (network) network.authFailures += 1;
    const claimed = this.usernames.get(claimedKey(username));
    if (claimed) claimed.count += 1;
  }

  /** The counts since the last take, and starts counting afresh; undefined when nothing happened. */
  take(replica: string, now: Date): UnauthenticatedSummary | undefined {
    if (this.connections === 0 && this.failures === 0) {
      this.from = now;
      return undefined;
    }
    const busiest = [...this.networks.entries.entries()].sort(([, a], [, b]) => b.connections + b.authFailures - (a.connections + a.authFailures));
    const claimed = [...this.usernames.entries.entries()].sort(([, a], [, b]) => b.count - a.count);
    const summary: UnauthenticatedSummary = {
      via: 'smtp',
      replica,
      from: this.from.toISOString(),
      until: now.toISOString(),
      connections: { total: this.connections, beforeGreeting: this.beforeGreeting, cut: this.cut },
      authFailures: { total: this.failures, reasons: this.reasons },
      networks: busiest.slice(0, SUMMARY_TOP).map(([network, counts]) => ({ network, ...counts })),
      networksOmitted: Math.max(0, busiest.length - SUMMARY_TOP) + this.networks.omitted,
      usernames: claimed
        .slice(0, SUMMARY_TOP)
        .map(([key, { count }]) => (key.startsWith('sha256:') ? { usernameSha256: key.slice('sha256:'.length), authFailures: count } : { username: key, authFailures: count })),
      usernamesOmitted: Math.max(0, claimed.length - SUMMARY_TOP) + this.usernames.omitted,
    };
    this.reset(now);
    return summary;
  }

  private reset(now: Date): void {
    this.from = now;
    this.connections = 0;
    this.beforeGreeting = 0;
    this.cut = {};
    this.failures = 0;
    this.reasons = {};
    this.networks = new BoundedCounts(() => ({ connections: 0, authFailures: 0 }), this.maxKeys);
    this.usernames = new BoundedCounts(() => ({ count: 0 }), this.maxKeys);
  }
}
