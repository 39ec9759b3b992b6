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
  const encryptionKeys = recipients(opts);
  // Large payloads go through openpgp as a stream (memory, see BENCHMARKS.md).
  if (payload.length >= STREAM_THRESHOLD_BYTES) return (await streamedArmor(payload, encryptionKeys, opts)).join('');
  return wholeArmor(payload, encryptionKeys, opts);
}

/**
 * signAndEncrypt with the armor returned as CRLF bytes, the form PGP/MIME
 * carries; a large armor is converted a chunk at a time, never held as one
 * 46 MB string and a converted copy of it (BENCHMARKS.md).
 */
export async function signAndEncryptToCrlfBytes(payload: Uint8Array, opts: SignAndEncryptOptions): Promise<Buffer> {
  const encryptionKeys = recipients(opts);
  const chunks = payload.length >= STREAM_THRESHOLD_BYTES ? await streamedArmor(payload, encryptionKeys, opts) : [await wholeArmor(payload, encryptionKeys, opts)];
  // An armor is ASCII; anything else would be mangled by latin1, so refuse it.
  if (chunks.some((c) => /[^\x00-\x7f]/.test(c))) throw new Error('signAndEncrypt: the armored output is not ASCII');
  // openpgp armors with LF alone, so chunks convert independently; a CR (which
  // could pair with an LF in the next chunk) takes the whole-string path.
  if (chunks.some((c) => c.includes('\r'))) return Buffer.from(chunks.join('').replace(/\r\n|\r|\n/g, '\r\n'), 'latin1');
  return Buffer.concat(chunks.map((c) => Buffer.from(c.replaceAll('\n', '\r\n'), 'latin1')));
}

/**
 * The form PGP/MIME composition takes: the armor as text, or from
 * STREAM_THRESHOLD_BYTES on as its CRLF bytes, so a large message is never
 * held as one huge string. The worker pool and the main thread both use it.
 */
export function signAndEncryptForMime(payload: Uint8Array, opts: SignAndEncryptOptions): Promise<string | Uint8Array> {
  return payload.length >= STREAM_THRESHOLD_BYTES ? signAndEncryptToCrlfBytes(payload, opts) : signAndEncrypt(payload, opts);
}

// The recipient keys, deduplicated by fingerprint; refuses an empty list.
function recipients(opts: SignAndEncryptOptions): openpgp.PublicKey[] {
  // openpgp.encrypt with no keys and no passwords would throw today, but the
  // policy must not depend on that: an empty key list must never become a
  // signed-only or plaintext message (SPEC §2 rule `encryption`, no fallback).
  if (opts.encryptionKeys.length === 0) {
    throw new Error('signAndEncrypt: no encryption keys; refusing to produce an unencrypted message');
  }
  const seen = new Set<string>();
  return opts.encryptionKeys.filter((key) => {
    const fpr = key.getFingerprint();
    if (seen.has(fpr)) return false;
    seen.add(fpr);
    return true;
  });
}

async function wholeArmor(payload: Uint8Array, encryptionKeys: openpgp.PublicKey[], opts: SignAndEncryptOptions): Promise<string> {
  const message = await openpgp.createMessage({ binary: payload, date: opts.date });
  return openpgp.encrypt({
    message,
    encryptionKeys,
    signingKeys: opts.signingKey,
    date: opts.date,
    format: 'armored',
  });
}

/**
 * Payloads from this size on are streamed through openpgp: for a 34 MB payload
 * the whole-buffer path held about 380 MB at its peak, the streamed one about
 * 130 MB (BENCHMARKS.md). Below it streaming only costs time (4 KB: ~4x slower).
 */
export const STREAM_THRESHOLD_BYTES = 1024 * 1024;

// Same message (one-pass signed, SEIPDv1, armored); only the packet lengths are
// written as partial body lengths (RFC 4880 §4.2.2.4), which GnuPG reads alike.
async function streamedArmor(payload: Uint8Array, encryptionKeys: openpgp.PublicKey[], opts: SignAndEncryptOptions): Promise<string[]> {
  let offset = 0;
  const input = new ReadableStream<Uint8Array>({
    pull(controller) {
      if (offset >= payload.length) {
        controller.close();
        return;
      }
      // Views, not copies, of the payload.
      controller.enqueue(payload.subarray(offset, offset + STREAM_CHUNK_BYTES));
      offset += STREAM_CHUNK_BYTES;
    },
  });
  const message = await openpgp.createMessage({ binary: input, date: opts.date });
  const armored = await openpgp.encrypt({ message, encryptionKeys, signingKeys: opts.signingKey, date: opts.date, format: 'armored' });
  const chunks: string[] = [];
  const reader = armored.getReader();
  for (;;) {
    const { done, value } = await reader.read();
    if (done) break;
    chunks.push(value);
  }
  return chunks;
}

const STREAM_CHUNK_BYTES = 1024 * 1024;
