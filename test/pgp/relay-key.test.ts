import { mkdtemp, readFile, rm, stat, writeFile } from 'node:fs/promises';
import os from 'node:os';
import path from 'node:path';
import * as openpgp from 'openpgp';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { loadOrCreateRelayKey } from '../../src/pgp/relay-key.js';
import { createGpgHome, type GpgHome } from '../helpers/gpg.js';

const userId = { name: 'Incident Relay', email: 'relay@example.com' };

describe('loadOrCreateRelayKey', () => {
  let tmp: string;
  let gpg: GpgHome;

  beforeAll(async () => {
    tmp = await mkdtemp(path.join(os.tmpdir(), 'relay-key-'));
    gpg = await createGpgHome();
  });
  afterAll(async () => {
    await gpg?.cleanup();
    if (tmp) await rm(tmp, { recursive: true, force: true });
  });

  it('generates a 0600 key file in a new data dir, then reloads it', async () => {
    const dataDir = path.join(tmp, 'fresh', 'nested');
    const first = await loadOrCreateRelayKey({ dataDir, userId });
    expect(first.created).toBe(true);
    expect(first.path).toBe(path.join(dataDir, 'relay-key.asc'));
    expect((await stat(first.path)).mode & 0o777).toBe(0o600);
    expect(first.key.fingerprint).toMatch(/^[0-9A-F]{40}$/);
    expect(first.key.privateKey.isDecrypted()).toBe(true);
    expect(first.key.publicKey.isPrivate()).toBe(false);
    expect(first.key.publicArmored).toContain('-----BEGIN PGP PUBLIC KEY BLOCK-----');
    expect(first.key.publicArmored).not.toContain('PRIVATE');
    expect(first.key.privateKey.getAlgorithmInfo()).toMatchObject({ algorithm: 'eddsaLegacy' });
    expect(first.key.publicKey.getUserIDs()).toEqual(['Incident Relay <relay@example.com>']);
    expect(await first.key.publicKey.getExpirationTime()).toBe(Infinity);
    // Sign + encrypt, as a normal ECC key.
    await expect(first.key.publicKey.getEncryptionKey(undefined, new Date())).resolves.toBeDefined();
    await expect(first.key.privateKey.getSigningKey(undefined, new Date())).resolves.toBeDefined();

    const second = await loadOrCreateRelayKey({ dataDir, userId });
    expect(second.created).toBe(false);
    expect(second.key.fingerprint).toBe(first.key.fingerprint);
    expect(second.path).toBe(first.path);
  });

  it('two concurrent first starts end with one key', async () => {
    const dataDir = path.join(tmp, 'race');
    const [a, b] = await Promise.all([loadOrCreateRelayKey({ dataDir, userId }), loadOrCreateRelayKey({ dataDir, userId })]);
    expect(a.key.fingerprint).toBe(b.key.fingerprint);
    expect([a.created, b.created].filter(Boolean)).toHaveLength(1);
  });

  it('protects the generated key with the passphrase and needs it to reload', async () => {
    const dataDir = path.join(tmp, 'protected');
    const passphrase = 'correct horse battery staple';
    const made = await loadOrCreateRelayKey({ dataDir, userId, passphrase });
    expect(made.created).toBe(true);
    expect(made.key.privateKey.isDecrypted()).toBe(true);

    const onDisk = await openpgp.readPrivateKey({ armoredKey: await readFile(made.path, 'utf8') });
    expect(onDisk.isDecrypted()).toBe(false);

    const reloaded = await loadOrCreateRelayKey({ dataDir, userId, passphrase });
    expect(reloaded.created).toBe(false);
    expect(reloaded.key.fingerprint).toBe(made.key.fingerprint);
    expect(reloaded.key.privateKey.isDecrypted()).toBe(true);

    for (const wrong of ['wrong passphrase', undefined]) {
      const err = await loadOrCreateRelayKey({ dataDir, userId, passphrase: wrong }).then(
        () => undefined,
        (e: unknown) => e,
      );
      expect(err).toBeInstanceOf(Error);
      expect((err as Error).message).toContain('RELAY_KEY_PASSPHRASE');
      expect((err as Error).message).not.toContain('BEGIN PGP');
    }
  });

  it('loads RELAY_KEY_FILE, protected or not', async () => {
    const dataDir = path.join(tmp, 'unused');
    const made = await loadOrCreateRelayKey({ dataDir: path.join(tmp, 'src'), userId, passphrase: 'pw' });
    const viaFile = await loadOrCreateRelayKey({ keyFile: made.path, passphrase: 'pw', dataDir, userId });
    expect(viaFile).toMatchObject({ created: false, path: made.path });
    expect(viaFile.key.fingerprint).toBe(made.key.fingerprint);
    await expect(loadOrCreateRelayKey({ keyFile: made.path, passphrase: 'nope', dataDir, userId })).rejects.toThrow(
      /RELAY_KEY_PASSPHRASE/,
    );

    // A key exported by gpg (unprotected) works as well.
    const gpgKey = await gpg.generateKey('relay2@example.com', 'Relay Two');
    const gpgFile = path.join(tmp, 'gpg-relay.asc');
    await writeFile(gpgFile, await gpg.exportSecret(gpgKey.fingerprint), { mode: 0o600 });
    const fromGpg = await loadOrCreateRelayKey({ keyFile: gpgFile, dataDir, userId });
    expect(fromGpg.key.fingerprint).toBe(gpgKey.fingerprint);
    await expect(stat(path.join(dataDir, 'relay-key.asc'))).rejects.toThrow();
  });

  it('refuses a public key as RELAY_KEY_FILE without quoting it', async () => {
    const gpgKey = await gpg.generateKey('pub@example.com', 'Pub');
    const file = path.join(tmp, 'public.asc');
    await writeFile(file, gpgKey.armoredPublic);
    await expect(loadOrCreateRelayKey({ keyFile: file, dataDir: tmp, userId })).rejects.toThrow(/RELAY_KEY_FILE/);
    await expect(loadOrCreateRelayKey({ keyFile: path.join(tmp, 'missing.asc'), dataDir: tmp, userId })).rejects.toThrow(
      /RELAY_KEY_FILE/,
    );
  });

  it("publishes a public key that gpg imports", async () => {
    const { key } = await loadOrCreateRelayKey({ dataDir: path.join(tmp, 'fresh', 'nested'), userId });
    await gpg.importKey(key.publicArmored);
    const { stdout } = await gpg.run(['--with-colons', '--list-keys', key.fingerprint]);
    const listing = stdout.toString('utf8');
    expect(listing).toContain(`fpr:::::::::${key.fingerprint}:`);
    expect(listing).toMatch(/^uid:.*Incident Relay <relay@example\.com>/m);
    // An encryption subkey next to the signing primary key.
    expect(listing).toMatch(/^sub:[^:]*:255:18:/m);
  });
});
