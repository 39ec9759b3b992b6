/**
 * How the CLI fails: each kind of failure has its exit code (2 usage, 3
 * refused, 4 unauthenticated, 5 unreachable, 1 anything else) and prints
 * `error <code>: <message>` with what to do; and what it must never do: send
 * a token where it was not meant to go, let gpg see it, send a secret key,
 * send a message the user asked only to preview, or pass escape sequences
 * from the relay to the terminal. Real relay where one is needed; small
 * local HTTP servers for what a healthy relay never does.
 */
import { execFileSync } from 'node:child_process';
import fs from 'node:fs';
import path from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { createGpgHome, type GeneratedKey, type GpgHome } from '../helpers/gpg.js';
import { freePort } from '../helpers/process.js';
import { ROOT } from '../helpers/build.js';
import { ADMIN_TOKEN, buildCli, runCli, startCliRelay, startHttpServer, tempHome, type CliRelay, type CliResult } from './harness.js';

let relay: CliRelay;
let home: string;
let gpgHome: GpgHome;
let key: GeneratedKey;
let icToken: string;
let codename: string;

const asAdmin = (args: string[], env: Record<string, string> = {}): Promise<CliResult> => runCli(args, { home, env: { INCIDENT_RELAY_URL: relay.url, INCIDENT_RELAY_TOKEN: ADMIN_TOKEN, ...env } });
const asIc = (args: string[], env: Record<string, string> = {}): Promise<CliResult> => runCli(args, { home, env: { INCIDENT_RELAY_URL: relay.url, INCIDENT_RELAY_TOKEN: icToken, ...env } });
const json = (answer: unknown) => ({ status: 200, headers: { 'Content-Type': 'application/json' }, body: JSON.stringify(answer) });

beforeAll(async () => {
  buildCli();
  [relay, gpgHome] = await Promise.all([startCliRelay(), createGpgHome()]);
  key = await gpgHome.generateKey('counsel@lawfirm.example', 'Outside Counsel');
  home = tempHome();
  icToken = (await asAdmin(['tokens', 'create', 'ic@corp.example'])).stdout.trim();
  codename = (await asIc(['declare'])).stdout.trim();
}, 180_000);

afterAll(async () => {
  await relay?.stop();
  await gpgHome?.cleanup();
  if (home) fs.rmSync(home, { recursive: true, force: true });
});

describe('exit codes', () => {
  it('2 for usage errors, before any request', async () => {
    const server = await startHttpServer(() => json({}));
    const env = { INCIDENT_RELAY_URL: server.url, INCIDENT_RELAY_TOKEN: ADMIN_TOKEN };
    const cases: [string[], string][] = [
      [['incidents', '--bogus'], "error: unknown option '--bogus'\n"],
      [['bogus'], "error: unknown command 'bogus'\n"],
      [['show'], "error: missing required argument 'codename'\n"],
      [['roster', 'add', 'amber-otter', 'x@corp.example', '--role', 'boss'], "error: option '--role <role>' argument 'boss' is invalid. Allowed choices are commander, deputy, scribe, security, service-owner, executive, legal, communications, external.\n"],
      [['roster', 'add', 'amber-otter', 'x@corp.example', '--role', 'legal', '--key', 'a.asc', '--key-from-gpg', 'x@corp.example'], 'error usage: Give either --key FILE or --key-from-gpg EMAIL, not both.\n'],
      [['--timeout', '0', 'incidents'], "error: option '--timeout <seconds>' argument '0' is invalid. must be a whole number of seconds, at least 1.\n"],
      [['send', 'amber-otter', '--text', 'x'], 'error usage: No recipient.\n  what to do: give at least one --to address\n'],
      [['send', 'amber-otter', '--to', 'a@corp.example'], 'error usage: No body.\n  what to do: give it with --text "…", --file PATH, or --file - to read stdin\n'],
      [['nudge', 'amber-otter', 'a@corp.example', '--roster'], 'error usage: Give member addresses or --roster, not both.\n'],
      [['roster', 'update', 'amber-otter', 'a@corp.example'], 'error usage: Nothing to update.\n  what to do: give at least one of --name, --role, --phone/--no-phone, --slack-user-id/--no-slack-user-id, --key, --key-from-gpg\n'],
    ];
    for (const [args, stderrStart] of cases) {
      const res = await runCli(args, { home, env });
      expect({ args, code: res.code, stdout: res.stdout, stderr: res.stderr.slice(0, stderrStart.length) }).toEqual({ args, code: 2, stdout: '', stderr: stderrStart });
    }
    expect(server.seen).toEqual([]);
    await server.close();
  });

  it('3 when the relay refuses, with the code, the message and what to do', async () => {
    const res = await asIc(['show', 'no-such-incident']);
    expect(res).toEqual({
      code: 3,
      stdout: '',
      stderr: 'error not_found: No incident "no-such-incident" that you are on the roster of.\n  what to do: check the codename, address or id: incident-relay incidents lists the incidents whose roster holds you\n',
    });
    const outsider = await asIc(['send', codename, '--to', 'nosy@corp.example', '--text', 'x', '--json']);
    expect(outsider.code).toBe(3);
    expect(JSON.parse(outsider.stdout)).toEqual({
      error: { code: 'recipient_not_on_roster', message: 'Not on the response roster: nosy@corp.example. Nothing was sent to anyone; ask the commander to add them, or remove them. To tell people outside the response team, write an announcement (POST /v1/incidents/:codename/announcements): it goes out once approved.', rule: 'roster', details: { recipients: ['nosy@corp.example'] } },
      exitCode: 3,
    });
    expect(outsider.stderr).toContain(`  what to do: a commander or deputy adds them: incident-relay roster add ${codename} nosy@corp.example --role ROLE\n`);
  });

  it('4 when the relay refuses the token, naming where the token came from but never the token', async () => {
    const bad = 'ir_0123456789abcdef_AAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA';
    const res = await runCli(['incidents'], { home, env: { INCIDENT_RELAY_URL: relay.url, INCIDENT_RELAY_TOKEN: bad } });
    expect(res).toEqual({
      code: 4,
      stdout: '',
      stderr: 'error unauthenticated: The token is unknown or revoked; ask an admin for a new one.\n  what to do: the token (from INCIDENT_RELAY_TOKEN) was refused: run incident-relay login with a current token, or ask an admin for a new one\n',
    });
  });

  it('5 when nothing listens, and when the relay answers 503', async () => {
    const port = await freePort();
    const refused = await runCli(['incidents'], { home, env: { INCIDENT_RELAY_URL: `http://127.0.0.1:${port}`, INCIDENT_RELAY_TOKEN: ADMIN_TOKEN } });
    expect(refused).toEqual({
      code: 5,
      stdout: '',
      stderr: `error unreachable: cannot reach the relay at http://127.0.0.1:${port}: ECONNREFUSED\n  what to do: check the address (--relay, INCIDENT_RELAY_URL or the login profile) and that the relay is running\n`,
    });
    // This relay runs without SLACK_BOT_TOKEN: the sync route answers 503 unavailable.
    const slack = await asIc(['slack', 'sync', codename]);
    expect(slack).toEqual({
      code: 5,
      stdout: '',
      stderr:
        'error unavailable: Slack is off on this relay: an admin sets SLACK_BOT_TOKEN to manage incident rooms (README, \"Installing the Slack app\").\n  rule: chat\n  slack: off\n  what to do: nothing to retry: an admin turns Slack on by setting SLACK_BOT_TOKEN on the relay\n',
    });
  });

  it("5 for a proxy's 502 page, which is not echoed", async () => {
    const server = await startHttpServer(() => ({ status: 502, headers: { 'Content-Type': 'text/html' }, body: '<html>\u001b[2J bad gateway</html>' }));
    const res = await runCli(['incidents'], { home, env: { INCIDENT_RELAY_URL: server.url, INCIDENT_RELAY_TOKEN: ADMIN_TOKEN } });
    expect(res).toEqual({
      code: 5,
      stdout: '',
      stderr: 'error http_502: The relay (or a proxy in front of it) answered HTTP 502 without an API error body.\n  what to do: try again shortly; if it persists, tell an admin\n',
    });
    await server.close();
  });

  it('5 on a timeout; for a send, with the Idempotency-Key that makes the retry safe', async () => {
    const server = await startHttpServer(() => json({}));
    // A server that reads the request and never answers.
    const silent = await import('node:http').then(({ createServer }) => createServer(() => undefined));
    await new Promise<void>((resolve) => silent.listen(0, '127.0.0.1', resolve));
    const url = `http://127.0.0.1:${(silent.address() as { port: number }).port}`;
    const res = await runCli(['--timeout', '1', 'send', 'amber-otter', '--to', 'a@corp.example', '--text', 'x', '--idempotency-key', 'retry-me-1'], { home, env: { INCIDENT_RELAY_URL: url, INCIDENT_RELAY_TOKEN: ADMIN_TOKEN } });
    expect(res).toEqual({
      code: 5,
      stdout: '',
      stderr: `error unreachable: cannot reach the relay at ${url}: no answer in time (timed out)\n  what to do: check the address (--relay, INCIDENT_RELAY_URL or the login profile) and that the relay is running\n  what to do: the relay may have carried it out before the failure; run the same command again with --idempotency-key retry-me-1 so nothing is sent twice\n`,
    });
    silent.closeAllConnections();
    await new Promise<void>((resolve) => silent.close(() => resolve()));
    await server.close();
  });

  it('1 for a redirect, which is not followed: the token goes nowhere else', async () => {
    const elsewhere = await startHttpServer(() => json({ incidents: [] }));
    const redirecting = await startHttpServer(() => ({ status: 302, headers: { Location: `${elsewhere.url}/v1/incidents` } }));
    const res = await runCli(['incidents'], { home, env: { INCIDENT_RELAY_URL: redirecting.url, INCIDENT_RELAY_TOKEN: ADMIN_TOKEN } });
    expect(res).toEqual({
      code: 1,
      stdout: '',
      stderr: `error redirect: The relay answered 302 with a redirect to ${elsewhere.url}/v1/incidents; the token is not sent on. Use that address as --relay if you trust it.\n`,
    });
    expect(redirecting.seen.map((r) => [r.method, r.url, r.authorization])).toEqual([['GET', '/v1/incidents', `Bearer ${ADMIN_TOKEN}`]]);
    expect(elsewhere.seen).toEqual([]);
    await Promise.all([elsewhere.close(), redirecting.close()]);
  });
});

describe('where the token goes', () => {
  it("a profile's token goes only to the relay it was saved for", async () => {
    const user = tempHome();
    expect((await runCli(['login', '--relay', relay.url], { home: user, stdin: `${ADMIN_TOKEN}\n` })).code).toBe(0);
    const other = await startHttpServer(() => json({ incidents: [] }));
    const res = await runCli(['--relay', other.url, 'incidents'], { home: user });
    expect(res).toEqual({ code: 4, stdout: '', stderr: `error unauthenticated: No token for ${other.url}.\n  what to do: run incident-relay login --relay ${other.url}, or set INCIDENT_RELAY_TOKEN\n` });
    expect(other.seen).toEqual([]);
    // The same relay spelled with a trailing slash is the same relay.
    expect((await runCli(['--relay', `${relay.url}/`, 'incidents'], { home: user })).code).toBe(0);
    await other.close();
    fs.rmSync(user, { recursive: true, force: true });
  });

  it('a profile other users can read is not used', async () => {
    const user = tempHome();
    expect((await runCli(['login', '--relay', relay.url], { home: user, stdin: `${ADMIN_TOKEN}\n` })).code).toBe(0);
    const profile = path.join(user, 'config', 'incident-relay', 'config.json');
    fs.chmodSync(profile, 0o644);
    const res = await runCli(['incidents'], { home: user });
    expect(res).toEqual({
      code: 1,
      stdout: '',
      stderr: `error profile: ${profile} can be read or written by other users (mode 0644), so the token in it is not used.\n  what to do: chmod 600 ${profile}, and if others may have read it, revoke the token (incident-relay tokens revoke <id>) and log in with a new one\n`,
    });
    fs.rmSync(user, { recursive: true, force: true });
  });

  it('plain http is refused for anything but this machine, unless INCIDENT_RELAY_ALLOW_INSECURE_HTTP=true', async () => {
    const res = await runCli(['incidents'], { home, env: { INCIDENT_RELAY_URL: 'http://relay.corp.example:8080', INCIDENT_RELAY_TOKEN: ADMIN_TOKEN } });
    expect(res).toEqual({
      code: 2,
      stdout: '',
      stderr: 'error usage: Refusing to send your token to relay.corp.example:8080 over plain http: anyone on the network could read it.\n  what to do: use https://relay.corp.example:8080, or set INCIDENT_RELAY_ALLOW_INSECURE_HTTP=true if the network path is protected some other way\n',
    });
    // Allowed, it goes on to try the network: TEST-NET-1 never answers.
    const allowed = await runCli(['--timeout', '1', 'incidents'], { home, env: { INCIDENT_RELAY_URL: 'http://192.0.2.1:9', INCIDENT_RELAY_TOKEN: ADMIN_TOKEN, INCIDENT_RELAY_ALLOW_INSECURE_HTTP: 'true' } });
    expect(allowed.code).toBe(5);
  });

  it('gpg is run with only the address in argv, and without the token in its environment', async () => {
    const bin = fs.mkdtempSync(path.join(home, 'bin-'));
    const log = path.join(bin, 'gpg-call');
    const realGpg = execFileSync('sh', ['-c', 'command -v gpg'], { encoding: 'utf8' }).trim();
    fs.writeFileSync(path.join(bin, 'gpg'), `#!/bin/sh\nprintf '%s\\n' "$@" > '${log}.argv'\nenv > '${log}.env'\nexec '${realGpg}' "$@"\n`, { mode: 0o755 });
    const res = await asIc(['roster', 'add', codename, 'counsel@lawfirm.example', '--role', 'external', '--key-from-gpg'], { PATH: `${bin}:${process.env['PATH'] ?? '/usr/bin:/bin'}`, GNUPGHOME: gpgHome.dir });
    expect(res).toEqual({ code: 0, stdout: `Added counsel@lawfirm.example on ${codename} as external, key ${key.fingerprint} from gpg (counsel@lawfirm.example).\n`, stderr: '' });
    expect(fs.readFileSync(`${log}.argv`, 'utf8')).toBe('--batch\n--no-tty\n--armor\n--export\n--\n<counsel@lawfirm.example>\n');
    const env = fs.readFileSync(`${log}.env`, 'utf8');
    expect(env).toContain(`GNUPGHOME=${gpgHome.dir}\n`);
    expect(env).not.toContain(icToken);
    expect(env).not.toContain('INCIDENT_RELAY_');
  });

  it('gpg with no key for the address: exit 1, nothing sent', async () => {
    const res = await asIc(['roster', 'add', codename, 'nokey@lawfirm.example', '--role', 'external', '--key-from-gpg'], { GNUPGHOME: gpgHome.dir });
    expect(res).toEqual({
      code: 1,
      stdout: '',
      stderr: "error gpg: Your gpg keyring has no public key for nokey@lawfirm.example.\n  what to do: import it first (gpg --import key.asc), check with gpg --list-keys '<nokey@lawfirm.example>', or pass the file with --key FILE\n",
    });
    const roster = JSON.parse((await asIc(['--json', 'roster', codename])).stdout).roster as { email: string }[];
    expect(roster.map((m) => m.email)).not.toContain('nokey@lawfirm.example');
  });

  it('a secret key given as --key is never sent', async () => {
    const server = await startHttpServer(() => json({}));
    const secret = path.join(home, 'secret.asc');
    fs.writeFileSync(secret, await gpgHome.exportSecret(key.fingerprint));
    const res = await runCli(['roster', 'add', 'amber-otter', 'counsel@lawfirm.example', '--role', 'external', '--key', secret], { home, env: { INCIDENT_RELAY_URL: server.url, INCIDENT_RELAY_TOKEN: ADMIN_TOKEN } });
    expect(res).toEqual({
      code: 1,
      stdout: '',
      stderr: `error secret_key: ${secret} holds a PRIVATE key; it was not sent. Only the public key goes to the relay.\n  what to do: export the public key: gpg --export --armor EMAIL > key.asc\n`,
    });
    const revoke = await runCli(['keys', 'revoke', 'counsel@lawfirm.example', '--certificate', secret], { home, env: { INCIDENT_RELAY_URL: server.url, INCIDENT_RELAY_TOKEN: ADMIN_TOKEN } });
    expect(revoke).toEqual({ code: 1, stdout: '', stderr: `error secret_key: ${secret} holds a PRIVATE key; it was not sent.\n` });
    expect(server.seen).toEqual([]);
    await server.close();
  });
});

describe('send --dry-run never sends', () => {
  it('a relay that predates dry runs (405 on the email list) is not asked to send: exit 3', async () => {
    const old = await startHttpServer((req) =>
      req.method === 'GET'
        ? { status: 405, headers: { 'Content-Type': 'application/json' }, body: JSON.stringify({ error: { code: 'method_not_allowed', message: 'GET is not allowed on /v1/incidents/amber-otter/emails.' } }) }
        : { status: 202, headers: { 'Content-Type': 'application/json' }, body: JSON.stringify({ id: 'x', messageId: '<x@corp.example>', status: 'queued', encrypted: true, recipients: [] }) },
    );
    const res = await runCli(['send', 'amber-otter', '--to', 'counsel@lawfirm.example', '--text', 'draft', '--dry-run'], { home, env: { INCIDENT_RELAY_URL: old.url, INCIDENT_RELAY_TOKEN: ADMIN_TOKEN } });
    expect(res).toEqual({
      code: 3,
      stdout: '',
      stderr: 'error dry_run_unsupported: This relay predates dry runs: it would have sent the message. Nothing was sent.\n  what to do: ask an admin to upgrade the relay; until then, check recipients and keys with incident-relay roster\n',
    });
    expect(old.seen.map((r) => `${r.method} ${r.url}`)).toEqual(['GET /v1/incidents/amber-otter/emails?limit=1']);
    await old.close();
  });

  it('a relay that answers a dry run with 202 is reported as having sent it: exit 1', async () => {
    const odd = await startHttpServer((req) =>
      req.method === 'GET' ? json({ emails: [] }) : { status: 202, headers: { 'Content-Type': 'application/json' }, body: JSON.stringify({ id: 'x', messageId: '<x@corp.example>', status: 'queued', encrypted: true, recipients: [] }) },
    );
    const res = await runCli(['send', 'amber-otter', '--to', 'counsel@lawfirm.example', '--text', 'draft', '--dry-run'], { home, env: { INCIDENT_RELAY_URL: odd.url, INCIDENT_RELAY_TOKEN: ADMIN_TOKEN } });
    expect(res.code).toBe(1);
    expect(res.stderr).toBe('error dry_run_ignored: The relay answered HTTP 202, not a preview: it may have SENT the message.\n  what to do: check with incident-relay emails amber-otter, and tell an admin the relay ignores dryRun\n');
    expect(odd.seen.map((r) => `${r.method} ${r.url}`)).toEqual(['GET /v1/incidents/amber-otter/emails?limit=1', 'POST /v1/incidents/amber-otter/emails?dryRun=true']);
    await odd.close();
  });
});

describe('output', () => {
  it("escape sequences and bidi overrides from the relay never reach the terminal", async () => {
    const hostile = await startHttpServer(() =>
      json({ incidents: [{ id: 'i', codename: 'amber-otter', status: 'open', commander: 'ic@corp.example', label: 'x\u001b]0;pwned\u0007\u001b[2J\u202eevil', createdAt: '2026-11-28T10:00:00.000Z', closedAt: null, slack: null }] }),
    );
    const res = await runCli(['incidents'], { home, env: { INCIDENT_RELAY_URL: hostile.url, INCIDENT_RELAY_TOKEN: ADMIN_TOKEN } });
    expect(res.code).toBe(0);
    expect(res.stdout).toBe(
      'CODENAME     STATUS  COMMANDER        CREATED               CLOSED  SLACK  LABEL\n' +
        'amber-otter  open    ic@corp.example  2026-11-28 10:00:00Z  -       -      x\\u001b]0;pwned\\u0007\\u001b[2J\\u202eevil\n',
    );
    await hostile.close();
  });

  it('relay-key refuses a key whose fingerprint is not the one the relay claims', async () => {
    const publicKey = relay.relay.ctx.relayKey.publicArmored;
    const lying = await startHttpServer(() => json({ fingerprint: 'A'.repeat(40), publicKey }));
    const res = await runCli(['relay-key'], { home, env: { INCIDENT_RELAY_URL: lying.url } });
    expect(res).toEqual({
      code: 1,
      stdout: '',
      stderr: `error bad_relay_key: The relay says its key is ${'A'.repeat(40)}, but the key it sent is ${relay.relay.ctx.relayKey.fingerprint}.\n  what to do: do not trust this key; tell an admin\n`,
    });
    await lying.close();
  });

  it('--help lists the exit codes, and every command has its own help', async () => {
    const root = await runCli(['--help'], { home });
    expect(root.code).toBe(0);
    expect(root.stdout).toContain('Exit codes:\n  0  done\n  1  anything else');
    expect(root.stdout).toContain('  5  unreachable: connection refused, DNS, timeout, or the relay answered 5xx\n');
    const commands = [
      'login', 'logout', 'incidents', 'declare', 'show', 'close', 'reopen',
      'roster list', 'roster add', 'roster update', 'roster remove',
      'keys show', 'keys upload', 'keys revoke', 'keys remove',
      'send', 'emails list', 'emails status', 'nudge', 'slack sync',
      'audit list', 'audit verify', 'audit export',
      'tokens create', 'tokens list', 'tokens revoke', 'relay-key',
      'announce list', 'announce draft', 'announce edit', 'announce show', 'announce check', 'announce approve', 'announce send', 'announce internal-source',
      'audiences list', 'audiences show', 'audiences set', 'audiences delete',
    ];
    for (const command of commands) {
      const res = await runCli([...command.split(' '), '--help'], { home });
      expect({ command, code: res.code, usage: res.stdout.split('\n')[0]?.startsWith(`Usage: incident-relay ${command}`) }).toEqual({ command, code: 0, usage: true });
    }
  });

  it('bin/incident-relay.js says to build when dist/ is missing', () => {
    const copy = fs.mkdtempSync(path.join(home, 'checkout-'));
    fs.mkdirSync(path.join(copy, 'bin'));
    fs.copyFileSync(path.join(ROOT, 'bin', 'incident-relay.js'), path.join(copy, 'bin', 'incident-relay.js'));
    fs.writeFileSync(path.join(copy, 'package.json'), '{"type": "module"}');
    let result: { status: number | null; stderr: string };
    try {
      execFileSync(process.execPath, [path.join(copy, 'bin', 'incident-relay.js'), '--help'], { encoding: 'utf8', stdio: 'pipe' });
      result = { status: 0, stderr: '' };
    } catch (err) {
      result = { status: (err as { status: number | null }).status, stderr: (err as { stderr: string }).stderr };
    }
    expect(result).toEqual({ status: 1, stderr: `incident-relay: ${path.join(copy, 'dist', 'cli', 'main.js')} is missing; run "npm run build" in ${copy}/ first.\n` });
  });
});
