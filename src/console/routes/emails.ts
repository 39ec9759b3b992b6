/**
 * The incident's emails with their delivery status: GET …/emails of the
 * API (listEmails, the same paging, Message-ID lookup and visibility: the
 * sender their own, the commander and admins all).
 */
import { Router } from 'express';
import type { RelayContext } from '../../context.js';
import { asRelayError, type RelayError } from '../../errors.js';
import { listEmails, type EmailView } from '../../services/emails.js';
import { emailListInput } from '../forms.js';
import { emailsPage } from '../views/emails.js';
import { accessOf, activeOf, loadIncident, sendPage, signedInOf } from './common.js';

/** How many emails a page of the screen shows. */
export const EMAILS_PAGE = 25;

/** GET /console/incidents/:codename/emails?cursor&messageId. */
export function emailRoutes(ctx: RelayContext): Router {
  const router = Router();
  router.get('/incidents/:codename/emails', loadIncident(ctx), async (req, res) => {
    const { caller } = activeOf(res);
    const access = accessOf(res);
    const query = req.query as Record<string, unknown>;
    const text = (name: string): string | undefined => (typeof query[name] === 'string' && query[name] !== '' ? query[name] : undefined);
    let found: { emails: EmailView[]; next?: string } = { emails: [] };
    let error: RelayError | undefined;
    try {
      found = await listEmails(ctx, caller, access, emailListInput(query, EMAILS_PAGE));
    } catch (err) {
      // A malformed Message-ID or cursor is shown with the lookup form as typed.
      error = asRelayError(err);
      if (!error || error.code !== 'invalid_request') throw err;
    }
    sendPage(
      res,
      emailsPage({ signedIn: signedInOf(res), incident: access.incident, emails: found.emails, next: found.next, cursor: text('cursor'), messageId: text('messageId'), error }),
      error?.httpStatus ?? 200,
    );
  });
  return router;
}
