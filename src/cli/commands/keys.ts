/** `keys`: show the key mail would use, upload your own (or, as an admin, anyone's), revoke, remove. */
import type { Command } from 'commander';
import type { KeyView } from '../api-types.js';
import type { App } from '../app.js';
import { apiPath } from '../client.js';
import { CliError, EXIT, usageError } from '../exit.js';
import { publicKeyFromOptions, readKeyFile } from '../keymaterial.js';
import { formatTime, renderFields, sanitize } from '../output.js';

/** Registers `keys` and its subcommands. */
export function registerKeys(program: Command, app: App): void {
  const keys = program.command('keys').description('public keys on file at the relay');

  keys
    .command('show')
    .description('the key mail to an address would use (in an incident with --incident)')
    .argument('<email>', 'the address')
    .option('--incident <codename>', "the incident whose roster key counts ahead of the relay-wide one")
    .action(async (email: string, opts: { incident?: string }, cmd: Command) => {
      const session = app.session(cmd);
      if (opts.incident) session.errors.codename = opts.incident;
      const key = await session.client().get<KeyView>(apiPath`/v1/keys/${email}`, { query: { incident: opts.incident } });
      session.out.result(key, () =>
        renderFields([
          ['email', key.email],
          ['fingerprint', key.fingerprint],
          ['algorithm', key.algorithm],
          ['expires', key.expiresAt === null ? 'never' : formatTime(key.expiresAt)],
          ...(key.scope !== undefined ? ([['scope', key.scope]] as [string, unknown][]) : []),
          ...(key.status !== undefined ? ([['status', `${key.status}${key.reason ? ` (${key.reason})` : ''}`]] as [string, unknown][]) : []),
        ]),
      );
    });

  keys
    .command('upload')
    .description('file a relay-wide public key for an address (its owner or an admin)')
    .argument('<email>', 'the address the key belongs to')
    .option('--key <file>', 'the armored public key')
    .option('--key-from-gpg [email]', 'read it from your gpg keyring; default: <email>')
    .action(async (email: string, opts: { key?: string; keyFromGpg?: string | true }, cmd: Command) => {
      const session = app.session(cmd);
      const client = session.client();
      const material = await publicKeyFromOptions({ key: opts.key, keyFromGpg: opts.keyFromGpg === true ? email : opts.keyFromGpg }, session.env);
      if (!material) throw usageError('Which key?', 'give --key FILE or --key-from-gpg');
      const key = await client.put<KeyView>(apiPath`/v1/keys/${email}`, { publicKey: material.armored });
      session.out.result(key, () => `Filed ${sanitize(key.fingerprint)} (${sanitize(key.algorithm)}) for ${sanitize(key.email)}, from ${sanitize(material.source)}.\n`);
    });

  keys
    .command('revoke')
    .description("send a revocation certificate for the stored key (owner, a commander of an incident with that member, admin)")
    .argument('<email>', 'the address')
    .requiredOption('--certificate <file>', "the revocation certificate (gpg's openpgp-revocs.d/<FPR>.rev, or the revoked key exported)")
    .action(async (email: string, opts: { certificate: string }, cmd: Command) => {
      const session = app.session(cmd);
      const client = session.client();
      // gpg prefixes the stored certificate's armor line with ':' so it is not imported by accident.
      const text = readKeyFile(opts.certificate).replace(/^:-----BEGIN/m, '-----BEGIN');
      if (/^-----BEGIN PGP [A-Z ]*PRIVATE KEY/m.test(text)) throw new CliError('secret_key', `${opts.certificate} holds a PRIVATE key; it was not sent.`, EXIT.failure);
      if (!/-----BEGIN PGP (PUBLIC KEY BLOCK|SIGNATURE)-----/.test(text)) throw new CliError('not_a_key', `${opts.certificate} is not an armored revocation certificate or key.`, EXIT.failure);
      const answer = await client.put<{ email: string; fingerprint: string; revoked: boolean }>(apiPath`/v1/keys/${email}`, { publicKey: text });
      session.out.result(answer, () => `Revoked ${sanitize(answer.fingerprint)} for ${sanitize(answer.email)}: mail that needs it is refused until a new key is filed.\n`);
    });

  keys
    .command('remove')
    .description('withdraw the relay-wide key of an address (its owner or an admin)')
    .argument('<email>', 'the address')
    .action(async (email: string, _opts: unknown, cmd: Command) => {
      const session = app.session(cmd);
      await session.client().delete(apiPath`/v1/keys/${email}`);
      session.out.result({ email, removed: true }, () => `Withdrew the relay-wide key of ${sanitize(email)}.\n`);
    });
}
