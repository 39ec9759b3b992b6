/**
 * The armor of a sealed copy (key packets, then the shared payload) written
 * a chunk at a time: the same bytes, line breaks and CRC24 as armoring the
 * concatenation, read back by openpgp and by the real gpg.
 */
import { randomBytes } from 'node:crypto';
import fc from 'fast-check';
import * as openpgp from 'openpgp';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { armorChunks, armorMessage, armoredLength, crc24, crc24Continue } from '../../src/pgp/armor.js';
import { createGpgHome, type GpgHome } from '../helpers/gpg.js';

const SHAPE = /^-----BEGIN PGP MESSAGE-----\r\n\r\n(?:[A-Za-z0-9+/]{64}\r\n)*(?:[A-Za-z0-9+/=]{1,64}\r\n)?=[A-Za-z0-9+/]{4}\r\n-----END PGP MESSAGE-----$/;

/** Base64 payload and checksum of an armor, by plain string handling (independent of the code under test). */
function unarmor(armor: Buffer): { data: Buffer; checksum: string } {
  const lines = armor.toString('latin1').split('\r\n');
  const body = lines.slice(2, -2);
  return { data: Buffer.from(body.join(''), 'base64'), checksum: lines.at(-2)!.slice(1) };
}

const crcBytes = (crc: number): string => Buffer.from([crc >>> 16, (crc >>> 8) & 0xff, crc & 0xff]).toString('base64');

describe('crc24', () => {
  it('matches the CRC-24/OPENPGP check value', () => {
    expect(crc24(Buffer.from('123456789')).toString(16)).toBe('21cf02');
    expect(crc24(Buffer.alloc(0))).toBe(0xb704ce);
  });

  it('continues over a part from that part alone (crc(s, B) = s·x^8|B| xor crc(0, B))', () => {
    fc.assert(
      fc.property(fc.uint8Array({ maxLength: 300 }), fc.uint8Array({ maxLength: 3000 }), (a, b) => {
        const direct = crc24(Buffer.concat([a, b]));
        expect(crc24Continue(crc24(a), b.length, crc24(b, 0))).toBe(direct);
      }),
      { numRuns: 300 },
    );
  });
});

describe('armorChunks', () => {
  it('armors parts exactly as their concatenation, whatever the split (carry across parts, large parts, empty parts)', () => {
    const big = randomBytes(3 * 49_152 + 17); // whole blocks and a tail, through the cached-CRC path
    fc.assert(
      fc.property(
        fc.uint8Array({ maxLength: 700 }),
        fc.array(fc.nat({ max: big.length }), { maxLength: 4 }),
        fc.boolean(),
        (head, cuts, withBig) => {
          const whole = Buffer.concat([head, withBig ? big : Buffer.alloc(0)]);
          const at = [...new Set([0, ...cuts.map((c) => c % (whole.length + 1)), whole.length])].sort((x, y) => x - y);
          const parts = at.slice(1).map((end, i) => whole.subarray(at[i]!, end));
          parts.splice(1, 0, Buffer.alloc(0));
          const armor = armorMessage(parts);
          expect(armor.equals(armorMessage([whole]))).toBe(true);
          expect(armor.length).toBe(armoredLength(whole.length));
          expect(armor.toString('latin1')).toMatch(SHAPE);
          const { data, checksum } = unarmor(armor);
          expect(data.equals(whole)).toBe(true);
          expect(checksum).toBe(crcBytes(crc24(whole)));
        },
      ),
      { numRuns: 60 },
    );
  });

  it('joins a short first part and a large second part without copying the large one (chunks of at most ~64 KiB)', () => {
    const keyPackets = randomBytes(94);
    const shared = randomBytes(1_000_001);
    const chunks = [...armorChunks([keyPackets, shared])];
    expect(Math.max(...chunks.map((c) => c.length))).toBeLessThanOrEqual(66 * 1024);
    const { data } = unarmor(Buffer.concat(chunks));
    expect(data.equals(Buffer.concat([keyPackets, shared]))).toBe(true);
  });

  it('never contains "_" (so no "=_ir_" MIME boundary can occur in it)', () => {
    const armor = armorMessage([randomBytes(5000)]);
    expect(armor.includes('_')).toBe(false);
  });

  it('is read back by openpgp, checksum included', async () => {
    const data = randomBytes(10_000);
    const { data: read } = await openpgp.unarmor(armorMessage([data.subarray(0, 123), data.subarray(123)]).toString('latin1'));
    expect(Buffer.from(read as Uint8Array).equals(data)).toBe(true);
  });
});

// gpg is a test requirement (.ci/run installs it): a missing gpg fails here rather than skipping.
describe('interop with gpg', () => {
  let gpg: GpgHome;
  beforeAll(async () => {
    gpg = await createGpgHome();
  });
  afterAll(async () => {
    await gpg?.cleanup();
  });

  it('gpg --dearmor gives back the bytes for every padding case, and rejects a wrong checksum', async () => {
    for (const length of [1, 2, 3, 47, 48, 49, 100_000]) {
      const data = randomBytes(length);
      const armor = armorMessage([data.subarray(0, 1), data.subarray(1)]);
      const { stdout } = await gpg.run(['--dearmor'], armor);
      expect(stdout.equals(data)).toBe(true);
    }
    const data = randomBytes(300);
    const wrong = armorMessage([data]).toString('latin1').replace(/\r\n=([A-Za-z0-9+/]{4})\r\n/, (_m, crc: string) => `\r\n=${crc === 'AAAA' ? 'AAAB' : 'AAAA'}\r\n`);
    const bad = await gpg.run(['--dearmor'], wrong, true);
    expect(bad.code).not.toBe(0);
    expect(bad.stderr).toMatch(/CRC error/i);
  });
});
