/**
 * Encrypted mail stored once (issue 10 §15, §8), on both backends, at a real
 * smtp-server upstream with the real gpg reading what arrived:
 * - the shared encrypted part is stored once per email and each copy holds
 *   only its key packets; the payload is purged once the last copy is sent,
 *   failed or cancelled;
 * - In-Reply-To/References the relay never issued in this incident stay out
 *   of the clear headers of encrypted mail (they travel in the protected
 *   headers); a reply to the relay's own message keeps its thread outside too;
 * - a request that would store more than 2 × RELAY_MAX_MESSAGE_BYTES is 413,
 *   and past the relay-wide in-flight budget it is 503 with Retry-After;
 *   nothing is queued either way.
 */
import { simpleParser } from 'mailparser';
import { afterAll, afterEach, beforeAll, describe, expect, it } from 'vitest';
import { createSmtpChannel } from '../../src/channels/email/smtp.js';
import { InFlightBudget } from '../../src/services/budget.js';
import { DeliveryWorker } from '../../src/workers/delivery.js';
import { createGpgHome, type GeneratedKey, type GpgHome } from '../helpers/gpg.js';
import { armoredPartOf, decryptAs, headerLines } from '../helpers/pgp-mime.js';
import { BACKENDS, createTestRelay, type TestRelay } from '../helpers/relay.js';
import { startUpstream, type Upstream } from '../helpers/upstream.js';

const auth = (token: string) => ({ Authorization: `Bearer ${token}` });

let keyring: GpgHome;
let counsel: GeneratedKey;
let dfir: GeneratedKey;

beforeAll(async () => {
  keyring = await createGpgHome();
  [counsel, dfir] = await Promise.all([keyring.generateKey('counsel@lawfirm.example', 'Outside Counsel'), keyring.generateKey('dfir@forensics.example', 'Forensics Firm')]);
}, 120_000);

afterAll(async () => {
  await keyring.cleanup();
});

describe.each(BACKENDS)('encrypted mail stored once, on %s', (backend) => {
  let upstream: Upstream;
  let relay: TestRelay;
  let worker: DeliveryWorker;
  let channel: ReturnType<typeof createSmtpChannel>;
  let ic: string;
  let codename: string;

  async function setUp(config: Parameters<typeof createTestRelay>[0] = {}): Promise<void> {
    upstream = await startUpstream();
    relay = await createTestRelay({ smtpUpstream: upstream.url, ...config }, { backend });
    channel = createSmtpChannel(upstream.url);
    worker = new DeliveryWorker(relay.ctx, { channels: { email: channel }, baseBackoffMs: 10, random: () => 0 });
    ic = await relay.tokenFor('ic@corp.example');
    codename = (await relay.request.post('/v1/incidents').set(auth(ic)).send({ codename: 'amber-otter' })).body.codename;
    for (const [email, role, key] of [
      ['sec@corp.example', 'security', undefined],
      ['counsel@lawfirm.example', 'external', counsel.armoredPublic],
      ['dfir@forensics.example', 'external', dfir.armoredPublic],
    ] as const) {
      const res = await relay.request.put(`/v1/incidents/${codename}/roster/${email}`).set(auth(ic)).send({ name: email.split('@')[0], role, ...(key ? { publicKey: key } : {}) });
      expect(res.status).toBe(201);
    }
  }

  afterEach(async () => {
    await worker?.stop();
    channel?.close();
    await upstream?.stop();
    await relay?.ctx.store.close();
  });

  const send = (body: Record<string, unknown>) => relay.request.post(`/v1/incidents/${codename}/emails`).set(auth(ic)).send(body);
  const count = async (sql: string, params: (string | number)[] = []): Promise<number> => (await relay.ctx.store.sql.get<{ n: number }>(sql, params))!.n;

  it('stores the encrypted part once, each copy only its key packets, and purges it when the last copy is done', async () => {
    await setUp();
    const attachment = Buffer.alloc(300_000, 'forensic image ');
    const res = await send({
      to: ['counsel@lawfirm.example'],
      bcc: ['dfir@forensics.example', 'sec@corp.example'],
      text: 'The image is attached.',
      attachments: [{ filename: 'image.bin', contentType: 'application/octet-stream', content: attachment.toString('base64') }],
    });
    // sec has no key: refused, since the message must be encrypted for everyone.
    expect(res.status).toBe(422);
    const ok = await send({
      to: ['counsel@lawfirm.example'],
      bcc: ['dfir@forensics.example'],
      text: 'The image is attached.',
      attachments: [{ filename: 'image.bin', contentType: 'application/octet-stream', content: attachment.toString('base64') }],
    });
    expect(ok.status).toBe(202);
    const emailId = ok.body.id as string;
    // One stored payload holding the attachment once; two copies of a few hundred bytes each.
    expect(await count('SELECT COUNT(*) AS n FROM email_payloads WHERE email_id = ?', [emailId])).toBe(1);
    const rows = await relay.ctx.store.sql.all<{ body_kind: string; body: Buffer }>('SELECT body_kind, body FROM deliveries WHERE email_id = ?', [emailId]);
    expect(rows.map((r) => r.body_kind)).toEqual(['sealed', 'sealed']);
    for (const r of rows) expect(r.body.length).toBeLessThan(2_000);
    const shared = (await relay.ctx.store.outbox.payload(emailId))!.shared;
    // The attachment once, base64-encoded inside the MIME part (4/3), not once per copy.
    expect(shared.length).toBeGreaterThan((attachment.length * 4) / 3);
    expect(shared.length).toBeLessThan((attachment.length * 4 * 1.1) / 3);

    await worker.drain();
    const mails = await upstream.waitFor(2);
    // Each copy, rendered from the one payload, opens with its own key only.
    const byRecipient = new Map(mails.map((m) => [m.to.join(','), m.raw]));
    for (const [who, key, other] of [
      ['counsel@lawfirm.example', counsel, dfir],
      ['dfir@forensics.example', dfir, counsel],
    ] as const) {
      const armored = await armoredPartOf(byRecipient.get(who)!);
      const opened = await decryptAs(keyring, key.fingerprint, armored, relay.ctx.relayKey.publicArmored);
      expect(opened.goodSignatureFrom).toBe(relay.ctx.relayKey.fingerprint);
      expect((await simpleParser(opened.plaintext)).attachments[0]!.content.equals(attachment)).toBe(true);
      await expect(decryptAs(keyring, other.fingerprint, armored)).rejects.toThrow();
    }
    // Both copies out: the payload is gone from the store.
    expect(await count('SELECT COUNT(*) AS n FROM email_payloads')).toBe(0);
    expect(await count('SELECT COUNT(*) AS n FROM deliveries WHERE body IS NOT NULL')).toBe(0);
  });

  it('purges the payload when the last queued copy is cancelled', async () => {
    await setUp();
    const ok = await send({ to: ['counsel@lawfirm.example'], text: 'Call at 3pm.' });
    expect(ok.status).toBe(202);
    expect(await count('SELECT COUNT(*) AS n FROM email_payloads')).toBe(1);
    expect((await relay.request.delete(`/v1/incidents/${codename}/roster/counsel@lawfirm.example`).set(auth(ic))).status).toBe(204);
    expect(await count('SELECT COUNT(*) AS n FROM email_payloads')).toBe(0);
    await worker.drain();
    expect(upstream.received).toEqual([]);
  });

  it('keeps In-Reply-To and References the relay never issued out of the clear headers, and inside the encryption', async () => {
    await setUp();
    const first = await send({ to: ['counsel@lawfirm.example'], text: 'First.' });
    expect(first.status).toBe(202);
    const stray = '<ransomware-payroll-db3@x.example>';
    const reply = await send({ to: ['counsel@lawfirm.example'], text: 'Second.', inReplyTo: first.body.messageId, references: [stray, first.body.messageId] });
    expect(reply.status).toBe(202);
    await worker.drain();
    const mails = await upstream.waitFor(2);
    const second = mails.find((m) => m.raw.toString('latin1').includes(reply.body.messageId))!;
    const outer = headerLines(second.raw).join('\n');
    expect(second.raw.toString('latin1')).not.toContain('ransomware-payroll-db3');
    expect(outer).toContain(`In-Reply-To: ${first.body.messageId}`);
    expect(outer).toContain(`References: ${first.body.messageId}`);
    const opened = await decryptAs(keyring, counsel.fingerprint, await armoredPartOf(second.raw), relay.ctx.relayKey.publicArmored);
    const inner = await simpleParser(opened.plaintext);
    expect(inner.references).toEqual([stray, first.body.messageId]);
    expect(inner.inReplyTo).toBe(first.body.messageId);
  });

  it('refuses a request that would store more than twice the message limit (413) and one past the in-flight budget (503), queuing nothing', async () => {
    await setUp({ maxMessageBytes: 200_000 });
    const big = Buffer.alloc(150_000, 'x').toString('base64');
    // Plain, to three internal recipients: stored once, well within 2 × 200 KB.
    const plain = await send({ to: ['sec@corp.example'], text: 'one copy', attachments: [{ filename: 'a.bin', contentType: 'application/octet-stream', content: big }] });
    expect(plain.status).toBe(202);
    // A relay-wide budget smaller than this message: the relay is busy composing others, try again.
    relay.ctx.inFlight = new InFlightBudget({ limitBytes: 10_000_000 });
    const held = relay.ctx.inFlight.tryReserve(9_900_000)!;
    const busy = await send({ to: ['counsel@lawfirm.example'], text: 'later', attachments: [{ filename: 'a.bin', contentType: 'application/octet-stream', content: big }] });
    expect(busy.status).toBe(503);
    expect(busy.body.error.code).toBe('unavailable');
    expect(busy.headers['retry-after']).toBe('5');
    held();
    const after = await send({ to: ['counsel@lawfirm.example'], text: 'now', attachments: [{ filename: 'a.bin', contentType: 'application/octet-stream', content: big }] });
    expect(after.status).toBe(202);
    expect(relay.ctx.inFlight.inFlight).toBe(0);
    const queued = await count('SELECT COUNT(*) AS n FROM deliveries');
    // Under the content limit (190 KB < 200 KB), but quoted-printable writes each '=' as '=3D':
    // over the per-request bound of 2 × 200 KB once encoded.
    const huge = await send({ to: ['counsel@lawfirm.example'], text: '='.repeat(190_000) });
    expect(huge.status).toBe(413);
    expect(huge.body.error).toMatchObject({ code: 'payload_too_large', details: { limit: 400_000 } });
    expect(await count('SELECT COUNT(*) AS n FROM deliveries')).toBe(queued);
    expect(relay.ctx.inFlight.inFlight).toBe(0);
  });
});
