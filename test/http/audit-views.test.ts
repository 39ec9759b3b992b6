/**
 * Reading the audit log (issue 12 §4) and who may see Bcc recipients in it
 * (issue 10 §5). GET /v1/audit (admins) and the incident route take the same
 * filters and page by sequence number. Deputies and scribes read an
 * incident's audit, but a Bcc address appears nowhere in what they get back
 * unless they sent that email; the commander and admins see it. On both
 * store backends, with the real delivery worker and a real upstream.
 */
import { afterEach, beforeEach, describe, expect, it } from 'vitest';
import { createSmtpChannel } from '../../src/channels/email/smtp.js';
import { redactBcc } from '../../src/services/audit-views.js';
import type { AuditEvent } from '../../src/store/audit.js';
import type { EmailRecord } from '../../src/store/outbox.js';
import { DeliveryWorker } from '../../src/workers/delivery.js';
import { BACKENDS, createTestRelay, type TestRelay } from '../helpers/relay.js';
import { startUpstream, type Upstream } from '../helpers/upstream.js';

const auth = (token: string) => ({ Authorization: `Bearer ${token}` });

// Addresses that are only ever Bcc recipients in these tests.
const HIDDEN_PARTIAL = 'hidden-partial@corp.example';
const HIDDEN_CANCELLED = 'hidden-cancelled@corp.example';
const HIDDEN_SENT = 'hidden-sent@corp.example';

describe.each(BACKENDS)('audit views (%s)', (backend) => {
  let relay: TestRelay;
  let upstream: Upstream;
  let worker: DeliveryWorker;
  let channel: ReturnType<typeof createSmtpChannel>;
  let tokens: Record<'ic' | 'deputy' | 'deputy2' | 'scribe' | 'sec', string>;
  let codename: string;

  beforeEach(async () => {
    upstream = await startUpstream();
    relay = await createTestRelay({ smtpUpstream: upstream.url }, { backend });
    channel = createSmtpChannel(upstream.url);
    worker = new DeliveryWorker(relay.ctx, { channels: { email: channel }, baseBackoffMs: 10, random: () => 0 });
    tokens = {
      ic: await relay.tokenFor('ic@corp.example'),
      deputy: await relay.tokenFor('deputy@corp.example'),
      deputy2: await relay.tokenFor('deputy2@corp.example'),
      scribe: await relay.tokenFor('scribe@corp.example'),
      sec: await relay.tokenFor('sec@corp.example'),
    };
    codename = (await relay.request.post('/v1/incidents').set(auth(tokens.ic)).send({})).body.codename;
    for (const [email, role] of [
      ['deputy@corp.example', 'deputy'],
      ['deputy2@corp.example', 'deputy'],
      ['scribe@corp.example', 'scribe'],
      ['sec@corp.example', 'security'],
      [HIDDEN_PARTIAL, 'executive'],
      [HIDDEN_CANCELLED, 'executive'],
      [HIDDEN_SENT, 'executive'],
    ]) {
      expect((await relay.request.put(`/v1/incidents/${codename}/roster/${email}`).set(auth(tokens.ic)).send({ name: 'N', role })).status).toBe(201);
    }
  });

  afterEach(async () => {
    await worker.stop();
    channel.close();
    await upstream.stop();
  });

  const send = async (token: string, body: Record<string, unknown>) => {
    const res = await relay.request.post(`/v1/incidents/${codename}/emails`).set(auth(token)).send(body);
    expect(res.status).toBe(202);
    return res.body as { id: string };
  };
  const incidentAudit = (token: string, query = '') => relay.request.get(`/v1/incidents/${codename}/audit${query}`).set(auth(token));

  /** The deputy mails sec with a Bcc copy three times: one Bcc recipient refused by the upstream, one removed from the roster before delivery, one delivered. */
  async function bccTraffic(): Promise<void> {
    upstream.refuseRecipients.set(HIDDEN_PARTIAL, 550);
    await send(tokens.deputy, { to: ['sec@corp.example'], bcc: [HIDDEN_PARTIAL], text: 'one' });
    await send(tokens.deputy, { to: ['sec@corp.example'], bcc: [HIDDEN_CANCELLED], text: 'two' });
    expect((await relay.request.delete(`/v1/incidents/${codename}/roster/${HIDDEN_CANCELLED}`).set(auth(tokens.ic))).status).toBe(204);
    await send(tokens.deputy, { to: ['sec@corp.example'], bcc: [HIDDEN_SENT], text: 'three' });
    // A preview with a Bcc recipient is audited too.
    expect((await relay.request.post(`/v1/incidents/${codename}/emails?dryRun=true`).set(auth(tokens.deputy)).send({ to: ['sec@corp.example'], bcc: [HIDDEN_SENT], text: 'four' })).status).toBe(200);
    await worker.drain();
    await upstream.waitFor(2);
  }

  it('hides every Bcc address from a deputy and a scribe who did not send the email, in every email event', async () => {
    await bccTraffic();
    const types = new Set((await incidentAudit(tokens.ic, '?type=email.*')).body.events.map((e: AuditEvent) => e.type));
    // The events that name a Bcc recipient for the commander are all there.
    expect(types).toEqual(new Set(['email.decision', 'email.preview', 'email.delivery_partial', 'email.delivery_cancelled', 'email.delivered']));
    for (const reader of ['deputy2', 'scribe'] as const) {
      const res = await incidentAudit(tokens[reader], '?type=email.*');
      expect(res.status).toBe(200);
      for (const hidden of [HIDDEN_PARTIAL, HIDDEN_CANCELLED, HIDDEN_SENT]) expect(res.text, `${reader} reads ${hidden}`).not.toContain(hidden);
      const events = res.body.events as AuditEvent[];
      expect(events.filter((e) => e.type === 'email.decision').map((e) => e.data['recipients'])).toEqual([
        { to: ['sec@corp.example'], cc: [], bcc: [] },
        { to: ['sec@corp.example'], cc: [], bcc: [] },
        { to: ['sec@corp.example'], cc: [], bcc: [] },
      ]);
      expect(events.filter((e) => e.type === 'email.decision').map((e) => e.data['redacted'])).toEqual([{ bcc: 1 }, { bcc: 1 }, { bcc: 1 }]);
      expect(events.find((e) => e.type === 'email.delivery_partial')!.data).toMatchObject({ recipients: [], redacted: { bcc: 1 } });
      expect(events.find((e) => e.type === 'email.delivery_cancelled')!.data).toMatchObject({ recipients: [], redacted: { bcc: 1 } });
      // Visible recipients stay visible.
      expect(res.text).toContain('sec@corp.example');
    }
    // Over the whole log, the only events naming them are the roster's, which every reader sees in GET …/roster anyway.
    const everything = (await incidentAudit(tokens.scribe, '?limit=1000')).body.events as AuditEvent[];
    const naming = everything.filter((e) => [HIDDEN_PARTIAL, HIDDEN_CANCELLED, HIDDEN_SENT].some((h) => JSON.stringify(e).includes(h)));
    expect(new Set(naming.map((e) => e.type))).toEqual(new Set(['roster.added', 'roster.removed']));
  });

  it('shows the Bcc addresses to the commander, an admin and the deputy who sent them', async () => {
    await bccTraffic();
    for (const [reader, res] of [
      ['commander', await incidentAudit(tokens.ic, '?type=email.*')],
      ['admin', await incidentAudit(relay.admin, '?type=email.*')],
      ['admin, whole log', await relay.request.get('/v1/audit?type=email.*').set(auth(relay.admin))],
      ['sender', await incidentAudit(tokens.deputy, '?type=email.*')],
    ] as const) {
      for (const hidden of [HIDDEN_PARTIAL, HIDDEN_CANCELLED, HIDDEN_SENT]) expect(res.text, `${reader} reads ${hidden}`).toContain(hidden);
      expect(res.text, reader).not.toContain('redacted');
    }
  });

  it('filters by type, type prefix, actor and time, and pages by cursor in chain order', async () => {
    await send(tokens.sec, { to: ['deputy@corp.example'], text: 'x' });
    relay.clock.advance(60_000);
    const later = relay.clock.now().toISOString();
    await send(tokens.deputy, { to: ['sec@corp.example'], text: 'y' });
    const admin = (query: string) => relay.request.get(`/v1/audit${query}`).set(auth(relay.admin));

    const decisions = (await admin('?type=email.decision')).body.events as AuditEvent[];
    expect(decisions.map((e) => e.actor)).toEqual(['sec@corp.example', 'deputy@corp.example']);
    expect((await admin('?type=roster.*')).body.events.every((e: AuditEvent) => e.type.startsWith('roster.'))).toBe(true);
    expect((await admin('?type=roster.*')).body.events).toHaveLength(7);
    expect((await admin('?actor=sec@corp.example')).body.events.map((e: AuditEvent) => e.type)).toEqual(['email.decision']);
    expect((await admin(`?type=email.decision&since=${encodeURIComponent(later)}`)).body.events.map((e: AuditEvent) => e.actor)).toEqual(['deputy@corp.example']);
    expect((await admin(`?type=email.decision&until=${encodeURIComponent(later)}`)).body.events.map((e: AuditEvent) => e.actor)).toEqual(['sec@corp.example']);
    expect((await admin('?since=2999-01-01')).body).toEqual({ events: [] });
    expect((await admin(`?incident=${codename}&type=incident.created`)).body.events).toHaveLength(1);

    // Every event, two at a time: in seq order, none twice, none missed.
    const all = (await admin('?limit=1000')).body.events as AuditEvent[];
    const paged: number[] = [];
    let cursor: string | undefined;
    for (let pages = 0; pages < 100; pages++) {
      const res = await admin(`?limit=2${cursor ? `&cursor=${cursor}` : ''}`);
      paged.push(...res.body.events.map((e: AuditEvent) => e.seq));
      cursor = res.body.next;
      if (cursor === undefined) break;
    }
    expect(paged).toEqual(all.map((e) => e.seq));
    expect(paged).toEqual([...paged].sort((a, b) => a - b));

    // The actor filter is normalised as stored actors are: a Unicode domain finds its A-label form.
    await relay.ctx.store.audit.append({ type: 'test.marker', actor: 'ana@xn--bcher-kva.example', outcome: 'ok' });
    expect((await admin(`?actor=${encodeURIComponent('Ana@Bücher.example')}`)).body.events.map((e: AuditEvent) => [e.type, e.actor])).toEqual([['test.marker', 'ana@xn--bcher-kva.example']]);

    // The incident route takes the same filters (not incident).
    expect((await incidentAudit(tokens.ic, '?type=email.decision&actor=deputy@corp.example')).body.events).toHaveLength(1);
    expect((await incidentAudit(tokens.ic, `?incident=${codename}`)).status).toBe(400);
  });

  it('is for admins only, refuses bad filters with 400, and an unknown incident with 404', async () => {
    const refused = await relay.request.get('/v1/audit').set(auth(tokens.ic));
    expect(refused.status).toBe(403);
    expect(refused.body.error.code).toBe('forbidden');
    for (const query of ['?since=yesterday', '?until=2026-13-45', '?type=Email', '?type=*', '?limit=0', '?cursor=abc', '?foo=bar']) {
      const res = await relay.request.get(`/v1/audit${query}`).set(auth(relay.admin));
      expect(res.status, query).toBe(400);
      expect(res.body.error.code, query).toBe('invalid_request');
    }
    expect((await relay.request.get('/v1/audit?incident=amber-otter').set(auth(relay.admin))).status).toBe(404);
    // sec (role security) does not read the incident's audit at all.
    expect((await incidentAudit(tokens.sec)).status).toBe(403);
  });
});

describe('redactBcc', () => {
  const event = (type: string, data: Record<string, unknown>, actor: string | null = null): AuditEvent => ({ seq: 1, at: '', type, actor, incidentId: 'i', outcome: 'ok', data, prevHash: '', hash: '' });
  const email = (bcc: string[] | null): EmailRecord => ({
    id: 'e1',
    incidentId: 'i',
    messageId: '<e1@corp.example>',
    sender: 'deputy@corp.example',
    encrypted: false,
    chainExternal: false,
    recipients: ['to@corp.example', 'b@corp.example'],
    bcc,
    createdAt: '',
  });

  it('takes a Bcc address out of any field of an email event, even one it does not know', () => {
    const e = event('email.something_new', { emailId: 'e1', recipients: ['to@corp.example', 'B@corp.example'], detail: { who: 'b@corp.example' } });
    expect(redactBcc(e, 'scribe@corp.example', new Map([['e1', email(['b@corp.example'])]])).data).toEqual({
      emailId: 'e1',
      recipients: ['to@corp.example'],
      detail: { who: '(hidden)' },
      redacted: { bcc: 2 },
    });
  });

  it('takes it out of longer text (an upstream reply quoting it) and drops entries about it whole', () => {
    const e = event('email.delivery_partial', {
      emailId: 'e1',
      recipients: [
        { recipient: 'b@corp.example', code: 550, error: 'upstream refused B@corp.example: 550 5.1.1' },
        { recipient: 'to@corp.example', code: 450, error: 'upstream refused to@corp.example: 450' },
      ],
      note: 'retry b@corp.example later',
    });
    expect(redactBcc(e, 'scribe@corp.example', new Map([['e1', email(['b@corp.example'])]])).data).toEqual({
      emailId: 'e1',
      recipients: [{ recipient: 'to@corp.example', code: 450, error: 'upstream refused to@corp.example: 450' }],
      note: 'retry (hidden) later',
      redacted: { bcc: 2 },
    });
  });

  it('hides every recipient of an email queued before the split was kept (bcc unknown), and of an email it cannot find', () => {
    const e = event('email.delivery_cancelled', { emailId: 'e1', recipients: ['to@corp.example', 'b@corp.example'] });
    expect(redactBcc(e, 'scribe@corp.example', new Map([['e1', email(null)]])).data).toEqual({ emailId: 'e1', recipients: [], redacted: { bcc: 2 } });
    expect(redactBcc(e, 'scribe@corp.example', new Map()).data).toEqual({ emailId: 'e1', recipients: [], redacted: { bcc: 2 } });
  });

  it('leaves a decision alone for its actor, and an address that is in To as well as Bcc visible', () => {
    const decision = event('email.decision', { recipients: { to: ['b@corp.example'], cc: [], bcc: ['b@corp.example', 'c@corp.example'] } }, 'deputy@corp.example');
    expect(redactBcc(decision, 'deputy@corp.example', new Map())).toBe(decision);
    expect(redactBcc(decision, 'scribe@corp.example', new Map()).data).toEqual({ recipients: { to: ['b@corp.example'], cc: [], bcc: ['b@corp.example'] }, redacted: { bcc: 1 } });
  });
});
