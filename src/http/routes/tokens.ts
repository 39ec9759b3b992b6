/** POST /v1/tokens, DELETE /v1/tokens/:id (admin). */
import { Router } from 'express';
import { z } from 'zod';
import type { RelayContext } from '../../context.js';
import { RelayError } from '../../errors.js';
import { emailAddress, headerText, parseInput } from '../../validation.js';
import { methodNotAllowed } from '../errors.js';
import { param, requireAdmin } from '../auth.js';

const CreateToken = z.strictObject({
  email: emailAddress,
  role: z.enum(['admin', 'responder']),
  label: headerText(200).optional(),
});

/** Token issue and revocation. */
export function tokenRoutes(ctx: RelayContext): Router {
  const router = Router();
  router
    .route('/v1/tokens')
    .post(async (req, res) => {
      const caller = requireAdmin(res);
      const input = parseInput(CreateToken, req.body);
      const { record, token } = await ctx.store.transaction(async (tx) => {
        const created = await tx.tokens.create({ ...input, at: ctx.now() });
        await tx.audit.append({ type: 'token.created', actor: caller.email, outcome: 'ok', data: { id: created.record.id, email: input.email, role: input.role } });
        return created;
      });
      res.status(201).json({ id: record.id, token, email: record.email, role: record.role, label: record.label, createdAt: record.createdAt });
    })
    .all(methodNotAllowed);
  router
    .route('/v1/tokens/:id')
    .delete(async (req, res) => {
      const caller = requireAdmin(res);
      const id = param(req, 'id');
      const revoked = await ctx.store.transaction(async (tx) => {
        const done = await tx.tokens.revoke(id, ctx.now());
        if (done) await tx.audit.append({ type: 'token.revoked', actor: caller.email, outcome: 'ok', data: { id } });
        return done;
      });
      if (!revoked) throw new RelayError('not_found', `No live token with id ${id.slice(0, 40)}.`);
      res.status(204).end();
    })
    .all(methodNotAllowed);
  return router;
}
