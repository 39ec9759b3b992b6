/** `relay-key`: the relay's public signing key, with its fingerprint computed here, not taken on trust. */
import type { Command } from 'commander';
import type { App } from '../app.js';
import { CliError, EXIT } from '../exit.js';

/** A fingerprint in groups of four, as gpg prints it. */
export function groupFingerprint(fingerprint: string): string {
  return fingerprint.replace(/(.{4})(?=.)/g, '$1 ');
}

/** Registers `relay-key`. */
export function registerRelayKey(program: Command, app: App): void {
  program
    .command('relay-key')
    .description("print the relay's public signing key (recipients verify the relay's signatures with it)")
    .addHelpText('after', '\nThe key goes to stdout and its fingerprint to stderr, so:\n  incident-relay relay-key | gpg --import\nCompare the fingerprint with the one the relay printed at start ("relay key: …").')
    .action(async (_opts: unknown, cmd: Command) => {
      const session = app.session(cmd);
      // No token is needed by current relays; older ones ask for one, so send it when there is one.
      const answer = await session.client(false).request('GET', '/v1/relay-key', { accept: 'application/json, text/plain;q=0.5' });
      const body = answer.body as { fingerprint?: unknown; publicKey?: unknown } | string;
      const armored = typeof body === 'string' ? body : typeof body?.publicKey === 'string' ? body.publicKey : '';
      // The key is printed as it is: only armor characters may reach the terminal.
      if (!/^[\x20-\x7e\r\n]*-----BEGIN PGP PUBLIC KEY BLOCK-----[\x20-\x7e\r\n]*$/.test(armored)) {
        throw new CliError('bad_relay_key', 'The relay did not answer with an armored public key.', EXIT.failure);
      }
      const openpgp = await import('openpgp');
      let fingerprint: string;
      try {
        fingerprint = (await openpgp.readKey({ armoredKey: armored })).getFingerprint().toUpperCase();
      } catch {
        throw new CliError('bad_relay_key', 'The relay answered with a key that cannot be read.', EXIT.failure);
      }
      if (typeof body === 'object' && typeof body.fingerprint === 'string' && body.fingerprint.toUpperCase() !== fingerprint) {
        throw new CliError('bad_relay_key', `The relay says its key is ${body.fingerprint.slice(0, 80)}, but the key it sent is ${fingerprint}.`, EXIT.failure, 'do not trust this key; tell an admin');
      }
      session.out.result({ fingerprint, publicKey: armored }, () => (armored.endsWith('\n') ? armored : armored + '\n'));
      if (!session.out.json) session.out.note(`fingerprint: ${groupFingerprint(fingerprint)}`);
    });
}
