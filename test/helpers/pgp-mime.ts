/**
 * Reading delivered mail as a recipient would: the top-level header lines,
 * the armored OpenPGP message of a PGP/MIME mail, and gpg decrypting it in a
 * fresh home that holds only one recipient's secret key.
 */
import { simpleParser } from 'mailparser';
import { createGpgHome, type DecryptResult, type GpgHome } from './gpg.js';

/** The message's own header lines (unfolded lines as sent, CRLF-split). */
export function headerLines(raw: Buffer): string[] {
  return raw.toString('latin1').split('\r\n\r\n')[0]!.split('\r\n');
}

/** The armored OpenPGP message carried in a PGP/MIME mail's encrypted.asc part. */
export async function armoredPartOf(raw: Buffer): Promise<string> {
  const part = (await simpleParser(raw)).attachments.find((a) => a.filename === 'encrypted.asc');
  if (!part) throw new Error('no encrypted.asc part: this is not PGP/MIME');
  return part.content.toString('utf8');
}

/**
 * Decrypts `armored` holding only the secret key of `fingerprint` (exported
 * from `keyring`), with `signerPublic` imported so the signature can verify.
 */
export async function decryptAs(keyring: GpgHome, fingerprint: string, armored: string, signerPublic?: string): Promise<DecryptResult> {
  const home = await createGpgHome();
  try {
    await home.importKey(await keyring.exportSecret(fingerprint));
    if (signerPublic) await home.importKey(signerPublic);
    return await home.decrypt(armored);
  } finally {
    await home.cleanup();
  }
}
