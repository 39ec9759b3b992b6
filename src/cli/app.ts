/**
 * What every command is handed: the printer, the relay client (resolved from
 * flags, environment and profile only when a command needs it), stdin, and
 * the error context that makes the final error report concrete.
 */
import type { Command } from 'commander';
import { RelayClient } from './client.js';
import { ENV, profilePath, readProfile, resolveConnection, type Connection } from './config.js';
import { CliError, EXIT, type ExitCode } from './exit.js';
import { Output, type OutputStreams } from './output.js';
import type { InputStream } from './prompt.js';
import type { ErrorContext } from './report.js';

/** The process around the CLI; tests hand in their own. */
export interface CliEnvironment {
  env: NodeJS.ProcessEnv;
  stdin: InputStream;
  streams: OutputStreams;
  /** The stderr stream itself, for interactive prompts. */
  stderr: NodeJS.WritableStream;
  version: string;
}

/** Global options, as commander parses them. */
export interface GlobalOptions {
  relay?: string;
  token?: string;
  json?: boolean;
  timeout: number;
}

/** One command's run: output, connection, error context. */
export class Session {
  readonly out: Output;
  readonly errors: ErrorContext = {};
  /** The exit code when the command finishes without an error (send --dry-run that would be refused: 3). */
  exitCode: ExitCode = EXIT.ok;
  private connectionCache: Connection | undefined;

  constructor(
    readonly environment: CliEnvironment,
    readonly globals: GlobalOptions,
  ) {
    this.out = new Output(environment.streams, globals.json === true);
  }

  get env(): NodeJS.ProcessEnv {
    return this.environment.env;
  }

  /** The login profile's path. */
  get profileFile(): string {
    return profilePath(this.env);
  }

  /** The relay and token from flags, environment, profile. */
  connection(): Connection {
    this.connectionCache ??= resolveConnection({ flags: { relay: this.globals.relay, token: this.globals.token }, env: this.env, profile: readProfile(this.profileFile) });
    const c = this.connectionCache;
    if (c.tokenSource) this.errors.tokenSource = c.tokenSource === 'flag' ? '--token' : c.tokenSource === 'env' ? ENV.token : this.profileFile;
    return c;
  }

  /** A client of the relay; `needsToken` refuses locally (exit 4) when there is no token at all. */
  client(needsToken = true): RelayClient {
    const { relay, token } = this.connection();
    if (needsToken && token === undefined) {
      throw new CliError('unauthenticated', `No token for ${relay}.`, EXIT.unauthenticated, `run incident-relay login --relay ${relay}, or set ${ENV.token}`);
    }
    return this.clientFor(relay, token);
  }

  /** A client for an explicit relay and token (login checks a token before saving it). */
  clientFor(relay: string, token: string | undefined): RelayClient {
    return new RelayClient({ relay, token, timeoutMs: this.globals.timeout * 1000, userAgent: `incident-relay-cli/${this.environment.version}` });
  }
}

/** Creates the Session for the command being run; main keeps the last one for the error report. */
export interface App {
  environment: CliEnvironment;
  session(command: Command): Session;
}
