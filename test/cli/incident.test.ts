/**
 * A whole incident driven through the command-line tool as a subprocess,
 * against a relay on a real port (real HTTP, real SQLite, a real smtp-server
 * upstream) and the real gpg: the admin logs in and issues the commander's
 * token, the commander logs in, declares, adds outside counsel with
 * --key-from-gpg, is refused for a member without a key, sends an encrypted
 * briefing that counsel's gpg decrypts, sees it sent, nudges, reads and
 * verifies the audit log, closes, logs out.
 */
import fs from 'node:fs';
import path from 'node:path';
import { simpleParser } from 'mailparser';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { createGpgHome, type GeneratedKey, type GpgHome } from '../helpers/gpg.js';
import { armoredPartOf, decryptAs } from '../helpers/pgp-mime.js';
import { ADMIN_TOKEN, buildCli, runCli, startCliRelay, tempHome, type CliRelay, type CliResult } from './harness.js';

let relay: CliRelay;
// Counsel's own gpg home (secret key), and the commander's keyring that holds
// only counsel's public key, as it would after counsel sent it over.
let counselHome: GpgHome;
let icKeyring: GpgHome;
let counsel: GeneratedKey;
let adminHome: string;
let icHome: string;
let icToken: string;
let codename: string;
let emailId: string;
// Every output of every run, to check no token ever appears in any of them.
const outputs: string[] = [];

async function cli(home: string, args: string[], options: { stdin?: string; env?: Record<string, string> } = {}): Promise<CliResult> {
  const result = await runCli(args, { home, ...options });
  outputs.push(result.stdout, result.stderr);
  return result;
}
const admin = (args: string[], options?: { stdin?: string }) => cli(adminHome, args, options);
const ic = (args: string[], options?: { stdin?: string; env?: Record<string, string> }) => cli(icHome, args, { ...options, env: { GNUPGHOME: icKeyring.dir, ...options?.env } });

beforeAll(async () => {
  buildCli();
  [relay, counselHome, icKeyring] = await Promise.all([startCliRelay(), createGpgHome(), createGpgHome()]);
  counsel = await counselHome.generateKey('counsel@lawfirm.example', 'Outside Counsel');
  await icKeyring.importKey(counsel.armoredPublic);
  adminHome = tempHome();
  icHome = tempHome();
}, 180_000);

afterAll(async () => {
  await relay?.stop();
  await counselHome?.cleanup();
  await icKeyring?.cleanup();
  for (const home of [adminHome, icHome]) if (home) fs.rmSync(home, { recursive: true, force: true });
});

describe('a whole incident from login to close', () => {
  it('login reads the token from stdin, checks it, and saves it 0600 in a 0700 directory', async () => {
    const res = await admin(['login', '--relay', relay.url], { stdin: `${ADMIN_TOKEN}\n` });
    const profile = path.join(adminHome, 'config', 'incident-relay', 'config.json');
    expect(res).toEqual({ code: 0, stdout: `Logged in to ${relay.url}; the token is saved in ${profile} (readable by you only). You can see 0 incident(s).\n`, stderr: '' });
    expect(fs.statSync(profile).mode & 0o777).toBe(0o600);
    expect(fs.statSync(path.dirname(profile)).mode & 0o777).toBe(0o700);
    expect(JSON.parse(fs.readFileSync(profile, 'utf8'))).toEqual({ relay: relay.url, token: ADMIN_TOKEN });
  });

  it('login refuses a token the relay does not know, exits 4, and saves nothing', async () => {
    const home = tempHome();
    const res = await cli(home, ['login', '--relay', relay.url], { stdin: 'ir_0123456789abcdef_not-a-real-token-at-all-not-a-real-token-xx\n' });
    expect(res.code).toBe(4);
    expect(res.stderr).toMatch(/^error unauthenticated: The token is unknown or revoked; ask an admin for a new one\.\n/);
    expect(fs.existsSync(path.join(home, 'config', 'incident-relay', 'config.json'))).toBe(false);
    fs.rmSync(home, { recursive: true, force: true });
  });

  it('the admin issues the commander a token: the token alone on stdout, the rest on stderr', async () => {
    const res = await admin(['tokens', 'create', 'ic@corp.example', '--label', 'IC laptop']);
    expect(res.code).toBe(0);
    expect(res.stdout).toMatch(/^ir_[a-z0-9]{16}_[A-Za-z0-9_-]{43}\n$/);
    icToken = res.stdout.trim();
    expect(res.stderr).toBe(`Token ${icToken.slice(3, 19)} for ic@corp.example (responder). It is shown once: hand it over on a secure channel; they run incident-relay login.\n`);
    const login = await ic(['login', '--relay', relay.url], { stdin: `${icToken}\n` });
    expect(login.code).toBe(0);
  });

  it('declare prints only the codename', async () => {
    const res = await ic(['declare']);
    expect(res.code).toBe(0);
    expect(res.stdout).toMatch(/^[a-z]+-[a-z]+\n$/);
    codename = res.stdout.trim();
    expect(res.stderr).toBe(`Declared ${codename}; commander ic@corp.example. Next: incident-relay roster add ${codename} EMAIL --role ROLE\n`);
  });

  it('roster add --key-from-gpg files the key gpg exports for exactly that address', async () => {
    const res = await ic(['roster', 'add', codename, 'counsel@lawfirm.example', '--role', 'external', '--name', 'Outside Counsel', '--key-from-gpg']);
    expect(res).toEqual({ code: 0, stdout: `Added counsel@lawfirm.example on ${codename} as external, key ${counsel.fingerprint} from gpg (counsel@lawfirm.example).\n`, stderr: '' });
    expect((await ic(['roster', 'add', codename, 'sec@corp.example', '--role', 'security', '--phone', '+15555550100'])).code).toBe(0);
    expect((await ic(['roster', 'add', codename, 'carol@lawfirm.example', '--role', 'legal', '--name', 'Carol'])).code).toBe(0);

    const list = await ic(['--json', 'roster', codename]);
    expect(list.code).toBe(0);
    const roster = JSON.parse(list.stdout).roster as { email: string; role: string; key: { fingerprint: string } | null }[];
    expect(roster.map((m) => [m.email, m.role, m.key?.fingerprint ?? null])).toEqual([
      ['carol@lawfirm.example', 'legal', null],
      ['counsel@lawfirm.example', 'external', counsel.fingerprint],
      ['ic@corp.example', 'commander', null],
      ['sec@corp.example', 'security', null],
    ]);
    const table = await ic(['roster', codename]);
    // The relay says whether each key can be used now (issue 12 §7), so the table does too.
    expect(table.stdout.split('\n')[0]).toBe('EMAIL                    NAME             ROLE       KEY                      PHONE         SLACK  ADDED');
    expect(table.stdout).toContain(`counsel@lawfirm.example  Outside Counsel  external   usable ${counsel.fingerprint.slice(-16)}`);
  });

  it('a send that needs a missing key is refused: exit 3, the code, the recipient, and the command that fixes it', async () => {
    const res = await ic(['send', codename, '--to', 'carol@lawfirm.example', '--text', 'hello']);
    expect(res.code).toBe(3);
    expect(res.stdout).toBe('');
    expect(res.stderr.split('\n')).toEqual([
      `error missing_public_key: This message must be encrypted (external-recipient) but there is no public key for carol@lawfirm.example. Nothing was sent; re-add carol@lawfirm.example with publicKey: PUT /v1/incidents/${codename}/roster/carol@lawfirm.example.`,
      '  rule: encryption',
      '  recipients: carol@lawfirm.example',
      `  what to do: incident-relay roster update ${codename} carol@lawfirm.example --key FILE   (or --key-from-gpg carol@lawfirm.example)`,
      '',
    ]);
    const json = await ic(['send', codename, '--to', 'carol@lawfirm.example', '--text', 'hello', '--json']);
    expect(json.code).toBe(3);
    expect(JSON.parse(json.stdout)).toEqual({ error: { code: 'missing_public_key', message: expect.any(String), rule: 'encryption', details: { recipients: ['carol@lawfirm.example'] } }, exitCode: 3 });
    expect(relay.upstream.received).toHaveLength(0);
  });

  it("an encrypted send with an attachment, which counsel decrypts with gpg, checking the signature with the CLI's relay-key", async () => {
    const pdf = path.join(icHome, 'timeline.pdf');
    fs.writeFileSync(pdf, '%PDF-1.4 timeline\n');
    const res = await ic(['--json', 'send', codename, '--to', 'counsel@lawfirm.example', '--subject', 'Briefing', '--text', 'Call at 3pm.', '--attach', pdf]);
    expect(res.code).toBe(0);
    const accepted = JSON.parse(res.stdout);
    expect(accepted).toEqual({ id: expect.any(String), messageId: expect.stringMatching(/^<[0-9a-f-]{36}@corp\.example>$/), status: 'queued', encrypted: true, recipients: ['counsel@lawfirm.example'], idempotencyKey: expect.stringMatching(/^cli-[0-9a-f-]{36}$/) });
    emailId = accepted.id;

    // Counsel takes the relay's key from the CLI, to check the signature.
    const relayKey = await ic(['relay-key']);
    const fingerprint = relay.relay.ctx.relayKey.fingerprint;
    expect(relayKey.code).toBe(0);
    expect(relayKey.stdout).toMatch(/^-----BEGIN PGP PUBLIC KEY BLOCK-----\n[\s\S]+-----END PGP PUBLIC KEY BLOCK-----\n$/);
    expect(relayKey.stderr).toBe(`fingerprint: ${fingerprint.match(/.{4}/g)!.join(' ')}\n`);

    const [mail] = await relay.upstream.waitFor(1);
    expect(mail!.to).toEqual(['counsel@lawfirm.example']);
    const decrypted = await decryptAs(counselHome, counsel.fingerprint, await armoredPartOf(mail!.raw), relayKey.stdout);
    expect(decrypted.goodSignatureFrom).toBe(fingerprint);
    const inner = await simpleParser(decrypted.plaintext);
    expect(inner.subject).toBe('Attorney Work Project');
    expect(inner.text).toBe('Topic: Briefing\n\nCall at 3pm.');
    expect(inner.attachments.map((a) => [a.filename, a.contentType, a.content.toString('utf8')])).toEqual([['timeline.pdf', 'application/pdf', '%PDF-1.4 timeline\n']]);
  });

  it('emails status shows it sent', async () => {
    const res = await ic(['emails', 'status', codename, emailId, '--wait', '20']);
    // The full EmailSummary with each copy (issue 12 §2).
    expect(res).toEqual({
      code: 0,
      stdout: expect.stringMatching(
        new RegExp(
          `^id: +${emailId}\nmessage-id: +<[0-9a-f-]{36}@corp\\.example>\nsender: +ic@corp\\.example\ncreated: +[0-9: -]+Z\nencrypted: +yes\nrecipients: +counsel@lawfirm\\.example\nstatus: +sent\nattempts: +1\ndeliveries:\n +RECIPIENTS +STATUS +ATTEMPTS +LAST ERROR\n +counsel@lawfirm\\.example +sent +1 +-\n$`,
        ),
      ),
      stderr: '',
    });
  });

  it('nudge --roster texts the members with a phone, skips the others', async () => {
    const res = await ic(['--json', 'nudge', codename, '--roster']);
    expect(res.code).toBe(0);
    expect(JSON.parse(res.stdout).results).toEqual([
      { email: 'carol@lawfirm.example', status: 'skipped', reason: 'no_phone' },
      { email: 'counsel@lawfirm.example', status: 'skipped', reason: 'no_phone' },
      { email: 'ic@corp.example', status: 'skipped', reason: 'no_phone' },
      { email: 'sec@corp.example', status: 'queued' },
    ]);
    const again = await ic(['nudge', codename, 'sec@corp.example']);
    expect(again).toEqual({ code: 0, stdout: 'EMAIL             STATUS   REASON\nsec@corp.example  skipped  recently_nudged\n', stderr: '' });
  });

  it("the commander reads the incident's audit events; the admin verifies the chain", async () => {
    const list = await ic(['--json', 'audit', 'list', '--incident', codename]);
    expect(list.code).toBe(0);
    const types = (JSON.parse(list.stdout).events as { type: string }[]).map((e) => e.type);
    expect(types).toEqual(expect.arrayContaining(['incident.created', 'roster.added', 'key.stored', 'email.decision', 'email.delivered', 'sms.decision']));

    // Export: JSON lines, oldest first, into a new file only its owner can read; never over an existing one.
    const file = path.join(icHome, 'audit.jsonl');
    const exported = await ic(['audit', 'export', '--incident', codename, '-o', file]);
    const lines = fs.readFileSync(file, 'utf8').trimEnd().split('\n');
    expect(exported).toEqual({ code: 0, stdout: '', stderr: `Wrote ${lines.length} event(s) to ${file}.\n` });
    expect(lines.map((line) => JSON.parse(line).type)).toEqual((JSON.parse(list.stdout).events as { type: string }[]).map((e) => e.type));
    expect(fs.statSync(file).mode & 0o777).toBe(0o600);
    const again = await ic(['audit', 'export', '--incident', codename, '-o', file]);
    expect(again).toEqual({ code: 1, stdout: '', stderr: `error output: Cannot create ${file}: EEXIST.\n  what to do: choose a new file name; an existing file is not overwritten\n` });

    const verify = await admin(['audit', 'verify']);
    expect(verify.code).toBe(0);
    // The relay now answers with its signed checkpoints too (none yet in a relay this young).
    expect(verify.stdout).toMatch(/^chain: {14}intact\nevents: {13}\d+\nhead: {15}[0-9a-f]{64}\nsigned checkpoints: 0 of 0 verified\n$/);
    // Verifying is for admins: the commander is refused, exit 3.
    const refused = await ic(['audit', 'verify']);
    expect(refused.code).toBe(3);
    expect(refused.stderr).toBe('error forbidden: Only an admin token may do this.\n');
  });

  it('close asks for confirmation: without a terminal it needs --yes', async () => {
    const unconfirmed = await ic(['close', codename]);
    expect(unconfirmed.code).toBe(2);
    expect(unconfirmed.stderr).toBe(`error usage: Closing ${codename} needs confirmation, and stdin is not a terminal.\n  what to do: incident-relay close ${codename} --yes\n`);
    expect(JSON.parse((await ic(['--json', 'show', codename])).stdout).status).toBe('open');

    const closed = await ic(['close', codename, '--yes']);
    expect(closed.code).toBe(0);
    expect(closed.stdout).toMatch(new RegExp(`^Closed ${codename} at \\d{4}-\\d{2}-\\d{2} \\d{2}:\\d{2}:\\d{2}Z\\.\\n$`));
    const incidents = await ic(['--json', 'incidents', '--status', 'closed']);
    expect(JSON.parse(incidents.stdout).incidents.map((i: { codename: string }) => i.codename)).toEqual([codename]);
    expect(JSON.parse((await ic(['--json', 'incidents', '--status', 'open'])).stdout).incidents).toEqual([]);
  });

  it('a closed incident refuses mail: exit 3, incident_closed', async () => {
    const res = await ic(['send', codename, '--to', 'sec@corp.example', '--text', 'late']);
    expect(res.code).toBe(3);
    expect(res.stderr).toMatch(/^error incident_closed: /);
    expect(res.stderr).toContain(`what to do: the commander reopens it (incident-relay reopen ${codename}) or declares a new incident (incident-relay declare)`);
  });

  it('logout forgets the token: the next command has none (exit 4) and the relay is kept', async () => {
    const res = await ic(['logout']);
    expect(res.code).toBe(0);
    const profile = path.join(icHome, 'config', 'incident-relay', 'config.json');
    expect(JSON.parse(fs.readFileSync(profile, 'utf8'))).toEqual({ relay: relay.url });
    const after = await ic(['incidents']);
    expect(after.code).toBe(4);
    expect(after.stderr).toBe(`error unauthenticated: No token for ${relay.url}.\n  what to do: run incident-relay login --relay ${relay.url}, or set INCIDENT_RELAY_TOKEN\n`);
  });

  it('no token ever appeared in any output of the whole incident', () => {
    expect(outputs.length).toBeGreaterThan(20);
    for (const text of outputs) expect(text).not.toContain(ADMIN_TOKEN);
    // The commander's token was printed once, by tokens create, as asked; never again.
    expect(outputs.filter((text) => text.includes(icToken))).toEqual([`${icToken}\n`]);
  });
});
