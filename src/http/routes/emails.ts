/** POST /v1/incidents/:codename/emails (and its ?dryRun=true preview), GET .../emails and GET .../emails/:id. */
import { Router, type Request } from 'express';
import { z } from 'zod';
import type { RelayContext } from '../../context.js';
import { RelayError, invalid } from '../../errors.js';
import { authorizeIncident } from '../../services/incidents.js';
import { MAX_RECIPIENTS, emailStatus, listEmails, previewEmail, submitEmail, type EmailSubmission } from '../../services/emails.js';
import { emailAddress, headerText, messageId, parseInput } from '../../validation.js';
import { callerOf, param } from '../auth.js';
import { methodNotAllowed } from '../errors.js';

// A grouped regex overflowed V8's backtrack stack on a 25 MB attachment (HTTP 500), hence a linear check.
/** RFC 4648 base64 with padding, no line breaks; linear and stack-free at any size. */
export function isBase64(s: string): boolean {
  if (s.length % 4 !== 0) return false;
  const pad = s.endsWith('==') ? 2 : s.endsWith('=') ? 1 : 0;
  return !/[^A-Za-z0-9+/]/.test(pad === 0 ? s : s.slice(0, s.length - pad));
}
const CONTENT_TYPE = /^[a-z0-9][a-z0-9!#$&^_.+-]{0,126}\/[a-z0-9][a-z0-9!#$&^_.+-]{0,126}$/i;

/** Attachment names are labels, never paths: no separators, no leading dot, no control characters. */
const filename = headerText(255).refine((s) => s.trim() !== '' && !/[/\\]/.test(s) && !s.startsWith('.') && !/[\x00-\x1f\x7f]/.test(s), {
  message: 'must be a plain file name without path separators or a leading dot',
});

const recipients = z.array(emailAddress).max(MAX_RECIPIENTS);

const SendEmail = z.strictObject({
  to: recipients.min(1),
  cc: recipients.optional(),
  bcc: recipients.optional(),
  subject: headerText(998).optional(),
  text: z.string(),
  html: z.string().optional(),
  inReplyTo: messageId.optional(),
  references: z.array(messageId).max(100).optional(),
  attachments: z
    .array(
      z.strictObject({
        filename,
        contentType: z.string().regex(CONTENT_TYPE, 'must be a MIME type such as application/pdf'),
        content: z.string().refine(isBase64, 'must be base64 (RFC 4648, no line breaks)'),
      }),
    )
    .max(100)
    .optional(),
});

/** Paging and the Message-ID lookup of GET …/emails (API contract: limit 1-1000, default 100). */
const ListEmails = z.strictObject({
  limit: z.coerce.number().int().min(1).max(1000).default(100),
  cursor: z.string().min(1).max(400).optional(),
  messageId: messageId.optional(),
});

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
  if (!/^[\x21-\x7e]{1,200}$/.test(key)) throw invalid('Idempotency-Key must be 1-200 printable ASCII characters.');
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
