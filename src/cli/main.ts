#!/usr/bin/env node
/**
 * incident-relay, the command-line tool: an HTTP client of the relay's API
 * (SPEC §8 `bin`). This module builds the command tree and maps every
 * outcome to an exit code; the commands live in ./commands, the network in
 * ./client.ts, the relay/token resolution in ./config.ts.
 */
import fs from 'node:fs';
import { pathToFileURL } from 'node:url';
import { Command, CommanderError, InvalidArgumentError } from 'commander';
import { Session, type App, type CliEnvironment, type GlobalOptions } from './app.js';
import { ENV } from './config.js';
import { EXIT } from './exit.js';
import { Output } from './output.js';
import { reportError } from './report.js';
import { registerAnnounce } from './commands/announce.js';
import { registerAudit } from './commands/audit.js';
import { registerEmails } from './commands/emails.js';
import { registerIncidents } from './commands/incidents.js';
import { registerKeys } from './commands/keys.js';
import { registerLogin } from './commands/login.js';
import { registerNudge } from './commands/nudge.js';
import { registerRelayKey } from './commands/relaykey.js';
import { registerRoster } from './commands/roster.js';
import { registerTokens } from './commands/tokens.js';

/** The exit codes as `--help` shows them (the README has the same table). */
export const EXIT_CODES_HELP = `Exit codes:
  0  done
  1  anything else (a local file, gpg, a broken audit chain, a declined confirmation)
  2  usage: an unknown command or flag, a missing argument, conflicting options
  3  refused by the relay (403, 404, 409, 422, 429 …); also send --dry-run when it would be refused
  4  unauthenticated: no token, or the relay refused it (401)
  5  unreachable: connection refused, DNS, timeout, or the relay answered 5xx`;

const ROOT_HELP = `
Where the relay and token come from (first found wins):
  --relay URL / --token TOKEN   (a --token is visible to other local users in the process list)
  ${ENV.relay} / ${ENV.token}
  the profile written by "incident-relay login" (its token goes only to its own relay)

Plain http is refused except to this machine (127.0.0.0/8, ::1, localhost);
${ENV.allowInsecureHttp}=true lifts that when the path is protected some other way.

Output: tables for people; --json prints the API's JSON for scripts. Errors go
to stderr as "error <code>: <message>" with what to do.

${EXIT_CODES_HELP}

A first incident:
  echo "$TOKEN" | incident-relay login --relay http://127.0.0.1:8080
  CODENAME=$(incident-relay declare)
  incident-relay roster add $CODENAME counsel@lawfirm.example --role external --key-from-gpg
  incident-relay send $CODENAME --to counsel@lawfirm.example --subject Briefing --text "Call at 3pm." --dry-run
  incident-relay send $CODENAME --to counsel@lawfirm.example --subject Briefing --text "Call at 3pm."
  incident-relay emails $CODENAME
  incident-relay close $CODENAME`;

function timeoutSeconds(value: string): number {
  if (!/^[1-9][0-9]{0,5}$/.test(value)) throw new InvalidArgumentError('must be a whole number of seconds, at least 1.');
  return Number(value);
}

/** The package version, read from package.json next to src/ or dist/. */
export function packageVersion(): string {
  try {
    const pkg = JSON.parse(fs.readFileSync(new URL('../../package.json', import.meta.url), 'utf8')) as { version?: unknown };
    return typeof pkg.version === 'string' ? pkg.version : '0.0.0';
  } catch {
    return '0.0.0';
  }
}

/** Builds the command tree over `app`. */
export function buildProgram(app: App): Command {
  const { streams } = app.environment;
  const program = new Command('incident-relay')
    .description('Drive an incident-relay from the command line: declare incidents, manage the roster and keys, send encrypted mail, nudge, read the audit log.')
    .version(app.environment.version, '-V, --version')
    .option('--relay <url>', `the relay's address (else ${ENV.relay}, else the login profile)`)
    .option('--token <token>', `API token (else ${ENV.token}, else the login profile)`)
    .option('--json', "print the API's JSON instead of tables")
    .option('--timeout <seconds>', 'stop waiting for the relay after this long', timeoutSeconds, 60)
    .showHelpAfterError('(add --help for usage)')
    .addHelpText('after', ROOT_HELP)
    .configureOutput({ writeOut: (s) => streams.stdout.write(s), writeErr: (s) => streams.stderr.write(s) });
  registerLogin(program, app);
  registerIncidents(program, app);
  registerRoster(program, app);
  registerKeys(program, app);
  registerEmails(program, app);
  registerNudge(program, app);
  registerAnnounce(program, app);
  registerAudit(program, app);
  registerTokens(program, app);
  registerRelayKey(program, app);
  // Usage errors anywhere in the tree become exceptions main maps to exit 2, not process.exit().
  const exitOverride = (cmd: Command): void => {
    cmd.exitOverride();
    cmd.configureOutput({ writeOut: (s) => streams.stdout.write(s), writeErr: (s) => streams.stderr.write(s) });
    cmd.commands.forEach(exitOverride);
  };
  exitOverride(program);
  return program;
}

/** Runs the CLI on `argv` (user arguments only); resolves with the exit code. Never exits the process. */
export async function run(argv: string[], environment: CliEnvironment): Promise<number> {
  let session: Session | undefined;
  const app: App = {
    environment,
    session(command) {
      session = new Session(environment, command.optsWithGlobals<GlobalOptions>());
      return session;
    },
  };
  const program = buildProgram(app);
  try {
    await program.parseAsync(argv, { from: 'user' });
    return session?.exitCode ?? EXIT.ok;
  } catch (err) {
    if (err instanceof CommanderError) return err.exitCode === 0 ? EXIT.ok : EXIT.usage;
    const report = reportError(err, session?.errors);
    const out = session?.out ?? new Output(environment.streams, argv.includes('--json'));
    out.errorJson(report.json);
    out.error(report.lines);
    return report.exitCode;
  }
}

/** The process's own environment. */
export function processEnvironment(): CliEnvironment {
  return {
    env: process.env,
    stdin: process.stdin,
    streams: {
      stdout: process.stdout,
      stderr: process.stderr,
      stdoutIsTTY: process.stdout.isTTY === true,
      stderrIsTTY: process.stderr.isTTY === true,
      noColor: (process.env['NO_COLOR'] ?? '') !== '',
    },
    stderr: process.stderr,
    version: packageVersion(),
  };
}

/** Entry point for bin/incident-relay.js and `node dist/cli/main.js`. */
export async function main(): Promise<void> {
  // A reader that goes away (| head) is not an error worth a stack trace.
  process.stdout.on('error', (err: NodeJS.ErrnoException) => {
    if (err.code === 'EPIPE') process.exit(process.exitCode ?? 0);
  });
  process.exitCode = await run(process.argv.slice(2), processEnvironment());
}

function invokedDirectly(): boolean {
  try {
    return import.meta.url === pathToFileURL(fs.realpathSync(process.argv[1] ?? '')).href;
  } catch {
    return false;
  }
}

if (invokedDirectly()) void main();
