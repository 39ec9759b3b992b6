/**
 * Configuration from the environment (SPEC §7), parsed and validated once at
 * start. An invalid value stops the relay with a message naming the variable.
 */
import path from 'node:path';
import fs from 'node:fs';
import { z } from 'zod';
import { isLoopbackHost } from './loopback.js';
import { databaseIsLocalOrVerified } from './store/database-url.js';
import { normalisedEmail } from './validation.js';

export type Duration = number; // milliseconds

const DURATION_UNITS: Record<string, number> = { ms: 1, s: 1000, m: 60_000, h: 3_600_000, d: 86_400_000 };

/** Parses `250ms`, `60s`, `5m`, `24h`, `7d`; returns null when malformed. */
export function parseDuration(text: string): Duration | null {
  const match = /^(\d+)(ms|s|m|h|d)$/.exec(text.trim());
  if (!match) return null;
  const [, amount, unit] = match;
  return Number(amount) * DURATION_UNITS[unit as string]!;
}

export interface TwilioConfig {
  accountSid: string;
  authToken: string;
  from: string;
}

export interface RelayConfig {
  dataDir: string;
  /** RELAY_DATABASE_URL: PostgreSQL shared by several relays; undefined = SQLite in dataDir. */
  databaseUrl: string | undefined;
  httpHost: string;
  httpPort: number;
  smtpHost: string;
  smtpPort: number;
  tlsCert: string | undefined;
  tlsKey: string | undefined;
  internalDomains: string[];
  /** True when RELAY_INTERNAL_DOMAINS was not set and example.com is in use. */
  internalDomainsDefaulted: boolean;
  mailDomain: string;
  encrypt: 'external' | 'always';
  adminToken: string | undefined;
  keyFile: string | undefined;
  keyPassphrase: string | undefined;
  keysDir: string | undefined;
  smtpUpstream: string | undefined;
  /** RELAY_SMTP_UPSTREAM_ALLOW_INSECURE: allow plain SMTP to a non-loopback smtp:// upstream that does not offer STARTTLS. */
  smtpUpstreamAllowInsecure: boolean;
  maxMessageBytes: number;
  deliveryMaxAge: Duration;
  /** How long a relay holds a claimed delivery without renewing (takeover time after a crash). */
  deliveryLease: Duration;
  twilio: TwilioConfig | undefined;
  twilioApiBaseUrl: string | undefined;
  smsNudgeInterval: Duration;
  slackBotToken: string | undefined;
  slackApiUrl: string | undefined;
  slackSyncInterval: Duration;
  slackArchiveOnClose: boolean;
  smtpAllowInsecureAuth: boolean;
  logLevel: string;
  /** RELAY_SECURITY_TEAM: addresses (lowercased) that join every new incident's roster as `security` (rule `security-team`). */
  securityTeam: string[];
  /** RELAY_ANNOUNCEMENT_FROM: the From of announcements, so no responder's address reaches the audience; undefined = announcements@ the mail domain (announcementSender). */
  announcementFrom: string | undefined;
  /** RELAY_ANNOUNCEMENT_MAX_AUDIENCE: the most addresses one announcement may go to. */
  announcementMaxAudience: number;
}

/** Every variable the relay reads; anything else starting with RELAY_ is refused as a likely typo. */
export const CONFIG_VARIABLES = [
  'RELAY_DATA_DIR',
  'RELAY_DATABASE_URL',
  'RELAY_DATABASE_ALLOW_INSECURE',
  'RELAY_HTTP_HOST',
  'RELAY_HTTP_PORT',
  'RELAY_SMTP_HOST',
  'RELAY_SMTP_PORT',
  'RELAY_TLS_CERT',
  'RELAY_TLS_KEY',
  'RELAY_INTERNAL_DOMAINS',
  'RELAY_MAIL_DOMAIN',
  'RELAY_ENCRYPT',
  'RELAY_ADMIN_TOKEN',
  'RELAY_KEY_FILE',
  'RELAY_KEY_PASSPHRASE',
  'RELAY_KEYS_DIR',
  'RELAY_SMTP_UPSTREAM',
  'RELAY_SMTP_UPSTREAM_ALLOW_INSECURE',
  'RELAY_MAX_MESSAGE_BYTES',
  'RELAY_DELIVERY_MAX_AGE',
  'RELAY_DELIVERY_LEASE',
  'TWILIO_ACCOUNT_SID',
  'TWILIO_AUTH_TOKEN',
  'TWILIO_FROM',
  'TWILIO_API_BASE_URL',
  'RELAY_SMS_NUDGE_INTERVAL',
  'SLACK_BOT_TOKEN',
  'SLACK_API_URL',
  'RELAY_SLACK_SYNC_INTERVAL',
  'RELAY_SLACK_ARCHIVE_ON_CLOSE',
  'RELAY_SMTP_ALLOW_INSECURE_AUTH',
  'RELAY_LOG_LEVEL',
  'RELAY_SECURITY_TEAM',
  'RELAY_ANNOUNCEMENT_FROM',
  'RELAY_ANNOUNCEMENT_MAX_AUDIENCE',
] as const;

/** Variables whose values are never printed. */
export const SECRET_VARIABLES = new Set(['RELAY_ADMIN_TOKEN', 'RELAY_KEY_PASSPHRASE', 'TWILIO_AUTH_TOKEN', 'SLACK_BOT_TOKEN', 'RELAY_DATABASE_URL']);

/** Thrown for invalid configuration; the message names the variable and what is expected. */
export class ConfigError extends Error {
  constructor(
    readonly variable: string,
    expected: string,
  ) {
    super(`${variable}: ${expected}`);
    this.name = 'ConfigError';
  }
}

// The top-level label may be an IDN in punycode (xn--p1ai), so it is not letters only.
const DOMAIN = /^(\*\.)?([a-z0-9]([a-z0-9-]{0,61}[a-z0-9])?\.)+([a-z]{2,63}|xn--[a-z0-9-]{1,59})$/;
const E164 = /^\+[1-9]\d{6,14}$/;

// Digits only: z.coerce.number alone would read " " as 0 (a random port), and
// accept 0x50, 1e3 or 80.0, none of which an operator means as a port.
const port = z.string().regex(/^\d{1,5}$/).transform(Number).pipe(z.number().int().min(0).max(65535));
const byteCount = z.string().regex(/^\d{1,10}$/).transform(Number).pipe(z.number().int().min(1024).max(1024 ** 3));
const bool = z.enum(['true', 'false']).transform((v) => v === 'true');

/** Longest delay Node timers honour; a longer setInterval silently fires every 1 ms instead. */
export const MAX_TIMER_MS = 2 ** 31 - 1;
// Comparisons (ages, spacing) need no timer, but still a sane bound: ten years.
const MAX_DURATION_MS = 10 * 365 * 86_400_000;

function duration(variable: string, raw: string, min = 1, max = MAX_DURATION_MS): Duration {
  const value = parseDuration(raw);
  if (value === null || value < min || value > max) {
    throw new ConfigError(variable, `a duration such as 60s, 5m or 24h, between ${min} ms and ${max} ms (got ${JSON.stringify(raw)})`);
  }
  return value;
}

function smtpUrl(variable: string, raw: string | undefined): string | undefined {
  if (raw === undefined) return undefined;
  // new URL accepts `smtp://` with no host; a relay pointed at nothing would fail only at the first send.
  const ok = z.url({ protocol: /^smtps?$/ }).safeParse(raw).success && URL.canParse(raw) && new URL(raw).hostname !== '';
  // The URL may carry credentials, so the message never echoes it.
  if (!ok) throw new ConfigError(variable, 'an smtp:// or smtps:// URL with a host, e.g. smtp://user:pass@mail.corp.example:587');
  return raw;
}

function databaseUrl(variable: string, raw: string | undefined, allowInsecure: boolean): string | undefined {
  if (raw === undefined) return undefined;
  // The URL carries a password, so the message never echoes it.
  const ok = URL.canParse(raw) && ['postgres:', 'postgresql:'].includes(new URL(raw).protocol) && new URL(raw).hostname !== '';
  if (!ok) throw new ConfigError(variable, 'a postgres:// URL with a host, e.g. postgres://relay:secret@db.corp.example:5432/relay?sslmode=verify-full (unset for SQLite in RELAY_DATA_DIR)');
  let safe: boolean;
  try {
    safe = databaseIsLocalOrVerified(raw);
  } catch (err) {
    // pg reads sslrootcert, sslcert and sslkey when it parses the URL: a missing file fails here, not at the first query.
    // The reason names a file error's code, never the URL (it carries the password).
    const reason = err instanceof Error && 'code' in err && typeof err.code === 'string' ? `a file: ${err.code}` : 'its TLS parameters do not go together';
    throw new ConfigError(variable, `a postgres:// URL that pg accepts, with readable sslrootcert, sslcert and sslkey files (${reason})`);
  }
  // The database holds queued internal mail and every address of every
  // incident: off this machine it is reached over verified TLS, or not at all
  // unless the operator says the path is trusted.
  if (!safe && !allowInsecure) {
    throw new ConfigError(
      variable,
      `a database that is not on this machine needs TLS: add ?sslmode=verify-full (and sslrootcert=/path/to/ca.pem for a private CA) to the URL, once, without uselibpqcompat, or set RELAY_DATABASE_ALLOW_INSECURE=true where the network path is trusted`,
    );
  }
  return raw;
}

function httpUrl(variable: string, raw: string | undefined): string | undefined {
  if (raw === undefined || raw === '') return undefined;
  if (!z.url({ protocol: /^https?$/ }).safeParse(raw).success) throw new ConfigError(variable, 'an http:// or https:// URL');
  return raw.replace(/\/+$/, '');
}

function field<T>(variable: string, schema: z.ZodType<T>, raw: string | undefined, expected: string): T {
  const result = schema.safeParse(raw);
  if (!result.success) throw new ConfigError(variable, `${expected} (got ${SECRET_VARIABLES.has(variable) ? '[redacted]' : JSON.stringify(raw)})`);
  return result.data;
}

/** A comma-separated list of addresses, normalised (lowercase, A-label domain), each once; empty when unset. */
function addressList(variable: string, raw: string | undefined): string[] {
  const entries = (raw ?? '')
    .split(',')
    .map((a) => a.trim())
    .filter((a) => a !== '');
  const normalised: string[] = [];
  for (const entry of entries) {
    const address = normalisedEmail(entry);
    if (address === undefined) throw new ConfigError(variable, `a comma-separated list of email addresses such as secops@corp.example,ciso@corp.example (${JSON.stringify(entry.slice(0, 80))} is not one)`);
    normalised.push(address);
  }
  return [...new Set(normalised)];
}

/** Reads and validates the configuration; throws ConfigError naming the first bad variable. */
export function loadConfig(env: NodeJS.ProcessEnv = process.env): RelayConfig {
  const known = new Set<string>(CONFIG_VARIABLES);
  for (const name of Object.keys(env)) {
    if (name.startsWith('RELAY_') && !known.has(name)) {
      throw new ConfigError(name, `unknown variable; the relay reads ${CONFIG_VARIABLES.filter((v) => v.startsWith('RELAY_')).join(', ')}`);
    }
  }
  const get = (name: (typeof CONFIG_VARIABLES)[number]): string | undefined => {
    const value = env[name];
    return value === undefined || value === '' ? undefined : value;
  };
  const rawDomains = get('RELAY_INTERNAL_DOMAINS');
  const internalDomains = (rawDomains ?? 'example.com')
    .split(',')
    .map((d) => d.trim().toLowerCase())
    .filter((d) => d !== '');
  const badDomain = internalDomains.find((d) => !DOMAIN.test(d));
  if (internalDomains.length === 0 || badDomain !== undefined) {
    const got = badDomain === undefined ? '' : ` (${JSON.stringify(badDomain)} is not a domain)`;
    throw new ConfigError('RELAY_INTERNAL_DOMAINS', `a comma-separated list of domains such as corp.example,*.corp.example${got}`);
  }
  const mailDomain = (get('RELAY_MAIL_DOMAIN') ?? internalDomains[0]!.replace(/^\*\./, '')).toLowerCase();
  if (!DOMAIN.test(mailDomain) || mailDomain.startsWith('*.')) throw new ConfigError('RELAY_MAIL_DOMAIN', `a domain name such as corp.example (got ${JSON.stringify(mailDomain)})`);

  const smtpUpstream = smtpUrl('RELAY_SMTP_UPSTREAM', get('RELAY_SMTP_UPSTREAM'));

  const tlsCert = get('RELAY_TLS_CERT');
  const tlsKey = get('RELAY_TLS_KEY');
  // A certificate without its key (or the reverse) would otherwise fall back to a self-signed pair unnoticed.
  if ((tlsCert === undefined) !== (tlsKey === undefined)) {
    throw new ConfigError(tlsCert === undefined ? 'RELAY_TLS_CERT' : 'RELAY_TLS_KEY', 'set both RELAY_TLS_CERT and RELAY_TLS_KEY, or neither for a generated self-signed certificate');
  }

  const sid = get('TWILIO_ACCOUNT_SID');
  const authToken = get('TWILIO_AUTH_TOKEN');
  const from = get('TWILIO_FROM');
  const twilioSet = [sid, authToken, from].filter((v) => v !== undefined).length;
  if (twilioSet !== 0 && twilioSet !== 3) {
    throw new ConfigError(sid === undefined ? 'TWILIO_ACCOUNT_SID' : authToken === undefined ? 'TWILIO_AUTH_TOKEN' : 'TWILIO_FROM', 'set all of TWILIO_ACCOUNT_SID, TWILIO_AUTH_TOKEN and TWILIO_FROM, or none');
  }
  if (sid !== undefined && !/^AC[0-9a-fA-F]{32}$/.test(sid)) throw new ConfigError('TWILIO_ACCOUNT_SID', 'an account SID: AC followed by 32 hex digits');
  if (from !== undefined && !E164.test(from) && !/^MG[0-9a-fA-F]{32}$/.test(from)) {
    throw new ConfigError('TWILIO_FROM', 'an E.164 number such as +15555550100, or a messaging service SID (MG…)');
  }

  const adminToken = get('RELAY_ADMIN_TOKEN');
  if (adminToken !== undefined && adminToken.length < 24) throw new ConfigError('RELAY_ADMIN_TOKEN', 'at least 24 characters of random');

  const smtpHost = get('RELAY_SMTP_HOST') ?? '127.0.0.1';
  const smtpAllowInsecureAuth = field('RELAY_SMTP_ALLOW_INSECURE_AUTH', bool, get('RELAY_SMTP_ALLOW_INSECURE_AUTH') ?? 'false', 'true or false');
  // Tokens in clear are tolerable only where nothing crosses a network; the
  // listener also refuses it to any client that is not on loopback.
  if (smtpAllowInsecureAuth && !isLoopbackHost(smtpHost)) {
    throw new ConfigError(
      'RELAY_SMTP_ALLOW_INSECURE_AUTH',
      `true only with a loopback RELAY_SMTP_HOST (127.0.0.1, ::1 or localhost; got ${JSON.stringify(smtpHost)}): clients on the network must use STARTTLS. Unset it, or listen on loopback for local testing`,
    );
  }

  const keysDir = get('RELAY_KEYS_DIR') ?? (fs.existsSync('keys') ? 'keys' : undefined);

  const announcementFromRaw = get('RELAY_ANNOUNCEMENT_FROM');
  const announcementFrom = announcementFromRaw === undefined ? undefined : normalisedEmail(announcementFromRaw);
  if (announcementFromRaw !== undefined && announcementFrom === undefined) {
    throw new ConfigError('RELAY_ANNOUNCEMENT_FROM', `an email address such as communications@corp.example (got ${JSON.stringify(announcementFromRaw.slice(0, 80))})`);
  }

  return {
    dataDir: path.resolve(get('RELAY_DATA_DIR') ?? './data'),
    databaseUrl: databaseUrl('RELAY_DATABASE_URL', get('RELAY_DATABASE_URL'), field('RELAY_DATABASE_ALLOW_INSECURE', bool, get('RELAY_DATABASE_ALLOW_INSECURE') ?? 'false', 'true or false')),
    httpHost: get('RELAY_HTTP_HOST') ?? '127.0.0.1',
    httpPort: field('RELAY_HTTP_PORT', port, get('RELAY_HTTP_PORT') ?? '8080', 'a port number 0-65535'),
    smtpHost,
    smtpPort: field('RELAY_SMTP_PORT', port, get('RELAY_SMTP_PORT') ?? '2525', 'a port number 0-65535'),
    tlsCert,
    tlsKey,
    internalDomains,
    internalDomainsDefaulted: rawDomains === undefined,
    mailDomain,
    encrypt: field('RELAY_ENCRYPT', z.enum(['external', 'always']), get('RELAY_ENCRYPT') ?? 'external', 'external or always'),
    adminToken,
    keyFile: get('RELAY_KEY_FILE'),
    keyPassphrase: get('RELAY_KEY_PASSPHRASE'),
    keysDir: keysDir === undefined ? undefined : path.resolve(keysDir),
    smtpUpstream,
    smtpUpstreamAllowInsecure: field('RELAY_SMTP_UPSTREAM_ALLOW_INSECURE', bool, get('RELAY_SMTP_UPSTREAM_ALLOW_INSECURE') ?? 'false', 'true or false'),
    maxMessageBytes: field('RELAY_MAX_MESSAGE_BYTES', byteCount, get('RELAY_MAX_MESSAGE_BYTES') ?? '26214400', 'a byte count between 1024 and 1073741824'),
    deliveryMaxAge: duration('RELAY_DELIVERY_MAX_AGE', get('RELAY_DELIVERY_MAX_AGE') ?? '24h'),
    deliveryLease: duration('RELAY_DELIVERY_LEASE', get('RELAY_DELIVERY_LEASE') ?? '60s', 1000, 3_600_000),
    twilio: sid && authToken && from ? { accountSid: sid, authToken, from } : undefined,
    twilioApiBaseUrl: httpUrl('TWILIO_API_BASE_URL', get('TWILIO_API_BASE_URL')),
    smsNudgeInterval: duration('RELAY_SMS_NUDGE_INTERVAL', get('RELAY_SMS_NUDGE_INTERVAL') ?? '5m', 0),
    slackBotToken: get('SLACK_BOT_TOKEN'),
    slackApiUrl: httpUrl('SLACK_API_URL', get('SLACK_API_URL')),
    slackSyncInterval: duration('RELAY_SLACK_SYNC_INTERVAL', get('RELAY_SLACK_SYNC_INTERVAL') ?? '60s', 100, MAX_TIMER_MS),
    slackArchiveOnClose: field('RELAY_SLACK_ARCHIVE_ON_CLOSE', bool, get('RELAY_SLACK_ARCHIVE_ON_CLOSE') ?? 'true', 'true or false'),
    smtpAllowInsecureAuth,
    logLevel: field('RELAY_LOG_LEVEL', z.enum(['fatal', 'error', 'warn', 'info', 'debug', 'trace', 'silent']), get('RELAY_LOG_LEVEL') ?? 'info', 'one of fatal, error, warn, info, debug, trace, silent'),
    securityTeam: addressList('RELAY_SECURITY_TEAM', get('RELAY_SECURITY_TEAM')),
    announcementFrom,
    announcementMaxAudience: field(
      'RELAY_ANNOUNCEMENT_MAX_AUDIENCE',
      z.string().regex(/^\d{1,6}$/).transform(Number).pipe(z.number().int().min(1).max(100_000)),
      get('RELAY_ANNOUNCEMENT_MAX_AUDIENCE') ?? '5000',
      'a whole number of addresses between 1 and 100000',
    ),
  };
}

/** The From (and MAIL FROM) of announcements: RELAY_ANNOUNCEMENT_FROM, else announcements@RELAY_MAIL_DOMAIN. */
export function announcementSender(config: Pick<RelayConfig, 'announcementFrom' | 'mailDomain'>): string {
  return config.announcementFrom ?? `announcements@${config.mailDomain}`;
}

/**
 * Builds a config for tests and embedders: the defaults with overrides, no
 * environment read. Listeners default to port 0 (any free port) so relays
 * started side by side never collide.
 */
export function testConfig(overrides: Partial<RelayConfig> = {}): RelayConfig {
  return { ...loadConfig({}), httpPort: 0, smtpPort: 0, ...overrides };
}
