/**
 * Announcements (issue 14): the one way anything about an incident reaches
 * people who are not on its roster. A draft has a kind, a title, a text and
 * an audience; it is checked (src/policy/statement.ts), approved for its exact
 * content (src/policy/gates.ts), and sent through the durable outbox, one copy
 * per audience address. Every step, and every refusal, is audited with its
 * actor in the transaction that makes it; the audit log holds lengths and
 * hashes of the title, text and notes, never the words.
 *
 * The commander's record that forensics ruled out an internal source (rule
 * `internal-source`) lives here too, since only announcements depend on it.
 */
import { createHash, randomUUID } from 'node:crypto';
import { announcementSender } from '../config.js';
import type { RelayContext } from '../context.js';
import { RelayError, invalid } from '../errors.js';
import { composeAnnouncementEncrypted, composeAnnouncementPlain, composeAnnouncementProtectedPart, type AnnouncementCopy } from '../mime/announcement.js';
import { armorMessage } from '../pgp/armor.js';
import { inThreadEncryptor } from '../pgp/pgp-mime.js';
import type { RuleOutcome } from '../policy/decision.js';
import { announcementHash, approvalRefusal, decideRelease, decideSend } from '../policy/gates.js';
import { checkSecurityTeam, securityMemberCount } from '../policy/security-team.js';
import { MAX_TEXT_LENGTH, MAX_TITLE_LENGTH, checkAnnouncement } from '../policy/statement.js';
import type { AuditInput } from '../store/audit.js';
import type { Announcement, AnnouncementContent, AnnouncementKind, Approval, AudienceList, AudienceSummary, InternalSource } from '../store/announcements.js';
import type { Repositories } from '../store/index.js';
import type { Incident, RosterMember } from '../store/incidents.js';
import type { NewDelivery } from '../store/outbox.js';
import { loadStatementPhrases } from '../templates.js';
import { isEmailAddress, isTitleText, normalisedEmail } from '../validation.js';
import { internalMatcher } from './emails.js';
import { rememberAnswer, replayAnswer, requestFingerprint, type IdempotencyUse } from './idempotency.js';
import { assertUnscoped, cancellationEvent, inScope, type Caller } from './incidents.js';

/** What the announcement steps use of the relay. */
export type AnnouncementDeps = Pick<RelayContext, 'store' | 'now' | 'config'>;
/** What writing a draft or an edit uses: the send rate limit too, so no roster member adds drafts without limit. */
export type DraftDeps = AnnouncementDeps & Pick<RelayContext, 'sendLimiter'>;
/** The send step also queues, encrypts and counts. */
export type SendDeps = Pick<RelayContext, 'store' | 'now' | 'config' | 'keys' | 'relayKey' | 'encryptor' | 'sendLimiter' | 'notifyOutbox' | 'metrics'>;

/** The audience of a draft: addresses, a named list an admin keeps, or both. */
export interface AudienceInput {
  addresses?: readonly string[] | undefined;
  list?: string | undefined;
}

/** A draft as the listener hands it over. */
export interface AnnouncementInput {
  kind: AnnouncementKind;
  title: string;
  text: string;
  audience: AudienceInput;
}

/** An approval as the API shows it. */
export interface ApprovalView {
  approver: string;
  role: string;
  approvedAt: string;
  /** True when it was given for the current content and not voided. */
  current: boolean;
  voidedAt: string | null;
  voidedBy: string | null;
  voidReason: string | null;
}

/** An announcement as the API (and the console's approvals screen) shows it. */
export interface AnnouncementView {
  id: string;
  codename: string;
  kind: AnnouncementKind;
  title: string;
  text: string;
  audience: { addresses: string[]; list: string | null; count: number };
  state: Announcement['state'];
  author: string;
  createdAt: string;
  updatedAt: string;
  contentHash: string;
  /** True when the checks passed for the current content. */
  checked: boolean;
  approvals: ApprovalView[];
  /** The release gates as they stand now (the content checks run at check and at send). */
  release: { ready: boolean; rules: RuleOutcome[] };
  sent: { at: string; by: string; emailId: string; messageId: string | null } | null;
}

/** The 202 of a send. */
export interface AnnouncementSent {
  id: string;
  state: 'sent';
  emailId: string;
  messageId: string;
  status: 'queued';
  /** One per audience address. */
  copies: number;
  /** How many of them are PGP/MIME (the recipient's key is held and the recipient is external or RELAY_ENCRYPT=always). */
  encrypted: number;
}

/** Roster roles that may edit and send any announcement of the incident (besides its author). */
const EDITORS = ['commander'] as const;
// Audience lists are named like files, so they are safe in a URL and a log line.
const LIST_NAME = /^[a-z0-9][a-z0-9._-]{0,62}$/;
// The longest internal-source note: a paragraph pointing at the forensics report.
const MAX_NOTE_LENGTH = 2000;
// Copies built and queued at a time: the audience may hold thousands, memory holds a batch.
const QUEUE_BATCH = 100;
// Addresses listed in a refusal; the count says how many there were.
const LISTED = 20;

function sha256(text: string): string {
  return createHash('sha256').update(text, 'utf8').digest('hex');
}

/** What the audit log may say about an announcement's content: kinds, lengths, counts and the hash, never the words. */
function contentFacts(a: Pick<Announcement, 'kind' | 'title' | 'text' | 'audience' | 'audienceList' | 'contentHash'>): Record<string, unknown> {
  return { kind: a.kind, titleLength: [...a.title].length, textLength: [...a.text].length, audienceCount: a.audience.length, audienceList: a.audienceList, contentHash: a.contentHash };
}

// ------------------------------------------------------------------ the door

/**
 * The content as it will be stored, checked for what makes it unusable at
 * all (a title that cannot be a header, too long, an audience over the
 * maximum or with non-addresses); what it says is judged by the checks.
 */
async function prepareContent(
  repos: Pick<Repositories, 'announcements'>,
  config: AnnouncementDeps['config'],
  input: AnnouncementInput,
  // An edit that leaves the audience alone keeps the addresses (and list name) the draft read; a list is not read again.
  kept?: Pick<Announcement, 'audience' | 'audienceList'>,
): Promise<AnnouncementContent> {
  const title = typeof input.title === 'string' ? input.title.trim() : '';
  if (title === '') throw invalid('The title is empty; give the announcement a title with its date.', { field: 'title' });
  if (title.length > MAX_TITLE_LENGTH) throw invalid(`The title has ${title.length} characters; keep it to ${MAX_TITLE_LENGTH}.`, { field: 'title' });
  // The title becomes the Subject of every copy: a line break there would start a header of its own.
  // Tab too: the composer writes no control character in the Subject, and a refusal at send would come after approval.
  if (!isTitleText(title)) {
    throw new RelayError('invalid_request', 'The title must be one line without control characters: no tab, CR, LF, NUL or Unicode line separators (it becomes the Subject). Nothing was stored.', {
      rule: 'statement',
      details: { field: 'title' },
    });
  }
  // One form of line end, so the hash approvals bind does not depend on the client's platform.
  const text = typeof input.text === 'string' ? input.text.replace(/\r\n|\r/g, '\n') : '';
  if (text.trim() === '') throw invalid('The text is empty; write the announcement.', { field: 'text' });
  if (text.length > MAX_TEXT_LENGTH) throw invalid(`The text has ${text.length} characters; an announcement has at most ${MAX_TEXT_LENGTH}. Shorten it, or link to the details.`, { field: 'text' });
  if (text.includes('\0')) throw invalid('The text contains a NUL character; remove it.', { field: 'text' });

  if (kept !== undefined) {
    const content = { kind: input.kind, title, text, audience: kept.audience };
    return { ...content, audienceList: kept.audienceList, contentHash: announcementHash(content) };
  }
  const given = input.audience.addresses ?? [];
  const max = config.announcementMaxAudience;
  // Counted before any address is read: the work stays bounded by the limit.
  if (given.length > max) throw tooMany(given.length, max);
  let fromList: readonly string[] = [];
  let listName: string | null = null;
  if (input.audience.list !== undefined) {
    listName = input.audience.list;
    const list = LIST_NAME.test(listName) ? await repos.announcements.audience(listName) : undefined;
    if (!list) throw new RelayError('not_found', `There is no audience list "${listName.slice(0, 64)}". GET /v1/audiences lists them; an admin creates one with PUT /v1/audiences/:name.`, { details: { field: 'audience.list' } });
    fromList = list.addresses;
  }
  if (given.length + fromList.length > max) throw tooMany(given.length + fromList.length, max);
  const bad = given.filter((a) => typeof a !== 'string' || !isEmailAddress(a));
  if (bad.length > 0) {
    const shown = bad.slice(0, LISTED).map((a) => String(a).slice(0, 254).replace(/[\x00-\x1f\x7f]/g, '?'));
    throw invalid(`${bad.length} audience entr${bad.length === 1 ? 'y is' : 'ies are'} not an email address (${shown.join(', ')}); correct or remove them.`, { field: 'audience.addresses', addresses: shown, count: bad.length });
  }
  // The A-label form (xn--): what the composer may write in To: and RCPT TO.
  const audience = [...new Set([...given, ...fromList].map((a) => normalisedEmail(a) ?? a))];
  const content = { kind: input.kind, title, text, audience };
  return { ...content, audienceList: listName, contentHash: announcementHash(content) };
}

function tooMany(count: number, max: number): RelayError {
  return new RelayError('audience_too_large', `The audience has ${count} addresses; this relay sends an announcement to at most ${max} (RELAY_ANNOUNCEMENT_MAX_AUDIENCE). Split it into several announcements, or ask an admin about the limit. Nothing was stored.`, {
    rule: 'audience',
    details: { count, max },
  });
}

// Refusals a step has already audited with more detail (its rule outcomes).
const alreadyAudited = new WeakSet<RelayError>();

/** Runs `step`; a refusal is audited (with `facts`) before it is thrown, so every attempt is on the record. */
async function audited<T>(deps: AnnouncementDeps, event: Omit<AuditInput, 'outcome' | 'data'>, facts: Record<string, unknown>, step: () => Promise<T>): Promise<T> {
  try {
    return await step();
  } catch (err) {
    if (err instanceof RelayError && err.code !== 'unavailable' && !alreadyAudited.has(err)) {
      await deps.store.audit.append({ ...event, outcome: 'refused', data: { ...facts, code: err.code, ...(err.details?.['reason'] ? { reason: err.details['reason'] } : {}) } });
    }
    throw err;
  }
}

// ------------------------------------------------------------------ views

/** The release gates of `a` as they stand now. */
async function releaseNow(repos: Pick<Repositories, 'announcements' | 'incidents'>, a: Announcement, approvals?: readonly Approval[], roster?: readonly RosterMember[]) {
  return decideRelease({
    kind: a.kind,
    author: a.author,
    contentHash: a.contentHash,
    approvals: approvals ?? (await repos.announcements.approvals(a.id)),
    roster: new Map((roster ?? (await repos.incidents.roster(a.incidentId))).map((m) => [m.email, m.role])),
    internalSource: await repos.announcements.internalSource(a.incidentId),
  });
}

/** The API view of one announcement. */
export async function announcementView(deps: Pick<AnnouncementDeps, 'store'>, incident: Incident, a: Announcement): Promise<AnnouncementView> {
  const approvals = await deps.store.announcements.approvals(a.id);
  const release = await releaseNow(deps.store, a, approvals);
  const email = a.emailId === null ? undefined : await deps.store.outbox.email(incident.id, a.emailId);
  return {
    id: a.id,
    codename: incident.codename,
    kind: a.kind,
    title: a.title,
    text: a.text,
    audience: { addresses: a.audience, list: a.audienceList, count: a.audience.length },
    state: a.state,
    author: a.author,
    createdAt: a.createdAt,
    updatedAt: a.updatedAt,
    contentHash: a.contentHash,
    checked: a.checkedHash === a.contentHash,
    approvals: approvals.map((p) => ({
      approver: p.approver,
      role: p.role,
      approvedAt: p.approvedAt,
      current: p.voidedAt === null && p.contentHash === a.contentHash,
      voidedAt: p.voidedAt,
      voidedBy: p.voidedBy,
      voidReason: p.voidReason,
    })),
    release: { ready: release.outcome === 'accept', rules: release.rules },
    sent: a.sentAt === null || a.emailId === null ? null : { at: a.sentAt, by: a.sentBy ?? '', emailId: a.emailId, messageId: email?.messageId ?? null },
  };
}

/**
 * An announcement in a list: everything but its text (up to 100,000
 * characters each) and its audience's addresses (up to
 * RELAY_ANNOUNCEMENT_MAX_AUDIENCE each): the audience is its list's name, if
 * any, and its count. GET …/announcements/:id has both.
 */
export type AnnouncementListItem = Omit<AnnouncementView, 'text' | 'audience'> & { audience: { list?: string; count: number } };

/** The list form of a view: the text and the addresses left out. */
export function announcementListItem(view: AnnouncementView): AnnouncementListItem {
  const { text: _text, audience, ...item } = view;
  return { ...item, audience: audience.list === null ? { count: audience.count } : { list: audience.list, count: audience.count } };
}

/** The incident's announcements, newest first, in their list form. */
export async function listAnnouncements(deps: Pick<AnnouncementDeps, 'store'>, incident: Incident): Promise<AnnouncementListItem[]> {
  const all = await deps.store.announcements.list(incident.id);
  return Promise.all(all.map(async (a) => announcementListItem(await announcementView(deps, incident, a))));
}

/** One announcement of the incident; not_found for an id of another incident. */
export async function findAnnouncement(deps: Pick<AnnouncementDeps, 'store'>, incident: Incident, id: string): Promise<Announcement> {
  const a = await deps.store.announcements.get(incident.id, id.slice(0, 64));
  if (!a) throw new RelayError('not_found', `No announcement ${id.slice(0, 64)} in this incident; GET /v1/incidents/:codename/announcements lists them.`);
  return a;
}

// ------------------------------------------------------------------ draft and edit

/** Writes a new draft; the caller (a roster member) is its author. */
export async function createAnnouncement(deps: DraftDeps, caller: Caller, incident: Incident, input: AnnouncementInput): Promise<AnnouncementView> {
  const event = { type: 'announcement.drafted', actor: caller.email, incidentId: incident.id };
  const created = await audited(deps, event, { kind: input.kind, audienceCount: input.audience.addresses?.length ?? 0, audienceList: input.audience.list ?? null }, async () => {
    // Counted as a send: each draft stores up to 100,000 characters and addresses.
    await deps.sendLimiter.take(caller.tokenId, deps.now());
    return deps.store.transaction(async (tx) => {
      assertOpen(incident);
      if (!(await tx.incidents.activeMember(incident.id, caller.email))) {
        throw new RelayError('forbidden', 'Only members of this incident\'s roster write its announcements; ask the commander to add you.', { rule: 'approval' });
      }
      const content = await prepareContent(tx, deps.config, input);
      const a = await tx.announcements.create({ ...content, id: randomUUID(), incidentId: incident.id, author: caller.email, at: deps.now() });
      await tx.audit.append({ ...event, outcome: 'ok', data: { announcementId: a.id, ...contentFacts(a) } });
      return a;
    });
  });
  return announcementView(deps, incident, created);
}

/** Changes an unsent announcement (its author or a commander). A changed content voids every approval, audited. */
export async function editAnnouncement(deps: DraftDeps, caller: Caller, incident: Incident, id: string, patch: Partial<AnnouncementInput>): Promise<AnnouncementView> {
  const event = { type: 'announcement.edited', actor: caller.email, incidentId: incident.id };
  const edited = await audited(deps, event, { announcementId: id.slice(0, 64) }, async () => {
    await deps.sendLimiter.take(caller.tokenId, deps.now());
    return deps.store.transaction(async (tx) => {
      const a = await tx.announcements.lock(incident.id, id.slice(0, 64));
      if (!a) throw new RelayError('not_found', `No announcement ${id.slice(0, 64)} in this incident.`);
      await assertAuthorOrCommander(tx, caller, incident, a, 'edit');
      assertNotSent(a);
      assertOpen(incident);
      const content = await prepareContent(
        tx,
        deps.config,
        { kind: patch.kind ?? a.kind, title: patch.title ?? a.title, text: patch.text ?? a.text, audience: patch.audience ?? {} },
        patch.audience === undefined ? a : undefined,
      );
      if (content.contentHash === a.contentHash && content.audienceList === a.audienceList) return a;
      const now = deps.now();
      await tx.announcements.edit(a.id, content, now);
      const voided = await tx.announcements.voidApprovals(a.id, caller.email, 'edited', now);
      await tx.audit.append({ ...event, outcome: 'ok', data: { announcementId: a.id, previousHash: a.contentHash, ...contentFacts({ ...content, audience: [...content.audience] }), voidedApprovals: voided.length } });
      if (voided.length > 0) {
        await tx.audit.append({ type: 'announcement.approvals_voided', actor: caller.email, incidentId: incident.id, outcome: 'ok', data: { announcementId: a.id, reason: 'edited', approvers: voided.map((v) => v.approver), contentHash: a.contentHash } });
      }
      return (await tx.announcements.get(incident.id, a.id))!;
    });
  });
  return announcementView(deps, incident, edited);
}

// ------------------------------------------------------------------ check

/** Runs the content checks (rules `statement`, `codename`, `audience`) now; on a pass the announcement is `checked`. */
export async function checkAnnouncementNow(deps: AnnouncementDeps, caller: Caller, incident: Incident, id: string): Promise<AnnouncementView> {
  const event = { type: 'announcement.checked', actor: caller.email, incidentId: incident.id };
  const checked = await audited(deps, event, { announcementId: id.slice(0, 64) }, () =>
    deps.store.transaction(async (tx) => {
      const a = await tx.announcements.lock(incident.id, id.slice(0, 64));
      if (!a) throw new RelayError('not_found', `No announcement ${id.slice(0, 64)} in this incident.`);
      assertNotSent(a);
      const roster = await tx.incidents.roster(incident.id);
      const decision = contentDecision(deps, incident, a, roster);
      const now = deps.now();
      if (decision.outcome === 'refuse') {
        // Content that passed before may fail now (a responder added, a date gone stale): it is not checked any more.
        await tx.announcements.markUnchecked(a.id, now);
        await tx.audit.append({ ...event, outcome: 'refused', data: { announcementId: a.id, contentHash: a.contentHash, code: decision.error.code, rules: decision.rules } });
        return { refused: decision.error };
      }
      const release = await releaseNow(tx, a, undefined, roster);
      const approved = a.kind === 'external' && release.rules.some((r) => r.rule === 'approval' && r.result === 'pass');
      await tx.announcements.markChecked(a.id, a.contentHash, approved ? 'approved' : 'checked', now);
      await tx.audit.append({
        ...event,
        outcome: 'ok',
        data: { announcementId: a.id, contentHash: a.contentHash, titleDate: decision.plan.titleDate, recipients: decision.plan.recipients.length, rules: decision.rules },
      });
      return { announcement: (await tx.announcements.get(incident.id, a.id))! };
    }),
  );
  // Refused outside the transaction, so the audit of the refusal and the reset commit.
  if ('refused' in checked) throw checked.refused;
  return announcementView(deps, incident, checked.announcement);
}

function contentDecision(deps: AnnouncementDeps, incident: Incident, a: Announcement, roster: readonly RosterMember[]) {
  return checkAnnouncement({
    kind: a.kind,
    title: a.title,
    text: a.text,
    audience: a.audience,
    incident: { codename: incident.codename, label: incident.label, rosterAddresses: roster.map((m) => m.email) },
    isInternal: internalMatcher(deps.config.internalDomains),
    phrases: loadStatementPhrases(),
    maxAudience: deps.config.announcementMaxAudience,
    now: deps.now(),
  });
}

// ------------------------------------------------------------------ approve

/**
 * Records the caller's approval of the announcement's current content. The
 * approver must be on the roster as commander, legal or communications, must
 * not be its author, and approves once; the content must have passed its
 * checks. Looks the incident up itself, so an attempt by someone off the
 * roster is audited while they hear only not_found, as for any incident
 * they are not on.
 */
export async function approveAnnouncement(deps: AnnouncementDeps, caller: Caller, codename: string, id: string): Promise<AnnouncementView> {
  const incident = await deps.store.incidents.byCodename(codename.slice(0, 80));
  const member = incident ? await deps.store.incidents.activeMember(incident.id, caller.email) : undefined;
  if (!incident || (!member && caller.role !== 'admin') || !inScope(caller, incident.id)) {
    if (incident) {
      await deps.store.audit.append({ type: 'announcement.approved', actor: caller.email, incidentId: incident.id, outcome: 'refused', data: { announcementId: id.slice(0, 64), code: 'not_found', reason: 'not_on_roster' } });
    }
    throw new RelayError('not_found', `No incident "${codename.slice(0, 80)}" that you are on the roster of.`);
  }
  const event = { type: 'announcement.approved', actor: caller.email, incidentId: incident.id };
  const approved = await audited(deps, event, { announcementId: id.slice(0, 64) }, () =>
    deps.store.transaction(async (tx) => {
      const a = await tx.announcements.lock(incident.id, id.slice(0, 64));
      if (!a) throw new RelayError('not_found', `No announcement ${id.slice(0, 64)} in this incident.`);
      assertNotSent(a);
      const role = (await tx.incidents.activeMember(incident.id, caller.email))?.role;
      const approvals = await tx.announcements.approvals(a.id);
      const refusal = approvalRefusal({
        approver: caller.email,
        author: a.author,
        role,
        alreadyApproved: approvals.some((p) => p.approver === caller.email && p.voidedAt === null && p.contentHash === a.contentHash),
      });
      if (refusal) throw refusal;
      // A token a commander issued for their roster is not its holder's own word: the commander could approve twice.
      assertUnscoped(caller, 'approve an announcement');
      if (a.checkedHash !== a.contentHash) {
        throw new RelayError('announcement_not_checked', 'This content has not passed its checks (or was edited since): approve what the relay has checked. Run POST /v1/incidents/:codename/announcements/:id/check first.', {
          rule: 'statement',
        });
      }
      const now = deps.now();
      if (!(await tx.announcements.approve({ id: randomUUID(), announcementId: a.id, approver: caller.email, role: role!, contentHash: a.contentHash, at: now }))) {
        throw approvalRefusal({ approver: caller.email, author: a.author, role, alreadyApproved: true })!;
      }
      const release = await releaseNow(tx, a);
      const complete = a.kind === 'external' && release.rules.some((r) => r.rule === 'approval' && r.result === 'pass');
      await tx.announcements.setState(a.id, complete ? 'approved' : 'checked', now);
      await tx.audit.append({ ...event, outcome: 'ok', data: { announcementId: a.id, contentHash: a.contentHash, role: role!, approvalComplete: complete } });
      return (await tx.announcements.get(incident.id, a.id))!;
    }),
  );
  return announcementView(deps, incident, approved);
}

// ------------------------------------------------------------------ send

/**
 * Sends an announcement whose content passed its checks: the checks run
 * again, the release gates and rule `security-team` are decided, and one copy
 * per audience address is queued (PGP/MIME when the relay holds the
 * recipient's usable key and the recipient is external or RELAY_ENCRYPT=always,
 * else plain: the content is approved for that reader). Resolves once the
 * copies are committed to the outbox. The author or a commander sends.
 */
export async function sendAnnouncement(deps: SendDeps, caller: Caller, incident: Incident, id: string, options: { idempotencyKey?: string | undefined } = {}): Promise<AnnouncementSent> {
  const route = `announcement:${incident.id}:${id.slice(0, 64)}`;
  const idempotency: IdempotencyUse | undefined = options.idempotencyKey ? { key: options.idempotencyKey, route, fingerprint: requestFingerprint(route, { id }) } : undefined;
  if (idempotency) {
    const earlier = await replayAnswer<AnnouncementSent>(deps.store, caller, idempotency, deps.now());
    if (earlier) return earlier;
  }
  const event = { type: 'announcement.sent', actor: caller.email, incidentId: incident.id };
  const sent = await audited(deps, event, { announcementId: id.slice(0, 64) }, async () => {
    await deps.sendLimiter.take(caller.tokenId, deps.now());
    const a = await findAnnouncement(deps, incident, id);
    await assertAuthorOrCommander(deps.store, caller, incident, a, 'send');
    assertNotSent(a);
    if (a.checkedHash !== a.contentHash) {
      throw new RelayError('announcement_not_checked', 'This content has not passed its checks (or was edited since). Nothing was sent; run POST /v1/incidents/:codename/announcements/:id/check, then get the approvals it needs.', { rule: 'statement' });
    }
    const roster = await deps.store.incidents.roster(incident.id);
    const decision = decideSend({
      incidentStatus: incident.status,
      securityMembers: securityMemberCount(roster),
      content: contentDecision(deps, incident, a, roster),
      release: await releaseNow(deps.store, a, undefined, roster),
    });
    if (decision.outcome === 'refuse') {
      await deps.store.audit.append({ ...event, outcome: 'refused', data: { announcementId: a.id, contentHash: a.contentHash, code: decision.error.code, rules: decision.rules } });
      deps.metrics.decisions.inc({ channel: 'announcement', outcome: 'refused', code: decision.error.code });
      alreadyAudited.add(decision.error);
      throw decision.error;
    }
    return queueCopies(deps, caller, incident, a, decision.rules, idempotency);
  });
  deps.notifyOutbox();
  deps.metrics.decisions.inc({ channel: 'announcement', outcome: 'accepted', code: '' });
  return sent;
}

/** Composes every copy, then commits them with the announcement marked sent, checking again in the commit what may have changed. */
async function queueCopies(deps: SendDeps, caller: Caller, incident: Incident, a: Announcement, rules: RuleOutcome[], idempotency: IdempotencyUse | undefined): Promise<AnnouncementSent> {
  const now = deps.now();
  const emailId = randomUUID();
  const messageId = `<${randomUUID()}@${deps.config.mailDomain}>`;
  const isInternal = internalMatcher(deps.config.internalDomains);
  const keys = await deps.keys.keyStates(a.audience, now, incident.id);
  // Encrypted when the relay holds a usable key and policy asks for it: the recipient is outside the company, or RELAY_ENCRYPT=always.
  const sealedFor = a.audience.filter((r) => keys.get(r)?.state === 'usable' && (!isInternal(r) || deps.config.encrypt === 'always'));
  const base: Omit<AnnouncementCopy, 'to'> = { messageId, date: now, from: announcementSender(deps.config), title: a.title, text: a.text };
  const plainBody = composeAnnouncementPlain({ ...base, to: announcementSender(deps.config) });
  const protectedPart = sealedFor.length > 0 ? composeAnnouncementProtectedPart(base) : undefined;
  // Every copy is stored whole until the outbox keeps a shared part once: bound what that stores before any is made,
  // and before the encryption a refused send would waste (the sealed part is the protected part plus under 4 KB).
  const perCopy = plainBody.length + 1024;
  const armoredShared = protectedPart ? Math.ceil((protectedPart.length + 4096) / 3) * 4 * 1.04 + 1024 : 0;
  const bytes = Math.ceil((a.audience.length - sealedFor.length) * perCopy + sealedFor.length * (armoredShared + 1024));
  const limit = 2 * deps.config.maxMessageBytes;
  if (bytes > limit) {
    throw new RelayError('payload_too_large', `Sending this announcement would store about ${bytes} bytes for ${a.audience.length} copies; one send may store at most ${limit} (2 × RELAY_MAX_MESSAGE_BYTES). Nothing was sent; shorten the text or split the audience.`, {
      details: { bytes, limit, copies: a.audience.length },
    });
  }
  let sealed: { shared: Uint8Array; keyPackets: Uint8Array[] } | undefined;
  if (protectedPart) {
    const encryptor = deps.encryptor ?? inThreadEncryptor(deps.relayKey.privateKey);
    const publicKeys = await deps.keys.publicKeys(sealedFor, incident.id);
    sealed = await encryptor.seal(protectedPart, publicKeys.map((k) => [k]), now);
  }
  const sealedIndex = new Map(sealedFor.map((r, i) => [r, i]));
  const copyOf = (recipient: string): Buffer => {
    const copy = { ...base, to: recipient };
    const i = sealedIndex.get(recipient);
    return i === undefined || !sealed ? composeAnnouncementPlain(copy) : composeAnnouncementEncrypted(copy, armorMessage([sealed.keyPackets[i]!, sealed.shared]));
  };
  const answer: AnnouncementSent = { id: a.id, state: 'sent', emailId, messageId, status: 'queued', copies: a.audience.length, encrypted: sealedFor.length };

  const committed = await deps.store.grouped(async (tx): Promise<'queued' | 'raced' | RelayError> => {
    // Composing took a while: the content, the approvals, the roster or the incident may have changed. Decide again in the commit.
    const current = await tx.announcements.lock(incident.id, a.id);
    if (!current || current.state === 'sent') return new RelayError('announcement_sent', 'This announcement was sent meanwhile; nothing was sent again.', { rule: 'approval' });
    if (current.contentHash !== a.contentHash) return new RelayError('approval_required', 'The announcement was edited while it was being sent, which voids its approvals; nothing was sent. Check it and get it approved again.', { rule: 'approval' });
    if ((await tx.incidents.byId(incident.id))?.status !== 'open') {
      return new RelayError('incident_closed', 'This incident was closed while the announcement was being prepared; nothing was sent.', { rule: 'incident-open' });
    }
    const roster = await tx.incidents.roster(incident.id);
    const security = checkSecurityTeam(securityMemberCount(roster), 'email');
    if (security.error) return security.error;
    const gates = await releaseNow(tx, current, undefined, roster);
    if (gates.outcome === 'refuse') return gates.error;
    if (idempotency && !(await rememberAnswer(tx, caller, idempotency, 202, answer, now))) return 'raced';
    await tx.outbox.insertEmail({
      id: emailId,
      incidentId: incident.id,
      messageId,
      sender: caller.email,
      encrypted: sealedFor.length > 0,
      // A reply to a statement that went outside the company stays encrypted (rule `encryption`).
      chainExternal: a.kind === 'external' || a.audience.some((r) => !isInternal(r)),
      recipients: a.audience,
      // No Bcc: every audience member gets a copy of their own, and the audience is no secret to the roster.
      bcc: [],
      createdAt: now.toISOString(),
    });
    for (let i = 0; i < a.audience.length; i += QUEUE_BATCH) {
      const batch: NewDelivery[] = a.audience.slice(i, i + QUEUE_BATCH).map((recipient) => ({
        id: randomUUID(),
        channel: 'email',
        emailId,
        incidentId: incident.id,
        envelope: { kind: 'email', from: announcementSender(deps.config), to: [recipient] },
        body: copyOf(recipient),
      }));
      await tx.outbox.enqueue(batch, now);
    }
    await tx.announcements.markSent(a.id, { contentHash: a.contentHash, by: caller.email, emailId, at: now });
    await tx.audit.append({
      type: 'announcement.sent',
      actor: caller.email,
      incidentId: incident.id,
      outcome: 'ok',
      data: {
        announcementId: a.id,
        emailId,
        messageId,
        ...contentFacts(a),
        copies: a.audience.length,
        encrypted: sealedFor.length,
        approvedBy: gates.plan.approvedBy.map((p) => p.approver),
        rules,
      },
    });
    return 'queued';
  });
  if (committed instanceof RelayError) {
    await deps.store.audit.append({ type: 'announcement.sent', actor: caller.email, incidentId: incident.id, outcome: 'refused', data: { announcementId: a.id, contentHash: a.contentHash, code: committed.code, changedDuringCompose: true } });
    alreadyAudited.add(committed);
    throw committed;
  }
  if (committed === 'raced') return (await replayAnswer<AnnouncementSent>(deps.store, caller, idempotency!, now))!;
  return answer;
}

// ------------------------------------------------------------------ internal source

/** The internal-source record as the API shows it. */
export async function internalSourceView(deps: Pick<AnnouncementDeps, 'store'>, incident: Incident): Promise<InternalSource | null> {
  return deps.store.announcements.internalSource(incident.id);
}

/** Whether a roster member may record (or withdraw) the internal-source finding: the incident's commander only, never an admin's pass. The console shows the form by the same rule. */
export function mayRecordInternalSource(member: Pick<RosterMember, 'role'> | undefined): boolean {
  return member?.role === 'commander';
}

/**
 * The commander records that forensic analysis ruled out an internal source
 * (with a note saying how they know), or withdraws that record. Withdrawing
 * it cancels, in the same transaction, every announcement copy still queued:
 * the attack may be internal after all, and nothing more leaves the team.
 */
export async function recordInternalSource(
  deps: AnnouncementDeps,
  caller: Caller,
  incident: Incident,
  input: { ruledOut: boolean; note?: string | undefined },
): Promise<{ internalSourceRuledOut: InternalSource | null; cancelledDeliveries: number }> {
  const note = (input.note ?? '').trim();
  const event = { type: 'incident.internal_source', actor: caller.email, incidentId: incident.id };
  const facts = { ruledOut: input.ruledOut, noteLength: [...note].length, noteSha256: sha256(note) };
  return audited(deps, event, facts, () =>
    deps.store.transaction(async (tx) => {
      const member = await tx.incidents.activeMember(incident.id, caller.email);
      if (!mayRecordInternalSource(member)) {
        throw new RelayError('forbidden', 'Only the incident\'s commander records whether forensics ruled out an internal source.', { rule: 'internal-source' });
      }
      if (input.ruledOut && note === '') throw invalid('Say how forensics ruled out an internal source: {"ruledOut": true, "note": "…"} (e.g. the report that shows it).', { field: 'note' });
      if (note.length > MAX_NOTE_LENGTH || note.includes('\0')) throw invalid(`The note has at most ${MAX_NOTE_LENGTH} characters and no NUL.`, { field: 'note' });
      const record = input.ruledOut ? { at: deps.now().toISOString(), by: caller.email, note } : null;
      await tx.announcements.setInternalSource(incident.id, record);
      let cancelled = 0;
      if (!input.ruledOut) {
        for (const a of await tx.announcements.sent(incident.id)) {
          for (const d of (await tx.outbox.deliveriesOf(a.emailId!)).filter((v) => v.status === 'queued')) {
            const done = await tx.outbox.cancelRecipients(d.id, 'all', 'cancelled: the internal-source record was withdrawn before it was sent', randomUUID);
            if (!done) continue;
            cancelled += 1;
            const c = cancellationEvent(done, caller.email, incident.id, 'internal_source_withdrawn');
            await tx.audit.append({ ...c, data: { ...c.data, announcementId: a.id } });
          }
        }
      }
      await tx.audit.append({ ...event, outcome: 'ok', data: { ...facts, cancelledDeliveries: cancelled } });
      return { internalSourceRuledOut: record, cancelledDeliveries: cancelled };
    }),
  );
}

// ------------------------------------------------------------------ audience lists (admin)

/** An audience list as the API shows it; addresses only when asked for one list. */
export interface AudienceView {
  name: string;
  count: number;
  addresses?: string[];
  updatedBy: string;
  updatedAt: string;
}

/** A list as the API shows it: with its addresses when given whole, its size only from a summary. */
function audienceView(list: AudienceSummary | AudienceList): AudienceView {
  const { name, updatedBy, updatedAt } = list;
  return 'addresses' in list ? { name, count: list.addresses.length, addresses: list.addresses, updatedBy, updatedAt } : { name, count: list.count, updatedBy, updatedAt };
}

function listName(name: string): string {
  if (!LIST_NAME.test(name)) throw invalid('An audience list name is 1-63 lowercase letters, digits, ".", "_" or "-", starting with a letter or digit, e.g. press or customers-eu.', { field: 'name' });
  return name;
}

/** The lists, by name and size. */
export async function listAudiences(deps: Pick<AnnouncementDeps, 'store'>): Promise<AudienceView[]> {
  return (await deps.store.announcements.audiences()).map((l) => audienceView(l));
}

/** One list with its addresses. */
export async function getAudience(deps: Pick<AnnouncementDeps, 'store'>, name: string): Promise<AudienceView> {
  const list = await deps.store.announcements.audience(listName(name));
  if (!list) throw new RelayError('not_found', `There is no audience list "${name}"; create it with PUT /v1/audiences/${name}.`);
  return audienceView(list);
}

/** Creates or replaces a list (admin); drafts already written keep the addresses they read. */
export async function putAudience(deps: AnnouncementDeps, caller: Caller, name: string, addresses: readonly string[]): Promise<{ created: boolean; list: AudienceView }> {
  const event = { type: 'audience.updated', actor: caller.email };
  return audited(deps, event, { name: name.slice(0, 64), count: addresses.length }, () =>
    deps.store.transaction(async (tx) => {
      listName(name);
      if (addresses.length > deps.config.announcementMaxAudience) throw tooMany(addresses.length, deps.config.announcementMaxAudience);
      const bad = addresses.filter((a) => typeof a !== 'string' || !isEmailAddress(a));
      if (bad.length > 0) throw invalid(`${bad.length} entr${bad.length === 1 ? 'y is' : 'ies are'} not an email address (${bad.slice(0, LISTED).map((a) => String(a).slice(0, 254).replace(/[\x00-\x1f\x7f]/g, '?')).join(', ')}).`, { field: 'addresses', count: bad.length });
      const unique = [...new Set(addresses.map((a) => normalisedEmail(a) ?? a))];
      const now = deps.now();
      const created = await tx.announcements.putAudience({ name, addresses: unique, by: caller.email, at: now });
      await tx.audit.append({ ...event, outcome: 'ok', data: { name, created, count: unique.length, addressesSha256: sha256(JSON.stringify([...unique].sort())) } });
      return { created, list: audienceView((await tx.announcements.audience(name))!) };
    }),
  );
}

/** Deletes a list (admin); drafts already written keep the addresses they read. */
export async function deleteAudience(deps: AnnouncementDeps, caller: Caller, name: string): Promise<void> {
  listName(name);
  const deleted = await deps.store.transaction(async (tx) => {
    const done = await tx.announcements.deleteAudience(name);
    if (done) await tx.audit.append({ type: 'audience.deleted', actor: caller.email, outcome: 'ok', data: { name } });
    return done;
  });
  if (!deleted) throw new RelayError('not_found', `There is no audience list "${name}".`);
}

// ------------------------------------------------------------------ helpers

function assertOpen(incident: Incident): void {
  if (incident.status !== 'open') {
    throw new RelayError('incident_closed', 'This incident is closed; its announcements can no longer change or go out. The commander reopens it first.', { rule: 'incident-open' });
  }
}

function assertNotSent(a: Announcement): void {
  if (a.state === 'sent') {
    throw new RelayError('announcement_sent', `This announcement was sent at ${a.sentAt ?? '?'} by ${a.sentBy ?? '?'}; it stays as it went out. To correct it, write a new announcement (a dated correction).`, {
      rule: 'approval',
      details: { sentAt: a.sentAt },
    });
  }
}

async function assertAuthorOrCommander(repos: Pick<Repositories, 'incidents'>, caller: Caller, incident: Incident, a: Announcement, what: 'edit' | 'send'): Promise<void> {
  if (caller.email === a.author && (await repos.incidents.activeMember(incident.id, caller.email))) return;
  const role = (await repos.incidents.activeMember(incident.id, caller.email))?.role;
  if (role !== undefined && (EDITORS as readonly string[]).includes(role)) return;
  throw new RelayError('forbidden', `Only the announcement's author (${a.author}, while on the roster) or a commander may ${what} it.`, { rule: 'approval' });
}
