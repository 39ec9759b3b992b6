/** The incidents list, declaring, and closing and reopening (each with its confirmation page). */
import { Router } from 'express';
import type { RelayContext } from '../../context.js';
import { asRelayError } from '../../errors.js';
import { COMMANDERS, closeIncident, commanderOf, createIncident, permits, reopenIncident, visibleIncidents } from '../../services/incidents.js';
import { takeFlash } from '../flash.js';
import { declareInput } from '../forms.js';
import { incidentPath } from '../views/common.js';
import { closePage, reopenPage } from '../views/confirm.js';
import { incidentsPage, type IncidentRow, type StatusFilter } from '../views/incidents.js';
import { accessOf, activeOf, formOf, loadIncident, reportDone, sendPage, signedInOf, urlencodedBody } from './common.js';

// The list shows at most this many incidents (newest first).
const MAX_LISTED = 500;

function statusFilter(value: unknown): StatusFilter {
  return value === 'closed' || value === 'all' ? value : 'open';
}

/** GET/POST /console/incidents, GET/POST /console/incidents/:codename/close and …/reopen. */
export function incidentsRoutes(ctx: RelayContext): Router {
  const router = Router();

  async function rows(caller: ReturnType<typeof activeOf>['caller'], status: StatusFilter): Promise<IncidentRow[]> {
    const incidents = (await visibleIncidents(ctx, caller, status === 'all' ? undefined : status)).slice(0, MAX_LISTED);
    return Promise.all(
      incidents.map(async (incident) => ({
        incident,
        commander: await commanderOf(ctx, incident),
        mayClose: permits(caller, await ctx.store.incidents.activeMember(incident.id, caller.email), COMMANDERS),
      })),
    );
  }

  router.get('/incidents', async (req, res) => {
    const { caller, session } = activeOf(res);
    const status = statusFilter(req.query['status']);
    sendPage(res, incidentsPage({ signedIn: signedInOf(res), isAdmin: caller.role === 'admin', mayDeclare: caller.incidentScope === null, status, rows: await rows(caller, status), flash: await takeFlash(ctx, session) }));
  });

  router.post('/incidents', ...urlencodedBody(), async (req, res) => {
    const { caller } = activeOf(res);
    const form = formOf(req);
    try {
      const incident = await createIncident(ctx, caller, declareInput(form));
      await reportDone(ctx, res, { kind: 'notice', text: `Declared ${incident.codename}. Add the response team to its roster.` }, { href: incidentPath(incident.codename), codename: incident.codename });
    } catch (err) {
      const known = asRelayError(err);
      if (!known) throw err;
      const draft = { codename: form.all('codename')[0], commander: form.all('commander')[0], label: form.all('label')[0] };
      sendPage(res, incidentsPage({ signedIn: signedInOf(res), isAdmin: caller.role === 'admin', mayDeclare: caller.incidentScope === null, status: 'open', rows: await rows(caller, 'open'), error: known, draft }), known.httpStatus, known.retryAfter);
    }
  });

  router.get('/incidents/:codename/close', loadIncident(ctx, COMMANDERS), (_req, res) => {
    sendPage(res, closePage(signedInOf(res), accessOf(res).incident));
  });

  router.post('/incidents/:codename/close', loadIncident(ctx, COMMANDERS), async (_req, res) => {
    const { caller } = activeOf(res);
    const incident = await closeIncident(ctx, caller, accessOf(res).incident);
    await reportDone(ctx, res, { kind: 'notice', text: `${incident.codename} is closed. It accepts no new messages; queued ones are still delivered.` }, { href: incidentPath(incident.codename), codename: incident.codename });
  });

  router.get('/incidents/:codename/reopen', loadIncident(ctx, COMMANDERS), (_req, res) => {
    sendPage(res, reopenPage(signedInOf(res), accessOf(res).incident));
  });

  router.post('/incidents/:codename/reopen', loadIncident(ctx, COMMANDERS), async (_req, res) => {
    const { caller } = activeOf(res);
    const incident = await reopenIncident(ctx, caller, accessOf(res).incident);
    await reportDone(ctx, res, { kind: 'notice', text: `${incident.codename} is open again. It accepts email, nudges and announcements.` }, { href: incidentPath(incident.codename), codename: incident.codename });
  });

  return router;
}
