/** The incident's audit timeline: the API's readers (commander, deputy, scribe, admin), and for admins the chain check. */
import { Router } from 'express';
import type { RelayContext } from '../../context.js';
import { AuditVerifier } from '../../services/audit-checkpoints.js';
import { AUDIT_READERS } from '../../services/incidents.js';
import type { AuditEvent, AuditLog } from '../../store/audit.js';
import { auditPage } from '../views/audit.js';
import { accessOf, activeOf, loadIncident, sendPage, signedInOf } from './common.js';

/** How many of the newest events the timeline shows. */
export const TIMELINE_SIZE = 200;
const PAGE = 1000;

/**
 * The newest `size` events of the incident, newest first, and whether older
 * ones exist. The store lists in chain order from a sequence number, so the
 * events are read page by page keeping only the last `size`: memory stays
 * bounded whatever the incident's length.
 *
 * TODO(api-routes, second pass): readIncidentAudit with filters and a
 * newest-first cursor reads only what is shown.
 */
export async function newestEvents(audit: Pick<AuditLog, 'listForIncident'>, incidentId: string, size = TIMELINE_SIZE): Promise<{ events: AuditEvent[]; truncated: boolean }> {
  let kept: AuditEvent[] = [];
  let total = 0;
  let after = 0;
  for (;;) {
    const page = await audit.listForIncident(incidentId, { after, limit: PAGE });
    total += page.length;
    kept = kept.concat(page).slice(-size);
    if (page.length < PAGE) break;
    after = page[page.length - 1]!.seq;
  }
  return { events: kept.reverse(), truncated: total > kept.length };
}

/** GET /console/incidents/:codename/audit. */
export function auditRoutes(ctx: RelayContext): Router {
  const router = Router();
  // As GET /v1/audit/verify's: checked signatures are remembered, concurrent checks share a pass.
  const verifier = new AuditVerifier(ctx);
  router.get('/incidents/:codename/audit', loadIncident(ctx, AUDIT_READERS), async (_req, res) => {
    const { caller } = activeOf(res);
    const { incident } = accessOf(res);
    const { events, truncated } = await newestEvents(ctx.store.audit, incident.id);
    // The whole chain's check is an admin's (GET /v1/audit/verify), with the same verifier and checkpoints.
    const verification = caller.role === 'admin' ? await verifier.verify() : undefined;
    sendPage(res, auditPage({ signedIn: signedInOf(res), incident, events, truncated, verification }));
  });
  return router;
}
