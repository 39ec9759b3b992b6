/**
 * The console's forms as typed inputs for the services. Every field rule is
 * the JSON API's own, imported from src/http/schemas.ts, so a form cannot
 * accept what the API refuses; refusals are the API's too (invalid_request
 * naming each field). What is the console's alone is how a form encodes a
 * value: an empty text box means "not given", a ticked box is a list entry,
 * a textarea of addresses is a list.
 */
import { z } from 'zod';
import { invalid } from '../errors.js';
import {
  AnnouncementDraft,
  AnnouncementEdit,
  IDEMPOTENCY_KEY,
  InternalSourceRecord,
  ListEmails,
  MAX_ATTACHMENTS,
  MAX_PUBLIC_KEY_LENGTH,
  MAX_SMS_RECIPIENTS,
  SendSms,
  attachmentFilename,
  auditQuery,
  codenameField,
  emailDraftFields,
  incidentLabel,
  isContentType,
  memberName,
  rosterRole,
  slackUserId,
} from '../http/schemas.js';
import type { Attachment } from '../mime/compose.js';
import type { AnnouncementInput, AnnouncementView } from '../services/announcements.js';
import type { AuditRequest } from '../services/audit-views.js';
import type { EmailListQuery, EmailSubmission } from '../services/emails.js';
import type { NudgeRequest } from '../services/sms.js';
import type { MemberInput } from '../store/incidents.js';
import { emailAddress, parseInput, phoneNumber } from '../validation.js';
import type { FormData } from './multipart.js';

/** The largest key file the roster forms take, as the API's publicKey field. */
export const MAX_KEY_BYTES = MAX_PUBLIC_KEY_LENGTH;

/** "" → undefined, so an empty box is a field not given. */
const blankAsUndefined = (v: unknown): unknown => (v === '' ? undefined : v);

const DeclareForm = z.strictObject({
  codename: z.preprocess(blankAsUndefined, codenameField.optional()),
  commander: z.preprocess(blankAsUndefined, emailAddress.optional()),
  label: z.preprocess(blankAsUndefined, incidentLabel.optional()),
});

const MemberForm = z.strictObject({
  email: emailAddress,
  name: memberName,
  role: rosterRole,
  phone: z.preprocess(blankAsUndefined, phoneNumber.optional()),
  slackUserId: z.preprocess(blankAsUndefined, slackUserId.optional()),
});

const ComposeForm = z.strictObject({
  ...emailDraftFields,
  subject: z.preprocess(blankAsUndefined, emailDraftFields.subject),
});

/** An Idempotency-Key from a hidden field, as the API's header: 1-200 printable ASCII characters. */
export function idempotencyKeyOf(form: FormData): string | undefined {
  const key = form.one('idempotencyKey');
  if (key === undefined || key === '') return undefined;
  if (!IDEMPOTENCY_KEY.test(key)) throw invalid('The form\'s idempotency key must be 1-200 printable ASCII characters; reload the page.');
  return key;
}

/** The declare form: an optional chosen codename, an optional private label, and for admins the commander. */
export function declareInput(form: FormData): { codename?: string; commander?: string; label?: string } {
  const parsed = parseInput(DeclareForm, { codename: form.one('codename'), commander: form.one('commander'), label: form.one('label') }, 'form');
  return {
    ...(parsed.codename !== undefined ? { codename: parsed.codename.trim() } : {}),
    ...(parsed.commander !== undefined ? { commander: parsed.commander } : {}),
    ...(parsed.label !== undefined ? { label: parsed.label } : {}),
  };
}

/** The label form: the API's label rule; an empty box clears the label (the API's `label: null`). */
export function labelInput(form: FormData): string | null {
  const value = form.one('label') ?? '';
  if (value.trim() === '') return null;
  return parseInput(incidentLabel, value, 'label');
}

/** A key file from a file input: at most one, at most the API's publicKey length, as text. */
function keyFileOf(form: FormData, name: string, hint: string): string | undefined {
  const files = form.files(name);
  if (files.length > 1) throw invalid('Choose one key file.', { field: name });
  const file = files[0];
  if (file && file.data.length > MAX_KEY_BYTES) throw invalid(`The key file is ${file.data.length} bytes; a public key is at most ${MAX_KEY_BYTES}. ${hint}`, { field: name });
  return file?.data.toString('utf8');
}

/**
 * The roster form (add or edit): PUT semantics as the API's, so an empty
 * phone or Slack id removes it. `email` is the path's address when editing.
 */
export function memberInput(form: FormData, email?: string): MemberInput & { publicKey?: string } {
  const parsed = parseInput(
    MemberForm,
    { email: email ?? form.one('email'), name: form.one('name'), role: form.one('role'), phone: form.one('phone'), slackUserId: form.one('slackUserId') },
    'form',
  );
  const publicKey = keyFileOf(form, 'publicKey', `Export only this person's key (gpg --armor --export ${parsed.email}).`);
  return {
    email: parsed.email,
    name: parsed.name,
    role: parsed.role,
    phone: parsed.phone ?? null,
    slackUserId: parsed.slackUserId ?? null,
    ...(publicKey !== undefined ? { publicKey } : {}),
  };
}

/** The revocation form: the certificate (or a revoked copy of the key) as a file, required. */
export function revocationInput(form: FormData): string {
  const text = keyFileOf(form, 'revocation', 'A revocation certificate is a few hundred bytes.');
  if (text === undefined || text.trim() === '') throw invalid('Choose the revocation certificate file (gpg wrote it as ~/.gnupg/openpgp-revocs.d/<FINGERPRINT>.rev when the key was made).', { field: 'revocation' });
  return text;
}

/** The compose form as the pipeline's EmailSubmission: recipients ticked from the roster, subject, text, attached files. */
export function composeInput(form: FormData): EmailSubmission {
  if (form.all('to').length === 0) throw invalid('Tick at least one recipient under To.', { field: 'to' });
  const parsed = parseInput(ComposeForm, { to: form.all('to'), cc: form.all('cc'), bcc: form.all('bcc'), subject: form.one('subject'), text: form.one('text') ?? '' }, 'form');
  const files = form.files('attachments');
  if (files.length > MAX_ATTACHMENTS) throw invalid(`At most ${MAX_ATTACHMENTS} attachments per message.`, { field: 'attachments' });
  const attachments: Attachment[] = files.map((file, i) => {
    const filename = parseInput(attachmentFilename, file.filename ?? '', `attachment ${i + 1}'s file name`);
    const declared = file.contentType ?? '';
    // What the browser says, when it is a well-formed type; otherwise bytes.
    const contentType = isContentType(declared) ? declared : 'application/octet-stream';
    return { filename, contentType, content: file.data };
  });
  // A textarea sends CRLF line ends; the composer normalises them as it does the API's.
  return { to: parsed.to, cc: parsed.cc ?? [], bcc: parsed.bcc ?? [], subject: parsed.subject, text: parsed.text, attachments };
}

/** The nudge form: "everyone" or the members ticked. */
export function nudgeInput(form: FormData): NudgeRequest {
  if (form.one('scope') === 'roster') return { to: 'roster' };
  const to = form.all('to').map((s) => s.toLowerCase());
  if (to.length === 0) throw invalid('Tick at least one member to nudge, or choose "Nudge everyone".', { field: 'to' });
  if (to.length > MAX_SMS_RECIPIENTS) throw invalid(`At most ${MAX_SMS_RECIPIENTS} members per nudge; choose "Nudge everyone" instead.`, { field: 'to' });
  // The rest of the API's rules (each entry's length) with the API's words.
  return { to: parseInput(SendSms, { to }, 'form').to };
}

/** A query string's values, with the empty ones (a filter box left blank) dropped; only single string values. */
function givenValues(query: Record<string, unknown>, names: readonly string[]): Record<string, string> {
  const out: Record<string, string> = {};
  for (const name of names) {
    const value = query[name];
    if (value === undefined || value === '') continue;
    // Repeated or nested values are passed on as they are, for the API's parser to refuse.
    out[name] = value as string;
  }
  for (const name of Object.keys(query)) if (!names.includes(name)) out[name] = query[name] as string;
  return out;
}

/** The emails screen's query (paging, the Message-ID lookup) by the API's GET …/emails rules; `pageSize` when no limit is given. */
export function emailListInput(query: Record<string, unknown>, pageSize: number): EmailListQuery {
  const given = givenValues(query, ['limit', 'cursor', 'messageId']);
  return parseInput(ListEmails, { limit: String(pageSize), ...given }, 'query');
}

/** The audit timeline's filters and paging by the API's GET …/audit rules; `pageSize` when no limit is given. */
export function auditInput(query: Record<string, unknown>, pageSize: number): AuditRequest {
  return auditQuery({ limit: String(pageSize), ...givenValues(query, ['type', 'actor', 'since', 'until', 'limit', 'cursor']) }, 'incident');
}

/** A textarea of addresses as a list: one per line, or separated by commas, semicolons or spaces. */
export function addressList(text: string | undefined): string[] {
  return (text ?? '').split(/[\s,;]+/).filter((a) => a !== '');
}

/** The announcement form's audience: the addresses typed and the named list chosen (none: ""). */
function audienceOf(form: FormData): { addresses?: string[]; list?: string } {
  const addresses = addressList(form.one('addresses'));
  const list = form.one('list') ?? '';
  return { ...(addresses.length > 0 || list === '' ? { addresses } : {}), ...(list !== '' ? { list } : {}) };
}

/** The draft form as the service's AnnouncementInput, by the API's body rules. */
export function announcementInput(form: FormData): AnnouncementInput {
  return parseInput(AnnouncementDraft, { kind: form.one('kind'), title: form.one('title') ?? '', text: form.one('text') ?? '', audience: audienceOf(form) }, 'form');
}

/**
 * The edit form as the API's PATCH: every field the form shows, except the
 * audience when it is what the announcement already has (the same addresses
 * and list): re-sending an unchanged audience would change nothing but
 * could read the list again.
 */
export function announcementEditInput(form: FormData, current: Pick<AnnouncementView, 'audience'>): Partial<AnnouncementInput> {
  const audience = audienceOf(form);
  const same =
    (audience.list ?? null) === current.audience.list &&
    (current.audience.list !== null || sameSet(audience.addresses ?? [], current.audience.addresses)) &&
    (current.audience.list === null || (audience.addresses ?? []).length === 0);
  return parseInput(AnnouncementEdit, { kind: form.one('kind'), title: form.one('title'), text: form.one('text'), ...(same ? {} : { audience }) }, 'form');
}

function sameSet(a: readonly string[], b: readonly string[]): boolean {
  const lower = new Set(a.map((x) => x.toLowerCase()));
  return lower.size === new Set(b).size && b.every((x) => lower.has(x));
}

/** The internal-source form: "ruled out" with its note, or withdrawing the record. */
export function internalSourceInput(form: FormData): { ruledOut: boolean; note?: string } {
  const ruledOut = form.one('ruledOut');
  if (ruledOut !== 'true' && ruledOut !== 'false') throw invalid('Choose whether forensics ruled out an internal source.', { field: 'ruledOut' });
  const note = form.one('note');
  return parseInput(InternalSourceRecord, { ruledOut: ruledOut === 'true', ...(note !== undefined && note !== '' ? { note } : {}) }, 'form');
}
