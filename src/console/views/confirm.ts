/**
 * Screens that ask before acting: closing and reopening an incident,
 * removing a member; and the page that edits one roster entry and its key. Each confirmation is a page of
 * its own with a POST form, so it works without JavaScript and cannot be
 * triggered by a link.
 */
import type { RelayError } from '../../errors.js';
import type { Incident, RosterMember } from '../../store/incidents.js';
import { html, type SafeHtml } from '../html.js';
import type { Flash } from '../flash.js';
import { errorBlock, flashBlock, incidentPath, memberPath } from './common.js';
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

/** "Reopen sapphire-unicorn?" — the confirmation step before reopenIncident. */
export function reopenPage(signedIn: SignedIn, incident: Incident, error?: RelayError): SafeHtml {
  return layout({
    title: incident.codename,
    signedIn,
    main: html`${crumbs(incident.codename, 'Reopen')}
<h1>Reopen ${incident.codename}?</h1>
${error ? errorBlock(error, incident.codename) : ''}
<div class="card">
  <p>The incident accepts email, nudges and announcements again, with the roster as it is. If it had a Slack room, a new private room named by the codename takes the archived one's place (Slack does not let the relay unarchive it); the archived room keeps its history.</p>
  <form method="post" action="${incidentPath(incident.codename, '/reopen')}" class="buttons">
    <button type="submit">Reopen ${incident.codename}</button>
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
export function memberPage(
  signedIn: SignedIn,
  incident: Incident,
  member: RosterMember,
  key: KeyInfo,
  options: { draft?: MemberDraft | undefined; error?: RelayError | undefined; flash?: Flash | undefined } = {},
): SafeHtml {
  const draft: MemberDraft = options.draft ?? { name: member.name, role: member.role, phone: member.phone ?? '', slackUserId: member.slackUserId ?? '' };
  return layout({
    title: incident.codename,
    signedIn,
    main: html`${crumbs(incident.codename, 'Edit a member')}
<h1>Edit ${member.email}</h1>
${flashBlock(options.flash)}
${options.error ? errorBlock(options.error, incident.codename) : ''}
<p>Key on file for this incident: ${keyCell(key)}</p>
<form method="post" action="${memberPath(incident.codename, member.email)}" enctype="multipart/form-data" accept-charset="utf-8" class="card">
  ${memberFields(draft, { editing: true })}
  <p class="buttons">
    <button type="submit">Save</button>
    <a href="${incidentPath(incident.codename, '#roster')}" class="button secondary">Cancel</a>
  </p>
</form>
${keyActions(incident, member, key)}`,
  });
}

/**
 * What a roster manager can do about the key itself, as the API offers it:
 * withdraw a key given with this roster entry (DELETE …/roster/:email/key),
 * or revoke the key on file with its revocation certificate (the roster
 * PATCH with publicKey, which revokes every stored copy).
 */
function keyActions(incident: Incident, member: RosterMember, key: KeyInfo): SafeHtml {
  const withdraw =
    key.scope === 'incident'
      ? html`<form method="post" action="${memberPath(incident.codename, member.email, '/key/withdraw')}" class="card">
  <h3>Withdraw the key given for this incident</h3>
  <p>Mail to ${member.email} then uses their relay-wide key, if they have one; otherwise mail that must be encrypted to them is refused until a key is given again. The key is not revoked: use this for a key given by mistake.</p>
  <p><button type="submit" class="secondary">Withdraw key <span class="visually-hidden">of ${member.email}</span></button></p>
</form>`
      : '';
  const revoke =
    key.fingerprint !== undefined && key.status !== 'revoked'
      ? html`<form method="post" action="${memberPath(incident.codename, member.email, '/key/revoke')}" enctype="multipart/form-data" class="card">
  <h3>Revoke the key</h3>
  <p>When the private key is lost or stolen: the revocation certificate (gpg wrote it as <code>~/.gnupg/openpgp-revocs.d/&lt;FINGERPRINT&gt;.rev</code> when the key was made) revokes every stored copy of this key at once, here and in every other incident, and mail to ${member.email} is refused until a usable key is given.</p>
  <p>
    <label for="revocation">Revocation certificate file</label>
    <input id="revocation" name="revocation" type="file" required accept=".rev,.asc,.txt,application/pgp-keys,application/pgp-signature">
  </p>
  <p><button type="submit" class="danger">Revoke key <span class="visually-hidden">of ${member.email}</span></button></p>
</form>`
      : '';
  if (withdraw === '' && revoke === '') return html``;
  return html`<section aria-labelledby="key-actions-title">
  <h2 id="key-actions-title">Their key</h2>
  ${withdraw}
  ${revoke}
</section>`;
}
