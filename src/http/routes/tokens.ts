/** POST /v1/tokens, GET /v1/tokens, DELETE /v1/tokens/:id (issue 12 §3). */
import { Router } from 'express';
import { z } from 'zod';
import type { RelayContext } from '../../context.js';
import { issueToken, listTokens, revokeToken } from '../../services/tokens.js';
import { emailAddress, headerText, parseInput } from '../../validation.js';
import { methodNotAllowed } from '../errors.js';
import { callerOf, param } from '../auth.js';

const CreateToken = z.strictObject({
  email: emailAddress,
  role: z.enum(['admin', 'responder']),
  label: headerText(200).optional(),
  incident: z.string().min(1).max(80).optional(),
});

/** Token issue, listing and revocation; who may do what is the service's (src/services/tokens.ts). */
export function tokenRoutes(ctx: RelayContext): Router {
  const router = Router();
  router
    .route('/v1/tokens')
    .post(async (req, res) => {
      const { record, token } = await issueToken(ctx, callerOf(res), parseInput(CreateToken, req.body));
      res.status(201).json({ id: record.id, token, email: record.email, role: record.role, label: record.label, createdAt: record.createdAt });
    })
    .get(async (_req, res) => {
      res.json({ tokens: await listTokens(ctx, callerOf(res)) });
    })
    .all(methodNotAllowed);
  router
    .route('/v1/tokens/:id')
    .delete(async (req, res) => {
      await revokeToken(ctx, callerOf(res), param(req, 'id'));
      res.status(204).end();
    })
    .all(methodNotAllowed);
  return router;
}
