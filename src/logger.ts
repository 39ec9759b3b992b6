/**
 * The relay's pino logger. Logs leave the relay (files, collectors, support
 * tickets), so secrets and message content are redacted by field name before
 * a line is written, whatever a caller passes by mistake.
 */
import { pino, type DestinationStream, type Logger } from 'pino';

// Field names that carry secrets (tokens, passwords, passphrases, private keys)
// or incident content (bodies, subjects, topics); SPEC §6 keeps both out of
// the audit log, and the same goes for the operational log.
const SENSITIVE_FIELDS = [
  'token',
  'adminToken',
  'authToken',
  'password',
  'pass',
  'passphrase',
  'secret',
  'privateKey',
  'authorization',
  'cookie',
  'body',
  'text',
  'html',
  'subject',
  'topic',
  'content',
  'attachments',
];

/**
 * Redaction paths: each field at the top level and one level down. pino's
 * `*.token` alone does not match a top-level `token`, which is how a
 * `logger.info({ token })` would slip through.
 */
export const REDACT_PATHS: readonly string[] = [
  ...SENSITIVE_FIELDS.flatMap((field) => [field, `*.${field}`]),
  'req.headers.authorization',
  'req.headers.cookie',
  // HTTP client errors (axios under twilio and @slack/web-api) carry the request and its auth headers.
  'err.config',
  'err.request',
];

/** Builds the logger; `destination` is for tests that read what would be written. */
export function createLogger(level: string, destination?: DestinationStream): Logger {
  const options = { level, redact: { paths: [...REDACT_PATHS], censor: '[redacted]' } };
  return destination ? pino(options, destination) : pino(options);
}
