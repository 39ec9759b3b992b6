/**
 * PGP/MIME (RFC 3156) of one message and all its copies: the protected part
 * with its headers is signed by the relay key and encrypted once; each copy
 * (the visible recipients' one, one per Bcc recipient) gets only its own
 * session key packets, and is written on demand as envelope head, armor of
 * (key packets, shared payload), envelope tail.
 *
 * The sign+encrypt step runs wherever the Encryptor runs it: in this thread,
 * or in the worker pool (src/pgp/pool.ts), with the same bytes either way.
 */
import type { PrivateKey, PublicKey } from 'openpgp';
import { composeEncryptedEnvelopeParts, composeProtectedPart, type EnvelopeParts, type MessageContent } from '../mime/compose.js';
import { armorChunks, armoredLength } from './armor.js';
import { sealPayload, type SealedParts } from './encrypt.js';

/** Signs with the relay key and encrypts once; wraps the session key for each copy's keys. */
export interface Encryptor {
  /** The fingerprint of the key it signs with (uppercase hex), which every encrypted copy names in its OpenPGP header. */
  readonly signerFingerprint: string;
  /**
   * Takes ownership of `payload` (its memory may be moved to another thread).
   * `copies[i]` are the keys that may read copy i; the answer's keyPackets[i] is that copy's.
   */
  seal(payload: Uint8Array, copies: PublicKey[][], date: Date): Promise<SealedParts>;
}

/** An Encryptor that works in the calling thread. */
export function inThreadEncryptor(signingKey: PrivateKey): Encryptor {
  return { signerFingerprint: signingKey.getFingerprint().toUpperCase(), seal: (payload, copies, date) => sealPayload(payload, { copies, signingKey, date }) };
}

/** One copy of a message to seal: its envelope recipients and the keys that may read it. */
export interface CopyRequest {
  recipients: string[];
  keys: PublicKey[];
}

/** One copy of a sealed message: who it goes to, and the session key packets that let exactly their keys read it. */
export interface SealedCopy {
  recipients: string[];
  /** PKESK packets (binary, a few hundred bytes per key). */
  keyPackets: Uint8Array;
}

/**
 * An encrypted message and all its copies, the shared payload held once. To
 * queue it: store `envelope` and `shared` once per message and `keyPackets`
 * per delivery; renderCopy / renderCopyChunks write a copy when it is sent.
 */
export interface SealedMessage {
  /** The outer RFC 3156 bytes around the armor, identical for every copy (bare addresses, fixed subject). */
  envelope: EnvelopeParts;
  /** The signed and encrypted protected part: one SEIPD packet. */
  shared: Uint8Array;
  copies: SealedCopy[];
}

/** The reply headers the outer (clear) headers of an encrypted message may carry; absent ones are left out there. */
export interface OuterReferences {
  inReplyTo?: string | undefined;
  references?: string[] | undefined;
}

/**
 * Composes, signs and encrypts `content` once, for every copy in `copies`.
 * The protected headers carry `content`'s In-Reply-To and References; the
 * clear outer headers only those in `outer` (default: the same).
 */
export async function composeSealed(content: MessageContent, copies: CopyRequest[], encryptor: Encryptor, outer?: OuterReferences): Promise<SealedMessage> {
  // Headers first: a value the composer refuses costs no encryption.
  const envelope = composeEncryptedEnvelopeParts(outer === undefined ? content : { ...content, inReplyTo: outer.inReplyTo, references: outer.references }, {
    fingerprint: encryptor.signerFingerprint,
  });
  const sealed = await encryptor.seal(composeProtectedPart(content), copies.map((c) => c.keys), content.date);
  if (sealed.keyPackets.length !== copies.length) throw new Error('seal: one set of key packets per copy was expected');
  return {
    envelope,
    shared: sealed.shared,
    copies: copies.map((c, i) => ({ recipients: [...c.recipients], keyPackets: sealed.keyPackets[i]! })),
  };
}

/**
 * One copy's full RFC 3156 message, a chunk (about 64 KiB) at a time: for
 * streaming it to an upstream or a file without holding it whole. The shared
 * payload is read, never copied whole.
 */
export function* renderCopyChunks(envelope: EnvelopeParts, keyPackets: Uint8Array, shared: Uint8Array): Generator<Buffer> {
  yield envelope.head;
  yield* armorChunks([keyPackets, shared]);
  yield envelope.tail;
}

/** One copy's full RFC 3156 message as one buffer. */
export function renderCopy(envelope: EnvelopeParts, keyPackets: Uint8Array, shared: Uint8Array): Buffer {
  const out = Buffer.allocUnsafe(renderedCopyLength(envelope, keyPackets.length, shared.length));
  let at = 0;
  for (const chunk of renderCopyChunks(envelope, keyPackets, shared)) at += chunk.copy(out, at);
  if (at !== out.length) throw new Error('renderCopy: rendered length differs from the computed one');
  return out;
}

/** The exact byte length of a rendered copy. */
export function renderedCopyLength(envelope: EnvelopeParts, keyPacketBytes: number, sharedBytes: number): number {
  return envelope.head.length + armoredLength(keyPacketBytes + sharedBytes) + envelope.tail.length;
}

/** The encrypted message for `content`, readable only with one of `encryptionKeys` (one copy). */
export async function composeEncrypted(content: MessageContent, encryptionKeys: PublicKey[], encryptor: Encryptor): Promise<Buffer> {
  const sealed = await composeSealed(content, [{ recipients: [], keys: encryptionKeys }], encryptor);
  return renderCopy(sealed.envelope, sealed.copies[0]!.keyPackets, sealed.shared);
}
