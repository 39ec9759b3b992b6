/**
 * Recipients' public keys: parsing, description and the "usable key" check of
 * SPEC §2 (rule `encryption`). Every date-dependent openpgp call takes the
 * caller's clock, so the policy is deterministic and testable.
 */
import * as openpgp from 'openpgp';
import { RelayError } from '../errors.js';
import { normalisedEmail } from '../validation.js';

/** Upper bound on an armored public key; real keys with a few UIDs are a few KiB. */
export const MAX_PUBLIC_KEY_BYTES = 64 * 1024;

/** Readable metadata about a public key (what `PUT/GET /v1/keys/:email` report). */
export interface KeyInfo {
  /** 40 uppercase hex digits (v4); 64 for v6 keys. */
  fingerprint: string;
  /** e.g. `rsa4096`, `eddsaLegacy(ed25519Legacy)+ecdh(curve25519Legacy)`. */
  algorithm: string;
  /** ISO time after which the key can no longer be encrypted to, or null if it does not expire. */
  expiresAt: string | null;
  /** Lowercased emails of the validly self-signed user IDs. */
  emails: string[];
}

/** A parsed, public-only key and its metadata. */
export interface ParsedPublicKey {
  info: KeyInfo;
  key: openpgp.PublicKey;
  /** The key re-armored by openpgp (public packets only). */
  armored: string;
}

/** Every reason a key is refused as unusable (`details.reason` of `unusable_public_key`). */
export const UNUSABLE_KEY_REASONS = [
  'expired',
  'revoked',
  'no_encryption_subkey',
  'user_id_mismatch',
  'weak_key',
] as const;

/** Why a key is unusable. */
export type UnusableKeyReason = (typeof UNUSABLE_KEY_REASONS)[number];

const MIN_RSA_BITS = 2048;

const RSA_ALGORITHMS: ReadonlySet<string> = new Set(['rsaEncryptSign', 'rsaEncrypt', 'rsaSign']);
const ECC_ALGORITHMS: ReadonlySet<string> = new Set([
  'ecdh',
  'ecdsa',
  'eddsaLegacy',
  'ed25519',
  'x25519',
  'ed448',
  'x448',
  // Hybrid ML-KEM/ML-DSA with an ECC component: no weaker than the ECC alone.
  'pqc_mlkem_x25519',
  'pqc_mldsa_ed25519',
]);

const ENCRYPT_FLAGS = openpgp.enums.keyFlags.encryptCommunication | openpgp.enums.keyFlags.encryptStorage;

type AnyKey = openpgp.PublicKey | openpgp.Subkey;

/**
 * Parse exactly one ASCII-armored OpenPGP public key.
 * Throws RelayError('invalid_request') for anything else; messages never quote the input.
 */
export async function parsePublicKey(armored: string, now: Date = new Date()): Promise<ParsedPublicKey> {
  if (typeof armored !== 'string' || armored.trim() === '') {
    throw new RelayError('invalid_request', 'Expected an ASCII-armored OpenPGP public key.');
  }
  if (Buffer.byteLength(armored, 'utf8') > MAX_PUBLIC_KEY_BYTES) {
    throw new RelayError('invalid_request', `The public key is larger than ${MAX_PUBLIC_KEY_BYTES} bytes.`);
  }
  const begins = armored.match(/^-----BEGIN PGP [A-Z ,/0-9]+-----\s*$/gm) ?? [];
  if (begins.some((line) => line.includes('PRIVATE KEY'))) {
    // Refuse before parsing: a secret key should never be handled, let alone stored.
    throw new RelayError('invalid_request', 'This is a PRIVATE key block; send only the public key (gpg --armor --export).');
  }
  if (begins.length !== 1 || begins[0]?.trim() !== '-----BEGIN PGP PUBLIC KEY BLOCK-----') {
    // openpgp's unarmor would silently read only the first of several blocks.
    throw new RelayError(
      'invalid_request',
      begins.length > 1
        ? 'Expected exactly one armored public key block, found several.'
        : 'Expected an ASCII-armored OpenPGP public key block (-----BEGIN PGP PUBLIC KEY BLOCK-----).',
    );
  }

  let keys: openpgp.Key[];
  try {
    keys = await openpgp.readKeys({ armoredKeys: armored });
  } catch (err) {
    throw new RelayError('invalid_request', 'The public key block could not be parsed as an OpenPGP key.', { cause: err });
  }
  if (keys.length !== 1) {
    throw new RelayError('invalid_request', `Expected exactly one public key, found ${keys.length}.`);
  }
  const key = keys[0];
  if (!key) {
    throw new RelayError('invalid_request', 'Expected exactly one public key.');
  }
  if (key.isPrivate()) {
    // The armor header said PUBLIC but the packets carry secret material.
    throw new RelayError('invalid_request', 'The key block contains secret key material; send only the public key.');
  }
  const publicKey: openpgp.PublicKey = key;

  const encryptionKey = await findEncryptionSubkey(publicKey, now);
  const info: KeyInfo = {
    fingerprint: publicKey.getFingerprint().toUpperCase(),
    algorithm: describeAlgorithm(publicKey, encryptionKey),
    expiresAt: await effectiveExpiry(publicKey, encryptionKey, now),
    emails: await validEmails(publicKey, now),
  };
  return { info, key: publicKey, armored: publicKey.armor() };
}

/**
 * Assert that the key may be encrypted to for `email` at `now` (SPEC §2, "A usable key").
 * Throws RelayError('unusable_public_key', …, { rule: 'encryption', details: { recipients, reason } }).
 */
export async function assertUsableFor(parsed: ParsedPublicKey, email: string, now: Date): Promise<void> {
  const found = await unusableReason(parsed.key, email, now);
  if (found === null) return;
  const reason = typeof found === 'string' ? found : found.reason;
  const text = typeof found === 'string' ? REASON_TEXT[found] : found.text;
  throw new RelayError('unusable_public_key', `The public key ${parsed.info.fingerprint} for ${email} ${text}.`, {
    rule: 'encryption',
    details: { recipients: [email], reason },
  });
}

const REASON_TEXT: Record<UnusableKeyReason, string> = {
  expired: 'has expired; ask the recipient for a current key',
  revoked: 'has been revoked; ask the recipient for their new key',
  no_encryption_subkey: 'has no valid encryption subkey',
  user_id_mismatch: 'has no valid user ID with that email address',
  weak_key: `is too weak (RSA keys need at least ${MIN_RSA_BITS} bits; ECC keys are accepted)`,
};

/** The first reason the key is unusable for `email` at `now` (with a specific text if needed), or null when it is usable. */
async function unusableReason(
  key: openpgp.PublicKey,
  email: string,
  now: Date,
): Promise<UnusableKeyReason | { reason: UnusableKeyReason; text: string } | null> {
  if (await key.isRevoked(undefined, undefined, now)) return 'revoked';
  if (!isStrong(key)) return 'weak_key';
  if (key.getCreationTime().getTime() > now.getTime()) {
    // Outside its validity period like an expired key, but the fix is the clock, not a new key.
    return { reason: 'expired', text: 'is not valid yet (created after the current time; check the clocks)' };
  }
  try {
    await key.verifyPrimaryKey(now);
  } catch (err) {
    const text = err instanceof Error ? err.message : '';
    if (/expired/i.test(text)) return 'expired';
    if (/revoked/i.test(text)) return 'revoked';
    // Otherwise no user ID carries a valid self-signature: none can match the address.
    return 'user_id_mismatch';
  }
  if (!(await hasValidUserIdFor(key, email, now))) return 'user_id_mismatch';

  const subkey = await findEncryptionSubkey(key, now);
  if (subkey) return isStrong(subkey) ? null : 'weak_key';
  return diagnoseMissingEncryptionSubkey(key, now);
}

/**
 * The subkey openpgp would encrypt to at `now`, with openpgp's default policy,
 * or null. An encryption-capable primary key does not count (SPEC: "subkey").
 */
async function findEncryptionSubkey(key: openpgp.PublicKey, now: Date): Promise<openpgp.Subkey | null> {
  try {
    const found = await key.getEncryptionKey(undefined, now);
    return found instanceof openpgp.Subkey ? found : null;
  } catch {
    return null;
  }
}

/** Explain why no encryption subkey is valid: the best reason among the subkeys flagged for encryption. */
async function diagnoseMissingEncryptionSubkey(key: openpgp.PublicKey, now: Date): Promise<UnusableKeyReason> {
  const candidates = key.subkeys.filter((subkey) =>
    subkey.bindingSignatures.some((sig) => ((sig.keyFlags?.[0] ?? 0) & ENCRYPT_FLAGS) !== 0),
  );
  const found = new Set<UnusableKeyReason>();
  for (const subkey of candidates) {
    try {
      await subkey.verify(now);
      // Bound and current, yet openpgp refused it: its algorithm or size is rejected.
      found.add('weak_key');
    } catch (err) {
      const text = err instanceof Error ? err.message : '';
      if (/revoked/i.test(text)) found.add('revoked');
      else if (/expired/i.test(text)) found.add('expired');
    }
  }
  for (const reason of ['weak_key', 'expired', 'revoked'] as const) {
    if (found.has(reason)) return reason;
  }
  return 'no_encryption_subkey';
}

/** RSA of at least 2048 bits, or an ECC algorithm. */
function isStrong(key: AnyKey): boolean {
  const { algorithm, bits } = key.getAlgorithmInfo();
  if (RSA_ALGORITHMS.has(algorithm)) return (bits ?? 0) >= MIN_RSA_BITS;
  return ECC_ALGORITHMS.has(algorithm);
}

/** A user ID with this email (normalised: case-insensitive, a Unicode domain as its A-label) whose self-certification is valid and unrevoked at `now`. */
async function hasValidUserIdFor(key: openpgp.PublicKey, email: string, now: Date): Promise<boolean> {
  const wanted = normalisedEmail(email.trim()) ?? email.trim().toLowerCase();
  for (const user of key.users) {
    // Normalised both sides: a user ID written `name@bücher.example` is the key of `name@xn--bcher-kva.example`.
    if (normalisedEmail(user.userID?.email ?? '') !== wanted) continue;
    try {
      await user.verify(now);
      return true;
    } catch {
      // Try the next user ID with the same address.
    }
  }
  return false;
}

/** Normalised (lowercase, A-label domain), deduplicated emails of the user IDs that are validly self-signed at `now`. */
async function validEmails(key: openpgp.PublicKey, now: Date): Promise<string[]> {
  const emails = new Set<string>();
  for (const user of key.users) {
    // Filed under the form every lookup uses; a user ID that is no address the relay accepts names nobody.
    const email = normalisedEmail(user.userID?.email ?? '');
    if (!email) continue;
    try {
      await user.verify(now);
      emails.add(email);
    } catch {
      // An unsigned or revoked user ID is not a claim the key holder stands behind.
    }
  }
  return [...emails].sort();
}

function describeOne(key: AnyKey): string {
  const { algorithm, bits, curve } = key.getAlgorithmInfo();
  if (RSA_ALGORITHMS.has(algorithm)) return `rsa${bits ?? '?'}`;
  return curve ? `${algorithm}(${curve})` : algorithm;
}

function describeAlgorithm(key: openpgp.PublicKey, encryptionKey: openpgp.Subkey | null): string {
  const primary = describeOne(key);
  if (!encryptionKey) return primary;
  const sub = describeOne(encryptionKey);
  return sub === primary ? primary : `${primary}+${sub}`;
}

/** The earlier of the primary key's and the encryption subkey's expiry, or null if neither expires. */
async function effectiveExpiry(key: openpgp.PublicKey, encryptionKey: openpgp.Subkey | null, now: Date): Promise<string | null> {
  const times: (Date | number | null)[] = [await key.getExpirationTime()];
  if (encryptionKey) times.push(await encryptionKey.getExpirationTime(now));
  let earliest = Infinity;
  for (const t of times) {
    if (t instanceof Date) earliest = Math.min(earliest, t.getTime());
  }
  return Number.isFinite(earliest) ? new Date(earliest).toISOString() : null;
}
