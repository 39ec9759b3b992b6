/** POST /v1/incidents/:codename/emails (and its ?dryRun=true preview), GET .../emails and GET .../emails/:id. */
import { Router, type Request } from 'express';
import type { RelayContext } from '../../context.js';
import { RelayError, invalid } from '../../errors.js';
import { authorizeIncident } from '../../services/incidents.js';
import { emailStatus, listEmails, previewEmail, submitEmail, type EmailSubmission } from '../../services/emails.js';
import { parseInput } from '../../validation.js';
import { callerOf, param } from '../auth.js';
import { methodNotAllowed } from '../errors.js';
import { IDEMPOTENCY_KEY, ListEmails, SendEmail } from '../schemas.js';

// Moved to the shared schema module; re-exported for the worst-case timing test that measures it.
export { isBase64 } from '../schemas.js';

/** `?dryRun=true` asks for the policy preview; anything but true or false is a mistake worth a 400, not a send. */
function isDryRun(req: Request): boolean {
  const value = req.query['dryRun'];
  if (value === undefined || value === 'false') return false;
  if (value === 'true') return true;
  throw invalid('dryRun must be true or false.', { field: 'dryRun' });
}

/** The Idempotency-Key header, when present: printable ASCII, at most 200 characters. */
export function idempotencyKey(req: Request): string | undefined {
  const key = req.get('idempotency-key');
  if (key === undefined) return undefined;
  if (!IDEMPOTENCY_KEY.test(key)) throw invalid('Idempotency-Key must be 1-200 printable ASCII characters.');
  return key;
}

/** Email submission and status routes. */
export function emailRoutes(ctx: RelayContext): Router {
  const router = Router();
  router
    .route('/v1/incidents/:codename/emails')
    .post(async (req, res) => {
      const caller = callerOf(res);
      const dryRun = isDryRun(req);
      const { incident } = await authorizeIncident(ctx, caller, param(req, 'codename'));
      if (req.body && typeof req.body === 'object' && 'from' in req.body) {
        throw new RelayError('invalid_request', 'There is no "from" field: mail is always from the address of your token.', { rule: 'sender' });
      }
      const input = parseInput(SendEmail, req.body);
      const message: EmailSubmission = {
        to: input.to,
        cc: input.cc ?? [],
        bcc: input.bcc ?? [],
        subject: input.subject,
        text: input.text,
        html: input.html,
        inReplyTo: input.inReplyTo,
        references: input.references,
        attachments: (input.attachments ?? []).map((a) => ({ filename: a.filename, contentType: a.contentType.toLowerCase(), content: Buffer.from(a.content, 'base64') })),
      };
      if (dryRun) {
        res.status(200).json(await previewEmail(ctx, caller, incident, message, { via: 'http' }));
        return;
      }
      res.status(202).json(await submitEmail(ctx, caller, incident, message, { via: 'http', idempotencyKey: idempotencyKey(req) }));
    })
    .get(async (req, res) => {
      const caller = callerOf(res);
      const access = await authorizeIncident(ctx, caller, param(req, 'codename'));
      res.json(await listEmails(ctx, caller, access, parseInput(ListEmails, req.query, 'query')));
    })
    .all(methodNotAllowed);
  router
    .route('/v1/incidents/:codename/emails/:id')
    .get(async (req, res) => {
      const caller = callerOf(res);
      const access = await authorizeIncident(ctx, caller, param(req, 'codename'));
      const status = await emailStatus(ctx, caller, access, param(req, 'id'));
      if (!status) throw new RelayError('not_found', 'No such email that you sent (commanders and admins see all).');
      res.json(status);
    })
    .all(methodNotAllowed);
  return router;
}
