/**
 * Byte builders for the message formats of SPEC §3: plain MIME, the protected
 * inner part of PGP/MIME, and the RFC 3156 multipart/encrypted envelope.
 *
 * Pure functions: values in, bytes out. Every line ends in CRLF and every
 * header-bound value is checked again here (defence in depth), so a caller
 * that forgot to validate still cannot inject a header or a MIME part.
 */

import { isAscii } from 'node:buffer';
import { randomBytes } from 'node:crypto';
import { encode as qpEncode, wrap as qpWrap } from 'nodemailer/lib/qp';
import { RelayError } from '../errors.js';
import { checkAddress } from '../mail/address.js';
import { isMessageId } from '../validation.js';

/** The only subject any outbound email ever carries (SPEC §2, rule `subject`). */
export const FIXED_SUBJECT = 'Attorney Work Project';

/** A mailbox: an addr-spec with an optional display name. */
export interface Address {
  name?: string;
  address: string;
}

/** A file carried as a base64 MIME part. */
export interface Attachment {
  filename: string;
  contentType: string;
  content: Buffer;
}

/** Everything a composed message is built from; Bcc is deliberately absent (rule `bcc`). */
export interface MessageContent {
  /** `<uuid@domain>`, angle brackets included. */
  messageId: string;
  date: Date;
  from: Address;
  to: Address[];
  cc: Address[];
  /** The sender's subject; it becomes the first body line `Topic: <topic>`, never a header. */
  topic?: string;
  text: string;
  html?: string;
  attachments: Attachment[];
  inReplyTo?: string;
  references?: string[];
}

/** The header-bearing fields of a message, as the encrypted envelope needs them. */
export type EnvelopeHeaders = Pick<MessageContent, 'messageId' | 'date' | 'from' | 'to' | 'cc' | 'inReplyTo' | 'references'>;

const CRLF = '\r\n';
// RFC 5322 §2.1.1: lines SHOULD be at most 78 characters and MUST be at most 998.
const FOLD_AT = 78;
const MAX_LINE = 998;

/** A MIME entity: unfolded header lines are folded on output; the body is CRLF text. */
interface Part {
  headers: string[];
  body: string;
  /**
   * Large bodies (base64 attachments, the armored message) kept as bytes and
   * spliced into `body` where their token stands, so a 25 MB attachment is not
   * copied through a chain of 34 MB strings (see BENCHMARKS.md).
   */
  bytes?: Map<string, Buffer>;
}

/** Build a complete RFC 5322 plaintext message with the fixed subject. */
export function composePlain(m: MessageContent): Buffer {
  const content = bodyEntity(m);
  const parts = m.attachments.length === 0 ? content : mixed([content, ...m.attachments.map(attachmentPart)]);
  return finish({
    headers: [...messageHeaders(m), 'MIME-Version: 1.0', ...parts.headers],
    body: parts.body,
    bytes: parts.bytes,
  });
}

/** Build the cleartext that is signed and encrypted: a multipart/mixed entity carrying the protected headers. */
export function composeProtectedPart(m: MessageContent): Buffer {
  // draft-autocrypt-lamps-protected-headers §2: the protected headers sit on the
  // outermost part of the cryptographic payload, marked protected-headers="v1".
  // It is always multipart/mixed so every client finds them in the same place.
  const parts = mixed([bodyEntity(m), ...m.attachments.map(attachmentPart)], 'protected-headers="v1"; ');
  return finish({ headers: [...parts.headers, ...messageHeaders(m)], body: parts.body, bytes: parts.bytes });
}

/**
 * The key that signs encrypted mail, named in its outer `OpenPGP:` header
 * (draft-josefsson-openpgp-mailnews-header §2: `id=` the fingerprint) so a
 * recipient without an account can fetch GET /v1/relay-key and check it. No
 * `url=`: the relay has no stable public address to name.
 */
export interface Signer {
  /** 40 (v4) or 64 (v6) hex digits. */
  fingerprint: string;
}

/** Wrap one ASCII-armored OpenPGP message (text, or its bytes) in an RFC 3156 multipart/encrypted message. */
export function composeEncryptedEnvelope(m: EnvelopeHeaders, armoredMessage: string | Uint8Array, signer: Signer): Buffer {
  const armored = byteSlot(armoredBytes(armoredMessage));
  return finish(encryptedEnvelope(m, signer, armored.token, armored.bytes));
}

/** The bytes of an RFC 3156 message before and after its armored OpenPGP message; the same for every copy of one message. */
export interface EnvelopeParts {
  head: Buffer;
  tail: Buffer;
}

/**
 * composeEncryptedEnvelope without the armor: the bytes that go before and
 * after it, so a copy can be written as head, armor, tail without the armor
 * ever being one buffer. For armor written by src/pgp/armor.ts only: the MIME
 * boundary is not checked against it, which is safe because that armor holds
 * base64 and BEGIN/END lines alone, and every boundary contains `_`.
 */
export function composeEncryptedEnvelopeParts(m: EnvelopeHeaders, signer: Signer): EnvelopeParts {
  const token = `\x00${randomBytes(8).toString('hex')}\x00`;
  const text = finishText(encryptedEnvelope(m, signer, token));
  const at = text.indexOf(token);
  const head = text.slice(0, at);
  const tail = text.slice(at + token.length);
  if (at < 0 || head.includes('\x00') || tail.includes('\x00')) {
    throw new RelayError('internal', 'Composed message has a misplaced body; this is a relay bug, report it.');
  }
  return { head: Buffer.from(head, 'ascii'), tail: Buffer.from(tail, 'ascii') };
}

/** The multipart/encrypted entity with `armorToken` where the armored message goes. */
function encryptedEnvelope(m: EnvelopeHeaders, signer: Signer, armorToken: string, armorBytes?: Map<string, Buffer>): Part {
  // RFC 3156 §4: part 1 identifies the version, part 2 holds the OpenPGP message.
  const version: Part = {
    headers: ['Content-Type: application/pgp-encrypted', 'Content-Description: PGP/MIME version identification'],
    body: 'Version: 1' + CRLF,
  };
  const payload: Part = {
    headers: [
      'Content-Type: application/octet-stream; name="encrypted.asc"',
      'Content-Description: OpenPGP encrypted message',
      'Content-Disposition: inline; filename="encrypted.asc"',
    ],
    body: armorToken + CRLF,
    ...(armorBytes ? { bytes: armorBytes } : {}),
  };
  const envelope = multipart(
    'encrypted',
    [version, payload],
    'protocol="application/pgp-encrypted"; ',
    'This is an OpenPGP/MIME encrypted message (RFC 4880 and 3156)',
  );
  return {
    headers: [...messageHeaders(outerAddresses(m)), openpgpHeader(signer), 'MIME-Version: 1.0', ...envelope.headers],
    body: envelope.body,
    ...(envelope.bytes ? { bytes: envelope.bytes } : {}),
  };
}

// A v4 (40) or v6 (64) fingerprint: nothing else may stand in this header.
const FINGERPRINT = /^(?:[0-9A-F]{40}|[0-9A-F]{64})$/;

/** `OpenPGP: id=<fingerprint>`: the relay key, never anything a sender typed. */
function openpgpHeader(signer: Signer): string {
  const id = signer.fingerprint.toUpperCase();
  if (!FINGERPRINT.test(id)) throw new RelayError('internal', 'The relay key fingerprint is not hex; this is a relay bug, report it.');
  return `OpenPGP: id=${id}`;
}

/**
 * The outer headers of encrypted mail name bare addresses: display names are
 * free text (roster names typed by whoever filled the roster) and stay inside
 * the encryption, in the protected headers. They are still checked here, as
 * every header-bound value is, since the protected part carries them.
 */
function outerAddresses(m: EnvelopeHeaders): EnvelopeHeaders {
  const bare = (a: Address, field: string): Address => {
    if (a.name !== undefined) assertHeaderSafe(a.name, `${field}.name`);
    return { address: a.address };
  };
  return { ...m, from: bare(m.from, 'from'), to: m.to.map((a, i) => bare(a, `to[${i}]`)), cc: m.cc.map((a, i) => bare(a, `cc[${i}]`)) };
}

// ---------------------------------------------------------------- headers

/** The originator, destination, identification and fixed subject headers (RFC 5322 §3.6). */
function messageHeaders(m: EnvelopeHeaders): string[] {
  const headers = [`From: ${mailbox(m.from, 'from')}`];
  if (m.to.length > 0) {
    headers.push(`To: ${addressList(m.to, 'to')}`);
  } else if (m.cc.length === 0) {
    // RFC 5322 §3.6.3: a message for Bcc recipients only still names a destination group.
    headers.push('To: undisclosed-recipients:;');
  }
  if (m.cc.length > 0) headers.push(`Cc: ${addressList(m.cc, 'cc')}`);
  headers.push(`Subject: ${FIXED_SUBJECT}`);
  headers.push(`Message-ID: ${msgId(m.messageId, 'messageId')}`);
  headers.push(`Date: ${formatDate(m.date)}`);
  if (m.inReplyTo !== undefined) headers.push(`In-Reply-To: ${msgId(m.inReplyTo, 'inReplyTo')}`);
  if (m.references !== undefined && m.references.length > 0) {
    headers.push(`References: ${m.references.map((r, i) => msgId(r, `references[${i}]`)).join(' ')}`);
  }
  return headers;
}

// The relay's one address grammar (src/mail/address.ts), checked again here so
// no caller that skipped validation can put a routed or malformed address in a header.
function addrSpec(address: string, field: string): string {
  assertHeaderSafe(address, `${field}.address`);
  const checked = checkAddress(address);
  if (!checked.ok) {
    throw new RelayError('invalid_request', `${field}.address ${checked.hint}; correct it and resend.`, {
      details: { field: `${field}.address`, reason: checked.fault },
    });
  }
  return checked.address;
}

function mailbox(a: Address, field: string): string {
  const address = addrSpec(a.address, field);
  if (a.name === undefined || a.name === '') return address;
  assertHeaderSafe(a.name, `${field}.name`);
  return `${phrase(a.name)} <${address}>`;
}

function addressList(list: Address[], field: string): string {
  return list.map((a, i) => mailbox(a, `${field}[${i}]`)).join(', ');
}

/** A display name: a quoted-string when ASCII, RFC 2047 encoded-words otherwise. */
function phrase(name: string): string {
  // RFC 2047 §5(3): encoded-words may form a whole phrase. A name that already
  // looks like one is encoded too, or decoders would show the look-alike's text.
  if (/^[\x20-\x7e]*$/.test(name) && !name.includes('=?')) {
    // RFC 5322 §3.2.4: inside a quoted-string only DQUOTE and backslash need escaping.
    return `"${name.replace(/["\\]/g, '\\$&')}"`;
  }
  return encodedWords(name);
}

/**
 * RFC 2047 B encoded-words, each at most 75 characters (§2) and holding whole
 * characters (§5). Whitespace between adjacent encoded words is dropped by
 * decoders (§6.2), so the text decodes exactly.
 */
export function encodedWords(text: string): string {
  const words: string[] = [];
  let chunk = '';
  for (const ch of text) {
    // 45 bytes of UTF-8 encode to 60 base64 characters; with '=?UTF-8?B?' and '?=' that is 72.
    if (Buffer.byteLength(chunk + ch) > 45) {
      words.push(chunk);
      chunk = '';
    }
    chunk += ch;
  }
  words.push(chunk);
  return words.map((w) => `=?UTF-8?B?${Buffer.from(w, 'utf8').toString('base64')}?=`).join(' ');
}

// RFC 5322 §3.6.4 msg-id, by the same check the listeners validate with
// (isMessageId); repeated here so no caller that skipped it reaches a header.
function msgId(value: string, field: string): string {
  assertHeaderSafe(value, field);
  const bracketed = value.startsWith('<') ? value : `<${value}>`;
  if (!isMessageId(bracketed)) {
    throw new RelayError('invalid_request', `${field} is not a message id like <id@domain>; correct it and resend.`, {
      details: { field },
    });
  }
  return bracketed;
}

const DAYS = ['Sun', 'Mon', 'Tue', 'Wed', 'Thu', 'Fri', 'Sat'] as const;
const MONTHS = ['Jan', 'Feb', 'Mar', 'Apr', 'May', 'Jun', 'Jul', 'Aug', 'Sep', 'Oct', 'Nov', 'Dec'] as const;

/** RFC 5322 §3.3 date-time, in UTC so no local zone leaks. */
function formatDate(date: Date): string {
  if (Number.isNaN(date.getTime())) {
    throw new RelayError('invalid_request', 'date is not a valid date; pass a real Date.', { details: { field: 'date' } });
  }
  const two = (n: number): string => String(n).padStart(2, '0');
  return (
    `${DAYS[date.getUTCDay()]}, ${two(date.getUTCDate())} ${MONTHS[date.getUTCMonth()]} ${date.getUTCFullYear()} ` +
    `${two(date.getUTCHours())}:${two(date.getUTCMinutes())}:${two(date.getUTCSeconds())} +0000`
  );
}

// C0 controls, DEL and the Unicode line separators: none of them may reach a
// header, since a CR or LF would end it and start one chosen by the sender.
const LINE_BREAK = /[\r\n\u0085\u2028\u2029]/;
const CONTROL = /[\x00-\x1f\x7f]/;

function assertHeaderSafe(value: string, field: string): void {
  if (typeof value !== 'string') {
    throw new RelayError('invalid_request', `${field} must be a string.`, { details: { field } });
  }
  if (LINE_BREAK.test(value)) {
    throw new RelayError('invalid_request', `${field} contains a line break (CR/LF); header values must be one line, remove it and resend.`, {
      details: { field },
    });
  }
  if (CONTROL.test(value)) {
    throw new RelayError('invalid_request', `${field} contains a control character; remove it and resend.`, { details: { field } });
  }
}

/** Fold one header line at whitespace so lines stay within 78 characters where possible (RFC 5322 §2.2.3). */
function fold(line: string): string {
  const colon = line.indexOf(':');
  const out: string[] = [];
  let rest = line;
  let first = true;
  while (rest.length > FOLD_AT) {
    // Break before a space; the first line keeps at least 'Name: x'; a line may not be blank (§3.2.2).
    const min = first ? colon + 2 : 1;
    let cut = -1;
    for (let i = Math.min(FOLD_AT, rest.length - 1); i > min; i--) {
      if (rest[i] === ' ' && rest.slice(0, i).trim() !== '' && rest.slice(i).trim() !== '') {
        cut = i;
        break;
      }
    }
    if (cut < 0) {
      // A token longer than the soft limit: break at the next space instead.
      for (let i = FOLD_AT + 1; i < rest.length; i++) {
        if (rest[i] === ' ' && rest.slice(i).trim() !== '') {
          cut = i;
          break;
        }
      }
    }
    if (cut < 0) break;
    out.push(rest.slice(0, cut));
    rest = rest.slice(cut);
    first = false;
  }
  out.push(rest);
  if (out.some((l) => l.length > MAX_LINE)) {
    const name = line.slice(0, colon);
    throw new RelayError('invalid_request', `The ${name} header would exceed 998 characters per line; shorten the value and resend.`, {
      details: { header: name },
    });
  }
  return out.join(CRLF);
}

// ---------------------------------------------------------------- bodies

/** The readable body: text/plain, or multipart/alternative of text and html. */
function bodyEntity(m: MessageContent): Part {
  const topic = topicOf(m.topic);
  const text = topic === undefined ? m.text : `Topic: ${topic}${CRLF}${CRLF}${m.text}`;
  const plain = textPart('plain', text);
  if (m.html === undefined) return plain;
  // RFC 2046 §5.1.4: alternatives in increasing order of preference, so html last.
  return multipart('alternative', [plain, textPart('html', withHtmlTopic(m.html, topic))]);
}

function topicOf(topic: string | undefined): string | undefined {
  if (topic === undefined || topic.trim() === '') return undefined;
  // The topic is one body line; a line break would let the sender forge more lines
  // (or headers of the text part's reader), so refuse rather than strip.
  if (LINE_BREAK.test(topic)) {
    throw new RelayError('invalid_request', 'topic (the subject) contains a line break (CR/LF); use a one-line subject and resend.', {
      rule: 'subject',
      details: { field: 'subject' },
    });
  }
  if (/[\x00-\x08\x0b-\x1f\x7f]/.test(topic)) {
    throw new RelayError('invalid_request', 'topic (the subject) contains a control character; remove it and resend.', {
      rule: 'subject',
      details: { field: 'subject' },
    });
  }
  return topic;
}

// A `<body` start tag: the name is followed by something that cannot continue it.
const BODY_TAG = /<body(?![A-Za-z0-9_])/i;

/** The end of the first `<body …>` start tag, or -1; linear in the length of `html`. */
export function bodyTagEnd(html: string): number {
  // Same result as /<body\b[^>]*>/i, which retried `[^>]*` from every `<body`
  // to the end of the input: quadratic, and 2 MB of `<body` froze the relay for
  // hours. The first `<body` decides: the first `>` after it closes it, and if
  // there is none, no later `<body` can have one either.
  const start = BODY_TAG.exec(html);
  if (start === null) return -1;
  const close = html.indexOf('>', start.index + 5);
  return close < 0 ? -1 : close + 1;
}

function withHtmlTopic(html: string, topic: string | undefined): string {
  if (topic === undefined) return html;
  const line = `<p>Topic: ${escapeHtml(topic)}</p>${CRLF}`;
  const at = bodyTagEnd(html);
  if (at < 0) return line + html;
  return html.slice(0, at) + CRLF + line + html.slice(at);
}

function escapeHtml(s: string): string {
  return s.replace(/[&<>"']/g, (c) => `&#${c.charCodeAt(0)};`);
}

/** A UTF-8 text part, quoted-printable so long lines and non-ASCII survive 7-bit transport (RFC 2045 §6.7). */
function textPart(subtype: 'plain' | 'html', text: string): Part {
  const encoded = qpWrap(qpEncode(Buffer.from(normaliseNewlines(text), 'utf8')), 76);
  return {
    headers: [`Content-Type: text/${subtype}; charset=utf-8`, 'Content-Transfer-Encoding: quoted-printable'],
    body: encoded,
  };
}

function attachmentPart(a: Attachment, index: number): Part {
  const field = `attachments[${index}]`;
  if (typeof a.filename !== 'string' || a.filename === '') {
    throw new RelayError('invalid_request', `${field}.filename is empty; give the file a name and resend.`, {
      details: { field: `${field}.filename` },
    });
  }
  assertHeaderSafe(a.filename, `${field}.filename`);
  if (!Buffer.isBuffer(a.content)) {
    throw new RelayError('invalid_request', `${field}.content must be bytes.`, { details: { field: `${field}.content` } });
  }
  const encoded = byteSlot(base64Lines(a.content));
  return {
    headers: [
      `Content-Type: ${mediaType(a.contentType, `${field}.contentType`)}; ${param('name', a.filename)}`,
      'Content-Transfer-Encoding: base64',
      `Content-Disposition: attachment; ${param('filename', a.filename)}`,
    ],
    body: encoded.token,
    bytes: encoded.bytes,
  };
}

// RFC 2045 §5.1 token characters.
const TOKEN = "[!#$%&'*+.^_`|~0-9A-Za-z-]+";
const MEDIA_TYPE = new RegExp(`^\\s*(${TOKEN})/(${TOKEN})\\s*(?:;(.*))?$`);

/** The attachment's media type, reduced to type/subtype and an optional charset. */
function mediaType(contentType: string, field: string): string {
  assertHeaderSafe(contentType, field);
  const match = MEDIA_TYPE.exec(contentType);
  if (match === null) {
    throw new RelayError('invalid_request', `${field} is not a media type like application/pdf; correct it and resend.`, {
      details: { field },
    });
  }
  const type = (match[1] ?? '').toLowerCase();
  const subtype = (match[2] ?? '').toLowerCase();
  // RFC 2045 §6.4 and RFC 2046 §5.2.1: composite types may not be base64-encoded,
  // and a sender-chosen multipart boundary could reshape the message; carry them opaquely.
  if (type === 'multipart' || type === 'message') return 'application/octet-stream';
  const charset = /(?:^|;)\s*charset\s*=\s*"?([A-Za-z0-9._:-]+)"?\s*(?:;|$)/i.exec(match[3] ?? '');
  return charset?.[1] === undefined ? `${type}/${subtype}` : `${type}/${subtype}; charset=${charset[1]}`;
}

// RFC 2231 §7 attribute-char (as repeated by RFC 5987 §3.2.1 attr-char).
const ATTR_CHAR = /^[A-Za-z0-9!#$&+.^_`|~-]$/;

/** A parameter: a quoted-string when plain ASCII, else RFC 2231 §3/§4 continuations with UTF-8 percent-encoding. */
function param(key: string, value: string): string {
  // '=?' is excluded because decoders decode encoded-words even in parameters.
  if (/^[\x20-\x7e]*$/.test(value) && !/["\\]/.test(value) && !value.includes('=?') && value.length <= 60) {
    return `${key}="${value}"`;
  }
  const segments: string[] = [];
  let segment = '';
  for (const ch of value) {
    const enc = ATTR_CHAR.test(ch)
      ? ch
      : [...Buffer.from(ch, 'utf8')].map((b) => `%${b.toString(16).toUpperCase().padStart(2, '0')}`).join('');
    // Segments hold whole characters so decoders that decode per segment still get valid UTF-8.
    if (segment.length + enc.length > 60 && segment !== '') {
      segments.push(segment);
      segment = '';
    }
    segment += enc;
  }
  segments.push(segment);
  if (segments.length === 1) return `${key}*=utf-8''${segments[0] ?? ''}`;
  return segments.map((s, i) => `${key}*${i}*=${i === 0 ? "utf-8''" : ''}${s}`).join('; ');
}

const CR_BYTE = 0x0d;
const LF_BYTE = 0x0a;
const B64_LINE = 76;
// 57 input bytes make one 76-character line; whole lines per chunk keep the breaks in place.
const B64_CHUNK = 57 * 1024;

/** Base64 in 76-character lines joined by CRLF (RFC 2045 §6.8), as bytes, encoded a chunk at a time. */
function base64Lines(content: Buffer): Buffer {
  const encodedLength = Math.ceil(content.length / 3) * 4;
  const lines = Math.ceil(encodedLength / B64_LINE);
  const out = Buffer.allocUnsafe(encodedLength + Math.max(0, lines - 1) * 2);
  let at = 0;
  for (let i = 0; i < content.length; i += B64_CHUNK) {
    const chunk = Buffer.from(content.subarray(i, i + B64_CHUNK).toString('base64'), 'latin1');
    for (let j = 0; j < chunk.length; j += B64_LINE) {
      if (at > 0) {
        out[at++] = CR_BYTE;
        out[at++] = LF_BYTE;
      }
      at += chunk.copy(out, at, j, Math.min(j + B64_LINE, chunk.length));
    }
  }
  return out;
}

const ARMOR_BEGIN = '-----BEGIN PGP MESSAGE-----';
const ARMOR_END = '-----END PGP MESSAGE-----';

/**
 * The armored message as CRLF bytes, trimmed and checked: one BEGIN/END PGP
 * MESSAGE block of printable ASCII lines. Native string and buffer operations
 * only, and two copies of a 46 MB armor rather than six.
 */
function armoredBytes(armoredMessage: string | Uint8Array): Buffer {
  if (typeof armoredMessage !== 'string') {
    // Bytes already in CRLF form are used as they are; anything else takes the text path, which normalises or refuses.
    return crlfArmor(armoredMessage) ?? armoredBytes(Buffer.from(armoredMessage.buffer, armoredMessage.byteOffset, armoredMessage.byteLength).toString('latin1'));
  }
  const refuse = (): RelayError =>
    new RelayError('internal', 'The encrypted envelope needs one ASCII-armored OpenPGP message; encrypt with armor enabled.');
  // String.prototype.trim's ASCII whitespace (TAB, LF, VT, FF, CR, SP); anything
  // else at the edges is left in place and refused below.
  const space = (c: number): boolean => (c >= 0x09 && c <= 0x0d) || c === 0x20;
  let start = 0;
  let end = armoredMessage.length;
  while (start < end && space(armoredMessage.charCodeAt(start))) start++;
  while (end > start && space(armoredMessage.charCodeAt(end - 1))) end--;
  const body = armoredMessage.slice(start, end);
  // Printable ASCII lines only, so the latin1 conversion below is exact.
  if (/[^\x20-\x7e\r\n]/.test(body)) throw refuse();
  const out = Buffer.from(normaliseNewlines(body), 'latin1');
  if (!isOneArmor(out)) throw refuse();
  return out;
}

/** True when `armor` is exactly one CRLF armored PGP MESSAGE block, BEGIN line to END line. */
function isOneArmor(armor: Buffer): boolean {
  const head = `${ARMOR_BEGIN}${CRLF}`;
  const tail = `${CRLF}${ARMOR_END}`;
  return (
    armor.length >= head.length + tail.length &&
    armor.toString('latin1', 0, head.length) === head &&
    armor.toString('latin1', armor.length - tail.length) === tail &&
    armor.indexOf(ARMOR_BEGIN, 1, 'latin1') === -1
  );
}

/** `bytes` trimmed (a view, not a copy) when they already are one CRLF armor of printable ASCII lines; else undefined. */
function crlfArmor(bytes: Uint8Array): Buffer | undefined {
  const all = Buffer.from(bytes.buffer, bytes.byteOffset, bytes.byteLength);
  const space = (c: number): boolean => (c >= 0x09 && c <= 0x0d) || c === 0x20;
  let start = 0;
  let end = all.length;
  while (start < end && space(all[start]!)) start++;
  while (end > start && space(all[end - 1]!)) end--;
  const armor = all.subarray(start, end);
  for (let i = 0; i < armor.length; i++) {
    const c = armor[i]!;
    if (c > 0x7e) return undefined;
    if (c < 0x20) {
      if (c !== CR_BYTE || armor[i + 1] !== LF_BYTE) return undefined;
      i++;
    }
  }
  return isOneArmor(armor) ? armor : undefined;
}

/** A body that stands in a Part as a token and is spliced in as bytes by finish(). */
function byteSlot(bytes: Buffer): { token: string; bytes: Map<string, Buffer> } {
  // NUL cannot occur in any text we render (headers refuse controls, text is quoted-printable).
  const token = `\x00${randomBytes(8).toString('hex')}\x00`;
  return { token, bytes: new Map([[token, bytes]]) };
}

const SLOT_TOKEN = /\x00([0-9a-f]{16})\x00/;

/** Fails closed unless `bytes` are 7-bit with CRLF line ends only (what finish() asks of the text). */
function assertSevenBitCrlf(bytes: Buffer): void {
  const bug = (): RelayError => new RelayError('internal', 'Composed message is not 7-bit CRLF text; this is a relay bug, report it.');
  if (!isAscii(bytes)) throw bug();
  // Every LF follows a CR, and there are as many CRs as LFs: so no bare CR either.
  let lf = 0;
  for (let i = bytes.indexOf(LF_BYTE); i !== -1; i = bytes.indexOf(LF_BYTE, i + 1)) {
    if (i === 0 || bytes[i - 1] !== CR_BYTE) throw bug();
    lf++;
  }
  let cr = 0;
  for (let i = bytes.indexOf(CR_BYTE); i !== -1; i = bytes.indexOf(CR_BYTE, i + 1)) cr++;
  if (cr !== lf) throw bug();
}

/** The rendered text with every token replaced by its bytes, each used exactly once. */
function splice(text: string, bytes: Map<string, Buffer>): Buffer {
  const bug = (): RelayError => new RelayError('internal', 'Composed message has a misplaced body; this is a relay bug, report it.');
  if (bytes.size === 0) {
    if (text.includes('\x00')) throw bug();
    return Buffer.from(text, 'ascii');
  }
  // split() with a capture group alternates text, token id, text, ...
  const pieces = text.split(SLOT_TOKEN);
  const used = new Set<string>();
  const chunks: Buffer[] = [];
  let total = 0;
  pieces.forEach((piece, i) => {
    if (i % 2 === 0) {
      if (piece.includes('\x00')) throw bug();
      const chunk = Buffer.from(piece, 'ascii');
      chunks.push(chunk);
      total += chunk.length;
      return;
    }
    const token = `\x00${piece}\x00`;
    const body = bytes.get(token);
    if (body === undefined || used.has(token)) throw bug();
    used.add(token);
    assertSevenBitCrlf(body);
    chunks.push(body);
    total += body.length;
  });
  if (used.size !== bytes.size) throw bug();
  return Buffer.concat(chunks, total);
}

function normaliseNewlines(s: string): string {
  return s.replace(/\r\n|\r|\n/g, CRLF);
}

// ---------------------------------------------------------------- multipart

function mixed(parts: Part[], extraParams = ''): Part {
  return multipart('mixed', parts, extraParams);
}

/** A multipart entity (RFC 2046 §5.1.1) with a fresh random boundary absent from every part. */
function multipart(subtype: string, parts: Part[], extraParams = '', preamble?: string): Part {
  const rendered = parts.map(render);
  const bytes = new Map(parts.flatMap((p) => [...(p.bytes ?? [])]));
  let boundary = newBoundary();
  // '=_' can occur in neither quoted-printable nor base64 output, but the check
  // is what guarantees it: a boundary found in content is drawn again.
  while (
    rendered.some((p) => p.includes(boundary)) ||
    (preamble?.includes(boundary) ?? false) ||
    [...bytes.values()].some((b) => b.includes(boundary, 0, 'latin1'))
  ) {
    boundary = newBoundary();
  }
  const body =
    (preamble === undefined ? '' : preamble + CRLF) +
    rendered.map((p) => `--${boundary}${CRLF}${p}${CRLF}`).join('') +
    `--${boundary}--`;
  return { headers: [`Content-Type: multipart/${subtype}; ${extraParams}boundary="${boundary}"`], body, ...(bytes.size > 0 ? { bytes } : {}) };
}

function newBoundary(): string {
  return `=_ir_${randomBytes(18).toString('hex')}`;
}

function render(p: Part): string {
  return p.headers.map(fold).join(CRLF) + CRLF + CRLF + p.body;
}

/** Render a top-level entity and check the invariants every output must hold. */
function finish(p: Part): Buffer {
  return splice(finishText(p), p.bytes ?? new Map());
}

/** The rendered text of a top-level entity, byte slots still as tokens, checked to be 7-bit CRLF. */
function finishText(p: Part): string {
  let out = render(p);
  if (!out.endsWith(CRLF)) out += CRLF;
  // Everything above is encoded to 7-bit and CRLF; a violation here is a bug, so fail closed.
  if (/[^\x00-\x7f]/.test(out) || /\r(?!\n)|(?<!\r)\n/.test(out)) {
    throw new RelayError('internal', 'Composed message is not 7-bit CRLF text; this is a relay bug, report it.');
  }
  return out;
}
