/** Incidents, rosters and incident audit events. */
import { Router } from 'express';
import { z } from 'zod';
import type { RelayContext } from '../../context.js';
import { AUDIT_READERS, COMMANDERS, ROSTER_MANAGERS, authorizeIncident, closeIncident, commanderOf, createIncident, putMember, removeMember } from '../../services/incidents.js';
import { ROSTER_ROLES, type Incident, type RosterMember } from '../../store/incidents.js';
import { emailAddress, emailParam, headerText, parseInput, phoneNumber } from '../../validation.js';
import { callerOf, param } from '../auth.js';
import { methodNotAllowed } from '../errors.js';
import { internalSourceView } from '../../services/announcements.js';
import { slackRoomView } from './slack.js';

const CreateIncident = z.strictObject({
  commander: emailAddress.optional(),
  codename: z.string().max(80).optional(),
});

const UpdateIncident = z.strictObject({ status: z.literal('closed') });

const PutMember = z.strictObject({
  // A display name goes into From/To/Cc, where the composer refuses a tab too.
  name: headerText(200).refine((s) => s.trim() !== '' && !s.includes('\t'), { message: 'must not be empty or contain a tab' }),
  role: z.enum(ROSTER_ROLES),
  phone: phoneNumber.nullable().optional(),
  slackUserId: z.string().regex(/^[UW][A-Z0-9]{2,20}$/, 'must be a Slack user id such as U024BE7LH').nullable().optional(),
  publicKey: z.string().max(65536).optional(),
});

const AuditQuery = z.strictObject({
  after: z.coerce.number().int().min(0).optional(),
  limit: z.coerce.number().int().min(1).max(1000).optional(),
});

/** The incident as the API shows it. */
export async function incidentView(ctx: RelayContext, incident: Incident): Promise<Record<string, unknown>> {
  return {
    id: incident.id,
    codename: incident.codename,
    status: incident.status,
    commander: await commanderOf(ctx, incident),
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
  const key = await ctx.keys.get(member.email, incident.id);
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
    key: key ? { fingerprint: key.fingerprint, algorithm: key.algorithm, expiresAt: key.expiresAt } : null,
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
    .get(async (_req, res) => {
      const caller = callerOf(res);
      const incidents = await ctx.store.incidents.list(caller.role === 'admin' ? undefined : caller.email);
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
      const { incident } = await authorizeIncident(ctx, caller, param(req, 'codename'), COMMANDERS);
      parseInput(UpdateIncident, req.body);
      res.json(await incidentView(ctx, await closeIncident(ctx, caller, incident)));
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
    .delete(async (req, res) => {
      const caller = callerOf(res);
      const { incident } = await authorizeIncident(ctx, caller, param(req, 'codename'), ROSTER_MANAGERS);
      await removeMember(ctx, caller, incident, emailParam(param(req, 'email')));
      res.status(204).end();
    })
    .all(methodNotAllowed);

  router
    .route('/v1/incidents/:codename/audit')
    .get(async (req, res) => {
      const { incident } = await authorizeIncident(ctx, callerOf(res), param(req, 'codename'), AUDIT_READERS);
      const query = parseInput(AuditQuery, req.query, 'query');
      res.json({ events: await ctx.store.audit.listForIncident(incident.id, query) });
    })
    .all(methodNotAllowed);

  return router;
}

