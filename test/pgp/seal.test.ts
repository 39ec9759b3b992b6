/**
 * Encrypt once, wrap the session key per copy, read back by the real gpg:
 * every copy opens with exactly its intended keys and carries the relay's
 * signature; nobody else's key opens it; the copies share one encrypted
 * payload and one session key (what SECURITY.md says that means is shown
 * here too). Run for the in-thread encryptor and the worker pool alike.
 */
import { mkdtemp, rm } from 'node:fs/promises';
import os from 'node:os';
import path from 'node:path';
import { simpleParser } from 'mailparser';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { composeProtectedPart, type MessageContent } from '../../src/mime/compose.js';
import { parsePublicKey } from '../../src/pgp/keys.js';
import { composeSealed, inThreadEncryptor, renderCopy, renderCopyChunks, renderedCopyLength, type Encryptor, type SealedMessage } from '../../src/pgp/pgp-mime.js';
import { sealPayload } from '../../src/pgp/encrypt.js';
import { EncryptionPool } from '../../src/pgp/pool.js';
import { loadOrCreateRelayKey, type RelayKey } from '../../src/pgp/relay-key.js';
import { createGpgHome, type GeneratedKey, type GpgHome } from '../helpers/gpg.js';
import { armoredPartOf, decryptAs, headerLines } from '../helpers/pgp-mime.js';

let keyring: GpgHome;
let tmp: string;
let relay: RelayKey;
let ic: GeneratedKey;
let counsel: GeneratedKey;
let dfir: GeneratedKey;
let insurer: GeneratedKey;
let outsider: GeneratedKey;
let pool: EncryptionPool;

beforeAll(async () => {
  tmp = await mkdtemp(path.join(os.tmpdir(), 'relay-seal-'));
  keyring = await createGpgHome();
  [ic, counsel, dfir, insurer, outsider, { key: relay }] = await Promise.all([
    keyring.generateKey('ic@corp.example', 'Incident Commander'),
    keyring.generateKey('counsel@lawfirm.example', 'Outside Counsel'),
    keyring.generateKey('dfir@forensics.example', 'Forensics Firm'),
    keyring.generateKey('insurer@insurer.example', 'Insurer', { algo: 'rsa2048' }),
    keyring.generateKey('eve@elsewhere.example', 'Never On Any Roster'),
    loadOrCreateRelayKey({ dataDir: tmp, userId: { name: 'incident-relay', email: 'relay@corp.example' } }),
  ]);
  pool = new EncryptionPool(relay.privateKey, { size: 1 });
}, 120_000);

afterAll(async () => {
  await pool?.close();
  await keyring?.cleanup();
  if (tmp) await rm(tmp, { recursive: true, force: true });
});

const keyIdOf = (key: GeneratedKey): string => key.encryptionSubkeyFingerprint!.slice(-16);
const publicKey = async (key: GeneratedKey) => (await parsePublicKey(key.armoredPublic)).key;

// Roster display names are free text: they must stay inside the encryption.
const NAMES = ['Jane Roe of Roe & Partners', 'Märta Undercover', 'Oscar Bluefield'];

function content(): MessageContent {
  return {
    messageId: '<9d2f4a51-7c3e-4b8a-a1d6-0e5f2b7c9a13@corp.example>',
    date: new Date(),
    from: { name: NAMES[2], address: 'ic@corp.example' },
    to: [{ name: NAMES[0], address: 'counsel@lawfirm.example' }],
    cc: [{ name: NAMES[1], address: 'sec@corp.example' }],
    topic: 'Customer data in S3 bucket',
    text: 'Privileged: see attached timeline.',
    attachments: [{ filename: 'timeline.txt', contentType: 'text/plain', content: Buffer.from('09:00 first alert\n') }],
  };
}

describe.each([
  ['in this thread', () => inThreadEncryptor(relay.privateKey)],
  ['in the worker pool', () => pool as Encryptor],
])('composeSealed %s, read back by gpg', (_where, encryptor) => {
  let sealed: SealedMessage;
  let raw: Buffer[];
  let armored: string[];
  let c: MessageContent;

  beforeAll(async () => {
    c = content();
    sealed = await composeSealed(
      c,
      [
        { recipients: ['counsel@lawfirm.example', 'sec@corp.example'], keys: [await publicKey(counsel), await publicKey(ic)] },
        { recipients: ['dfir@forensics.example'], keys: [await publicKey(dfir)] },
        { recipients: ['insurer@insurer.example'], keys: [await publicKey(insurer)] },
      ],
      encryptor(),
    );
    raw = sealed.copies.map((copy) => renderCopy(sealed.envelope, copy.keyPackets, sealed.shared));
    armored = await Promise.all(raw.map(armoredPartOf));
  }, 60_000);

  it('keeps each copy’s envelope recipients, and renders the same bytes whole or a chunk at a time', () => {
    expect(sealed.copies.map((copy) => copy.recipients)).toEqual([['counsel@lawfirm.example', 'sec@corp.example'], ['dfir@forensics.example'], ['insurer@insurer.example']]);
    for (const [i, copy] of sealed.copies.entries()) {
      expect(Buffer.concat([...renderCopyChunks(sealed.envelope, copy.keyPackets, sealed.shared)]).equals(raw[i]!)).toBe(true);
      expect(raw[i]!.length).toBe(renderedCopyLength(sealed.envelope, copy.keyPackets.length, sealed.shared.length));
    }
  });

  it('encrypts each copy to exactly its keys: the visible copy to counsel and the sender, each Bcc copy to that Bcc alone', async () => {
    expect((await keyring.recipientKeyIds(armored[0]!)).sort()).toEqual([keyIdOf(counsel), keyIdOf(ic)].sort());
    expect(await keyring.recipientKeyIds(armored[1]!)).toEqual([keyIdOf(dfir)]);
    expect(await keyring.recipientKeyIds(armored[2]!)).toEqual([keyIdOf(insurer)]);
    for (const a of armored) {
      const packets = await keyring.listPackets(a);
      expect(packets.match(/^:encrypted data packet:/gm)).toHaveLength(1);
      expect(packets).not.toMatch(/aead/i);
    }
  });

  it('lets every intended key decrypt its copy and verify the relay signature (VALIDSIG), all to the same protected part', async () => {
    const readers: Array<[number, GeneratedKey]> = [
      [0, counsel],
      [0, ic],
      [1, dfir],
      [2, insurer],
    ];
    const plaintexts: Buffer[] = [];
    for (const [copy, reader] of readers) {
      const result = await decryptAs(keyring, reader.fingerprint, armored[copy]!, relay.publicArmored);
      expect(result.goodSignatureFrom).toBe(relay.fingerprint);
      expect(result.status).toMatch(/^\[GNUPG:\] GOODMDC/m);
      plaintexts.push(result.plaintext);
    }
    for (const p of plaintexts) expect(p.equals(plaintexts[0]!)).toBe(true);
    // The protected part as composed (boundaries are random, so compare around them).
    const shape = (b: Buffer): string => b.toString('latin1').replace(/=_ir_[0-9a-f]+/g, 'B');
    expect(shape(plaintexts[0]!)).toBe(shape(composeProtectedPart(c)));
    // The display names are there, inside.
    const inner = await simpleParser(plaintexts[0]!);
    expect(inner.from?.value).toEqual([{ name: NAMES[2], address: 'ic@corp.example' }]);
    expect(plaintexts[0]!.toString('latin1')).toContain(`"${NAMES[0]}" <counsel@lawfirm.example>`);
  });

  it('lets no other key decrypt a copy: visible recipients cannot read a Bcc copy, a Bcc cannot read the visible one or another Bcc’s', async () => {
    const refused: Array<[number, GeneratedKey]> = [
      [1, counsel],
      [1, ic],
      [2, counsel],
      [0, dfir],
      [2, dfir],
      [0, insurer],
      [1, insurer],
      [0, outsider],
      [1, outsider],
      [2, outsider],
    ];
    for (const [copy, reader] of refused) {
      await expect(decryptAs(keyring, reader.fingerprint, armored[copy]!), `copy ${copy} as ${reader.fingerprint}`).rejects.toThrow(/could not decrypt/);
    }
  });

  it('shares one encrypted payload and one session key across copies (the limit SECURITY.md states)', async () => {
    for (const [i, copy] of sealed.copies.entries()) {
      const binary = Buffer.from(armored[i]!.split(/\r?\n/).slice(2, -2).join(''), 'base64');
      expect(binary.equals(Buffer.concat([copy.keyPackets, sealed.shared]))).toBe(true);
    }
    // Counsel extracts the session key of the visible copy; with it alone, a Bcc copy opens.
    const home = await createGpgHome();
    try {
      await home.importKey(await keyring.exportSecret(counsel.fingerprint));
      await home.importKey(relay.publicArmored);
      const shown = await home.run(['--status-fd', '2', '--show-session-key', '--decrypt'], armored[0]!);
      const sessionKey = /^\[GNUPG:\] SESSION_KEY (\S+)/m.exec(shown.stderr)?.[1];
      expect(sessionKey).toMatch(/^\d+:[0-9A-F]+$/);
      const bcc = await home.run(['--status-fd', '2', '--override-session-key', sessionKey!, '--decrypt'], armored[1]!);
      expect(bcc.stdout.equals(shown.stdout)).toBe(true);
    } finally {
      await home.cleanup();
    }
  });

  it('writes no display name into any outer header', () => {
    for (const r of raw) {
      const outer = headerLines(r).join('\r\n');
      for (const name of [...NAMES, 'Märta', '=?UTF-8?']) expect(outer).not.toContain(name);
      expect(headerLines(r)).toContain('From: ic@corp.example');
      expect(headerLines(r)).toContain('To: counsel@lawfirm.example');
      expect(headerLines(r)).toContain('Cc: sec@corp.example');
    }
  });
});

describe('sealPayload', () => {
  it('refuses no copies, or a copy without keys, instead of producing plaintext', async () => {
    const key = await publicKey(counsel);
    for (const copies of [[], [[]], [[key], []]]) {
      await expect(sealPayload(Buffer.from('x'), { copies, signingKey: relay.privateKey, date: new Date() })).rejects.toThrow(/no encryption keys/);
    }
  });

  it('seals payloads of every packet length form (one-, two-, five-octet and partial lengths): gpg reads each back', async () => {
    const key = await publicKey(counsel);
    // The SEIPD packet's length header: < 192, < 8384, larger, and streamed (STREAM_THRESHOLD_BYTES on).
    for (const size of [10, 5_000, 100_000, 1_100_000]) {
      const payload = Buffer.alloc(size, 'incident ');
      const sealed = await sealPayload(Buffer.from(payload), { copies: [[key]], signingKey: relay.privateKey, date: new Date() });
      const armored = renderCopy({ head: Buffer.alloc(0), tail: Buffer.alloc(0) }, sealed.keyPackets[0]!, sealed.shared).toString('latin1');
      const result = await decryptAs(keyring, counsel.fingerprint, armored, relay.publicArmored);
      expect(result.plaintext.equals(payload), `payload of ${size} bytes`).toBe(true);
      expect(result.goodSignatureFrom).toBe(relay.fingerprint);
    }
  }, 60_000);

  it('gives a key named twice in one copy one session key packet, and a key in two copies the same packet in each', async () => {
    const a = await publicKey(counsel);
    const b = await publicKey(dfir);
    const sealed = await sealPayload(Buffer.from('x'), { copies: [[a, b, a], [b]], signingKey: relay.privateKey, date: new Date() });
    const second = Buffer.from(sealed.keyPackets[1]!);
    expect(Buffer.from(sealed.keyPackets[0]!).subarray(-second.length).equals(second)).toBe(true);
    expect(sealed.keyPackets[0]!.length).toBeGreaterThan(second.length);
    const armor = (i: number): string => renderCopy({ head: Buffer.alloc(0), tail: Buffer.alloc(0) }, sealed.keyPackets[i]!, sealed.shared).toString('latin1');
    expect((await keyring.recipientKeyIds(armor(0))).sort()).toEqual([keyIdOf(counsel), keyIdOf(dfir)].sort());
    expect(await keyring.recipientKeyIds(armor(1))).toEqual([keyIdOf(dfir)]);
  });
});
