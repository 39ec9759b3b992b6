/**
 * Sequoia (`sq`, a second OpenPGP implementation, from Debian) reads what the
 * relay sends, as GnuPG does: each copy of a message encrypted once opens
 * with its own recipient's key and verifies as signed by the relay key, and
 * with no other key; a large message (streamed, with partial body lengths)
 * too. Keys are made by sq itself, so nothing here is openpgp.js reading its
 * own output. `.ci/run` installs sq; without it this file fails, it does not skip.
 */
import { execFile } from 'node:child_process';
import { mkdtemp, rm, writeFile } from 'node:fs/promises';
import os from 'node:os';
import path from 'node:path';
import { simpleParser } from 'mailparser';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import type { MessageContent } from '../../src/mime/compose.js';
import { parsePublicKey } from '../../src/pgp/keys.js';
import { composeSealed, inThreadEncryptor, renderCopy } from '../../src/pgp/pgp-mime.js';
import type { RelayKey } from '../../src/pgp/relay-key.js';
import { armoredPartOf } from '../helpers/pgp-mime.js';
import { sharedRelayKey } from '../helpers/relay.js';

interface SqResult {
  code: number;
  stdout: Buffer;
  stderr: string;
}

function sq(args: string[], cwd: string): Promise<SqResult> {
  return new Promise((resolve, reject) => {
    execFile('sq', args, { cwd, encoding: 'buffer', maxBuffer: 64 * 1024 * 1024, timeout: 60_000 }, (err, stdout, stderr) => {
      if (err && (err as NodeJS.ErrnoException).code === 'ENOENT') {
        reject(new Error('sq (Sequoia) is not installed: apt-get install sq (.ci/run does)'));
        return;
      }
      resolve({ code: err ? Number((err as { code?: unknown }).code ?? 1) || 1 : 0, stdout, stderr: stderr.toString('utf8') });
    });
  });
}

let dir: string;
let relay: RelayKey;
const certs = new Map<string, string>();

beforeAll(async () => {
  dir = await mkdtemp(path.join(os.tmpdir(), 'sq-'));
  relay = await sharedRelayKey();
  await writeFile(path.join(dir, 'relay.cert'), relay.publicArmored);
  for (const who of ['counsel', 'dfir']) {
    const made = await sq(['key', 'generate', '--userid', `<${who}@partner.example>`, '--export', `${who}.key`], dir);
    expect(made.code, made.stderr).toBe(0);
    const cert = await sq(['key', 'extract-cert', `${who}.key`], dir);
    expect(cert.code, cert.stderr).toBe(0);
    certs.set(who, cert.stdout.toString('utf8'));
  }
}, 60_000);

afterAll(async () => {
  await rm(dir, { recursive: true, force: true });
});

function content(text: string, attachment?: Buffer): MessageContent {
  return {
    messageId: '<sq-interop@corp.example>',
    date: new Date(),
    from: { name: 'Incident Commander', address: 'ic@corp.example' },
    to: [{ name: 'Counsel', address: 'counsel@partner.example' }],
    cc: [],
    topic: 'Briefing',
    text,
    attachments: attachment ? [{ filename: 'image.bin', contentType: 'application/octet-stream', content: attachment }] : [],
  };
}

async function decryptWith(who: string, armored: string): Promise<SqResult> {
  const file = path.join(dir, `msg-${Math.random().toString(36).slice(2)}.asc`);
  await writeFile(file, armored);
  return sq(['decrypt', '--recipient-key', `${who}.key`, '--signer-cert', 'relay.cert', file], dir);
}

describe('Sequoia reads the relay\'s PGP/MIME', () => {
  it.each([
    ['a short message', 'Call at 3pm.', undefined],
    ['a large one (streamed, partial body lengths)', 'See the image.', Buffer.alloc(1_500_000, 'disk image ')],
  ])('%s: each copy opens with its own key, verified as the relay\'s, and with no other', async (_name, text, attachment) => {
    const counsel = (await parsePublicKey(certs.get('counsel')!)).key;
    const dfir = (await parsePublicKey(certs.get('dfir')!)).key;
    const sealed = await composeSealed(
      content(text, attachment),
      [
        { recipients: ['counsel@partner.example'], keys: [counsel] },
        { recipients: ['dfir@partner.example'], keys: [dfir] },
      ],
      inThreadEncryptor(relay.privateKey),
    );
    const [visible, bcc] = sealed.copies.map((c) => renderCopy(sealed.envelope, c.keyPackets, sealed.shared)) as [Buffer, Buffer];
    for (const [who, copy, other] of [
      ['counsel', visible, bcc],
      ['dfir', bcc, visible],
    ] as const) {
      const opened = await decryptWith(who, await armoredPartOf(copy));
      expect(opened.code, opened.stderr).toBe(0);
      // sq names the signer and says the signature is good.
      expect(opened.stderr).toMatch(/Good signature/i);
      // sq names the signing key by its key id: for the relay's v4 key, the fingerprint's last 16 hex digits.
      expect(opened.stderr).toContain(`Good signature from ${relay.privateKey.getKeyID().toHex().toUpperCase()}`);
      expect(relay.fingerprint.endsWith(relay.privateKey.getKeyID().toHex().toUpperCase())).toBe(true);
      const inner = await simpleParser(opened.stdout);
      expect(inner.subject).toBe('Attorney Work Project');
      expect(inner.text).toContain(`Topic: Briefing`);
      if (attachment) expect(inner.attachments[0]!.content.equals(attachment)).toBe(true);
      const refused = await decryptWith(who, await armoredPartOf(other));
      expect(refused.code).not.toBe(0);
    }
  }, 60_000);
});
