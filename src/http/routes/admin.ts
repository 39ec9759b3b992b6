/** /healthz, /metrics and /v1/audit/verify. */
import { Router } from 'express';
import type { RelayContext } from '../../context.js';
import { RelayError } from '../../errors.js';
import { authenticate, requireAdmin } from '../auth.js';
import { methodNotAllowed } from '../errors.js';

/** Health (no auth; upstream warnings without reply text), metrics and audit verification (admin). */
export function adminRoutes(ctx: RelayContext): Router {
  const router = Router();
  router
    .route('/healthz')
    .get(async (_req, res) => {
      try {
        await ctx.store.ping();
      } catch {
        throw new RelayError('unavailable', 'The store is not reachable.');
      }
      // Still 200 with warnings: the relay is up and accepting (messages are
      // kept), so a load balancer must not take it out of service; monitoring
      // reads `warnings` (or relay_channel_healthy) to call the admin.
      const warnings = ctx.health?.warnings() ?? [];
      res.json(warnings.length > 0 ? { status: 'ok', warnings } : { status: 'ok' });
    })
    .all(methodNotAllowed);
  router
    .route('/metrics')
    .get(authenticate(ctx), async (_req, res) => {
      requireAdmin(res);
      res.type(ctx.metrics.registry.contentType).send(await ctx.metrics.registry.metrics());
    })
    .all(methodNotAllowed);
  router
    .route('/v1/audit/verify')
    .get(async (_req, res) => {
      requireAdmin(res);
      res.json(await ctx.store.audit.verify());
    })
    .all(methodNotAllowed);
  return router;
}
