/**
 * PGP/MIME (RFC 3156) in one step: the protected part with its headers is
 * signed by the relay key and encrypted, then wrapped in multipart/encrypted.
 */
import type { PrivateKey, PublicKey } from 'openpgp';
import { composeEncryptedEnvelope, composeProtectedPart, type MessageContent } from '../mime/compose.js';
import { signAndEncrypt } from './encrypt.js';

/** The encrypted message for `content`, readable only with one of `encryptionKeys`. */
export async function composeEncrypted(content: MessageContent, encryptionKeys: PublicKey[], signingKey: PrivateKey): Promise<Buffer> {
  const armored = await signAndEncrypt(composeProtectedPart(content), { encryptionKeys, signingKey, date: content.date });
  return composeEncryptedEnvelope(content, armored);
}
