/**
 * The bytes of an approved announcement (issue 14), one copy per recipient:
 * plain MIME, or RFC 3156 PGP/MIME around an armored OpenPGP message.
 *
 * A separate composer on purpose: responder mail (src/mime/compose.ts) always
 * carries the fixed subject `Attorney Work Project`, and nothing here can
 * change that. An announcement is a sanctioned statement whose approved title
 * is its Subject. The title is header-safe twice over: refused at the door
 * with CR, LF, controls or Unicode line breaks, and refused again here; a
 * title that is not plain ASCII (or holds `=?`, which decoders would take for
 * an encoded word) is written as RFC 2047 encoded words, so it is shown, never
 * interpreted. Pure: values in, bytes out, CRLF throughout, 7-bit.
 */
import { randomBytes } from 'node:crypto';
import { encode as qpEncode, wrap as qpWrap } from 'nodemailer/lib/qp';
import { RelayError } from '../errors.js';
import { encodedWords } from './compose.js';
import { isEmailAddress, isMessageId, isTitleText } from '../validation.js';

/** One copy's header values and its text. */
export interface AnnouncementCopy {
  /** `<id@domain>`, the same for every copy of one announcement. */
  messageId: string;
  date: Date;
  /** A bare address (RELAY_ANNOUNCEMENT_FROM). */
  from: string;
  /** The one recipient of this copy: audiences never see each other. */
  to: string;
  /** The approved title: the Subject. */
  title: string;
  /** The approved text, the only body part. */
  text: string;
}

const CRLF = '\r\n';
// RFC 5322 §2.1.1: lines SHOULD be at most 78 characters and MUST be at most 998.
const FOLD_AT = 78;
const MAX_LINE = 998;

/** Plain MIME for one recipient: Subject is the title, the body the text, quoted-printable UTF-8. */
export function composeAnnouncementPlain(m: AnnouncementCopy): Buffer {
  const headers = [...messageHeaders(m, m.to), 'MIME-Version: 1.0', ...TEXT_HEADERS];
  return finish(headers, textBody(m.text));
}

/**
 * The cleartext that is signed and encrypted, the same for every encrypted
 * copy (so it is sealed once): the protected headers (draft-autocrypt-lamps-
 * protected-headers §2) with `To: undisclosed-recipients:;`, and the text.
 */
export function composeAnnouncementProtectedPart(m: Omit<AnnouncementCopy, 'to'>): Buffer {
  const boundary = newBoundary();
  const headers = [`Content-Type: multipart/mixed; protected-headers="v1"; boundary="${boundary}"`, ...messageHeaders(m, undefined)];
  const text = [...TEXT_HEADERS.map(fold), '', textBody(m.text)].join(CRLF);
  return finish(headers, `--${boundary}${CRLF}${text}${CRLF}--${boundary}--`);
}

/** One recipient's RFC 3156 message around `armored` (one ASCII-armored OpenPGP message, as src/pgp/armor.ts writes it). */
export function composeAnnouncementEncrypted(m: AnnouncementCopy, armored: Buffer): Buffer {
  const text = armored.toString('latin1');
  if (!text.startsWith('-----BEGIN PGP MESSAGE-----\r\n') || !text.endsWith('\r\n-----END PGP MESSAGE-----') || /[^\x20-\x7e\r\n]/.test(text)) {
    throw new RelayError('internal', 'The encrypted announcement needs one ASCII-armored OpenPGP message; this is a relay bug, report it.');
  }
  // Every boundary holds '_', which base64 and the armor lines never do.
  const boundary = newBoundary();
  const headers = [
    ...messageHeaders(m, m.to),
    'MIME-Version: 1.0',
    `Content-Type: multipart/encrypted; protocol="application/pgp-encrypted"; boundary="${boundary}"`,
  ];
  // RFC 3156 §4: part 1 identifies the version, part 2 holds the OpenPGP message.
  const body = [
    'This is an OpenPGP/MIME encrypted message (RFC 4880 and 3156)',
    `--${boundary}`,
    'Content-Type: application/pgp-encrypted',
    'Content-Description: PGP/MIME version identification',
    '',
    'Version: 1',
    '',
    `--${boundary}`,
    'Content-Type: application/octet-stream; name="encrypted.asc"',
    'Content-Description: OpenPGP encrypted message',
    'Content-Disposition: inline; filename="encrypted.asc"',
    '',
    text,
    `--${boundary}--`,
  ].join(CRLF);
  return finish(headers, body);
}

/** The header value of a title: refused when it is not one line, encoded when it is not plain ASCII. Exported for tests. */
export function subjectValue(title: string): string {
  if (typeof title !== 'string' || title.trim() === '') {
    throw new RelayError('invalid_request', 'The announcement title is empty; give it a title with its date.', { rule: 'statement', details: { field: 'title' } });
  }
  if (!isTitleText(title)) {
    throw new RelayError('invalid_request', 'The announcement title contains a line break or control character; it becomes the Subject header, so it must be one line.', {
      rule: 'statement',
      details: { field: 'title' },
    });
  }
  // RFC 2047 §5(1): an encoded word may stand in the Subject. A title that
  // already looks like one is encoded too, or readers would decode it.
  if (/^[\x20-\x7e]*$/.test(title) && !title.includes('=?')) return title;
  return encodedWords(title);
}

// ---------------------------------------------------------------- headers

const TEXT_HEADERS = ['Content-Type: text/plain; charset=utf-8', 'Content-Transfer-Encoding: quoted-printable'];

function messageHeaders(m: Omit<AnnouncementCopy, 'to'>, to: string | undefined): string[] {
  return [
    `From: ${address(m.from, 'from')}`,
    // RFC 5322 §3.6.3: the protected part names no recipient, as a Bcc copy would not.
    `To: ${to === undefined ? 'undisclosed-recipients:;' : address(to, 'to')}`,
    `Subject: ${subjectValue(m.title)}`,
    `Message-ID: ${messageId(m.messageId)}`,
    `Date: ${formatDate(m.date)}`,
  ];
}

function address(value: string, field: string): string {
  if (typeof value !== 'string' || !isTitleText(value) || !isEmailAddress(value)) {
    throw new RelayError('invalid_request', `${field} is not a plain email address; correct it and send again.`, { details: { field } });
  }
  return value;
}

function messageId(value: string): string {
  if (typeof value !== 'string' || !isMessageId(value)) throw new RelayError('internal', 'The announcement has no valid Message-ID; this is a relay bug, report it.');
  return value;
}

const DAYS = ['Sun', 'Mon', 'Tue', 'Wed', 'Thu', 'Fri', 'Sat'] as const;
const MONTHS = ['Jan', 'Feb', 'Mar', 'Apr', 'May', 'Jun', 'Jul', 'Aug', 'Sep', 'Oct', 'Nov', 'Dec'] as const;

/** RFC 5322 §3.3 date-time in UTC. */
function formatDate(date: Date): string {
  if (Number.isNaN(date.getTime())) throw new RelayError('internal', 'The announcement has no valid date; this is a relay bug, report it.');
  const two = (n: number): string => String(n).padStart(2, '0');
  return (
    `${DAYS[date.getUTCDay()]}, ${two(date.getUTCDate())} ${MONTHS[date.getUTCMonth()]} ${date.getUTCFullYear()} ` +
    `${two(date.getUTCHours())}:${two(date.getUTCMinutes())}:${two(date.getUTCSeconds())} +0000`
  );
}

/** Folds a header line at spaces so lines stay within 78 characters where possible (RFC 5322 §2.2.3); never beyond 998. */
function fold(line: string): string {
  const out: string[] = [];
  let rest = line;
  const min = line.indexOf(':') + 2;
  while (rest.length > FOLD_AT) {
    // The last space within the limit that leaves text on both sides; the first line keeps at least "Name: x".
    let cut = -1;
    for (let i = Math.min(FOLD_AT, rest.length - 1); i > (out.length === 0 ? min : 1); i--) {
      if (rest[i] === ' ' && rest.slice(0, i).trim() !== '' && rest.slice(i).trim() !== '') {
        cut = i;
        break;
      }
    }
    // A word longer than the soft limit (an encoded word after "Subject: "): break at the next space instead.
    for (let i = FOLD_AT + 1; cut < 0 && i < rest.length; i++) if (rest[i] === ' ' && rest.slice(i).trim() !== '') cut = i;
    if (cut < 0) break;
    out.push(rest.slice(0, cut));
    rest = rest.slice(cut);
  }
  out.push(rest);
  if (out.some((l) => l.length > MAX_LINE)) {
    throw new RelayError('invalid_request', 'A header of the announcement would exceed 998 characters per line; shorten the title.', { details: { field: 'title' } });
  }
  return out.join(CRLF);
}

// ---------------------------------------------------------------- body

/** The text as quoted-printable UTF-8 with CRLF line ends (RFC 2045 §6.7), so any text survives 7-bit transport. */
function textBody(text: string): string {
  return qpWrap(qpEncode(Buffer.from(text.replace(/\r\n|\r|\n/g, CRLF), 'utf8')), 76);
}

function newBoundary(): string {
  return `=_ir_${randomBytes(18).toString('hex')}`;
}

/** Headers, a blank line, the body; checked to be 7-bit CRLF text (a violation is a bug, so it fails closed). */
function finish(headers: readonly string[], body: string): Buffer {
  let out = headers.map(fold).join(CRLF) + CRLF + CRLF + body;
  if (!out.endsWith(CRLF)) out += CRLF;
  if (/[^\x00-\x7f]/.test(out) || /\r(?!\n)|(?<!\r)\n/.test(out) || /[\x00-\x08\x0b\x0c\x0e-\x1f\x7f]/.test(out)) {
    throw new RelayError('internal', 'The composed announcement is not 7-bit CRLF text; this is a relay bug, report it.');
  }
  return Buffer.from(out, 'ascii');
}
