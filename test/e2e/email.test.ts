/**
 * The email relay end to end: the real app, a real smtp-server upstream, the
 * real gpg binary reading what was sent.
 */
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { simpleParser } from 'mailparser';
import { afterAll, afterEach, beforeAll, beforeEach, describe, expect, it } from 'vitest';
import { createOutboxDirChannel } from '../../src/channels/email/outbox-dir.js';
import { createSmtpChannel } from '../../src/channels/email/smtp.js';
import { DeliveryWorker } from '../../src/workers/delivery.js';
import { createGpgHome, type GeneratedKey, type GpgHome } from '../helpers/gpg.js';
import { armoredPartOf, decryptAs, headerLines } from '../helpers/pgp-mime.js';
import { createTestRelay, type TestRelay } from '../helpers/relay.js';
import { startUpstream, type Upstream } from '../helpers/upstream.js';

const auth = (token: string) => ({ Authorization: `Bearer ${token}` });

// Two gpg homes: the relay's world (public keys only) and each recipient's
// own home with their secret key, so decryption proves who can read.
let keyring: GpgHome;
let counsel: GeneratedKey;
let dfir: GeneratedKey;
let icKey: GeneratedKey;
let shortLived: GeneratedKey;

beforeAll(async () => {
  keyring = await createGpgHome();
  [counsel, dfir, icKey, shortLived] = await Promise.all([
    keyring.generateKey('counsel@lawfirm.example', 'Outside Counsel'),
    keyring.generateKey('dfir@forensics.example', 'Forensics Firm'),
    keyring.generateKey('ic@corp.example', 'Incident Commander'),
    keyring.generateKey('late@lawfirm.example', 'Late Counsel', { expire: '1d' }),
  ]);
}, 120_000);

afterAll(async () => {
  await keyring.cleanup();
});

let upstream: Upstream;
let relay: TestRelay;
let worker: DeliveryWorker;
let channel: ReturnType<typeof createSmtpChannel>;
let ic: string;
let codename: string;

async function addMember(email: string, role: string, publicKey?: string): Promise<void> {
  const res = await relay.request.put(`/v1/incidents/${codename}/roster/${email}`).set(auth(ic)).send({ name: email.split('@')[0], role, ...(publicKey ? { publicKey } : {}) });
  expect(res.status).toBe(201);
}

beforeEach(async () => {
  upstream = await startUpstream();
  relay = await createTestRelay({ smtpUpstream: upstream.url });
  channel = createSmtpChannel(upstream.url);
  worker = new DeliveryWorker(relay.ctx, { channels: { email: channel }, baseBackoffMs: 10, random: () => 0 });
  ic = await relay.tokenFor('ic@corp.example');
  const res = await relay.request.post('/v1/incidents').set(auth(ic)).send({ codename: 'amber-otter' });
  codename = res.body.codename;
  await relay.request.put('/v1/keys/ic@corp.example').set(auth(ic)).send({ publicKey: icKey.armoredPublic });
  await addMember('sec@corp.example', 'security');
  await addMember('exec@corp.example', 'executive');
  await addMember('counsel@lawfirm.example', 'external', counsel.armoredPublic);
  await addMember('dfir@forensics.example', 'external', dfir.armoredPublic);
});

afterEach(async () => {
  await worker.stop();
  channel.close();
  await upstream.stop();
});

function send(body: Record<string, unknown>, token = ic) {
  return relay.request.post(`/v1/incidents/${codename}/emails`).set(auth(token)).send(body);
}

async function deliveriesCount(): Promise<number> {
  return (await relay.ctx.store.sql.get<{ n: number }>('SELECT COUNT(*) AS n FROM deliveries'))!.n;
}

async function auditCount(): Promise<number> {
  return (await relay.ctx.store.sql.get<{ n: number }>('SELECT COUNT(*) AS n FROM audit_events'))!.n;
}

describe('plain internal mail', () => {
  it('arrives with the fixed subject, the Topic line, no client headers and CRLF only', async () => {
    const res = await send({ to: ['sec@corp.example'], cc: ['exec@corp.example'], subject: 'Database breach at prod-db-3', text: 'Rotate the keys.\nNow.' });
    expect(res.status).toBe(202);
    expect(res.body).toEqual({ id: expect.any(String), messageId: expect.stringMatching(/^<[0-9a-f-]{36}@corp\.example>$/), status: 'queued', encrypted: false, recipients: ['sec@corp.example', 'exec@corp.example'] });
    await worker.drain();
    const [mail] = await upstream.waitFor(1);
    expect(mail!.from).toBe('ic@corp.example');
    expect(mail!.to.sort()).toEqual(['exec@corp.example', 'sec@corp.example']);
    const raw = mail!.raw.toString('latin1');
    expect(raw.replace(/\r\n/g, '')).not.toMatch(/[\r\n]/);
    const headers = headerLines(mail!.raw);
    expect(headers.filter((h) => /^subject:/i.test(h))).toEqual(['Subject: Attorney Work Project']);
    expect(headers.some((h) => /^bcc:/i.test(h))).toBe(false);
    expect(raw).not.toContain('Database breach at prod-db-3\r\nSubject');
    const parsed = await simpleParser(mail!.raw);
    expect(parsed.subject).toBe('Attorney Work Project');
    expect(parsed.messageId).toBe(res.body.messageId);
    expect(parsed.text).toBe('Topic: Database breach at prod-db-3\n\nRotate the keys.\nNow.\n');
    expect(parsed.date).toBeInstanceOf(Date);

    const status = await relay.request.get(`/v1/incidents/${codename}/emails/${res.body.id}`).set(auth(ic));
    expect(status.body).toEqual({
      id: res.body.id,
      messageId: res.body.messageId,
      sender: 'ic@corp.example',
      createdAt: relay.clock.now().toISOString(),
      encrypted: false,
      recipients: ['sec@corp.example', 'exec@corp.example'],
      status: 'sent',
      attempts: 1,
      deliveries: [{ recipients: ['sec@corp.example', 'exec@corp.example'], status: 'sent', attempts: 1 }],
    });
    const rows = await relay.ctx.store.sql.all('SELECT body, status FROM deliveries WHERE email_id = ?', [res.body.id]);
    expect(rows).toEqual([{ body: null, status: 'sent' }]);
  });

  it('writes .eml files to the outbox directory when no upstream is set', async () => {
    const dir = fs.mkdtempSync(path.join(os.tmpdir(), 'relay-outbox-'));
    const local = new DeliveryWorker(relay.ctx, { channels: { email: createOutboxDirChannel(dir) } });
    const res = await send({ to: ['sec@corp.example'], text: 'hello' });
    await local.drain();
    const files = fs.readdirSync(dir);
    expect(files).toHaveLength(1);
    expect(files[0]).toMatch(/\.eml$/);
    const parsed = await simpleParser(fs.readFileSync(path.join(dir, files[0]!)));
    expect(parsed.subject).toBe('Attorney Work Project');
    expect(parsed.messageId).toBe(res.body.messageId);
    expect(fs.statSync(path.join(dir, files[0]!)).mode & 0o777).toBe(0o600);
  });
});

describe('encrypted mail to outside counsel', () => {
  it('is PGP/MIME that gpg decrypts and verifies, with protected headers and the Topic line', async () => {
    const res = await send({
      to: ['counsel@lawfirm.example'],
      cc: ['sec@corp.example'],
      subject: 'Customer data in S3 bucket',
      text: 'Privileged: see attached timeline.',
      attachments: [{ filename: 'timeline.txt', contentType: 'text/plain', content: Buffer.from('09:00 first alert\n').toString('base64') }],
    });
    // sec@ has no key: encryption needs every recipient's key.
    expect(res.status).toBe(422);
    expect(res.body.error).toMatchObject({ code: 'missing_public_key', rule: 'encryption', details: { recipients: ['sec@corp.example'] } });

    const ok = await send({
      to: ['counsel@lawfirm.example'],
      subject: 'Customer data in S3 bucket',
      text: 'Privileged: see attached timeline.',
      attachments: [{ filename: 'timeline.txt', contentType: 'text/plain', content: Buffer.from('09:00 first alert\n').toString('base64') }],
    });
    expect(ok.status).toBe(202);
    expect(ok.body.encrypted).toBe(true);
    await worker.drain();
    const [mail] = await upstream.waitFor(1);
    expect(mail!.to).toEqual(['counsel@lawfirm.example']);
    const raw = mail!.raw.toString('latin1');
    expect(raw).not.toContain('Customer data');
    expect(raw).not.toContain('Privileged');
    const headers = headerLines(mail!.raw);
    expect(headers.filter((h) => /^subject:/i.test(h))).toEqual(['Subject: Attorney Work Project']);
    expect(raw).toMatch(/Content-Type: multipart\/encrypted;\s+protocol="application\/pgp-encrypted"/);
    expect(raw).toContain('Content-Type: application/pgp-encrypted');
    expect(raw).toContain('Version: 1');
    expect(raw).toMatch(/Content-Type: application\/octet-stream;\s+name="encrypted.asc"/);

    const armored = await armoredPartOf(mail!.raw);
    {
      const result = await decryptAs(keyring, counsel.fingerprint, armored, relay.ctx.relayKey.publicArmored);
      expect(result.goodSignatureFrom).toBe(relay.ctx.relayKey.fingerprint);
      const inner = result.plaintext.toString('utf8');
      expect(inner).toMatch(/Content-Type: multipart\/mixed;[\s\S]*protected-headers="v1"/);
      expect(inner).toContain('Subject: Attorney Work Project');
      expect(inner).toContain(`Message-ID: ${ok.body.messageId}`);
      expect(inner).toMatch(/^From: .*ic@corp\.example>?$/m);
      expect(inner).toMatch(/^To: .*counsel@lawfirm\.example>?$/m);
      const parsed = await simpleParser(result.plaintext);
      expect(parsed.text).toBe('Topic: Customer data in S3 bucket\n\nPrivileged: see attached timeline.');
      expect(parsed.attachments.map((a) => [a.filename, a.content.toString()])).toEqual([['timeline.txt', '09:00 first alert\n']]);
    }
    // Encrypted to counsel and to the sender (whose key is on file), nobody else.
    const ids = await keyring.recipientKeyIds(armored);
    expect(ids.sort()).toEqual([counsel.encryptionSubkeyFingerprint!.slice(-16), icKey.encryptionSubkeyFingerprint!.slice(-16)].sort());
  });

  it('gives each Bcc recipient a separate copy encrypted to their key alone, with no Bcc header anywhere', async () => {
    const res = await send({ to: ['counsel@lawfirm.example'], bcc: ['dfir@forensics.example'], text: 'bcc test' });
    expect(res.status).toBe(202);
    expect(res.body.recipients).toEqual(['counsel@lawfirm.example', 'dfir@forensics.example']);
    await worker.drain();
    const mails = await upstream.waitFor(2);
    const visible = mails.find((m) => m.to.includes('counsel@lawfirm.example'))!;
    const bcc = mails.find((m) => m.to.includes('dfir@forensics.example'))!;
    expect(visible.to).toEqual(['counsel@lawfirm.example']);
    expect(bcc.to).toEqual(['dfir@forensics.example']);
    for (const m of mails) {
      expect(headerLines(m.raw).some((h) => /^bcc:/i.test(h))).toBe(false);
      // The bare address, not only '<addr>': a header may carry it without brackets (a mailbox without a name).
      expect(m.raw.toString('latin1')).not.toContain('dfir@forensics.example');
    }
    expect(await keyring.recipientKeyIds(await armoredPartOf(bcc.raw))).toEqual([dfir.encryptionSubkeyFingerprint!.slice(-16)]);
    const visibleIds = await keyring.recipientKeyIds(await armoredPartOf(visible.raw));
    expect(visibleIds).not.toContain(dfir.encryptionSubkeyFingerprint!.slice(-16));

    const inner = (await decryptAs(keyring, dfir.fingerprint, await armoredPartOf(bcc.raw))).plaintext.toString('utf8');
    expect(inner).not.toMatch(/^bcc:/im);
    expect(inner).not.toContain('dfir@forensics.example');
  });

  it('keeps a reply chain encrypted once it ever had an external recipient', async () => {
    const first = await send({ to: ['counsel@lawfirm.example'], text: 'first' });
    expect(first.body.encrypted).toBe(true);
    // exec@ has no key, so an internal reply in this chain is refused, not sent in clear.
    const refused = await send({ to: ['exec@corp.example'], text: 'internal follow-up', inReplyTo: first.body.messageId });
    expect(refused.status).toBe(422);
    expect(refused.body.error.code).toBe('missing_public_key');
    const viaReferences = await send({ to: ['exec@corp.example'], text: 'again', references: ['<unrelated@corp.example>', first.body.messageId] });
    expect(viaReferences.status).toBe(422);
    // Fail closed: a Message-ID the relay never issued, from an outside domain, means an outsider wrote in the thread.
    const outsiderThread = await send({ to: ['exec@corp.example'], text: 'their thread', inReplyTo: '<unrelated@elsewhere.example>' });
    expect(outsiderThread.status).toBe(422);
    expect(outsiderThread.body.error.code).toBe('missing_public_key');
    const unrelated = await send({ to: ['exec@corp.example'], text: 'other thread', inReplyTo: '<unrelated@corp.example>' });
    expect(unrelated.status).toBe(202);
    expect(unrelated.body.encrypted).toBe(false);
  });

  it('re-checks keys at send time: a key that expired since upload refuses the message', async () => {
    await addMember('late@lawfirm.example', 'external', shortLived.armoredPublic);
    relay.clock.advance(3 * 86_400_000);
    const res = await send({ to: ['late@lawfirm.example'], text: 'too late' });
    expect(res.status).toBe(422);
    expect(res.body.error).toMatchObject({ code: 'unusable_public_key', rule: 'encryption', details: { recipients: ['late@lawfirm.example'], reasons: { 'late@lawfirm.example': 'expired' } } });
    expect(await deliveriesCount()).toBe(0);
  });

  it('encrypts internal mail too with RELAY_ENCRYPT=always', async () => {
    relay.ctx.config.encrypt = 'always';
    const refused = await send({ to: ['sec@corp.example'], text: 'x' });
    expect(refused.status).toBe(422);
    expect(refused.body.error.code).toBe('missing_public_key');
  });
});

describe('refusals deliver nothing to anyone', () => {
  it.each<[string, Record<string, unknown>, number, string]>([
    ['an off-roster To among roster recipients', { to: ['sec@corp.example', 'nosy@corp.example'], text: 'x' }, 403, 'recipient_not_on_roster'],
    ['an off-roster Cc', { to: ['sec@corp.example'], cc: ['nosy@corp.example'], text: 'x' }, 403, 'recipient_not_on_roster'],
    ['an off-roster Bcc', { to: ['sec@corp.example'], bcc: ['nosy@corp.example'], text: 'x' }, 403, 'recipient_not_on_roster'],
    ['a from field', { from: 'ceo@corp.example', to: ['sec@corp.example'], text: 'x' }, 400, 'invalid_request'],
    ['CR/LF in the subject', { to: ['sec@corp.example'], subject: 'hi\r\nBcc: nosy@corp.example', text: 'x' }, 400, 'invalid_request'],
    ['CR/LF in an address', { to: ['sec@corp.example\r\nBcc: nosy@corp.example'], text: 'x' }, 400, 'invalid_request'],
    ['empty recipients', { to: [], text: 'x' }, 400, 'invalid_request'],
    ['an unknown field', { to: ['sec@corp.example'], text: 'x', priority: 'high' }, 400, 'invalid_request'],
    ['invalid base64', { to: ['sec@corp.example'], text: 'x', attachments: [{ filename: 'a.txt', contentType: 'text/plain', content: 'not base64!' }] }, 400, 'invalid_request'],
    ['a path in an attachment name', { to: ['sec@corp.example'], text: 'x', attachments: [{ filename: '../../etc/passwd', contentType: 'text/plain', content: 'eA==' }] }, 400, 'invalid_request'],
    ['a bad content type', { to: ['sec@corp.example'], text: 'x', attachments: [{ filename: 'a.txt', contentType: 'text/plain\r\nX: y', content: 'eA==' }] }, 400, 'invalid_request'],
    ['a bad In-Reply-To', { to: ['sec@corp.example'], text: 'x', inReplyTo: 'no-brackets' }, 400, 'invalid_request'],
    ['an external recipient without a key', { to: ['counsel@lawfirm.example', 'exec@corp.example'], cc: [], text: 'x', bcc: ['sec@corp.example'] }, 422, 'missing_public_key'],
  ])('refuses %s', async (_name, body, status, code) => {
    const before = await auditCount();
    const res = await send(body);
    expect(res.status).toBe(status);
    expect(res.body.error.code).toBe(code);
    expect(await deliveriesCount()).toBe(0);
    await worker.drain();
    expect(upstream.received).toHaveLength(0);
    // Policy refusals are audited; malformed requests never reach the policy.
    const after = await auditCount();
    expect(after - before).toBe(status === 400 ? 0 : 1);
  });

  it('lists every outsider in the refusal', async () => {
    const res = await send({ to: ['sec@corp.example', 'a@corp.example'], cc: ['b@evil.example'], text: 'x' });
    expect(res.body.error).toMatchObject({ code: 'recipient_not_on_roster', rule: 'roster', details: { recipients: ['a@corp.example', 'b@evil.example'] } });
  });

  it('refuses a closed incident', async () => {
    await relay.request.patch(`/v1/incidents/${codename}`).set(auth(ic)).send({ status: 'closed' });
    const res = await send({ to: ['sec@corp.example'], text: 'x' });
    expect(res.status).toBe(409);
    expect(res.body.error).toMatchObject({ code: 'incident_closed', rule: 'incident-open' });
    expect(await deliveriesCount()).toBe(0);
  });

  it('refuses more than 100 recipients and oversize messages', async () => {
    const many = Array.from({ length: 101 }, (_, i) => `r${i}@corp.example`);
    const tooMany = await send({ to: many, text: 'x' });
    expect(tooMany.status).toBe(400);
    expect(tooMany.body.error.code).toBe('invalid_request');
    relay.ctx.config.maxMessageBytes = 4096;
    const big = await send({ to: ['sec@corp.example'], text: 'x'.repeat(5000) });
    expect(big.status).toBe(413);
    expect(big.body.error.code).toBe('payload_too_large');
    expect(await deliveriesCount()).toBe(0);
  });

  it('refuses a non-member with 404 and a roster member of another incident likewise', async () => {
    const stranger = await relay.tokenFor('stranger@corp.example');
    const res = await send({ to: ['sec@corp.example'], text: 'x' }, stranger);
    expect(res.status).toBe(404);
    expect(res.body.error.code).toBe('not_found');
  });
});

describe('audit and idempotency', () => {
  it('audits decisions and deliveries with rule outcomes and recipients, never the subject or body', async () => {
    await send({ to: ['sec@corp.example'], subject: 'SECRET-SUBJECT', text: 'SECRET-BODY' });
    await send({ to: ['nosy@corp.example'], subject: 'SECRET-SUBJECT', text: 'SECRET-BODY' });
    await worker.drain();
    const incident = await relay.ctx.store.incidents.byCodename(codename);
    const events = (await relay.ctx.store.audit.listForIncident(incident!.id)).filter((e) => e.type.startsWith('email.'));
    expect(events.map((e) => [e.type, e.outcome])).toEqual([
      ['email.decision', 'ok'],
      ['email.decision', 'refused'],
      ['email.delivered', 'ok'],
    ]);
    expect(events[0]!.data).toMatchObject({ via: 'http', encrypted: false, recipients: { to: ['sec@corp.example'], cc: [], bcc: [] } });
    expect((events[0]!.data['rules'] as { rule: string; result: string }[]).map((r) => `${r.rule}:${r.result}`)).toContain('roster:pass');
    expect(events[1]!.data).toMatchObject({ code: 'recipient_not_on_roster' });
    const all = JSON.stringify(await relay.ctx.store.sql.all('SELECT * FROM audit_events'));
    expect(all).not.toContain('SECRET-SUBJECT');
    expect(all).not.toContain('SECRET-BODY');
  });

  it('answers a repeated Idempotency-Key with the first answer and sends once', async () => {
    const first = await send({ to: ['sec@corp.example'], text: 'once' }).set('Idempotency-Key', 'k-1');
    const again = await send({ to: ['sec@corp.example'], text: 'once' }).set('Idempotency-Key', 'k-1');
    expect(again.status).toBe(202);
    expect(again.body).toEqual(first.body);
    const other = await relay.tokenFor('sec@corp.example');
    const otherCaller = await send({ to: ['ic@corp.example'], text: 'once' }, other).set('Idempotency-Key', 'k-1');
    expect(otherCaller.body.id).not.toBe(first.body.id);
    await worker.drain();
    expect(upstream.received).toHaveLength(2);
  });

  it('shows status to the sender, the commander and admins only', async () => {
    const sec = await relay.tokenFor('sec@corp.example');
    const res = await send({ to: ['exec@corp.example'], text: 'x' }, sec);
    const url = `/v1/incidents/${codename}/emails/${res.body.id}`;
    expect((await relay.request.get(url).set(auth(sec))).body.status).toBe('queued');
    expect((await relay.request.get(url).set(auth(ic))).status).toBe(200);
    expect((await relay.request.get(url).set(auth(relay.admin))).status).toBe(200);
    expect((await relay.request.get(url).set(auth(await relay.tokenFor('exec@corp.example')))).status).toBe(404);
  });
});

describe('leaving the roster', () => {
  it('cancels the queued copies a removed member would receive and the mail they sent; the rest is still delivered', async () => {
    // sec leaves below; a second security member keeps the incident's mail flowing (rule security-team).
    await addMember('soc@corp.example', 'security');
    upstream.failWith = 451;
    const toBoth = await send({ to: ['sec@corp.example', 'exec@corp.example'], text: 'to both' });
    const sec = await relay.tokenFor('sec@corp.example');
    const fromSec = await send({ to: ['exec@corp.example'], text: 'from sec' }, sec);
    expect([toBoth.status, fromSec.status]).toEqual([202, 202]);
    await worker.drain();
    expect(upstream.received).toHaveLength(0);

    expect((await relay.request.delete(`/v1/incidents/${codename}/roster/sec@corp.example`).set(auth(ic))).status).toBe(204);
    upstream.failWith = undefined;
    relay.clock.advance(60_000);
    await worker.drain();

    // Only exec's copy of the first message: nothing reaches sec, nothing sec wrote goes out.
    const [mail] = await upstream.waitFor(1);
    expect(upstream.received).toHaveLength(1);
    expect(mail!.to).toEqual(['exec@corp.example']);
    expect((await simpleParser(mail!.raw)).messageId).toBe(toBoth.body.messageId);
    const statusOf = async (id: string) => (await relay.request.get(`/v1/incidents/${codename}/emails/${id}`).set(auth(ic))).body;
    expect(await statusOf(toBoth.body.id)).toMatchObject({ status: 'sent', attempts: 2 });
    expect(await statusOf(fromSec.body.id)).toMatchObject({ status: 'cancelled' });
    // The cancelled copies keep no body.
    expect(await relay.ctx.store.sql.all("SELECT status FROM deliveries WHERE body IS NOT NULL")).toEqual([]);

    const incident = await relay.ctx.store.incidents.byCodename(codename);
    const cancelled = (await relay.ctx.store.audit.listForIncident(incident!.id)).filter((e) => e.type === 'email.delivery_cancelled');
    expect(cancelled.map((e) => [e.actor, e.data['emailId'], e.data['recipients'], e.data['reason']]).sort()).toEqual(
      [
        ['ic@corp.example', toBoth.body.id, ['sec@corp.example'], 'removed_from_roster'],
        ['ic@corp.example', fromSec.body.id, ['exec@corp.example'], 'removed_from_roster'],
      ].sort(),
    );
    expect((await relay.ctx.store.audit.verify()).ok).toBe(true);
  });
});

describe('delivery failures', () => {
  it('retries a 4xx until the upstream recovers', async () => {
    upstream.failWith = 451;
    const res = await send({ to: ['sec@corp.example'], text: 'retry me' });
    await worker.drain();
    const status = await relay.request.get(`/v1/incidents/${codename}/emails/${res.body.id}`).set(auth(ic));
    expect(status.body).toMatchObject({ status: 'queued', attempts: 1, lastError: expect.stringContaining('451') });
    upstream.failWith = undefined;
    relay.clock.advance(60_000);
    await worker.drain();
    await upstream.waitFor(1);
    expect((await relay.request.get(`/v1/incidents/${codename}/emails/${res.body.id}`).set(auth(ic))).body).toMatchObject({
      id: res.body.id,
      status: 'sent',
      attempts: 2,
      deliveries: [{ recipients: ['sec@corp.example'], status: 'sent', attempts: 2 }],
    });
    expect((await relay.request.get(`/v1/incidents/${codename}/emails/${res.body.id}`).set(auth(ic))).body).not.toHaveProperty('lastError');
  });

  it('fails a 5xx without retrying', async () => {
    upstream.failWith = 550;
    const res = await send({ to: ['sec@corp.example'], text: 'bounce' });
    await worker.drain();
    relay.clock.advance(3_600_000);
    await worker.drain();
    const status = await relay.request.get(`/v1/incidents/${codename}/emails/${res.body.id}`).set(auth(ic));
    expect(status.body).toMatchObject({ status: 'failed', attempts: 1, lastError: expect.stringContaining('550') });
    expect(await relay.ctx.store.sql.all('SELECT body FROM deliveries WHERE email_id = ?', [res.body.id])).toEqual([{ body: null }]);
  });

  it('retries a dead upstream, then gives up after RELAY_DELIVERY_MAX_AGE', async () => {
    await upstream.stop();
    relay.ctx.config.deliveryMaxAge = 60_000;
    const res = await send({ to: ['sec@corp.example'], text: 'nobody home' });
    await worker.drain();
    expect((await relay.request.get(`/v1/incidents/${codename}/emails/${res.body.id}`).set(auth(ic))).body.status).toBe('queued');
    relay.clock.advance(120_000);
    await worker.drain();
    const status = await relay.request.get(`/v1/incidents/${codename}/emails/${res.body.id}`).set(auth(ic));
    expect(status.body).toMatchObject({ status: 'failed', lastError: expect.stringContaining('RELAY_DELIVERY_MAX_AGE') });
  });
});
