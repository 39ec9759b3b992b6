/**
 * Console sign-in with a relay token, behind the same back-off as SMTP AUTH
 * (src/smtp/backoff.ts): failures are counted per client network and per
 * token id (the `ir_<id>_` part of a well-formed token), and after the free
 * failures every attempt is refused for a delay that doubles up to 15
 * minutes, without the token being looked at.
 *
 * Failures are counted, not audited one by one: anyone who can reach the
 * page could otherwise grow the append-only audit log at will. Each failure
 * increments `relay_console_signin_failures_total{reason}` at once, and one
 * `console.signin_failures` event per minute at most (written by the next
 * console request after the minute is up) sums them up by reason and
 * source. A successful sign-in is audited as `console.signed_in`.
 */
import type { Counter, Registry } from 'prom-client';
import { Counter as PromCounter } from 'prom-client';
import type { RelayContext } from '../context.js';
import { RelayError } from '../errors.js';
import type { Caller } from '../services/incidents.js';
import { callerFromToken } from '../services/tokens.js';
import { ADDRESS_BACKOFF, Backoff, IP_BACKOFF, ipKey } from '../smtp/backoff.js';

/** Why a sign-in failed (the `reason` label of the metric, and the summary's keys). */
export type SignInFailure = 'unknown_token' | 'malformed' | 'backoff';

/** How often at most the failures are summed up in the audit log. */
export const SIGNIN_SUMMARY_INTERVAL_MS = 60_000;
// Sources named in one summary (the busiest); the rest are counted as omitted.
const SUMMARY_TOP = 20;
// Sources tracked between summaries; beyond this they are only counted.
const MAX_SOURCES = 10_000;

const WELL_FORMED_ID = /^ir_([a-z0-9]{16})_/;

/** The refusal for a token the relay does not accept: one text for every reason, so a guesser learns nothing. */
export const SIGNIN_REFUSED = 'That token was not accepted: it is unknown, revoked or mistyped. Paste the whole token (ir_…) again, or ask an admin for a new one.';

function signInCounter(registry: Registry): Counter<'reason'> {
  const name = 'relay_console_signin_failures_total';
  // One relay's registry may see several console routers (tests build many apps on one context).
  return (registry.getSingleMetric(name) as Counter<'reason'> | undefined) ?? new PromCounter({ name, help: 'Failed console sign-ins by reason', labelNames: ['reason'], registers: [registry] });
}

/** Back-off and failure counts of one relay's console sign-in. */
export class SignInGuard {
  private readonly byToken = new Backoff(ADDRESS_BACKOFF);
  private readonly byIp = new Backoff(IP_BACKOFF);
  private readonly counter: Counter<'reason'>;
  private from: Date;
  private total = 0;
  private reasons: Partial<Record<SignInFailure, number>> = {};
  private sources = new Map<string, number>();
  private sourcesOmitted = 0;

  constructor(registry: Registry, now: Date) {
    this.counter = signInCounter(registry);
    this.from = now;
  }

  /** Checks a pasted token: the caller it stands for, or `unauthenticated` / `rate_limited` (with retryAfter). */
  async signIn(deps: Pick<RelayContext, 'store' | 'now'>, attempt: { token: string; remoteAddress: string }): Promise<Caller> {
    const now = deps.now();
    const ip = ipKey(attempt.remoteAddress);
    // Pasted tokens often bring a space or a line end along.
    const token = attempt.token.trim();
    const tokenKey = WELL_FORMED_ID.exec(token)?.[1];
    const waitMs = Math.max(this.byIp.blockedFor(ip, now), tokenKey ? this.byToken.blockedFor(`token:${tokenKey}`, now) : 0);
    if (waitMs > 0) {
      // Not a failure of its own: the token was not looked at.
      this.count('backoff', ip);
      const seconds = Math.ceil(waitMs / 1000);
      throw new RelayError('rate_limited', `Too many failed sign-ins from this network or for this token; try again in ${seconds} s.`, { retryAfter: seconds });
    }
    const fail = (reason: SignInFailure): never => {
      this.byIp.fail(ip, now);
      if (tokenKey) this.byToken.fail(`token:${tokenKey}`, now);
      this.count(reason, ip);
      throw new RelayError('unauthenticated', SIGNIN_REFUSED);
    };
    if (token === '' || !/^[\x21-\x7e]{1,200}$/.test(token)) return fail('malformed');
    const record = await deps.store.tokens.verify(token);
    if (!record) return fail('unknown_token');
    if (tokenKey) this.byToken.succeed(`token:${tokenKey}`);
    return callerFromToken(record);
  }

  private count(reason: SignInFailure, ip: string): void {
    this.counter.inc({ reason });
    this.total += 1;
    this.reasons[reason] = (this.reasons[reason] ?? 0) + 1;
    const seen = this.sources.get(ip);
    if (seen !== undefined) this.sources.set(ip, seen + 1);
    else if (this.sources.size < MAX_SOURCES) this.sources.set(ip, 1);
    else this.sourcesOmitted += 1;
  }

  /**
   * Appends one `console.signin_failures` event with the counts since the
   * last one, when there are any and SIGNIN_SUMMARY_INTERVAL_MS has passed.
   */
  async summarise(deps: Pick<RelayContext, 'store' | 'now' | 'replicaId'>): Promise<void> {
    const now = deps.now();
    if (this.total === 0) {
      this.from = now;
      return;
    }
    if (now.getTime() - this.from.getTime() < SIGNIN_SUMMARY_INTERVAL_MS) return;
    const busiest = [...this.sources.entries()].sort(([, a], [, b]) => b - a);
    const data = {
      via: 'console',
      replica: deps.replicaId,
      from: this.from.toISOString(),
      until: now.toISOString(),
      failures: this.total,
      reasons: this.reasons,
      sources: busiest.slice(0, SUMMARY_TOP).map(([ip, failures]) => ({ ip, failures })),
      sourcesOmitted: Math.max(0, busiest.length - SUMMARY_TOP) + this.sourcesOmitted,
    };
    // Reset before the write: a failed append loses one summary, never double-counts into the next.
    this.from = now;
    this.total = 0;
    this.reasons = {};
    this.sources = new Map();
    this.sourcesOmitted = 0;
    await deps.store.audit.append({ type: 'console.signin_failures', actor: null, outcome: 'refused', data });
  }
}
