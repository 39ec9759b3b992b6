/**
 * The CLI against the second-wave routes of the API contract (issue 12):
 * dry runs, partial roster updates, the email list, labels and reopening,
 * token listing, admin audit queries, key scopes and revocation, the public
 * relay key. Driven as a subprocess against a relay on a real port, like
 * incident.test.ts.
 *
 * The comment on each describe names the routes it drives.
 */
import fs from 'node:fs';
import path from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { createGpgHome, type GeneratedKey, type GpgHome } from '../helpers/gpg.js';
import { ADMIN_TOKEN, buildCli, runCli, startCliRelay, tempHome, type CliRelay, type CliResult } from './harness.js';

/** A declared incident with counsel (key on the roster), carol (external, no key yet) and sec (internal). */
interface Fixture {
  relay: CliRelay;
  icKeyring: GpgHome;
  counsel: GeneratedKey;
  carol: GeneratedKey;
  icKey: GeneratedKey;
  codename: string;
  icToken: string;
  home: string;
  admin(args: string[]): Promise<CliResult>;
  ic(args: string[]): Promise<CliResult>;
}

/** Registers beforeAll/afterAll in the calling describe; the fixture is ready inside its tests. */
function incidentFixture(): Fixture {
  const f = {} as Fixture;
  beforeAll(async () => {
    buildCli();
    [f.relay, f.icKeyring] = await Promise.all([startCliRelay(), createGpgHome()]);
    [f.counsel, f.carol, f.icKey] = await Promise.all([
      f.icKeyring.generateKey('counsel@lawfirm.example', 'Outside Counsel'),
      f.icKeyring.generateKey('carol@lawfirm.example', 'Carol'),
      f.icKeyring.generateKey('ic@corp.example', 'Incident Commander'),
    ]);
    f.home = tempHome();
    const env = (token: string) => ({ INCIDENT_RELAY_URL: f.relay.url, INCIDENT_RELAY_TOKEN: token, GNUPGHOME: f.icKeyring.dir });
    f.admin = (args) => runCli(args, { home: f.home, env: env(ADMIN_TOKEN) });
    f.icToken = (await f.admin(['tokens', 'create', 'ic@corp.example'])).stdout.trim();
    f.ic = (args) => runCli(args, { home: f.home, env: env(f.icToken) });
    f.codename = (await f.ic(['declare'])).stdout.trim();
    for (const args of [
      ['roster', 'add', f.codename, 'counsel@lawfirm.example', '--role', 'external', '--name', 'Outside Counsel', '--key-from-gpg'],
      ['roster', 'add', f.codename, 'carol@lawfirm.example', '--role', 'legal', '--name', 'Carol'],
      ['roster', 'add', f.codename, 'sec@corp.example', '--role', 'security'],
    ]) {
      const res = await f.ic(args);
      if (res.code !== 0) throw new Error(`${args.join(' ')}: ${res.stderr}`);
    }
  }, 180_000);
  afterAll(async () => {
    await f.relay?.stop();
    await f.icKeyring?.cleanup();
    if (f.home) fs.rmSync(f.home, { recursive: true, force: true });
  });
  return f;
}

// uses POST /v1/incidents/:codename/emails?dryRun=true, GET /v1/incidents/:codename/emails (the CLI's guard) and PATCH /v1/incidents/:codename/roster/:email
describe('send --dry-run reports the missing key; roster update adds it', () => {
  const f = incidentFixture();

  it('the dry run is refused for the missing key, says why it is encrypted and how to fix it, and sends nothing', async () => {
    const res = await f.ic(['send', f.codename, '--to', 'counsel@lawfirm.example,carol@lawfirm.example', '--text', 'draft', '--dry-run']);
    expect(res.code).toBe(3);
    expect(res.stderr).toBe('');
    const lines = res.stdout.split('\n');
    expect(lines[0]).toMatch(/^Would be REFUSED \(missing_public_key\): .*carol@lawfirm\.example/);
    expect(lines.slice(1, 4)).toEqual([
      'Nothing was sent.',
      // The relay names who is outside (externalRecipients), so the verdict can too.
      '  would be ENCRYPTED because counsel@lawfirm.example, carol@lawfirm.example are outside the company',
      `  carol@lawfirm.example has no usable key: add one with incident-relay roster update ${f.codename} carol@lawfirm.example --key FILE (or --key-from-gpg carol@lawfirm.example)`,
    ]);
    expect(res.stdout).toMatch(/^ {2}encryption +fail +/m);
    const json = JSON.parse((await f.ic(['--json', 'send', f.codename, '--to', 'counsel@lawfirm.example,carol@lawfirm.example', '--text', 'draft', '--dry-run'])).stdout);
    expect(json).toMatchObject({ outcome: 'refuse', encrypted: true, encryptReason: 'external-recipient', missingKeys: ['carol@lawfirm.example'], offRoster: [], externalRecipients: ['counsel@lawfirm.example', 'carol@lawfirm.example'], error: { code: 'missing_public_key' } });
    expect(f.relay.upstream.received).toHaveLength(0);
  });

  it('roster update --key-from-gpg changes only the key; the dry run then accepts', async () => {
    const update = await f.ic(['roster', 'update', f.codename, 'carol@lawfirm.example', '--key-from-gpg']);
    expect(update).toEqual({ code: 0, stdout: `Updated carol@lawfirm.example on ${f.codename} as legal, key ${f.carol.fingerprint} from gpg (carol@lawfirm.example).\n`, stderr: '' });
    const roster = JSON.parse((await f.ic(['--json', 'roster', f.codename])).stdout).roster as { email: string; name: string; role: string; key: { fingerprint: string; status: string } | null }[];
    expect(roster.find((m) => m.email === 'carol@lawfirm.example')).toMatchObject({ name: 'Carol', role: 'legal', key: { fingerprint: f.carol.fingerprint, status: 'usable' } });

    const res = await f.ic(['send', f.codename, '--to', 'counsel@lawfirm.example,carol@lawfirm.example', '--text', 'draft', '--dry-run']);
    expect(res.code).toBe(0);
    expect(res.stdout.split('\n').slice(0, 2)).toEqual(['Would be ACCEPTED: ENCRYPTED, to 2 recipient(s). Nothing was sent.', '  would be ENCRYPTED because counsel@lawfirm.example, carol@lawfirm.example are outside the company']);
    expect(f.relay.upstream.received).toHaveLength(0);
  });

  it('roster update --no-phone / --phone change the phone and nothing else', async () => {
    expect((await f.ic(['roster', 'update', f.codename, 'sec@corp.example', '--phone', '+15555550100'])).code).toBe(0);
    const roster = () => f.ic(['--json', 'roster', f.codename]).then((r) => (JSON.parse(r.stdout).roster as { email: string; role: string; phone: string | null }[]).find((m) => m.email === 'sec@corp.example'));
    expect(await roster()).toMatchObject({ role: 'security', phone: '+15555550100' });
    expect((await f.ic(['roster', 'update', f.codename, 'sec@corp.example', '--no-phone'])).code).toBe(0);
    expect(await roster()).toMatchObject({ role: 'security', phone: null });
  });
});

// uses GET /v1/incidents/:codename/emails (list and ?messageId=)
describe('emails lists what was sent, with delivery status', () => {
  const f = incidentFixture();

  it('after an encrypted send, emails shows it sent; status finds it by Message-ID', async () => {
    const sent = JSON.parse((await f.ic(['--json', 'send', f.codename, '--to', 'counsel@lawfirm.example', '--text', 'Call at 3pm.'])).stdout);
    expect((await f.ic(['emails', 'status', f.codename, sent.id, '--wait', '20'])).stdout).toMatch(/^status: +sent$/m);

    const list = await f.ic(['--json', 'emails', f.codename]);
    expect(list.code).toBe(0);
    expect(JSON.parse(list.stdout).emails).toEqual([
      expect.objectContaining({ id: sent.id, messageId: sent.messageId, sender: 'ic@corp.example', encrypted: true, recipients: ['counsel@lawfirm.example'], status: 'sent', attempts: 1 }),
    ]);
    const table = await f.ic(['emails', f.codename]);
    expect(table.stdout.split('\n')[0]).toMatch(/^ID +CREATED +SENDER +STATUS +ENCRYPTED +ATTEMPTS +RECIPIENTS$/);
    expect(table.stdout).toMatch(new RegExp(`^${sent.id} .* ic@corp\\.example +sent +yes +1 +counsel@lawfirm\\.example$`, 'm'));

    const byMessageId = await f.ic(['emails', 'status', f.codename, sent.messageId]);
    expect(byMessageId.code).toBe(0);
    expect(byMessageId.stdout).toContain(`message-id: ${sent.messageId}\n`);
    expect(byMessageId.stdout).toMatch(/^status: +sent$/m);

    const unknown = await f.ic(['emails', 'status', f.codename, '<nope@corp.example>']);
    expect(unknown).toEqual({ code: 3, stdout: '', stderr: `error not_found: No email with Message-ID <nope@corp.example> in ${f.codename} that you can see.\n  what to do: the sender sees their own emails; commanders and admins see all\n` });
  });
});

// uses POST /v1/incidents {label} and PATCH /v1/incidents/:codename {status: "open"}
describe('declare --label and reopen', () => {
  const f = incidentFixture();

  it('the label shows to the roster; a closed incident reopens', async () => {
    const declared = await f.ic(['declare', '--label', 'Ransomware at plant 3']);
    expect(declared.code).toBe(0);
    const codename = declared.stdout.trim();
    expect((await f.ic(['show', codename])).stdout).toMatch(/^label: +Ransomware at plant 3$/m);
    expect((await f.ic(['close', codename, '--yes'])).code).toBe(0);
    expect(await f.ic(['reopen', codename])).toEqual({ code: 0, stdout: `Reopened ${codename}.\n`, stderr: '' });
    expect(JSON.parse((await f.ic(['--json', 'show', codename])).stdout)).toMatchObject({ status: 'open', closedAt: null, label: 'Ransomware at plant 3' });
  });
});

// uses GET /v1/tokens, POST /v1/tokens {incident} by a commander, and DELETE /v1/tokens/:id by the token's owner
describe('tokens list, commander-issued tokens, revoking your own', () => {
  const f = incidentFixture();

  it('lists metadata and never a secret; the commander issues a token for a member, who revokes it', async () => {
    const created = await f.ic(['tokens', 'create', 'sec@corp.example', '--incident', f.codename, '--label', 'sec laptop']);
    expect(created.code).toBe(0);
    const secToken = created.stdout.trim();
    expect(secToken).toMatch(/^ir_[a-z0-9]{16}_[A-Za-z0-9_-]{43}$/);

    const list = await f.admin(['--json', 'tokens', 'list']);
    expect(list.code).toBe(0);
    expect(list.stdout).not.toContain(secToken);
    expect(list.stdout).not.toContain(f.icToken);
    const tokens = JSON.parse(list.stdout).tokens as { id: string; email: string; role: string; label: string | null; createdBy: string | null; revokedAt: string | null }[];
    const sec = tokens.find((t) => t.email === 'sec@corp.example')!;
    expect(sec).toMatchObject({ role: 'responder', label: 'sec laptop', createdBy: 'ic@corp.example', revokedAt: null });
    expect(Object.keys(sec)).not.toContain('token');

    const asSec = (args: string[]) => runCli(args, { home: f.home, env: { INCIDENT_RELAY_URL: f.relay.url, INCIDENT_RELAY_TOKEN: secToken } });
    expect(JSON.parse((await asSec(['--json', 'tokens', 'list'])).stdout).tokens.map((t: { email: string }) => t.email)).toEqual(['sec@corp.example']);
    expect(await asSec(['tokens', 'revoke', sec.id])).toEqual({ code: 0, stdout: `Revoked token ${sec.id}.\n`, stderr: '' });
    expect((await asSec(['incidents'])).code).toBe(4);
  });
});

// uses GET /v1/audit and the type/actor/since/until filters on GET /v1/incidents/:codename/audit
describe('audit list with filters and audit export', () => {
  const f = incidentFixture();

  it('filters by type, actor and time', async () => {
    const created = JSON.parse((await f.admin(['--json', 'audit', 'list', '--type', 'incident.created'])).stdout).events as { type: string }[];
    expect(created.length).toBeGreaterThan(0);
    expect(new Set(created.map((e) => e.type))).toEqual(new Set(['incident.created']));
    const byIc = JSON.parse((await f.ic(['--json', 'audit', 'list', '--incident', f.codename, '--actor', 'ic@corp.example'])).stdout).events as { actor: string }[];
    expect(byIc.length).toBeGreaterThan(0);
    expect(new Set(byIc.map((e) => e.actor))).toEqual(new Set(['ic@corp.example']));
    expect(JSON.parse((await f.admin(['--json', 'audit', 'list', '--since', '2999-01-01'])).stdout).events).toEqual([]);
  });

  it('export writes every event as JSON lines, in order, to a new 0600 file, following pages', async () => {
    const file = path.join(f.home, 'audit.jsonl');
    const res = await f.admin(['audit', 'export', '--limit', '2', '-o', file]);
    expect(res.code).toBe(0);
    const events = fs.readFileSync(file, 'utf8').trimEnd().split('\n').map((line) => JSON.parse(line) as { seq: number });
    expect(res.stderr).toBe(`Wrote ${events.length} event(s) to ${file}.\n`);
    expect(events.length).toBeGreaterThan(4);
    expect(events.map((e) => e.seq)).toEqual([...events.map((e) => e.seq)].sort((a, b) => a - b));
    expect(fs.statSync(file).mode & 0o777).toBe(0o600);
    const again = await f.admin(['audit', 'export', '-o', file]);
    expect(again.code).toBe(1);
    expect(again.stderr).toMatch(/^error output: Cannot create .*: EEXIST\./);
  });
});

// uses GET /v1/keys/:email?incident= (scope, status), PUT /v1/keys/:email with a revocation certificate, DELETE /v1/keys/:email
describe('keys show, upload, revoke, remove', () => {
  const f = incidentFixture();

  it('the roster key holds in its incident; the commander files, revokes and withdraws their own relay-wide key', async () => {
    expect(JSON.parse((await f.ic(['--json', 'keys', 'show', 'counsel@lawfirm.example', '--incident', f.codename])).stdout)).toMatchObject({ fingerprint: f.counsel.fingerprint, scope: 'incident', status: 'usable' });

    expect(await f.ic(['keys', 'upload', 'ic@corp.example', '--key-from-gpg'])).toMatchObject({ code: 0, stdout: expect.stringMatching(new RegExp(`^Filed ${f.icKey.fingerprint} \\(.+\\) for ic@corp\\.example, from gpg \\(ic@corp\\.example\\)\\.\\n$`)) });
    expect(JSON.parse((await f.ic(['--json', 'keys', 'show', 'ic@corp.example'])).stdout)).toMatchObject({ fingerprint: f.icKey.fingerprint, scope: 'relay', status: 'usable' });

    const rev = path.join(f.icKeyring.dir, 'openpgp-revocs.d', `${f.icKey.fingerprint}.rev`);
    expect(await f.ic(['keys', 'revoke', 'ic@corp.example', '--certificate', rev])).toEqual({ code: 0, stdout: `Revoked ${f.icKey.fingerprint} for ic@corp.example: mail that needs it is refused until a new key is filed.\n`, stderr: '' });
    expect(JSON.parse((await f.ic(['--json', 'keys', 'show', 'ic@corp.example'])).stdout)).toMatchObject({ status: 'revoked' });

    expect(await f.ic(['keys', 'remove', 'ic@corp.example'])).toEqual({ code: 0, stdout: 'Withdrew the relay-wide key of ic@corp.example.\n', stderr: '' });
    const gone = await f.ic(['keys', 'show', 'ic@corp.example']);
    expect(gone.code).toBe(3);
    expect(gone.stderr).toMatch(/^error not_found: /);
  });
});

// uses GET /v1/relay-key without a token, and its Accept: application/json answer
describe('relay-key without a token', () => {
  const f = incidentFixture();

  it('anyone can fetch it; the fingerprint is computed locally and matches the relay', async () => {
    const fingerprint = f.relay.relay.ctx.relayKey.fingerprint;
    const anonymous = (args: string[]) => runCli(args, { home: f.home, env: { INCIDENT_RELAY_URL: f.relay.url } });
    const res = await anonymous(['relay-key']);
    expect(res.code).toBe(0);
    expect(res.stdout).toMatch(/^-----BEGIN PGP PUBLIC KEY BLOCK-----\n/);
    expect(res.stderr).toBe(`fingerprint: ${fingerprint.match(/.{4}/g)!.join(' ')}\n`);
    expect(JSON.parse((await anonymous(['--json', 'relay-key'])).stdout)).toEqual({ fingerprint, publicKey: expect.stringMatching(/^-----BEGIN PGP PUBLIC KEY BLOCK-----/) });
  });
});
