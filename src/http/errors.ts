/**
 * The one place a failure becomes an HTTP reply. RelayErrors become the JSON
 * error body of SPEC §4; body-parser failures become invalid_request or
 * payload_too_large (any the relay does not name, when it is the client's
 * fault, invalid_request); anything else is a bare 500 whose details go only to the log.
 */
import type { ErrorRequestHandler, Request, RequestHandler } from 'express';
import type { Logger } from 'pino';
import { RelayError, asRelayError } from '../errors.js';

interface BodyParserError {
  type: string;
  status?: number;
}

function isBodyParserError(err: unknown): err is BodyParserError {
  return typeof err === 'object' && err !== null && typeof (err as { type?: unknown }).type === 'string' && typeof (err as { status?: unknown }).status === 'number';
}

// An http-errors error the client caused (body-parser marks them so: a
// broken gzip body is a 400 with no type at all).
function isClientHttpError(err: unknown): boolean {
  if (typeof err !== 'object' || err === null) return false;
  const { status, expose } = err as { status?: unknown; expose?: unknown };
  return typeof status === 'number' && status >= 400 && status < 500 && expose === true;
}

/** What a request body was meant to be, for the words of a parse refusal. */
export type BodyKind = 'JSON' | 'form';

// express 5's router decodes path parameters with decodeURIComponent and
// passes the URIError on, marked 400 (router/lib/layer.js decodeParam).
function isBadPercentEscape(err: unknown): boolean {
  return err instanceof URIError && (err as URIError & { status?: unknown }).status === 400;
}

/** Converts any thrown value into the RelayError the client is shown; `body` names what a body that does not parse was meant to be. */
export function toRelayError(err: unknown, body: BodyKind = 'JSON'): RelayError | undefined {
  const known = asRelayError(err);
  if (known) return known;
  if (isBadPercentEscape(err)) {
    // The client's mistake, not ours: a 400 with a hint, never a 500 with a stack trace in the log.
    return new RelayError('invalid_request', 'The URL path holds a malformed percent-escape (a % not followed by two hex digits, or bytes that are not UTF-8); write % as %25 and encode the rest as UTF-8.');
  }
  if (isBodyParserError(err)) {
    switch (err.type) {
      case 'entity.too.large':
        return new RelayError('payload_too_large', 'The request body is larger than this relay accepts (RELAY_MAX_MESSAGE_BYTES); send smaller attachments.');
      case 'entity.parse.failed':
        return new RelayError('invalid_request', body === 'form' ? 'The form could not be read; reload the page and send it again.' : 'The request body is not valid JSON.');
      case 'parameters.too.many':
        return new RelayError('payload_too_large', `The ${body === 'form' ? 'form' : 'request body'} has more than ${MAX_FORM_FIELDS} fields; this relay reads at most ${MAX_FORM_FIELDS}. Send fewer fields (a list belongs in one field, one item a line).`);
      case 'encoding.unsupported':
      case 'charset.unsupported':
        return new RelayError('invalid_request', 'Send the body as UTF-8 without content encoding.');
      case 'request.aborted':
      case 'request.size.invalid':
      case 'stream.encoding.set':
        return new RelayError('invalid_request', 'The request body was cut short.');
    }
  }
  // Any other body-parser refusal (a gzip body that does not inflate, …): the client's, so a 400 that says so, never a 500.
  if (isClientHttpError(err)) return new RelayError('invalid_request', 'The request body could not be read. Send it again, uncompressed (no Content-Encoding) and as UTF-8.');
  return undefined;
}

/** How many fields a url-encoded body may hold (express.urlencoded's parameterLimit, for the console's forms and the Twilio webhook). */
export const MAX_FORM_FIELDS = 1000;

/** What kind of body `req` declares: a form (url-encoded or multipart) or, otherwise, JSON. */
export function bodyKindOf(req: Pick<Request, 'is'>): BodyKind {
  return req.is(['application/x-www-form-urlencoded', 'multipart/form-data']) ? 'form' : 'JSON';
}

/** Sends a RelayError as the SPEC §4 body, with Retry-After where it applies. */
export function sendError(res: Parameters<RequestHandler>[1], error: RelayError): void {
  if (error.retryAfter !== undefined) res.setHeader('Retry-After', String(Math.max(1, Math.ceil(error.retryAfter))));
  res.status(error.httpStatus).json(error.toJSON());
}

/** Express error middleware: the JSON body for known errors, a bare 500 for the rest. */
export function errorHandler(logger: Logger): ErrorRequestHandler {
  return (err, req, res, _next) => {
    const known = toRelayError(err, bodyKindOf(req));
    if (res.headersSent) {
      logger.error({ err, path: req.path }, 'error after the reply started');
      res.destroy();
      return;
    }
    if (known) {
      // A store that cannot write is the admin's problem; a refusal the relay chose (busy, Slack off) only a warning.
      if (known.code === 'unavailable') {
        if (known === err) logger.warn({ code: known.code, retryAfter: known.retryAfter, reason: known.message }, 'answered 503 unavailable');
        else logger.error({ err }, 'store unavailable');
      }
      sendError(res, known);
      return;
    }
    logger.error({ err, method: req.method, path: req.path }, 'unhandled error');
    res.status(500).json({ error: { code: 'internal', message: 'Internal error; the request was not carried out. Try again, and tell an admin if it persists.' } });
  };
}

/** The reply for a path no route knows. */
export const notFoundHandler: RequestHandler = (req, res) => {
  sendError(res, new RelayError('not_found', `No route ${req.method} ${req.path.slice(0, 200)}. The API lives under /v1; see the README.`));
};

/** For routes that exist but not with this method. */
export const methodNotAllowed: RequestHandler = (req, res) => {
  sendError(res, new RelayError('method_not_allowed', `${req.method} is not allowed on ${req.path.slice(0, 200)}.`));
};
