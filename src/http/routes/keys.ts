/** PUT/GET /v1/keys/:email and GET /v1/relay-key. */
import { Router } from 'express';
import { z } from 'zod';
import type { RelayContext } from '../../context.js';
import { RelayError, invalid } from '../../errors.js';
import { emailParam, parseInput } from '../../validation.js';
import { callerOf, param } from '../auth.js';
import { methodNotAllowed } from '../errors.js';

const PutKeyJson = z.strictObject({ publicKey: z.string().max(65536) });

/** Public key upload and lookup, and the relay's own public key. */
export function keyRoutes(ctx: RelayContext): Router {
  const router = Router();
  router
    .route('/v1/keys/:email')
    .put(async (req, res) => {
      const caller = callerOf(res);
      const email = emailParam(param(req, 'email'));
      if (caller.role !== 'admin' && caller.email !== email) throw new RelayError('forbidden', 'Only the key\'s owner or an admin may upload a key for this address.');
      let armored: string;
      if (req.is('text/plain')) {
        if (typeof req.body !== 'string') throw invalid('Send the armored public key as the text/plain body.');
        armored = req.body;
      } else if (req.is('application/json')) {
        armored = parseInput(PutKeyJson, req.body).publicKey;
      } else {
        throw invalid('Send the key as text/plain (the armored block) or as JSON {"publicKey": "..."}.');
      }
      res.json(await ctx.keys.put(email, armored, 'api', caller.email));
    })
    .get(async (req, res) => {
      callerOf(res);
      const email = emailParam(param(req, 'email'));
      const key = await ctx.keys.get(email);
      if (!key) throw new RelayError('not_found', `No public key on file for ${email}.`);
      res.json(key);
    })
    .all(methodNotAllowed);
  router
    .route('/v1/relay-key')
    .get((_req, res) => {
      callerOf(res);
      res.type('text/plain').send(ctx.relayKey.publicArmored);
    })
    .all(methodNotAllowed);
  return router;
}
