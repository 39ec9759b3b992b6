/**
 * A client's own Message-ID must never make an external thread look internal
 * (review of the accept path, item 1). A mail client that resends or
 * "redirects" a message it received keeps that message's Message-ID; the
 * relay keeps a client's id as an alias of its own email, so such a resend
 * once gave the relay's Message-ID of an external thread a second, internal
 * chain, and a later reply was judged by that one and went out in clear.
 *
 * End to end on both backends: the real app, the real SMTP listener (nodemailer
 * over STARTTLS), a real delivery worker and smtp-server upstream. And the
 * chain lookup itself over aliases stored before the fix, which stay in
 * existing databases.
 */
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import nodemailer, { type Transporter } from 'nodemailer';
import type SMTPTransport from 'nodemailer/lib/smtp-transport';
import { afterAll, afterEach, beforeAll, beforeEach, describe, expect, it } from 'vitest';
import { createSmtpChannel } from '../../src/channels/email/smtp.js';
import { chainFacts, internalMatcher } from '../../src/services/emails.js';
import { startSmtpListener, type SmtpListener } from '../../src/smtp/listener.js';
import { loadOrCreateTlsCertificate, type TlsMaterial } from '../../src/smtp/tls.js';
import type { Store } from '../../src/store/index.js';
import { DeliveryWorker } from '../../src/workers/delivery.js';
import { createGpgHome, type GeneratedKey, type GpgHome } from '../helpers/gpg.js';
import { BACKENDS, createTestRelay, openTestStore, type TestRelay } from '../helpers/relay.js';
import { startUpstream, type Upstream } from '../helpers/upstream.js';

const auth = (token: string) => ({ Authorization: `Bearer ${token}` });

let keyring: GpgHome;
let counsel: GeneratedKey;
let icKey: GeneratedKey;
let tls: TlsMaterial;
let tlsDir: string;

beforeAll(async () => {
  keyring = await createGpgHome();
  [counsel, icKey] = await Promise.all([keyring.generateKey('counsel@lawfirm.example', 'Outside Counsel'), keyring.generateKey('ic@corp.example', 'Incident Commander')]);
  tlsDir = fs.mkdtempSync(path.join(os.tmpdir(), 'relay-alias-tls-'));
  tls = await loadOrCreateTlsCertificate({ dataDir: tlsDir });
}, 120_000);

afterAll(async () => {
  await keyring.cleanup();
  fs.rmSync(tlsDir, { recursive: true, force: true });
});

describe.each(BACKENDS)('a client Message-ID equal to a relay Message-ID (%s)', (backend) => {
  let upstream: Upstream;
  let relay: TestRelay;
  let worker: DeliveryWorker;
  let channel: ReturnType<typeof createSmtpChannel>;
  let listener: SmtpListener;
  let ic: string;
  const transports: Transporter[] = [];
  const codename = 'amber-otter';

  beforeEach(async () => {
    upstream = await startUpstream();
    relay = await createTestRelay({ smtpUpstream: upstream.url }, { backend });
    channel = createSmtpChannel(upstream.url);
    worker = new DeliveryWorker(relay.ctx, { channels: { email: channel }, baseBackoffMs: 10, random: () => 0 });
    ic = await relay.tokenFor('ic@corp.example');
    expect((await relay.request.post('/v1/incidents').set(auth(ic)).send({ codename })).status).toBe(201);
    expect((await relay.request.put('/v1/keys/ic@corp.example').set(auth(ic)).send({ publicKey: icKey.armoredPublic })).status).toBe(200);
    for (const [email, role, publicKey] of [
      ['sec@corp.example', 'security', undefined],
      ['counsel@lawfirm.example', 'external', counsel.armoredPublic],
    ] as const) {
      const res = await relay.request.put(`/v1/incidents/${codename}/roster/${email}`).set(auth(ic)).send({ name: email.split('@')[0], role, ...(publicKey ? { publicKey } : {}) });
      expect(res.status).toBe(201);
    }
    listener = await startSmtpListener(relay.ctx, { host: '127.0.0.1', port: 0, tls });
  });

  afterEach(async () => {
    for (const t of transports.splice(0)) t.close();
    await listener.close();
    await worker.stop();
    channel.close();
    await upstream.stop();
    await relay.ctx.store.close();
  });

  function client(): Transporter<SMTPTransport.SentMessageInfo> {
    const transport = nodemailer.createTransport({
      host: '127.0.0.1',
      port: listener.port,
      secure: false,
      requireTLS: true,
      tls: { ca: tls.cert, servername: 'localhost' },
      auth: { user: 'ic@corp.example', pass: ic },
    } as SMTPTransport.Options);
    transports.push(transport);
    return transport;
  }

  it('a resend through SMTP that keeps the relay\'s Message-ID does not make a reply to the external thread plain', async () => {
    // The external thread: ic writes to outside counsel, encrypted.
    const first = await relay.request.post(`/v1/incidents/${codename}/emails`).set(auth(ic)).send({ to: ['counsel@lawfirm.example'], text: 'privileged' });
    expect(first.status).toBe(202);
    expect(first.body.encrypted).toBe(true);
    const relayId = first.body.messageId as string;

    // ic's mail client resends that message, inside the company, under the relay's Message-ID.
    const resent = await client().sendMail({ from: 'ic@corp.example', to: 'sec@corp.example', text: 'fyi', messageId: relayId });
    expect(resent.response).toMatch(/^250 /);
    expect(resent.response).not.toMatch(/encrypted/);

    // A reply to the external thread, to sec (no key): it must be encrypted, so it is refused.
    const preview = await relay.request.post(`/v1/incidents/${codename}/emails?dryRun=true`).set(auth(ic)).send({ to: ['sec@corp.example'], text: 'reply', inReplyTo: relayId, references: [relayId] });
    expect(preview.status).toBe(200);
    expect(preview.body).toMatchObject({ outcome: 'refuse', encrypted: true, encryptReason: 'external-chain', missingKeys: ['sec@corp.example'] });
    const overHttp = await relay.request.post(`/v1/incidents/${codename}/emails`).set(auth(ic)).send({ to: ['sec@corp.example'], text: 'reply-marker-7', inReplyTo: relayId, references: [relayId] });
    expect(overHttp.status).toBe(422);
    expect(overHttp.body.error.code).toBe('missing_public_key');
    let failure: { responseCode?: number; response?: string } | undefined;
    await client()
      .sendMail({ from: 'ic@corp.example', to: 'sec@corp.example', text: '> privileged\nreply-marker-7', inReplyTo: relayId, references: [relayId] })
      .catch((err: { responseCode?: number; response?: string }) => (failure = err));
    expect(failure?.responseCode).toBe(550);
    expect(failure?.response).toMatch(/^550 5\.7\.1 missing_public_key: This message must be encrypted \(external-chain\) but there is no public key for sec@corp\.example\./);

    // The client's id was not kept as an alias: it is the relay's id of another email.
    const accepted = (await relay.ctx.store.sql.all<{ data: string }>("SELECT data FROM audit_events WHERE type = 'email.decision' AND outcome = 'ok' ORDER BY seq")).map((r) => JSON.parse(r.data) as Record<string, unknown>);
    expect(accepted.map((d) => [d['via'], d['clientMessageIdKept'] ?? null])).toEqual([
      ['http', null],
      ['smtp', false],
    ]);
    // The relay's Message-ID still names the one email of the external thread.
    const found = await relay.request.get(`/v1/incidents/${codename}/emails`).query({ messageId: relayId }).set(auth(ic));
    expect(found.status).toBe(200);
    expect(found.body.emails.map((e: { id: string }) => e.id)).toEqual([first.body.id]);

    // Only the first two messages went anywhere; the reply reached no one.
    await worker.drain();
    const mails = await upstream.waitFor(2);
    expect(mails.map((m) => m.to).sort()).toEqual([['counsel@lawfirm.example'], ['sec@corp.example']]);
    expect(mails.some((m) => m.raw.toString('latin1').includes('reply-marker-7'))).toBe(false);
  });
});

describe.each(BACKENDS)('chainFacts over aliases stored before the fix (%s)', (backend) => {
  let store: Store;
  const T0 = new Date('2026-01-01T00:00:00Z');
  const isInternal = internalMatcher(['corp.example']);

  beforeEach(async () => {
    store = await openTestStore(backend, () => T0);
    await store.transaction(async (tx) => {
      await tx.incidents.create({ id: 'i1', codename: 'amber-otter', createdBy: 'ic@corp.example', at: T0 });
      await tx.incidents.create({ id: 'i2', codename: 'misty-heron', createdBy: 'ic@corp.example', at: T0 });
      const email = { sender: 'ic@corp.example', encrypted: false, recipients: ['sec@corp.example'], createdAt: T0.toISOString() };
      await tx.outbox.insertEmail({ ...email, id: 'external', incidentId: 'i1', messageId: '<r1@corp.example>', encrypted: true, chainExternal: true });
      await tx.outbox.insertEmail({ ...email, id: 'internal', incidentId: 'i1', messageId: '<r2@corp.example>', chainExternal: false });
      await tx.outbox.insertEmail({ ...email, id: 'other', incidentId: 'i2', messageId: '<r3@corp.example>', chainExternal: false });
    });
    // What addAlias stored before it refused a relay Message-ID: a second, internal email under the external one's id.
    await store.sql.run('INSERT INTO message_aliases (alias, email_id) VALUES (?, ?)', ['<r1@corp.example>', 'internal']);
    await store.sql.run('INSERT INTO message_aliases (alias, email_id) VALUES (?, ?)', ['<r2@corp.example>', 'other']);
  });

  afterEach(async () => {
    await store.close();
  });

  it('counts every email a reference names: one external makes the chain external, whichever row comes last', async () => {
    const facts = await chainFacts(store, ['<r1@CORP.example>'], isInternal);
    expect(facts.external).toBe(true);
    expect(facts.reasons).toEqual(['external-chain']);
    expect([...facts.known]).toEqual([['<r1@corp.example>', 'i1']]);
  });

  it('keeps a reference two incidents share out of the clear headers (no incident in `known`)', async () => {
    const facts = await chainFacts(store, ['<r2@corp.example>'], isInternal);
    expect(facts.external).toBe(false);
    expect([...facts.known]).toEqual([]);
  });

  it('addAlias now refuses a relay Message-ID (any case of its domain) and keeps a fresh one once', async () => {
    const kept = await store.transaction(async (tx) => [
      await tx.outbox.addAlias('<r3@CORP.EXAMPLE>', 'internal'),
      await tx.outbox.addAlias('<client-1@corp.example>', 'internal'),
      await tx.outbox.addAlias('<client-1@corp.example>', 'other'),
    ]);
    expect(kept).toEqual([false, true, false]);
    expect((await store.outbox.chainMessages(['<r3@corp.example>'])).map((m) => m.emailId)).toEqual(['other']);
    expect((await store.outbox.chainMessages(['<client-1@corp.example>'])).map((m) => m.emailId)).toEqual(['internal']);
  });
});
