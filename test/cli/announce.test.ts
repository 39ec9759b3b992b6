/**
 * Announcements through the command-line tool, as a subprocess against a
 * relay on a real port with a real smtp-server upstream: the security-team
 * refusal and its fix, an admin's audience list, a draft refused until it is
 * checked, approved by the commander and legal (never its author) and the
 * internal source ruled out, then sent, one copy per reader with the title
 * as the subject. Exit codes, hints and --json as scripts see them.
 */
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { simpleParser } from 'mailparser';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { buildCli, runCli, startCliRelay, tempHome, type CliRelay, type CliResult } from './harness.js';

let relay: CliRelay;
let home: string;
const tokens = new Map<string, string>();
let codename: string;
let id: string;
const today = new Date().toISOString().slice(0, 10);
const TITLE = `Security notice, ${today}`;
const TEXT = `On ${today} we found unauthorised access to one support tool.\nWe closed it the same day.\n`;

function as(email: string, args: string[], stdin?: string): Promise<CliResult> {
  return runCli(args, { home, env: { INCIDENT_RELAY_URL: relay.url, INCIDENT_RELAY_TOKEN: tokens.get(email)! }, ...(stdin !== undefined ? { stdin } : {}) });
}

beforeAll(async () => {
  buildCli();
  relay = await startCliRelay();
  home = tempHome();
  for (const [email, role] of [
    ['admin@corp.example', 'admin'],
    ['ic@corp.example', 'responder'],
    ['legal@corp.example', 'responder'],
    ['comms@corp.example', 'responder'],
  ] as const) {
    tokens.set(email, (await relay.relay.ctx.store.tokens.create({ email, role, at: new Date() })).token);
  }
}, 180_000);

afterAll(async () => {
  await relay?.stop();
  if (home) fs.rmSync(home, { recursive: true, force: true });
});

describe('announce and audiences', () => {
  it('mail waits for a security member: exit 3, the code, and the command that fixes it', async () => {
    codename = (await as('ic@corp.example', ['declare'])).stdout.trim();
    for (const [email, role] of [
      ['legal@corp.example', 'legal'],
      ['comms@corp.example', 'communications'],
      ['exec@corp.example', 'executive'],
    ]) {
      expect((await as('ic@corp.example', ['roster', 'add', codename, email!, '--role', role!])).code).toBe(0);
    }
    const refused = await as('ic@corp.example', ['send', codename, '--to', 'exec@corp.example', '--text', 'hello']);
    expect(refused.code).toBe(3);
    expect(refused.stderr.split('\n')).toEqual([
      'error security_team_missing: No email is sent for this incident until a member with role security is on its roster: the security team is always included. Nothing was sent; a commander or deputy adds one with PUT /v1/incidents/:codename/roster/:email {"name": "…", "role": "security"}, or an admin sets RELAY_SECURITY_TEAM so every new incident starts with them.',
      '  rule: security-team',
      `  what to do: a commander or deputy adds one: incident-relay roster add ${codename} EMAIL --role security   (or an admin sets RELAY_SECURITY_TEAM for every new incident)`,
      '',
    ]);
    expect((await as('ic@corp.example', ['roster', 'add', codename, 'sec@corp.example', '--role', 'security'])).code).toBe(0);
    expect((await as('ic@corp.example', ['send', codename, '--to', 'exec@corp.example', '--text', 'hello'])).code).toBe(0);
    await relay.upstream.waitFor(1);
  });

  it('an admin keeps an audience list; responders see its name and size', async () => {
    const set = await as('admin@corp.example', ['audiences', 'set', 'press', '--file', '-'], 'desk@news.example\ntips@paper.example, desk@news.example\n');
    expect(set).toEqual({ code: 0, stdout: 'Audience list press: 2 address(es).\n', stderr: '' });
    // A list file is bounded like one from stdin, before it is read.
    const big = path.join(os.tmpdir(), `relay-audience-${process.pid}.txt`);
    fs.writeFileSync(big, Buffer.alloc(8 * 1024 * 1024 + 1, 'a'));
    try {
      const tooBig = await as('admin@corp.example', ['audiences', 'set', 'press', '--file', big]);
      expect(tooBig).toEqual({ code: 1, stdout: '', stderr: `error body_file: ${big} is larger than 8388608 bytes; an audience list is one address a line.\n` });
    } finally {
      fs.rmSync(big, { force: true });
    }
    const refused = await as('ic@corp.example', ['audiences', 'set', 'press', '--to', 'x@news.example']);
    expect(refused.code).toBe(3);
    expect(refused.stderr).toBe('error forbidden: Only an admin token may do this.\n');
    const list = await as('ic@corp.example', ['audiences']);
    expect(list.code).toBe(0);
    expect(list.stdout.split('\n')[0]).toBe('NAME   ADDRESSES  UPDATED               BY');
    expect(list.stdout).toMatch(/^press  2 {10}\d{4}-\d\d-\d\d \d\d:\d\d:\d\dZ  admin@corp\.example$/m);
  });

  it('draft prints only the id; send before check, and an approval by the author, are refused with what to do', async () => {
    const drafted = await as('comms@corp.example', ['announce', 'draft', codename, '--kind', 'external', '--title', TITLE, '--file', '-', '--list', 'press'], TEXT);
    expect(drafted.code).toBe(0);
    expect(drafted.stdout).toMatch(/^[0-9a-f-]{36}\n$/);
    id = drafted.stdout.trim();
    expect(drafted.stderr).toBe(`Drafted external announcement ${id} to 2 address(es). Next: incident-relay announce check ${codename} ${id}\n`);

    const early = await as('comms@corp.example', ['announce', 'send', codename, id]);
    expect(early.code).toBe(3);
    expect(early.stderr).toContain('error announcement_not_checked:');
    expect(early.stderr).toContain(`  what to do: check it first: incident-relay announce check ${codename} ${id}\n`);

    const checked = await as('comms@corp.example', ['announce', 'check', codename, id]);
    expect(checked.code).toBe(0);
    expect(checked.stdout).toBe(`Checked ${id}: checked, not yet ready (no record that forensics ruled out an internal source; missing approval by: commander, legal or communications).\n`);

    const own = await as('comms@corp.example', ['announce', 'approve', codename, id]);
    expect(own.code).toBe(3);
    expect(own.stderr.split('\n')).toEqual([
      'error approval_not_allowed: You wrote this announcement, so your approval does not count: approval is a second pair of eyes. Ask the commander and a member with role legal or communications to approve it.',
      '  rule: approval',
      '  reason: author',
      "  what to do: the commander and members with role legal or communications approve, never the announcement's author",
      '',
    ]);
    const unapproved = await as('comms@corp.example', ['--json', 'announce', 'send', codename, id]);
    expect(unapproved.code).toBe(3);
    expect(JSON.parse(unapproved.stdout).error).toMatchObject({ code: 'internal_source_not_ruled_out', rule: 'internal-source' });
    expect(unapproved.stderr).toContain(`  what to do: once forensics shows it, the commander records it: incident-relay announce internal-source ${codename} --ruled-out --note "…"\n`);
  });

  it('the commander records the internal source ruled out, then approves with legal; show says it is ready', async () => {
    const usage = await as('ic@corp.example', ['announce', 'internal-source', codename, '--ruled-out']);
    expect(usage.code).toBe(2);
    const recorded = await as('ic@corp.example', ['announce', 'internal-source', codename, '--ruled-out', '--note', 'Report FR-7: external IP, no insider.']);
    expect(recorded.code).toBe(0);
    expect(recorded.stdout).toMatch(new RegExp(`^Recorded on ${codename}: internal source ruled out, \\d{4}-\\d\\d-\\d\\d \\d\\d:\\d\\d:\\d\\dZ by ic@corp\\.example\\.\\n$`));

    const half = await as('ic@corp.example', ['announce', 'approve', codename, id]);
    expect(half.stdout).toBe(`Approved ${id}: checked, not yet ready (missing approval by: legal or communications).\n`);
    const stillShort = await as('comms@corp.example', ['announce', 'send', codename, id]);
    expect(stillShort.code).toBe(3);
    expect(stillShort.stderr).toContain(`  what to do: ask the commander and a member with role legal or communications (not the author): incident-relay announce approve ${codename} ${id}\n`);
    const twice = await as('ic@corp.example', ['announce', 'approve', codename, id]);
    expect(twice.stderr).toContain('error already_approved:');
    const full = await as('legal@corp.example', ['announce', 'approve', codename, id]);
    expect(full.stdout).toBe(`Approved ${id}: approved, ready to send.\n`);

    const show = await as('comms@corp.example', ['announce', 'show', codename, id]);
    expect(show.code).toBe(0);
    expect(show.stdout).toContain(`title:         ${TITLE}\n`);
    expect(show.stdout).toContain('audience:      2 address(es) (list press)\n');
    expect(show.stdout).toContain('ready to send: yes\n');
    expect(show.stdout).toMatch(/approvals:\n  APPROVER {12}ROLE {7}AT {20}COUNTS\n  ic@corp\.example {5}commander/);
    expect(show.stdout).toContain('  approval         pass    approved for this exact content by the commander ic@corp.example and legal legal@corp.example, neither the author\n');
    expect(show.stdout.endsWith(`text:\n  On ${today} we found unauthorised access to one support tool.\n  We closed it the same day.\n  \n`)).toBe(true);
    const list = await as('comms@corp.example', ['announce', codename]);
    expect(list.stdout.split('\n')[1]).toMatch(new RegExp(`^${id}  external  approved  yes    comms@corp\\.example  2 +${TITLE}$`));
  });

  it('send queues one copy per reader, the title as subject; a second send is refused', async () => {
    const before = relay.upstream.received.length;
    const sent = await as('comms@corp.example', ['--json', 'announce', 'send', codename, id]);
    expect(sent.code).toBe(0);
    expect(JSON.parse(sent.stdout)).toEqual({ id, state: 'sent', emailId: expect.any(String), messageId: expect.stringMatching(/^<[0-9a-f-]{36}@corp\.example>$/), status: 'queued', copies: 2, encrypted: 0, idempotencyKey: expect.stringMatching(/^cli-/) });
    const mails = (await relay.upstream.waitFor(before + 2)).slice(before);
    expect(mails.map((m) => m.to).sort()).toEqual([['desk@news.example'], ['tips@paper.example']]);
    for (const mail of mails) {
      const parsed = await simpleParser(mail.raw);
      expect(parsed.subject).toBe(TITLE);
      expect(parsed.text).toBe(TEXT);
    }
    const again = await as('comms@corp.example', ['announce', 'send', codename, id]);
    expect(again.code).toBe(3);
    expect(again.stderr).toContain('error announcement_sent:');
    expect(again.stderr).toContain(`  what to do: it went out as it is; to correct it, write a new, dated one: incident-relay announce draft ${codename} …\n`);
  });

  it('an outsider in a plain send is pointed at announcements', async () => {
    const res = await as('ic@corp.example', ['send', codename, '--to', 'press@news.example', '--text', 'x']);
    expect(res.code).toBe(3);
    expect(res.stderr).toContain(`  what to do: people outside the response team hear through an approved announcement: incident-relay announce draft ${codename} --help\n`);
  });
});
