/**
 * SMTP submission end to end (issue 4): nodemailer (and a raw socket for
 * exact dialogues) against the real listener on port 0 with STARTTLS on a
 * generated certificate, the real pipeline, a real DeliveryWorker and
 * createSmtpChannel to a real smtp-server upstream, and the real gpg binary
 * reading what arrived. Every refusal asserts the exact reply and that
 * nothing reached anyone.
 */
import fs from 'node:fs';
import net from 'node:net';
import os from 'node:os';
import path from 'node:path';
import nodeTls from 'node:tls';
import { simpleParser } from 'mailparser';
import nodemailer, { type Transporter } from 'nodemailer';
import type SMTPTransport from 'nodemailer/lib/smtp-transport';
import { afterAll, afterEach, beforeAll, beforeEach, describe, expect, it } from 'vitest';
import { createSmtpChannel } from '../../src/channels/email/smtp.js';
import { startSmtpListener, type SmtpLimits, type SmtpListener } from '../../src/smtp/listener.js';
import { loadOrCreateTlsCertificate, type TlsMaterial } from '../../src/smtp/tls.js';
import { DeliveryWorker } from '../../src/workers/delivery.js';
import { createGpgHome, type GeneratedKey, type GpgHome } from '../helpers/gpg.js';
import { armoredPartOf, decryptAs, headerLines } from '../helpers/pgp-mime.js';
import { createTestRelay, type TestRelay } from '../helpers/relay.js';
import { startUpstream, type Upstream } from '../helpers/upstream.js';
import { connectRaw, type RawSmtp } from '../smtp/raw-client.js';

const auth = (token: string) => ({ Authorization: `Bearer ${token}` });

let keyring: GpgHome;
let counsel: GeneratedKey;
let icKey: GeneratedKey;
let secKey: GeneratedKey;
let tls: TlsMaterial;
let tlsDir: string;

beforeAll(async () => {
  keyring = await createGpgHome();
  [counsel, icKey, secKey] = await Promise.all([
    keyring.generateKey('counsel@lawfirm.example', 'Outside Counsel'),
    keyring.generateKey('ic@corp.example', 'Incident Commander'),
    keyring.generateKey('sec@corp.example', 'Security'),
  ]);
  tlsDir = fs.mkdtempSync(path.join(os.tmpdir(), 'relay-smtp-tls-'));
  tls = await loadOrCreateTlsCertificate({ dataDir: tlsDir });
}, 120_000);

afterAll(async () => {
  await keyring.cleanup();
  fs.rmSync(tlsDir, { recursive: true, force: true });
});

let upstream: Upstream;
let relay: TestRelay;
let worker: DeliveryWorker;
let channel: ReturnType<typeof createSmtpChannel>;
let listener: SmtpListener;
let ic: string;
const raws: RawSmtp[] = [];
const transports: Transporter[] = [];

async function addMember(codename: string, email: string, role: string, publicKey?: string): Promise<void> {
  const res = await relay.request.put(`/v1/incidents/${codename}/roster/${email}`).set(auth(ic)).send({ name: email.split('@')[0], role, ...(publicKey ? { publicKey } : {}) });
  expect(res.status).toBe(201);
}

async function declare(codename: string, token = ic): Promise<void> {
  const res = await relay.request.post('/v1/incidents').set(auth(token)).send({ codename });
  expect(res.status).toBe(201);
}

async function listen(limits: Partial<SmtpLimits> = {}): Promise<void> {
  await listener?.close();
  listener = await startSmtpListener(relay.ctx, { host: '127.0.0.1', port: 0, tls, limits });
}

beforeEach(async () => {
  upstream = await startUpstream();
  relay = await createTestRelay({ smtpUpstream: upstream.url });
  channel = createSmtpChannel(upstream.url);
  worker = new DeliveryWorker(relay.ctx, { channels: { email: channel }, baseBackoffMs: 10, random: () => 0 });
  ic = await relay.tokenFor('ic@corp.example');
  await declare('amber-otter');
  await relay.request.put('/v1/keys/ic@corp.example').set(auth(ic)).send({ publicKey: icKey.armoredPublic });
  await addMember('amber-otter', 'sec@corp.example', 'security');
  await addMember('amber-otter', 'exec@corp.example', 'executive');
  await addMember('amber-otter', 'scribe@corp.example', 'scribe');
  await addMember('amber-otter', 'counsel@lawfirm.example', 'external', counsel.armoredPublic);
  await listen();
});

afterEach(async () => {
  for (const r of raws.splice(0)) r.close();
  for (const t of transports.splice(0)) t.close();
  await listener.close();
  await worker.stop();
  channel.close();
  await upstream.stop();
});

/** A nodemailer client that must use STARTTLS, trusting the generated certificate. */
function client(user: string | undefined, pass?: string, extra: Partial<SMTPTransport.Options> = {}): Transporter<SMTPTransport.SentMessageInfo> {
  const transport = nodemailer.createTransport({
    host: '127.0.0.1',
    port: listener.port,
    secure: false,
    requireTLS: true,
    tls: { ca: tls.cert, servername: 'localhost' },
    ...(user !== undefined ? { auth: { user, pass: pass ?? '' } } : {}),
    ...extra,
  } as SMTPTransport.Options);
  transports.push(transport);
  return transport;
}

interface SmtpFailure {
  code?: string;
  responseCode?: number;
  response?: string;
  command?: string;
}

async function refusal(promise: Promise<unknown>): Promise<SmtpFailure> {
  try {
    await promise;
  } catch (err) {
    return err as SmtpFailure;
  }
  throw new Error('expected the relay to refuse');
}

async function raw(): Promise<RawSmtp> {
  const r = await connectRaw(listener.port);
  raws.push(r);
  return r;
}

/** A raw session through STARTTLS and AUTH as `user`. */
async function loggedIn(user = 'ic@corp.example', token = ic): Promise<RawSmtp> {
  const r = await raw();
  await r.startTls(tls.cert);
  expect((await r.authPlain(user, token)).code).toBe(235);
  return r;
}

async function deliveriesCount(): Promise<number> {
  return (await relay.ctx.store.sql.get<{ n: number }>('SELECT COUNT(*) AS n FROM deliveries'))!.n;
}

/** Nothing queued, and after the worker ran nothing arrived upstream. */
async function expectNothingDelivered(): Promise<void> {
  expect(await deliveriesCount()).toBe(0);
  await worker.drain();
  expect(upstream.received).toHaveLength(0);
}

/** Every audit event of `type` (SMTP sessions belong to no incident), in order. */
async function auditOf(type: string): Promise<{ type: string; outcome: string; actor: string | null; data: Record<string, unknown> }[]> {
  const rows = await relay.ctx.store.sql.all<{ type: string; outcome: string; actor: string | null; data: string }>('SELECT type, outcome, actor, data FROM audit_events WHERE type = ? ORDER BY seq', [type]);
  return rows.map((r) => ({ ...r, data: JSON.parse(r.data) as Record<string, unknown> }));
}

/** Failed AUTH attempts counted for the unauthenticated summary (relay_smtp_unauthenticated_total), by reason; connections left out. */
async function authFailuresCounted(): Promise<Record<string, number>> {
  const { values } = await relay.ctx.metrics.smtpUnauthenticated.get();
  return Object.fromEntries(values.filter((v) => v.labels['reason'] !== 'connection' && v.labels['reason'] !== 'before_greeting').map((v) => [String(v.labels['reason']), v.value]));
}

async function eventually<T>(probe: () => T | undefined | Promise<T | undefined>, timeoutMs = 5_000): Promise<T> {
  const deadline = Date.now() + timeoutMs;
  for (;;) {
    const value = await probe();
    if (value !== undefined) return value;
    if (Date.now() > deadline) throw new Error('condition not met in time');
    await new Promise((resolve) => setTimeout(resolve, 20));
  }
}

/**
 * The `smtp.message` refusal events, once there are at least `n`: the
 * listener answers a refusal without waiting for its audit append to commit
 * (on PostgreSQL it lands a moment after the reply).
 */
async function refusalsAudited(n: number): Promise<Awaited<ReturnType<typeof auditOf>>> {
  return eventually(async () => {
    const events = await auditOf('smtp.message');
    return events.length >= n ? events : undefined;
  });
}

/** Makes the database refuse (or accept again) every new delivery, as a failing disk would; the error text names internals the client must never see. */
async function failInserts(on: boolean): Promise<void> {
  const { sql } = relay.ctx.store;
  if (sql.dialect === 'sqlite') {
    await sql.exec(on ? "CREATE TRIGGER fail_enqueue BEFORE INSERT ON deliveries BEGIN SELECT RAISE(ABORT, 'disk I/O error at /var/lib/relay'); END" : 'DROP TRIGGER fail_enqueue');
  } else {
    await sql.exec(
      on
        ? `CREATE FUNCTION fail_enqueue() RETURNS trigger LANGUAGE plpgsql AS $$ BEGIN RAISE EXCEPTION 'disk I/O error at /var/lib/relay'; END $$;
           CREATE TRIGGER fail_enqueue BEFORE INSERT ON deliveries FOR EACH ROW EXECUTE FUNCTION fail_enqueue()`
        : 'DROP TRIGGER fail_enqueue ON deliveries; DROP FUNCTION fail_enqueue()',
    );
  }
}

const message = (headers: string[], body = 'Body line.') => [...headers, 'MIME-Version: 1.0', 'Content-Type: text/plain; charset=utf-8', '', body, ''].join('\r\n');

describe('the dialogue', () => {
  it('greets, announces STARTTLS and SIZE, and offers AUTH PLAIN and LOGIN after TLS', async () => {
    const r = await raw();
    expect(r.greeting.code).toBe(220);
    const before = await r.command('EHLO client.test');
    expect(before.code).toBe(250);
    expect(before.lines).toContain('250-STARTTLS');
    const after = await r.startTls(tls.cert);
    expect(after.lines.map((l) => l.slice(4))).toEqual(expect.arrayContaining(['AUTH PLAIN LOGIN', `SIZE ${relay.ctx.config.maxMessageBytes}`]));
    expect(after.lines.some((l) => l.includes('STARTTLS'))).toBe(false);
  });

  it('serves the certificate whose fingerprint is printed, so a user can pin it', async () => {
    // Checked by fingerprint alone (no CA), the way a user pins a self-signed certificate.
    const socket = net.connect(listener.port, '127.0.0.1');
    const lines: string[] = [];
    const next = (): Promise<string> =>
      new Promise((resolve) => {
        const take = (): void => {
          const line = lines.shift();
          if (line !== undefined && /^\d{3} /.test(line)) resolve(line);
          else if (line !== undefined) take();
          else socket.once('data', (chunk: Buffer) => (lines.push(...chunk.toString('latin1').split('\r\n').filter((l) => l !== '')), take()));
        };
        take();
      });
    expect(await next()).toMatch(/^220 /);
    socket.write('EHLO client.test\r\n');
    expect(await next()).toMatch(/^250 /);
    socket.write('STARTTLS\r\n');
    expect(await next()).toMatch(/^220 /);
    const secure = nodeTls.connect({ socket, rejectUnauthorized: false });
    await new Promise((resolve) => secure.once('secureConnect', resolve));
    expect(secure.getPeerX509Certificate()!.fingerprint256).toBe(tls.fingerprint256);
    secure.destroy();
  });
});

describe('accepted mail', () => {
  it('arrives encrypted when counsel is on it, gpg decrypts it, subject fixed with the Topic line inside', async () => {
    const info = await client('ic@corp.example', ic).sendMail({
      from: 'Incident Commander <ic@corp.example>',
      to: 'counsel@lawfirm.example',
      subject: 'Customer data in S3 bucket',
      text: 'Privileged: see attached timeline.',
      attachments: [{ filename: 'timeline.txt', content: '09:00 first alert\n', contentType: 'text/plain' }],
      headers: { 'X-Client-Secret': 'client-header-value', 'User-Agent': 'Thunderbird/128' },
    });
    expect(info.response).toMatch(/^250 2\.0\.0 Ok: queued as <[0-9a-f-]{36}@corp\.example>, encrypted, 1 recipient\(s\)$/);
    // 250 means durably queued: the delivery is in the store before the worker ran.
    expect(await deliveriesCount()).toBe(1);

    await worker.drain();
    const [mail] = await upstream.waitFor(1);
    expect(mail!.from).toBe('ic@corp.example');
    expect(mail!.to).toEqual(['counsel@lawfirm.example']);
    const rawText = mail!.raw.toString('latin1');
    for (const secret of ['Customer data', 'Privileged', 'client-header-value', 'Thunderbird']) expect(rawText).not.toContain(secret);
    expect(headerLines(mail!.raw).filter((h) => /^subject:/i.test(h))).toEqual(['Subject: Attorney Work Project']);
    expect(rawText).toMatch(/Content-Type: multipart\/encrypted;\s+protocol="application\/pgp-encrypted"/);

    const result = await decryptAs(keyring, counsel.fingerprint, await armoredPartOf(mail!.raw), relay.ctx.relayKey.publicArmored);
    expect(result.goodSignatureFrom).toBe(relay.ctx.relayKey.fingerprint);
    const inner = result.plaintext.toString('utf8');
    expect(inner).toContain('Subject: Attorney Work Project');
    expect(inner).not.toContain('client-header-value');
    const parsed = await simpleParser(result.plaintext);
    expect(parsed.text).toMatch(/^Topic: Customer data in S3 bucket\n\nPrivileged: see attached timeline\.\n?$/);
    expect(parsed.attachments.map((a) => [a.filename, a.content.toString()])).toEqual([['timeline.txt', '09:00 first alert\n']]);
    const decision = (await auditOf('email.decision')).at(-1)!;
    expect(decision).toMatchObject({ outcome: 'ok', actor: 'ic@corp.example', data: { via: 'smtp', encrypted: true } });
  });

  it('takes recipients from the envelope: header-only ones are ignored, envelope-only ones are Bcc; client headers are dropped', async () => {
    const info = await client('ic@corp.example', ic).sendMail({
      envelope: { from: 'ic@corp.example', to: ['sec@corp.example', 'exec@corp.example', 'scribe@corp.example'] },
      from: 'ic@corp.example',
      to: 'sec@corp.example, nosy@corp.example',
      cc: 'exec@corp.example',
      subject: 'Database breach at prod-db-3',
      text: 'Rotate the keys.',
      headers: { 'X-Custom': 'client-value', 'User-Agent': 'mutt/2.2' },
    });
    expect(info.response).toMatch(/^250 .*plain, 3 recipient\(s\)$/);
    await worker.drain();
    const [mail] = await upstream.waitFor(1);
    expect(mail!.to.sort()).toEqual(['exec@corp.example', 'scribe@corp.example', 'sec@corp.example']);
    const headers = headerLines(mail!.raw);
    expect(headers.filter((h) => /^(to|cc|bcc):/i.test(h)).map((h) => h.toLowerCase())).toEqual([expect.stringMatching(/^to: .*sec@corp\.example>?$/), expect.stringMatching(/^cc: .*exec@corp\.example>?$/)]);
    const rawText = mail!.raw.toString('latin1');
    // The Bcc (envelope-only) address bare, not only as '<addr>': a mailbox without a name has no brackets.
    for (const absent of ['nosy@', 'scribe@corp.example', 'client-value', 'mutt', 'X-Custom', 'User-Agent']) expect(rawText).not.toContain(absent);
    const parsed = await simpleParser(mail!.raw);
    expect(parsed.subject).toBe('Attorney Work Project');
    expect(parsed.text).toMatch(/^Topic: Database breach at prod-db-3\n\nRotate the keys\.\n?$/);
  });

  it('keeps In-Reply-To and References and refuses malformed ones', async () => {
    const first = await client('ic@corp.example', ic).sendMail({ from: 'ic@corp.example', to: 'sec@corp.example', text: 'first' });
    const firstId = /queued as (<[^>]+>)/.exec(first.response)![1]!;
    // An internal root the relay never saw: a reference from an outside domain would make the chain external (encrypted).
    const reply = await client('ic@corp.example', ic).sendMail({ from: 'ic@corp.example', to: 'sec@corp.example', text: 'reply', inReplyTo: firstId, references: ['<root@corp.example>', firstId] });
    expect(reply.response).toMatch(/^250 /);
    await worker.drain();
    const mails = await upstream.waitFor(2);
    const replied = await simpleParser(mails[1]!.raw);
    expect(replied.inReplyTo).toBe(firstId);
    expect(replied.references).toEqual(['<root@corp.example>', firstId]);

    const r = await loggedIn();
    await r.command('MAIL FROM:<ic@corp.example>');
    await r.command('RCPT TO:<sec@corp.example>');
    const [, bad] = await r.data(message(['From: ic@corp.example', 'To: sec@corp.example', 'In-Reply-To: not a message id']));
    expect(bad!.code).toBe(550);
    expect(bad!.text).toMatch(/^5\.7\.1 invalid_request: The In-Reply-To header holds "/);
    // Two '@' in one id: refused as clearly at DATA, not accepted and then failed at composition.
    await r.command('MAIL FROM:<ic@corp.example>');
    await r.command('RCPT TO:<sec@corp.example>');
    const [, twoAts] = await r.data(message(['From: ic@corp.example', 'To: sec@corp.example', 'References: <a@b@c>']));
    expect(twoAts!.code).toBe(550);
    expect(twoAts!.text).toBe('5.7.1 invalid_request: The References header holds "<a@b@c>", which is not a Message-ID such as <id@host>; reply from the original message.');
    expect((await refusalsAudited(2)).map((e) => [e.data['stage'], e.data['code']])).toEqual([
      ['data', 'invalid_request'],
      ['data', 'invalid_request'],
    ]);
  });

  it('a reply written from the Sent folder (In-Reply-To the client\'s own Message-ID) stays in its encrypted thread', async () => {
    // Thunderbird keeps its own Message-ID (in the sender's own, internal domain) in the Sent copy; the relay writes its own on the wire.
    const clientId = '<5F3A9C.1@CORP.example>';
    const first = await client('ic@corp.example', ic).sendMail({ from: 'ic@corp.example', to: 'counsel@lawfirm.example', text: 'privileged', messageId: clientId });
    expect(first.response).toMatch(/encrypted/);
    // The reply drops counsel and names only the client's id (the domain part in another case, as RFC 5322 allows).
    const replyFromSent = () =>
      client('ic@corp.example', ic).sendMail({
        from: 'ic@corp.example',
        to: 'sec@corp.example',
        text: '> privileged\nquoted from the Sent copy',
        inReplyTo: '<5F3A9C.1@corp.EXAMPLE>',
        references: ['<5F3A9C.1@corp.EXAMPLE>'],
      });
    // sec has no key: a thread that touched counsel is never sent in clear, so the reply is refused.
    const failure = await refusal(replyFromSent());
    expect(failure.responseCode).toBe(550);
    expect(failure.response).toMatch(/^550 5\.7\.1 missing_public_key: This message must be encrypted \(external-chain\) but there is no public key for sec@corp\.example\./);
    // With sec's key on file the same reply goes out encrypted.
    const updated = await relay.request.put('/v1/incidents/amber-otter/roster/sec@corp.example').set(auth(ic)).send({ name: 'sec', role: 'security', publicKey: secKey.armoredPublic });
    expect(updated.status).toBe(200);
    const sent = await replyFromSent();
    expect(sent.response).toMatch(/encrypted, 1 recipient\(s\)$/);
    await worker.drain();
    const mails = await upstream.waitFor(2);
    const toSec = mails.find((m) => m.to.includes('sec@corp.example'))!;
    expect(toSec.raw.toString('latin1')).not.toContain('quoted from the Sent copy');
    const opened = await decryptAs(keyring, secKey.fingerprint, await armoredPartOf(toSec.raw), relay.ctx.relayKey.publicArmored);
    expect(opened.plaintext.toString('utf8')).toContain('quoted from the Sent copy');
  });

  it('audits the session outcome when the client leaves', async () => {
    await client('ic@corp.example', ic).sendMail({ from: 'ic@corp.example', to: 'sec@corp.example', text: 'x' });
    const session = await eventually(async () => (await auditOf('smtp.session')).find((e) => e.data['accepted'] === 1));
    expect(session).toMatchObject({ outcome: 'ok', actor: 'ic@corp.example', data: { via: 'smtp', tls: true, user: 'ic@corp.example', authFailures: 0, refused: {} } });
  });
});

describe('off-roster recipients', () => {
  it('refuses an outsider at RCPT with 550 5.7.1 recipient_not_on_roster', async () => {
    const err = await refusal(client('ic@corp.example', ic).sendMail({ from: 'ic@corp.example', to: 'nosy@corp.example', text: 'x' }));
    expect(err.code).toBe('EENVELOPE');
    expect(err.responseCode).toBe(550);
    expect(err.response).toBe(
      '550 5.7.1 recipient_not_on_roster: nosy@corp.example is not on the response roster of amber-otter. The whole message will be refused, so nothing reaches anyone; remove them, or ask the commander to add them. People outside the response team hear only through an approved announcement.',
    );
    await expectNothingDelivered();
  });

  it('refuses the whole transaction at DATA when a client goes on with the accepted recipients (nodemailer)', async () => {
    const err = await refusal(client('ic@corp.example', ic).sendMail({ from: 'ic@corp.example', to: ['sec@corp.example', 'nosy@corp.example', 'exec@corp.example'], text: 'x' }));
    expect(err.responseCode).toBe(550);
    expect(err.response).toMatch(/^550 5\.7\.1 recipient_not_on_roster: Not on the response roster: nosy@corp\.example\. Nothing was sent to anyone/);
    await expectNothingDelivered();
  });

  it('one outsider among several recipients delivers nothing to anyone (raw dialogue)', async () => {
    const r = await loggedIn();
    expect((await r.command('MAIL FROM:<ic@corp.example>')).code).toBe(250);
    expect((await r.command('RCPT TO:<sec@corp.example>')).code).toBe(250);
    const outsider = await r.command('RCPT TO:<nosy@corp.example>');
    expect(outsider.code).toBe(550);
    expect(outsider.text).toMatch(/^5\.7\.1 recipient_not_on_roster: nosy@corp\.example is not on the response roster of amber-otter\./);
    expect((await r.command('RCPT TO:<exec@corp.example>')).code).toBe(250);
    const [go, done] = await r.data(message(['From: ic@corp.example', 'To: sec@corp.example, exec@corp.example', 'Subject: hi']));
    expect(go.code).toBe(354);
    expect(done!.code).toBe(550);
    expect(done!.text).toBe('5.7.1 recipient_not_on_roster: Not on the response roster: nosy@corp.example. Nothing was sent to anyone; remove them, or ask the commander to add them. People outside the response team hear only through an approved announcement.');
    // The refusal belongs to that transaction only: a clean one on the same connection goes through.
    expect((await r.command('MAIL FROM:<ic@corp.example>')).code).toBe(250);
    expect((await r.command('RCPT TO:<sec@corp.example>')).code).toBe(250);
    const [, ok] = await r.data(message(['From: ic@corp.example', 'To: sec@corp.example']));
    expect(ok!.code).toBe(250);
    await worker.drain();
    const mails = await upstream.waitFor(1);
    expect(mails).toHaveLength(1);
    expect(mails[0]!.to).toEqual(['sec@corp.example']);
    expect((await refusalsAudited(2)).map((e) => [e.data['stage'], e.data['code']])).toEqual([
      ['rcpt', 'recipient_not_on_roster'],
      ['data', 'recipient_not_on_roster'],
    ]);
  });

  it('defers to DATA when the incident is only known from the headers, and still refuses', async () => {
    await declare('misty-heron');
    await addMember('misty-heron', 'legal@corp.example', 'legal');
    const r = await loggedIn();
    await r.command('MAIL FROM:<ic@corp.example>');
    // Not on any of ic's open incidents: refused at once.
    const nobody = await r.command('RCPT TO:<nosy@corp.example>');
    expect(nobody.code).toBe(550);
    expect(nobody.text).toMatch(/^5\.7\.1 recipient_not_on_roster: nosy@corp\.example is not on the roster of any open incident you are on\./);
    await r.command('RSET');
    await r.command('MAIL FROM:<ic@corp.example>');
    // On misty-heron, so RCPT cannot tell yet; X-Incident names amber-otter, whose roster lacks legal@.
    expect((await r.command('RCPT TO:<legal@corp.example>')).code).toBe(250);
    const [, done] = await r.data(message(['From: ic@corp.example', 'To: legal@corp.example', 'X-Incident: amber-otter']));
    expect(done!.code).toBe(550);
    expect(done!.text).toMatch(/^5\.7\.1 recipient_not_on_roster: Not on the response roster: legal@corp\.example\./);
    await expectNothingDelivered();
  });
});

describe('sender spoofing', () => {
  it('refuses a MAIL FROM other than the authenticated address at MAIL', async () => {
    const err = await refusal(
      client('ic@corp.example', ic).sendMail({ envelope: { from: 'sec@corp.example', to: ['exec@corp.example'] }, from: 'ic@corp.example', to: 'exec@corp.example', text: 'x' }),
    );
    expect(err.responseCode).toBe(550);
    expect(err.command).toBe('MAIL FROM');
    expect(err.response).toBe('550 5.7.1 sender_mismatch: You are authenticated as ic@corp.example; you cannot send as sec@corp.example. Use your own address as the sender.');
    await expectNothingDelivered();
  });

  it('refuses a From: header other than the authenticated address at DATA (rule sender)', async () => {
    const err = await refusal(
      client('ic@corp.example', ic).sendMail({ envelope: { from: 'ic@corp.example', to: ['exec@corp.example'] }, from: 'CEO <sec@corp.example>', to: 'exec@corp.example', text: 'wire the money' }),
    );
    expect(err.responseCode).toBe(550);
    expect(err.response).toBe('550 5.7.1 sender_mismatch: You are authenticated as ic@corp.example; you cannot send as sec@corp.example.');
    await expectNothingDelivered();
    const refused = (await auditOf('email.decision')).at(-1)!;
    expect(refused).toMatchObject({ outcome: 'refused', data: { via: 'smtp', code: 'sender_mismatch' } });
  });

  it('sees a second From: header that a parser keeping one would miss, and a spoofed Sender:', async () => {
    const r = await loggedIn();
    for (const headers of [
      ['From: sec@corp.example', 'From: ic@corp.example', 'To: exec@corp.example'],
      ['From: ic@corp.example', 'Sender: sec@corp.example', 'To: exec@corp.example'],
    ]) {
      await r.command('MAIL FROM:<ic@corp.example>');
      await r.command('RCPT TO:<exec@corp.example>');
      const [, done] = await r.data(message(headers));
      expect(done!.code).toBe(550);
      expect(done!.text).toMatch(/^5\.7\.1 sender_mismatch: .*cannot send as sec@corp\.example/);
    }
    await expectNothingDelivered();
  });
});

describe('authentication', () => {
  it('refuses MAIL without AUTH with 530', async () => {
    const err = await refusal(client(undefined).sendMail({ from: 'ic@corp.example', to: 'sec@corp.example', text: 'x' }));
    expect(err.responseCode).toBe(530);
    expect(err.response).toBe('530 5.7.0 Authentication required: STARTTLS, then AUTH PLAIN or LOGIN with your email address and relay token');
    const r = await raw();
    await r.startTls(tls.cert);
    expect((await r.command('MAIL FROM:<ic@corp.example>')).code).toBe(530);
    await expectNothingDelivered();
  });

  it('takes a user name with a Unicode domain as the address its token was issued for (the A-label form)', async () => {
    const token = await relay.tokenFor('ops@xn--bcher-kva.example');
    await expect(client('Ops@Bücher.example', token).verify()).resolves.toBe(true);
    await expect(client('ops@xn--bcher-kva.example', token).verify()).resolves.toBe(true);
    // Still another user's token for any other address.
    const err = await refusal(client('ops@bucher.example', token).verify());
    expect(err.responseCode).toBe(535);
  });

  it('refuses AUTH before STARTTLS (538), over nodemailer and a raw socket', async () => {
    const err = await refusal(client('ic@corp.example', ic, { requireTLS: false, ignoreTLS: true }).sendMail({ from: 'ic@corp.example', to: 'sec@corp.example', text: 'x' }));
    expect(err.code).toBe('EAUTH');
    expect(err.responseCode).toBe(538);
    const r = await raw();
    await r.command('EHLO client.test');
    const reply = await r.authPlain('ic@corp.example', ic);
    expect(reply).toMatchObject({ code: 538, text: 'Error: Must issue a STARTTLS command first' });
    expect((await r.command('MAIL FROM:<ic@corp.example>')).code).toBe(530);
    await expectNothingDelivered();
    // Refused before the credentials were looked at: nothing to count against the address.
    expect(await authFailuresCounted()).toEqual({});
  });

  it('allows AUTH without TLS only with RELAY_SMTP_ALLOW_INSECURE_AUTH', async () => {
    relay.ctx.config.smtpAllowInsecureAuth = true;
    await listen();
    const info = await client('ic@corp.example', ic, { requireTLS: false, ignoreTLS: true }).sendMail({ from: 'ic@corp.example', to: 'sec@corp.example', text: 'x' });
    expect(info.response).toMatch(/^250 /);
  });

  // A non-loopback address of this machine, when it has one, so a client can reach the listener from off loopback.
  const external = Object.values(os.networkInterfaces())
    .flat()
    .find((i) => i !== undefined && !i.internal && i.family === 'IPv4')?.address;

  it.skipIf(external === undefined)('RELAY_SMTP_ALLOW_INSECURE_AUTH reaches loopback clients only: any other gets the same 538 as without it', async () => {
    relay.ctx.config.smtpAllowInsecureAuth = true;
    await listener.close();
    // As a proxy or port forward would make it: one listener, reached from loopback and from the network.
    listener = await startSmtpListener(relay.ctx, { host: '0.0.0.0', port: 0, tls });
    const remote = await connectRaw(listener.port, external!);
    raws.push(remote);
    await remote.command('EHLO client.test');
    expect(await remote.authPlain('ic@corp.example', ic)).toMatchObject({ code: 538, text: 'Error: Must issue a STARTTLS command first' });
    expect((await remote.command('MAIL FROM:<ic@corp.example>')).code).toBe(530);
    // The credentials were not looked at: nothing audited, nothing counted against the address.
    expect(await auditOf('smtp.auth_failed')).toEqual([]);
    expect(await authFailuresCounted()).toEqual({});
    // After STARTTLS the same client logs in as usual.
    const secured = await connectRaw(listener.port, external!);
    raws.push(secured);
    await secured.startTls(tls.cert);
    expect((await secured.authPlain('ic@corp.example', ic)).code).toBe(235);
    // From loopback, on the same listener, the setting still does what it says.
    const local = await connectRaw(listener.port, '127.0.0.1');
    raws.push(local);
    await local.command('EHLO client.test');
    expect((await local.authPlain('ic@corp.example', ic)).code).toBe(235);
  });

  it('refuses a wrong token and the token of another user with 535; another user\'s token is audited, without the password', async () => {
    const wrong = 'ir_0123456789abcdef_' + 'A'.repeat(43);
    const sec = await relay.tokenFor('sec@corp.example');
    for (const [user, pass] of [
      ['ic@corp.example', wrong],
      ['ic@corp.example', sec],
      ['IC@Corp.Example', sec],
    ] as const) {
      const err = await refusal(client(user, pass).sendMail({ from: 'ic@corp.example', to: 'sec@corp.example', text: 'x' }));
      expect(err.code).toBe('EAUTH');
      expect(err.responseCode).toBe(535);
      expect(err.response).toBe(
        '535 5.7.8 unauthenticated: Authentication failed: the username must be your email address and the password your relay token (ask an admin for a new token if it was revoked).',
      );
      expect(err.response).not.toContain(pass);
    }
    await expectNothingDelivered();
    // A wrong token is only counted (anyone can cause it); a valid token of another user is audited at once.
    expect(await authFailuresCounted()).toEqual({ unknown_token: 1, token_of_other_user: 2 });
    const failed = await auditOf('smtp.auth_failed');
    expect(failed.map((e) => e.data['reason'])).toEqual(['token_of_other_user', 'token_of_other_user']);
    expect(failed[0]).toMatchObject({ actor: 'ic@corp.example', outcome: 'refused', data: { username: 'ic@corp.example', tokenId: expect.any(String), ip: '127.0.0.1' } });
    const everything = JSON.stringify(await relay.ctx.store.sql.all('SELECT * FROM audit_events'));
    expect(everything).not.toContain(wrong);
    expect(everything).not.toContain(sec);
    // The username matches case-insensitively: the right token with a differently cased address works.
    const info = await client('IC@corp.example', ic).sendMail({ from: 'ic@corp.example', to: 'sec@corp.example', text: 'x' });
    expect(info.response).toMatch(/^250 /);
  });

  it('stops a token revoked after AUTH on the open session: MAIL is refused with 530, nothing delivered', async () => {
    const r = await loggedIn();
    // Revoked through the API an admin uses, while the session stays open.
    const tokenId = (await relay.ctx.store.tokens.verify(ic))!.id;
    expect((await relay.request.delete(`/v1/tokens/${tokenId}`).set(auth(relay.admin))).status).toBe(204);
    const mail = await r.command('MAIL FROM:<ic@corp.example>');
    expect(mail.code).toBe(530);
    expect(mail.text).toBe('5.7.0 unauthenticated: Your token was revoked after you logged in; ask an admin for a new one, then reconnect and log in with it.');
    // No transaction was opened, so nothing can follow on this connection.
    expect((await r.command('RCPT TO:<sec@corp.example>')).code).toBe(503);
    await expectNothingDelivered();
    expect((await refusalsAudited(1)).map((e) => [e.actor, e.data['stage'], e.data['code']])).toEqual([['ic@corp.example', 'mail', 'unauthenticated']]);
  });

  it('stops a token revoked between MAIL and RCPT: RCPT is refused with 530 and tells nothing about the roster', async () => {
    const r = await loggedIn();
    expect((await r.command('MAIL FROM:<ic@corp.example>')).code).toBe(250);
    expect(await relay.ctx.store.tokens.revoke((await relay.ctx.store.tokens.verify(ic))!.id, new Date())).toBe(true);
    for (const rcpt of ['sec@corp.example', 'nosy@corp.example']) {
      const reply = await r.command(`RCPT TO:<${rcpt}>`);
      expect(reply.code).toBe(530);
      expect(reply.text).toMatch(/^5\.7\.0 unauthenticated: Your token was revoked/);
    }
    await expectNothingDelivered();
  });

  it('stops a token revoked between RCPT and DATA: the message is refused with 530, nothing delivered', async () => {
    const r = await loggedIn();
    expect((await r.command('MAIL FROM:<ic@corp.example>')).code).toBe(250);
    expect((await r.command('RCPT TO:<sec@corp.example>')).code).toBe(250);
    expect(await relay.ctx.store.tokens.revoke((await relay.ctx.store.tokens.verify(ic))!.id, new Date())).toBe(true);
    const [go, done] = await r.data(message(['From: ic@corp.example', 'To: sec@corp.example', 'Subject: after revocation']));
    expect(go.code).toBe(354);
    expect(done!.code).toBe(530);
    expect(done!.text).toMatch(/^5\.7\.0 unauthenticated: Your token was revoked after you logged in;/);
    await expectNothingDelivered();
    expect((await refusalsAudited(1)).map((e) => [e.data['stage'], e.data['code']])).toEqual([['data', 'unauthenticated']]);
  });

  it('records a username that is not an address only as a hash (it may be a pasted token)', async () => {
    const r = await raw();
    await r.startTls(tls.cert);
    expect((await r.authPlain(ic, 'whatever')).code).toBe(535);
    await listener.summarizeUnauthenticated();
    const [event] = await auditOf('smtp.unauthenticated_summary');
    expect(event).toMatchObject({ actor: null, data: { authFailures: { reasons: { bad_username: 1 } }, usernames: [{ usernameSha256: expect.stringMatching(/^[0-9a-f]{16}$/), authFailures: 1 }] } });
    expect(JSON.stringify(await relay.ctx.store.sql.all('SELECT * FROM audit_events'))).not.toContain(ic);
  });

  it('closes a connection after 3 failed logins, and backs an address off (454) across connections', async () => {
    const wrong = 'ir_0123456789abcdef_' + 'B'.repeat(43);
    const attempt = async (r: RawSmtp, pass: string) => r.authPlain('ic@corp.example', pass);
    for (let connection = 0; connection < 2; connection++) {
      const r = await raw();
      await r.startTls(tls.cert);
      expect((await attempt(r, wrong)).code).toBe(535);
      expect((await attempt(r, wrong)).code).toBe(535);
      expect(await attempt(r, wrong)).toEqual({ code: 421, text: '4.7.0 Too many failed logins on this connection; closing it.', lines: expect.any(Array) });
      await r.closed;
    }
    // Six failures for ic@: the right token is now refused without being checked.
    const r = await raw();
    await r.startTls(tls.cert);
    const blocked = await attempt(r, ic);
    expect(blocked.code).toBe(454);
    expect(blocked.text).toMatch(/^4\.7\.0 rate_limited: Too many failed logins for this address or from this network; try again in 2 s\.$/);
    relay.clock.advance(2_001);
    expect((await attempt(r, ic)).code).toBe(235);
    expect(await authFailuresCounted()).toEqual({ unknown_token: 6, backoff: 1 });
  });

  it('backs an IP off after many failures across different addresses', async () => {
    let failures = 0;
    while (failures < 21) {
      const r = await raw();
      await r.startTls(tls.cert);
      for (let i = 0; i < 2 && failures < 21; i++, failures++) {
        expect((await r.authPlain(`guess${failures}@corp.example`, 'nope')).code).toBe(535);
      }
      r.close();
    }
    const r = await raw();
    await r.startTls(tls.cert);
    expect((await r.authPlain('ic@corp.example', ic)).code).toBe(454);
  });
});

describe('incident resolution', () => {
  beforeEach(async () => {
    await declare('misty-heron');
    await addMember('misty-heron', 'sec@corp.example', 'security');
  });

  async function submit(headers: string[]): Promise<{ code: number; text: string }> {
    const r = await loggedIn();
    await r.command('MAIL FROM:<ic@corp.example>');
    expect((await r.command('RCPT TO:<sec@corp.example>')).code).toBe(250);
    const [, done] = await r.data(message(['From: ic@corp.example', 'To: sec@corp.example', ...headers]));
    r.close();
    return done!;
  }

  it('refuses as ambiguous when the sender is on several open incidents and names none', async () => {
    const reply = await submit(['Subject: status update']);
    const open = (await relay.ctx.store.incidents.openFor('ic@corp.example')).map((i) => i.codename);
    expect([...open].sort()).toEqual(['amber-otter', 'misty-heron']);
    expect(reply).toMatchObject({
      code: 550,
      text: `5.7.1 ambiguous_incident: You are on 2 open incidents (${open.join(', ')}); the relay cannot tell which one this message is for. Name it in an X-Incident: <codename> header, or put its codename in the subject.`,
    });
    await expectNothingDelivered();
  });

  it('takes the X-Incident header, else a codename in the subject', async () => {
    expect((await submit(['X-Incident: misty-heron', 'Subject: status'])).code).toBe(250);
    // A second later, so the stored emails sort by when they were accepted.
    relay.clock.advance(1_000);
    expect((await submit(['Subject: Re: [amber-otter] status'])).code).toBe(250);
    const ids = await relay.ctx.store.sql.all<{ incident_id: string }>('SELECT incident_id FROM emails ORDER BY created_at');
    const codenames: string[] = [];
    for (const r of ids) codenames.push((await relay.ctx.store.incidents.byId(r.incident_id))!.codename);
    expect(codenames).toEqual(['misty-heron', 'amber-otter']);
    await worker.drain();
    const mails = await upstream.waitFor(2);
    const second = await simpleParser(mails[1]!.raw);
    expect(second.subject).toBe('Attorney Work Project');
    expect(second.text).toMatch(/^Topic: Re: \[amber-otter\] status\n/);
    expect(mails.map((m) => m.raw.toString('latin1')).join('')).not.toMatch(/X-Incident/i);
  });

  it('answers an incident the sender is not on exactly like an unknown one', async () => {
    const other = await relay.tokenFor('other@corp.example');
    await declare('sunny-walrus', other);
    const notMine = await submit(['X-Incident: sunny-walrus']);
    const unknown = await submit(['X-Incident: no-such-thing']);
    expect(notMine.code).toBe(550);
    expect(notMine.text).toBe('5.7.1 not_found: No incident "sunny-walrus" that you are on the roster of.');
    expect(unknown.text).toBe('5.7.1 not_found: No incident "no-such-thing" that you are on the roster of.');
    await expectNothingDelivered();
  });

  it('refuses two different X-Incident headers, and a closed incident', async () => {
    const two = await submit(['X-Incident: misty-heron', 'X-Incident: amber-otter']);
    expect(two.code).toBe(550);
    expect(two.text).toMatch(/^5\.7\.1 ambiguous_incident: The message names 2 incidents in X-Incident headers/);
    expect((await relay.request.patch('/v1/incidents/misty-heron').set(auth(ic)).send({ status: 'closed' })).status).toBe(200);
    const closed = await submit(['X-Incident: misty-heron']);
    expect(closed.code).toBe(550);
    expect(closed.text).toMatch(/^5\.7\.1 incident_closed: /);
    await expectNothingDelivered();
  });
});

describe('size, failures and limits', () => {
  it('announces SIZE and refuses a larger message with 552, at MAIL and at the end of DATA', async () => {
    relay.ctx.config.maxMessageBytes = 4096;
    await listen();
    const r = await loggedIn();
    const ehlo = await r.command('EHLO client.test');
    expect(ehlo.lines.map((l) => l.slice(4))).toContain('SIZE 4096');
    const early = await r.command('MAIL FROM:<ic@corp.example> SIZE=10000');
    expect(early.code).toBe(552);
    expect((await r.command('MAIL FROM:<ic@corp.example>')).code).toBe(250);
    expect((await r.command('RCPT TO:<sec@corp.example>')).code).toBe(250);
    const [, done] = await r.data(message(['From: ic@corp.example', 'To: sec@corp.example'], 'x'.repeat(70).concat('\r\n').repeat(100)));
    expect(done).toEqual({ code: 552, text: '5.3.4 payload_too_large: The message is larger than this relay accepts (4096 bytes, RELAY_MAX_MESSAGE_BYTES); send smaller attachments.', lines: expect.any(Array) });
    const err = await refusal(client('ic@corp.example', ic).sendMail({ from: 'ic@corp.example', to: 'sec@corp.example', text: 'y'.repeat(10_000) }));
    expect(err.responseCode).toBe(552);
    await expectNothingDelivered();
  });

  it('answers a store failure with 451 4.3.0 and no internals, so the client retries', async () => {
    // The database refuses the write the way a failing disk would, with a message that names internals.
    await failInserts(true);
    const err = await refusal(client('ic@corp.example', ic).sendMail({ from: 'ic@corp.example', to: 'sec@corp.example', text: 'x' }));
    expect(err.responseCode).toBe(451);
    expect(err.response).toBe('451 4.3.0 internal: Internal error; the message was not accepted. Try again later, and tell an admin if it persists.');
    await expectNothingDelivered();
    await failInserts(false);
    const info = await client('ic@corp.example', ic).sendMail({ from: 'ic@corp.example', to: 'sec@corp.example', text: 'x' });
    expect(info.response).toMatch(/^250 /);
  });

  it('caps concurrent connections with 421', async () => {
    await listen({ maxClients: 1 });
    const first = await raw();
    expect(first.greeting.code).toBe(220);
    const second = await raw();
    expect(second.greeting.code).toBe(421);
    await second.closed;
    // Counted for the unauthenticated summary, not audited on its own.
    await eventually(async () => ((await relay.ctx.metrics.smtpUnauthenticated.get()).values.find((v) => v.labels['reason'] === 'before_greeting')?.value === 1 ? true : undefined));
    expect(await auditOf('smtp.session')).toEqual([]);
  });

  it('closes idle clients, and clients that outstay the session limit however busy they look', async () => {
    await listen({ socketTimeoutMs: 300 });
    const idle = await raw();
    const timeout = await idle.read();
    expect(timeout.code).toBe(421);
    await idle.closed;

    await listen({ maxSessionMs: 1_500 });
    // Logged in, so the NOOPs do not count against smtp-server's limit on unauthenticated commands.
    const chatty = await loggedIn();
    let last = await chatty.command('NOOP');
    const started = Date.now();
    while (last.code === 250 && Date.now() - started < 5_000) {
      await new Promise((resolve) => setTimeout(resolve, 100));
      last = await chatty.command('NOOP');
    }
    expect(last).toMatchObject({ code: 421, text: '4.4.2 Session time limit reached; reconnect to continue' });
    await chatty.closed;
  });
});
