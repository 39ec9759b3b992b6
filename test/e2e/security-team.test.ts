/**
 * Rule `security-team` end to end (issue 14, SPEC §8): no email or SMS for an
 * incident until an active security member is on its roster; RELAY_SECURITY_TEAM
 * joins every new incident and only an admin removes them; mail accepted
 * before the last security member left is held, not sent and not dropped.
 * The real app, a real smtp-server upstream, the SMS outbox channel, the
 * delivery worker; on both store backends.
 */
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { afterEach, describe, expect, it } from 'vitest';
import { createSmtpChannel } from '../../src/channels/email/smtp.js';
import { createSmsOutboxChannel } from '../../src/channels/sms/outbox-jsonl.js';
import { loadConfig } from '../../src/config.js';
import { DeliveryWorker } from '../../src/workers/delivery.js';
import { BACKENDS, createTestRelay, type TestRelay } from '../helpers/relay.js';
import { startUpstream, type Upstream } from '../helpers/upstream.js';

const auth = (token: string) => ({ Authorization: `Bearer ${token}` });

describe.each(BACKENDS)('rule security-team (%s)', (backend) => {
  let upstream: Upstream;
  let relay: TestRelay;
  let worker: DeliveryWorker;
  let channel: ReturnType<typeof createSmtpChannel>;
  let smsFile: string;
  let ic: string;
  const codename = 'amber-otter';

  async function start(securityTeam: string[] = []): Promise<void> {
    upstream = await startUpstream();
    relay = await createTestRelay({ smtpUpstream: upstream.url, securityTeam }, { backend });
    channel = createSmtpChannel(upstream.url);
    smsFile = path.join(fs.mkdtempSync(path.join(os.tmpdir(), 'relay-sms-')), 'sms.jsonl');
    worker = new DeliveryWorker(relay.ctx, { channels: { email: channel, sms: createSmsOutboxChannel(smsFile) }, baseBackoffMs: 60_000, random: () => 0 });
    ic = await relay.tokenFor('ic@corp.example');
    expect((await relay.request.post('/v1/incidents').set(auth(ic)).send({ codename })).status).toBe(201);
  }

  afterEach(async () => {
    await worker.stop();
    channel.close();
    await upstream.stop();
    await relay.ctx.store.close();
  });

  const put = (email: string, role: string, token = ic, phone?: string) =>
    relay.request.put(`/v1/incidents/${codename}/roster/${email}`).set(auth(token)).send({ name: email.split('@')[0], role, ...(phone ? { phone } : {}) });
  const mail = () => relay.request.post(`/v1/incidents/${codename}/emails`).set(auth(ic)).send({ to: ['exec@corp.example'], text: 'Rotate the keys.' });
  const nudge = () => relay.request.post(`/v1/incidents/${codename}/sms`).set(auth(ic)).send({ to: ['exec@corp.example'] });
  const smsLines = () => (fs.existsSync(smsFile) ? fs.readFileSync(smsFile, 'utf8').split('\n').filter((l) => l !== '') : []);

  async function events(type: string): Promise<{ outcome: string; actor: string | null; data: Record<string, unknown> }[]> {
    const rows = await relay.ctx.store.sql.all<{ outcome: string; actor: string | null; data: string }>('SELECT outcome, actor, data FROM audit_events WHERE type = ? ORDER BY seq', [type]);
    return rows.map((r) => ({ outcome: r.outcome, actor: r.actor, data: JSON.parse(r.data) as Record<string, unknown> }));
  }

  it('refuses email and SMS on an incident without a security member, and passes once one is added', async () => {
    await start();
    expect((await put('exec@corp.example', 'executive', ic, '+15555550102')).status).toBe(201);

    const refusedMail = await mail();
    expect(refusedMail.status).toBe(409);
    expect(refusedMail.body.error).toMatchObject({ code: 'security_team_missing', rule: 'security-team' });
    expect(refusedMail.body.error.message).toContain('PUT /v1/incidents/:codename/roster/:email');
    expect(refusedMail.body.error.message).toContain('RELAY_SECURITY_TEAM');
    const refusedSms = await nudge();
    expect(refusedSms.status).toBe(409);
    expect(refusedSms.body.error).toMatchObject({ code: 'security_team_missing', rule: 'security-team' });
    await worker.drain();
    expect(upstream.received).toHaveLength(0);
    expect(smsLines()).toEqual([]);
    expect(Number((await relay.ctx.store.sql.get<{ n: number }>('SELECT COUNT(*) AS n FROM deliveries'))!.n)).toBe(0);
    // Both refusals are on the record with the rule's outcome.
    const [emailDecision] = await events('email.decision');
    expect(emailDecision).toMatchObject({ outcome: 'refused', data: { code: 'security_team_missing' } });
    expect((emailDecision!.data['rules'] as { rule: string; result: string }[]).find((r) => r.rule === 'security-team')).toMatchObject({ result: 'fail' });
    expect((await events('sms.decision'))[0]).toMatchObject({ outcome: 'refused', data: { code: 'security_team_missing' } });

    expect((await put('sec@corp.example', 'security')).status).toBe(201);
    expect((await mail()).status).toBe(202);
    expect((await nudge()).status).toBe(202);
    await worker.drain();
    expect((await upstream.waitFor(1)).map((m) => m.to)).toEqual([['exec@corp.example']]);
    expect(smsLines().map((l) => (JSON.parse(l) as { to: string }).to)).toEqual(['+15555550102']);
  });

  it('enlists a RELAY_SECURITY_TEAM member with a Unicode domain as its A-label, who then counts and can be removed only by an admin', async () => {
    await start(loadConfig({ RELAY_SECURITY_TEAM: 'SecOps@Bücher.example' }).securityTeam);
    const roster = await relay.request.get(`/v1/incidents/${codename}/roster`).set(auth(ic));
    expect(roster.body.roster.map((m: { email: string; role: string }) => [m.email, m.role])).toEqual([
      ['ic@corp.example', 'commander'],
      ['secops@xn--bcher-kva.example', 'security'],
    ]);
    expect((await put('exec@corp.example', 'executive')).status).toBe(201);
    expect((await mail()).status).toBe(202);
    // Named in either form, it is the same protected member.
    for (const form of ['secops@bücher.example', 'secops@xn--bcher-kva.example']) {
      const removed = await relay.request.delete(`/v1/incidents/${codename}/roster/${encodeURIComponent(form)}`).set(auth(ic));
      expect(removed.status).toBe(403);
      expect(removed.body.error).toMatchObject({ code: 'security_team_protected', details: { email: 'secops@xn--bcher-kva.example' } });
    }
  });

  it('RELAY_SECURITY_TEAM joins every new incident as security, audited; only an admin removes or demotes them', async () => {
    await start(['secops@corp.example', 'ic@corp.example']);
    const roster = await relay.request.get(`/v1/incidents/${codename}/roster`).set(auth(ic));
    // The commander on the team keeps the commander role.
    expect(roster.body.roster.map((m: { email: string; role: string }) => [m.email, m.role])).toEqual([
      ['ic@corp.example', 'commander'],
      ['secops@corp.example', 'security'],
    ]);
    expect((await events('roster.added')).map((e) => [e.actor, e.data['email'], e.data['role'], e.data['source']])).toEqual([[null, 'secops@corp.example', 'security', 'RELAY_SECURITY_TEAM']]);
    // So mail goes at once.
    expect((await put('exec@corp.example', 'executive')).status).toBe(201);
    expect((await mail()).status).toBe(202);

    const removed = await relay.request.delete(`/v1/incidents/${codename}/roster/secops@corp.example`).set(auth(ic));
    expect(removed.status).toBe(403);
    expect(removed.body.error).toMatchObject({ code: 'security_team_protected', rule: 'security-team', details: { email: 'secops@corp.example' } });
    const demoted = await put('secops@corp.example', 'executive');
    expect(demoted.status).toBe(403);
    expect(demoted.body.error.code).toBe('security_team_protected');
    // A deputy may not either; updating them as security is fine.
    expect((await put('deputy@corp.example', 'deputy')).status).toBe(201);
    const deputy = await relay.tokenFor('deputy@corp.example');
    expect((await relay.request.delete(`/v1/incidents/${codename}/roster/secops@corp.example`).set(auth(deputy))).body.error.code).toBe('security_team_protected');
    expect((await put('secops@corp.example', 'security', ic, '+15555550109')).status).toBe(200);
    // Other security members are the commander's to manage as before.
    expect((await put('analyst@corp.example', 'security')).status).toBe(201);
    expect((await relay.request.delete(`/v1/incidents/${codename}/roster/analyst@corp.example`).set(auth(ic))).status).toBe(204);
    // An admin may.
    expect((await relay.request.delete(`/v1/incidents/${codename}/roster/secops@corp.example`).set(auth(relay.admin))).status).toBe(204);
  });

  it('holds mail accepted before the last security member left, and sends it once one is back', async () => {
    await start();
    expect((await put('sec@corp.example', 'security')).status).toBe(201);
    expect((await put('exec@corp.example', 'executive')).status).toBe(201);
    const accepted = await mail();
    expect(accepted.status).toBe(202);
    expect((await relay.request.delete(`/v1/incidents/${codename}/roster/sec@corp.example`).set(auth(ic))).status).toBe(204);

    await worker.drain();
    expect(upstream.received).toHaveLength(0);
    const [row] = await relay.ctx.store.sql.all<{ status: string; body: Buffer | null; last_error: string; attempts: number }>('SELECT status, body, last_error, attempts FROM deliveries');
    expect(row).toMatchObject({ status: 'queued', attempts: 1, last_error: 'held: the incident has no active member with role security (rule security-team); add one to release it' });
    expect(row!.body).not.toBeNull();
    expect((await events('email.delivery_held')).map((e) => [e.outcome, e.data['rule']])).toEqual([['retry', 'security-team']]);

    expect((await put('sec2@corp.example', 'security')).status).toBe(201);
    relay.clock.advance(60_000);
    await worker.drain();
    expect((await upstream.waitFor(1)).map((m) => m.to)).toEqual([['exec@corp.example']]);
    expect((await relay.request.get(`/v1/incidents/${codename}/emails/${accepted.body.id}`).set(auth(ic))).body).toMatchObject({ status: 'sent', attempts: 2 });
  });
});
