/** `tokens`: issue (shown once), list (never the secret), revoke. */
import { Option, type Command } from 'commander';
import type { TokenCreated, TokenView } from '../api-types.js';
import type { App } from '../app.js';
import { apiPath } from '../client.js';
import { formatTime, sanitize } from '../output.js';

/** Registers `tokens` and its subcommands. */
export function registerTokens(program: Command, app: App): void {
  const tokens = program.command('tokens').description('API tokens: who may use the relay');

  tokens
    .command('create')
    .description('issue a token (admins; a commander may issue responder tokens for their roster with --incident)')
    .argument('<email>', 'whose token: they send as this address')
    .addOption(new Option('--role <role>', 'admin or responder').choices(['admin', 'responder']).default('responder'))
    .option('--label <text>', 'what it is for, e.g. "IC laptop"')
    .option('--incident <codename>', 'as that incident\'s commander, for an active member of its roster')
    .addHelpText('after', '\nThe token is printed once, alone on stdout, so it can go straight into a pipe:\n  incident-relay tokens create ic@corp.example --label "IC laptop" | ssh ic-laptop \'incident-relay login --relay …\'')
    .action(async (email: string, opts: { role: string; label?: string; incident?: string }, cmd: Command) => {
      const session = app.session(cmd);
      if (opts.incident) session.errors.codename = opts.incident;
      const body: Record<string, string> = { email, role: opts.role };
      if (opts.label !== undefined) body['label'] = opts.label;
      if (opts.incident !== undefined) body['incident'] = opts.incident;
      const created = await session.client().post<TokenCreated>('/v1/tokens', body);
      // The one place a token is printed: it is the output asked for, and the relay keeps only its hash.
      session.out.result(created, () => `${created.token}\n`);
      if (!session.out.json) {
        session.out.note(`Token ${sanitize(created.id)} for ${sanitize(created.email)} (${sanitize(created.role)}). It is shown once: hand it over on a secure channel; they run incident-relay login.`);
      }
    });

  tokens
    .command('list')
    .description('token metadata, never the secrets (admins: all; responders: their own)')
    .action(async (_opts: unknown, cmd: Command) => {
      const session = app.session(cmd);
      const answer = await session.client().get<{ tokens?: TokenView[] }>('/v1/tokens');
      const list = answer?.tokens ?? [];
      session.out.result({ tokens: list }, () =>
        session.out.table(
          ['ID', 'EMAIL', 'ROLE', 'INCIDENT', 'LABEL', 'CREATED', 'LAST USED', 'REVOKED'],
          list.map((t) => [t.id, t.email, t.role, t.incident ?? 'all', t.label, formatTime(t.createdAt), formatTime(t.lastUsedAt), formatTime(t.revokedAt)]),
        ),
      );
    });

  tokens
    .command('revoke')
    .description('revoke a token at once (admins; responders their own)')
    .argument('<id>', 'the token id (from tokens list or tokens create)')
    .action(async (id: string, _opts: unknown, cmd: Command) => {
      const session = app.session(cmd);
      await session.client().delete(apiPath`/v1/tokens/${id}`);
      session.out.result({ id, revoked: true }, () => `Revoked token ${sanitize(id)}.\n`);
    });
}
