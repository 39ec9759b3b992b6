/**
 * `send --dry-run`: the relay's policy preview (POST …/emails?dryRun=true)
 * rendered as a verdict a person can act on: accepted or refused, encrypted
 * or not and why, and for each problem the command that fixes it. Pure.
 */
import type { ApiErrorBody } from './client.js';
import { cell, indent, renderTable, sanitize } from './output.js';

/** The dry-run answer of the API contract (issue 12 §1). */
export interface DryRunAnswer {
  outcome: 'accept' | 'refuse';
  encrypted: boolean;
  encryptReason: 'external-recipient' | 'external-chain' | 'always' | null;
  rules: { rule: string; result: string; reason: string }[];
  recipients: { to: string[]; cc: string[]; bcc: string[] };
  offRoster: string[];
  missingKeys: string[];
  unusableKeys: { email: string; reason: string }[];
  error?: ApiErrorBody;
  /** Not in the contract yet: which recipients are outside the company, when the relay says. */
  externalRecipients?: string[];
}

/** Whether a parsed body is a dry-run answer (and not, say, the 202 of a relay that ignored dryRun). */
export function isDryRunAnswer(body: unknown): body is DryRunAnswer {
  const b = body as Partial<DryRunAnswer> | null;
  return typeof b === 'object' && b !== null && (b.outcome === 'accept' || b.outcome === 'refuse') && Array.isArray(b.rules);
}

function list(value: unknown): string[] {
  return Array.isArray(value) ? value.map((v) => sanitize(v)) : [];
}

/** Why the message would be encrypted, in words. */
export function encryptionWhy(answer: Pick<DryRunAnswer, 'encryptReason' | 'externalRecipients'>): string {
  switch (answer.encryptReason) {
    case 'external-recipient': {
      const outside = list(answer.externalRecipients);
      return outside.length > 0 ? `${outside.join(', ')} ${outside.length === 1 ? 'is' : 'are'} outside the company` : 'a recipient is outside the company';
    }
    case 'external-chain':
      return 'the thread it replies to included someone outside the company';
    case 'always':
      return 'this relay encrypts all mail (RELAY_ENCRYPT=always)';
    default:
      return 'the relay requires it';
  }
}

/** The verdict as lines of text (ends with a newline). */
export function renderVerdict(answer: DryRunAnswer, codename: string): string {
  const name = sanitize(codename);
  const lines: string[] = [];
  const count = list(answer.recipients?.to).length + list(answer.recipients?.cc).length + list(answer.recipients?.bcc).length;
  if (answer.outcome === 'accept') {
    lines.push(`Would be ACCEPTED: ${answer.encrypted ? 'ENCRYPTED' : 'plain (not encrypted)'}, to ${count} recipient(s). Nothing was sent.`);
  } else {
    const code = answer.error ? ` (${sanitize(answer.error.code)})` : '';
    lines.push(`Would be REFUSED${code}: ${sanitize(answer.error?.message ?? 'see the rules below')}`);
    lines.push('Nothing was sent.');
  }
  lines.push(answer.encrypted ? `  would be ENCRYPTED because ${encryptionWhy(answer)}` : '  would be sent plain: every recipient is inside the company and the thread never left it');
  for (const email of list(answer.offRoster)) {
    lines.push(`  ${email} is not on the roster of ${name}: a commander or deputy adds them with incident-relay roster add ${name} ${email} --role ROLE, or leave them out`);
  }
  for (const email of list(answer.missingKeys)) {
    lines.push(`  ${email} has no usable key: add one with incident-relay roster update ${name} ${email} --key FILE (or --key-from-gpg ${email})`);
  }
  for (const entry of Array.isArray(answer.unusableKeys) ? answer.unusableKeys : []) {
    const email = sanitize(entry.email);
    lines.push(`  ${email}'s key cannot be used (${sanitize(entry.reason)}): ask for a current key, then incident-relay roster update ${name} ${email} --key FILE`);
  }
  lines.push(`  to: ${cell(answer.recipients?.to)}`, `  cc: ${cell(answer.recipients?.cc)}`, `  bcc: ${cell(answer.recipients?.bcc)}`);
  const rules = Array.isArray(answer.rules) ? answer.rules : [];
  return lines.join('\n') + '\nrules:\n' + indent(renderTable(['RULE', 'RESULT', 'REASON'], rules.map((r) => [r.rule, r.result, r.reason])));
}
