/**
 * SMTP AUTH (PLAIN and LOGIN): username = the responder's email address,
 * password = their relay token. The token must belong to that address. Wrong
 * credentials feed the back-off and are counted for the listener's periodic
 * summary (unauthenticated.ts), not audited one by one: anyone who reaches the
 * port could otherwise grow the audit log at will. The one exception is a
 * valid token presented for another address, which only a token holder can
 * cause: it is audited with the token's id so an admin can revoke it.
 */
import { createHash } from 'node:crypto';
import type { RelayContext } from '../context.js';
import { RelayError } from '../errors.js';
import type { Caller } from '../services/incidents.js';
import { callerFromToken, recordTokenUse } from '../services/tokens.js';
import { isEmailAddress, normalisedEmail } from '../validation.js';
import { ADDRESS_BACKOFF, Backoff, IP_BACKOFF, ipKey } from './backoff.js';
import type { UnauthenticatedTally } from './unauthenticated.js';

/** What the client presented. */
export interface AuthAttempt {
  method: string;
  username: string;
  password: string;
  /** PLAIN only: the authorization identity (RFC 4616), empty when not given. */
  authzid: string;
  remoteAddress: string;
  sessionId: string;
}

/** Why an attempt failed, as counted (and, for token_of_other_user, audited). */
export type AuthFailureReason = 'unknown_token' | 'token_of_other_user' | 'authzid_mismatch' | 'bad_username' | 'backoff';

/** The back-off state shared by every session of one listener. */
export interface AuthGuard {
  byAddress: Backoff;
  byIp: Backoff;
}

/** A fresh back-off state with the default policies. */
export function createAuthGuard(): AuthGuard {
  return { byAddress: new Backoff(ADDRESS_BACKOFF), byIp: new Backoff(IP_BACKOFF) };
}

const BAD_CREDENTIALS =
  'Authentication failed: the username must be your email address and the password your relay token (ask an admin for a new token if it was revoked).';

// A mistyped username may be the token pasted into the wrong field: only a
// well-formed address is recorded as such, anything else as a short hash.
function auditedUsername(username: string): Record<string, string> {
  if (isEmailAddress(username)) return { username };
  return { usernameSha256: createHash('sha256').update(username, 'utf8').digest('hex').slice(0, 16) };
}

/**
 * Checks one attempt: the caller on success; RelayError `unauthenticated` for
 * wrong credentials, `rate_limited` (with retryAfter) while the address or the
 * client IP is backing off. Every failure is counted in `tally`;
 * `token_of_other_user` is also audited as `smtp.auth_failed`.
 */
export async function authenticate(
  deps: Pick<RelayContext, 'store' | 'now'>,
  guard: AuthGuard,
  attempt: AuthAttempt,
  tally: Pick<UnauthenticatedTally, 'authFailure'>,
): Promise<Caller> {
  const now = deps.now();
  // The one normaliser (A-label domain), as tokens and the roster store addresses.
  const username = normalisedEmail(attempt.username.trim()) ?? attempt.username.trim().toLowerCase();
  const addressKey = `user:${username}`;
  const ip = ipKey(attempt.remoteAddress);
  const noteFailure = async (reason: AuthFailureReason, extra: Record<string, unknown> = {}): Promise<void> => {
    tally.authFailure(reason, attempt.remoteAddress, username);
    if (reason !== 'token_of_other_user') return;
    await deps.store.audit.append({
      type: 'smtp.auth_failed',
      actor: username,
      outcome: 'refused',
      data: { via: 'smtp', session: attempt.sessionId, ip, method: attempt.method, reason, ...auditedUsername(username), ...extra },
    });
  };

  const waitMs = Math.max(guard.byAddress.blockedFor(addressKey, now), guard.byIp.blockedFor(ip, now));
  if (waitMs > 0) {
    // Not a failure for the back-off (the credentials were not looked at); counted for the summary.
    await noteFailure('backoff');
    const seconds = Math.ceil(waitMs / 1000);
    throw new RelayError('rate_limited', `Too many failed logins for this address or from this network; try again in ${seconds} s.`, { retryAfter: seconds });
  }

  const fail = async (reason: AuthFailureReason, extra: Record<string, unknown> = {}): Promise<never> => {
    const blockedMs = Math.max(guard.byAddress.fail(addressKey, now), guard.byIp.fail(ip, now));
    await noteFailure(reason, { ...extra, ...(blockedMs > 0 ? { backoffSeconds: Math.ceil(blockedMs / 1000) } : {}) });
    throw new RelayError('unauthenticated', BAD_CREDENTIALS);
  };

  if (!isEmailAddress(username)) return fail('bad_username');
  // RFC 4616 §2: an authorization identity other than the authentication identity asks to act as someone else.
  const authzid = normalisedEmail(attempt.authzid.trim()) ?? attempt.authzid.trim().toLowerCase();
  if (authzid !== '' && authzid !== username) return fail('authzid_mismatch');
  const record = attempt.password === '' ? undefined : await deps.store.tokens.verify(attempt.password);
  if (!record) return fail('unknown_token');
  // The token id is not secret; it lets an admin revoke a token that someone else presented.
  if (normalisedEmail(record.email) !== username) return fail('token_of_other_user', { tokenId: record.id });

  guard.byAddress.succeed(addressKey);
  // An SMTP login is a use of the token too (GET /v1/tokens lastUsedAt).
  await recordTokenUse(deps.store, record.id, now);
  return callerFromToken(record);
}
