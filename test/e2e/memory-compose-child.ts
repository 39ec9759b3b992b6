/**
 * Child process of test/e2e/memory.test.ts: composes one encrypted message
 * with a large attachment for one visible recipient and many Bcc recipients
 * (src/pgp/pgp-mime.ts, through the encryption worker pool as main.ts runs
 * it), writes every copy out a chunk at a time as delivery would, and reports
 * its own peak RSS growth over that step. A fresh process, so nothing else in
 * the test run moves the figure.
 */
import { createHash, randomBytes } from 'node:crypto';
import { readFileSync, writeFileSync } from 'node:fs';
import * as openpgp from 'openpgp';
import type { MessageContent } from '../../src/mime/compose.js';
import { composeSealed, renderCopyChunks, type CopyRequest, type Encryptor } from '../../src/pgp/pgp-mime.js';
import { EncryptionPool } from '../../src/pgp/pool.js';

/** What the test passes (JSON in argv[2]). */
export interface ComposeChildArgs {
  attachmentBytes: number;
  bcc: number;
}

/** The child's answer, one JSON line on stdout. */
export interface ComposeChildResult {
  baseRss: number;
  peakGrowth: number;
  /** Compose and encrypt once, then write every copy out. */
  ms: number;
  copies: Array<{ recipients: string[]; keyPackets: number; bytes: number; sha256: string }>;
  sharedBytes: number;
}

function rss(): { rss: number; peak: number } {
  const status = readFileSync('/proc/self/status', 'utf8');
  const kb = (name: string): number => Number(new RegExp(`^${name}:\\s+(\\d+) kB`, 'm').exec(status)?.[1] ?? 0) * 1024;
  return { rss: kb('VmRSS'), peak: kb('VmHWM') };
}

const collect = (globalThis as { gc?: () => void }).gc ?? (() => undefined);

async function main(): Promise<void> {
  const args = JSON.parse(process.argv[2] ?? '{}') as ComposeChildArgs;
  const key = async (email: string) => (await openpgp.generateKey({ userIDs: [{ email }], format: 'object' })).publicKey;
  const relay = (await openpgp.generateKey({ userIDs: [{ email: 'relay@corp.example' }], format: 'object' })).privateKey;
  const counsel = await key('counsel@lawfirm.example');
  const bccKeys = await Promise.all(Array.from({ length: args.bcc }, (_, i) => key(`bcc${i}@partner.example`)));
  const copies: CopyRequest[] = [
    { recipients: ['counsel@lawfirm.example'], keys: [counsel] },
    ...bccKeys.map((k, i) => ({ recipients: [`bcc${i}@partner.example`], keys: [k] })),
  ];
  const pool = new EncryptionPool(relay, { size: 1 });
  const encryptor: Encryptor = pool;
  const content = (attachment: Buffer): MessageContent => ({
    messageId: '<5b0c7a52-8f41-4d1e-a7c2-9e3b6f1d2a40@corp.example>',
    date: new Date(),
    from: { name: 'Incident Commander', address: 'ic@corp.example' },
    to: [{ name: 'Outside Counsel', address: 'counsel@lawfirm.example' }],
    cc: [],
    topic: 'Disk image',
    text: 'Image of the compromised host attached.',
    attachments: [{ filename: 'host.img', contentType: 'application/octet-stream', content: attachment }],
  });
  // Warm-up: the worker started, every key parsed and cached there, code loaded.
  const warm = await composeSealed(content(randomBytes(1000)), copies, encryptor);
  for (const copy of warm.copies) for (const _ of renderCopyChunks(warm.envelope, copy.keyPackets, warm.shared));
  // The attachment exists before composing starts (decoded from the request).
  const attachment = randomBytes(args.attachmentBytes);
  collect();
  writeFileSync('/proc/self/clear_refs', '5'); // proc(5): resets VmHWM to the current RSS
  const base = rss().rss;
  const started = performance.now();

  const sealed = await composeSealed(content(attachment), copies, encryptor);
  const written: ComposeChildResult['copies'] = [];
  for (const copy of sealed.copies) {
    // As a delivery would stream it to the upstream: a chunk at a time.
    const hash = createHash('sha256');
    let bytes = 0;
    for (const chunk of renderCopyChunks(sealed.envelope, copy.keyPackets, sealed.shared)) {
      hash.update(chunk);
      bytes += chunk.length;
    }
    written.push({ recipients: copy.recipients, keyPackets: copy.keyPackets.length, bytes, sha256: hash.digest('hex') });
  }
  const peakGrowth = rss().peak - base;
  const ms = Math.round(performance.now() - started);
  await pool.close();
  const result: ComposeChildResult = { baseRss: base, peakGrowth, ms, copies: written, sharedBytes: sealed.shared.length };
  process.stdout.write(`${JSON.stringify(result)}\n`);
}

main().catch((err: unknown) => {
  process.stderr.write(`${err instanceof Error ? (err.stack ?? err.message) : String(err)}\n`);
  process.exitCode = 1;
});
