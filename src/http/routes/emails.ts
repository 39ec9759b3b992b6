/** POST /v1/incidents/:codename/emails and GET .../emails/:id. */
import { Router, type Request } from 'express';
import { z } from 'zod';
import type { RelayContext } from '../../context.js';
import { RelayError, invalid } from '../../errors.js';
import { authorizeIncident } from '../../services/incidents.js';
import { MAX_RECIPIENTS, emailStatus, submitEmail } from '../../services/emails.js';
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
      const { incident } = await authorizeIncident(ctx, caller, param(req, 'codename'));
      if (req.body && typeof req.body === 'object' && 'from' in req.body) {
        throw new RelayError('invalid_request', 'There is no "from" field: mail is always from the address of your token.', { rule: 'sender' });
      }
      const input = parseInput(SendEmail, req.body);
      const accepted = await submitEmail(
        ctx,
        caller,
        incident,
        {
          to: input.to,
          cc: input.cc ?? [],
          bcc: input.bcc ?? [],
          subject: input.subject,
          text: input.text,
          html: input.html,
          inReplyTo: input.inReplyTo,
          references: input.references,
          attachments: (input.attachments ?? []).map((a) => ({ filename: a.filename, contentType: a.contentType.toLowerCase(), content: Buffer.from(a.content, 'base64') })),
        },
        { via: 'http', idempotencyKey: idempotencyKey(req) },
      );
      res.status(202).json(accepted);
    })
    .all(methodNotAllowed);
  router
    .route('/v1/incidents/:codename/emails/:id')
    .get(async (req, res) => {
      const caller = callerOf(res);
      const { incident, member } = await authorizeIncident(ctx, caller, param(req, 'codename'));
      const id = param(req, 'id');
      const email = await ctx.store.outbox.email(incident.id, id);
      const allowed = caller.role === 'admin' || member?.role === 'commander' || email?.sender === caller.email;
      const status = email && allowed ? await emailStatus(ctx, incident, id) : undefined;
      if (!status) throw new RelayError('not_found', 'No such email that you sent (commanders and admins see all).');
      res.json(status);
    })
    .all(methodNotAllowed);
  return router;
}
