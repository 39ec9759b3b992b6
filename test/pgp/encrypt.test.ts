import { mkdtemp, rm } from 'node:fs/promises';
import os from 'node:os';
import path from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { signAndEncrypt } from '../../src/pgp/encrypt.js';
import { parsePublicKey, type ParsedPublicKey } from '../../src/pgp/keys.js';
import { loadOrCreateRelayKey, type RelayKey } from '../../src/pgp/relay-key.js';
import { createGpgHome, type GeneratedKey, type GpgHome } from '../helpers/gpg.js';

const keyIdOf = (fingerprint: string | undefined): string => (fingerprint ?? '').slice(-16);

describe('signAndEncrypt, read back by gpg', () => {
  let gpg: GpgHome;
  let tmp: string;
  let relay: RelayKey;
  let alice: GeneratedKey;
  let bob: GeneratedKey;
  let aliceKey: ParsedPublicKey;
  let bobKey: ParsedPublicKey;

  beforeAll(async () => {
    tmp = await mkdtemp(path.join(os.tmpdir(), 'relay-enc-'));
    gpg = await createGpgHome();
    [alice, bob, { key: relay }] = await Promise.all([
      gpg.generateKey('alice@example.com', 'Alice'),
      gpg.generateKey('bob@partner.test', 'Bob', { algo: 'rsa2048' }),
      loadOrCreateRelayKey({ dataDir: tmp, userId: { name: 'Incident Relay', email: 'relay@example.com' } }),
    ]);
    aliceKey = await parsePublicKey(alice.armoredPublic);
    bobKey = await parsePublicKey(bob.armoredPublic);
    await gpg.importKey(relay.publicArmored);
  });
  afterAll(async () => {
    await gpg?.cleanup();
    if (tmp) await rm(tmp, { recursive: true, force: true });
  });

  it('gpg decrypts it and verifies the relay signature', async () => {
    const payload = new TextEncoder().encode('Content-Type: text/plain\r\n\r\nTopic: status\r\nall hands\r\n');
    const armored = await signAndEncrypt(payload, {
      encryptionKeys: [aliceKey.key, bobKey.key],
      signingKey: relay.privateKey,
      date: new Date(),
    });
    expect(armored).toMatch(/^-----BEGIN PGP MESSAGE-----/);
    const result = await gpg.decrypt(armored);
    expect(Buffer.compare(result.plaintext, Buffer.from(payload))).toBe(0);
    expect(result.goodSignatureFrom).toBe(relay.fingerprint);
    expect(result.status).toMatch(/^\[GNUPG:\] GOODSIG /m);
    expect(result.status).toMatch(/^\[GNUPG:\] DECRYPTION_OKAY/m);
    expect(result.status).toMatch(/^\[GNUPG:\] GOODMDC/m);
  });

  it('is encrypted to exactly the encryption subkeys, without AEAD', async () => {
    const armored = await signAndEncrypt(new Uint8Array([1, 2, 3]), {
      encryptionKeys: [aliceKey.key, bobKey.key, aliceKey.key],
      signingKey: relay.privateKey,
      date: new Date(),
    });
    const ids = await gpg.recipientKeyIds(armored);
    expect(ids.sort()).toEqual(
      [keyIdOf(alice.encryptionSubkeyFingerprint), keyIdOf(bob.encryptionSubkeyFingerprint)].sort(),
    );
    expect(ids).not.toContain(keyIdOf(alice.fingerprint));
    const packets = await gpg.listPackets(armored);
    expect(packets).toContain(':encrypted data packet:');
    expect(packets).not.toMatch(/aead/i);

    const onlyBob = await signAndEncrypt(new Uint8Array([4]), {
      encryptionKeys: [bobKey.key],
      signingKey: relay.privateKey,
      date: new Date(),
    });
    expect(await gpg.recipientKeyIds(onlyBob)).toEqual([keyIdOf(bob.encryptionSubkeyFingerprint)]);
  });

  it('refuses an empty key list instead of producing plaintext', async () => {
    await expect(
      signAndEncrypt(new Uint8Array([1]), { encryptionKeys: [], signingKey: relay.privateKey, date: new Date() }),
    ).rejects.toThrow(/no encryption keys/);
  });
});
