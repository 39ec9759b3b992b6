/**
 * Screens that ask before acting: closing an incident, removing a member;
 * and the page that edits one roster entry. Each confirmation is a page of
 * its own with a POST form, so it works without JavaScript and cannot be
 * triggered by a link.
 */
import type { RelayError } from '../../errors.js';
import type { Incident, RosterMember } from '../../store/incidents.js';
import { html, type SafeHtml } from '../html.js';
import { errorBlock, incidentPath, memberPath } from './common.js';
import { keyCell, memberFields, type KeyInfo, type MemberDraft } from './incident.js';
import { layout, type SignedIn } from './layout.js';

function crumbs(codename: string, here: string): SafeHtml {
  return html`<p class="crumbs"><a href="/console/incidents">Incidents</a> › <a href="${incidentPath(codename)}">${codename}</a> › ${here}</p>`;
}

/** "Close sapphire-unicorn?" — the confirmation step before closeIncident. */
export function closePage(signedIn: SignedIn, incident: Incident, error?: RelayError): SafeHtml {
  return layout({
    title: incident.codename,
    signedIn,
    main: html`${crumbs(incident.codename, 'Close')}
<h1>Close ${incident.codename}?</h1>
${error ? errorBlock(error, incident.codename) : ''}
<div class="card">
  <p>A closed incident accepts no new email or nudges, and its Slack room (if it has one) is archived. Messages already queued are still delivered. The roster and the audit log are kept.</p>
  <form method="post" action="${incidentPath(incident.codename, '/close')}" class="buttons">
    <button type="submit" class="danger">Close ${incident.codename}</button>
    <a href="${incidentPath(incident.codename)}" class="button secondary">Cancel</a>
  </form>
</div>`,
  });
}

/** "Remove counsel@… from the roster?" — the confirmation step before removeMember. */
export function removePage(signedIn: SignedIn, incident: Incident, member: RosterMember, error?: RelayError): SafeHtml {
  return layout({
    title: incident.codename,
    signedIn,
    main: html`${crumbs(incident.codename, 'Remove a member')}
<h1>Remove ${member.email}?</h1>
${error ? errorBlock(error, incident.codename) : ''}
<div class="card">
  <p>${member.name} (${member.role}) will receive nothing more from this incident: any email or nudge still queued for them is cancelled, and they are removed from the Slack room. The history stays in the audit log.</p>
  <form method="post" action="${memberPath(incident.codename, member.email, '/remove')}" class="buttons">
    <button type="submit" class="danger">Remove ${member.email}</button>
    <a href="${incidentPath(incident.codename, '#roster')}" class="button secondary">Cancel</a>
  </form>
</div>`,
  });
}

/** The page that edits one roster entry (PUT semantics: the form shows every field). */
export function memberPage(signedIn: SignedIn, incident: Incident, member: RosterMember, key: KeyInfo, options: { draft?: MemberDraft | undefined; error?: RelayError | undefined } = {}): SafeHtml {
  const draft: MemberDraft = options.draft ?? { name: member.name, role: member.role, phone: member.phone ?? '', slackUserId: member.slackUserId ?? '' };
  return layout({
    title: incident.codename,
    signedIn,
    main: html`${crumbs(incident.codename, 'Edit a member')}
<h1>Edit ${member.email}</h1>
${options.error ? errorBlock(options.error, incident.codename) : ''}
<p>Key on file for this incident: ${keyCell(key)}</p>
<form method="post" action="${memberPath(incident.codename, member.email)}" enctype="multipart/form-data" accept-charset="utf-8" class="card">
  ${memberFields(draft, { editing: true })}
  <p class="buttons">
    <button type="submit">Save</button>
    <a href="${incidentPath(incident.codename, '#roster')}" class="button secondary">Cancel</a>
  </p>
</form>`,
  });
}
