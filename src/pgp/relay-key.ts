/**
 * The relay's own OpenPGP key: it signs every encrypted message so recipients
 * can tell relay mail from forgeries (SPEC §3, `GET /v1/relay-key`).
 */
import { randomBytes } from 'node:crypto';
import { constants as fsConstants } from 'node:fs';
import { link, mkdir, open, readFile, unlink, writeFile } from 'node:fs/promises';
import path from 'node:path';
import * as openpgp from 'openpgp';

/** The relay's signing key, decrypted and ready to use. */
export interface RelayKey {
  privateKey: openpgp.PrivateKey;
  publicKey: openpgp.PublicKey;
  publicArmored: string;
  /** 40 uppercase hex digits. */
  fingerprint: string;
}

/** Options of loadOrCreateRelayKey (RELAY_KEY_FILE, RELAY_KEY_PASSPHRASE, RELAY_DATA_DIR). */
export interface RelayKeyOptions {
  keyFile?: string;
  passphrase?: string;
  dataDir: string;
  userId: { name: string; email: string };
}

/** File name of the generated key inside the data dir. */
export const GENERATED_KEY_FILE = 'relay-key.asc';

/**
 * Load RELAY_KEY_FILE, else `<dataDir>/relay-key.asc`, else generate that file (mode 0600).
 * Errors are plain Errors naming the variable to fix; they never contain key material.
 */
export async function loadOrCreateRelayKey(
  opts: RelayKeyOptions,
): Promise<{ key: RelayKey; created: boolean; path: string }> {
  if (opts.keyFile) {
    const armored = await readKeyFile(opts.keyFile, 'RELAY_KEY_FILE');
    return { key: await unlockRelayKey(armored, opts.passphrase, opts.keyFile), created: false, path: opts.keyFile };
  }

  const keyPath = path.join(opts.dataDir, GENERATED_KEY_FILE);
  const existing = await readKeyFile(keyPath, 'RELAY_DATA_DIR', true);
  if (existing !== null) {
    return { key: await unlockRelayKey(existing, opts.passphrase, keyPath), created: false, path: keyPath };
  }

  await mkdir(opts.dataDir, { recursive: true, mode: 0o700 });
  const { privateKey } = await openpgp.generateKey({
    type: 'ecc',
    curve: 'curve25519Legacy',
    userIDs: [opts.userId],
    // Default subkeys: one ECDH encryption subkey next to the EdDSA signing primary key.
    keyExpirationTime: 0,
    format: 'object',
  });
  const stored = opts.passphrase ? await openpgp.encryptKey({ privateKey, passphrase: opts.passphrase }) : privateKey;
  const won = await writeNewFile(keyPath, stored.armor());
  if (!won) {
    // Another process created the key between our check and our write: use theirs.
    const theirs = await readKeyFile(keyPath, 'RELAY_DATA_DIR');
    return { key: await unlockRelayKey(theirs, opts.passphrase, keyPath), created: false, path: keyPath };
  }
  return { key: await toRelayKey(privateKey, keyPath), created: true, path: keyPath };
}

async function readKeyFile(file: string, variable: string, missingOk: true): Promise<string | null>;
async function readKeyFile(file: string, variable: string): Promise<string>;
async function readKeyFile(file: string, variable: string, missingOk = false): Promise<string | null> {
  try {
    return await readFile(file, 'utf8');
  } catch (err) {
    if (missingOk && (err as NodeJS.ErrnoException).code === 'ENOENT') return null;
    throw new Error(`Cannot read the relay key file ${file} (${variable}): ${(err as Error).message}`);
  }
}

/** Parse an armored private key and decrypt it with the passphrase when it is protected. */
async function unlockRelayKey(armored: string, passphrase: string | undefined, file: string): Promise<RelayKey> {
  let privateKey: openpgp.PrivateKey;
  try {
    privateKey = await openpgp.readPrivateKey({ armoredKey: armored });
  } catch {
    // openpgp's message is dropped: it may quote parts of the file.
    throw new Error(`The relay key file ${file} is not an ASCII-armored OpenPGP private key (RELAY_KEY_FILE).`);
  }
  // A key is usable only when every secret key packet is decrypted.
  const locked = privateKey.getKeys().some((k) => k.keyPacket.isDecrypted() === false);
  if (locked) {
    if (!passphrase) {
      throw new Error(`The relay key file ${file} is passphrase-protected; set RELAY_KEY_PASSPHRASE.`);
    }
    try {
      privateKey = await openpgp.decryptKey({ privateKey, passphrase });
    } catch {
      throw new Error(`RELAY_KEY_PASSPHRASE does not decrypt the relay key file ${file}.`);
    }
  }
  return toRelayKey(privateKey, file);
}

async function toRelayKey(privateKey: openpgp.PrivateKey, file: string): Promise<RelayKey> {
  try {
    // Fail at startup, not at the first send, if the key cannot sign (expired, revoked, no signing key).
    await privateKey.getSigningKey(undefined, new Date());
  } catch {
    throw new Error(`The relay key in ${file} cannot sign (expired, revoked or sign-incapable); replace it (RELAY_KEY_FILE).`);
  }
  const publicKey = privateKey.toPublic();
  return {
    privateKey,
    publicKey,
    publicArmored: publicKey.armor(),
    fingerprint: privateKey.getFingerprint().toUpperCase(),
  };
}

/**
 * Write `content` to `file` only if it does not exist yet, atomically and with mode 0600.
 * Returns false when the file already exists.
 */
async function writeNewFile(file: string, content: string): Promise<boolean> {
  const tmp = `${file}.${process.pid}.${randomBytes(6).toString('hex')}.tmp`;
  const handle = await open(tmp, fsConstants.O_WRONLY | fsConstants.O_CREAT | fsConstants.O_EXCL, 0o600);
  try {
    await handle.writeFile(content, 'utf8');
    // A half-written key after a crash would stop the relay from starting.
    await handle.sync();
  } finally {
    await handle.close();
  }
  try {
    // link() refuses to replace an existing file, unlike rename().
    await link(tmp, file);
    return true;
  } catch (err) {
    const code = (err as NodeJS.ErrnoException).code;
    if (code === 'EEXIST') return false;
    if (code !== 'EPERM' && code !== 'ENOTSUP' && code !== 'ENOSYS') throw err;
    // Filesystems without hard links: O_EXCL still refuses to clobber, at the cost of atomicity.
    try {
      await writeFile(file, content, { encoding: 'utf8', mode: 0o600, flag: 'wx' });
      return true;
    } catch (err2) {
      if ((err2 as NodeJS.ErrnoException).code === 'EEXIST') return false;
      throw err2;
    }
  } finally {
    await unlink(tmp).catch(() => undefined);
  }
}
