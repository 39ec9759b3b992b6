/**
 * Sign-then-encrypt of an outbound payload (the inner MIME part of SPEC §3's
 * PGP/MIME message). openpgp defaults are kept on purpose: v4 keys and SEIPDv1
 * (no AEAD) unless every recipient key asks for v2, so GnuPG 2.2 can read it.
 */
import * as openpgp from 'openpgp';

/** Options of signAndEncrypt. */
export interface SignAndEncryptOptions {
  /** Recipient keys; the message is readable by exactly these (deduplicated by fingerprint). */
  encryptionKeys: openpgp.PublicKey[];
  /** The relay key, decrypted. */
  signingKey: openpgp.PrivateKey;
  /** Signature time, and the time at which the recipient keys must be valid. */
  date: Date;
}

/** Sign `payload` with the relay key and encrypt it to `encryptionKeys`; returns one ASCII-armored OpenPGP message. */
export async function signAndEncrypt(payload: Uint8Array, opts: SignAndEncryptOptions): Promise<string> {
  // openpgp.encrypt with no keys and no passwords would throw today, but the
  // policy must not depend on that: an empty key list must never become a
  // signed-only or plaintext message (SPEC §2 rule `encryption`, no fallback).
  if (opts.encryptionKeys.length === 0) {
    throw new Error('signAndEncrypt: no encryption keys; refusing to produce an unencrypted message');
  }
  const seen = new Set<string>();
  const encryptionKeys = opts.encryptionKeys.filter((key) => {
    const fpr = key.getFingerprint();
    if (seen.has(fpr)) return false;
    seen.add(fpr);
    return true;
  });
  const message = await openpgp.createMessage({ binary: payload, date: opts.date });
  return openpgp.encrypt({
    message,
    encryptionKeys,
    signingKeys: opts.signingKey,
    date: opts.date,
    format: 'armored',
  });
}
