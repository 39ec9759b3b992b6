/** Pieces every console screen uses: times, badges, refusals and one-shot results. */
import type { RelayError } from '../../errors.js';
import type { Flash } from '../flash.js';
import { html, type SafeHtml } from '../html.js';

/** An ISO time as people read it in a table (UTC, to the second), machine-readable in <time>. */
export function time(iso: string | null | undefined): SafeHtml {
  if (!iso) return html`<span class="muted">—</span>`;
  const shown = iso.replace('T', ' ').replace(/\.\d+Z$/, 'Z');
  return html`<time datetime="${iso}">${shown}</time>`;
}

/** A short coloured label whose text says it all (colour is never the only cue). */
export function badge(text: string, tone: 'good' | 'bad' | 'warn' | 'neutral'): SafeHtml {
  return html`<span class="badge ${tone}">${text}</span>`;
}

/** The path of an incident's page, with the codename as one URL component. */
export function incidentPath(codename: string, rest = ''): string {
  return `/console/incidents/${encodeURIComponent(codename)}${rest}`;
}

/** The path of a roster entry's page. */
export function memberPath(codename: string, email: string, rest = ''): string {
  return `${incidentPath(codename)}/roster/${encodeURIComponent(email)}${rest}`;
}

/** What the console adds to a refusal's own message: where in the console to fix it. */
function consoleHints(error: RelayError, codename: string | undefined): SafeHtml[] {
  const recipients = Array.isArray(error.details?.['recipients']) ? (error.details['recipients'] as unknown[]).filter((r): r is string => typeof r === 'string').slice(0, 20) : [];
  const hints: SafeHtml[] = [];
  if (codename !== undefined && (error.code === 'missing_public_key' || error.code === 'unusable_public_key')) {
    for (const r of recipients) hints.push(html`<li><a href="${memberPath(codename, r)}">Add a usable key for ${r}</a> (upload their public key file).</li>`);
  }
  if (codename !== undefined && error.code === 'recipient_not_on_roster') {
    hints.push(html`<li><a href="${incidentPath(codename, '#add-member')}">Add them to the roster</a> first, or untick them.</li>`);
  }
  if (error.code === 'unauthenticated') hints.push(html`<li><a href="/console/sign-in">Sign in</a> again.</li>`);
  if (error.code === 'not_found') hints.push(html`<li><a href="/console/incidents">Back to your incidents</a>.</li>`);
  if (error.retryAfter !== undefined) hints.push(html`<li>Try again in ${Math.max(1, Math.ceil(error.retryAfter))} s.</li>`);
  return hints;
}

function detailValue(value: unknown): string {
  if (typeof value === 'string') return value;
  const text = JSON.stringify(value) ?? String(value);
  return text.length > 500 ? `${text.slice(0, 500)}…` : text;
}

/**
 * A refusal as the API gives it — code, rule, message (which says what to
 * do) and details — plus links to where the console fixes it. role=alert:
 * a screen reader says it at once.
 */
export function errorBlock(error: RelayError, codename?: string): SafeHtml {
  const details = Object.entries(error.details ?? {}).slice(0, 20);
  const hints = consoleHints(error, codename);
  return html`<section class="refusal" role="alert" aria-labelledby="refusal-title">
  <h2 id="refusal-title">Refused: <code>${error.code}</code>${error.rule ? html` (rule <code>${error.rule}</code>)` : ''}</h2>
  <p>${error.message}</p>
  ${details.length > 0
    ? html`<dl class="details">${details.map(([k, v]) => html`<dt>${k}</dt><dd><code>${detailValue(v)}</code></dd>`)}</dl>`
    : ''}
  ${hints.length > 0 ? html`<ul class="hints">${hints}</ul>` : ''}
</section>`;
}

const NUDGE_REASONS: Readonly<Record<string, string>> = {
  no_phone: 'no phone number on the roster',
  recently_nudged: 'nudged within the last interval',
  removed: 'no longer on the roster',
};

// The end of a clipped list: " and 12 more".
function andMore(more: number): string {
  return more > 0 ? ` and ${more} more` : '';
}

/** The one-shot result of the last POST, announced politely (role=status); `codename` links a queued email to the emails screen. */
export function flashBlock(flash: Flash | undefined, codename?: string): SafeHtml {
  if (!flash) return html``;
  switch (flash.kind) {
    case 'notice':
      return html`<section class="flash" role="status"><p>${flash.text}</p></section>`;
    case 'email':
      return html`<section class="flash" role="status" aria-labelledby="flash-title">
  <h2 id="flash-title">Email queued${flash.encrypted ? ', encrypted' : ', not encrypted (all recipients are inside the company)'}</h2>
  <p>To ${flash.recipients.join(', ')}${andMore(flash.more)}. Message-ID <code>${flash.messageId}</code>, id <code>${flash.id}</code>.</p>
  ${codename !== undefined ? html`<p><a href="${incidentPath(codename, '/emails')}?messageId=${flash.messageId}">Follow its delivery</a></p>` : ''}
</section>`;
    case 'nudge':
      return html`<section class="flash" role="status" aria-labelledby="flash-title">
  <h2 id="flash-title">SMS nudge: ${flash.queued} queued, ${flash.skipped} skipped</h2>
  <table>
    <caption>Who gets “Please join Slack ASAP.”</caption>
    <thead><tr><th scope="col">Member</th><th scope="col">Result</th><th scope="col">Why</th></tr></thead>
    <tbody>${flash.results.map(
      (r) => html`<tr><td>${r.email}</td><td>${r.status === 'queued' ? badge('queued', 'good') : badge(r.status, 'warn')}</td><td>${r.reason ? (NUDGE_REASONS[r.reason] ?? r.reason) : ''}</td></tr>`,
    )}</tbody>
  </table>
  ${flash.more > 0 ? html`<p>…and ${flash.more} more members not listed here.</p>` : ''}
</section>`;
    case 'slack':
      return html`<section class="flash" role="status" aria-labelledby="flash-title">
  <h2 id="flash-title">Slack room ${flash.name ?? ''} reconciled</h2>
  <p>${flash.invited} invited, ${flash.kicked} removed${flash.topicRestored ? ', topic restored' : ''}.${flash.notFound.length > 0 ? ` Not found in Slack: ${flash.notFound.join(', ')}${andMore(flash.more)}.` : ''}</p>
</section>`;
  }
}
