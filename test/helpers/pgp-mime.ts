/**
 * Reading delivered mail as a recipient would: the top-level header lines,
 * the armored OpenPGP message of a PGP/MIME mail, and gpg decrypting it in a
 * fresh home that holds only one recipient's secret key.
 */
import { simpleParser } from 'mailparser';
import { renderCopy } from '../../src/pgp/pgp-mime.js';
import type { Store } from '../../src/store/index.js';
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

/**
 * The message a queued delivery will put on the wire, as the worker writes
 * it: the stored bytes of a plain message, or an encrypted copy rendered
 * from its email's stored payload and the delivery's own key packets.
 */
export async function queuedMessage(store: Store, where: { deliveryId?: string; emailId?: string } = {}): Promise<Buffer> {
  const [filter, params] = where.deliveryId ? ['id = ?', [where.deliveryId]] : where.emailId ? ['email_id = ?', [where.emailId]] : ['1 = 1', []];
  const row = await store.sql.get<{ body: Buffer | null; body_kind: string; email_id: string | null }>(`SELECT body, body_kind, email_id FROM deliveries WHERE ${filter} ORDER BY created_ms, id LIMIT 1`, params);
  if (!row?.body) throw new Error('no queued delivery with a body');
  if (row.body_kind === 'raw') return row.body;
  const payload = await store.outbox.payload(row.email_id!);
  if (!payload) throw new Error('the sealed copy has no stored payload');
  return renderCopy({ head: payload.head, tail: payload.tail }, row.body, payload.shared);
}
