/**
 * The in-process references each end-to-end figure is divided by: raw
 * openpgp.js sign+encrypt of the same payload to the same keys, and plain MIME
 * composition alone. Sequential, one thread: the ceiling of one Node thread.
 */
import * as openpgp from 'openpgp';
import type { Encryptor } from '../src/pgp/pgp-mime.js';
import { now, round } from './lib.js';

/** Operations per second of a reference loop. */
export interface ReferenceRate {
  rate: number;
  count: number;
  ms: number;
}

async function timeLoop(op: () => unknown, minMs: number, minCount: number): Promise<ReferenceRate> {
  for (let i = 0; i < Math.min(10, minCount); i++) await op(); // JIT and key caches
  let count = 0;
  const start = now();
  while (now() - start < minMs || count < minCount) {
    await op();
    count += 1;
  }
  const ms = now() - start;
  return { rate: round((count * 1000) / ms, 1), count, ms: round(ms, 0) };
}

/**
 * Raw openpgp.encrypt with signing, as src/pgp/encrypt.ts calls it, of
 * `payload` to `keys`: the best of `rounds` timed loops, since a ceiling
 * measured low (another process busy for a moment) would flatter the ratio.
 */
export async function rawEncryptRate(payload: Uint8Array, keys: openpgp.PublicKey[], signingKey: openpgp.PrivateKey, rounds = 3, minMs = 2000): Promise<ReferenceRate & { rounds: number[] }> {
  const results: ReferenceRate[] = [];
  for (let i = 0; i < rounds; i++) {
    results.push(
      await timeLoop(
        async () => {
          const date = new Date();
          const message = await openpgp.createMessage({ binary: payload, date });
          return openpgp.encrypt({ message, encryptionKeys: keys, signingKeys: signingKey, date, format: 'armored' });
        },
        minMs,
        30,
      ),
    );
  }
  const best = results.reduce((a, b) => (b.rate > a.rate ? b : a));
  return { ...best, rounds: results.map((r) => r.rate) };
}

/** Calls of `compose` per second. */
export function composeRate(compose: () => Buffer, minMs = 1500): Promise<ReferenceRate> {
  return timeLoop(compose, minMs, 100);
}

/** Sign+encrypt through `encryptor` (the worker pool) with `concurrency` in flight and nothing else around it: the crypto ceiling of the whole machine. */
export async function encryptorRate(encryptor: Encryptor, payload: Uint8Array, keys: openpgp.PublicKey[], concurrency: number, minMs = 3000): Promise<ReferenceRate> {
  const one = (): Promise<unknown> => encryptor.seal(Uint8Array.from(payload), [keys], new Date());
  await Promise.all(Array.from({ length: concurrency * 4 }, one)); // workers started, keys cached
  let count = 0;
  const start = now();
  const lane = async (): Promise<void> => {
    while (now() - start < minMs) {
      await one();
      count += 1;
    }
  };
  await Promise.all(Array.from({ length: concurrency }, lane));
  const ms = now() - start;
  return { rate: round((count * 1000) / ms, 1), count, ms: round(ms, 0) };
}
