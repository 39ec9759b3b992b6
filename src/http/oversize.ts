/**
 * The early 413, shared by the JSON API and the console: a body whose
 * declared Content-Length is over the limit is refused before a byte of it is
 * read, and each listener's error handler answers in its own format.
 */
import type { RequestHandler } from 'express';
import { RelayError } from '../errors.js';

/**
 * Refuses with payload_too_large a body whose declared Content-Length is over
 * `limit`. body-parser answers only after reading (and discarding) the whole
 * body, so the client would push it all before hearing no; answered first, it
 * can stop. Node discards whatever still arrives (never buffered), and
 * requestTimeout bounds a client that keeps sending. The connection is not
 * closed here: closing with unread input resets it, and the client would
 * lose the 413. `what` names the body and `tail` follows the limit in the
 * message (where the limit comes from, what to do), in the caller's words.
 */
export function refuseDeclaredOversize(limit: number, what = 'request body', tail = ' (RELAY_MAX_MESSAGE_BYTES); send smaller attachments.'): RequestHandler {
  return (req, _res, next) => {
    const declared = Number(req.get('content-length') ?? '0');
    if (declared > limit) next(new RelayError('payload_too_large', `The ${what} is ${declared} bytes; this relay accepts at most ${limit}${tail}`));
    else next();
  };
}
