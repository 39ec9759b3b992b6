/**
 * PGP/MIME (RFC 3156) in one step: the protected part with its headers is
 * signed by the relay key and encrypted, then wrapped in multipart/encrypted.
 * The sign+encrypt step runs wherever the Encryptor runs it: in this thread,
 * or in the worker pool (src/pgp/pool.ts), with the same bytes either way.
 */
import type { PrivateKey, PublicKey } from 'openpgp';
import { composeEncryptedEnvelope, composeProtectedPart, type MessageContent } from '../mime/compose.js';
import { signAndEncryptForMime } from './encrypt.js';

/** Signs with the relay key and encrypts to `encryptionKeys`; returns one ASCII-armored OpenPGP message. */
export interface Encryptor {
  /**
   * Takes ownership of `payload` (its memory may be moved to another thread).
   * The armor comes back as text, or for large messages as its CRLF bytes.
   */
  signAndEncrypt(payload: Uint8Array, encryptionKeys: PublicKey[], date: Date): Promise<string | Uint8Array>;
}

/** An Encryptor that works in the calling thread. */
export function inThreadEncryptor(signingKey: PrivateKey): Encryptor {
  return { signAndEncrypt: (payload, encryptionKeys, date) => signAndEncryptForMime(payload, { encryptionKeys, signingKey, date }) };
}

/** The encrypted message for `content`, readable only with one of `encryptionKeys`. */
export async function composeEncrypted(content: MessageContent, encryptionKeys: PublicKey[], encryptor: Encryptor): Promise<Buffer> {
  const armored = await encryptor.signAndEncrypt(composeProtectedPart(content), encryptionKeys, content.date);
  return composeEncryptedEnvelope(content, armored);
}
