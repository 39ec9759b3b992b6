/** The incidents screen: the caller's incidents, open or closed, and the declare form. */
import type { RelayError } from '../../errors.js';
import type { Incident } from '../../store/incidents.js';
import type { Flash } from '../flash.js';
import { html, type SafeHtml } from '../html.js';
import { badge, errorBlock, flashBlock, incidentPath, time } from './common.js';
import { layout, type SignedIn } from './layout.js';

/** Which incidents the list shows. */
export type StatusFilter = 'open' | 'closed' | 'all';

/** One row: the incident and its commander. */
export interface IncidentRow {
  incident: Incident;
  commander: string | null;
  /** Whether the caller may close or reopen it (commander or admin). */
  mayClose: boolean;
}

/** What the screen shows. */
export interface IncidentsPage {
  signedIn: SignedIn;
  isAdmin: boolean;
  /** Whether the caller may declare an incident (not with a token held to one incident). */
  mayDeclare: boolean;
  status: StatusFilter;
  rows: IncidentRow[];
  flash?: Flash | undefined;
  error?: RelayError | undefined;
  /** What the declare form held when it was refused. */
  draft?: { codename?: string | undefined; commander?: string | undefined; label?: string | undefined } | undefined;
}

function statusOption(value: StatusFilter, label: string, current: StatusFilter): SafeHtml {
  return html`<option value="${value}"${value === current ? html` selected` : ''}>${label}</option>`;
}

/**
 * The incidents page. Every incident listed is one the caller is on the
 * roster of (or any, for an admin), so its private label is shown: to the
 * same people the API shows it to, in the table, never in the title.
 */
export function incidentsPage(page: IncidentsPage): SafeHtml {
  const rows = page.rows;
  return layout({
    title: 'Incidents',
    signedIn: page.signedIn,
    main: html`<h1>Incidents</h1>
${flashBlock(page.flash)}
${page.error ? errorBlock(page.error) : ''}
<form method="get" action="/console/incidents" class="filters">
  <label for="status">Show</label>
  <select id="status" name="status">
    ${statusOption('open', 'Open incidents', page.status)}
    ${statusOption('closed', 'Closed incidents', page.status)}
    ${statusOption('all', 'All incidents', page.status)}
  </select>
  <button type="submit" class="secondary">Show</button>
</form>
${rows.length === 0
  ? html`<p>No ${page.status === 'all' ? '' : `${page.status} `}incidents ${page.isAdmin ? 'on this relay' : 'whose roster you are on'}.</p>`
  : html`<table>
  <caption>${page.status === 'all' ? 'All incidents' : page.status === 'open' ? 'Open incidents' : 'Closed incidents'} (${rows.length})</caption>
  <thead><tr><th scope="col">Codename</th><th scope="col">Private label</th><th scope="col">Status</th><th scope="col">Commander</th><th scope="col">Declared</th><th scope="col">Closed</th><th scope="col">Actions</th></tr></thead>
  <tbody>
  ${rows.map(
    (r) => html`<tr>
    <td><a href="${incidentPath(r.incident.codename)}">${r.incident.codename}</a></td>
    <td>${r.incident.label ?? html`<span class="muted">—</span>`}</td>
    <td>${r.incident.status === 'open' ? badge('open', 'good') : badge('closed', 'neutral')}</td>
    <td>${r.commander ?? '—'}</td>
    <td>${time(r.incident.createdAt)}</td>
    <td>${time(r.incident.closedAt)}</td>
    <td>${r.mayClose
      ? r.incident.status === 'open'
        ? html`<a href="${incidentPath(r.incident.codename, '/close')}">Close…<span class="visually-hidden"> ${r.incident.codename}</span></a>`
        : html`<a href="${incidentPath(r.incident.codename, '/reopen')}">Reopen…<span class="visually-hidden"> ${r.incident.codename}</span></a>`
      : ''}</td>
  </tr>`,
  )}
  </tbody>
</table>`}
${page.mayDeclare ? declareForm(page) : ''}`,
  });
}

function declareForm(page: IncidentsPage): SafeHtml {
  return html`<section aria-labelledby="declare-title" class="card">
  <h2 id="declare-title">Declare an incident</h2>
  <form method="post" action="/console/incidents" accept-charset="utf-8">
    <p>
      <label for="codename">Codename (optional)</label>
      <input id="codename" name="codename" type="text" maxlength="80" value="${page.draft?.codename ?? ''}" aria-describedby="codename-hint" autocomplete="off" spellcheck="false">
    </p>
    <p id="codename-hint" class="hint">Leave empty to get one, e.g. <code>sapphire-unicorn</code>. A chosen one must come from the relay's word lists, so it says nothing about what happened.</p>
    <p>
      <label for="declare-label">Private label (optional)</label>
      <input id="declare-label" name="label" type="text" maxlength="200" value="${page.draft?.label ?? ''}" aria-describedby="declare-label-hint" autocomplete="off">
    </p>
    <p id="declare-label-hint" class="hint">One line to tell your incidents apart, e.g. what it is about. Only its roster and admins see it; it is never in a page title, a mail, a Slack room or an SMS.</p>
    ${page.isAdmin
      ? html`<p>
      <label for="commander">Commander's address (required for admins)</label>
      <input id="commander" name="commander" type="email" required value="${page.draft?.commander ?? ''}" autocomplete="off">
    </p>`
      : html`<p class="hint">You will be its commander.</p>`}
    <p><button type="submit">Declare incident</button></p>
  </form>
</section>`;
}
