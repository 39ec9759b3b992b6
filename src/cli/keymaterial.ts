/**
 * Public keys the user hands the CLI: from a file (`--key FILE`) or from
 * their GnuPG keyring (`--key-from-gpg EMAIL`, `gpg --export --armor`).
 * Checked locally before anything is sent: exactly one armored public key,
 * and never a secret key, which must not leave the machine at all. The relay
 * does the full usability check (SPEC §2) when it stores the key.
 */
import { spawn } from 'node:child_process';
import fs from 'node:fs';
import { CliError, EXIT, usageError } from './exit.js';

/** The relay refuses larger keys (src/pgp/keys.ts MAX_PUBLIC_KEY_BYTES); reading more is pointless. */
export const MAX_KEY_BYTES = 64 * 1024;

const GPG_TIMEOUT_MS = 30_000;

/** A public key ready to send, with what the user should see about it. */
export interface PublicKeyMaterial {
  armored: string;
  fingerprint: string;
  /** Where it came from, for messages: the file name or "gpg (<email>)". */
  source: string;
}

// A plain address: no spaces, angle brackets or leading dash, so it can be
// neither a gpg option nor break out of the <…> exact-match form.
const PLAIN_ADDRESS = /^[^\s<>@-][^\s<>@]*@[^\s<>@]+$/;

/**
 * The environment for a child process: the caller's, minus every
 * INCIDENT_RELAY_* variable, so the token never reaches gpg (or anything gpg starts).
 */
export function childEnv(env: NodeJS.ProcessEnv): NodeJS.ProcessEnv {
  return Object.fromEntries(Object.entries(env).filter(([name]) => !name.startsWith('INCIDENT_RELAY_')));
}

/**
 * Checks armored text is exactly one public key and returns its fingerprint.
 * Secret keys are refused before openpgp even parses them.
 */
export async function inspectPublicKey(armored: string, source: string): Promise<PublicKeyMaterial> {
  const begins = armored.match(/^-----BEGIN PGP [A-Z ,/0-9]+-----\s*$/gm) ?? [];
  if (begins.some((line) => line.includes('PRIVATE KEY'))) {
    throw new CliError('secret_key', `${source} holds a PRIVATE key; it was not sent. Only the public key goes to the relay.`, EXIT.failure, 'export the public key: gpg --export --armor EMAIL > key.asc');
  }
  if (begins.length === 0) {
    throw new CliError('not_a_key', `${source} is not an ASCII-armored OpenPGP public key.`, EXIT.failure, 'export it with: gpg --export --armor EMAIL > key.asc');
  }
  if (begins.length > 1) {
    throw new CliError('several_keys', `${source} holds ${begins.length} armored blocks; the relay takes exactly one public key.`, EXIT.failure);
  }
  // Loaded here only: the other commands start faster without openpgp.
  const openpgp = await import('openpgp');
  let keys: Awaited<ReturnType<typeof openpgp.readKeys>>;
  try {
    keys = await openpgp.readKeys({ armoredKeys: armored });
  } catch {
    throw new CliError('not_a_key', `${source} could not be read as an OpenPGP public key.`, EXIT.failure, 'export it again with: gpg --export --armor EMAIL > key.asc');
  }
  if (keys.length !== 1) {
    const list = keys.map((k) => k.getFingerprint().toUpperCase()).join(', ');
    throw new CliError('several_keys', `${source} holds ${keys.length} keys (${list}); the relay takes exactly one.`, EXIT.failure, 'export the one you mean: gpg --export --armor FINGERPRINT > key.asc, then use --key key.asc');
  }
  if (keys[0]!.isPrivate()) {
    throw new CliError('secret_key', `${source} holds a PRIVATE key; it was not sent.`, EXIT.failure);
  }
  return { armored, fingerprint: keys[0]!.getFingerprint().toUpperCase(), source };
}

/** Reads `--key FILE` (`-` for stdin is handled by the caller), at most MAX_KEY_BYTES. */
export function readKeyFile(file: string): string {
  let fd: number;
  try {
    fd = fs.openSync(file, 'r');
  } catch (err) {
    throw new CliError('key_file', `Cannot read ${file}: ${(err as NodeJS.ErrnoException).code ?? (err as Error).message}.`, EXIT.failure);
  }
  try {
    const buf = Buffer.alloc(MAX_KEY_BYTES + 1);
    const n = fs.readSync(fd, buf, 0, buf.length, null);
    if (n > MAX_KEY_BYTES) throw new CliError('key_file', `${file} is larger than ${MAX_KEY_BYTES} bytes; that is not one public key.`, EXIT.failure);
    return buf.subarray(0, n).toString('utf8');
  } finally {
    fs.closeSync(fd);
  }
}

/**
 * `gpg --batch --armor --export -- <email>`: the exact address (gpg's
 * `<…>` form, not a substring match), with only that address in argv and
 * without INCIDENT_RELAY_* in the environment.
 */
export function exportFromGpg(email: string, env: NodeJS.ProcessEnv): Promise<string> {
  if (!PLAIN_ADDRESS.test(email)) throw usageError(`--key-from-gpg needs an email address, not "${email.slice(0, 100)}".`);
  return new Promise((resolve, reject) => {
    const child = spawn('gpg', ['--batch', '--no-tty', '--armor', '--export', '--', `<${email}>`], { env: childEnv(env), stdio: ['ignore', 'pipe', 'pipe'] });
    const out: Buffer[] = [];
    let size = 0;
    let stderr = '';
    const timer = setTimeout(() => child.kill('SIGKILL'), GPG_TIMEOUT_MS);
    child.stdout.on('data', (chunk: Buffer) => {
      size += chunk.length;
      if (size > MAX_KEY_BYTES) child.kill('SIGKILL');
      else out.push(chunk);
    });
    child.stderr.on('data', (chunk: Buffer) => {
      if (stderr.length < 4096) stderr += chunk.toString('utf8');
    });
    child.on('error', (err: NodeJS.ErrnoException) => {
      clearTimeout(timer);
      reject(
        err.code === 'ENOENT'
          ? new CliError('gpg', 'gpg is not installed or not on PATH.', EXIT.failure, 'export the key some other way and pass it with --key FILE')
          : new CliError('gpg', `Could not run gpg: ${err.message}`, EXIT.failure),
      );
    });
    child.on('close', (code, signal) => {
      clearTimeout(timer);
      if (size > MAX_KEY_BYTES) return reject(new CliError('gpg', `gpg exported more than ${MAX_KEY_BYTES} bytes for ${email}; that is not one public key.`, EXIT.failure, 'export the one you mean by fingerprint into a file and use --key FILE'));
      if (signal) return reject(new CliError('gpg', `gpg did not finish within ${GPG_TIMEOUT_MS / 1000} s.`, EXIT.failure));
      const armored = Buffer.concat(out).toString('utf8');
      if (code !== 0) return reject(new CliError('gpg', `gpg --export failed (exit ${code}): ${stderr.trim().split('\n')[0] ?? ''}`, EXIT.failure));
      if (armored.trim() === '') {
        return reject(new CliError('gpg', `Your gpg keyring has no public key for ${email}.`, EXIT.failure, `import it first (gpg --import key.asc), check with gpg --list-keys '<${email}>', or pass the file with --key FILE`));
      }
      resolve(armored);
    });
  });
}

/** The key named by `--key FILE` or `--key-from-gpg EMAIL` (exactly one of them), checked. */
export async function publicKeyFromOptions(options: { key?: string | undefined; keyFromGpg?: string | undefined }, env: NodeJS.ProcessEnv): Promise<PublicKeyMaterial | undefined> {
  if (options.key !== undefined && options.keyFromGpg !== undefined) throw usageError('Give either --key FILE or --key-from-gpg EMAIL, not both.');
  if (options.key !== undefined) return inspectPublicKey(readKeyFile(options.key), options.key);
  if (options.keyFromGpg !== undefined) return inspectPublicKey(await exportFromGpg(options.keyFromGpg, env), `gpg (${options.keyFromGpg})`);
  return undefined;
}
