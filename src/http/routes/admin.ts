/** /healthz, /metrics, GET /v1/audit and /v1/audit/verify. */
import { Router } from 'express';
import { z } from 'zod';
import type { RelayContext } from '../../context.js';
import { RelayError } from '../../errors.js';
import { AuditVerifier } from '../../services/audit-checkpoints.js';
import { readAudit } from '../../services/audit-views.js';
import { parseInput } from '../../validation.js';
import { authenticate, callerOf, requireAdmin } from '../auth.js';
import { methodNotAllowed } from '../errors.js';
import { auditQuery } from '../schemas.js';

const VerifyQuery = z.strictObject({ full: z.enum(['true', 'false']).optional() });

/** Health (no auth; upstream warnings without reply text), metrics and audit verification (admin). */
export function adminRoutes(ctx: RelayContext): Router {
  const router = Router();
  router
    .route('/healthz')
    .get(async (_req, res) => {
      try {
        await ctx.store.ping();
      } catch {
        // 503: a relay without its database accepts nothing; the load balancer should send clients elsewhere.
        throw new RelayError('unavailable', `The store (${ctx.store.dialect}) is not reachable; this relay accepts nothing until it is.`, { retryAfter: 5 });
      }
      // Still 200 with warnings: the relay is up and accepting (messages are
      // kept), so a load balancer must not take it out of service; monitoring
      // reads `warnings` (or relay_channel_healthy) to call the admin.
      const warnings = ctx.health?.warnings() ?? [];
      const status = { status: 'ok', store: ctx.store.dialect };
      res.json(warnings.length > 0 ? { ...status, warnings } : status);
    })
    .all(methodNotAllowed);
  router
    .route('/metrics')
    .get(authenticate(ctx), async (_req, res) => {
      requireAdmin(res);
      res.type(ctx.metrics.registry.contentType).send(await ctx.metrics.registry.metrics());
    })
    .all(methodNotAllowed);
  // One verifier per app: it remembers signatures it has checked, and concurrent requests share a pass.
  const verifier = new AuditVerifier(ctx);
  router
    .route('/v1/audit')
    .get(async (req, res) => {
      res.json(await readAudit(ctx, callerOf(res), auditQuery(req.query, 'all')));
    })
    .all(methodNotAllowed);
  router
    .route('/v1/audit/verify')
    .get(async (req, res) => {
      requireAdmin(res);
      const { full } = parseInput(VerifyQuery, req.query, 'query');
      res.json(await verifier.verify({ full: full === 'true' }));
    })
    .all(methodNotAllowed);
  return router;
}
