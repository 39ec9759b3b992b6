/** Idempotency-Key replay for the sending routes (SPEC §4), shared by email and SMS. */
import type { RelayContext } from '../context.js';
import { invalid } from '../errors.js';
import type { Caller } from './incidents.js';

/**
 * The first successful answer stored for this caller and key, if any. A key
 * reused for another route or incident is refused rather than replayed.
 */
export function replayAnswer<T>(ctx: RelayContext, caller: Caller, key: string, route: string): T | undefined {
  const stored = ctx.store.idempotency.get(caller.tokenId, key);
  if (!stored) return undefined;
  if (stored.route !== route) throw invalid('This Idempotency-Key was already used for another request; use a fresh key.');
  return stored.response as T;
}
