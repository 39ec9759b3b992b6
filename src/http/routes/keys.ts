/** PUT/GET/DELETE /v1/keys/:email, and the relay's own public key (no token needed). */
import { Router, type Request } from 'express';
import { z } from 'zod';
import type { RelayContext } from '../../context.js';
import { invalid } from '../../errors.js';
import { putKey, showKey, withdrawKey } from '../../services/key-views.js';
import { emailParam, parseInput } from '../../validation.js';
import { callerOf, param } from '../auth.js';
import { methodNotAllowed } from '../errors.js';

const PutKeyJson = z.strictObject({ publicKey: z.string().max(65536) });
const KeyQuery = z.strictObject({ incident: z.string().min(1).max(80).optional() });

/** The armored text of a PUT: the text/plain body, or JSON {publicKey}. */
function armoredBody(req: Request): string {
  if (req.is('text/plain')) {
    if (typeof req.body !== 'string') throw invalid('Send the armored public key as the text/plain body.');
    return req.body;
  }
  if (req.is('application/json')) return parseInput(PutKeyJson, req.body).publicKey;
  throw invalid('Send the key as text/plain (the armored block) or as JSON {"publicKey": "..."}.');
}

/** Public key upload, revocation, lookup and withdrawal. */
export function keyRoutes(ctx: RelayContext): Router {
  const router = Router();
  router
    .route('/v1/keys/:email')
    .put(async (req, res) => {
      const email = emailParam(param(req, 'email'));
      res.json(await putKey(ctx, callerOf(res), email, armoredBody(req)));
    })
    .get(async (req, res) => {
      const email = emailParam(param(req, 'email'));
      const { incident } = parseInput(KeyQuery, req.query, 'query');
      res.json(await showKey(ctx, callerOf(res), email, incident));
    })
    .delete(async (req, res) => {
      await withdrawKey(ctx, callerOf(res), emailParam(param(req, 'email')));
      res.status(204).end();
    })
    .all(methodNotAllowed);
  return router;
}

/**
 * GET /v1/relay-key and GET /.well-known/incident-relay/relay-key.asc, with no
 * token (issue 12 §8): recipients such as outside counsel verify the relay's
 * signatures without an account. Mounted before /v1 authentication.
 */
export function relayKeyRoutes(ctx: Pick<RelayContext, 'relayKey'>): Router {
  const router = Router();
  router
    .route('/v1/relay-key')
    .get((req, res) => {
      if (req.accepts(['text/plain', 'application/json']) === 'application/json') {
        res.json({ fingerprint: ctx.relayKey.fingerprint, publicKey: ctx.relayKey.publicArmored });
        return;
      }
      res.type('text/plain').send(ctx.relayKey.publicArmored);
    })
    .all(methodNotAllowed);
  router
    .route('/.well-known/incident-relay/relay-key.asc')
    // RFC 3156 §7: application/pgp-keys is the media type of an armored key.
    .get((_req, res) => {
      res.type('application/pgp-keys').send(ctx.relayKey.publicArmored);
    })
    .all(methodNotAllowed);
  return router;
}
