/**
 * Where the CLI finds the relay and the token: `--relay`/`--token`, else
 * INCIDENT_RELAY_URL / INCIDENT_RELAY_TOKEN, else the profile that
 * `incident-relay login` wrote (0600, in the user's config directory). A
 * profile's token goes only to the relay it was saved for.
 */
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { randomBytes } from 'node:crypto';
import { isLoopbackHost } from '../loopback.js';
import { CliError, EXIT, usageError } from './exit.js';

/** Environment variables the CLI reads. */
export const ENV = {
  relay: 'INCIDENT_RELAY_URL',
  token: 'INCIDENT_RELAY_TOKEN',
  allowInsecureHttp: 'INCIDENT_RELAY_ALLOW_INSECURE_HTTP',
} as const;

/** What `login` saves. */
export interface Profile {
  relay?: string;
  token?: string;
}

/** The relay and token a command uses, and where each came from. */
export interface Connection {
  relay: string;
  token: string | undefined;
  tokenSource: 'flag' | 'env' | 'profile' | undefined;
}

const TOKEN = /^[\x21-\x7e]{1,200}$/;

function nonEmpty(value: string | undefined): string | undefined {
  return value === undefined || value === '' ? undefined : value;
}

/** `$XDG_CONFIG_HOME/incident-relay/config.json`, else `~/.config/incident-relay/config.json`. */
export function profilePath(env: NodeJS.ProcessEnv): string {
  const xdg = nonEmpty(env['XDG_CONFIG_HOME']);
  // XDG Base Directory spec: a relative XDG_CONFIG_HOME is invalid and must be ignored.
  const base = xdg && path.isAbsolute(xdg) ? xdg : path.join(nonEmpty(env['HOME']) ?? os.homedir(), '.config');
  return path.join(base, 'incident-relay', 'config.json');
}

/**
 * The relay URL as the client uses it: http or https, no credentials, query
 * or fragment, no trailing slash (a path prefix for a relay behind a proxy is
 * kept). Plain http is refused for anything but loopback, because the token
 * would cross the network in clear, unless INCIDENT_RELAY_ALLOW_INSECURE_HTTP=true.
 */
export function normalizeRelayUrl(raw: string, allowInsecureHttp: boolean): string {
  let url: URL;
  try {
    url = new URL(raw);
  } catch {
    throw usageError(`"${raw.slice(0, 200)}" is not a URL.`, 'give the relay as http://127.0.0.1:8080 or https://relay.corp.example');
  }
  if (url.protocol !== 'http:' && url.protocol !== 'https:') throw usageError(`The relay URL must start with https:// (or http:// on this machine), not ${url.protocol}//.`);
  if (url.username !== '' || url.password !== '') throw usageError('The relay URL must not carry a user name or password; give the token with login, --token or INCIDENT_RELAY_TOKEN.');
  if (url.search !== '' || url.hash !== '') throw usageError('The relay URL must not carry a query or fragment.');
  if (url.protocol === 'http:' && !isLoopbackHost(url.hostname) && !allowInsecureHttp) {
    throw usageError(
      `Refusing to send your token to ${url.host} over plain http: anyone on the network could read it.`,
      `use https://${url.host}${url.pathname === '/' ? '' : url.pathname}, or set ${ENV.allowInsecureHttp}=true if the network path is protected some other way`,
    );
  }
  return `${url.origin}${url.pathname.replace(/\/+$/, '')}`;
}

/**
 * Reads the profile; undefined when there is none. A profile other users can
 * read or write is refused, as ssh refuses such a private key: the token in it
 * may already be known to them.
 */
export function readProfile(file: string): Profile | undefined {
  let stat: fs.Stats;
  try {
    stat = fs.statSync(file);
  } catch (err) {
    if ((err as NodeJS.ErrnoException).code === 'ENOENT') return undefined;
    throw new CliError('profile', `Cannot read ${file}: ${(err as Error).message}`, EXIT.failure);
  }
  if ((stat.mode & 0o077) !== 0) {
    throw new CliError(
      'profile',
      `${file} can be read or written by other users (mode ${(stat.mode & 0o777).toString(8).padStart(4, '0')}), so the token in it is not used.`,
      EXIT.failure,
      `chmod 600 ${file}, and if others may have read it, revoke the token (incident-relay tokens revoke <id>) and log in with a new one`,
    );
  }
  let parsed: unknown;
  try {
    parsed = JSON.parse(fs.readFileSync(file, 'utf8'));
  } catch {
    throw new CliError('profile', `${file} is not valid JSON.`, EXIT.failure, 'run incident-relay login again, or delete the file');
  }
  const profile = parsed as { relay?: unknown; token?: unknown };
  const out: Profile = {};
  if (typeof profile.relay === 'string') out.relay = profile.relay;
  if (typeof profile.token === 'string') out.token = profile.token;
  return out;
}

/**
 * Writes the profile: directory 0700, file 0600, replaced atomically (a
 * temporary file in the same directory, then rename), so a crash leaves the
 * old profile or the new one, never half of one, and never a moment at a
 * wider mode.
 */
export function writeProfile(file: string, profile: Profile): void {
  const dir = path.dirname(file);
  fs.mkdirSync(dir, { recursive: true, mode: 0o700 });
  fs.chmodSync(dir, 0o700);
  const tmp = path.join(dir, `.config.json.${randomBytes(6).toString('hex')}.tmp`);
  const fd = fs.openSync(tmp, 'wx', 0o600);
  try {
    fs.writeFileSync(fd, JSON.stringify(profile, null, 2) + '\n');
    fs.fsyncSync(fd);
  } finally {
    fs.closeSync(fd);
  }
  try {
    fs.chmodSync(tmp, 0o600);
    fs.renameSync(tmp, file);
  } catch (err) {
    fs.rmSync(tmp, { force: true });
    throw err;
  }
}

/** Checks the shape of a token without ever echoing it. */
export function checkToken(token: string, source: string): string {
  if (!TOKEN.test(token)) throw usageError(`The token from ${source} is not a relay token (1-200 printable characters, no spaces).`);
  return token;
}

/** Whether INCIDENT_RELAY_ALLOW_INSECURE_HTTP is set to true. */
export function allowInsecureHttp(env: NodeJS.ProcessEnv): boolean {
  const value = nonEmpty(env[ENV.allowInsecureHttp]);
  if (value === undefined || value === 'false') return false;
  if (value === 'true') return true;
  throw usageError(`${ENV.allowInsecureHttp} must be true or false.`);
}

function sameRelay(saved: string, relay: string, insecure: boolean): boolean {
  try {
    return normalizeRelayUrl(saved, insecure) === relay;
  } catch {
    return false;
  }
}

/**
 * Resolves the relay (flag, env, profile) and the token (flag, env, profile).
 * The profile's token is used only when the relay is the one it was saved
 * for: pointing --relay elsewhere must not hand that server your token.
 */
export function resolveConnection(input: { flags: { relay?: string | undefined; token?: string | undefined }; env: NodeJS.ProcessEnv; profile: Profile | undefined }): Connection {
  const insecure = allowInsecureHttp(input.env);
  const rawRelay = nonEmpty(input.flags.relay) ?? nonEmpty(input.env[ENV.relay]) ?? nonEmpty(input.profile?.relay);
  if (rawRelay === undefined) {
    throw usageError('No relay given.', `pass --relay URL, set ${ENV.relay}, or run: incident-relay login --relay URL`);
  }
  const relay = normalizeRelayUrl(rawRelay, insecure);
  const flagToken = nonEmpty(input.flags.token);
  if (flagToken !== undefined) return { relay, token: checkToken(flagToken, '--token'), tokenSource: 'flag' };
  const envToken = nonEmpty(input.env[ENV.token]);
  if (envToken !== undefined) return { relay, token: checkToken(envToken, ENV.token), tokenSource: 'env' };
  const profileToken = nonEmpty(input.profile?.token);
  const profileRelay = nonEmpty(input.profile?.relay);
  if (profileToken !== undefined && profileRelay !== undefined && sameRelay(profileRelay, relay, insecure)) {
    return { relay, token: checkToken(profileToken, 'the profile'), tokenSource: 'profile' };
  }
  return { relay, token: undefined, tokenSource: undefined };
}
