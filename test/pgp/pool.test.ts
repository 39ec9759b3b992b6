/**
 * The encryption worker pool: the same PGP/MIME as the in-thread path, read
 * back by the real gpg; and a worker that crashes, hangs or is killed refuses
 * its messages (never plaintext) and the pool carries on with a new worker.
 */
import { mkdtemp, rm } from 'node:fs/promises';
import os from 'node:os';
import path from 'node:path';
import { simpleParser } from 'mailparser';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { RelayError } from '../../src/errors.js';
import { composeEncryptedEnvelope, composeProtectedPart, type MessageContent } from '../../src/mime/compose.js';
import { armorMessage } from '../../src/pgp/armor.js';
import { STREAM_THRESHOLD_BYTES, signAndEncrypt, type SealedParts } from '../../src/pgp/encrypt.js';
import { composeEncrypted, inThreadEncryptor } from '../../src/pgp/pgp-mime.js';
import { parsePublicKey, type ParsedPublicKey } from '../../src/pgp/keys.js';
import { EncryptionPool } from '../../src/pgp/pool.js';
import { loadOrCreateRelayKey, type RelayKey } from '../../src/pgp/relay-key.js';
import { createGpgHome, type GeneratedKey, type GpgHome } from '../helpers/gpg.js';
import { queuedMessage } from '../helpers/pgp-mime.js';
import { createTestRelay } from '../helpers/relay.js';

let gpg: GpgHome;
let tmp: string;
let relay: RelayKey;
let alice: GeneratedKey;
let bob: GeneratedKey;
let aliceKey: ParsedPublicKey;
let bobKey: ParsedPublicKey;
let pool: EncryptionPool;
const lost: string[] = [];

beforeAll(async () => {
  tmp = await mkdtemp(path.join(os.tmpdir(), 'relay-pool-'));
  gpg = await createGpgHome();
  [alice, bob, { key: relay }] = await Promise.all([
    gpg.generateKey('alice@partner.test', 'Alice'),
    gpg.generateKey('bob@corp.example', 'Bob', { algo: 'rsa2048' }),
    loadOrCreateRelayKey({ dataDir: tmp, userId: { name: 'incident-relay', email: 'relay@corp.example' } }),
  ]);
  aliceKey = await parsePublicKey(alice.armoredPublic);
  bobKey = await parsePublicKey(bob.armoredPublic);
  await gpg.importKey(relay.publicArmored);
  pool = new EncryptionPool(relay.privateKey, { size: 2, onWorkerLost: (reason) => lost.push(reason) });
}, 120_000);

afterAll(async () => {
  await pool?.close();
  await gpg?.cleanup();
  if (tmp) await rm(tmp, { recursive: true, force: true });
});

function content(text: string): MessageContent {
  return {
    messageId: '<0b7f6c1e-5d1a-4c57-9c39-7b0e1a2f3c4d@corp.example>',
    date: new Date(),
    from: { name: 'Bob', address: 'bob@corp.example' },
    to: [{ name: 'Alice', address: 'alice@partner.test' }],
    cc: [],
    topic: 'Bucket exposure',
    text,
    attachments: [{ filename: 'timeline.txt', contentType: 'text/plain', content: Buffer.from('09:00 first alert\n') }],
  };
}

/** Copy `i` of a sealed message, armored, as text. */
const text = (sealed: SealedParts, i = 0): string => armorMessage([sealed.keyPackets[i]!, sealed.shared]).toString('latin1');

async function armoredPart(message: Buffer): Promise<string> {
  const parsed = await simpleParser(message);
  return parsed.attachments.find((a) => a.filename === 'encrypted.asc')!.content.toString('utf8');
}

describe('EncryptionPool', () => {
  it('signs and encrypts in a worker: gpg decrypts and verifies the relay signature', async () => {
    const payload = Buffer.from('Content-Type: text/plain\r\n\r\nTopic: status\r\nall hands\r\n');
    const expected = Buffer.from(payload); // the pool may take the payload's memory
    const armored = text(await pool.seal(payload, [[aliceKey.key, bobKey.key]], new Date()));
    const result = await gpg.decrypt(armored);
    expect(Buffer.compare(result.plaintext, expected)).toBe(0);
    expect(result.goodSignatureFrom).toBe(relay.fingerprint);
    expect(result.status).toMatch(/^\[GNUPG:\] GOODMDC/m);
    expect(await gpg.listPackets(armored)).not.toMatch(/aead/i);
    const ids = await gpg.recipientKeyIds(armored);
    expect(ids.sort()).toEqual([alice.encryptionSubkeyFingerprint!.slice(-16), bob.encryptionSubkeyFingerprint!.slice(-16)].sort());
  });

  it('composes the same PGP/MIME as the in-thread path, and gpg reads the protected part', async () => {
    const c = content('Privileged: see attached timeline.');
    const viaPool = await composeEncrypted(c, [aliceKey.key], pool);
    const inThread = await composeEncrypted(c, [aliceKey.key], inThreadEncryptor(relay.privateKey));
    // Equal up to the random MIME boundaries and the (randomised) OpenPGP message itself.
    const shape = (m: Buffer): string =>
      m
        .toString('latin1')
        .replace(/=_ir_[0-9a-f]+/g, 'BOUNDARY')
        .replace(/-----BEGIN PGP MESSAGE-----[\s\S]*?-----END PGP MESSAGE-----/, 'ARMOR');
    expect(shape(viaPool)).toBe(shape(inThread));
    const result = await gpg.decrypt(await armoredPart(viaPool));
    expect(result.goodSignatureFrom).toBe(relay.fingerprint);
    const inner = result.plaintext.toString('utf8');
    expect(inner).toContain('protected-headers="v1"');
    expect(inner).toContain('Subject: Attorney Work Project');
    expect(inner).toContain('Topic: Bucket exposure');
    // Same protected part as composeProtectedPart builds, boundaries aside.
    expect(inner.replace(/=_ir_[0-9a-f]+/g, 'B')).toBe(composeProtectedPart(c).toString('utf8').replace(/=_ir_[0-9a-f]+/g, 'B'));
  });

  it('spreads concurrent work over both workers and reuses cached keys', async () => {
    const texts = Array.from({ length: 12 }, (_, i) => `message ${i}`);
    const results = await Promise.all(texts.map((t, i) => pool.seal(Buffer.from(t), [i % 2 ? [aliceKey.key] : [aliceKey.key, bobKey.key]], new Date())));
    expect(pool.threads()).toHaveLength(2);
    const plain = await Promise.all(results.map((a) => gpg.decrypt(text(a))));
    expect(plain.map((p) => p.plaintext.toString())).toEqual(texts);
    expect(plain.every((p) => p.goodSignatureFrom === relay.fingerprint)).toBe(true);
  });

  it('moves a large shared payload back whole and retires the worker that made it; gpg reads the PGP/MIME', async () => {
    const recycling = new EncryptionPool(relay.privateKey, { size: 1, recycleAfterBytes: 1024 * 1024 });
    try {
      await recycling.seal(Buffer.from('warm'), [[aliceKey.key]], new Date());
      const before = recycling.threads()[0];
      const c = content('big');
      c.attachments = [{ filename: 'image.bin', contentType: 'application/octet-stream', content: Buffer.alloc(1_500_000, 7) }];
      const payload = composeProtectedPart(c);
      const size = payload.length;
      const sealed = await recycling.seal(payload, [[aliceKey.key]], c.date);
      // One SEIPD packet (tag 18, new format, partial lengths since the payload was streamed) a little larger than the payload.
      expect(sealed.shared[0]).toBe(0xc0 | 18);
      expect(sealed.shared.length).toBeGreaterThan(size);
      expect(sealed.shared.length).toBeLessThan(size + 4096);
      expect(recycling.threads()[0]).not.toBe(before);
      expect((await gpg.decrypt(text(sealed))).plaintext.length).toBe(size);
      const message = await composeEncrypted(c, [aliceKey.key], recycling);
      const result = await gpg.decrypt(await armoredPart(message));
      expect(result.goodSignatureFrom).toBe(relay.fingerprint);
      const inner = await simpleParser(result.plaintext);
      expect(inner.attachments[0]!.content.equals(Buffer.alloc(1_500_000, 7))).toBe(true);
      // The fresh worker still works.
      expect((await gpg.decrypt(text(await recycling.seal(Buffer.from('after'), [[bobKey.key]], new Date())))).plaintext.toString()).toBe('after');
    } finally {
      await recycling.close();
    }
  });

  it('streams large payloads through openpgp in this thread too; gpg reads them byte-exact', async () => {
    const payload = Buffer.alloc(STREAM_THRESHOLD_BYTES + 12_345, 'incident ');
    const armored = await signAndEncrypt(payload, { encryptionKeys: [aliceKey.key], signingKey: relay.privateKey, date: new Date() });
    const result = await gpg.decrypt(armored);
    expect(result.plaintext.equals(payload)).toBe(true);
    expect(result.goodSignatureFrom).toBe(relay.fingerprint);
    expect(await gpg.listPackets(armored)).not.toMatch(/aead/i);
  });

  it('wraps an armor given as bytes exactly as the same armor given as text', async () => {
    const armored = text(await pool.seal(Buffer.from('bytes or text'), [[aliceKey.key]], new Date()));
    const c = content('x');
    const shape = (m: Buffer): string => m.toString('latin1').replace(/=_ir_[0-9a-f]+/g, 'B');
    const fromText = shape(composeEncryptedEnvelope(c, armored, relay));
    expect(shape(composeEncryptedEnvelope(c, Buffer.from(armored), relay))).toBe(fromText); // CRLF bytes, used as they are
    expect(shape(composeEncryptedEnvelope(c, Buffer.from(armored.replace(/\r\n/g, '\n')), relay))).toBe(fromText); // LF bytes, normalised
    expect(() => composeEncryptedEnvelope(c, Buffer.from('-----BEGIN PGP MESSAGE-----\r\n\tx\r\n-----END PGP MESSAGE-----'), relay)).toThrow(/ASCII-armored/);
    expect(() => composeEncryptedEnvelope(c, Buffer.from('plaintext, not an armor'), relay)).toThrow(/ASCII-armored/);
  });

  it('refuses an empty key list, or a copy without keys, instead of producing plaintext', async () => {
    await expect(pool.seal(Buffer.from('x'), [], new Date())).rejects.toThrow(/no encryption keys/);
    await expect(pool.seal(Buffer.from('x'), [[]], new Date())).rejects.toThrow(/no encryption keys/);
    await expect(pool.seal(Buffer.from('x'), [[aliceKey.key], []], new Date())).rejects.toThrow(/no encryption keys/);
  });

  it('rejects the messages of a killed worker as unavailable, then recovers', async () => {
    const single = new EncryptionPool(relay.privateKey, { size: 1 });
    try {
      await single.seal(Buffer.from('warm'), [[aliceKey.key]], new Date());
      const inFlight = single.seal(Buffer.from('x'.repeat(200_000)), [[aliceKey.key, bobKey.key]], new Date());
      await single.threads()[0]!.terminate();
      const err = await inFlight.then(
        () => undefined,
        (e: unknown) => e,
      );
      expect(err).toBeInstanceOf(RelayError);
      expect((err as RelayError).code).toBe('unavailable');
      // A new worker (which has no cached keys) takes the next message.
      const sealed = await single.seal(Buffer.from('after'), [[aliceKey.key]], new Date());
      expect((await gpg.decrypt(text(sealed))).plaintext.toString()).toBe('after');
    } finally {
      await single.close();
    }
  });

  it('survives a worker that crashes with an uncaught error', async () => {
    const before = lost.length;
    const victim = pool.threads()[0]!;
    const exited = new Promise((resolve) => victim.once('exit', resolve));
    victim.postMessage({ garbage: true }); // no `keys`: the worker throws outside any try
    await exited;
    expect(lost.slice(before).join('\n')).toMatch(/crashed/);
    const results = await Promise.all([1, 2, 3, 4].map((n) => pool.seal(Buffer.from(`n${n}`), [[bobKey.key]], new Date())));
    expect((await gpg.decrypt(text(results[3]!))).plaintext.toString()).toBe('n4');
    expect(pool.threads()).toHaveLength(2);
  });

  it('refuses a task that outlives its timeout and kills the stuck worker', async () => {
    const hasty = new EncryptionPool(relay.privateKey, { size: 1, taskTimeoutMs: 1 });
    try {
      await expect(hasty.seal(Buffer.from('slow'), [[aliceKey.key]], new Date())).rejects.toMatchObject({ code: 'unavailable' });
    } finally {
      await hasty.close();
    }
  });

  it('refuses work after close', async () => {
    const closing = new EncryptionPool(relay.privateKey, { size: 1 });
    await closing.close();
    await expect(closing.seal(Buffer.from('late'), [[aliceKey.key]], new Date())).rejects.toMatchObject({ code: 'unavailable' });
  });
});

describe('the email pipeline over the pool', () => {
  it('takes a 6 MB attachment over HTTP and queues it encrypted (large-message path end to end)', async () => {
    const t = await createTestRelay({}, { encryptionPool: true });
    const ic = await t.tokenFor('ic@corp.example');
    const auth = { Authorization: `Bearer ${ic}` };
    const { body } = await t.request.post('/v1/incidents').set(auth).send({ codename: 'amber-otter' });
    // Rule security-team: the incident's mail goes only once it has a security member.
    await t.request.put(`/v1/incidents/${body.codename}/roster/sec@corp.example`).set(auth).send({ name: 'Sec', role: 'security' });
    await t.request.put(`/v1/incidents/${body.codename}/roster/alice@partner.test`).set(auth).send({ name: 'Alice', role: 'external', publicKey: alice.armoredPublic });
    const image = Buffer.alloc(6_000_000, 'disk image ');
    // Regression: the base64 check was a grouped regex that overflowed V8's stack from ~4 MB on (HTTP 500).
    const res = await t.request
      .post(`/v1/incidents/${body.codename}/emails`)
      .set(auth)
      .send({ to: ['alice@partner.test'], text: 'image attached', attachments: [{ filename: 'image.bin', contentType: 'application/octet-stream', content: image.toString('base64') }] });
    expect(res.status).toBe(202);
    expect(res.body.encrypted).toBe(true);
    await gpg.importKey(t.ctx.relayKey.publicArmored); // the test relays' shared key, not this file's
    const result = await gpg.decrypt(await armoredPart(await queuedMessage(t.ctx.store)));
    expect(result.goodSignatureFrom).toBe(t.ctx.relayKey.fingerprint);
    const inner = await simpleParser(result.plaintext);
    expect(inner.attachments[0]!.content.equals(image)).toBe(true);
  });
});

describe('the email pipeline over a failing pool', () => {
  it('answers 503 and queues nothing when encryption fails in the pool; plain mail is unaffected', async () => {
    const t = await createTestRelay();
    const ic = await t.tokenFor('ic@corp.example');
    const auth = { Authorization: `Bearer ${ic}` };
    const { body } = await t.request.post('/v1/incidents').set(auth).send({ codename: 'amber-otter' });
    await t.request.put(`/v1/incidents/${body.codename}/roster/sec@corp.example`).set(auth).send({ name: 'Sec', role: 'security' });
    await t.request.put(`/v1/incidents/${body.codename}/roster/alice@partner.test`).set(auth).send({ name: 'Alice', role: 'external', publicKey: alice.armoredPublic });
    // Every task times out: the pool kills its worker and refuses.
    const broken = new EncryptionPool(t.ctx.relayKey.privateKey, { size: 1, taskTimeoutMs: 1 });
    t.ctx.encryptor = broken;
    try {
      const res = await t.request.post(`/v1/incidents/${body.codename}/emails`).set(auth).send({ to: ['alice@partner.test'], text: 'secret' });
      expect(res.status).toBe(503);
      expect(res.body.error.code).toBe('unavailable');
      expect(res.headers['retry-after']).toBe('1');
      expect(await t.ctx.store.sql.get('SELECT COUNT(*) AS n FROM deliveries')).toEqual({ n: 0 });
      const plain = await t.request.post(`/v1/incidents/${body.codename}/emails`).set(auth).send({ to: ['sec@corp.example'], text: 'internal' });
      expect(plain.status).toBe(202);
      // With a working pool the same message goes through, encrypted.
      t.ctx.encryptor = pool;
      const ok = await t.request.post(`/v1/incidents/${body.codename}/emails`).set(auth).send({ to: ['alice@partner.test'], text: 'secret' });
      expect(ok.status).toBe(202);
      expect(ok.body.encrypted).toBe(true);
    } finally {
      await broken.close();
    }
  });
});
