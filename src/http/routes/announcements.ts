/**
 * Announcements (issue 14): /v1/incidents/:codename/announcements, the
 * commander's internal-source record, and the admin's audience lists under
 * /v1/audiences. The routes parse and answer; src/services/announcements.ts
 * decides.
 */
import { Router } from 'express';
import { z } from 'zod';
import type { RelayContext } from '../../context.js';
import {
  announcementView,
  approveAnnouncement,
  checkAnnouncementNow,
  createAnnouncement,
  deleteAudience,
  editAnnouncement,
  findAnnouncement,
  getAudience,
  listAnnouncements,
  listAudiences,
  putAudience,
  recordInternalSource,
  sendAnnouncement,
} from '../../services/announcements.js';
import { authorizeIncident } from '../../services/incidents.js';
import { parseInput } from '../../validation.js';
import { callerOf, param, requireAdmin } from '../auth.js';
import { methodNotAllowed } from '../errors.js';
import { AnnouncementDraft, AnnouncementEdit, InternalSourceRecord } from '../schemas.js';
import { idempotencyKey } from './emails.js';

const AudienceList = z.strictObject({ addresses: z.array(z.string().max(320)).max(100_000) });

/** Announcement, internal-source and audience-list routes, mounted behind /v1 authentication. */
export function announcementRoutes(ctx: RelayContext): Router {
  const router = Router();
  const base = '/v1/incidents/:codename/announcements';

  router
    .route(base)
    .post(async (req, res) => {
      const caller = callerOf(res);
      const { incident } = await authorizeIncident(ctx, caller, param(req, 'codename'));
      const input = parseInput(AnnouncementDraft, req.body);
      res.status(201).json(await createAnnouncement(ctx, caller, incident, input));
    })
    .get(async (req, res) => {
      const { incident } = await authorizeIncident(ctx, callerOf(res), param(req, 'codename'));
      // Without their text and audience addresses: GET …/announcements/:id has them.
      res.json({ announcements: await listAnnouncements(ctx, incident) });
    })
    .all(methodNotAllowed);

  router
    .route(`${base}/:id`)
    .get(async (req, res) => {
      const { incident } = await authorizeIncident(ctx, callerOf(res), param(req, 'codename'));
      res.json(await announcementView(ctx, incident, await findAnnouncement(ctx, incident, param(req, 'id'))));
    })
    .patch(async (req, res) => {
      const caller = callerOf(res);
      const { incident } = await authorizeIncident(ctx, caller, param(req, 'codename'));
      const patch = parseInput(AnnouncementEdit, req.body);
      res.json(await editAnnouncement(ctx, caller, incident, param(req, 'id'), patch));
    })
    .all(methodNotAllowed);

  router
    .route(`${base}/:id/check`)
    .post(async (req, res) => {
      const caller = callerOf(res);
      const { incident } = await authorizeIncident(ctx, caller, param(req, 'codename'));
      res.json(await checkAnnouncementNow(ctx, caller, incident, param(req, 'id')));
    })
    .all(methodNotAllowed);

  router
    .route(`${base}/:id/approve`)
    .post(async (req, res) => {
      // The service finds the incident itself: an attempt by someone off the roster is audited, and answered as not found.
      res.json(await approveAnnouncement(ctx, callerOf(res), param(req, 'codename'), param(req, 'id')));
    })
    .all(methodNotAllowed);

  router
    .route(`${base}/:id/send`)
    .post(async (req, res) => {
      const caller = callerOf(res);
      const { incident } = await authorizeIncident(ctx, caller, param(req, 'codename'));
      res.status(202).json(await sendAnnouncement(ctx, caller, incident, param(req, 'id'), { idempotencyKey: idempotencyKey(req) }));
    })
    .all(methodNotAllowed);

  router
    .route('/v1/incidents/:codename/internal-source')
    .post(async (req, res) => {
      const caller = callerOf(res);
      const { incident } = await authorizeIncident(ctx, caller, param(req, 'codename'));
      const input = parseInput(InternalSourceRecord, req.body);
      res.json({ codename: incident.codename, ...(await recordInternalSource(ctx, caller, incident, input)) });
    })
    .all(methodNotAllowed);

  router
    .route('/v1/audiences')
    // Names and sizes only, so authors can pick a list; the addresses are the admin's.
    .get(async (_req, res) => {
      callerOf(res);
      res.json({ audiences: await listAudiences(ctx) });
    })
    .all(methodNotAllowed);

  router
    .route('/v1/audiences/:name')
    .get(async (req, res) => {
      requireAdmin(res);
      res.json(await getAudience(ctx, param(req, 'name')));
    })
    .put(async (req, res) => {
      const caller = requireAdmin(res);
      const input = parseInput(AudienceList, req.body);
      const { created, list } = await putAudience(ctx, caller, param(req, 'name'), input.addresses);
      res.status(created ? 201 : 200).json(list);
    })
    .delete(async (req, res) => {
      const caller = requireAdmin(res);
      await deleteAudience(ctx, caller, param(req, 'name'));
      res.status(204).end();
    })
    .all(methodNotAllowed);

  return router;
}
