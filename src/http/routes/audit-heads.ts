/** GET /v1/audit/heads: the signed checkpoints of the audit chain, for keeping a copy elsewhere (issue 10 §17). */
import { Router } from 'express';
import { z } from 'zod';
import type { RelayContext } from '../../context.js';
import { clearsignedCheckpoint, listCheckpoints } from '../../services/audit-checkpoints.js';
import { parseInput } from '../../validation.js';
import { requireAdmin } from '../auth.js';
import { methodNotAllowed } from '../errors.js';

const HeadsQuery = z.strictObject({
  format: z.enum(['json', 'text']).optional(),
  limit: z.coerce.number().int().min(1).max(1000).optional(),
  // Opaque to callers; it is the last seq of the page before.
  cursor: z.string().regex(/^[1-9]\d{0,15}$/, 'must be a cursor from a previous answer').optional(),
});

/** Admin export of signed checkpoints: JSON, or clearsigned texts that `gpg --verify` checks against GET /v1/relay-key. */
export function auditHeadsRoutes(ctx: Pick<RelayContext, 'store'>): Router {
  const router = Router();
  router
    .route('/v1/audit/heads')
    .get(async (req, res) => {
      requireAdmin(res);
      const query = parseInput(HeadsQuery, req.query, 'query');
      const page = await listCheckpoints(ctx.store, { cursor: query.cursor, limit: query.limit ?? 100 });
      if (query.format === 'text') {
        if (page.next !== undefined) res.setHeader('X-Next-Cursor', page.next);
        const texts = await Promise.all(page.checkpoints.map((checkpoint) => clearsignedCheckpoint(checkpoint)));
        res.type('text/plain').send(texts.join('\n'));
        return;
      }
      res.json(page);
    })
    .all(methodNotAllowed);
  return router;
}
