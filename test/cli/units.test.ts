/**
 * The CLI's pure parts, table-driven: where the relay and token come from,
 * which URLs may carry a token, how refusals read and which exit code they
 * get, the dry-run verdict, attachment types, and what reaches the terminal.
 */
import { describe, expect, it } from 'vitest';
import { contentTypeFor } from '../../src/cli/attachments.js';
import { ApiError, UnreachableError, apiPath } from '../../src/cli/client.js';
import { normalizeRelayUrl, profilePath, resolveConnection } from '../../src/cli/config.js';
import { CliError, EXIT, exitCodeForStatus } from '../../src/cli/exit.js';
import { childEnv } from '../../src/cli/keymaterial.js';
import { formatTime, renderTable, sanitize } from '../../src/cli/output.js';
import { reportError } from '../../src/cli/report.js';
import { collectList, isoTime } from '../../src/cli/commands/common.js';
import { renderVerdict, type DryRunAnswer } from '../../src/cli/verdict.js';
import type { App } from '../../src/cli/app.js';
import { buildProgram } from '../../src/cli/main.js';
import { ROSTER_ROLES } from '../../src/store/incidents.js';

const RELAY = 'https://relay.corp.example';

describe('resolveConnection', () => {
  const profile = { relay: RELAY, token: 'ir_profile' };
  const cases: { name: string; flags: { relay?: string; token?: string }; env: Record<string, string>; want: { relay: string; token: string | undefined; tokenSource: string | undefined } }[] = [
    { name: 'profile alone', flags: {}, env: {}, want: { relay: RELAY, token: 'ir_profile', tokenSource: 'profile' } },
    { name: 'env token over profile', flags: {}, env: { INCIDENT_RELAY_TOKEN: 'ir_env' }, want: { relay: RELAY, token: 'ir_env', tokenSource: 'env' } },
    { name: 'flag token over env', flags: { token: 'ir_flag' }, env: { INCIDENT_RELAY_TOKEN: 'ir_env' }, want: { relay: RELAY, token: 'ir_flag', tokenSource: 'flag' } },
    { name: 'env relay over profile relay: the profile token stays home', flags: {}, env: { INCIDENT_RELAY_URL: 'https://other.example' }, want: { relay: 'https://other.example', token: undefined, tokenSource: undefined } },
    { name: 'flag relay over env relay', flags: { relay: 'https://flag.example' }, env: { INCIDENT_RELAY_URL: 'https://other.example', INCIDENT_RELAY_TOKEN: 'ir_env' }, want: { relay: 'https://flag.example', token: 'ir_env', tokenSource: 'env' } },
    { name: 'the same relay spelled with a slash keeps the profile token', flags: { relay: `${RELAY}/` }, env: {}, want: { relay: RELAY, token: 'ir_profile', tokenSource: 'profile' } },
    { name: 'empty variables count as unset', flags: {}, env: { INCIDENT_RELAY_URL: '', INCIDENT_RELAY_TOKEN: '' }, want: { relay: RELAY, token: 'ir_profile', tokenSource: 'profile' } },
  ];
  for (const c of cases) {
    it(c.name, () => {
      expect(resolveConnection({ flags: c.flags, env: c.env, profile })).toEqual(c.want);
    });
  }

  it('no relay anywhere is a usage error that says where to give one', () => {
    expect(() => resolveConnection({ flags: {}, env: {}, profile: undefined })).toThrow(expect.objectContaining({ exitCode: EXIT.usage, message: 'No relay given.', hint: 'pass --relay URL, set INCIDENT_RELAY_URL, or run: incident-relay login --relay URL' }));
  });

  it('a token with a space or a newline is refused without being echoed', () => {
    const err = (() => {
      try {
        resolveConnection({ flags: { token: 'ir_secret value' }, env: {}, profile });
      } catch (e) {
        return e as CliError;
      }
      throw new Error('accepted');
    })();
    expect(err.message).toBe('The token from --token is not a relay token (1-200 printable characters, no spaces).');
    expect(err.message).not.toContain('secret');
  });
});

describe('normalizeRelayUrl', () => {
  const ok: [string, boolean, string][] = [
    ['http://127.0.0.1:8080/', false, 'http://127.0.0.1:8080'],
    ['http://localhost:8080', false, 'http://localhost:8080'],
    ['http://[::1]:8080', false, 'http://[::1]:8080'],
    ['http://127.0.0.2:8080', false, 'http://127.0.0.2:8080'],
    ['https://relay.corp.example/incident-relay/', false, 'https://relay.corp.example/incident-relay'],
    ['http://relay.corp.example', true, 'http://relay.corp.example'],
  ];
  for (const [raw, insecure, want] of ok) it(`${raw} → ${want}`, () => expect(normalizeRelayUrl(raw, insecure)).toBe(want));

  const refused: [string, string][] = [
    ['http://relay.corp.example', 'Refusing to send your token to relay.corp.example over plain http: anyone on the network could read it.'],
    ['http://127.0.0.1.nip.io', 'Refusing to send your token to 127.0.0.1.nip.io over plain http: anyone on the network could read it.'],
    ['https://user:pw@relay.corp.example', 'The relay URL must not carry a user name or password; give the token with login, --token or INCIDENT_RELAY_TOKEN.'],
    ['https://relay.corp.example/?token=x', 'The relay URL must not carry a query or fragment.'],
    ['ftp://relay.corp.example', 'The relay URL must start with https:// (or http:// on this machine), not ftp://.'],
    ['relay.corp.example', '"relay.corp.example" is not a URL.'],
  ];
  for (const [raw, message] of refused) it(`refuses ${raw}`, () => expect(() => normalizeRelayUrl(raw, false)).toThrow(message));
});

describe('profilePath', () => {
  it('XDG_CONFIG_HOME when absolute, else ~/.config', () => {
    expect(profilePath({ XDG_CONFIG_HOME: '/x/cfg', HOME: '/home/ic' })).toBe('/x/cfg/incident-relay/config.json');
    expect(profilePath({ XDG_CONFIG_HOME: 'relative', HOME: '/home/ic' })).toBe('/home/ic/.config/incident-relay/config.json');
    expect(profilePath({ HOME: '/home/ic' })).toBe('/home/ic/.config/incident-relay/config.json');
  });
});

describe('exit codes and error reports', () => {
  it('maps statuses: 401 → 4, other 4xx → 3, 5xx → 5', () => {
    expect([400, 401, 403, 404, 409, 422, 429, 500, 502, 503].map(exitCodeForStatus)).toEqual([3, 4, 3, 3, 3, 3, 3, 5, 5, 5]);
  });

  const cases: { name: string; err: unknown; context?: Parameters<typeof reportError>[1]; lines: string[]; exitCode: number }[] = [
    {
      name: 'missing keys: one fix per recipient',
      err: new ApiError(422, { code: 'missing_public_key', message: 'No key.', rule: 'encryption', details: { recipients: ['a@x.example', 'b@y.example'] } }, undefined),
      context: { codename: 'amber-otter' },
      lines: [
        'error missing_public_key: No key.',
        '  rule: encryption',
        '  recipients: a@x.example, b@y.example',
        '  what to do: incident-relay roster update amber-otter a@x.example --key FILE   (or --key-from-gpg a@x.example)',
        '  what to do: incident-relay roster update amber-otter b@y.example --key FILE   (or --key-from-gpg b@y.example)',
      ],
      exitCode: 3,
    },
    {
      name: 'unusable keys: the reasons, per address',
      err: new ApiError(422, { code: 'unusable_public_key', message: 'Bad key.', details: { recipients: ['a@x.example'], reasons: { 'a@x.example': 'expired' } } }, undefined),
      context: { codename: 'amber-otter' },
      lines: ['error unusable_public_key: Bad key.', '  recipients: a@x.example', '  reasons: a@x.example: expired', '  what to do: ask a@x.example for a current key, then: incident-relay roster update amber-otter a@x.example --key FILE'],
      exitCode: 3,
    },
    {
      name: 'rate limited: when, and the key for a safe retry',
      err: new ApiError(429, { code: 'rate_limited', message: 'Too many.' }, 7),
      context: { idempotencyKey: 'k1' },
      lines: ['error rate_limited: Too many.', '  what to do: wait 7 s, then run the same command again with --idempotency-key k1'],
      exitCode: 3,
    },
    {
      name: 'a cut connection on a send',
      err: new UnreachableError('https://relay.corp.example', 'ECONNRESET', true),
      context: { idempotencyKey: 'k2' },
      lines: [
        'error unreachable: cannot reach the relay at https://relay.corp.example: ECONNRESET',
        '  what to do: check the address (--relay, INCIDENT_RELAY_URL or the login profile) and that the relay is running',
        '  what to do: the relay may have carried it out before the failure; run the same command again with --idempotency-key k2 so nothing is sent twice',
      ],
      exitCode: 5,
    },
    {
      name: 'connection refused: the request never arrived, no retry hint',
      err: new UnreachableError('https://relay.corp.example', 'ECONNREFUSED', false),
      context: { idempotencyKey: 'k3' },
      lines: ['error unreachable: cannot reach the relay at https://relay.corp.example: ECONNREFUSED', '  what to do: check the address (--relay, INCIDENT_RELAY_URL or the login profile) and that the relay is running'],
      exitCode: 5,
    },
    {
      name: 'a message carrying escape sequences is shown escaped',
      err: new ApiError(403, { code: 'forbidden', message: 'no\u001b[2J\nmore' }, undefined),
      lines: ['error forbidden: no\\u001b[2J\\u000amore'],
      exitCode: 3,
    },
    { name: 'anything else: exit 1', err: new Error('boom'), lines: ['error failure: boom'], exitCode: 1 },
  ];
  for (const c of cases) {
    it(c.name, () => {
      const report = reportError(c.err, c.context);
      expect({ lines: report.lines, exitCode: report.exitCode }).toEqual({ lines: c.lines, exitCode: c.exitCode });
    });
  }
});

describe('renderVerdict', () => {
  const base: DryRunAnswer = {
    outcome: 'refuse',
    encrypted: true,
    encryptReason: 'external-recipient',
    rules: [
      { rule: 'roster', result: 'pass', reason: 'sender and 2 recipient(s) are on the roster' },
      { rule: 'encryption', result: 'fail', reason: 'external-recipient: no public key for 1 recipient(s)' },
    ],
    recipients: { to: ['counsel@lawfirm.example', 'carol@corp.example'], cc: [], bcc: [] },
    offRoster: [],
    missingKeys: ['carol@corp.example'],
    unusableKeys: [],
    error: { code: 'missing_public_key', message: 'This message must be encrypted (external-recipient) but there is no public key for carol@corp.example.', rule: 'encryption' },
  };

  it('a refusal: why it would be encrypted, and the command that adds the missing key', () => {
    expect(renderVerdict({ ...base, externalRecipients: ['counsel@lawfirm.example'] }, 'amber-otter')).toBe(
      [
        'Would be REFUSED (missing_public_key): This message must be encrypted (external-recipient) but there is no public key for carol@corp.example.',
        'Nothing was sent.',
        '  would be ENCRYPTED because counsel@lawfirm.example is outside the company',
        '  carol@corp.example has no usable key: add one with incident-relay roster update amber-otter carol@corp.example --key FILE (or --key-from-gpg carol@corp.example)',
        '  to: counsel@lawfirm.example, carol@corp.example',
        '  cc: -',
        '  bcc: -',
        'rules:',
        '  RULE        RESULT  REASON',
        '  roster      pass    sender and 2 recipient(s) are on the roster',
        '  encryption  fail    external-recipient: no public key for 1 recipient(s)',
        '',
      ].join('\n'),
    );
  });

  it('an accept, plain, with outsiders and unusable keys listed when present', () => {
    const text = renderVerdict({ ...base, outcome: 'accept', encrypted: false, encryptReason: null, missingKeys: [], error: undefined as never, recipients: { to: ['sec@corp.example'], cc: [], bcc: ['exec@corp.example'] } }, 'amber-otter');
    expect(text.split('\n').slice(0, 2)).toEqual(['Would be ACCEPTED: plain (not encrypted), to 2 recipient(s). Nothing was sent.', '  would be sent plain: every recipient is inside the company and the thread never left it']);
    const refused = renderVerdict({ ...base, missingKeys: [], offRoster: ['nosy@corp.example'], unusableKeys: [{ email: 'old@lawfirm.example', reason: 'expired' }] }, 'amber-otter');
    expect(refused).toContain('  nosy@corp.example is not on the roster of amber-otter: a commander or deputy adds them with incident-relay roster add amber-otter nosy@corp.example --role ROLE, or leave them out\n');
    expect(refused).toContain("  old@lawfirm.example's key cannot be used (expired): ask for a current key, then incident-relay roster update amber-otter old@lawfirm.example --key FILE\n");
    expect(refused).toContain('  would be ENCRYPTED because a recipient is outside the company\n');
  });
});

describe('small parts', () => {
  it('content types by extension, case-insensitive; unknown is application/octet-stream', () => {
    expect(['timeline.PDF', 'capture.pcap', 'notes.txt', 'a.tar.gz', 'evil.exe', 'noext'].map(contentTypeFor)).toEqual(['application/pdf', 'application/vnd.tcpdump.pcap', 'text/plain', 'application/gzip', 'application/octet-stream', 'application/octet-stream']);
  });

  it('sanitize escapes C0, DEL, C1 and bidi controls, and nothing else', () => {
    expect(sanitize('a\u0000b\u001bc\u007fd\u009be\u202ef\u2066g é ü 漢 🙂')).toBe('a\\u0000b\\u001bc\\u007fd\\u009be\\u202ef\\u2066g é ü 漢 🙂');
  });

  it('tables pad by characters, not bytes, and print - for nothing', () => {
    expect(renderTable(['A', 'B'], [['é', null], ['abc', ['x', 'y']]])).toBe('A    B\né    -\nabc  x, y\n');
  });

  it('times lose their milliseconds; nothing is -', () => {
    expect([formatTime('2026-11-28T10:47:03.123Z'), formatTime(null)]).toEqual(['2026-11-28 10:47:03Z', '-']);
  });

  it('--to takes repeats and comma lists', () => {
    expect(collectList(' b@y , c@z,', collectList('a@x', undefined))).toEqual(['a@x', 'b@y', 'c@z']);
  });

  it('--since takes ISO times and dates only', () => {
    expect(isoTime('2026-11-28')).toBe('2026-11-28T00:00:00.000Z');
    expect(isoTime('2026-11-28T10:00:00+02:00')).toBe('2026-11-28T08:00:00.000Z');
    expect(() => isoTime('yesterday')).toThrow('must be an ISO 8601 time');
  });

  it('path segments are encoded: an address or id cannot climb the path', () => {
    expect(apiPath`/v1/incidents/${'amber-otter'}/roster/${'../../tokens'}`).toBe('/v1/incidents/amber-otter/roster/..%2F..%2Ftokens');
  });

  it('child processes get no INCIDENT_RELAY_* variable', () => {
    expect(childEnv({ PATH: '/bin', INCIDENT_RELAY_TOKEN: 't', INCIDENT_RELAY_URL: 'u', GNUPGHOME: '/g' })).toEqual({ PATH: '/bin', GNUPGHOME: '/g' });
  });
});

describe('roster roles', () => {
  it("offers exactly the relay's roster roles as --role choices, in its order", () => {
    const program = buildProgram({ environment: { version: '0.0.0', streams: { stdout: process.stdout, stderr: process.stderr } }, session: () => { throw new Error('no session in this test'); } } as unknown as App);
    const roster = program.commands.find((c) => c.name() === 'roster')!;
    for (const sub of ['add', 'update']) {
      const role = roster.commands.find((c) => c.name() === sub)!.options.find((o) => o.long === '--role')!;
      expect([sub, role.argChoices]).toEqual([sub, [...ROSTER_ROLES]]);
    }
  });
});
