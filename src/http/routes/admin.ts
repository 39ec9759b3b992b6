/** /healthz, /metrics, GET /v1/audit and /v1/audit/verify. */
import { Router } from 'express';
import { z } from 'zod';
import type { RelayContext } from '../../context.js';
import { RelayError } from '../../errors.js';
import { AuditVerifier } from '../../services/audit-checkpoints.js';
import { auditCursorSeq, readAudit, type AuditRequest } from '../../services/audit-views.js';
import { parseInput } from '../../validation.js';
import { authenticate, callerOf, requireAdmin } from '../auth.js';
import { methodNotAllowed } from '../errors.js';

const VerifyQuery = z.strictObject({ full: z.enum(['true', 'false']).optional() });

/** An ISO date or time, compared as the log stores times (UTC, toISOString). */
const isoTime = z
  .string()
  .max(40)
  .refine((s) => /^\d{4}-\d{2}-\d{2}([T ][0-9:.]+(Z|[+-]\d{2}:?\d{2})?)?$/.test(s) && !Number.isNaN(Date.parse(s)), { message: 'must be an ISO date or time such as 2026-11-28 or 2026-11-28T10:00:00Z' })
  .transform((s) => new Date(Date.parse(s)).toISOString());

const AuditQuery = z.strictObject({
  // `smtp.*` names every type that starts with `smtp.`.
  type: z
    .string()
    .regex(/^[a-z][a-z0-9_]*(\.[a-z0-9_]+)*(\.\*)?$/, 'must be an event type such as email.decision, or a prefix such as smtp.*')
    .max(100)
    .optional(),
  actor: z.string().min(1).max(254).optional(),
  incident: z.string().min(1).max(80).optional(),
  since: isoTime.optional(),
  until: isoTime.optional(),
  limit: z.coerce.number().int().min(1).max(1000).default(100),
  cursor: z.string().max(40).optional(),
  // The incident route's older paging parameter: a sequence number.
  after: z.coerce.number().int().min(0).optional(),
});

/** Parses the audit filters of GET /v1/audit (`scope` all) or GET /v1/incidents/:codename/audit (no `incident`). */
export function auditQuery(query: unknown, scope: 'all' | 'incident'): AuditRequest {
  const q = parseInput(AuditQuery, query, 'query');
  if (scope === 'incident' && q.incident !== undefined) throw new RelayError('invalid_request', 'incident is a filter of GET /v1/audit; this route is one incident\'s already.', { details: { field: 'incident' } });
  const after = q.cursor !== undefined ? auditCursorSeq(q.cursor) : q.after;
  const prefix = q.type?.endsWith('.*') ? q.type.slice(0, -1) : undefined;
  return {
    type: prefix === undefined ? q.type : undefined,
    typePrefix: prefix,
    actor: q.actor?.toLowerCase(),
    incident: q.incident,
    since: q.since,
    until: q.until,
    after,
    limit: q.limit,
  };
}

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
