/**
 * Key revocations (issue 10 §7): a revocation certificate (gpg writes one to
 * openpgp-revocs.d/<FPR>.rev when it makes a key) or a revoked copy of a key,
 * checked against a key on file. A revocation is signed by the key it
 * revokes, so it proves itself: openpgp verifies that signature against the
 * stored key before anything is stored, and a revocation of any other key
 * verifies against nothing.
 */
import * as openpgp from 'openpgp';
import { RelayError } from '../errors.js';
import { MAX_PUBLIC_KEY_BYTES } from './keys.js';

/** What an upload holds when it is a revocation. */
export interface RevocationInput {
  /** `certificate`: a bare revocation signature; `revoked-key`: a key carrying one. */
  kind: 'certificate' | 'revoked-key';
  /** One armored certificate per key revocation signature found. */
  certificates: string[];
  /** The revoked key's fingerprint (uppercase hex) when the upload was a key. */
  fingerprint?: string;
}

// gpg prefixes the stored certificate's armor line with ':' so that it is not
// imported by accident; people paste the file as it is.
const GPG_GUARD = /^:(-----BEGIN PGP )/m;

/**
 * Reads `text` as a revocation: undefined when it is an ordinary public key
 * with no key revocation (upload it as a key) or not OpenPGP at all (the key
 * parser says why). Never refuses by itself: whether a revocation applies is
 * for applyRevocation to say against the key on file.
 */
export async function readRevocation(text: string): Promise<RevocationInput | undefined> {
  if (typeof text !== 'string' || Buffer.byteLength(text, 'utf8') > MAX_PUBLIC_KEY_BYTES) return undefined;
  const armored = text.replace(GPG_GUARD, '$1');
  const begins = armored.match(/^-----BEGIN PGP [A-Z ,/0-9]+-----\s*$/gm) ?? [];
  // One block, and never secret material: the key parser refuses those with its own words.
  if (begins.length !== 1 || begins[0]!.includes('PRIVATE')) return undefined;
  let key: openpgp.Key | undefined;
  try {
    key = await openpgp.readKey({ armoredKey: armored });
  } catch {
    key = undefined;
  }
  if (key !== undefined) {
    if (key.isPrivate() || key.revocationSignatures.length === 0) return undefined;
    const certificates = key.revocationSignatures.map((signature) => {
      const packets = new openpgp.PacketList<openpgp.SignaturePacket>();
      packets.push(signature);
      return new openpgp.Signature(packets).armor();
    });
    return { kind: 'revoked-key', certificates, fingerprint: key.getFingerprint().toUpperCase() };
  }
  // Not a key: a bare revocation certificate is one signature packet under PUBLIC KEY BLOCK (or SIGNATURE) armor.
  if (!/^-----BEGIN PGP (PUBLIC KEY BLOCK|SIGNATURE)-----/.test(begins[0]!)) return undefined;
  return (await holdsKeyRevocation(armored)) ? { kind: 'certificate', certificates: [armored] } : undefined;
}

// openpgp reads packets against a table of the classes it may build; its
// type says Map, but it is indexed as a plain object (util.constructAllowedPackets).
const SIGNATURES_ONLY = { [openpgp.enums.packet.signature]: openpgp.SignaturePacket } as unknown as Parameters<typeof openpgp.PacketList.fromBinary>[1];

/** True when `armored` is nothing but signature packets, one of them a key revocation: anything else is not a certificate (and the key parser says what it is). */
async function holdsKeyRevocation(armored: string): Promise<boolean> {
  try {
    const { data } = await openpgp.unarmor(armored);
    const packets = await openpgp.PacketList.fromBinary(data, SIGNATURES_ONLY);
    return packets.length > 0 && packets.every((p) => p instanceof openpgp.SignaturePacket) && packets.some((p) => (p as openpgp.SignaturePacket).signatureType === openpgp.enums.signature.keyRevocation);
  } catch {
    return false;
  }
}

/** Why a revocation does not apply to a key. */
export type RevocationMismatch = 'other_key' | 'bad_signature' | 'not_a_revocation';

/**
 * `key` with the first of `revocation`'s certificates that verifies against
 * it at `now`, or why none does. openpgp checks that the certificate is a key
 * revocation issued by this key and that its signature verifies.
 */
export async function applyRevocation(key: openpgp.PublicKey, revocation: RevocationInput, now: Date): Promise<openpgp.PublicKey | RevocationMismatch> {
  if (revocation.fingerprint !== undefined && revocation.fingerprint !== key.getFingerprint().toUpperCase()) return 'other_key';
  let why: RevocationMismatch = 'not_a_revocation';
  for (const certificate of revocation.certificates) {
    try {
      return (await openpgp.revokeKey({ key, revocationCertificate: certificate, date: now, format: 'object' })).publicKey;
    } catch (err) {
      const message = err instanceof Error ? err.message : '';
      if (/does not match key/i.test(message)) why = why === 'bad_signature' ? why : 'other_key';
      else if (/verify/i.test(message)) why = 'bad_signature';
    }
  }
  return why;
}

/** The refusal for a revocation that applies to no key on file for `email`. */
export function revocationMismatch(email: string, why: RevocationMismatch, onFile: readonly string[]): RelayError {
  const keys = onFile.length === 0 ? 'there is no key on file' : `the key(s) on file are ${onFile.join(', ')}`;
  const reason =
    why === 'bad_signature'
      ? 'its signature does not verify against the key on file'
      : why === 'other_key'
        ? `it revokes another key: for ${email} ${keys}`
        : 'it holds no key revocation signature';
  return new RelayError('revocation_mismatch', `This revocation cannot be applied to ${email}: ${reason}. Nothing changed; send the revocation certificate of the key on file (gpg keeps it in openpgp-revocs.d/<fingerprint>.rev), or upload a new key.`, {
    details: { reason: why, fingerprints: [...onFile] },
  });
}
