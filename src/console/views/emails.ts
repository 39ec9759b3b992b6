/**
 * The incident's emails, newest first, as GET …/emails shows them to this
 * caller (the sender their own, the commander and admins all, with Bcc
 * recipients exactly as the API shows them): status, attempts, last error,
 * and each copy's delivery, `cancelled` included; paged; found by
 * Message-ID.
 */
import type { RelayError } from '../../errors.js';
import type { EmailView } from '../../services/emails.js';
import type { Incident } from '../../store/incidents.js';
import { html, type SafeHtml } from '../html.js';
import { badge, errorBlock, incidentPath, time } from './common.js';
import { layout, type SignedIn } from './layout.js';

/** What the emails screen shows. */
export interface EmailsPage {
  signedIn: SignedIn;
  incident: Incident;
  emails: EmailView[];
  /** The cursor of the next (older) page, when there is one. */
  next?: string | undefined;
  /** The cursor this page was read from (undefined: the newest). */
  cursor?: string | undefined;
  /** The Message-ID looked up, when the page shows a lookup. */
  messageId?: string | undefined;
  error?: RelayError | undefined;
}

const STATUS_TONES: Readonly<Record<EmailView['status'], 'good' | 'bad' | 'warn' | 'neutral'>> = { sent: 'good', failed: 'bad', cancelled: 'warn', queued: 'neutral' };

const STATUS_WORDS: Readonly<Record<EmailView['status'], string>> = {
  queued: 'waiting for delivery (retried with backoff)',
  sent: 'accepted by the upstream mail server',
  failed: 'refused by the upstream, or not delivered in time',
  cancelled: 'not sent: the recipient left the roster first',
};

function attempts(n: number): string {
  return `${n} attempt${n === 1 ? '' : 's'}`;
}

function deliveries(email: EmailView): SafeHtml {
  if (email.deliveries.length === 0) return html`<span class="muted">—</span>`;
  return html`<ul class="data">${email.deliveries.map(
    (d) => html`<li>${d.recipients.join(', ')}: ${badge(d.status, STATUS_TONES[d.status])} ${attempts(d.attempts)}${d.lastError ? html`<br><span class="hint">${d.lastError}</span>` : ''}</li>`,
  )}</ul>`;
}

/** The current screen's URL with other query values, for the pager, refresh and lookup links. */
function emailsPath(codename: string, query: { cursor?: string | undefined; messageId?: string | undefined }): string {
  const params = new URLSearchParams();
  if (query.messageId !== undefined) params.set('messageId', query.messageId);
  if (query.cursor !== undefined) params.set('cursor', query.cursor);
  const search = params.toString();
  return incidentPath(codename, `/emails${search === '' ? '' : `?${search}`}`);
}

/** The emails screen. */
export function emailsPage(page: EmailsPage): SafeHtml {
  const { incident } = page;
  const here = emailsPath(incident.codename, { cursor: page.cursor, messageId: page.messageId });
  return layout({
    title: incident.codename,
    signedIn: page.signedIn,
    main: html`<p class="crumbs"><a href="/console/incidents">Incidents</a> › <a href="${incidentPath(incident.codename)}">${incident.codename}</a> › Emails</p>
<h1>Emails of ${incident.codename}</h1>
${page.error ? errorBlock(page.error, incident.codename) : ''}
<p class="hint">The sender sees the emails they sent; the commander and admins see every email of the incident. <q>sent</q> means the upstream mail server accepted the copy.</p>
<form method="get" action="${incidentPath(incident.codename, '/emails')}" class="filters">
  <label for="message-id">Message-ID</label>
  <input id="message-id" name="messageId" type="text" maxlength="520" autocomplete="off" spellcheck="false" value="${page.messageId ?? ''}" aria-describedby="message-id-hint">
  <button type="submit" class="secondary">Find</button>
  ${page.messageId !== undefined ? html`<a href="${incidentPath(incident.codename, '/emails')}">Show all</a>` : ''}
</form>
<p id="message-id-hint" class="hint">The relay's Message-ID or your mail client's own, with the angle brackets: <code>&lt;…@…&gt;</code>.</p>
<p class="buttons"><a href="${here}" class="button secondary">Refresh</a>${page.cursor !== undefined ? html` <a href="${incidentPath(incident.codename, '/emails')}">Newest emails</a>` : ''}</p>
${page.emails.length === 0
  ? html`<p>${page.messageId !== undefined ? 'No email with that Message-ID that you may see.' : page.cursor !== undefined ? 'No older emails.' : 'No emails that you may see yet.'}</p>`
  : html`<table class="emails">
  <caption>${page.messageId !== undefined ? 'The email with that Message-ID' : `${page.emails.length} email${page.emails.length === 1 ? '' : 's'}, newest first`}</caption>
  <thead><tr><th scope="col">Accepted</th><th scope="col">From</th><th scope="col">Recipients</th><th scope="col">Encrypted</th><th scope="col">Status</th><th scope="col">Copies</th></tr></thead>
  <tbody>
  ${page.emails.map(
    (e) => html`<tr>
    <td>${time(e.createdAt)}<br><code class="hint">${e.messageId}</code></td>
    <td>${e.sender}</td>
    <td>${e.recipients.join(', ')}</td>
    <td>${e.encrypted ? 'yes' : 'no'}</td>
    <td>${badge(e.status, STATUS_TONES[e.status])}<br><span class="hint">${STATUS_WORDS[e.status]}; ${attempts(e.attempts)}</span>${e.lastError ? html`<br><span class="hint">Last error: ${e.lastError}</span>` : ''}</td>
    <td>${deliveries(e)}</td>
  </tr>`,
  )}
  </tbody>
</table>`}
${page.next !== undefined ? html`<p><a href="${emailsPath(incident.codename, { cursor: page.next, messageId: page.messageId })}">Older emails</a></p>` : ''}`,
  });
}
