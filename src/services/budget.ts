/**
 * Bytes, bounded before any are made (issue 10 item 15). One request with a
 * 6 MB attachment and 99 Bcc recipients once grew the relay by 1.9 GB: the
 * copies multiplied the size. Two bounds stop that:
 *
 * - per request, estimateRequestBytes gives an upper bound of what composing
 *   the request produces and stores, the encrypted payload counted once, and
 *   assertRequestBytes refuses more than 2 × RELAY_MAX_MESSAGE_BYTES stored
 *   (`payload_too_large`, 413 / 552);
 * - across requests, an InFlightBudget caps the bytes being composed at once
 *   (default 4 × RELAY_MAX_MESSAGE_BYTES); beyond it a request is refused with
 *   `unavailable` and a Retry-After (503 / 451 4.3.0), never run out of memory.
 *
 * Pure and synchronous: the pipeline asks before composing, releases after
 * its commit.
 */
import { RelayError } from '../errors.js';

/** The content of a request, as the estimate needs it (an EmailSubmission fits). */
export interface RequestContent {
  text: string;
  html?: string | undefined;
  subject?: string | undefined;
  inReplyTo?: string | undefined;
  references?: readonly string[] | undefined;
  attachments: ReadonlyArray<{ filename: string; contentType: string; content: Uint8Array }>;
}

/** How the request will be sent. */
export interface RequestCopies {
  /** PGP/MIME (the shared payload plus key packets per copy) or one plain message. */
  encrypted: boolean;
  /** Addresses in the headers: From, To and Cc (Bcc is in none). */
  headerAddresses: number;
  /** Encrypted only: per copy, how many keys may read it (the visible copy's, then 1 per Bcc recipient). */
  keysPerCopy: readonly number[];
}

/** Upper bounds, in bytes, of what one request produces. */
export interface RequestBytes {
  /** The MIME entity composed once: the plain message, or the protected part that is encrypted. */
  payload: number;
  /** Held once for the whole message: the plain message, or the shared encrypted packet. */
  shared: number;
  /** Per copy, what only that copy adds: envelope headers and key packets (none for plain mail, one copy for all). */
  perCopy: number[];
  /** shared + Σ perCopy: what the outbox stores when it keeps the shared part once. */
  stored: number;
  /** Every copy written whole (armored), as the upstream receives them and as an outbox storing whole copies would hold them. */
  rendered: number;
  /** payload + stored: what composing holds at its peak; reserve this from the InFlightBudget. */
  composing: number;
}

// Bounds for the parts the composer writes around the content (src/mime/compose.ts).
/** Fixed headers (Subject, Message-ID, Date, MIME-Version, Content-Type …) and multipart framing of one entity. */
const FIXED_HEADER_BYTES = 2048;
/** One address with its display name: 254 characters, a 200-character name RFC 2047-encoded, folding. */
const ADDRESS_BYTES = 2048;
/** One attachment's part headers: a 255-character file name percent-encoded twice (name, filename), type, framing. */
const ATTACHMENT_HEADER_BYTES = 8192;
/** One PKESK packet: RSA up to 16384 bits (2048 bytes of ciphertext) plus its fields; ECDH ones are ~100 bytes. */
const PKESK_BYTES = 2100;
/** OpenPGP around the payload: literal data header, one-pass signature, signature (RSA-16384 at worst), SEIPD prefix and MDC. */
const OPENPGP_FIXED_BYTES = 4096;

/** Upper bound of the quoted-printable encoding (RFC 2045 §6.7) of `text` as UTF-8 with CRLF line ends, as the composer writes it. */
export function quotedPrintableBound(text: string): number {
  let encoded = 0;
  for (let i = 0; i < text.length; i++) {
    const c = text.charCodeAt(i);
    if (c === 0x0a || c === 0x0d) encoded += 4; // a line end becomes CRLF, and a space before it "=20"
    else if (c >= 0x20 && c < 0x7f && c !== 0x3d) encoded += 1;
    else if (c < 0x80) encoded += 3;
    else if (c < 0x800) encoded += 6;
    else if (c >= 0xd800 && c <= 0xdbff) {
      encoded += 12; // a surrogate pair is 4 bytes of UTF-8
      i++;
    } else encoded += 9;
  }
  // A soft line break ("=" CRLF) at least every 48 characters: nodemailer's
  // wrap makes lines of 76, cut back up to 25 to a space and up to 12 to keep
  // a UTF-8 sequence whole. A space at the very end is escaped too.
  return encoded + 2 + 3 * Math.ceil(encoded / 48);
}

/** Bytes of base64 in 76-character CRLF lines (RFC 2045 §6.8) for `n` bytes. */
export function base64Bytes(n: number): number {
  const chars = Math.ceil(n / 3) * 4;
  return chars + 2 * Math.max(0, Math.ceil(chars / 76) - 1);
}

/** Armored size of `n` bytes of packets (src/pgp/armor.ts: 64-character lines, checksum, BEGIN/END lines). */
function armoredBytes(n: number): number {
  const chars = Math.ceil(n / 3) * 4;
  return 64 + chars + 2 * Math.ceil(chars / 64) + 16;
}

/** Upper bounds of what composing `content` for `copies` produces (see RequestBytes). */
export function estimateRequestBytes(content: RequestContent, copies: RequestCopies): RequestBytes {
  const topic = content.subject ?? '';
  // The topic line goes into the text and, escaped as HTML (up to 6 characters per character), into the html.
  const text = quotedPrintableBound(content.text) + quotedPrintableBound(`Topic: ${topic}`) + 8;
  const html = content.html === undefined ? 0 : quotedPrintableBound(content.html) + 6 * quotedPrintableBound(topic) + 64 + FIXED_HEADER_BYTES;
  const attachments = content.attachments.reduce((sum, a) => sum + base64Bytes(a.content.length) + ATTACHMENT_HEADER_BYTES + a.contentType.length, 0);
  const ids = (content.inReplyTo?.length ?? 0) + (content.references ?? []).reduce((sum, r) => sum + r.length + 1, 0);
  const headers = FIXED_HEADER_BYTES + ADDRESS_BYTES * copies.headerAddresses + 2 * ids + 64;
  const payload = headers + FIXED_HEADER_BYTES + text + html + attachments;
  if (!copies.encrypted) {
    return { payload, shared: payload, perCopy: [], stored: payload, rendered: payload, composing: payload };
  }
  // Partial body lengths add an octet per chunk of at least 512 bytes (RFC 4880 §4.2.2.4).
  const shared = payload + Math.ceil(payload / 512) + OPENPGP_FIXED_BYTES;
  // The outer envelope: bare addresses, fixed headers, the two RFC 3156 parts.
  const envelope = headers + FIXED_HEADER_BYTES;
  const keyBytes = copies.keysPerCopy.map((keys) => keys * PKESK_BYTES);
  const perCopy = keyBytes.map((k) => envelope + k);
  const stored = shared + perCopy.reduce((sum, n) => sum + n, 0);
  const rendered = keyBytes.reduce((sum, k) => sum + envelope + armoredBytes(k + shared), 0);
  return { payload, shared, perCopy, stored, rendered, composing: payload + stored };
}

/** The most one request may make the relay store: 2 × RELAY_MAX_MESSAGE_BYTES. */
export function requestBytesLimit(maxMessageBytes: number): number {
  // Room for the largest content once in its encoded form (base64: 4/3) plus
  // every copy's key packets and headers, and not for a copy of it per Bcc.
  return 2 * maxMessageBytes;
}

/** Refuses, with `payload_too_large` and what to do instead, a request that would store more than requestBytesLimit. */
export function assertRequestBytes(bytes: number, copies: number, maxMessageBytes: number): void {
  const limit = requestBytesLimit(maxMessageBytes);
  if (bytes <= limit) return;
  throw new RelayError(
    'payload_too_large',
    `This message would make the relay store about ${bytes} bytes for ${copies} ${copies === 1 ? 'copy' : 'copies'}; one message may store at most ${limit} (2 × RELAY_MAX_MESSAGE_BYTES). ` +
      'Send the attachment once to fewer Bcc recipients (or put them in To or Cc), send long text as an attachment (it encodes more compactly), or split the message.',
    { details: { bytes, limit, copies } },
  );
}

/** The default in-flight budget: 4 × RELAY_MAX_MESSAGE_BYTES (two of the largest requests composing at once). */
export function defaultInFlightBytes(maxMessageBytes: number): number {
  return 4 * maxMessageBytes;
}

/** Options of InFlightBudget. */
export interface InFlightBudgetOptions {
  /** Bytes that may be reserved at once. */
  limitBytes: number;
  /** Seconds a refused client is told to wait; default 5 (a 25 MB message composes in about 2 s). */
  retryAfterSeconds?: number;
}

/** Bytes being composed right now, relay-wide, with a cap; reservations are released after commit (or failure). */
export class InFlightBudget {
  readonly limitBytes: number;
  private readonly retryAfterSeconds: number;
  private reserved = 0;

  constructor(options: InFlightBudgetOptions) {
    if (!Number.isSafeInteger(options.limitBytes) || options.limitBytes <= 0) throw new Error('InFlightBudget: limitBytes must be a positive integer');
    this.limitBytes = options.limitBytes;
    this.retryAfterSeconds = options.retryAfterSeconds ?? 5;
  }

  /** Bytes reserved now. */
  get inFlight(): number {
    return this.reserved;
  }

  /**
   * Reserves `bytes` if they fit beside what is reserved; returns the release
   * function (calling it again does nothing), or undefined when they do not fit.
   */
  tryReserve(bytes: number): (() => void) | undefined {
    if (!Number.isSafeInteger(bytes) || bytes < 0) throw new Error('InFlightBudget: bytes must be a non-negative integer');
    if (this.reserved + bytes > this.limitBytes) return undefined;
    this.reserved += bytes;
    let released = false;
    return () => {
      if (released) return;
      released = true;
      this.reserved -= bytes;
    };
  }

  /**
   * tryReserve, or the refusal: `unavailable` with Retry-After while others
   * hold the budget; `payload_too_large` for a request larger than the whole
   * budget, which waiting would never let through.
   */
  reserve(bytes: number): () => void {
    const release = this.tryReserve(bytes);
    if (release) return release;
    if (bytes > this.limitBytes) {
      throw new RelayError('payload_too_large', `This message needs about ${bytes} bytes to compose; the relay composes at most ${this.limitBytes} at once. Send smaller attachments or fewer Bcc copies, or split the message.`, {
        details: { bytes, limit: this.limitBytes },
      });
    }
    throw new RelayError('unavailable', `The relay is composing other large messages right now and accepted nothing; try again in ${this.retryAfterSeconds} s.`, {
      retryAfter: this.retryAfterSeconds,
      details: { bytes, inFlight: this.reserved, limit: this.limitBytes },
    });
  }
}
