/**
 * Test harness around the real `gpg` binary: each GpgHome is a throwaway
 * --homedir with its own agent, so test files can run in parallel.
 */
import { spawn } from 'node:child_process';
import { mkdtemp, readFile, rm } from 'node:fs/promises';
import os from 'node:os';
import path from 'node:path';

/** Result of one gpg invocation. */
export interface GpgResult {
  code: number | null;
  stdout: Buffer;
  stderr: string;
}

/** Options of GpgHome.generateKey. */
export interface GenerateKeyOptions {
  /** 'ed25519' (default: ed25519 primary + cv25519 subkey), 'rsa2048', 'rsa1024', … */
  algo?: string;
  /** gpg expiry for primary and subkey: 'never', 'seconds=N', '1d', an ISO date… */
  expire?: string;
  /** Make a sign-only key. */
  noEncryptionSubkey?: boolean;
}

/** A key made by gpg. */
export interface GeneratedKey {
  fingerprint: string;
  armoredPublic: string;
  /** Fingerprint of the encryption subkey, when one was added. */
  encryptionSubkeyFingerprint?: string;
}

/** What gpg made of an encrypted message. */
export interface DecryptResult {
  plaintext: Buffer;
  /** The --status-fd lines ("[GNUPG:] …"). */
  status: string;
  /** Primary key fingerprint from VALIDSIG, when the signature verified. */
  goodSignatureFrom?: string;
}

/** A throwaway GnuPG home directory. */
export interface GpgHome {
  readonly dir: string;
  /** Run gpg with the harness's standard options; rejects on a non-zero exit unless allowFailure. */
  run(args: string[], input?: string | Buffer, allowFailure?: boolean): Promise<GpgResult>;
  generateKey(email: string, name?: string, opts?: GenerateKeyOptions): Promise<GeneratedKey>;
  exportPublic(fingerprint: string): Promise<string>;
  exportSecret(fingerprint: string): Promise<string>;
  importKey(armored: string): Promise<void>;
  /** Revoke the key with the certificate gpg stored at generation; returns the revoked public key. */
  revoke(fingerprint: string): Promise<string>;
  decrypt(armored: string): Promise<DecryptResult>;
  listPackets(armored: string): Promise<string>;
  /** Key IDs (16 uppercase hex) of the message's public-key-encrypted session key packets. */
  recipientKeyIds(armored: string): Promise<string[]>;
  cleanup(): Promise<void>;
}

const GPG_TIMEOUT_MS = 60_000;

// The agent's socket lives in the homedir when /run/user is absent; sun_path is ~108 bytes.
function shortTmpRoot(): string {
  const tmp = os.tmpdir();
  return tmp.length <= 40 ? tmp : '/tmp';
}

function exec(cmd: string, args: string[], input?: string | Buffer): Promise<GpgResult> {
  return new Promise((resolve, reject) => {
    const child = spawn(cmd, args, { stdio: ['pipe', 'pipe', 'pipe'], env: { ...process.env, LC_ALL: 'C', LANG: 'C' } });
    const out: Buffer[] = [];
    const err: Buffer[] = [];
    const timer = setTimeout(() => child.kill('SIGKILL'), GPG_TIMEOUT_MS);
    child.stdout.on('data', (chunk: Buffer) => out.push(chunk));
    child.stderr.on('data', (chunk: Buffer) => err.push(chunk));
    child.on('error', (e) => {
      clearTimeout(timer);
      reject(e);
    });
    child.on('close', (code) => {
      clearTimeout(timer);
      resolve({ code, stdout: Buffer.concat(out), stderr: Buffer.concat(err).toString('utf8') });
    });
    // gpg may exit before reading all of stdin (e.g. on a parse error).
    child.stdin.on('error', () => undefined);
    child.stdin.end(input ?? '');
  });
}

function statusLines(stderr: string): string {
  return stderr
    .split('\n')
    .filter((line) => line.startsWith('[GNUPG:] '))
    .join('\n');
}

/** Create a fresh GnuPG home with trust model "always" and an empty passphrase. */
export async function createGpgHome(): Promise<GpgHome> {
  const dir = await mkdtemp(path.join(shortTmpRoot(), 'g-'));
  const base = ['--homedir', dir, '--batch', '--no-tty', '--pinentry-mode', 'loopback', '--passphrase', '', '--trust-model', 'always'];

  // One gpg at a time per home: concurrent writers to one keyring/trustdb can hit lock timeouts.
  let queue: Promise<unknown> = Promise.resolve();
  const run = async (args: string[], input?: string | Buffer, allowFailure = false): Promise<GpgResult> => {
    const next = queue.then(() => exec('gpg', [...base, ...args], input));
    queue = next.catch(() => undefined);
    const result = await next;
    if (result.code !== 0 && !allowFailure) {
      throw new Error(`gpg ${args.join(' ')} exited ${result.code}:\n${result.stderr}`);
    }
    return result;
  };

  const exportPublic = async (fingerprint: string): Promise<string> => {
    const { stdout } = await run(['--armor', '--export', fingerprint]);
    const armored = stdout.toString('utf8');
    if (!armored.includes('BEGIN PGP PUBLIC KEY BLOCK')) throw new Error(`gpg exported nothing for ${fingerprint}`);
    return armored;
  };

  const createdKey = (stderr: string, kind: 'P' | 'S' | 'B'): string => {
    const match = new RegExp(`^\\[GNUPG:\\] KEY_CREATED ${kind} ([0-9A-F]{40})`, 'm').exec(stderr);
    if (!match?.[1]) throw new Error(`gpg did not report KEY_CREATED ${kind}:\n${stderr}`);
    return match[1];
  };

  const home: GpgHome = {
    dir,
    run,

    async generateKey(email, name = email.split('@')[0] ?? 'test', opts = {}) {
      const algo = opts.algo ?? 'ed25519';
      const expire = opts.expire ?? 'never';
      const subAlgo = algo === 'ed25519' ? 'cv25519' : algo;
      const gen = await run(['--status-fd', '2', '--quick-gen-key', `${name} <${email}>`, algo, 'sign', expire]);
      const fingerprint = createdKey(gen.stderr, 'P');
      let encryptionSubkeyFingerprint: string | undefined;
      if (!opts.noEncryptionSubkey) {
        const add = await run(['--status-fd', '2', '--quick-add-key', fingerprint, subAlgo, 'encr', expire]);
        encryptionSubkeyFingerprint = createdKey(add.stderr, 'S');
      }
      const armoredPublic = await exportPublic(fingerprint);
      return encryptionSubkeyFingerprint
        ? { fingerprint, armoredPublic, encryptionSubkeyFingerprint }
        : { fingerprint, armoredPublic };
    },

    exportPublic,

    async exportSecret(fingerprint) {
      const { stdout } = await run(['--armor', '--export-secret-keys', fingerprint]);
      return stdout.toString('utf8');
    },

    async importKey(armored) {
      await run(['--import'], armored);
    },

    async revoke(fingerprint) {
      const certFile = path.join(dir, 'openpgp-revocs.d', `${fingerprint}.rev`);
      const cert = await readFile(certFile, 'utf8');
      // gpg prefixes the armor line with ':' so the stored certificate is not imported by accident.
      await run(['--import'], cert.replace(/^:-----BEGIN/m, '-----BEGIN'));
      return exportPublic(fingerprint);
    },

    async decrypt(armored) {
      const result = await run(['--status-fd', '2', '--decrypt'], armored, true);
      const status = statusLines(result.stderr);
      if (!/^\[GNUPG:\] DECRYPTION_OKAY/m.test(status)) {
        throw new Error(`gpg could not decrypt (exit ${result.code}):\n${result.stderr}`);
      }
      // VALIDSIG <signing key fpr> <date> <ts> <expire> <ver> <res> <pk algo> <hash algo> <class> <primary fpr>
      const validsig = /^\[GNUPG:\] VALIDSIG (?:\S+ ){9}([0-9A-F]{40})/m.exec(status);
      const out: DecryptResult = { plaintext: result.stdout, status };
      if (validsig?.[1]) out.goodSignatureFrom = validsig[1];
      return out;
    },

    async listPackets(armored) {
      // Exit status is non-zero when the secret key is missing; the packet listing is still complete.
      const result = await run(['--list-packets'], armored, true);
      return result.stdout.toString('utf8');
    },

    async recipientKeyIds(armored) {
      const listing = await home.listPackets(armored);
      const ids: string[] = [];
      for (const match of listing.matchAll(/^:pubkey enc packet:.*\bkeyid ([0-9A-Fa-f]{16})/gm)) {
        if (match[1]) ids.push(match[1].toUpperCase());
      }
      return ids;
    },

    async cleanup() {
      await exec('gpgconf', ['--homedir', dir, '--kill', 'all']).catch(() => undefined);
      await rm(dir, { recursive: true, force: true, maxRetries: 3 });
    },
  };
  return home;
}
