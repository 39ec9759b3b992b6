/**
 * Field schemas shared by every listener. Anything that can end up in a mail
 * header is refused when it holds CR, LF or NUL: header injection is stopped
 * at the door, and again when bytes are composed.
 */
import { z } from 'zod';
import { invalid } from './errors.js';
import { checkAddress, isAddress, normaliseAddress, shownAddress } from './mail/address.js';

// What the composer (src/mime/compose.ts) refuses in a header: C0 controls
// and DEL, and the Unicode line breaks (NEL, U+2028, U+2029) some readers
// honour. Refused here too, so a value is never stored (a roster name) that
// would make every later message to or from that member fail. Tab is allowed:
// it is whitespace in a header, and an unfolded Subject may carry one.
const NOT_ONE_LINE = /[\x00-\x08\x0a-\x1f\x7f\u0085\u2028\u2029]/;

/** A single-line string safe to place in a header. */
export const headerText = (max: number) =>
  z
    .string()
    .max(max)
    .refine((s) => !NOT_ONE_LINE.test(s), { message: 'must not contain CR, LF, NUL, other control characters or Unicode line separators' });

// Everything NOT_ONE_LINE refuses, and tab too: a title is the Subject of
// every copy and the composer (src/mime/announcement.ts) writes no control
// character there; a label is shown and promised to hold none.
const NOT_TITLE = /[\x00-\x1f\x7f\u0085\u2028\u2029]/;

/** True when `value` holds no control character at all (tab included) and no Unicode line separator. */
export function isTitleText(value: string): boolean {
  return !NOT_TITLE.test(value);
}

/** One line with no control character (tab included): an announcement title, an incident label. */
export const titleText = (max: number) =>
  z
    .string()
    .max(max)
    .refine(isTitleText, { message: 'must be one line without control characters (no tab, CR, LF or NUL) or Unicode line separators' });

/** True for an address the relay accepts (the one grammar: src/mail/address.ts). */
export function isEmailAddress(value: string): boolean {
  return isAddress(value);
}

/**
 * The normalised form of an address the relay accepts (lowercase, A-label
 * domain: what is stored, compared and written on the wire), else undefined.
 * The one normaliser: never `toLowerCase()` alone, which keeps a Unicode domain.
 */
export function normalisedEmail(value: unknown): string | undefined {
  const checked = checkAddress(value);
  return checked.ok ? checked.address : undefined;
}

/** An email address, normalised (lowercase, A-label domain); a refusal says what is wrong with it and what to do. */
export const emailAddress = z.string().transform((value, ctx) => {
  const checked = checkAddress(value);
  if (checked.ok) return checked.address;
  ctx.addIssue({ code: 'custom', message: `"${shownAddress(value)}" ${checked.hint}`, input: value });
  return z.NEVER;
});

// RFC 5322 §3.6.4 msg-id, in the dot-atom-like form every mail client writes:
// "<" id-left "@" id-right ">", printable ASCII without whitespace, and no '<',
// '>' or '@' inside either side (so there is exactly one '@'). Each side stays
// under 256 characters: a domain name is at most 253, and <uuid@RELAY_MAIL_DOMAIN>
// must pass. The HTTP route, SMTP parsing and the composer all use this one check.
const MESSAGE_ID = /^<[\x21-\x3b\x3d\x3f\x41-\x7e]{1,255}@[\x21-\x3b\x3d\x3f\x41-\x7e]{1,255}>$/;

/** True for a Message-ID the relay accepts and writes: `<left@right>`, angle brackets included. */
export function isMessageId(value: string): boolean {
  return MESSAGE_ID.test(value);
}

/** A Message-ID field (In-Reply-To, References), angle brackets included. */
export const messageId = z.string().refine(isMessageId, { message: 'must be a Message-ID such as <id@host>, with one @ and no spaces or angle brackets inside' });

/** A MIME type as the relay writes it into an attachment's Content-Type: type/subtype, no parameters (the HTTP schema and SMTP parsing share it). */
export const CONTENT_TYPE = /^[a-z0-9][a-z0-9!#$&^_.+-]{0,126}\/[a-z0-9][a-z0-9!#$&^_.+-]{0,126}$/i;

/** True for a MIME type the relay writes into an attachment's Content-Type (type/subtype, no parameters). */
export function isContentType(value: string): boolean {
  return CONTENT_TYPE.test(value);
}

/** An E.164 phone number. */
export const phoneNumber = z.string().regex(/^\+[1-9]\d{6,14}$/, 'must be an E.164 number such as +15555550100');

/** Checks and normalises a path parameter that must be an email address. */
export function emailParam(value: string): string {
  return normaliseAddress(value, 'The address in the path');
}

/** Parses `input` with `schema` or throws invalid_request listing each bad field. */
export function parseInput<T>(schema: z.ZodType<T>, input: unknown, what = 'request body'): T {
  const result = schema.safeParse(input);
  if (result.success) return result.data;
  const fields = result.error.issues.map((issue) => ({
    field: issue.path.join('.') || '(root)',
    problem: issue.code === 'unrecognized_keys' ? `unknown field(s): ${issue.keys.join(', ')}` : issue.message,
  }));
  throw invalid(`Invalid ${what}: ${fields.map((f) => `${f.field} ${f.problem}`).join('; ')}`, { fields });
}
