/**
 * The incident screen: status, roster with keys and Slack status, the
 * forms to change the roster, send email and nudge, and the Slack room. It
 * shows each form only to callers the service would let act (the `can`
 * flags come from the services' own role lists); the services decide again
 * on every POST.
 */
import type { RelayError } from '../../errors.js';
import { ROSTER_ROLES, type Incident, type RosterMember } from '../../store/incidents.js';
import type { KeyStatus as ApiKeyStatus } from '../../services/keys.js';
import type { Flash } from '../flash.js';
import { html, type SafeHtml } from '../html.js';
import { badge, errorBlock, flashBlock, incidentPath, memberPath, time } from './common.js';
import { layout, type SignedIn } from './layout.js';
import { verdictBlock, type Verdict } from './preview.js';

/** A key's standing as the roster shows it: the API's status, or missing. */
export type KeyStatus = ApiKeyStatus | 'missing';

/** The key that holds for a member in this incident (KeyService.view, as GET /v1/keys/:email?incident= shows it). */
export interface KeyInfo {
  status: KeyStatus;
  /** `incident`: given with the roster entry, holds here only; `relay`: the address's relay-wide key. */
  scope?: 'incident' | 'relay' | undefined;
  /** True when the address is outside the company: mail to it is encrypted, so a missing key matters. */
  external?: boolean | undefined;
  fingerprint?: string | undefined;
  expiresAt?: string | null | undefined;
  /** Why it is unusable (the `unusable_public_key` reason). */
  reason?: string | undefined;
}

/** One roster row. */
export interface RosterRow {
  member: RosterMember;
  key: KeyInfo;
}

/** What the caller may do here, from the services' role lists (permits()). */
export interface Abilities {
  /** Add, edit and remove members (commander, deputy, admin). */
  manageRoster: boolean;
  /** Close or reopen the incident, set its label, sync the Slack room (commander, admin). */
  command: boolean;
  /** Send email and nudges: an active member of an open incident. */
  send: boolean;
  /** Read the audit timeline (commander, deputy, scribe, admin). */
  readAudit: boolean;
}

/** A roster form's values, to show again after a refusal. */
export interface MemberDraft {
  email?: string | undefined;
  name?: string | undefined;
  role?: string | undefined;
  phone?: string | undefined;
  slackUserId?: string | undefined;
}

/** The compose form's values, to show again after a refusal (never the attachments: browsers do not allow it). */
export interface ComposeDraft {
  to: string[];
  cc: string[];
  bcc: string[];
  subject?: string | undefined;
  text?: string | undefined;
}

/** What the incident screen shows. */
export interface IncidentPage {
  signedIn: SignedIn;
  incident: Incident;
  commander: string | null;
  roster: RosterRow[];
  slack: { state: string; name: string | null; reason: string | null } | null;
  slackOn: boolean;
  can: Abilities;
  flash?: Flash | undefined;
  error?: RelayError | undefined;
  memberDraft?: MemberDraft | undefined;
  composeDraft?: ComposeDraft | undefined;
  /** The policy preview of the compose draft, after "Check before sending". */
  verdict?: Verdict | undefined;
  /** What the label form held when it was refused. */
  labelDraft?: string | undefined;
  /** Fresh Idempotency-Keys for the two sending forms: a re-submitted form cannot send twice. */
  idempotency: { email: string; sms: string };
  maxMessageBytes: number;
}

const KEY_TONES: Readonly<Record<KeyStatus, 'good' | 'bad' | 'warn' | 'neutral'>> = { usable: 'good', expired: 'bad', revoked: 'bad', unusable: 'bad', missing: 'warn' };

/** The key cell: status first (in words), then the fingerprint's last 16 hex digits and the expiry. */
export function keyCell(key: KeyInfo): SafeHtml {
  const label = key.status === 'unusable' && key.reason ? `unusable (${key.reason})` : key.status;
  // A missing key is a warning for someone outside the company (their mail is encrypted), not for an insider.
  const tone = key.status === 'missing' && key.external === false ? 'neutral' : KEY_TONES[key.status];
  const scope = key.scope === 'incident' ? 'given for this incident' : key.scope === 'relay' ? 'relay-wide' : undefined;
  return html`${badge(label, tone)}${key.fingerprint ? html` <code>${key.fingerprint.slice(-16)}</code>` : ''}${scope ? html`<br><span class="hint">${scope}</span>` : ''}${key.expiresAt ? html`<br><span class="hint">expires ${time(key.expiresAt)}</span>` : ''}`;
}

function slackCell(status: string | null): SafeHtml {
  if (status === null) return html`<span class="muted">—</span>`;
  const tone = status === 'member' ? 'good' : status === 'pending' ? 'neutral' : 'warn';
  return badge(status.replace(/_/g, ' '), tone);
}

function roleOptions(selected: string | undefined): SafeHtml[] {
  return ROSTER_ROLES.map((role) => html`<option value="${role}"${role === selected ? html` selected` : ''}>${role}</option>`);
}

/** The add/edit fields of a roster entry; `email` is fixed (shown, not editable) when editing. */
export function memberFields(draft: MemberDraft, options: { editing: boolean }): SafeHtml {
  return html`${options.editing
    ? ''
    : html`<p>
      <label for="member-email">Email address</label>
      <input id="member-email" name="email" type="email" required autocomplete="off" value="${draft.email ?? ''}">
    </p>`}
    <p>
      <label for="member-name">Name</label>
      <input id="member-name" name="name" type="text" required maxlength="200" autocomplete="off" value="${draft.name ?? ''}">
    </p>
    <p>
      <label for="member-role">Role</label>
      <select id="member-role" name="role" required>${roleOptions(draft.role ?? 'security')}</select>
    </p>
    <p>
      <label for="member-phone">Phone for SMS nudges (optional)</label>
      <input id="member-phone" name="phone" type="tel" autocomplete="off" value="${draft.phone ?? ''}" aria-describedby="member-phone-hint">
    </p>
    <p id="member-phone-hint" class="hint">E.164, e.g. <code>+15555550100</code>. ${options.editing ? 'Empty removes it.' : ''}</p>
    <p>
      <label for="member-slack">Slack user id (optional)</label>
      <input id="member-slack" name="slackUserId" type="text" autocomplete="off" spellcheck="false" value="${draft.slackUserId ?? ''}" aria-describedby="member-slack-hint">
    </p>
    <p id="member-slack-hint" class="hint">Only when their Slack email differs from this address, e.g. <code>U024BE7LH</code>.</p>
    <p>
      <label for="member-key">Public key file (optional)</label>
      <input id="member-key" name="publicKey" type="file" accept=".asc,.pgp,.gpg,.txt,.key,application/pgp-keys" aria-describedby="member-key-hint">
    </p>
    <p id="member-key-hint" class="hint">Their armored public key (<code>gpg --armor --export their@address &gt; key.asc</code>). It holds in this incident only. ${options.editing ? 'Leave empty to keep the current key.' : 'People outside the company need one before they can be mailed.'}</p>`;
}

function rosterTable(page: IncidentPage): SafeHtml {
  const { incident, roster, can } = page;
  return html`<table>
  <caption>Roster of ${incident.codename} (${roster.length} active)</caption>
  <thead><tr><th scope="col">Member</th><th scope="col">Role</th><th scope="col">Phone</th><th scope="col">Key</th><th scope="col">Slack</th>${can.manageRoster ? html`<th scope="col">Actions</th>` : ''}</tr></thead>
  <tbody>
  ${roster.map(
    ({ member, key }) => html`<tr>
    <td>${member.name}<br><span class="hint">${member.email}</span></td>
    <td>${member.role}</td>
    <td>${member.phone ?? html`<span class="muted">none</span>`}</td>
    <td>${keyCell(key)}</td>
    <td>${slackCell(member.slackStatus)}</td>
    ${can.manageRoster
      ? html`<td class="actions"><a href="${memberPath(incident.codename, member.email)}">Edit<span class="visually-hidden"> ${member.email}</span></a>
      <a href="${memberPath(incident.codename, member.email, '/remove')}">Remove…<span class="visually-hidden"> ${member.email}</span></a></td>`
      : ''}
  </tr>`,
  )}
  </tbody>
</table>`;
}

function recipientGroup(field: 'to' | 'cc' | 'bcc', legend: string, roster: readonly RosterRow[], ticked: readonly string[]): SafeHtml {
  return html`<fieldset class="recipients" data-group="${field}">
    <legend>${legend}</legend>
    ${roster.map(
      ({ member, key }, i) => html`<label class="check" for="${field}-${i}"><input type="checkbox" id="${field}-${i}" name="${field}" value="${member.email}"${ticked.includes(member.email) ? html` checked` : ''}> ${member.name} &lt;${member.email}&gt;${key.external && key.status !== 'usable' ? html` <span class="hint">(outside the company, no usable key)</span>` : ''}</label>`,
    )}
  </fieldset>`;
}

function composeSection(page: IncidentPage): SafeHtml {
  const { incident, roster } = page;
  const draft = page.composeDraft ?? { to: [], cc: [], bcc: [] };
  const limitMb = (page.maxMessageBytes / (1024 * 1024)).toFixed(0);
  // The preview: without JavaScript "Check before sending" posts the form to
  // …/emails/preview, which renders this page with the verdict and the draft;
  // console.js instead fetches …/emails/preview?fragment=verdict as the
  // recipients change and puts the answer into the live region.
  return html`<section id="compose" aria-labelledby="compose-title" class="card">
  <h2 id="compose-title">Send email</h2>
  <form method="post" action="${incidentPath(incident.codename, '/emails')}" enctype="multipart/form-data" accept-charset="utf-8" data-compose data-max-bytes="${page.maxMessageBytes}" data-preview="${incidentPath(incident.codename, '/emails/preview?fragment=verdict')}">
    <input type="hidden" name="idempotencyKey" value="${page.idempotency.email}">
    ${recipientGroup('to', 'To', roster, draft.to)}
    ${recipientGroup('cc', 'Cc', roster, draft.cc)}
    ${recipientGroup('bcc', 'Bcc (each gets their own copy; never shown to others)', roster, draft.bcc)}
    <p>
      <label for="compose-subject">Topic (optional)</label>
      <input id="compose-subject" name="subject" type="text" maxlength="998" autocomplete="off" value="${draft.subject ?? ''}" aria-describedby="compose-subject-hint">
    </p>
    <p id="compose-subject-hint" class="hint">The subject is always <q>Attorney Work Project</q>; your topic becomes the first line of the message, <code>Topic: …</code>.</p>
    <p>
      <label for="compose-text">Message</label>
      <textarea id="compose-text" name="text" rows="8" required>
${draft.text ?? ''}</textarea>
    </p>
    <p>
      <label for="compose-attachments">Attachments (optional)</label>
      <input id="compose-attachments" name="attachments" type="file" multiple aria-describedby="compose-attachments-hint">
    </p>
    ${page.composeDraft ? html`<p class="hint"><strong>Choose the attachments again:</strong> browsers do not keep files across a refused send.</p>` : ''}
    <p id="compose-attachments-hint" class="hint">Up to ${limitMb} MB in all. Mail to anyone outside the company is signed and encrypted; it is refused, never sent in clear, when someone lacks a usable key.</p>
    <h3 id="compose-preview-title">Policy preview</h3>
    <div id="compose-preview" class="verdict" aria-live="polite">${verdictBlock(page.verdict ?? {}, { codename: incident.codename, manageRoster: page.can.manageRoster })}</div>
    <p class="buttons">
      <button type="submit">Send</button>
      <button type="submit" class="secondary" formaction="${incidentPath(incident.codename, '/emails/preview')}" data-check>Check before sending</button>
    </p>
  </form>
</section>`;
}

function nudgeSection(page: IncidentPage): SafeHtml {
  const { incident, roster } = page;
  return html`<section id="nudge" aria-labelledby="nudge-title" class="card">
  <h2 id="nudge-title">SMS nudge</h2>
  <p>SMS carries one text only: <q>Please join Slack ASAP.</q> Members without a phone, or nudged in the last few minutes, are skipped.</p>
  <form method="post" action="${incidentPath(incident.codename, '/sms')}" accept-charset="utf-8">
    <input type="hidden" name="idempotencyKey" value="${page.idempotency.sms}">
    <fieldset>
      <legend>Members to nudge</legend>
      ${roster.map(
        ({ member }, i) => html`<label class="check" for="nudge-${i}"><input type="checkbox" id="nudge-${i}" name="to" value="${member.email}"> ${member.name} (${member.phone ?? 'no phone'})</label>`,
      )}
    </fieldset>
    <p class="buttons">
      <button type="submit" name="scope" value="selected">Nudge selected</button>
      <button type="submit" name="scope" value="roster" class="secondary">Nudge everyone on the roster</button>
    </p>
  </form>
</section>`;
}

function slackSection(page: IncidentPage): SafeHtml {
  const { incident, slack, can } = page;
  const tone = slack?.state === 'ready' ? 'good' : slack?.state === 'failed' ? 'bad' : 'neutral';
  return html`<section id="slack" aria-labelledby="slack-title" class="card">
  <h2 id="slack-title">Slack room</h2>
  ${!page.slackOn
    ? html`<p>Slack is off on this relay (an admin sets <code>SLACK_BOT_TOKEN</code> to give incidents a room).</p>`
    : slack === null
      ? html`<p>This incident has no Slack room yet.</p>`
      : html`<p>${badge(slack.state, tone)} ${slack.name ? html`channel <code>#${slack.name}</code>` : ''}</p>
  ${slack.reason ? html`<p class="hint">Last problem: ${slack.reason}</p>` : ''}`}
  ${page.slackOn && can.command && incident.status === 'open'
    ? html`<form method="post" action="${incidentPath(incident.codename, '/slack/sync')}"><button type="submit" class="secondary">Sync now</button></form>`
    : ''}
</section>`;
}

/**
 * The private label: shown to whoever sees this page (the roster and
 * admins, as the API shows it), in the page only, never in its title;
 * the commander (or an admin) sets or clears it.
 */
function labelBlock(page: IncidentPage): SafeHtml {
  const { incident, can } = page;
  const shown = html`<p class="label-line">Private label: ${incident.label !== null ? html`<strong>${incident.label}</strong>` : html`<span class="muted">none</span>`}</p>`;
  if (!can.command) return shown;
  return html`${shown}
<details class="label-edit"${page.labelDraft !== undefined ? html` open` : ''}>
  <summary>Change the label</summary>
  <form method="post" action="${incidentPath(incident.codename, '/label')}" accept-charset="utf-8" class="card">
    <p>
      <label for="label">Private label</label>
      <input id="label" name="label" type="text" maxlength="200" autocomplete="off" value="${page.labelDraft ?? incident.label ?? ''}" aria-describedby="label-hint">
    </p>
    <p id="label-hint" class="hint">One line, to tell your incidents apart. Only the roster and admins see it; it is never in a page title, a mail, a Slack room or an SMS, and the audit log keeps only its length. Empty clears it.</p>
    <p><button type="submit" class="secondary">Save label</button></p>
  </form>
</details>`;
}

/** The incident page. The title is the codename and nothing else. */
export function incidentPage(page: IncidentPage): SafeHtml {
  const { incident, can } = page;
  const open = incident.status === 'open';
  return layout({
    title: incident.codename,
    signedIn: page.signedIn,
    main: html`<p class="crumbs"><a href="/console/incidents">Incidents</a> › ${incident.codename}</p>
<h1>${incident.codename}</h1>
<p class="meta">${open ? badge('open', 'good') : badge('closed', 'neutral')} · Commander ${page.commander ?? '—'} · Declared ${time(incident.createdAt)}${incident.closedAt ? html` · Closed ${time(incident.closedAt)}` : ''}</p>
${labelBlock(page)}
${flashBlock(page.flash, incident.codename)}
${page.error ? errorBlock(page.error, incident.codename) : ''}
<nav aria-label="On this page" class="toc">
  <a href="#roster">Roster</a>
  ${can.send ? html`<a href="#compose">Send email</a> <a href="#nudge">SMS nudge</a>` : ''}
  <a href="#slack">Slack room</a>
  <a href="${incidentPath(incident.codename, '/emails')}">Emails</a>
  <a href="${incidentPath(incident.codename, '/announcements')}">Announcements</a>
  ${can.readAudit ? html`<a href="${incidentPath(incident.codename, '/audit')}">Audit timeline</a>` : ''}
  ${can.command && open ? html`<a href="${incidentPath(incident.codename, '/close')}">Close incident…</a>` : ''}
  ${can.command && !open ? html`<a href="${incidentPath(incident.codename, '/reopen')}">Reopen incident…</a>` : ''}
</nav>
<section id="roster" aria-labelledby="roster-title">
  <h2 id="roster-title">Roster</h2>
  ${rosterTable(page)}
</section>
${can.manageRoster
  ? html`<section id="add-member" aria-labelledby="add-member-title" class="card">
  <h2 id="add-member-title">Add a member</h2>
  <form method="post" action="${incidentPath(incident.codename, '/roster')}" enctype="multipart/form-data" accept-charset="utf-8">
    ${memberFields(page.memberDraft ?? {}, { editing: false })}
    <p><button type="submit">Add to roster</button></p>
  </form>
</section>`
  : ''}
${can.send
  ? html`${composeSection(page)}
${nudgeSection(page)}`
  : html`<p class="card">${open ? 'Only members of this roster send email and nudges here.' : 'This incident is closed: it accepts no new messages.'}</p>`}
${slackSection(page)}`,
  });
}
