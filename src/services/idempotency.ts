/**
 * Idempotency-Key replay for the sending routes (SPEC §4), shared by email
 * and SMS. A key is bound to a fingerprint of the request it first answered:
 * the same key with a different request is refused rather than answered with
 * the first request's answer (which would silently drop the second message).
 * Keys expire after IDEMPOTENCY_TTL_MS.
 */
import { createHash } from 'node:crypto';
import { RelayError } from '../errors.js';
import { canonicalJson } from '../store/audit.js';
import type { Repositories } from '../store/index.js';
import type { Caller } from './incidents.js';

/** How long a key is remembered: a retry after this is a new request. */
export const IDEMPOTENCY_TTL_MS = 24 * 60 * 60 * 1000;

/** SHA-256 over the route and the canonical JSON of what the request asks for. */
export function requestFingerprint(route: string, request: unknown): string {
  return createHash('sha256').update(route).update('\n').update(canonicalJson(request)).digest('hex');
}

/** A key, the route it is used on, and the fingerprint of this request. */
export interface IdempotencyUse {
  key: string;
  route: string;
  fingerprint: string;
}

/**
 * The first successful answer stored for this caller and key, if any and not
 * expired. A key reused for another route, incident or request is refused
 * with `idempotency_key_reused`.
 */
export async function replayAnswer<T>(repos: Pick<Repositories, 'idempotency'>, caller: Caller, use: IdempotencyUse, now: Date): Promise<T | undefined> {
  const stored = await repos.idempotency.get(caller.tokenId, use.key, now.getTime() - IDEMPOTENCY_TTL_MS);
  if (!stored) return undefined;
  // Keys stored before fingerprints existed carry none; the route still has to match.
  if (stored.route !== use.route || (stored.fingerprint !== null && stored.fingerprint !== use.fingerprint)) {
    throw new RelayError(
      'idempotency_key_reused',
      'This Idempotency-Key was already used for a different request; nothing was sent. Use a fresh key for a new message (a key is remembered for 24 hours).',
      { details: { idempotencyKey: use.key.slice(0, 200) } },
    );
  }
  return stored.response as T;
}

/** Stores the answer in the caller's transaction; false when another request with the key committed first. */
export function rememberAnswer(tx: Pick<Repositories, 'idempotency'>, caller: Caller, use: IdempotencyUse, status: number, response: unknown, now: Date): Promise<boolean> {
  return tx.idempotency.put(caller.tokenId, use.key, { route: use.route, fingerprint: use.fingerprint, status, response }, now, now.getTime() - IDEMPOTENCY_TTL_MS);
}
