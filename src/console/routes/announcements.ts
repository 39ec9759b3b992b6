/**
 * The approvals screen: announcements and the internal-source record,
 * through the announcements service the API's routes call
 * (createAnnouncement, editAnnouncement, checkAnnouncementNow,
 * approveAnnouncement, sendAnnouncement, recordInternalSource) with the
 * same incident authorization. A refusal re-renders the screen with its
 * code and message and the form as typed; a success leaves a one-shot
 * notice and redirects (POST, redirect, GET).
 */
import { randomUUID } from 'node:crypto';
import { Router, type Request, type Response } from 'express';
import type { RelayContext } from '../../context.js';
import type { RelayError } from '../../errors.js';
import { approvalRefusal } from '../../policy/gates.js';
import {
  announcementView,
  approveAnnouncement,
  checkAnnouncementNow,
  createAnnouncement,
  editAnnouncement,
  findAnnouncement,
  internalSourceView,
  listAnnouncements,
  listAudiences,
  mayRecordInternalSource,
  recordInternalSource,
  sendAnnouncement,
} from '../../services/announcements.js';
import { authorizeIncident, scopeRefusal, type IncidentAccess } from '../../services/incidents.js';
import { takeFlash, type Flash } from '../flash.js';
import { announcementEditInput, announcementInput, idempotencyKeyOf, internalSourceInput } from '../forms.js';
import type { FormData } from '../multipart.js';
import { announcementPage, announcementPath, announcementsPage, type AnnouncementDraftValues, type AnnouncementsContext } from '../views/announcements.js';
import { incidentPath } from '../views/common.js';
import { accessOf, activeOf, formOf, loadIncident, orRefusalPage, param, reportDone, sendPage, signedInOf, urlencodedBody } from './common.js';

// An announcement's text is at most 100,000 characters (the service says so); URL-encoded, a character takes up to 9 bytes.
const ANNOUNCEMENT_FORM_LIMIT = 2 * 1024 * 1024;

function draftValuesOf(form: FormData | undefined): AnnouncementDraftValues {
  if (!form) return {};
  const first = (name: string): string | undefined => form.all(name)[0];
  return { kind: first('kind'), title: first('title'), text: first('text'), addresses: first('addresses'), list: first('list') };
}

/** The announcements screens and their actions. */
export function announcementRoutes(ctx: RelayContext): Router {
  const router = Router();

  async function context(res: Response, access: IncidentAccess, extra: { flash?: Flash | undefined; error?: RelayError | undefined } = {}): Promise<AnnouncementsContext> {
    return {
      signedIn: signedInOf(res),
      incident: access.incident,
      internalSource: await internalSourceView(ctx, access.incident),
      mayRecordInternalSource: mayRecordInternalSource(access.member),
      audiences: await listAudiences(ctx),
      ...extra,
    };
  }

  /** The incident as the page shows it: after a refusal read again, since the refusal may be about it closing meanwhile. */
  async function current(access: IncidentAccess, error: RelayError | undefined) {
    return error === undefined ? access.incident : ((await ctx.store.incidents.byId(access.incident.id)) ?? access.incident);
  }

  async function listPage(res: Response, access: IncidentAccess, extra: { flash?: Flash; error?: RelayError; draft?: AnnouncementDraftValues; noteDraft?: string } = {}) {
    const incident = await current(access, extra.error);
    return announcementsPage({ ...(await context(res, { ...access, incident }, extra)), announcements: await listAnnouncements(ctx, incident), draft: extra.draft, noteDraft: extra.noteDraft });
  }

  async function onePage(res: Response, access: IncidentAccess, id: string, extra: { flash?: Flash; error?: RelayError; editDraft?: AnnouncementDraftValues } = {}) {
    const incident = await current(access, extra.error);
    const { caller } = activeOf(res);
    const announcement = await announcementView(ctx, incident, await findAnnouncement(ctx, incident, id));
    return announcementPage({
      ...(await context(res, { ...access, incident }, extra)),
      announcement,
      // The approve step's own rule, asked with what the screen knows; the service asks again on the post.
      approvalRefusal:
        scopeRefusal(caller, 'approve an announcement') ??
        approvalRefusal({
          approver: caller.email,
          author: announcement.author,
          role: access.member?.role,
          alreadyApproved: announcement.approvals.some((p) => p.approver === caller.email && p.current),
        }),
      idempotencyKey: randomUUID(),
      editDraft: extra.editDraft,
    });
  }

  const id = (req: Request): string => param(req, 'id');

  router.get('/incidents/:codename/announcements', loadIncident(ctx), async (_req, res) => {
    sendPage(res, await listPage(res, accessOf(res), { flash: await takeFlash(ctx, activeOf(res).session) }));
  });

  router.post('/incidents/:codename/announcements', loadIncident(ctx), ...urlencodedBody(ANNOUNCEMENT_FORM_LIMIT), async (req, res) => {
    const { caller } = activeOf(res);
    const access = accessOf(res);
    let form: FormData | undefined;
    await orRefusalPage(
      res,
      (error) => listPage(res, access, { error, draft: draftValuesOf(form) }),
      async () => {
        form = formOf(req);
        const created = await createAnnouncement(ctx, caller, access.incident, announcementInput(form));
        await reportDone(ctx, res, { kind: 'notice', text: `Saved the draft for ${created.audience.count} address(es). Run the checks next.` }, { href: announcementPath(access.incident.codename, created.id), codename: access.incident.codename });
      },
    );
  });

  router.get('/incidents/:codename/announcements/:id', loadIncident(ctx), async (req, res) => {
    sendPage(res, await onePage(res, accessOf(res), id(req), { flash: await takeFlash(ctx, activeOf(res).session) }));
  });

  router.post('/incidents/:codename/announcements/:id', loadIncident(ctx), ...urlencodedBody(ANNOUNCEMENT_FORM_LIMIT), async (req, res) => {
    const { caller } = activeOf(res);
    const access = accessOf(res);
    let form: FormData | undefined;
    await orRefusalPage(
      res,
      (error) => onePage(res, access, id(req), { error, editDraft: draftValuesOf(form) }),
      async () => {
        form = formOf(req);
        const current = await announcementView(ctx, access.incident, await findAnnouncement(ctx, access.incident, id(req)));
        const edited = await editAnnouncement(ctx, caller, access.incident, id(req), announcementEditInput(form, current));
        const voided = current.approvals.filter((p) => p.current).length - edited.approvals.filter((p) => p.current).length;
        await reportDone(ctx, res, {
          kind: 'notice',
          text: edited.contentHash === current.contentHash && edited.audience.list === current.audience.list ? 'Nothing changed.' : `Saved the changes.${voided > 0 ? ` ${voided} approval(s) voided: it must be approved again.` : ''} Run the checks again.`,
        }, { href: announcementPath(access.incident.codename, edited.id), codename: access.incident.codename });
      },
    );
  });

  router.post('/incidents/:codename/announcements/:id/check', loadIncident(ctx), async (req, res) => {
    const { caller } = activeOf(res);
    const access = accessOf(res);
    await orRefusalPage(
      res,
      (error) => onePage(res, access, id(req), { error }),
      async () => {
        const checked = await checkAnnouncementNow(ctx, caller, access.incident, id(req));
        await reportDone(ctx, res, { kind: 'notice', text: `The checks passed: ${checked.state}.${checked.kind === 'external' && checked.state !== 'approved' ? ' It needs the approvals next.' : ''}` }, { href: announcementPath(access.incident.codename, checked.id), codename: access.incident.codename });
      },
    );
  });

  // As the API's route: the service finds the incident itself, so an attempt by someone off the roster is audited and answered not_found.
  router.post('/incidents/:codename/announcements/:id/approve', async (req, res) => {
    const { caller } = activeOf(res);
    const codename = param(req, 'codename');
    await orRefusalPage(
      res,
      async (error) => onePage(res, await authorizeIncident(ctx, caller, codename), id(req), { error }),
      async () => {
        const approved = await approveAnnouncement(ctx, caller, codename, id(req));
        const mine = approved.approvals.find((p) => p.approver === caller.email && p.current);
        await reportDone(ctx, res, { kind: 'notice', text: `Approved${mine ? ` as ${mine.role}` : ''}. ${approved.release.ready ? 'Nothing blocks it now.' : 'Still blocking: see below.'}` }, { href: announcementPath(approved.codename, approved.id), codename: approved.codename });
      },
    );
  });

  router.post('/incidents/:codename/announcements/:id/send', loadIncident(ctx), ...urlencodedBody(), async (req, res) => {
    const { caller } = activeOf(res);
    const access = accessOf(res);
    await orRefusalPage(
      res,
      (error) => onePage(res, access, id(req), { error }),
      async () => {
        const sent = await sendAnnouncement(ctx, caller, access.incident, id(req), { idempotencyKey: idempotencyKeyOf(formOf(req)) });
        await reportDone(ctx, res, { kind: 'notice', text: `Sent: ${sent.copies} copies queued (${sent.encrypted} encrypted), Message-ID ${sent.messageId}.` }, { href: announcementPath(access.incident.codename, sent.id), codename: access.incident.codename });
      },
    );
  });

  router.post('/incidents/:codename/internal-source', loadIncident(ctx), ...urlencodedBody(), async (req, res) => {
    const { caller } = activeOf(res);
    const access = accessOf(res);
    let form: FormData | undefined;
    await orRefusalPage(
      res,
      (error) => listPage(res, access, { error, noteDraft: form?.all('note')[0] }),
      async () => {
        form = formOf(req);
        const done = await recordInternalSource(ctx, caller, access.incident, internalSourceInput(form));
        const text = done.internalSourceRuledOut
          ? 'Recorded: forensics ruled out an internal source. Announcements can be released.'
          : `Withdrew the record: nothing more leaves the response team.${done.cancelledDeliveries > 0 ? ` ${done.cancelledDeliveries} queued announcement copies cancelled.` : ''}`;
        await reportDone(ctx, res, { kind: 'notice', text }, { href: incidentPath(access.incident.codename, '/announcements'), codename: access.incident.codename });
      },
    );
  });

  return router;
}
