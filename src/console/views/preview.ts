/**
 * The policy preview of a draft, in words: what previewEmail (the decision a
 * send would make) says will happen, and what to do about each problem.
 * The same fragment fills the compose form's live region, whether the page
 * was rendered after "Check before sending" (no JavaScript) or the script
 * fetched it as the recipients changed.
 */
import type { RelayError } from '../../errors.js';
import type { EmailPreview } from '../../services/emails.js';
import { html, type SafeHtml } from '../html.js';
import { badge, incidentPath, memberPath } from './common.js';

/** What the region shows: a preview, a refusal of the draft itself (no recipient, too large, rate-limited), or nothing yet. */
export interface Verdict {
  preview?: EmailPreview | undefined;
  error?: RelayError | undefined;
}

/** Whose problems the verdict may link to the roster forms for (commander, deputy, admin); others are told to ask. */
export interface VerdictContext {
  codename: string;
  manageRoster: boolean;
}

const LISTED = 10;

function addresses(list: readonly string[]): string {
  const shown = list.slice(0, LISTED).join(', ');
  return list.length > LISTED ? `${shown} and ${list.length - LISTED} more` : shown;
}

function count(n: number, one: string, many: string): string {
  return `${n} ${n === 1 ? one : many}`;
}

/** "because counsel@… is outside the company", from the preview's reason. */
function encryptionReason(p: EmailPreview): string {
  switch (p.encryptReason) {
    case 'external-recipient':
      return p.externalRecipients.length > 0
        ? `because ${addresses(p.externalRecipients)} ${p.externalRecipients.length === 1 ? 'is' : 'are'} outside the company`
        : 'because a recipient is outside the company';
    case 'external-chain':
      return 'because this thread has included someone outside the company';
    case 'always':
      return 'because this relay encrypts all mail (RELAY_ENCRYPT=always)';
    default:
      return '';
  }
}

function fix(ctx: VerdictContext, email: string, text: string): SafeHtml {
  return ctx.manageRoster ? html`<a href="${memberPath(ctx.codename, email)}">${text}<span class="visually-hidden"> for ${email}</span></a>` : html`ask the commander to ${text}`;
}

/** One line per problem, each with what fixes it. */
function problems(p: EmailPreview, ctx: VerdictContext): SafeHtml[] {
  const lines: SafeHtml[] = [];
  for (const email of p.offRoster.slice(0, LISTED)) {
    lines.push(html`<li>${email} is not on the roster — ${ctx.manageRoster ? html`<a href="${incidentPath(ctx.codename, '#add-member')}">add them<span class="visually-hidden"> (${email})</span></a>` : 'ask the commander to add them'} or untick them</li>`);
  }
  for (const email of p.missingKeys.slice(0, LISTED)) lines.push(html`<li>${email} has no usable key — ${fix(ctx, email, 'add one')}</li>`);
  for (const u of p.unusableKeys.slice(0, LISTED)) lines.push(html`<li>${u.email}'s key is unusable (${u.reason}) — ${fix(ctx, u.email, 'add a current one')}</li>`);
  const more = Math.max(0, p.offRoster.length - LISTED) + Math.max(0, p.missingKeys.length - LISTED) + Math.max(0, p.unusableKeys.length - LISTED);
  if (more > 0) lines.push(html`<li>and ${more} more</li>`);
  return lines;
}

/** The inside of the compose form's live region. */
export function verdictBlock(verdict: Verdict, ctx: VerdictContext): SafeHtml {
  const { preview: p, error } = verdict;
  if (error) {
    return html`<p class="verdict-line">${badge('cannot check', 'warn')} <code>${error.code}</code>: ${error.message}</p>`;
  }
  if (!p) {
    return html`<p class="hint">Tick the recipients to see here, before you send, whether the message will be encrypted, go plain, or be refused (<q>Check before sending</q> asks at once).</p>`;
  }
  const everyone = new Set([...p.recipients.to, ...p.recipients.cc, ...p.recipients.bcc]);
  const how = p.encrypted
    ? html`<strong>Will be ENCRYPTED</strong> ${encryptionReason(p)}`
    : html`<strong>Will go plain</strong> to ${count(everyone.size, 'internal recipient', 'internal recipients')}`;
  const issues = problems(p, ctx);
  return html`<p class="verdict-line">${p.outcome === 'accept' ? badge(p.encrypted ? 'encrypted' : 'plain', p.encrypted ? 'good' : 'neutral') : badge('refused', 'bad')} ${how}${issues.length > 0 ? ';' : '.'}</p>
${issues.length > 0 ? html`<ul class="problems">${issues}</ul>` : ''}
${p.outcome === 'refuse' && p.error
  ? html`<p class="verdict-line"><strong>Will be refused:</strong> <code>${p.error.code}</code>${p.error.rule ? html` (rule <code>${p.error.rule}</code>)` : ''} — ${p.error.message}</p>`
  : html`<p class="verdict-line">Ready to send to ${count(everyone.size, 'recipient', 'recipients')}.</p>`}
<details><summary>Every rule's outcome</summary><ul class="data">${p.rules.map((r) => html`<li><span class="${r.result === 'fail' ? 'rule-fail' : ''}">${r.rule} ${r.result}</span>${r.reason ? ` — ${r.reason}` : ''}</li>`)}</ul></details>`;
}
