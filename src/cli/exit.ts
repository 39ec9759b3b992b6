/**
 * Exit codes of the command-line tool and the one error type it raises for
 * its own refusals (bad flags, an unreadable file, a profile others can read).
 * Scripts branch on these codes, so they are part of the contract (README,
 * `incident-relay --help`).
 */

/** The exit codes, as documented in the README and `--help`. */
export const EXIT = {
  ok: 0,
  /** Anything not covered below: a local file, gpg, a broken audit chain. */
  failure: 1,
  /** The command line itself is wrong: unknown flag, missing argument, conflicting options. */
  usage: 2,
  /** The relay refused: a 4xx other than 401 (403, 404, 409, 422, 429 …). */
  refused: 3,
  /** The relay did not accept the token (401). */
  unauthenticated: 4,
  /** The relay could not be reached, timed out, or answered 5xx. */
  unreachable: 5,
} as const;

/** One of the documented exit codes. */
export type ExitCode = (typeof EXIT)[keyof typeof EXIT];

/** The exit code for an HTTP error status from the relay (or a proxy in front of it). */
export function exitCodeForStatus(status: number): ExitCode {
  if (status === 401) return EXIT.unauthenticated;
  if (status >= 500) return EXIT.unreachable;
  if (status >= 400) return EXIT.refused;
  return EXIT.failure;
}

/** A refusal by the CLI itself: `code` names it the way the relay names its own, `hint` says what to do. */
export class CliError extends Error {
  constructor(
    readonly code: string,
    message: string,
    readonly exitCode: ExitCode,
    readonly hint?: string,
  ) {
    super(message);
    this.name = 'CliError';
  }
}

/** A usage error (exit 2): the command line cannot be carried out as written. */
export function usageError(message: string, hint?: string): CliError {
  return new CliError('usage', message, EXIT.usage, hint);
}
