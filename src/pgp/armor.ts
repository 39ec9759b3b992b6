/**
 * ASCII armor (RFC 4880 §6, RFC 9580 §6) of an OpenPGP message given as
 * several byte ranges, produced a chunk at a time. One copy of a sealed
 * message is its own key packets followed by the shared encrypted payload:
 * armoring them as parts means the payload is never copied into a per-copy
 * buffer, and the CRC24 over the payload is computed once, not per copy.
 *
 * Output is CRLF text of the base64 alphabet plus the BEGIN/END lines: no
 * `_` can occur in it, so a `=_ir_…` MIME boundary never does either.
 */

const BEGIN = '-----BEGIN PGP MESSAGE-----\r\n\r\n';
const END = '-----END PGP MESSAGE-----';
// 48 bytes make one 64-character line, as GnuPG writes them (RFC 4880 §6.3: at most 76).
const LINE_BYTES = 48;
const LINE_CHARS = 64;
// Whole lines per chunk: about 64 KiB of armor at a time.
const CHUNK_LINES = 1024;
const CHUNK_BYTES = LINE_BYTES * CHUNK_LINES;

// ---------------------------------------------------------------- CRC24

// RFC 4880 §6.1: generator 0x864CFB, initial value 0xB704CE, MSB first, no final XOR.
const CRC24_INIT = 0xb704ce;
const CRC24_POLY = 0x1864cfb;
const CRC24_TABLE = (() => {
  const table = new Int32Array(256);
  for (let i = 0; i < 256; i++) {
    let c = i << 16;
    for (let j = 0; j < 8; j++) {
      c <<= 1;
      if (c & 0x1000000) c ^= CRC24_POLY;
    }
    table[i] = c & 0xffffff;
  }
  return table;
})();

/** The CRC24 register after feeding `data` into a register holding `crc` (RFC 4880 §6.1; `crc` defaults to the initial value). */
export function crc24(data: Uint8Array, crc = CRC24_INIT): number {
  let c = crc;
  for (let i = 0; i < data.length; i++) c = ((c << 8) ^ CRC24_TABLE[((c >>> 16) ^ data[i]!) & 0xff]!) & 0xffffff;
  return c;
}

// Product of two residues mod the CRC polynomial, in GF(2)[x].
function mulMod(a: number, b: number): number {
  let product = 0;
  for (let i = 23; i >= 0; i--) {
    product <<= 1;
    if (product & 0x1000000) product ^= CRC24_POLY;
    if ((b >>> i) & 1) product ^= a;
  }
  return product & 0xffffff;
}

// x^(8·bytes) mod the CRC polynomial, by squaring: what `bytes` bytes do to a register.
function shiftFor(bytes: number): number {
  let result = 1;
  let square = 1 << 8; // x^8
  for (let n = bytes; n > 0; n = Math.floor(n / 2)) {
    if (n % 2 === 1) result = mulMod(result, square);
    square = mulMod(square, square);
  }
  return result;
}

/**
 * The register after `bytes` more bytes whose own CRC from a zero register is
 * `zeroCrc`. The CRC is linear: crc(s, B) = s·x^(8|B|) ⊕ crc(0, B), so the
 * shared payload's part is computed once and each copy costs O(log |B|).
 */
export function crc24Continue(crc: number, bytes: number, zeroCrc: number): number {
  return (mulMod(crc, shiftFor(bytes)) ^ zeroCrc) & 0xffffff;
}

// crc24(part, 0) of each large part already seen: a message's copies all end in the same payload.
const zeroCrcs = new WeakMap<Uint8Array, number>();

function zeroCrcOf(part: Uint8Array): number {
  let crc = zeroCrcs.get(part);
  if (crc === undefined) {
    crc = crc24(part, 0);
    // Only worth remembering for parts that cost something to scan again.
    if (part.length >= CHUNK_BYTES) zeroCrcs.set(part, crc);
  }
  return crc;
}

// ---------------------------------------------------------------- armor

/** Bytes the armor of `length` bytes of packets takes (BEGIN line to END line, no final CRLF). */
export function armoredLength(length: number): number {
  const chars = Math.ceil(length / 3) * 4;
  const lines = Math.ceil(chars / LINE_CHARS);
  return BEGIN.length + chars + lines * 2 + '=XXXX\r\n'.length + END.length;
}

/** Base64 of `block`, in 64-character lines, each ended by CRLF. */
function lines(block: Uint8Array): Buffer {
  const b64 = Buffer.from(block.buffer, block.byteOffset, block.byteLength).toString('base64');
  const count = Math.ceil(b64.length / LINE_CHARS);
  const out = Buffer.allocUnsafe(b64.length + count * 2);
  let at = 0;
  for (let i = 0; i < b64.length; i += LINE_CHARS) {
    at += out.write(b64.slice(i, i + LINE_CHARS), at, 'latin1');
    out[at++] = 0x0d;
    out[at++] = 0x0a;
  }
  return out;
}

/**
 * The armored message made of `parts` concatenated, as CRLF chunks of about
 * 64 KiB: BEGIN line, blank line, base64 lines, the CRC24 line (kept because
 * GnuPG before 2.4 can misread a checksum-less armor, dev.gnupg.org/T7071),
 * END line without a final CRLF. No part is copied whole.
 */
export function* armorChunks(parts: readonly Uint8Array[]): Generator<Buffer> {
  yield Buffer.from(BEGIN, 'latin1');
  let crc = CRC24_INIT;
  // Bytes of an unfinished block carried across a part boundary (base64 works in 3-byte groups).
  const carry = Buffer.allocUnsafe(CHUNK_BYTES);
  let carried = 0;
  for (const part of parts) {
    crc = part.length >= CHUNK_BYTES ? crc24Continue(crc, part.length, zeroCrcOf(part)) : crc24(part, crc);
    let offset = 0;
    if (carried > 0) {
      const take = Math.min(CHUNK_BYTES - carried, part.length);
      carry.set(part.subarray(0, take), carried);
      carried += take;
      offset = take;
      if (carried < CHUNK_BYTES) continue;
      yield lines(carry);
      carried = 0;
    }
    // Whole blocks straight from the part, as views.
    for (; offset + CHUNK_BYTES <= part.length; offset += CHUNK_BYTES) yield lines(part.subarray(offset, offset + CHUNK_BYTES));
    carry.set(part.subarray(offset), 0);
    carried = part.length - offset;
  }
  if (carried > 0) yield lines(carry.subarray(0, carried));
  const checksum = Buffer.from([crc >>> 16, (crc >>> 8) & 0xff, crc & 0xff]).toString('base64');
  yield Buffer.from(`=${checksum}\r\n${END}`, 'latin1');
}

/** The armored message made of `parts` concatenated, as one CRLF buffer. */
export function armorMessage(parts: readonly Uint8Array[]): Buffer {
  return Buffer.concat([...armorChunks(parts)]);
}
