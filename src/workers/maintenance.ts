/**
 * Housekeeping that runs on one relay at a time: forgetting expired
 * Idempotency-Keys, and a safety net for encrypted payloads no queued copy
 * needs (they are normally purged in the transaction that records the last
 * copy's outcome).
 */
import type { Repositories } from '../store/index.js';
import { IDEMPOTENCY_TTL_MS } from '../services/idempotency.js';

/** One maintenance pass; returns what it removed (for tests and the log). */
export async function maintenancePass(repos: Pick<Repositories, 'idempotency' | 'outbox'>, now: Date): Promise<{ idempotencyKeys: number; payloads: number }> {
  const idempotencyKeys = await repos.idempotency.purgeExpired(now.getTime() - IDEMPOTENCY_TTL_MS);
  const payloads = await repos.outbox.purgeOrphanPayloads();
  return { idempotencyKeys, payloads };
}
