/**
 * One incident: its page, and the roster, key, label, email (and its policy
 * preview), nudge and Slack actions. Each action is authorized by
 * authorizeIncident with the roles its API route uses, before the body is
 * read, and carried out by the same service (putMember, patchMember,
 * withdrawMemberKey, removeMember, setIncidentLabel, previewEmail,
 * submitEmail, sendNudges, syncSlackRoom). A
 * refusal re-renders the page with the refusal and the form as it was
 * filled; a success leaves a one-shot result and redirects (POST, redirect, GET).
 */
import { randomUUID } from 'node:crypto';
import { Router, type Request, type Response } from 'express';
import type { RelayContext } from '../../context.js';
import { RelayError, asRelayError } from '../../errors.js';
import { internalMatcher, previewEmail, submitEmail } from '../../services/emails.js';
import {
  AUDIT_READERS,
  COMMANDERS,
  ROSTER_MANAGERS,
  commanderOf,
  maySend,
  patchMember,
  permits,
  putMember,
  removeMember,
  setIncidentLabel,
  withdrawMemberKey,
  type IncidentAccess,
} from '../../services/incidents.js';
import { syncSlackRoom } from '../../services/slack.js';
import { sendNudges } from '../../services/sms.js';
import type { Incident, RosterMember } from '../../store/incidents.js';
import { emailParam } from '../../validation.js';
import { takeFlash, type Flash } from '../flash.js';
import { composeInput, idempotencyKeyOf, labelInput, memberInput, nudgeInput, revocationInput } from '../forms.js';
import { keyInfoOf, keyInfos } from '../keys.js';
import type { FormData } from '../multipart.js';
import { incidentPath, memberPath } from '../views/common.js';
import { memberPage, removePage } from '../views/confirm.js';
import { incidentPage, type ComposeDraft, type IncidentPage, type KeyInfo, type MemberDraft } from '../views/incident.js';
import { verdictBlock, type Verdict } from '../views/preview.js';
import { accessOf, activeOf, formOf, loadIncident, multipartBody, orRefusalPage, param, reportDone, sendPage, signedInOf, urlencodedBody } from './common.js';

// The roster form carries one key file (at most 64 KiB) and a few short fields.
const ROSTER_FORM_LIMIT = 128 * 1024;

/** What a refused form held, to fill it in again. */
type Drafts = Pick<IncidentPage, 'memberDraft' | 'composeDraft' | 'verdict' | 'labelDraft'>;

/** Everything the incident page shows, read through the same store and services as the API's views. */
async function pageData(ctx: RelayContext, res: Response, access: IncidentAccess, extra: { flash?: Flash | undefined; error?: RelayError | undefined } & Drafts = {}): Promise<IncidentPage> {
  const { caller } = activeOf(res);
  const { incident, member } = access;
  const members = await ctx.store.incidents.roster(incident.id);
  const keys = await keyInfos(ctx.keys, members.map((m) => m.email), incident.id, internalMatcher(ctx.config.internalDomains));
  const room = await ctx.store.slackChannels.get(incident.id);
  return {
    signedIn: signedInOf(res),
    incident,
    commander: await commanderOf(ctx, incident),
    roster: members.map((m) => ({ member: m, key: keys.get(m.email) ?? { status: 'missing' } })),
    slack: room ? { state: room.state, name: room.name, reason: room.reason } : null,
    slackOn: ctx.slack !== undefined,
    can: {
      manageRoster: permits(caller, member, ROSTER_MANAGERS),
      command: permits(caller, member, COMMANDERS),
      send: maySend(member, incident),
      readAudit: permits(caller, member, AUDIT_READERS),
    },
    idempotency: { email: randomUUID(), sms: randomUUID() },
    maxMessageBytes: ctx.config.maxMessageBytes,
    ...extra,
  };
}

function memberDraftOf(form: FormData): MemberDraft {
  const first = (name: string): string | undefined => form.all(name)[0];
  return { email: first('email'), name: first('name'), role: first('role'), phone: first('phone'), slackUserId: first('slackUserId') };
}

function composeDraftOf(form: FormData): ComposeDraft {
  return { to: form.all('to'), cc: form.all('cc'), bcc: form.all('bcc'), subject: form.all('subject')[0], text: form.all('text')[0] };
}

/** The incident page and its actions. */
export function incidentRoutes(ctx: RelayContext): Router {
  const router = Router();

  /** Runs `act`; a refusal re-renders the incident page with it (and the form's values), at the refusal's status. */
  function orRefusal(res: Response, drafts: () => Drafts, act: () => Promise<void>): Promise<void> {
    return orRefusalPage(
      res,
      async (error) => {
        const access = accessOf(res);
        // Re-read: the refusal may say the incident was closed meanwhile.
        const incident = (await ctx.store.incidents.byId(access.incident.id)) ?? access.incident;
        return incidentPage(await pageData(ctx, res, { ...access, incident }, { error, ...drafts() }));
      },
      act,
    );
  }

  /** Runs `act`; a refusal re-renders the member's page with it. */
  function orMemberRefusal(res: Response, incident: Incident, email: string, member: RosterMember, act: () => Promise<void>, draft?: () => MemberDraft): Promise<void> {
    return orRefusalPage(res, async (error) => memberPage(signedInOf(res), incident, member, await keyOf(incident.id, email), { ...(draft ? { draft: draft() } : {}), error }), act);
  }

  /** The key mail to `email` would use in this incident, as GET /v1/keys/:email?incident= shows it. */
  async function keyOf(incidentId: string, email: string): Promise<KeyInfo> {
    return keyInfoOf(await ctx.keys.view(email, incidentId), !internalMatcher(ctx.config.internalDomains)(email));
  }

  /** The key after a change that committed: undefined when the store will not say (the change is still reported done). */
  async function keyAfter(incidentId: string, email: string): Promise<KeyInfo | undefined> {
    try {
      return await keyOf(incidentId, email);
    } catch (err) {
      ctx.logger.warn({ err: err instanceof Error ? err.name : 'unknown' }, 'console: the key could not be read after a change that committed');
      return undefined;
    }
  }

  router.get('/incidents/:codename', loadIncident(ctx), async (_req, res) => {
    const { session } = activeOf(res);
    sendPage(res, incidentPage(await pageData(ctx, res, accessOf(res), { flash: await takeFlash(ctx, session) })));
  });

  router.post('/incidents/:codename/roster', loadIncident(ctx, ROSTER_MANAGERS), ...multipartBody(ROSTER_FORM_LIMIT), async (req, res) => {
    const { caller } = activeOf(res);
    const { incident } = accessOf(res);
    let form: FormData | undefined;
    await orRefusal(
      res,
      () => ({ memberDraft: form ? memberDraftOf(form) : {} }),
      async () => {
        form = formOf(req);
        const { member, created, key } = await putMember(ctx, caller, incident, memberInput(form));
        const keyText = key ? ` Key ${key.fingerprint.slice(-16)} on file.` : ' No key on file.';
        await reportDone(ctx, res, { kind: 'notice', text: `${created ? 'Added' : 'Updated'} ${member.email} as ${member.role}.${keyText}` }, { href: incidentPath(incident.codename), codename: incident.codename });
      },
    );
  });

  // One roster entry: its edit page, and removal with a confirmation step.
  async function memberOf(res: Response, req: Request): Promise<{ email: string; member: RosterMember }> {
    const email = emailParam(param(req, 'email'));
    const member = await ctx.store.incidents.activeMember(accessOf(res).incident.id, email);
    if (!member) throw new RelayError('not_found', `${email} is not an active member of this roster.`);
    return { email, member };
  }

  router.get('/incidents/:codename/roster/:email', loadIncident(ctx, ROSTER_MANAGERS), async (req, res) => {
    const { incident } = accessOf(res);
    const { email, member } = await memberOf(res, req);
    sendPage(res, memberPage(signedInOf(res), incident, member, await keyOf(incident.id, email), { flash: await takeFlash(ctx, activeOf(res).session) }));
  });

  router.post('/incidents/:codename/roster/:email', loadIncident(ctx, ROSTER_MANAGERS), ...multipartBody(ROSTER_FORM_LIMIT), async (req, res) => {
    const { caller } = activeOf(res);
    const { incident } = accessOf(res);
    const { email, member } = await memberOf(res, req);
    const form = formOf(req);
    await orMemberRefusal(
      res,
      incident,
      email,
      member,
      async () => {
        const { key } = await putMember(ctx, caller, incident, memberInput(form, email));
        await reportDone(ctx, res, { kind: 'notice', text: `Saved ${email}.${key ? ` Key ${key.fingerprint.slice(-16)} on file.` : ' No key on file.'}` }, { href: incidentPath(incident.codename), codename: incident.codename });
      },
      () => memberDraftOf(form),
    );
  });

  // The member's key: withdraw the one given with this roster entry (the API's DELETE …/roster/:email/key).
  router.post('/incidents/:codename/roster/:email/key/withdraw', loadIncident(ctx, ROSTER_MANAGERS), async (req, res) => {
    const { caller } = activeOf(res);
    const { incident } = accessOf(res);
    const { email, member } = await memberOf(res, req);
    await orMemberRefusal(res, incident, email, member, async () => {
      await withdrawMemberKey(ctx, caller, incident, email);
      // Done: what holds now is told if it can be read, never turned into a refusal (keyAfter does not throw).
      const now = await keyAfter(incident.id, email);
      const after = now === undefined ? '' : now.status === 'missing' ? ' No key is on file for them now.' : ` Their relay-wide key ${now.fingerprint?.slice(-16) ?? ''} (${now.status}) holds again.`;
      await reportDone(ctx, res, { kind: 'notice', text: `Withdrew the key given for ${email} in this incident.${after}` }, { href: memberPath(incident.codename, email), codename: incident.codename });
    });
  });

  // …and revoke the key on file with its revocation certificate (the API's roster PATCH with publicKey).
  router.post('/incidents/:codename/roster/:email/key/revoke', loadIncident(ctx, ROSTER_MANAGERS), ...multipartBody(ROSTER_FORM_LIMIT), async (req, res) => {
    const { caller } = activeOf(res);
    const { incident } = accessOf(res);
    const { email, member } = await memberOf(res, req);
    await orMemberRefusal(res, incident, email, member, async () => {
      await patchMember(ctx, caller, incident, email, { publicKey: revocationInput(formOf(req)) });
      const now = await keyAfter(incident.id, email);
      const text =
        now === undefined
          ? `Saved the key of ${email}.`
          : now.status === 'revoked'
            ? `Revoked the key ${now.fingerprint?.slice(-16) ?? ''} of ${email}: every stored copy is revoked, and mail to them is refused until a usable key is given.`
            : `Saved the key of ${email}: it is ${now.status}.`;
      await reportDone(ctx, res, { kind: 'notice', text }, { href: memberPath(incident.codename, email), codename: incident.codename });
    });
  });

  // The private label: the API's PATCH {label} (commander, admin).
  router.post('/incidents/:codename/label', loadIncident(ctx, COMMANDERS), ...urlencodedBody(), async (req, res) => {
    const { caller } = activeOf(res);
    const { incident } = accessOf(res);
    let typed: string | undefined;
    await orRefusal(
      res,
      () => ({ labelDraft: typed ?? '' }),
      async () => {
        const form = formOf(req);
        typed = form.one('label');
        const label = labelInput(form);
        await setIncidentLabel(ctx, caller, incident, label);
        await reportDone(ctx, res, { kind: 'notice', text: label === null ? 'The private label is cleared.' : 'The private label is saved.' }, { href: incidentPath(incident.codename), codename: incident.codename });
      },
    );
  });

  router.get('/incidents/:codename/roster/:email/remove', loadIncident(ctx, ROSTER_MANAGERS), async (req, res) => {
    const { member } = await memberOf(res, req);
    sendPage(res, removePage(signedInOf(res), accessOf(res).incident, member));
  });

  router.post('/incidents/:codename/roster/:email/remove', loadIncident(ctx, ROSTER_MANAGERS), async (req, res) => {
    const { caller } = activeOf(res);
    const { incident } = accessOf(res);
    const { email, member } = await memberOf(res, req);
    await orRefusalPage(
      res,
      (error) => removePage(signedInOf(res), incident, member, error),
      async () => {
        const cancelled = await removeMember(ctx, caller, incident, email);
        const note = cancelled.length > 0 ? ` ${cancelled.length} queued delivery(ies) to or from them cancelled.` : '';
        await reportDone(ctx, res, { kind: 'notice', text: `Removed ${email} from the roster.${note}` }, { href: incidentPath(incident.codename), codename: incident.codename });
      },
    );
  });

  router.post('/incidents/:codename/emails', loadIncident(ctx), ...multipartBody(composeLimit(ctx.config.maxMessageBytes)), async (req, res) => {
    const { caller } = activeOf(res);
    const { incident } = accessOf(res);
    let form: FormData | undefined;
    await orRefusal(
      res,
      () => ({ composeDraft: form ? composeDraftOf(form) : undefined }),
      async () => {
        form = formOf(req);
        const accepted = await submitEmail(ctx, caller, incident, composeInput(form), { via: 'console', idempotencyKey: idempotencyKeyOf(form) });
        await reportDone(ctx, res, { kind: 'email', id: accepted.id, messageId: accepted.messageId, encrypted: accepted.encrypted, recipients: accepted.recipients }, { href: incidentPath(incident.codename), codename: incident.codename });
      },
    );
  });

  /**
   * The policy preview of the compose form (previewEmail: the decision a
   * send would make, nothing queued; audited and rate-limited as the API's
   * dryRun). `?fragment=verdict` (console.js, as the recipients change)
   * answers the live region's content only, marked Console-Fragment so the
   * script never puts a whole page there; otherwise (the "Check before
   * sending" button without JavaScript) the incident page with the verdict
   * and the draft as typed.
   */
  router.post('/incidents/:codename/emails/preview', loadIncident(ctx), ...multipartBody(composeLimit(ctx.config.maxMessageBytes)), async (req, res) => {
    const { caller } = activeOf(res);
    const access = accessOf(res);
    const form = formOf(req);
    let verdict: Verdict;
    let status = 200;
    try {
      verdict = { preview: await previewEmail(ctx, caller, access.incident, composeInput(form), { via: 'console' }) };
    } catch (err) {
      const known = asRelayError(err);
      if (!known) throw err;
      verdict = { error: known };
      status = known.httpStatus;
    }
    if (req.query['fragment'] === 'verdict') {
      res.setHeader('Console-Fragment', 'verdict');
      sendPage(res, verdictBlock(verdict, { codename: access.incident.codename, manageRoster: permits(caller, access.member, ROSTER_MANAGERS) }), status, verdict.error?.retryAfter);
      return;
    }
    sendPage(res, incidentPage(await pageData(ctx, res, access, { composeDraft: composeDraftOf(form), verdict })), status, verdict.error?.retryAfter);
  });

  router.post('/incidents/:codename/sms', loadIncident(ctx), ...urlencodedBody(), async (req, res) => {
    const { caller } = activeOf(res);
    const { incident } = accessOf(res);
    await orRefusal(
      res,
      () => ({}),
      async () => {
        const form = formOf(req);
        const accepted = await sendNudges(ctx, caller, incident, nudgeInput(form), { via: 'console', idempotencyKey: idempotencyKeyOf(form) });
        await reportDone(ctx, res, { kind: 'nudge', results: accepted.results }, { href: incidentPath(incident.codename), codename: incident.codename });
      },
    );
  });

  router.post('/incidents/:codename/slack/sync', loadIncident(ctx, COMMANDERS), async (_req, res) => {
    const { caller } = activeOf(res);
    const { incident } = accessOf(res);
    await orRefusal(
      res,
      () => ({}),
      async () => {
        const result = await syncSlackRoom(ctx, caller, incident);
        await reportDone(ctx, res, {
          kind: 'slack',
          name: result.name,
          kicked: result.kicked.length,
          invited: result.invited.length,
          topicRestored: result.topicRestored,
          notFound: result.notFound,
        }, { href: incidentPath(incident.codename), codename: incident.codename });
      },
    );
  });

  return router;
}

/** The compose form's byte limit: a message at RELAY_MAX_MESSAGE_BYTES plus room for the form's fields and part headers. */
export function composeLimit(maxMessageBytes: number): number {
  return maxMessageBytes + 256 * 1024;
}
