/** `login` and `logout`: the profile that remembers the relay and the token. */
import fs from 'node:fs';
import type { Command } from 'commander';
import type { App } from '../app.js';
import { ENV, checkToken, readProfile, writeProfile } from '../config.js';
import { CliError } from '../exit.js';
import { readSecret } from '../prompt.js';

/** Registers login and logout. */
export function registerLogin(program: Command, app: App): void {
  program
    .command('login')
    .description('check a token against the relay and save both in your profile (mode 0600)')
    .addHelpText(
      'after',
      `
The token is read without echo when stdin is a terminal, else from the first
line of stdin, so it never has to appear on a command line:

  incident-relay login --relay https://relay.corp.example
  echo "$TOKEN" | incident-relay login --relay https://relay.corp.example

It is checked (GET /v1/incidents) before it is saved. The profile is
$XDG_CONFIG_HOME/incident-relay/config.json (else ~/.config/incident-relay/config.json).
--relay and ${ENV.relay} / ${ENV.token} still take precedence over it.`,
    )
    .action(async (_opts: unknown, cmd: Command) => {
      const session = app.session(cmd);
      const { relay, tokenSource } = session.connection();
      // Only an explicit --token is taken as given; the profile's or the
      // environment's token is not what the user is logging in with.
      const token =
        tokenSource === 'flag' && session.globals.token !== undefined
          ? session.globals.token
          : checkToken(await readSecret(`Token for ${relay}: `, app.environment.stdin, app.environment.stderr), 'the prompt');
      const client = session.clientFor(relay, token);
      const answer = await client.get<{ incidents?: unknown[] }>('/v1/incidents');
      writeProfile(session.profileFile, { relay, token });
      const count = Array.isArray(answer?.incidents) ? answer.incidents.length : 0;
      session.out.result({ relay, profile: session.profileFile, incidents: count }, () => `Logged in to ${relay}; the token is saved in ${session.profileFile} (readable by you only). You can see ${count} incident(s).\n`);
      if (session.env[ENV.token]) session.out.note(`note: ${ENV.token} is set and is used instead of the saved token while it is.`);
    });

  program
    .command('logout')
    .description('forget the saved token (the relay address stays); the token itself stays valid until revoked')
    .action((_opts: unknown, cmd: Command) => {
      const session = app.session(cmd);
      const file = session.profileFile;
      let relay: string | undefined;
      try {
        relay = readProfile(file)?.relay;
      } catch (err) {
        // A profile others could read, or one that is not JSON: remove it whole.
        if (!(err instanceof CliError)) throw err;
      }
      const existed = fs.existsSync(file);
      if (relay !== undefined) writeProfile(file, { relay });
      else fs.rmSync(file, { force: true });
      session.out.result({ profile: file, forgotten: existed }, () =>
        existed
          ? `Forgot the token saved in ${file}. It still works until it is revoked: incident-relay tokens list, then incident-relay tokens revoke <id>.\n`
          : `No saved token (${file} does not exist).\n`,
      );
    });
}
