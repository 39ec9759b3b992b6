/**
 * The relay's pino logger. Logs leave the relay (files, collectors, support
 * tickets), so secrets and message content are removed by field name, at any
 * depth and inside errors, before a line is written, whatever a caller passes
 * by mistake.
 */
import { pino, type DestinationStream, type Logger } from 'pino';

// Field names that carry secrets (tokens, passwords, passphrases, private keys)
// or incident content (bodies, subjects, topics); SPEC §6 keeps both out of
// the audit log, and the same goes for the operational log. Compared without case.
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

// HTTP client errors (axios, under twilio) hang the request config (headers,
// credentials, the form body) and the request itself on the error and on its
// `response`; a wrapper may nest them further. Dropped whole, at any depth.
const TRANSPORT_FIELDS = ['config', 'request'];

// Every field name whose value is never written, lowercased: header names come in any case.
const REDACTED_FIELDS: ReadonlySet<string> = new Set([...SENSITIVE_FIELDS, ...TRANSPORT_FIELDS].map((f) => f.toLowerCase()));

/**
 * pino's own path redaction: each field at the top level and one level down
 * (`*.token` alone does not match a top-level `token`). redact() below covers
 * every depth; these paths also reach child-logger bindings, which pino
 * writes without passing them through formatters.log.
 */
export const REDACT_PATHS: readonly string[] = [
  ...SENSITIVE_FIELDS.flatMap((field) => [field, `*.${field}`]),
  'req.headers.authorization',
  'req.headers.cookie',
  'err.config',
  'err.request',
];

const CENSOR = '[redacted]';
// Deep enough for any error chain a library builds; a bound, because a log call must never hang on a huge graph.
const MAX_DEPTH = 10;

// pino's path redaction names fixed depths and cases (`*.token` misses
// `a.b.token`, `authorization` misses `Authorization`), so the log object is
// copied instead, dropping sensitive fields wherever they are. Errors are
// serialized as pino would (type, message, stack with causes, own fields) and
// then scrubbed the same way.
function scrub(value: unknown, depth: number, seen: WeakSet<object>): unknown {
  if (typeof value !== 'object' || value === null) return value;
  if (value instanceof Error) return scrub(pino.stdSerializers.err(value), depth, seen);
  // Dates, Buffers, URLs: already safe to stringify as they are.
  if (typeof (value as { toJSON?: unknown }).toJSON === 'function') return value;
  // `seen` holds the ancestors only: an object met twice side by side is no cycle.
  if (seen.has(value)) return '[Circular]';
  if (depth >= MAX_DEPTH) return '[truncated]';
  seen.add(value);
  try {
    if (Array.isArray(value)) return value.map((v: unknown) => scrub(v, depth + 1, seen));
    const out: Record<string, unknown> = {};
    for (const key of Object.keys(value)) {
      if (REDACTED_FIELDS.has(key.toLowerCase())) {
        out[key] = CENSOR;
        continue;
      }
      try {
        out[key] = scrub((value as Record<string, unknown>)[key], depth + 1, seen);
      } catch {
        // A throwing getter must not take the log line (or the caller) down.
        out[key] = '[unreadable]';
      }
    }
    return out;
  } finally {
    seen.delete(value);
  }
}

// A copy of `value` with every secret or content field replaced by "[redacted]", at any depth and inside errors.
function redact(value: unknown): unknown {
  return scrub(value, 0, new WeakSet());
}

/** Builds the logger; `destination` is for tests that read what would be written. */
export function createLogger(level: string, destination?: DestinationStream): Logger {
  const options: pino.LoggerOptions = {
    level,
    redact: { paths: [...REDACT_PATHS], censor: CENSOR },
    formatters: {
      // Every merged object, `err` included, before pino serializes it.
      log: (object) => redact(object) as Record<string, unknown>,
    },
    serializers: {
      // `err` already went through redact() above; pino's default serializer
      // would serialize the copy again and lose the error's type.
      err: (value: unknown) => (value instanceof Error ? redact(value) : value),
    },
  };
  return destination ? pino(options, destination) : pino(options);
}
