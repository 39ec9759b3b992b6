/**
 * The one place a failure becomes an SMTP reply (STYLE: one mapping per
 * protocol). A RelayError is answered with the reply code and enhanced status
 * of its registry entry followed by `<code>: <message>`; anything else is an
 * internal fault, answered `451 4.3.0` so the client retries, with no
 * internals in the text.
 */
import { ERROR_CODES, asRelayError, type ErrorCode } from '../errors.js';
import type { EmailAccepted } from '../services/emails.js';

/** Where in the dialogue the reply is given; AUTH answers throttling differently (RFC 4954 §6). */
export type SmtpStage = 'auth' | 'mail' | 'rcpt' | 'data';

/** An Error that smtp-server turns into a reply: `responseCode` is the code, the message is the text after it. */
export interface SmtpReplyError extends Error {
  responseCode: number;
}

/** A reply as code and single-line text (the text carries the enhanced status code first). */
export interface SmtpReply {
  code: number;
  text: string;
}

// RFC 5321 §4.5.3.1.5: a reply line is at most 512 octets including the code and CRLF.
const MAX_TEXT = 480;

/** One line of printable text: control characters become spaces, runs of spaces collapse, long text is cut. */
export function singleLine(text: string): string {
  const flat = text.replace(/[\x00-\x1f\x7f-\x9f\u2028\u2029]+/g, ' ').replace(/ {2,}/g, ' ').trim();
  return flat.length <= MAX_TEXT ? flat : `${flat.slice(0, MAX_TEXT - 1)}…`;
}

/** The reply for any failure at `stage`: the registry's code for a RelayError, `451 4.3.0` for the rest. */
export function smtpReply(thrown: unknown, stage: SmtpStage): SmtpReply {
  // A store that cannot write becomes `unavailable` (451 4.3.0), as over HTTP.
  const err = asRelayError(thrown);
  if (!err) {
    // RFC 4954 §6: AUTH has its own temporary failure reply.
    if (stage === 'auth') return { code: 454, text: '4.7.0 internal: Temporary authentication failure; try again later.' };
    return { code: 451, text: '4.3.0 internal: Internal error; the message was not accepted. Try again later, and tell an admin if it persists.' };
  }
  let registered: string = ERROR_CODES[err.code].smtp;
  // RFC 4954 §6: a temporary refusal of AUTH is 454 4.7.0; 451 is for mail transactions.
  if (stage === 'auth' && err.code === 'rate_limited') registered = '454 4.7.0';
  // RFC 4954 §6: 535 answers bad credentials at AUTH; any other command that
  // needs a (still valid) login is answered 530 5.7.0, e.g. a token revoked mid-session.
  if (stage !== 'auth' && err.code === 'unauthenticated') registered = '530 5.7.0';
  const [code, enhanced] = registered.split(' ') as [string, string];
  return { code: Number(code), text: singleLine(`${enhanced} ${err.code}: ${err.message}`) };
}

/** The Error to hand to an smtp-server callback for `err` at `stage`. */
export function smtpError(err: unknown, stage: SmtpStage): SmtpReplyError {
  const reply = smtpReply(err, stage);
  return Object.assign(new Error(reply.text), { responseCode: reply.code });
}

/** A reply that also closes the connection (421): too many failures in one session, shutting down. */
export function closingError(text: string): SmtpReplyError {
  return Object.assign(new Error(singleLine(`4.7.0 ${text}`)), { responseCode: 421 });
}

/** The text after `250` once a message is durably queued. */
export function acceptedText(accepted: EmailAccepted): string {
  return singleLine(`2.0.0 Ok: queued as ${accepted.messageId}, ${accepted.encrypted ? 'encrypted' : 'plain'}, ${accepted.recipients.length} recipient(s)`);
}

/** The registry code of a failure, for audit records; internal for anything that is not a RelayError. */
export function errorCodeOf(err: unknown): ErrorCode {
  return asRelayError(err)?.code ?? 'internal';
}
