/**
 * Housekeeping that runs on one relay at a time: forgetting expired
 * Idempotency-Keys. Delivered bodies need no sweep: they are purged in the
 * same transaction that records the delivery.
 */
import type { Repositories } from '../store/index.js';
import { IDEMPOTENCY_TTL_MS } from '../services/idempotency.js';

/** One maintenance pass; returns what it removed (for tests and the log). */
export async function maintenancePass(repos: Pick<Repositories, 'idempotency'>, now: Date): Promise<{ idempotencyKeys: number }> {
  const idempotencyKeys = await repos.idempotency.purgeExpired(now.getTime() - IDEMPOTENCY_TTL_MS);
  return { idempotencyKeys };
}
