/**
 * Reference for the large-attachment scenario, in a fresh process: what
 * composing the protected MIME part and openpgp.js sign+encrypt of it cost in
 * time and peak memory on their own, with no HTTP, JSON or SQLite around them.
 */
import { randomBytes } from 'node:crypto';
import { readFileSync } from 'node:fs';
import * as openpgp from 'openpgp';
import { fromDist, now, resetPeakRss, round, rssNow } from './lib.js';

/** What run.ts passes (JSON in argv[2]). */
export interface RawLargeArgs {
  /** JSON file: { relayPrivate: armored, recipients: armored[] }. */
  keysFile: string;
  attachmentBytes: number;
}

/** The child's answer. */
export interface RawLargeResult {
  type: 'raw-large';
  composeMs: number;
  composePeakGrowth: number;
  encryptMs: number;
  encryptPeakGrowth: number;
  payloadBytes: number;
  armoredBytes: number;
}

async function main(): Promise<void> {
  const args = JSON.parse(process.argv[2] ?? '{}') as RawLargeArgs;
  const keys = JSON.parse(readFileSync(args.keysFile, 'utf8')) as { relayPrivate: string; recipients: string[] };
  const { composeProtectedPart } = await fromDist<typeof import('../src/mime/compose.js')>('mime/compose.js');
  const signingKey = await openpgp.readPrivateKey({ armoredKey: keys.relayPrivate });
  const encryptionKeys = await Promise.all(keys.recipients.map((armoredKey) => openpgp.readKey({ armoredKey })));
  const attachment = randomBytes(args.attachmentBytes);
  // Warm openpgp with a small message so its code and WebCrypto are loaded before the baseline.
  await openpgp.encrypt({ message: await openpgp.createMessage({ binary: new Uint8Array(16) }), encryptionKeys, signingKeys: signingKey });
  const content = {
    messageId: '<6f1c1d1e-0b7a-4b8e-9a55-3f6f0e0c2b12@corp.example>',
    date: new Date(),
    from: { address: 'ic@corp.example' },
    to: [{ address: 'counsel@lawfirm.example' }],
    cc: [],
    text: 'See attached.',
    attachments: [{ filename: 'disk-image.bin', contentType: 'application/octet-stream', content: attachment }],
  };

  resetPeakRss();
  let base = rssNow().rss;
  let t = now();
  const payload = composeProtectedPart(content);
  const composeMs = now() - t;
  const composePeakGrowth = rssNow().peak - base;

  resetPeakRss();
  base = rssNow().rss;
  t = now();
  const message = await openpgp.createMessage({ binary: payload, date: content.date });
  const armored = await openpgp.encrypt({ message, encryptionKeys, signingKeys: signingKey, date: content.date, format: 'armored' });
  const encryptMs = now() - t;
  const encryptPeakGrowth = rssNow().peak - base;

  const result: RawLargeResult = {
    type: 'raw-large',
    composeMs: round(composeMs, 0),
    composePeakGrowth,
    encryptMs: round(encryptMs, 0),
    encryptPeakGrowth,
    payloadBytes: payload.length,
    armoredBytes: armored.length,
  };
  process.send?.(result, undefined, undefined, () => process.disconnect?.());
}

main().catch((err: unknown) => {
  process.send?.({ type: 'error', error: err instanceof Error ? (err.stack ?? err.message) : String(err) });
  process.exitCode = 1;
});
