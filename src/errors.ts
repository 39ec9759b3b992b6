/**
 * The one error type of the relay and its code registry (SPEC §4).
 *
 * Every refusal anywhere in the relay is a RelayError with a code from this
 * table; each listener maps it to its wire reply in exactly one place
 * (src/http/errors.ts, src/smtp/replies.ts). Anything that is not a RelayError
 * is an internal fault and is answered without internals.
 */
import { StoreClosed } from './store/sql.js';

export type RuleId =
  | 'subject'
  | 'roster'
  | 'encryption'
  | 'bcc'
  | 'sender'
  | 'incident-open'
  | 'sms'
  | 'chat'
  | 'codename'
  // Second wave (SPEC §8): fixed names the CLI, console and routes share.
  | 'security-team'
  | 'approval'
  | 'statement'
  | 'internal-source'
  // An announcement's audience: inside or outside the company by its kind, within the size limit.
  | 'audience';

interface CodeSpec {
  /** HTTP status for the JSON API. */
  readonly http: number;
  /** SMTP reply (code and enhanced status) for submission. */
  readonly smtp: string;
}

/** The code registry. The README's errors table mirrors this one. */
export const ERROR_CODES = {
  invalid_request: { http: 400, smtp: '550 5.7.1' },
  unauthenticated: { http: 401, smtp: '535 5.7.8' },
  forbidden: { http: 403, smtp: '550 5.7.1' },
  not_found: { http: 404, smtp: '550 5.7.1' },
  method_not_allowed: { http: 405, smtp: '550 5.7.1' },
  incident_closed: { http: 409, smtp: '550 5.7.1' },
  ambiguous_incident: { http: 400, smtp: '550 5.7.1' },
  recipient_not_on_roster: { http: 403, smtp: '550 5.7.1' },
  sender_mismatch: { http: 403, smtp: '550 5.7.1' },
  missing_public_key: { http: 422, smtp: '550 5.7.1' },
  unusable_public_key: { http: 422, smtp: '550 5.7.1' },
  sms_content_blocked: { http: 422, smtp: '550 5.7.1' },
  statement_rejected: { http: 422, smtp: '550 5.7.1' },
  incident_details_exposed: { http: 422, smtp: '550 5.7.1' },
  audience_invalid: { http: 422, smtp: '550 5.7.1' },
  audience_too_large: { http: 422, smtp: '550 5.7.1' },
  // Issue 14: the security team, and announcements beyond the roster.
  security_team_missing: { http: 409, smtp: '550 5.7.1' },
  security_team_protected: { http: 403, smtp: '550 5.7.1' },
  internal_source_not_ruled_out: { http: 409, smtp: '550 5.7.1' },
  approval_required: { http: 409, smtp: '550 5.7.1' },
  approval_not_allowed: { http: 403, smtp: '550 5.7.1' },
  already_approved: { http: 409, smtp: '550 5.7.1' },
  announcement_not_checked: { http: 409, smtp: '550 5.7.1' },
  announcement_sent: { http: 409, smtp: '550 5.7.1' },
  payload_too_large: { http: 413, smtp: '552 5.3.4' },
  // RFC 3463 X.6.0: the content cannot be read as MIME. Permanent, so clients do not resend it.
  message_unparsable: { http: 400, smtp: '550 5.6.0' },
  rate_limited: { http: 429, smtp: '451 4.3.0' },
  idempotency_key_reused: { http: 422, smtp: '550 5.7.1' },
  // A revocation certificate (or revoked key) that does not verify against any key on file for the address.
  revocation_mismatch: { http: 422, smtp: '550 5.7.1' },
  unavailable: { http: 503, smtp: '451 4.3.0' },
  internal: { http: 500, smtp: '451 4.3.0' },
} as const satisfies Record<string, CodeSpec>;

export type ErrorCode = keyof typeof ERROR_CODES;

export interface RelayErrorOptions {
  rule?: RuleId;
  details?: Record<string, unknown>;
  /** Seconds, for rate_limited and unavailable. */
  retryAfter?: number;
  cause?: unknown;
}

/** A refusal with a registry code; the message says what to do about it. */
export class RelayError extends Error {
  readonly code: ErrorCode;
  readonly rule: RuleId | undefined;
  readonly details: Record<string, unknown> | undefined;
  readonly retryAfter: number | undefined;

  constructor(code: ErrorCode, message: string, options: RelayErrorOptions = {}) {
    super(message, options.cause === undefined ? undefined : { cause: options.cause });
    this.name = 'RelayError';
    this.code = code;
    this.rule = options.rule;
    this.details = options.details;
    this.retryAfter = options.retryAfter;
  }

  get httpStatus(): number {
    return ERROR_CODES[this.code].http;
  }

  /** The JSON error body of SPEC §4. */
  toJSON(): { error: { code: ErrorCode; message: string; rule?: RuleId; details?: Record<string, unknown> } } {
    return {
      error: {
        code: this.code,
        message: this.message,
        ...(this.rule ? { rule: this.rule } : {}),
        ...(this.details ? { details: this.details } : {}),
      },
    };
  }
}

/** Shorthand for the most common refusal. */
export function invalid(message: string, details?: Record<string, unknown>): RelayError {
  return new RelayError('invalid_request', message, details ? { details } : {});
}

export function isRelayError(err: unknown): err is RelayError {
  return err instanceof RelayError;
}

// SQLite result codes that mean "the store cannot take writes right now".
const STORE_UNAVAILABLE = /^SQLITE_(FULL|READONLY|IOERR|BUSY|LOCKED|CANTOPEN|NOMEM)/;
// PostgreSQL SQLSTATEs of the same kind (connection exceptions 08, insufficient
// resources 53, operator intervention 57, read-only transaction 25006,
// serialization and deadlock 40001/40P01), and the network errors of a server
// that is down or unreachable.
const PG_UNAVAILABLE = /^(08...|53...|57P0[1-4]|25006|40001|40P01)$/;
const NETWORK_DOWN = new Set(['ECONNREFUSED', 'ECONNRESET', 'ETIMEDOUT', 'EPIPE', 'ENOTFOUND', 'EHOSTUNREACH', 'ENETUNREACH', 'EAI_AGAIN']);

/** True when `err` says the store (SQLite file or PostgreSQL server) cannot take work right now. */
export function isStoreUnavailable(err: unknown): boolean {
  // A store closing for shutdown takes nothing more: try again (another relay, or this one restarted).
  if (err instanceof StoreClosed) return true;
  const code = (err as { code?: unknown } | null)?.code;
  if (typeof code !== 'string') return /Connection terminated|connection timeout/i.test((err as Error | null)?.message ?? '');
  return STORE_UNAVAILABLE.test(code) || PG_UNAVAILABLE.test(code) || NETWORK_DOWN.has(code);
}

/**
 * The RelayError a thrown value stands for, if any: RelayErrors as they are,
 * and a store that cannot write (disk full, read-only, I/O error) as
 * `unavailable`, so nothing is accepted that could not be kept.
 */
export function asRelayError(err: unknown): RelayError | undefined {
  if (err instanceof RelayError) return err;
  if (isStoreUnavailable(err)) {
    return new RelayError('unavailable', 'The relay cannot store messages right now, so it accepted nothing; try again shortly.', { retryAfter: 30, cause: err });
  }
  return undefined;
}
