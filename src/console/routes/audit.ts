/**
 * The incident's audit timeline: the API's readers (commander, deputy,
 * scribe, admin), the API's filters and paging, read through the same
 * service as GET /v1/incidents/:codename/audit (readIncidentAudit, which
 * takes Bcc recipients out for readers who may not see them); and for
 * admins the whole chain's check, as GET /v1/audit/verify.
 */
import { Router } from 'express';
import type { RelayContext } from '../../context.js';
import { asRelayError } from '../../errors.js';
import { AuditVerifier } from '../../services/audit-checkpoints.js';
import { readIncidentAudit, type AuditPage as EventPage } from '../../services/audit-views.js';
import { AUDIT_READERS } from '../../services/incidents.js';
import { auditInput } from '../forms.js';
import { auditPage, type AuditFilters } from '../views/audit.js';
import { accessOf, activeOf, loadIncident, sendPage, signedInOf } from './common.js';

/** How many events a page of the timeline shows. */
export const TIMELINE_PAGE = 100;

const HOUR_MS = 60 * 60 * 1000;

/** The query's filter values as typed, for the form (strings only; anything else is for the parser to refuse). */
function filtersOf(query: Record<string, unknown>): AuditFilters {
  const text = (name: string): string | undefined => (typeof query[name] === 'string' ? query[name] : undefined);
  return { type: text('type'), actor: text('actor'), since: text('since'), until: text('until'), cursor: text('cursor') };
}

/** GET /console/incidents/:codename/audit?type&actor&since&until&cursor. */
export function auditRoutes(ctx: RelayContext): Router {
  const router = Router();
  // As GET /v1/audit/verify's: checked signatures are remembered, concurrent checks share a pass.
  const verifier = new AuditVerifier(ctx);
  router.get('/incidents/:codename/audit', loadIncident(ctx, AUDIT_READERS), async (req, res) => {
    const { caller } = activeOf(res);
    const access = accessOf(res);
    const query = req.query as Record<string, unknown>;
    let found: EventPage = { events: [] };
    let error;
    try {
      found = await readIncidentAudit(ctx, caller, access, auditInput(query, TIMELINE_PAGE));
    } catch (err) {
      // A bad filter is shown with the form as typed, not as a page of its own.
      error = asRelayError(err);
      if (!error || error.code !== 'invalid_request') throw err;
    }
    // The whole chain's check is an admin's (GET /v1/audit/verify), with the same verifier and checkpoints.
    const verification = caller.role === 'admin' ? await verifier.verify() : undefined;
    const now = ctx.now().getTime();
    sendPage(
      res,
      auditPage({
        signedIn: signedInOf(res),
        incident: access.incident,
        events: found.events,
        next: found.next,
        filters: filtersOf(query),
        recent: { lastHour: new Date(now - HOUR_MS).toISOString(), lastDay: new Date(now - 24 * HOUR_MS).toISOString() },
        verification,
        error,
      }),
      error?.httpStatus ?? 200,
    );
  });
  return router;
}
