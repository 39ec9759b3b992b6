/**
 * Announcements end to end (issue 14): the real app, a real smtp-server
 * upstream, the real delivery worker and gpg reading what was sent, on both
 * store backends. Nothing reaches anyone before the gates hold; then each
 * audience member gets their own copy, the dated title as its subject and
 * exactly the approved text.
 */
import { simpleParser } from 'mailparser';
import { afterAll, afterEach, beforeAll, beforeEach, describe, expect, it } from 'vitest';
import { createSmtpChannel } from '../../src/channels/email/smtp.js';
import { RateLimiter } from '../../src/services/rate-limit.js';
import { DeliveryWorker } from '../../src/workers/delivery.js';
import { createGpgHome, type GeneratedKey, type GpgHome } from '../helpers/gpg.js';
import { armoredPartOf, decryptAs, headerLines } from '../helpers/pgp-mime.js';
import { BACKENDS, createTestRelay, type TestRelay } from '../helpers/relay.js';
import { startUpstream, type Upstream } from '../helpers/upstream.js';

const auth = (token: string) => ({ Authorization: `Bearer ${token}` });

let keyring: GpgHome;
let pressKey: GeneratedKey;

beforeAll(async () => {
  keyring = await createGpgHome();
  pressKey = await keyring.generateKey('desk@news.example', 'News Desk');
}, 120_000);

afterAll(async () => {
  await keyring.cleanup();
});

// Today's date in the title: the checks want a real date close to today.
const today = new Date().toISOString().slice(0, 10);
const TITLE = `Security notice — ${today}: unauthorised access to a support tool`;
const TEXT = 'On ' + today + ' we found that an attacker reached one of our support tools.\nWe have closed the access and are writing to everyone affected.\n\nÜnicode stays exact: naïve café, 東京.\nQuestions: support@corp.example';
const AUDIENCE = ['desk@news.example', 'cto@client.example', 'regulator@authority.example'];

describe.each(BACKENDS)('announcements end to end (%s)', (backend) => {
  let upstream: Upstream;
  let relay: TestRelay;
  let worker: DeliveryWorker;
  let channel: ReturnType<typeof createSmtpChannel>;
  let ic: string;
  let legal: string;
  let comms: string;
  let exec: string;
  const codename = 'amber-otter';

  beforeEach(async () => {
    upstream = await startUpstream();
    relay = await createTestRelay({ smtpUpstream: upstream.url }, { backend });
    channel = createSmtpChannel(upstream.url);
    worker = new DeliveryWorker(relay.ctx, { channels: { email: channel }, baseBackoffMs: 10, random: () => 0 });
    ic = await relay.tokenFor('ic@corp.example');
    legal = await relay.tokenFor('legal@corp.example');
    comms = await relay.tokenFor('comms@corp.example');
    exec = await relay.tokenFor('exec@corp.example');
    expect((await relay.request.post('/v1/incidents').set(auth(ic)).send({ codename })).status).toBe(201);
    for (const [email, role] of [
      ['sec@corp.example', 'security'],
      ['legal@corp.example', 'legal'],
      ['comms@corp.example', 'communications'],
      ['exec@corp.example', 'executive'],
    ] as const) {
      expect((await relay.request.put(`/v1/incidents/${codename}/roster/${email}`).set(auth(ic)).send({ name: email.split('@')[0], role })).status).toBe(201);
    }
    // The press desk's key is held relay-wide (an admin filed it); the other two have none.
    expect((await relay.request.put('/v1/keys/desk@news.example').set(auth(relay.admin)).send({ publicKey: pressKey.armoredPublic })).status).toBe(200);
  });

  afterEach(async () => {
    await worker.stop();
    channel.close();
    await upstream.stop();
    await relay.ctx.store.close();
  });

  const path = (suffix = '') => `/v1/incidents/${codename}/announcements${suffix}`;
  const draft = (token: string, body: Record<string, unknown>) => relay.request.post(path()).set(auth(token)).send(body);
  const act = (token: string, id: string, step: 'check' | 'approve' | 'send') => relay.request.post(path(`/${id}/${step}`)).set(auth(token)).send();
  const ruleOut = (token = ic) => relay.request.post(`/v1/incidents/${codename}/internal-source`).set(auth(token)).send({ ruledOut: true, note: 'Forensics report FR-7: the access came from an external IP; no insider involvement.' });

  async function events(type: string): Promise<{ outcome: string; actor: string | null; data: Record<string, unknown> }[]> {
    const rows = await relay.ctx.store.sql.all<{ outcome: string; actor: string | null; data: string }>('SELECT outcome, actor, data FROM audit_events WHERE type = ? ORDER BY seq', [type]);
    return rows.map((r) => ({ outcome: r.outcome, actor: r.actor, data: JSON.parse(r.data) as Record<string, unknown> }));
  }

  async function deliveries(): Promise<number> {
    return Number((await relay.ctx.store.sql.get<{ n: number }>('SELECT COUNT(*) AS n FROM deliveries'))!.n);
  }

  /** Nothing queued, nothing at the upstream even after the worker ran. */
  async function nothingSent(): Promise<void> {
    await worker.drain();
    expect(await deliveries()).toBe(0);
    expect(upstream.received).toHaveLength(0);
  }

  it('refuses an external statement while unapproved and when approved by its author; sends it after the commander and legal approve, one exact copy each', async () => {
    expect((await ruleOut()).status).toBe(200);
    const created = await draft(comms, { kind: 'external', title: TITLE, text: TEXT, audience: { addresses: AUDIENCE } });
    expect(created.status).toBe(201);
    const id = created.body.id as string;
    expect(created.body).toMatchObject({ kind: 'external', state: 'draft', author: 'comms@corp.example', checked: false, audience: { count: 3, list: null } });

    // Unchecked: nothing can be approved or sent.
    expect((await act(ic, id, 'approve')).body.error.code).toBe('announcement_not_checked');
    expect((await act(comms, id, 'send')).body.error.code).toBe('announcement_not_checked');
    const checked = await act(comms, id, 'check');
    expect(checked.status).toBe(200);
    expect(checked.body).toMatchObject({ state: 'checked', checked: true });

    // Unapproved.
    const unapproved = await act(comms, id, 'send');
    expect(unapproved.status).toBe(409);
    expect(unapproved.body.error).toMatchObject({ code: 'approval_required', rule: 'approval', details: { missing: ['commander', 'legal or communications'], approvedBy: [] } });
    await nothingSent();

    // By the author: refused, and it would not count anyway.
    const byAuthor = await act(comms, id, 'approve');
    expect(byAuthor.status).toBe(403);
    expect(byAuthor.body.error).toMatchObject({ code: 'approval_not_allowed', rule: 'approval', details: { reason: 'author' } });
    // By someone whose role does not approve, by someone off the roster.
    expect((await act(exec, id, 'approve')).body.error).toMatchObject({ code: 'approval_not_allowed', details: { reason: 'role', role: 'executive' } });
    const outsider = await act(await relay.tokenFor('nosy@corp.example'), id, 'approve');
    expect(outsider.status).toBe(404);
    expect(outsider.body.error.code).toBe('not_found');

    // The commander approves; twice is refused; still one approval short.
    expect((await act(ic, id, 'approve')).status).toBe(200);
    const twice = await act(ic, id, 'approve');
    expect(twice.status).toBe(409);
    expect(twice.body.error.code).toBe('already_approved');
    const half = await act(ic, id, 'send');
    expect(half.body.error).toMatchObject({ code: 'approval_required', details: { missing: ['legal or communications'], approvedBy: ['ic@corp.example'] } });
    await nothingSent();

    // Every refused attempt is on the record, with its actor.
    const approvals = await events('announcement.approved');
    expect(approvals.map((e) => [e.actor, e.outcome, e.data['code'] ?? null, e.data['reason'] ?? null])).toEqual([
      ['ic@corp.example', 'refused', 'announcement_not_checked', null],
      ['comms@corp.example', 'refused', 'approval_not_allowed', 'author'],
      ['exec@corp.example', 'refused', 'approval_not_allowed', 'role'],
      ['nosy@corp.example', 'refused', 'not_found', 'not_on_roster'],
      ['ic@corp.example', 'ok', null, null],
      ['ic@corp.example', 'refused', 'already_approved', 'already_approved'],
    ]);
    expect((await events('announcement.sent')).map((e) => [e.actor, e.outcome, e.data['code']])).toEqual([
      ['comms@corp.example', 'refused', 'announcement_not_checked'],
      ['comms@corp.example', 'refused', 'approval_required'],
      ['ic@corp.example', 'refused', 'approval_required'],
    ]);

    // Legal approves: the gates hold.
    const approved = await act(legal, id, 'approve');
    expect(approved.status).toBe(200);
    expect(approved.body).toMatchObject({ state: 'approved', release: { ready: true } });
    const sent = await act(comms, id, 'send');
    expect(sent.status).toBe(202);
    expect(sent.body).toEqual({ id, state: 'sent', emailId: expect.any(String), messageId: expect.stringMatching(/^<[0-9a-f-]{36}@corp\.example>$/), status: 'queued', copies: 3, encrypted: 1 });
    const okSend = (await events('announcement.sent')).at(-1)!;
    expect(okSend).toMatchObject({ outcome: 'ok', actor: 'comms@corp.example', data: { approvedBy: ['ic@corp.example', 'legal@corp.example'], copies: 3, encrypted: 1 } });
    expect(Object.fromEntries((okSend.data['rules'] as { rule: string; result: string }[]).map((r) => [r.rule, r.result]))).toEqual({
      'incident-open': 'pass',
      'security-team': 'pass',
      statement: 'pass',
      codename: 'pass',
      audience: 'pass',
      'internal-source': 'pass',
      approval: 'pass',
    });
    // The audit log holds no words of the title or text.
    const log = JSON.stringify(await relay.ctx.store.sql.all('SELECT data FROM audit_events'));
    expect(log).not.toContain('support tool');
    expect(log).not.toContain('attacker');

    await worker.drain();
    const mails = await upstream.waitFor(3);
    expect(mails).toHaveLength(3);
    // One copy per recipient, from the announcement address; no copy names another recipient.
    expect(mails.map((m) => m.to).sort()).toEqual(AUDIENCE.map((a) => [a]).sort());
    for (const mail of mails) {
      expect(mail.from).toBe('announcements@corp.example');
      const raw = mail.raw.toString('latin1');
      for (const other of AUDIENCE.filter((a) => a !== mail.to[0])) expect(raw).not.toContain(other);
      expect(raw).not.toContain('comms@corp.example');
      expect(raw).not.toContain('Attorney Work Project');
      const parsed = await simpleParser(mail.raw);
      expect(parsed.subject).toBe(TITLE);
      expect(parsed.to && !Array.isArray(parsed.to) ? parsed.to.value.map((v) => v.address) : []).toEqual([mail.to[0]]);
      expect(parsed.messageId).toBe(sent.body.messageId);
      expect(headerLines(mail.raw).filter((h) => /^(bcc|cc):/i.test(h))).toEqual([]);
    }
    // The plain copies carry exactly the approved text.
    for (const mail of mails.filter((m) => m.to[0] !== 'desk@news.example')) {
      const parsed = await simpleParser(mail.raw);
      expect(parsed.text?.replace(/\r\n/g, '\n').replace(/\n$/, '')).toBe(TEXT);
      expect(headerLines(mail.raw)).toContain('Content-Type: text/plain; charset=utf-8');
    }
    // The press desk's copy is PGP/MIME, readable with their key, signed by the relay, with the same text inside.
    const desk = mails.find((m) => m.to[0] === 'desk@news.example')!;
    expect(headerLines(desk.raw).some((h) => h.startsWith('Content-Type: multipart/encrypted; protocol="application/pgp-encrypted"'))).toBe(true);
    expect(desk.raw.toString('latin1')).not.toContain('attacker');
    const decrypted = await decryptAs(keyring, pressKey.fingerprint, await armoredPartOf(desk.raw), relay.ctx.relayKey.publicArmored);
    expect(decrypted.goodSignatureFrom).toBe(relay.ctx.relayKey.fingerprint);
    const inner = await simpleParser(decrypted.plaintext);
    expect(inner.subject).toBe(TITLE);
    expect(inner.text?.replace(/\r\n/g, '\n').replace(/\n$/, '')).toBe(TEXT);

    // Sent is final: no second send, no edit, no approval.
    expect((await act(comms, id, 'send')).body.error.code).toBe('announcement_sent');
    expect((await relay.request.patch(path(`/${id}`)).set(auth(comms)).send({ text: 'changed' })).body.error.code).toBe('announcement_sent');
    const view = await relay.request.get(path(`/${id}`)).set(auth(exec));
    expect(view.body).toMatchObject({ state: 'sent', sent: { by: 'comms@corp.example', messageId: sent.body.messageId } });
    const status = await relay.request.get(`/v1/incidents/${codename}/emails/${sent.body.emailId}`).set(auth(ic));
    expect(status.body).toMatchObject({ status: 'sent' });
  });

  it('sends to an audience address with a Unicode domain in its A-label form, given directly or from a list', async () => {
    await ruleOut();
    // An admin's list holds one too; both are stored as they will be sent.
    const list = await relay.request.put('/v1/audiences/presse').set(auth(relay.admin)).send({ addresses: ['Redaktion@Zeitung-München.example'] });
    expect(list.status).toBe(201);
    expect(list.body.addresses).toEqual(['redaktion@xn--zeitung-mnchen-osb.example']);
    const created = await draft(comms, { kind: 'external', title: TITLE, text: TEXT, audience: { addresses: ['presse@bücher.example', 'PRESSE@xn--bcher-kva.example'], list: 'presse' } });
    expect(created.status).toBe(201);
    expect(created.body.audience).toEqual({ addresses: ['presse@xn--bcher-kva.example', 'redaktion@xn--zeitung-mnchen-osb.example'], list: 'presse', count: 2 });
    const id = created.body.id as string;
    expect((await act(comms, id, 'check')).status).toBe(200);
    expect((await act(ic, id, 'approve')).status).toBe(200);
    expect((await act(legal, id, 'approve')).status).toBe(200);
    const sent = await act(comms, id, 'send');
    expect(sent.status).toBe(202);
    expect(sent.body).toMatchObject({ copies: 2, encrypted: 0 });
    await worker.drain();
    const mails = await upstream.waitFor(2);
    // smtp-server shows the envelope's A-label domain decoded; the bytes on the wire carry the A-label form.
    expect(mails.map((m) => m.to).sort()).toEqual([['presse@bücher.example'], ['redaktion@zeitung-münchen.example']]);
    expect(mails.map((m) => headerLines(m.raw).find((l) => l.startsWith('To: '))).sort()).toEqual(['To: presse@xn--bcher-kva.example', 'To: redaktion@xn--zeitung-mnchen-osb.example']);
    for (const mail of mails) expect((await simpleParser(mail.raw)).subject).toBe(TITLE);
  });

  it('refuses an internal announcement until the commander records the internal source ruled out', async () => {
    const created = await draft(exec, { kind: 'internal', title: `Update for all staff, ${today}`, text: 'Please reset your password today.', audience: { addresses: ['staff@corp.example', 'managers@corp.example'] } });
    const id = created.body.id as string;
    expect((await act(exec, id, 'check')).body.state).toBe('checked');
    const early = await act(exec, id, 'send');
    expect(early.status).toBe(409);
    expect(early.body.error).toMatchObject({ code: 'internal_source_not_ruled_out', rule: 'internal-source' });
    await nothingSent();

    // Only the commander records it.
    const byLegal = await ruleOut(legal);
    expect(byLegal.status).toBe(403);
    expect(byLegal.body.error.code).toBe('forbidden');
    const recorded = await ruleOut();
    expect(recorded.status).toBe(200);
    expect(recorded.body).toMatchObject({ codename, internalSourceRuledOut: { by: 'ic@corp.example', note: expect.stringContaining('FR-7') }, cancelledDeliveries: 0 });
    expect((await relay.request.get(`/v1/incidents/${codename}`).set(auth(exec))).body.internalSourceRuledOut).toMatchObject({ by: 'ic@corp.example' });
    const [audited] = await events('incident.internal_source');
    expect(audited!.data).toMatchObject({ ruledOut: true, noteLength: 83 });
    expect(JSON.stringify(audited)).not.toContain('FR-7');

    const sent = await act(exec, id, 'send');
    expect(sent.status).toBe(202);
    expect(sent.body).toMatchObject({ copies: 2, encrypted: 0 });
    expect(Object.fromEntries(((await events('announcement.sent')).at(-1)!.data['rules'] as { rule: string; result: string }[]).map((r) => [r.rule, r.result]))).toMatchObject({ 'internal-source': 'pass', approval: 'skip' });
    await worker.drain();
    const mails = await upstream.waitFor(2);
    expect(mails.map((m) => m.to[0]).sort()).toEqual(['managers@corp.example', 'staff@corp.example']);
    expect((await simpleParser(mails[0]!.raw)).subject).toBe(`Update for all staff, ${today}`);
  });

  it('refuses a send whose copies together would store more than 2 × RELAY_MAX_MESSAGE_BYTES, before composing any, with nothing sent', async () => {
    await ruleOut();
    const created = await draft(exec, { kind: 'internal', title: `Update for all staff, ${today}`, text: 'Reset your password. '.repeat(250), audience: { addresses: ['staff@corp.example', 'managers@corp.example', 'exec@corp.example'] } });
    const id = created.body.id as string;
    expect((await act(exec, id, 'check')).body.state).toBe('checked');
    // Three copies of about 6.3 KB each against a limit of 2 × 8,000 bytes.
    relay.ctx.config = { ...relay.ctx.config, maxMessageBytes: 8_000 };
    const refused = await act(exec, id, 'send');
    expect(refused.status).toBe(413);
    expect(refused.body.error).toMatchObject({ code: 'payload_too_large', details: { limit: 16_000, copies: 3 } });
    expect(refused.body.error.message).toMatch(/^Sending this announcement would store about \d+ bytes for 3 copies; one send may store at most 16000 \(2 × RELAY_MAX_MESSAGE_BYTES\)\. Nothing was sent; shorten the text or split the audience\.$/);
    await nothingSent();
    expect((await relay.request.get(path(`/${id}`)).set(auth(exec))).body.state).toBe('checked');
  });

  it('an edit after approval voids the approvals; sending is refused until checked and approved again', async () => {
    await ruleOut();
    const id = (await draft(comms, { kind: 'external', title: TITLE, text: TEXT, audience: { addresses: AUDIENCE } })).body.id as string;
    await act(comms, id, 'check');
    await act(ic, id, 'approve');
    expect((await act(legal, id, 'approve')).body.state).toBe('approved');

    const edited = await relay.request.patch(path(`/${id}`)).set(auth(comms)).send({ text: `${TEXT}\nOne more line.` });
    expect(edited.status).toBe(200);
    expect(edited.body).toMatchObject({ state: 'draft', checked: false, release: { ready: false } });
    expect(edited.body.approvals.map((a: { approver: string; current: boolean; voidReason: string }) => [a.approver, a.current, a.voidReason])).toEqual([
      ['ic@corp.example', false, 'edited'],
      ['legal@corp.example', false, 'edited'],
    ]);
    expect((await events('announcement.approvals_voided')).map((e) => e.data['approvers'])).toEqual([['ic@corp.example', 'legal@corp.example']]);

    expect((await act(comms, id, 'send')).body.error.code).toBe('announcement_not_checked');
    expect((await act(comms, id, 'check')).status).toBe(200);
    const stale = await act(comms, id, 'send');
    expect(stale.body.error).toMatchObject({ code: 'approval_required', details: { voided: 2 } });
    await nothingSent();
    // Approved again for the new content, it goes.
    await act(ic, id, 'approve');
    await act(legal, id, 'approve');
    expect((await act(comms, id, 'send')).status).toBe(202);
    await worker.drain();
    const mails = await upstream.waitFor(3);
    expect((await simpleParser(mails.find((m) => m.to[0] === 'cto@client.example')!.raw)).text).toContain('One more line.');
  });

  it('the worker cancels the queued copies of an announcement whose approvals were voided after it was queued', async () => {
    await ruleOut();
    const id = (await draft(comms, { kind: 'external', title: TITLE, text: TEXT, audience: { addresses: AUDIENCE } })).body.id as string;
    await act(comms, id, 'check');
    await act(ic, id, 'approve');
    await act(legal, id, 'approve');
    expect((await act(comms, id, 'send')).status).toBe(202);
    // Between the commit and the worker, the approvals stop holding (as a removed approver or a direct edit would make them).
    await relay.ctx.store.transaction((tx) => tx.announcements.voidApprovals(id, 'admin@corp.example', 'test', relay.clock.now()));
    await worker.drain();
    expect(upstream.received).toHaveLength(0);
    const rows = await relay.ctx.store.sql.all<{ status: string; body: Buffer | null }>('SELECT status, body FROM deliveries');
    expect(rows).toEqual(AUDIENCE.map(() => ({ status: 'cancelled', body: null })));
    const cancelled = await events('email.delivery_cancelled');
    expect(cancelled.map((e) => [e.data['reason'], e.data['announcementId']])).toEqual(AUDIENCE.map(() => ['announcement_approval_required', id]));
  });

  it('a copy for an address outside the approved audience is cancelled, whatever put it in the queue; the others go', async () => {
    await ruleOut();
    const id = (await draft(comms, { kind: 'external', title: TITLE, text: TEXT, audience: { addresses: ['cto@client.example'] } })).body.id as string;
    await act(comms, id, 'check');
    await act(ic, id, 'approve');
    await act(legal, id, 'approve');
    const sent = await act(comms, id, 'send');
    expect(sent.status).toBe(202);
    // A copy nobody approved, riding on the announcement's email (as a bug or a hand in the database would put it).
    await relay.ctx.store.outbox.enqueue(
      [{ id: 'smuggled', channel: 'email', emailId: sent.body.emailId, incidentId: (await relay.ctx.store.incidents.byCodename(codename))!.id, envelope: { kind: 'email', from: 'announcements@corp.example', to: ['spy@evil.example'] }, body: Buffer.from('x') }],
      relay.clock.now(),
    );
    await worker.drain();
    expect((await upstream.waitFor(1)).map((m) => m.to)).toEqual([['cto@client.example']]);
    expect(upstream.received).toHaveLength(1);
    expect((await relay.ctx.store.outbox.get('smuggled'))?.status).toBe('cancelled');
    expect((await events('email.delivery_cancelled')).map((e) => [e.data['deliveryId'], e.data['reason']])).toEqual([['smuggled', 'not_in_announcement_audience']]);
  });

  it('an approver who leaves the roster takes their approval with them, for the copies still queued', async () => {
    await ruleOut();
    const id = (await draft(comms, { kind: 'external', title: TITLE, text: TEXT, audience: { addresses: ['cto@client.example'] } })).body.id as string;
    await act(comms, id, 'check');
    await act(ic, id, 'approve');
    await act(legal, id, 'approve');
    expect((await act(comms, id, 'send')).status).toBe(202);
    expect((await relay.request.delete(`/v1/incidents/${codename}/roster/legal@corp.example`).set(auth(ic))).status).toBe(204);
    await worker.drain();
    expect(upstream.received).toHaveLength(0);
    expect((await events('email.delivery_cancelled')).map((e) => e.data['reason'])).toEqual(['announcement_approval_required']);
  });

  it('withdrawing the internal-source record cancels the copies still queued, in the same transaction', async () => {
    await ruleOut();
    const id = (await draft(comms, { kind: 'external', title: TITLE, text: TEXT, audience: { addresses: AUDIENCE } })).body.id as string;
    await act(comms, id, 'check');
    await act(ic, id, 'approve');
    await act(legal, id, 'approve');
    expect((await act(comms, id, 'send')).status).toBe(202);
    const withdrawn = await relay.request.post(`/v1/incidents/${codename}/internal-source`).set(auth(ic)).send({ ruledOut: false, note: 'New evidence of an insider.' });
    expect(withdrawn.body).toEqual({ codename, internalSourceRuledOut: null, cancelledDeliveries: 3 });
    expect((await relay.ctx.store.sql.all<{ status: string }>('SELECT status FROM deliveries')).map((r) => r.status)).toEqual(['cancelled', 'cancelled', 'cancelled']);
    await worker.drain();
    expect(upstream.received).toHaveLength(0);
    expect((await events('email.delivery_cancelled')).map((e) => [e.actor, e.data['reason']])).toEqual(AUDIENCE.map(() => ['ic@corp.example', 'internal_source_withdrawn']));
  });

  it('refuses bad input at the door, audited, with nothing stored', async () => {
    const before = await relay.ctx.store.sql.get<{ n: number }>('SELECT COUNT(*) AS n FROM announcements');
    for (const title of [`Notice ${today}\r\nBcc: everyone@corp.example`, `Notice ${today}\nX`, `Notice ${today}\u2028x`, `Notice\u0000 ${today}`, `Notice\t${today}`]) {
      const res = await draft(comms, { kind: 'external', title, text: 'x', audience: { addresses: ['a@client.example'] } });
      expect(res.status).toBe(400);
      expect(res.body.error).toMatchObject({ code: 'invalid_request', details: { field: 'title' } });
    }
    const huge = await draft(comms, { kind: 'external', title: TITLE, text: TEXT, audience: { addresses: Array.from({ length: 10_000 }, (_, i) => `reader${i}@client.example`) } });
    expect(huge.status).toBe(422);
    expect(huge.body.error).toMatchObject({ code: 'audience_too_large', rule: 'audience', details: { count: 10_000, max: 5000 } });
    const badAddress = await draft(comms, { kind: 'external', title: TITLE, text: TEXT, audience: { addresses: ['not an address'] } });
    expect(badAddress.status).toBe(400);
    const noList = await draft(comms, { kind: 'external', title: TITLE, text: TEXT, audience: { list: 'press' } });
    expect(noList.status).toBe(404);
    expect(Number((await relay.ctx.store.sql.get<{ n: number }>('SELECT COUNT(*) AS n FROM announcements'))!.n)).toBe(Number(before!.n));
    expect((await events('announcement.drafted')).map((e) => [e.outcome, e.data['code']])).toEqual([
      ['refused', 'invalid_request'],
      ['refused', 'invalid_request'],
      ['refused', 'invalid_request'],
      ['refused', 'invalid_request'],
      // A tab too: the composer writes none in the Subject, and refusing it at send would come after approval.
      ['refused', 'invalid_request'],
      ['refused', 'audience_too_large'],
      ['refused', 'invalid_request'],
      ['refused', 'not_found'],
    ]);
    await nothingSent();
  });

  it('limits drafts and edits like sends (one bucket per token, audited), and lists announcements without their text', async () => {
    relay.ctx.sendLimiter = new RateLimiter({ perMinute: 1, burst: 2 });
    const created = await draft(comms, { kind: 'external', title: TITLE, text: TEXT, audience: { addresses: ['cto@client.example'] } });
    expect(created.status).toBe(201);
    expect((await relay.request.patch(path(`/${created.body.id}`)).set(auth(comms)).send({ title: `Update, ${today}` })).status).toBe(200);
    const before = Number((await relay.ctx.store.sql.get<{ n: number }>('SELECT COUNT(*) AS n FROM announcements'))!.n);
    const limited = await draft(comms, { kind: 'external', title: TITLE, text: TEXT, audience: { addresses: ['cto@client.example'] } });
    expect(limited.status).toBe(429);
    expect(limited.body.error.code).toBe('rate_limited');
    expect(Number(limited.headers['retry-after'])).toBeGreaterThan(0);
    const edit = await relay.request.patch(path(`/${created.body.id}`)).set(auth(comms)).send({ title: `Another update, ${today}` });
    expect(edit.status).toBe(429);
    expect(Number((await relay.ctx.store.sql.get<{ n: number }>('SELECT COUNT(*) AS n FROM announcements'))!.n)).toBe(before);
    expect((await relay.request.get(path(`/${created.body.id}`)).set(auth(comms))).body.title).toBe(`Update, ${today}`);
    expect((await events('announcement.drafted')).map((e) => [e.outcome, e.data['code'] ?? null])).toEqual([['ok', null], ['refused', 'rate_limited']]);
    expect((await events('announcement.edited')).map((e) => [e.outcome, e.data['code'] ?? null])).toEqual([['ok', null], ['refused', 'rate_limited']]);
    // Another token has its own bucket.
    expect((await draft(ic, { kind: 'external', title: TITLE, text: TEXT, audience: { addresses: ['cto@client.example'] } })).status).toBe(201);

    // One read from a named list.
    expect((await relay.request.put('/v1/audiences/press').set(auth(relay.admin)).send({ addresses: ['a@client.example', 'b@client.example'] })).status).toBe(201);
    const listed = await draft(ic, { kind: 'external', title: TITLE, text: TEXT, audience: { list: 'press' } });
    expect(listed.status).toBe(201);

    // The list leaves each text and each audience's addresses out (up to
    // 100,000 characters and RELAY_ANNOUNCEMENT_MAX_AUDIENCE addresses each):
    // the audience is its list's name and count. One announcement's page has both.
    const list = await relay.request.get(path()).set(auth(comms));
    expect(list.status).toBe(200);
    expect(list.body.announcements).toHaveLength(3);
    for (const item of list.body.announcements) {
      expect(item).not.toHaveProperty('text');
      expect(item.kind).toBe('external');
    }
    // (Drafted in the same instant of the test clock: listed in id order.)
    const audiences = list.body.announcements.map((item: { audience: unknown }) => JSON.stringify(item.audience)).sort();
    expect(audiences).toEqual(['{"count":1}', '{"count":1}', '{"list":"press","count":2}']);
    const one = (await relay.request.get(path(`/${created.body.id}`)).set(auth(comms))).body;
    expect(one.text).toBe(TEXT);
    expect(one.audience).toEqual({ addresses: ['cto@client.example'], list: null, count: 1 });
  });

  it('the check refuses text carrying the incident\'s private label (rule codename), and passes once the label is cleared', async () => {
    expect((await relay.request.patch(`/v1/incidents/${codename}`).set(auth(ic)).send({ label: 'Payroll exfiltration' })).status).toBe(200);
    const created = await draft(comms, { kind: 'external', title: TITLE, text: 'We are investigating a payroll exfiltration.', audience: { addresses: ['cto@client.example'] } });
    expect(created.status).toBe(201);
    const checked = await act(comms, created.body.id, 'check');
    expect(checked.status).toBe(422);
    expect(checked.body.error).toMatchObject({ code: 'incident_details_exposed', rule: 'codename', details: { findings: [{ rule: 'codename', field: 'text', kind: 'label' }] } });
    expect((await relay.request.patch(`/v1/incidents/${codename}`).set(auth(ic)).send({ label: null })).status).toBe(200);
    expect((await act(comms, created.body.id, 'check')).status).toBe(200);
  });

  it('drafts from an admin-kept audience list, read when the draft is written', async () => {
    const put = await relay.request.put('/v1/audiences/press').set(auth(relay.admin)).send({ addresses: ['Desk@News.example', 'tips@paper.example'] });
    expect(put.status).toBe(201);
    expect(put.body).toMatchObject({ name: 'press', count: 2, addresses: ['desk@news.example', 'tips@paper.example'] });
    expect((await relay.request.put('/v1/audiences/press').set(auth(ic)).send({ addresses: [] })).status).toBe(403);
    expect((await relay.request.get('/v1/audiences').set(auth(ic))).body).toEqual({ audiences: [{ name: 'press', count: 2, updatedBy: 'admin@corp.example', updatedAt: expect.any(String) }] });
    const created = await draft(comms, { kind: 'external', title: TITLE, text: TEXT, audience: { list: 'press', addresses: ['cto@client.example'] } });
    expect(created.body.audience).toEqual({ addresses: ['cto@client.example', 'desk@news.example', 'tips@paper.example'], list: 'press', count: 3 });
    // A later change of the list does not change the draft (its approvals bind what was read).
    await relay.request.put('/v1/audiences/press').set(auth(relay.admin)).send({ addresses: ['other@paper.example'] });
    expect((await relay.request.get(path(`/${created.body.id}`)).set(auth(comms))).body.audience.count).toBe(3);
    // Nor does an edit that leaves the audience alone: it keeps what was read, and the list's name.
    const retitled = await relay.request.patch(path(`/${created.body.id}`)).set(auth(comms)).send({ title: `Update, ${today}` });
    expect(retitled.body.audience).toEqual({ addresses: ['cto@client.example', 'desk@news.example', 'tips@paper.example'], list: 'press', count: 3 });
    // Naming the list again reads it as it is now.
    const reread = await relay.request.patch(path(`/${created.body.id}`)).set(auth(comms)).send({ audience: { list: 'press' } });
    expect(reread.body.audience).toEqual({ addresses: ['other@paper.example'], list: 'press', count: 1 });
    // Only the author or a commander edits.
    expect((await relay.request.patch(path(`/${created.body.id}`)).set(auth(legal)).send({ title: 'x' })).body.error.code).toBe('forbidden');
  });
});
