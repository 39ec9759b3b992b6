/**
 * Sign-then-encrypt of an outbound payload (the inner MIME part of SPEC §3's
 * PGP/MIME message), once for every copy of a message.
 *
 * All copies of one message carry the same protected part (Bcc never appears
 * in it), so the payload is signed and encrypted once, with one fresh session
 * key, into one SEIPD packet: the `shared` part. Each copy then differs only
 * in its public-key encrypted session key packets (PKESK), one per key that
 * may read that copy. A copy is its PKESKs followed by the shared packet.
 *
 * openpgp defaults are kept on purpose: v4 keys and SEIPDv1 (no AEAD), so
 * GnuPG 2.2 can read it; the session key's cipher is one every key accepts.
 */
import * as openpgp from 'openpgp';
import { armorMessage } from './armor.js';

/** Options of sealPayload. */
export interface SealOptions {
  /** Per copy, the keys that may read it (deduplicated by fingerprint within a copy). */
  copies: openpgp.PublicKey[][];
  /** The relay key, decrypted. */
  signingKey: openpgp.PrivateKey;
  /** Signature time, and the time at which the recipient keys must be valid. */
  date: Date;
}

/** One message signed and encrypted once: the shared SEIPD packet and, per copy, its PKESK packets. */
export interface SealedParts {
  /** The signed, encrypted payload: one SEIPD packet (v1), shared by every copy. */
  shared: Uint8Array;
  /** Per copy, in the order of SealOptions.copies: its PKESK packets, concatenated. */
  keyPackets: Uint8Array[];
}

/** Options of signAndEncrypt. */
export interface SignAndEncryptOptions {
  /** Recipient keys; the message is readable by exactly these (deduplicated by fingerprint). */
  encryptionKeys: openpgp.PublicKey[];
  /** The relay key, decrypted. */
  signingKey: openpgp.PrivateKey;
  /** Signature time, and the time at which the recipient keys must be valid. */
  date: Date;
}

/**
 * Payloads from this size on are streamed through openpgp: for a 34 MB payload
 * the whole-buffer path held about 380 MB at its peak, the streamed one about
 * 130 MB (BENCHMARKS.md). Below it streaming only costs time (4 KB: ~4x slower).
 */
export const STREAM_THRESHOLD_BYTES = 1024 * 1024;

const STREAM_CHUNK_BYTES = 1024 * 1024;
const PKESK_TAG = 1;
const SEIPD_TAG = 18;

/**
 * Sign `payload` with the relay key and encrypt it once; wrap the session key
 * for each copy's keys. Refuses (never produces a readable-by-anyone message)
 * when there is no copy or a copy has no key.
 */
export async function sealPayload(payload: Uint8Array, opts: SealOptions): Promise<SealedParts> {
  // openpgp.encrypt with no keys would throw today, but the policy must not
  // depend on that: an empty key list must never become a signed-only or
  // plaintext message (SPEC §2 rule `encryption`, no fallback).
  if (opts.copies.length === 0 || opts.copies.some((keys) => keys.length === 0)) {
    throw new Error('signAndEncrypt: no encryption keys; refusing to produce an unencrypted message');
  }
  // Every distinct key once: one PKESK each, reused by every copy that names it.
  const distinct = new Map<string, openpgp.PublicKey>();
  for (const keys of opts.copies) for (const key of keys) if (!distinct.has(key.getFingerprint())) distinct.set(key.getFingerprint(), key);
  const keys = [...distinct.values()];
  // One openpgp.encrypt to all of them: the session key's cipher and the
  // signature's hash follow every key's preferences, exactly as a single
  // message to all of them would; the PKESKs are then handed out per copy.
  const message = await openpgp.createMessage({ binary: payload.length >= STREAM_THRESHOLD_BYTES ? chunked(payload) : payload, date: opts.date });
  const encrypted = await openpgp.encrypt({ message, encryptionKeys: keys, signingKeys: opts.signingKey, date: opts.date, format: 'object' });
  const pkesks = encrypted.packets.filterByTag(openpgp.enums.packet.publicKeyEncryptedSessionKey);
  const seipd = encrypted.packets.filterByTag(openpgp.enums.packet.symEncryptedIntegrityProtectedData);
  if (pkesks.length !== keys.length || seipd.length !== 1 || encrypted.packets.length !== keys.length + 1) {
    throw new Error('signAndEncrypt: openpgp produced an unexpected packet sequence; refusing to send it');
  }
  const wrapped = new Map<string, Uint8Array>();
  for (const [i, key] of keys.entries()) {
    const single = new openpgp.PacketList<openpgp.AnyPacket>();
    single.push(pkesks[i]!);
    const bytes = await toBytes(single.write());
    // A copy must open with exactly the keys it names: check each PKESK's key
    // ID against its key, so an ordering surprise in openpgp can never hand a
    // Bcc recipient's session key to the visible copy or the other way round.
    assertPkeskFor(bytes, key);
    wrapped.set(key.getFingerprint(), bytes);
  }
  const shared = await toBytes(seipd.write());
  if (firstTag(shared) !== SEIPD_TAG || shared[headerLength(shared)] !== 1) {
    throw new Error('signAndEncrypt: the encrypted payload is not one SEIPDv1 packet; refusing to send it');
  }
  // A key named twice in one copy gets one PKESK there.
  const keyPackets = opts.copies.map((copy) => concat([...new Set(copy.map((key) => key.getFingerprint()))].map((fpr) => wrapped.get(fpr)!)));
  return { shared, keyPackets };
}

/** Sign `payload` with the relay key and encrypt it to `encryptionKeys`; returns one ASCII-armored OpenPGP message (CRLF). */
export async function signAndEncrypt(payload: Uint8Array, opts: SignAndEncryptOptions): Promise<string> {
  const sealed = await sealPayload(payload, { copies: [opts.encryptionKeys], signingKey: opts.signingKey, date: opts.date });
  return armorMessage([sealed.keyPackets[0]!, sealed.shared]).toString('latin1');
}

// The payload as a stream of views, never copies (a 25 MB attachment stays one buffer).
function chunked(payload: Uint8Array): ReadableStream<Uint8Array> {
  let offset = 0;
  return new ReadableStream<Uint8Array>({
    pull(controller) {
      if (offset >= payload.length) {
        controller.close();
        return;
      }
      controller.enqueue(payload.subarray(offset, offset + STREAM_CHUNK_BYTES));
      offset += STREAM_CHUNK_BYTES;
    },
  });
}

// openpgp returns a stream for streamed input (partial body lengths, RFC 4880
// §4.2.2.4, which GnuPG reads alike) and bytes otherwise.
async function toBytes(written: Uint8Array | ReadableStream<Uint8Array>): Promise<Uint8Array> {
  if (written instanceof Uint8Array) return written;
  const chunks: Uint8Array[] = [];
  const reader = written.getReader();
  for (;;) {
    const { done, value } = await reader.read();
    if (done) break;
    chunks.push(value);
  }
  return concat(chunks);
}

// Bytes in a buffer of their own, exactly their size: not a view into Node's
// shared 8 KiB pool, which a postMessage would clone whole with every copy.
function concat(chunks: Uint8Array[]): Uint8Array {
  const out = new Uint8Array(chunks.reduce((n, c) => n + c.length, 0));
  let at = 0;
  for (const c of chunks) {
    out.set(c, at);
    at += c.length;
  }
  return out;
}

// RFC 4880 §4.2: the packet tag of the first packet, old or new format.
function firstTag(bytes: Uint8Array): number {
  const b = bytes[0] ?? 0;
  if ((b & 0x80) === 0) return -1;
  return b & 0x40 ? b & 0x3f : (b >> 2) & 0x0f;
}

// Length of the first packet's header (RFC 4880 §4.2.1-2; partial lengths count their first octet).
function headerLength(bytes: Uint8Array): number {
  const b = bytes[0] ?? 0;
  if (b & 0x40) {
    const l = bytes[1] ?? 0;
    if (l < 192) return 2; // one-octet length
    if (l < 224) return 3; // two-octet length
    if (l < 255) return 2; // partial body length
    return 6; // five-octet length
  }
  return [2, 3, 5, 1][b & 0x03]!;
}

// RFC 4880 §5.1: a v3 PKESK body is version 3, then the eight-octet key ID.
function assertPkeskFor(packet: Uint8Array, key: openpgp.PublicKey): void {
  const body = headerLength(packet);
  if (firstTag(packet) !== PKESK_TAG || packet[body] !== 3) {
    throw new Error('signAndEncrypt: a session key packet is not a v3 PKESK; refusing to send it');
  }
  const keyId = Buffer.from(packet.subarray(body + 1, body + 9)).toString('hex');
  if (!key.getKeyIDs().some((id) => id.toHex() === keyId)) {
    throw new Error('signAndEncrypt: a session key packet does not belong to the key it was made for; refusing to send it');
  }
}
