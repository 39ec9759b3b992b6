/**
 * Console sessions: a relay token is exchanged once for a random session id
 * that the browser keeps in an HttpOnly cookie. The token itself is never
 * stored, echoed or put in a page; the session row (src/store/console-sessions.ts)
 * keeps the SHA-256 of the id and the token's id, so revoking the token (or
 * replacing the bootstrap token, which keeps its id) ends the session at its
 * next request. Sessions end after SESSION_IDLE_MS without
 * a request and SESSION_MAX_MS after sign-in, whichever comes first.
 */
import { createHash, randomBytes } from 'node:crypto';
import type { RelayContext } from '../context.js';
import type { Caller } from '../services/incidents.js';
import type { ConsoleSession } from '../store/console-sessions.js';
import { callerFromToken, recordTokenUse } from '../services/tokens.js';
import { BOOTSTRAP_TOKEN_ID } from '../store/tokens.js';

/** A session ends after this long without a request (30 minutes). */
export const SESSION_IDLE_MS = 30 * 60_000;
/** …and this long after sign-in in any case (12 hours: a long incident day, then sign in again). */
export const SESSION_MAX_MS = 12 * 60 * 60_000;
// last_seen_at is written at most this often: a page load is a read, not a write, most of the time.
const TOUCH_EVERY_MS = 60_000;

/** Why a session is no longer usable. */
export type SessionEnd = 'signed_out' | 'idle' | 'expired' | 'token_revoked';

/** A live session and the caller it stands for (as the bearer token would). */
export interface ActiveSession {
  session: ConsoleSession;
  caller: Caller;
}

const SESSION_ID = /^[A-Za-z0-9_-]{43}$/;

/** True for a value that can be a session id (32 random bytes, base64url); anything else is not looked up. */
export function isSessionId(value: string): boolean {
  return SESSION_ID.test(value);
}

/** The stored form of a session id. */
export function hashSessionId(id: string): string {
  return createHash('sha256').update(id, 'utf8').digest('hex');
}

// What the audit log says of a session: enough of the hash to tell sessions apart, nothing that opens one.
function sessionRef(idHash: string): string {
  return idHash.slice(0, 16);
}

/**
 * Opens a session for a caller who has just proved their token; audited as
 * `console.signed_in` in the same transaction, which also clears sessions
 * that have ended by time. Returns the id for the cookie.
 */
export async function openSession(deps: Pick<RelayContext, 'store' | 'now'>, caller: Caller, ip: string): Promise<{ id: string; session: ConsoleSession }> {
  const id = randomBytes(32).toString('base64url');
  const now = deps.now();
  const session: ConsoleSession = {
    idHash: hashSessionId(id),
    tokenId: caller.tokenId,
    email: caller.email,
    createdAt: now.toISOString(),
    lastSeenAt: now.toISOString(),
    expiresAt: new Date(now.getTime() + SESSION_MAX_MS).toISOString(),
    flash: null,
  };
  await deps.store.transaction(async (tx) => {
    const purged = await tx.consoleSessions.purgeExpired(now.toISOString(), new Date(now.getTime() - SESSION_IDLE_MS).toISOString());
    await tx.consoleSessions.create(session);
    await tx.audit.append({
      type: 'console.signed_in',
      actor: caller.email,
      outcome: 'ok',
      data: { tokenId: caller.tokenId, role: caller.role, session: sessionRef(session.idHash), ip, ...(purged > 0 ? { endedSessionsPurged: purged } : {}) },
    });
  });
  return { id, session };
}

/** Ends a session: deleted and audited (`console.signed_out` with the reason) together; a second end is a no-op. */
export async function endSession(deps: Pick<RelayContext, 'store'>, session: ConsoleSession, reason: SessionEnd): Promise<void> {
  await deps.store.transaction(async (tx) => {
    if (!(await tx.consoleSessions.delete(session.idHash))) return;
    await tx.audit.append({ type: 'console.signed_out', actor: session.email, outcome: 'ok', data: { tokenId: session.tokenId, session: sessionRef(session.idHash), reason } });
  });
}

/**
 * The session a cookie names and its caller, when it is live: not past its
 * cap, not idle too long, its token neither revoked, gone nor replaced. A session that
 * has ended is removed (and audited) here, at its first request after the end.
 */
export async function resumeSession(deps: Pick<RelayContext, 'store' | 'now'>, id: string): Promise<{ active: ActiveSession } | { ended: SessionEnd | 'unknown' }> {
  if (!isSessionId(id)) return { ended: 'unknown' };
  const session = await deps.store.consoleSessions.get(hashSessionId(id));
  if (!session) return { ended: 'unknown' };
  const now = deps.now();
  const end = async (reason: SessionEnd): Promise<{ ended: SessionEnd }> => {
    await endSession(deps, session, reason);
    return { ended: reason };
  };
  if (now.getTime() >= Date.parse(session.expiresAt)) return end('expired');
  const idleMs = now.getTime() - Date.parse(session.lastSeenAt);
  if (idleMs >= SESSION_IDLE_MS) return end('idle');
  const token = await deps.store.tokens.get(session.tokenId);
  // Only the bootstrap token is ever filed again under its id (RELAY_ADMIN_TOKEN changed): a row of it newer than the session is
  // another token, which never opened this session. Other ids are random and never reused, so the clocks of two relays are not compared for them.
  const replaced = token?.id === BOOTSTRAP_TOKEN_ID && Date.parse(token.createdAt) > Date.parse(session.createdAt);
  if (!token || token.revokedAt !== null || replaced) return end('token_revoked');
  if (idleMs >= TOUCH_EVERY_MS) await Promise.all([deps.store.consoleSessions.touch(session.idHash, now.toISOString()), recordTokenUse(deps.store, token.id, now)]);
  return { active: { session, caller: callerFromToken(token) } };
}
