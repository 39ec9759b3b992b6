/**
 * Turns whatever stopped a command into what the user reads and the exit
 * code scripts see: `error <code>: <message>`, the details the relay gave
 * (recipients, missing keys, reasons), and "what to do" lines naming the
 * command that fixes it. Pure: the error and a little context in, lines out.
 */
import { ApiError, UnreachableError } from './client.js';
import { CliError, EXIT, exitCodeForStatus, type ExitCode } from './exit.js';
import { cell, sanitize } from './output.js';

/** What the running command knows that makes a hint concrete. */
export interface ErrorContext {
  codename?: string;
  /** The Idempotency-Key of a send or nudge, so a retry cannot send twice. */
  idempotencyKey?: string;
  /** Where the token came from, to say which one the relay refused. */
  tokenSource?: string;
  /** The announcement a command worked on. */
  announcementId?: string;
}

/** The report of one failure. */
export interface ErrorReport {
  exitCode: ExitCode;
  lines: string[];
  /** The error as JSON, for --json (the API's own body for relay refusals). */
  json: { error: { code: string; message: string; rule?: string; details?: Record<string, unknown> }; exitCode: number };
}

function strings(value: unknown): string[] {
  return Array.isArray(value) ? value.filter((v): v is string => typeof v === 'string') : [];
}

function detailLines(details: Record<string, unknown> | undefined): string[] {
  if (!details) return [];
  const lines: string[] = [];
  for (const [name, value] of Object.entries(details)) {
    if (value !== null && typeof value === 'object' && !Array.isArray(value)) {
      // e.g. reasons: {"counsel@lawfirm.example": "key expired on …"}
      for (const [key, inner] of Object.entries(value as Record<string, unknown>)) lines.push(`  ${sanitize(name)}: ${sanitize(key)}: ${cell(inner)}`);
    } else {
      lines.push(`  ${sanitize(name)}: ${cell(value)}`);
    }
  }
  return lines;
}

const CODENAME = '<codename>';

/** The "what to do" lines for a refusal by the relay. */
export function hintsFor(err: ApiError, context: ErrorContext): string[] {
  const codename = context.codename ?? CODENAME;
  const recipients = strings(err.details?.['recipients']);
  const retry = context.idempotencyKey ? ` with --idempotency-key ${context.idempotencyKey}` : '';
  switch (err.code) {
    case 'missing_public_key':
      return (recipients.length > 0 ? recipients : ['<email>']).map((r) => `incident-relay roster update ${codename} ${sanitize(r)} --key FILE   (or --key-from-gpg ${sanitize(r)})`);
    case 'unusable_public_key':
      return (recipients.length > 0 ? recipients : ['<email>']).map((r) => `ask ${sanitize(r)} for a current key, then: incident-relay roster update ${codename} ${sanitize(r)} --key FILE`);
    case 'recipient_not_on_roster':
      return [
        ...(recipients.length > 0 ? recipients : ['<email>']).map((r) => `a commander or deputy adds them: incident-relay roster add ${codename} ${sanitize(r)} --role ROLE`),
        'or send without them',
        `people outside the response team hear through an approved announcement: incident-relay announce draft ${codename} --help`,
      ];
    case 'security_team_missing':
      return [`a commander or deputy adds one: incident-relay roster add ${codename} EMAIL --role security   (or an admin sets RELAY_SECURITY_TEAM for every new incident)`];
    case 'security_team_protected':
      return ['only an admin removes or demotes a member of RELAY_SECURITY_TEAM: ask one'];
    case 'internal_source_not_ruled_out':
      return [`once forensics shows it, the commander records it: incident-relay announce internal-source ${codename} --ruled-out --note "…"`];
    case 'approval_required':
      return [`ask the commander and a member with role legal or communications (not the author): incident-relay announce approve ${codename} ${sanitize(context.announcementId ?? '<id>')}`];
    case 'approval_not_allowed':
      return ['the commander and members with role legal or communications approve, never the announcement\'s author'];
    case 'already_approved':
      return ['the second approval must come from someone else'];
    case 'announcement_not_checked':
      return [`check it first: incident-relay announce check ${codename} ${sanitize(context.announcementId ?? '<id>')}`];
    case 'announcement_sent':
      return [`it went out as it is; to correct it, write a new, dated one: incident-relay announce draft ${codename} …`];
    case 'statement_rejected':
    case 'incident_details_exposed':
    case 'audience_invalid':
      return [`edit it (incident-relay announce edit ${codename} ${sanitize(context.announcementId ?? '<id>')} …) and check it again`];
    case 'audience_too_large':
      return ['split the audience into several announcements, or ask an admin about RELAY_ANNOUNCEMENT_MAX_AUDIENCE'];
    case 'incident_closed':
      return [`the commander reopens it (incident-relay reopen ${codename}) or declares a new incident (incident-relay declare)`];
    case 'not_found':
      return /^No route /.test(err.message)
        ? ['this relay predates this command; ask an admin to upgrade it']
        : ['check the codename, address or id: incident-relay incidents lists the incidents whose roster holds you'];
    case 'method_not_allowed':
      return ['this relay predates this command; ask an admin to upgrade it'];
    case 'unauthenticated':
      return [`the token${context.tokenSource ? ` (from ${context.tokenSource})` : ''} was refused: run incident-relay login with a current token, or ask an admin for a new one`];
    case 'rate_limited':
      return [`wait ${err.retryAfter ?? 'a few'} s, then run the same command again${retry}`];
    case 'payload_too_large':
      return ['send smaller attachments, or fewer at once'];
    case 'unavailable':
      // Slack switched off is not a passing outage: waiting will not fix it.
      if (err.details?.['slack'] === 'off') return ['nothing to retry: an admin turns Slack on by setting SLACK_BOT_TOKEN on the relay'];
      return [`try again shortly${retry}; if it persists, tell an admin`];
    case 'internal':
      return [`try again shortly${retry}; if it persists, tell an admin`];
    default:
      if (err.status >= 500) return [`try again shortly${retry}; if it persists, tell an admin`];
      return [];
  }
}

/** The report for any thrown value; unknown errors are exit 1 with their message only. */
export function reportError(err: unknown, context: ErrorContext = {}): ErrorReport {
  let code: string;
  let message: string;
  let exitCode: ExitCode;
  let rule: string | undefined;
  let details: Record<string, unknown> | undefined;
  let hints: string[];
  if (err instanceof ApiError) {
    ({ code, message, rule, details } = err);
    exitCode = exitCodeForStatus(err.status);
    hints = hintsFor(err, context);
  } else if (err instanceof UnreachableError) {
    code = 'unreachable';
    message = err.message;
    exitCode = EXIT.unreachable;
    hints = ['check the address (--relay, INCIDENT_RELAY_URL or the login profile) and that the relay is running'];
    if (err.mayHaveArrived && context.idempotencyKey) {
      hints.push(`the relay may have carried it out before the failure; run the same command again with --idempotency-key ${context.idempotencyKey} so nothing is sent twice`);
    }
  } else if (err instanceof CliError) {
    code = err.code;
    message = err.message;
    exitCode = err.exitCode;
    hints = err.hint ? [err.hint] : [];
  } else {
    code = 'failure';
    message = err instanceof Error ? err.message : String(err);
    exitCode = EXIT.failure;
    hints = [];
  }
  const lines = [`error ${sanitize(code)}: ${sanitize(message)}`];
  if (rule) lines.push(`  rule: ${sanitize(rule)}`);
  lines.push(...detailLines(details));
  if (err instanceof ApiError && err.retryAfter !== undefined && err.code !== 'rate_limited') lines.push(`  retry after: ${err.retryAfter} s`);
  for (const hint of hints) lines.push(`  what to do: ${hint}`);
  const json: ErrorReport['json'] = { error: { code, message, ...(rule ? { rule } : {}), ...(details ? { details } : {}) }, exitCode };
  return { exitCode, lines, json };
}
