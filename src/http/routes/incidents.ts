/** Incidents, rosters and incident audit events. */
import { Router } from 'express';
import { z } from 'zod';
import type { RelayContext } from '../../context.js';
import { AUDIT_READERS, COMMANDERS, ROSTER_MANAGERS, authorizeIncident, closeIncident, commanderOf, createIncident, patchMember, putMember, removeMember, reopenIncident, setIncidentLabel, visibleIncidents, withdrawMemberKey } from '../../services/incidents.js';
import { readIncidentAudit } from '../../services/audit-views.js';
import type { Incident, RosterMember } from '../../store/incidents.js';
import { emailParam, parseInput } from '../../validation.js';
import { callerOf, param } from '../auth.js';
import { methodNotAllowed } from '../errors.js';
import { CreateIncident, PatchMember, PutMember, auditQuery, incidentLabel } from '../schemas.js';
import { internalSourceView } from '../../services/announcements.js';
import { slackRoomView } from './slack.js';

const UpdateIncident = z
  .strictObject({ status: z.enum(['open', 'closed']).optional(), label: incidentLabel.nullable().optional() })
  .refine((b) => b.status !== undefined || b.label !== undefined, { message: 'give status ("open" or "closed") or label' });

const ListIncidents = z.strictObject({ status: z.enum(['open', 'closed']).optional() });

/**
 * The incident as the API shows it. Only its roster and admins can reach
 * any incident view (authorizeIncident, the roster-filtered list), so the
 * private label goes to exactly the people allowed to see it.
 */
export async function incidentView(ctx: RelayContext, incident: Incident): Promise<Record<string, unknown>> {
  return {
    id: incident.id,
    codename: incident.codename,
    status: incident.status,
    commander: await commanderOf(ctx, incident),
    label: incident.label,
    createdAt: incident.createdAt,
    closedAt: incident.closedAt,
    // The Slack room's state (pending, ready, failed with reason, archived); null when there is none.
    slack: await slackRoomView(ctx, incident.id),
    // Rule internal-source: the commander's record that forensics ruled out an internal source, or null.
    internalSourceRuledOut: await internalSourceView(ctx, incident),
  };
}

/** A roster entry as the API shows it. */
export async function memberView(ctx: RelayContext, incident: Incident, member: RosterMember): Promise<Record<string, unknown>> {
  const key = await ctx.keys.view(member.email, incident.id);
  return {
    email: member.email,
    name: member.name,
    role: member.role,
    phone: member.phone,
    slackUserId: member.slackUserId,
    slackStatus: member.slackStatus,
    status: member.status,
    addedAt: member.addedAt,
    updatedAt: member.updatedAt,
    removedAt: member.removedAt,
    key: key ? { fingerprint: key.fingerprint, algorithm: key.algorithm, expiresAt: key.expiresAt, scope: key.scope, status: key.status, ...(key.reason !== undefined ? { reason: key.reason } : {}) } : null,
  };
}

/** Incident, roster and per-incident audit routes. */
export function incidentRoutes(ctx: RelayContext): Router {
  const router = Router();

  router
    .route('/v1/incidents')
    .post(async (req, res) => {
      const caller = callerOf(res);
      const incident = await createIncident(ctx, caller, parseInput(CreateIncident, req.body ?? {}));
      res.status(201).json(await incidentView(ctx, incident));
    })
    .get(async (req, res) => {
      const caller = callerOf(res);
      const { status } = parseInput(ListIncidents, req.query, 'query');
      const incidents = await visibleIncidents(ctx, caller, status);
      res.json({ incidents: await Promise.all(incidents.map((i) => incidentView(ctx, i))) });
    })
    .all(methodNotAllowed);

  router
    .route('/v1/incidents/:codename')
    .get(async (req, res) => {
      const { incident } = await authorizeIncident(ctx, callerOf(res), param(req, 'codename'));
      res.json(await incidentView(ctx, incident));
    })
    .patch(async (req, res) => {
      const caller = callerOf(res);
      let { incident } = await authorizeIncident(ctx, caller, param(req, 'codename'), COMMANDERS);
      const change = parseInput(UpdateIncident, req.body);
      if (change.label !== undefined) incident = await setIncidentLabel(ctx, caller, incident, change.label);
      if (change.status === 'closed') incident = await closeIncident(ctx, caller, incident);
      if (change.status === 'open') incident = await reopenIncident(ctx, caller, incident);
      res.json(await incidentView(ctx, incident));
    })
    .all(methodNotAllowed);

  router
    .route('/v1/incidents/:codename/roster')
    .get(async (req, res) => {
      const { incident } = await authorizeIncident(ctx, callerOf(res), param(req, 'codename'));
      const roster = await ctx.store.incidents.roster(incident.id);
      res.json({ roster: await Promise.all(roster.map((m) => memberView(ctx, incident, m))) });
    })
    .all(methodNotAllowed);

  router
    .route('/v1/incidents/:codename/roster/:email')
    .put(async (req, res) => {
      const caller = callerOf(res);
      const { incident } = await authorizeIncident(ctx, caller, param(req, 'codename'), ROSTER_MANAGERS);
      const email = emailParam(param(req, 'email'));
      const input = parseInput(PutMember, req.body);
      const { member, created } = await putMember(ctx, caller, incident, { ...input, email });
      // Re-read: the Slack hook has just marked the member's invite pending.
      res.status(created ? 201 : 200).json(await memberView(ctx, incident, (await ctx.store.incidents.member(incident.id, member.email)) ?? member));
    })
    .patch(async (req, res) => {
      const caller = callerOf(res);
      const { incident } = await authorizeIncident(ctx, caller, param(req, 'codename'), ROSTER_MANAGERS);
      const email = emailParam(param(req, 'email'));
      const { member } = await patchMember(ctx, caller, incident, email, parseInput(PatchMember, req.body));
      res.json(await memberView(ctx, incident, (await ctx.store.incidents.member(incident.id, member.email)) ?? member));
    })
    .delete(async (req, res) => {
      const caller = callerOf(res);
      const { incident } = await authorizeIncident(ctx, caller, param(req, 'codename'), ROSTER_MANAGERS);
      await removeMember(ctx, caller, incident, emailParam(param(req, 'email')));
      res.status(204).end();
    })
    .all(methodNotAllowed);

  router
    .route('/v1/incidents/:codename/roster/:email/key')
    .delete(async (req, res) => {
      const caller = callerOf(res);
      const { incident } = await authorizeIncident(ctx, caller, param(req, 'codename'), ROSTER_MANAGERS);
      await withdrawMemberKey(ctx, caller, incident, emailParam(param(req, 'email')));
      res.status(204).end();
    })
    .all(methodNotAllowed);

  router
    .route('/v1/incidents/:codename/audit')
    .get(async (req, res) => {
      const caller = callerOf(res);
      const access = await authorizeIncident(ctx, caller, param(req, 'codename'), AUDIT_READERS);
      res.json(await readIncidentAudit(ctx, caller, access, auditQuery(req.query, 'incident')));
    })
    .all(methodNotAllowed);

  return router;
}

