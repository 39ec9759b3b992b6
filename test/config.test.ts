/**
 * loadConfig against SPEC §7: every default, and every bad value refused with
 * a ConfigError that names the variable and never echoes a secret.
 */
import path from 'node:path';
import { fileURLToPath } from 'node:url';
import { describe, expect, it } from 'vitest';
import { announcementSender, ConfigError, loadConfig, MAX_TIMER_MS, parseDuration, testConfig, type RelayConfig } from '../src/config.js';

// Valid secrets present in every invalid case below: whatever variable is at
// fault, none of these may appear in the message.
const SECRETS = {
  RELAY_ADMIN_TOKEN: 'admintoken-s3cret-0123456789abcdef',
  RELAY_KEY_PASSPHRASE: 'passphrase-s3cret-correct-horse',
  SLACK_BOT_TOKEN: 'xoxb-s3cret-slack-token',
} as const;
const SECRET_VALUES = [...Object.values(SECRETS), 'hunter2', 'twilio-s3cret-auth', 'short-s3cret'];

const DEFAULTS: Array<[keyof RelayConfig, unknown]> = [
  ['dataDir', path.resolve('./data')],
  ['httpHost', '127.0.0.1'],
  ['httpPort', 8080],
  ['smtpHost', '127.0.0.1'],
  ['smtpPort', 2525],
  ['tlsCert', undefined],
  ['tlsKey', undefined],
  ['internalDomains', ['example.com']],
  ['internalDomainsDefaulted', true],
  ['mailDomain', 'example.com'],
  ['encrypt', 'external'],
  ['adminToken', undefined],
  ['keyFile', undefined],
  ['keyPassphrase', undefined],
  ['smtpUpstream', undefined],
  ['smtpUpstreamAllowInsecure', false],
  ['maxMessageBytes', 26_214_400],
  ['deliveryMaxAge', 24 * 3_600_000],
  ['twilio', undefined],
  ['twilioApiBaseUrl', undefined],
  ['smsNudgeInterval', 5 * 60_000],
  ['slackBotToken', undefined],
  ['slackApiUrl', undefined],
  ['slackSyncInterval', 60_000],
  ['slackArchiveOnClose', true],
  ['smtpAllowInsecureAuth', false],
  ['logLevel', 'info'],
  ['securityTeam', []],
  ['announcementFrom', undefined],
  ['announcementMaxAudience', 5000],
];

describe('loadConfig defaults (SPEC §7)', () => {
  const config = loadConfig({});
  it.each(DEFAULTS)('%s', (key, expected) => {
    expect(config[key]).toEqual(expected);
  });

  it('treats an empty value as unset', () => {
    expect(loadConfig({ RELAY_HTTP_PORT: '', RELAY_ENCRYPT: '' })).toMatchObject({ httpPort: 8080, encrypt: 'external' });
  });

  it('testConfig is the defaults plus overrides', () => {
    expect(testConfig({ httpPort: 1 })).toMatchObject({ httpPort: 1, smtpPort: 0, encrypt: 'external' });
  });
});

const VALID: Array<[string, Record<string, string>, Partial<RelayConfig>]> = [
  ['ports', { RELAY_HTTP_PORT: '0', RELAY_SMTP_PORT: '65535' }, { httpPort: 0, smtpPort: 65535 }],
  ['hosts', { RELAY_HTTP_HOST: '0.0.0.0', RELAY_SMTP_HOST: '::1' }, { httpHost: '0.0.0.0', smtpHost: '::1' }],
  [
    'domains lowercased, wildcard kept, mail domain from the first entry',
    { RELAY_INTERNAL_DOMAINS: '*.Corp.Example, corp.example' },
    { internalDomains: ['*.corp.example', 'corp.example'], internalDomainsDefaulted: false, mailDomain: 'corp.example' },
  ],
  ['punycode TLD', { RELAY_INTERNAL_DOMAINS: 'xn--80ak6aa92e.xn--p1ai' }, { internalDomains: ['xn--80ak6aa92e.xn--p1ai'] }],
  ['explicit mail domain', { RELAY_INTERNAL_DOMAINS: 'corp.example', RELAY_MAIL_DOMAIN: 'Relay.Corp.Example' }, { mailDomain: 'relay.corp.example' }],
  ['encrypt always', { RELAY_ENCRYPT: 'always' }, { encrypt: 'always' }],
  ['smtp upstream', { RELAY_SMTP_UPSTREAM: 'smtps://u:p@mail.corp.example:465' }, { smtpUpstream: 'smtps://u:p@mail.corp.example:465' }],
  ['durations', { RELAY_DELIVERY_MAX_AGE: '2d', RELAY_SMS_NUDGE_INTERVAL: '90s', RELAY_SLACK_SYNC_INTERVAL: '250ms' }, { deliveryMaxAge: 172_800_000, smsNudgeInterval: 90_000, slackSyncInterval: 250 }],
  ['booleans', { RELAY_SLACK_ARCHIVE_ON_CLOSE: 'false', RELAY_SMTP_ALLOW_INSECURE_AUTH: 'true' }, { slackArchiveOnClose: false, smtpAllowInsecureAuth: true }],
  ['insecure auth on IPv6 loopback', { RELAY_SMTP_HOST: '::1', RELAY_SMTP_ALLOW_INSECURE_AUTH: 'true' }, { smtpHost: '::1', smtpAllowInsecureAuth: true }],
  ['insecure auth on localhost', { RELAY_SMTP_HOST: 'localhost', RELAY_SMTP_ALLOW_INSECURE_AUTH: 'true' }, { smtpAllowInsecureAuth: true }],
  ['insecure auth on 127.0.0.2', { RELAY_SMTP_HOST: '127.0.0.2', RELAY_SMTP_ALLOW_INSECURE_AUTH: 'true' }, { smtpAllowInsecureAuth: true }],
  ['any listener without insecure auth', { RELAY_SMTP_HOST: '0.0.0.0', RELAY_SMTP_ALLOW_INSECURE_AUTH: 'false' }, { smtpHost: '0.0.0.0', smtpAllowInsecureAuth: false }],
  [
    'plain SMTP to the upstream allowed',
    { RELAY_SMTP_UPSTREAM: 'smtp://mail.corp.example:25', RELAY_SMTP_UPSTREAM_ALLOW_INSECURE: 'true' },
    { smtpUpstream: 'smtp://mail.corp.example:25', smtpUpstreamAllowInsecure: true },
  ],
  [
    'twilio, all three',
    { TWILIO_ACCOUNT_SID: `AC${'a'.repeat(32)}`, TWILIO_AUTH_TOKEN: 'tok', TWILIO_FROM: '+15555550100' },
    { twilio: { accountSid: `AC${'a'.repeat(32)}`, authToken: 'tok', from: '+15555550100' } },
  ],
  ['api urls lose the trailing slash', { SLACK_API_URL: 'http://127.0.0.1:9/api/', TWILIO_API_BASE_URL: 'https://twilio.proxy.example/' }, { slackApiUrl: 'http://127.0.0.1:9/api', twilioApiBaseUrl: 'https://twilio.proxy.example' }],
  ['tls pair', { RELAY_TLS_CERT: '/etc/relay/cert.pem', RELAY_TLS_KEY: '/etc/relay/key.pem' }, { tlsCert: '/etc/relay/cert.pem', tlsKey: '/etc/relay/key.pem' }],
  ['keys dir resolved', { RELAY_KEYS_DIR: 'some/keys' }, { keysDir: path.resolve('some/keys') }],
  ['message size', { RELAY_MAX_MESSAGE_BYTES: '1048576' }, { maxMessageBytes: 1_048_576 }],
  ['security team lowercased, trimmed, each once', { RELAY_SECURITY_TEAM: ' SecOps@Corp.example, ciso@corp.example,secops@corp.example,' }, { securityTeam: ['secops@corp.example', 'ciso@corp.example'] }],
  // The one normaliser (src/mail/address.ts): a Unicode domain is kept as its A-label, the form written on the wire and stored on rosters.
  ['security team with a Unicode domain, in its A-label form', { RELAY_SECURITY_TEAM: 'SecOps@Bücher.example,secops@xn--bcher-kva.example' }, { securityTeam: ['secops@xn--bcher-kva.example'] }],
  ['announcement sender with a Unicode domain, in its A-label form', { RELAY_ANNOUNCEMENT_FROM: 'Presse@Zeitung-München.example' }, { announcementFrom: 'presse@xn--zeitung-mnchen-osb.example' }],
  ['announcement sender and audience maximum', { RELAY_ANNOUNCEMENT_FROM: 'Press@Corp.example', RELAY_ANNOUNCEMENT_MAX_AUDIENCE: '100000' }, { announcementFrom: 'press@corp.example', announcementMaxAudience: 100_000 }],
];

describe('loadConfig accepts good values', () => {
  it.each(VALID)('%s', (_name, env, expected) => {
    expect(loadConfig(env)).toMatchObject(expected);
  });
});

const INVALID: Array<[variable: string, env: Record<string, string>]> = [
  ['RELAY_HTTP_PORT', { RELAY_HTTP_PORT: 'eighty' }],
  ['RELAY_HTTP_PORT', { RELAY_HTTP_PORT: '65536' }],
  ['RELAY_HTTP_PORT', { RELAY_HTTP_PORT: '-1' }],
  // Number(' ') is 0: a blank port must not silently become a random one.
  ['RELAY_HTTP_PORT', { RELAY_HTTP_PORT: ' ' }],
  ['RELAY_HTTP_PORT', { RELAY_HTTP_PORT: '0x50' }],
  ['RELAY_SMTP_PORT', { RELAY_SMTP_PORT: '25.5' }],
  ['RELAY_SMTP_PORT', { RELAY_SMTP_PORT: '1e3' }],
  ['RELAY_ENCRYPT', { RELAY_ENCRYPT: 'sometimes' }],
  ['RELAY_ENCRYPT', { RELAY_ENCRYPT: 'never' }],
  ['RELAY_INTERNAL_DOMAINS', { RELAY_INTERNAL_DOMAINS: 'corp.example,not a domain' }],
  ['RELAY_INTERNAL_DOMAINS', { RELAY_INTERNAL_DOMAINS: ',' }],
  ['RELAY_INTERNAL_DOMAINS', { RELAY_INTERNAL_DOMAINS: 'localhost' }],
  ['RELAY_INTERNAL_DOMAINS', { RELAY_INTERNAL_DOMAINS: '*' }],
  ['RELAY_INTERNAL_DOMAINS', { RELAY_INTERNAL_DOMAINS: 'user@corp.example' }],
  ['RELAY_MAIL_DOMAIN', { RELAY_MAIL_DOMAIN: '*.corp.example' }],
  ['RELAY_MAIL_DOMAIN', { RELAY_MAIL_DOMAIN: 'corp_example' }],
  ['RELAY_SMTP_UPSTREAM', { RELAY_SMTP_UPSTREAM: 'http://mail.corp.example' }],
  ['RELAY_SMTP_UPSTREAM', { RELAY_SMTP_UPSTREAM: 'mail.corp.example:25' }],
  ['RELAY_SMTP_UPSTREAM', { RELAY_SMTP_UPSTREAM: 'smtp://' }],
  ['RELAY_SMTP_UPSTREAM', { RELAY_SMTP_UPSTREAM: 'ftp://relay:hunter2@mail.corp.example' }],
  ['TWILIO_API_BASE_URL', { TWILIO_API_BASE_URL: 'ftp://twilio.example' }],
  ['SLACK_API_URL', { SLACK_API_URL: 'slack.example/api' }],
  ['TWILIO_AUTH_TOKEN', { TWILIO_ACCOUNT_SID: `AC${'a'.repeat(32)}`, TWILIO_FROM: '+15555550100' }],
  ['TWILIO_FROM', { TWILIO_ACCOUNT_SID: `AC${'a'.repeat(32)}`, TWILIO_AUTH_TOKEN: 'twilio-s3cret-auth' }],
  ['TWILIO_ACCOUNT_SID', { TWILIO_AUTH_TOKEN: 'twilio-s3cret-auth' }],
  ['TWILIO_ACCOUNT_SID', { TWILIO_ACCOUNT_SID: 'not-a-sid', TWILIO_AUTH_TOKEN: 'twilio-s3cret-auth', TWILIO_FROM: '+15555550100' }],
  ['TWILIO_FROM', { TWILIO_ACCOUNT_SID: `AC${'a'.repeat(32)}`, TWILIO_AUTH_TOKEN: 'twilio-s3cret-auth', TWILIO_FROM: '555-0100' }],
  ['RELAY_DELIVERY_MAX_AGE', { RELAY_DELIVERY_MAX_AGE: 'a day' }],
  ['RELAY_DELIVERY_MAX_AGE', { RELAY_DELIVERY_MAX_AGE: '0s' }],
  ['RELAY_DELIVERY_MAX_AGE', { RELAY_DELIVERY_MAX_AGE: '24' }],
  ['RELAY_DELIVERY_MAX_AGE', { RELAY_DELIVERY_MAX_AGE: '99999999999999999999d' }],
  ['RELAY_SMS_NUDGE_INTERVAL', { RELAY_SMS_NUDGE_INTERVAL: '-5m' }],
  ['RELAY_SMS_NUDGE_INTERVAL', { RELAY_SMS_NUDGE_INTERVAL: '5 minutes' }],
  ['RELAY_SLACK_SYNC_INTERVAL', { RELAY_SLACK_SYNC_INTERVAL: '1ms' }],
  // Past 2^31-1 ms Node fires a setInterval every millisecond instead.
  ['RELAY_SLACK_SYNC_INTERVAL', { RELAY_SLACK_SYNC_INTERVAL: '30d' }],
  ['RELAY_SLACK_ARCHIVE_ON_CLOSE', { RELAY_SLACK_ARCHIVE_ON_CLOSE: 'yes' }],
  ['RELAY_SMTP_ALLOW_INSECURE_AUTH', { RELAY_SMTP_ALLOW_INSECURE_AUTH: '1' }],
  // Tokens in clear over a network: refused at start, not only per connection.
  ['RELAY_SMTP_ALLOW_INSECURE_AUTH', { RELAY_SMTP_HOST: '0.0.0.0', RELAY_SMTP_ALLOW_INSECURE_AUTH: 'true' }],
  ['RELAY_SMTP_ALLOW_INSECURE_AUTH', { RELAY_SMTP_HOST: '::', RELAY_SMTP_ALLOW_INSECURE_AUTH: 'true' }],
  ['RELAY_SMTP_ALLOW_INSECURE_AUTH', { RELAY_SMTP_HOST: '192.0.2.2', RELAY_SMTP_ALLOW_INSECURE_AUTH: 'true' }],
  ['RELAY_SMTP_ALLOW_INSECURE_AUTH', { RELAY_SMTP_HOST: 'relay.corp.example', RELAY_SMTP_ALLOW_INSECURE_AUTH: 'true' }],
  ['RELAY_SMTP_UPSTREAM_ALLOW_INSECURE', { RELAY_SMTP_UPSTREAM_ALLOW_INSECURE: 'yes' }],
  ['RELAY_MAX_MESSAGE_BYTES', { RELAY_MAX_MESSAGE_BYTES: '100' }],
  ['RELAY_MAX_MESSAGE_BYTES', { RELAY_MAX_MESSAGE_BYTES: '2e6' }],
  ['RELAY_MAX_MESSAGE_BYTES', { RELAY_MAX_MESSAGE_BYTES: '2GB' }],
  ['RELAY_TLS_KEY', { RELAY_TLS_CERT: '/etc/relay/cert.pem' }],
  ['RELAY_TLS_CERT', { RELAY_TLS_KEY: '/etc/relay/key.pem' }],
  ['RELAY_LOG_LEVEL', { RELAY_LOG_LEVEL: 'verbose' }],
  ['RELAY_SECURITY_TEAM', { RELAY_SECURITY_TEAM: 'secops@corp.example,security team' }],
  ['RELAY_SECURITY_TEAM', { RELAY_SECURITY_TEAM: 'secops' }],
  ['RELAY_ANNOUNCEMENT_FROM', { RELAY_ANNOUNCEMENT_FROM: 'Corp Press <press@corp.example>' }],
  ['RELAY_ANNOUNCEMENT_MAX_AUDIENCE', { RELAY_ANNOUNCEMENT_MAX_AUDIENCE: '0' }],
  ['RELAY_ANNOUNCEMENT_MAX_AUDIENCE', { RELAY_ANNOUNCEMENT_MAX_AUDIENCE: '100001' }],
  ['RELAY_ANNOUNCEMENT_MAX_AUDIENCE', { RELAY_ANNOUNCEMENT_MAX_AUDIENCE: '5k' }],
  ['RELAY_FOO', { RELAY_FOO: 'bar' }],
  // A typo of a secret's name: refused by name, value not echoed.
  ['RELAY_ADMIN_TOKN', { RELAY_ADMIN_TOKN: 'short-s3cret' }],
  ['RELAY_ADMIN_TOKEN', { RELAY_ADMIN_TOKEN: 'short-s3cret' }],
];

describe('loadConfig refuses bad values, naming the variable', () => {
  it.each(INVALID)('%s = %j', (variable, env) => {
    let caught: unknown;
    try {
      loadConfig({ ...SECRETS, ...env });
    } catch (err) {
      caught = err;
    }
    expect(caught).toBeInstanceOf(ConfigError);
    const error = caught as ConfigError;
    expect(error.variable).toBe(variable);
    expect(error.message.startsWith(`${variable}: `)).toBe(true);
    for (const secret of SECRET_VALUES) expect(error.message).not.toContain(secret);
  });

  it('says why insecure AUTH is refused off loopback, and what to do', () => {
    expect(() => loadConfig({ RELAY_SMTP_HOST: '0.0.0.0', RELAY_SMTP_ALLOW_INSECURE_AUTH: 'true' })).toThrow(
      'RELAY_SMTP_ALLOW_INSECURE_AUTH: true only with a loopback RELAY_SMTP_HOST (127.0.0.1, ::1 or localhost; got "0.0.0.0"): clients on the network must use STARTTLS. Unset it, or listen on loopback for local testing',
    );
  });

  describe('RELAY_DATABASE_URL', () => {
    const PASSWORD = 's3cret-db-password';
    it.each([
      ['postgres://relay@127.0.0.1:5432/relay', true],
      ['postgres://relay@localhost/relay', true],
      ['postgresql://relay@[::1]:5432/relay', true],
      ['postgres://relay@db.corp.example/relay?sslmode=verify-full', true],
      ['postgres://relay@db.corp.example/relay?sslmode=require', true],
      ['postgres://relay@db.corp.example/relay', false],
      ['postgres://relay@db.corp.example/relay?sslmode=disable', false],
      ['postgres://relay@db.corp.example/relay?sslmode=prefer', false],
      ['postgres://relay@db.corp.example/relay?sslmode=no-verify', false],
      ['postgres://relay@10.0.0.5/relay?sslmode=allow', false],
      // pg reads the last sslmode, the ?host= parameter over the URL's host, and require under uselibpqcompat as "trust anyone".
      ['postgres://relay@db.corp.example/relay?sslmode=verify-full&sslmode=disable', false],
      ['postgres://relay@db.corp.example/relay?sslmode=disable&sslmode=verify-full', true],
      ['postgres://relay@127.0.0.1/relay?host=db.corp.example', false],
      ['postgres://relay@db.corp.example/relay?host=/var/run/postgresql', true],
      ['postgres://relay@db.corp.example/relay?sslmode=require&uselibpqcompat=true', false],
      ['postgres://relay@db.corp.example/relay?sslmode=verify-full&uselibpqcompat=true', true],
    ])('%s: accepted %s (TLS required off this machine)', (url, accepted) => {
      const withPassword = url.replace('relay@', `relay:${PASSWORD}@`);
      if (accepted) {
        expect(loadConfig({ RELAY_DATABASE_URL: withPassword }).databaseUrl).toBe(withPassword);
        return;
      }
      let caught: unknown;
      try {
        loadConfig({ RELAY_DATABASE_URL: withPassword });
      } catch (err) {
        caught = err;
      }
      expect(caught).toBeInstanceOf(ConfigError);
      expect((caught as ConfigError).message).toMatch(/^RELAY_DATABASE_URL: a database that is not on this machine needs TLS: add \?sslmode=verify-full/);
      expect((caught as ConfigError).message).not.toContain(PASSWORD);
      // The operator may say the path is trusted.
      expect(loadConfig({ RELAY_DATABASE_URL: withPassword, RELAY_DATABASE_ALLOW_INSECURE: 'true' }).databaseUrl).toBe(withPassword);
    });

    it('refuses verify-ca under uselibpqcompat, which checks the CA but not the name', () => {
      // pg reads the file as the CA; any readable file will do for the parse.
      const url = `postgres://relay:${PASSWORD}@db.corp.example/relay?sslmode=verify-ca&uselibpqcompat=true&sslrootcert=${encodeURIComponent(fileURLToPath(import.meta.url))}`;
      expect(() => loadConfig({ RELAY_DATABASE_URL: url })).toThrow(/^RELAY_DATABASE_URL: a database that is not on this machine needs TLS/);
      expect(loadConfig({ RELAY_DATABASE_URL: url.replace('verify-ca', 'verify-full') }).databaseUrl).toBe(url.replace('verify-ca', 'verify-full'));
    });

    it('refuses an sslrootcert it cannot read at start, not at the first query, without echoing the URL', () => {
      const url = `postgres://relay:${PASSWORD}@db.corp.example/relay?sslmode=verify-full&sslrootcert=/nonexistent/ca.pem`;
      expect(() => loadConfig({ RELAY_DATABASE_URL: url })).toThrow(
        'RELAY_DATABASE_URL: a postgres:// URL that pg accepts, with readable sslrootcert, sslcert and sslkey files (a file: ENOENT)',
      );
      // pg refuses verify-ca without a CA under uselibpqcompat; so does the relay, at start.
      expect(() => loadConfig({ RELAY_DATABASE_URL: `postgres://relay:${PASSWORD}@db.corp.example/relay?sslmode=verify-ca&uselibpqcompat=true` })).toThrow(
        'RELAY_DATABASE_URL: a postgres:// URL that pg accepts, with readable sslrootcert, sslcert and sslkey files (its TLS parameters do not go together)',
      );
    });

    it.each(['mysql://relay@db/relay', 'postgres:///relay', 'not a url'])('%s is refused without echoing it', (url) => {
      expect(() => loadConfig({ RELAY_DATABASE_URL: url })).toThrow(/^RELAY_DATABASE_URL: a postgres:\/\/ URL with a host/);
    });
  });

  it('names the address that is not one in RELAY_SECURITY_TEAM', () => {
    expect(() => loadConfig({ RELAY_SECURITY_TEAM: 'secops@corp.example,security team' })).toThrow(
      'RELAY_SECURITY_TEAM: a comma-separated list of email addresses such as secops@corp.example,ciso@corp.example ("security team" is not one)',
    );
  });

  it('reads only RELAY_ names it knows; other prefixes are left to other software', () => {
    expect(() => loadConfig({ TWILIO_REGION: 'ie1', SLACK_SIGNING_SECRET: 'x', PATH: '/usr/bin' })).not.toThrow();
  });
});

describe('announcementSender', () => {
  it('is RELAY_ANNOUNCEMENT_FROM, else announcements@ the mail domain, so no responder\'s address is the sender', () => {
    expect(announcementSender(loadConfig({ RELAY_INTERNAL_DOMAINS: 'corp.example' }))).toBe('announcements@corp.example');
    expect(announcementSender(loadConfig({ RELAY_MAIL_DOMAIN: 'relay.corp.example' }))).toBe('announcements@relay.corp.example');
    expect(announcementSender(loadConfig({ RELAY_ANNOUNCEMENT_FROM: 'press@corp.example' }))).toBe('press@corp.example');
  });
});

describe('parseDuration', () => {
  it.each([
    ['250ms', 250],
    ['60s', 60_000],
    ['5m', 300_000],
    ['24h', 86_400_000],
    ['7d', 604_800_000],
    [' 5m ', 300_000],
    ['5', null],
    ['5M', null],
    ['1.5h', null],
    ['', null],
  ])('%j → %s', (text, expected) => {
    expect(parseDuration(text)).toBe(expected);
  });

  it('the timer ceiling is what Node honours', () => {
    expect(MAX_TIMER_MS).toBe(2_147_483_647);
  });
});
