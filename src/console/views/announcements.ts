/**
 * The approvals screen (issue 13, issue 14): the incident's announcements
 * with their state, approvals and what still blocks release; the draft and
 * edit forms; check, approve and send; and the commander's internal-source
 * record. Everything shown comes from announcementView (the API's view,
 * whose `release.rules` are the gates decided now); every button posts to
 * the announcements service, which decides again.
 */
import type { RelayError } from '../../errors.js';
import type { AnnouncementListItem, AnnouncementView, AudienceView } from '../../services/announcements.js';
import type { InternalSource } from '../../store/announcements.js';
import type { Incident } from '../../store/incidents.js';
import type { Flash } from '../flash.js';
import { html, type SafeHtml } from '../html.js';
import { badge, errorBlock, flashBlock, incidentPath, time } from './common.js';
import { layout, type SignedIn } from './layout.js';

/** What a draft or edit form held, to show again after a refusal. */
export interface AnnouncementDraftValues {
  kind?: string | undefined;
  title?: string | undefined;
  text?: string | undefined;
  addresses?: string | undefined;
  list?: string | undefined;
}

/** What both announcement screens know about the caller and the incident. */
export interface AnnouncementsContext {
  signedIn: SignedIn;
  incident: Incident;
  internalSource: InternalSource | null;
  /** The commander records the internal source (the service's rule: the roster's commander, not an admin). */
  mayRecordInternalSource: boolean;
  /** The admin-kept audience lists, by name and size. */
  audiences: AudienceView[];
  flash?: Flash | undefined;
  error?: RelayError | undefined;
}

/** The list screen. */
export interface AnnouncementsPage extends AnnouncementsContext {
  announcements: AnnouncementListItem[];
  draft?: AnnouncementDraftValues | undefined;
  /** What the internal-source form held when it was refused. */
  noteDraft?: string | undefined;
}

/** One announcement's screen. */
export interface AnnouncementPage extends AnnouncementsContext {
  announcement: AnnouncementView;
  /** Why the caller may not approve it (approvalRefusal, the approve step's own rule), or undefined when they may. */
  approvalRefusal: RelayError | undefined;
  /** A fresh Idempotency-Key for the send button: a resubmitted form sends once. */
  idempotencyKey: string;
  /** What the edit form held when it was refused. */
  editDraft?: AnnouncementDraftValues | undefined;
}

const STATE_TONES: Readonly<Record<AnnouncementView['state'], 'good' | 'bad' | 'warn' | 'neutral'>> = { draft: 'neutral', checked: 'warn', approved: 'good', sent: 'good' };

/** The path of an announcement's screen. */
export function announcementPath(codename: string, id: string, rest = ''): string {
  return incidentPath(codename, `/announcements/${encodeURIComponent(id)}${rest}`);
}

function crumbs(codename: string, here: SafeHtml | string): SafeHtml {
  return html`<p class="crumbs"><a href="/console/incidents">Incidents</a> › <a href="${incidentPath(codename)}">${codename}</a> › ${here}</p>`;
}

/** What still stops the announcement from going out, in words; empty when nothing does. */
export function blockers(a: Pick<AnnouncementView, 'state' | 'checked' | 'release'>): string[] {
  if (a.state === 'sent') return [];
  return [...(a.checked ? [] : ['the content has not passed its checks (run them)']), ...a.release.rules.filter((r) => r.result === 'fail').map((r) => `${r.rule}: ${r.reason}`)];
}

// The list item leaves `list` out when there is none; the full view has it null.
function audienceLine(a: { audience: { list?: string | null; count: number } }): string {
  const list = a.audience.list ?? null;
  return `${a.audience.count} address${a.audience.count === 1 ? '' : 'es'}${list !== null ? ` (list ${list})` : ''}`;
}

function internalSourceBlock(page: AnnouncementsContext, noteDraft?: string): SafeHtml {
  const record = page.internalSource;
  const path = incidentPath(page.incident.codename, '/internal-source');
  return html`<section id="internal-source" aria-labelledby="internal-source-title" class="card">
  <h2 id="internal-source-title">Internal source</h2>
  ${record
    ? html`<p>${badge('ruled out', 'good')} Recorded by ${record.by} at ${time(record.at)}: ${record.note}</p>`
    : html`<p>${badge('not recorded', 'warn')} Nothing about this incident leaves the response team until the commander records that forensic analysis ruled out an internal source.</p>`}
  ${!page.mayRecordInternalSource
    ? html`<p class="hint">Only the incident's commander records this.</p>`
    : record
      ? html`<form method="post" action="${path}" accept-charset="utf-8">
    <input type="hidden" name="ruledOut" value="false">
    <p class="hint">Withdrawing the record cancels every announcement copy still queued: use it when the attack may be internal after all.</p>
    <p><button type="submit" class="danger">Withdraw the record</button></p>
  </form>`
      : html`<form method="post" action="${path}" accept-charset="utf-8">
    <input type="hidden" name="ruledOut" value="true">
    <p>
      <label for="internal-source-note">How forensics ruled it out</label>
      <textarea id="internal-source-note" name="note" rows="3" required maxlength="2000" aria-describedby="internal-source-hint">
${noteDraft ?? ''}</textarea>
    </p>
    <p id="internal-source-hint" class="hint">E.g. the report that shows it (<q>Report FR-7: external IP, no insider</q>). Only the roster and admins see the note; the audit log keeps its length and hash.</p>
    <p><button type="submit">Record: internal source ruled out</button></p>
  </form>`}
</section>`;
}

/** The draft / edit fields; `prefix` keeps the ids of the two forms apart. */
function contentFields(prefix: string, values: AnnouncementDraftValues, audiences: readonly AudienceView[], editing: boolean): SafeHtml {
  const kind = values.kind ?? 'external';
  return html`<fieldset>
      <legend>Kind</legend>
      <label class="check" for="${prefix}-kind-external"><input type="radio" id="${prefix}-kind-external" name="kind" value="external"${kind === 'external' ? html` checked` : ''}> External: customers, partners, regulators, the press (addresses outside the company only; needs the commander's and legal's or communications' approval)</label>
      <label class="check" for="${prefix}-kind-internal"><input type="radio" id="${prefix}-kind-internal" name="kind" value="internal"${kind === 'internal' ? html` checked` : ''}> Internal: employees and stakeholders (addresses inside the company only)</label>
    </fieldset>
    <p>
      <label for="${prefix}-title">Title</label>
      <input id="${prefix}-title" name="title" type="text" required maxlength="200" autocomplete="off" value="${values.title ?? ''}" aria-describedby="${prefix}-title-hint">
    </p>
    <p id="${prefix}-title-hint" class="hint">One line with its date, e.g. <q>Security notice, 2026-11-28</q>, so it is never taken for news of a new breach. It becomes the Subject.</p>
    <p>
      <label for="${prefix}-text">Text</label>
      <textarea id="${prefix}-text" name="text" rows="10" required>
${values.text ?? ''}</textarea>
    </p>
    <p>
      <label for="${prefix}-addresses">Audience addresses</label>
      <textarea id="${prefix}-addresses" name="addresses" rows="3" spellcheck="false" aria-describedby="${prefix}-addresses-hint">
${values.addresses ?? ''}</textarea>
    </p>
    <p id="${prefix}-addresses-hint" class="hint">One per line (or separated by commas).${editing ? ' Leave as it is to keep the audience.' : ''}</p>
    <p>
      <label for="${prefix}-list">Audience list</label>
      <select id="${prefix}-list" name="list" aria-describedby="${prefix}-list-hint">
        <option value=""${(values.list ?? '') === '' ? html` selected` : ''}>none</option>
        ${audiences.map((l) => html`<option value="${l.name}"${values.list === l.name ? html` selected` : ''}>${l.name} (${l.count})</option>`)}
      </select>
    </p>
    <p id="${prefix}-list-hint" class="hint">A list an admin keeps; its addresses are read when you save, and a later change to the list does not change this announcement.</p>`;
}

/** The incident's announcements and the draft form. */
export function announcementsPage(page: AnnouncementsPage): SafeHtml {
  const { incident } = page;
  const open = incident.status === 'open';
  return layout({
    title: incident.codename,
    signedIn: page.signedIn,
    main: html`${crumbs(incident.codename, 'Announcements')}
<h1>Announcements of ${incident.codename}</h1>
${flashBlock(page.flash)}
${page.error ? errorBlock(page.error, incident.codename) : ''}
<p class="hint">The only way anything about this incident reaches people who are not on its roster: written, checked, approved for its exact words, and sent once the internal source is ruled out.</p>
${internalSourceBlock(page, page.noteDraft)}
<section aria-labelledby="announcements-title">
  <h2 id="announcements-title">Announcements</h2>
  ${page.announcements.length === 0
    ? html`<p>None yet.</p>`
    : html`<table>
  <caption>${page.announcements.length} announcement${page.announcements.length === 1 ? '' : 's'}, newest first</caption>
  <thead><tr><th scope="col">Title</th><th scope="col">Kind</th><th scope="col">State</th><th scope="col">Audience</th><th scope="col">Approvals</th><th scope="col">Still blocking</th></tr></thead>
  <tbody>
  ${page.announcements.map((a) => {
    const blocking = blockers(a);
    return html`<tr>
    <td><a href="${announcementPath(incident.codename, a.id)}">${a.title}</a><br><span class="hint">by ${a.author}</span></td>
    <td>${a.kind}</td>
    <td>${badge(a.state, STATE_TONES[a.state])}</td>
    <td>${audienceLine(a)}</td>
    <td>${a.approvals.filter((p) => p.current).map((p) => `${p.approver} (${p.role})`).join(', ') || html`<span class="muted">none</span>`}</td>
    <td>${blocking.length === 0 ? (a.state === 'sent' ? 'sent' : html`${badge('ready', 'good')}`) : html`<ul class="data">${blocking.map((b) => html`<li>${b}</li>`)}</ul>`}</td>
  </tr>`;
  })}
  </tbody>
</table>`}
</section>
${open
  ? html`<section id="draft" aria-labelledby="draft-heading" class="card">
  <h2 id="draft-heading">Write an announcement</h2>
  <form method="post" action="${incidentPath(incident.codename, '/announcements')}" accept-charset="utf-8">
    ${contentFields('draft', page.draft ?? {}, page.audiences, false)}
    <p><button type="submit">Save draft</button></p>
  </form>
</section>`
  : html`<p class="card">This incident is closed: its announcements can no longer change or go out.</p>`}`,
  });
}

function approvalsTable(a: AnnouncementView): SafeHtml {
  if (a.approvals.length === 0) return html`<p>No approvals yet.</p>`;
  return html`<table>
  <caption>Approvals</caption>
  <thead><tr><th scope="col">Approver</th><th scope="col">Role</th><th scope="col">When</th><th scope="col">Counts for this content</th></tr></thead>
  <tbody>${a.approvals.map(
    (p) => html`<tr><td>${p.approver}</td><td>${p.role}</td><td>${time(p.approvedAt)}</td><td>${p.current
      ? badge('current', 'good')
      : html`${badge('void', 'warn')} <span class="hint">${p.voidReason ? `${p.voidReason}${p.voidedBy ? ` by ${p.voidedBy}` : ''}` : 'given for an earlier version'}</span>`}</td></tr>`,
  )}</tbody>
</table>`;
}

function actions(page: AnnouncementPage): SafeHtml {
  const { incident, announcement: a } = page;
  if (a.state === 'sent' || incident.status !== 'open') return html``;
  return html`<section aria-labelledby="actions-title" class="card">
  <h2 id="actions-title">Act on it</h2>
  <form method="post" action="${announcementPath(incident.codename, a.id, '/check')}" class="buttons">
    <button type="submit" class="secondary">Run the checks</button>
    <span class="hint">Date in the title, no stock phrases, nothing naming the incident, the audience inside or outside the company as its kind says.</span>
  </form>
  ${page.approvalRefusal === undefined
    ? html`<form method="post" action="${announcementPath(incident.codename, a.id, '/approve')}" class="buttons">
    <button type="submit">Approve</button>
    <span class="hint">Your approval holds for exactly this content; any edit voids it.</span>
  </form>`
    : html`<p class="hint">You cannot approve it: ${page.approvalRefusal.message}</p>`}
  <form method="post" action="${announcementPath(incident.codename, a.id, '/send')}" class="buttons">
    <input type="hidden" name="idempotencyKey" value="${page.idempotencyKey}">
    <button type="submit">Send to ${audienceLine(a)}</button>
    <span class="hint">The author or a commander sends, once nothing blocks it.</span>
  </form>
</section>
<details class="card"${page.editDraft !== undefined ? html` open` : ''}>
  <summary>Edit it</summary>
  <p class="hint">The author or a commander edits. Saving a change voids every approval: it must be checked and approved again.</p>
  <form method="post" action="${announcementPath(incident.codename, a.id)}" accept-charset="utf-8">
    ${contentFields('edit', page.editDraft ?? { kind: a.kind, title: a.title, text: a.text, addresses: a.audience.list === null ? a.audience.addresses.join('\n') : '', list: a.audience.list ?? '' }, page.audiences, true)}
    <p><button type="submit" class="secondary">Save changes</button></p>
  </form>
</details>`;
}

/** One announcement: its content, approvals, the gates, and the actions. The page title stays the codename. */
export function announcementPage(page: AnnouncementPage): SafeHtml {
  const { incident, announcement: a } = page;
  const blocking = blockers(a);
  return layout({
    title: incident.codename,
    signedIn: page.signedIn,
    main: html`${crumbs(incident.codename, html`<a href="${incidentPath(incident.codename, '/announcements')}">Announcements</a> › one announcement`)}
<h1>${a.title}</h1>
${flashBlock(page.flash)}
${page.error ? errorBlock(page.error, incident.codename) : ''}
<dl class="facts">
  <dt>State</dt><dd>${badge(a.state, STATE_TONES[a.state])}${a.checked ? ' · checks passed for this content' : ' · not checked for this content'}</dd>
  <dt>Kind</dt><dd>${a.kind}</dd>
  <dt>Author</dt><dd>${a.author}, ${time(a.createdAt)}${a.updatedAt !== a.createdAt ? html` (updated ${time(a.updatedAt)})` : ''}</dd>
  <dt>Audience</dt><dd>${audienceLine(a)} <details><summary>Show the addresses</summary><p>${a.audience.addresses.join(', ')}</p></details></dd>
  <dt>Content hash</dt><dd><code>${a.contentHash.slice(0, 16)}…</code> (approvals bind it)</dd>
  ${a.sent ? html`<dt>Sent</dt><dd>${time(a.sent.at)} by ${a.sent.by}${a.sent.messageId ? html`, Message-ID <code>${a.sent.messageId}</code>` : ''}</dd>` : ''}
</dl>
<h2>Text</h2>
<div class="statement">${a.text}</div>
<h2>Release</h2>
${a.state === 'sent'
  ? html`<p>${badge('sent', 'good')} It went out; it stays as it was sent. To correct it, write a new, dated announcement.</p>`
  : blocking.length === 0
    ? html`<p>${badge('ready', 'good')} Nothing blocks it: it can be sent.</p>`
    : html`<p>Still blocking:</p><ul class="blocking">${blocking.map((b) => html`<li>${b}</li>`)}</ul>`}
<details><summary>Every gate's outcome now</summary><ul class="data">${a.release.rules.map((r) => html`<li><span class="${r.result === 'fail' ? 'rule-fail' : ''}">${r.rule} ${r.result}</span> — ${r.reason}</li>`)}</ul></details>
${approvalsTable(a)}
${actions(page)}
${internalSourceBlock(page)}`,
  });
}
