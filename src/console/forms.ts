/**
 * The console's forms as typed inputs for the services: the same field rules
 * as the JSON API (src/http/routes/incidents.ts, emails.ts, sms.ts), built
 * from the same shared schemas (src/validation.ts), and refused the same way
 * (invalid_request naming each field). An empty text box means "not given".
 */
import { z } from 'zod';
import { invalid } from '../errors.js';
import type { Attachment } from '../mime/compose.js';
import type { EmailSubmission } from '../services/emails.js';
import type { NudgeRequest } from '../services/sms.js';
import { ROSTER_ROLES, type MemberInput } from '../store/incidents.js';
import { emailAddress, headerText, parseInput, phoneNumber } from '../validation.js';
import type { FormData } from './multipart.js';

/** The largest key file the roster form takes, as the API's publicKey field. */
export const MAX_KEY_BYTES = 65536;

// TODO(integration): the member field rules below are the API's PutMember
// rules (src/http/routes/incidents.ts); once api-routes lands, import the
// shared field schemas instead of keeping this copy.
const memberName = headerText(200).refine((s) => s.trim() !== '' && !s.includes('\t'), { message: 'must not be empty or contain a tab' });
const slackUserId = z.string().regex(/^[UW][A-Z0-9]{2,20}$/, 'must be a Slack user id such as U024BE7LH');

// As the API's attachment rules (src/http/routes/emails.ts).
const CONTENT_TYPE = /^[a-z0-9][a-z0-9!#$&^_.+-]{0,126}\/[a-z0-9][a-z0-9!#$&^_.+-]{0,126}$/i;
const attachmentName = headerText(255).refine((s) => s.trim() !== '' && !/[/\\]/.test(s) && !s.startsWith('.') && !/[\x00-\x1f\x7f]/.test(s), {
  message: 'must be a plain file name without path separators or a leading dot',
});

/** "" → undefined, so an empty box is a field not given. */
const blankAsUndefined = (v: unknown): unknown => (v === '' ? undefined : v);

const DeclareForm = z.strictObject({
  codename: z.preprocess(blankAsUndefined, z.string().max(80).optional()),
  commander: z.preprocess(blankAsUndefined, emailAddress.optional()),
});

const MemberForm = z.strictObject({
  email: emailAddress,
  name: memberName,
  role: z.enum(ROSTER_ROLES),
  phone: z.preprocess(blankAsUndefined, phoneNumber.optional()),
  slackUserId: z.preprocess(blankAsUndefined, slackUserId.optional()),
});

const Recipients = z.array(emailAddress).max(100);

const ComposeForm = z.strictObject({
  to: Recipients,
  cc: Recipients,
  bcc: Recipients,
  subject: z.preprocess(blankAsUndefined, headerText(998).optional()),
  text: z.string(),
});

/** An Idempotency-Key from a hidden field, as the API's header: 1-200 printable ASCII characters. */
export function idempotencyKeyOf(form: FormData): string | undefined {
  const key = form.one('idempotencyKey');
  if (key === undefined || key === '') return undefined;
  if (!/^[\x21-\x7e]{1,200}$/.test(key)) throw invalid('The form\'s idempotency key must be 1-200 printable ASCII characters; reload the page.');
  return key;
}

/** The declare form: an optional chosen codename, and for admins the commander. */
export function declareInput(form: FormData): { codename?: string; commander?: string } {
  const parsed = parseInput(DeclareForm, { codename: form.one('codename'), commander: form.one('commander') }, 'form');
  return { ...(parsed.codename !== undefined ? { codename: parsed.codename.trim() } : {}), ...(parsed.commander !== undefined ? { commander: parsed.commander } : {}) };
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
  const files = form.files('publicKey');
  if (files.length > 1) throw invalid('Choose one key file.', { field: 'publicKey' });
  const file = files[0];
  if (file && file.data.length > MAX_KEY_BYTES) throw invalid(`The key file is ${file.data.length} bytes; a public key is at most ${MAX_KEY_BYTES}. Export only this person's key (gpg --armor --export ${parsed.email}).`, { field: 'publicKey' });
  return {
    email: parsed.email,
    name: parsed.name,
    role: parsed.role,
    phone: parsed.phone ?? null,
    slackUserId: parsed.slackUserId ?? null,
    ...(file ? { publicKey: file.data.toString('utf8') } : {}),
  };
}

/** The compose form as the pipeline's EmailSubmission: recipients ticked from the roster, subject, text, attached files. */
export function composeInput(form: FormData): EmailSubmission {
  const parsed = parseInput(ComposeForm, { to: form.all('to'), cc: form.all('cc'), bcc: form.all('bcc'), subject: form.one('subject'), text: form.one('text') ?? '' }, 'form');
  if (parsed.to.length === 0) throw invalid('Tick at least one recipient under To.', { field: 'to' });
  const attachments: Attachment[] = form.files('attachments').map((file, i) => {
    const filename = parseInput(attachmentName, file.filename ?? '', `attachment ${i + 1}'s file name`);
    const declared = file.contentType ?? '';
    // What the browser says, when it is a well-formed type; otherwise bytes.
    const contentType = CONTENT_TYPE.test(declared) ? declared : 'application/octet-stream';
    return { filename, contentType, content: file.data };
  });
  // A textarea sends CRLF line ends; the composer normalises them as it does the API's.
  return { to: parsed.to, cc: parsed.cc, bcc: parsed.bcc, subject: parsed.subject, text: parsed.text, attachments };
}

/** The nudge form: "everyone" or the members ticked. */
export function nudgeInput(form: FormData): NudgeRequest {
  if (form.one('scope') === 'roster') return { to: 'roster' };
  const to = form.all('to').map((s) => s.toLowerCase());
  if (to.length === 0) throw invalid('Tick at least one member to nudge, or choose "Nudge everyone".', { field: 'to' });
  if (to.length > 100) throw invalid('At most 100 members per nudge; choose "Nudge everyone" instead.', { field: 'to' });
  return { to };
}
