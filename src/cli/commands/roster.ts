/** `roster`: list, add (with a key from a file or from gpg), update only the fields given, remove. */
import { Option, type Command } from 'commander';
import type { MemberView } from '../api-types.js';
import type { App } from '../app.js';
import { apiPath } from '../client.js';
import { usageError } from '../exit.js';
import { publicKeyFromOptions, type PublicKeyMaterial } from '../keymaterial.js';
import { ROSTER_ROLES } from '../../store/incidents.js';
import { formatTime, sanitize } from '../output.js';

/** A member's key for the table: status and the fingerprint's last 16 hex digits, or "missing". */
export function keyCell(key: MemberView['key']): string {
  if (!key) return 'missing';
  const tail = typeof key.fingerprint === 'string' ? key.fingerprint.slice(-16) : '?';
  return `${key.status ?? 'on file'} ${tail}${key.reason ? ` (${key.reason})` : ''}`;
}

interface MemberOptions {
  name?: string;
  role?: string;
  phone?: string | false;
  slackUserId?: string | false;
  key?: string;
  keyFromGpg?: string | true;
}

function keyOptions(cmd: Command): Command {
  return cmd
    .option('--key <file>', 'their armored public key (gpg --export --armor EMAIL > key.asc)')
    .option('--key-from-gpg [email]', "read their public key from your gpg keyring (gpg --export --armor); default: the member's address");
}

async function keyFor(email: string, opts: MemberOptions, env: NodeJS.ProcessEnv): Promise<PublicKeyMaterial | undefined> {
  const fromGpg = opts.keyFromGpg === true ? email : opts.keyFromGpg;
  return publicKeyFromOptions({ key: opts.key, keyFromGpg: fromGpg }, env);
}

function memberLine(verb: string, member: MemberView, codename: string, key: PublicKeyMaterial | undefined): string {
  const keyText = key ? `, key ${key.fingerprint} from ${sanitize(key.source)}` : member.key ? `, key ${keyCell(member.key)}` : ', no key on file';
  return `${verb} ${sanitize(member.email)} on ${sanitize(codename)} as ${sanitize(member.role)}${keyText}.\n`;
}

/** Registers `roster` and its subcommands. */
export function registerRoster(program: Command, app: App): void {
  const roster = program.command('roster').description("an incident's response roster: who may send and receive");

  roster
    .command('list', { isDefault: true })
    .description('list the active members (the default: incident-relay roster <codename>)')
    .argument('<codename>', 'the incident')
    .action(async (codename: string, _opts: unknown, cmd: Command) => {
      const session = app.session(cmd);
      session.errors.codename = codename;
      const answer = await session.client().get<{ roster?: MemberView[] }>(apiPath`/v1/incidents/${codename}/roster`);
      const members = answer?.roster ?? [];
      session.out.result({ roster: members }, () =>
        session.out.table(
          ['EMAIL', 'NAME', 'ROLE', 'KEY', 'PHONE', 'SLACK', 'ADDED'],
          members.map((m) => [m.email, m.name, m.role, keyCell(m.key), m.phone, m.slackStatus ?? m.slackUserId, formatTime(m.addedAt)]),
        ),
      );
    });

  keyOptions(
    roster
      .command('add')
      .description('add a member (or replace their entry), with their public key when they are outside the company')
      .argument('<codename>', 'the incident')
      .argument('<email>', 'their address')
      .addOption(new Option('--role <role>', 'their role on the roster').choices(ROSTER_ROLES).makeOptionMandatory())
      .option('--name <name>', 'display name (default: the part of the address before @)')
      .option('--phone <e164>', 'phone for SMS nudges, E.164 (+15555550100)')
      .option('--slack-user-id <id>', 'their Slack user id, when their Slack email differs'),
  )
    .addHelpText('after', '\nExample:\n  incident-relay roster add amber-otter counsel@lawfirm.example --role external --name "Outside Counsel" --key-from-gpg')
    .action(async (codename: string, email: string, opts: MemberOptions, cmd: Command) => {
      const session = app.session(cmd);
      session.errors.codename = codename;
      const client = session.client();
      const key = await keyFor(email, opts, session.env);
      const body: Record<string, unknown> = { name: opts.name ?? email.split('@')[0], role: opts.role };
      if (typeof opts.phone === 'string') body['phone'] = opts.phone;
      if (typeof opts.slackUserId === 'string') body['slackUserId'] = opts.slackUserId;
      if (key) body['publicKey'] = key.armored;
      const answer = await client.request('PUT', apiPath`/v1/incidents/${codename}/roster/${email}`, { json: body });
      const member = answer.body as MemberView;
      session.out.result(member, () => memberLine(answer.status === 201 ? 'Added' : 'Updated', member, codename, key));
    });

  keyOptions(
    roster
      .command('update')
      .description('change only the fields given (name, role, phone, Slack user id, key)')
      .argument('<codename>', 'the incident')
      .argument('<email>', 'their address')
      .addOption(new Option('--role <role>', 'their new role').choices(ROSTER_ROLES))
      .option('--name <name>', 'their new display name')
      .option('--phone <e164>', 'their new phone, E.164')
      .option('--no-phone', 'remove their phone')
      .option('--slack-user-id <id>', 'their Slack user id')
      .option('--no-slack-user-id', 'remove their Slack user id'),
  )
    .addHelpText('after', '\nExample:\n  incident-relay roster update amber-otter carol@corp.example --key carol.asc')
    .action(async (codename: string, email: string, opts: MemberOptions, cmd: Command) => {
      const session = app.session(cmd);
      session.errors.codename = codename;
      const client = session.client();
      const key = await keyFor(email, opts, session.env);
      const body: Record<string, unknown> = {};
      if (opts.name !== undefined) body['name'] = opts.name;
      if (opts.role !== undefined) body['role'] = opts.role;
      if (opts.phone !== undefined) body['phone'] = opts.phone === false ? null : opts.phone;
      if (opts.slackUserId !== undefined) body['slackUserId'] = opts.slackUserId === false ? null : opts.slackUserId;
      if (key) body['publicKey'] = key.armored;
      if (Object.keys(body).length === 0) throw usageError('Nothing to update.', 'give at least one of --name, --role, --phone/--no-phone, --slack-user-id/--no-slack-user-id, --key, --key-from-gpg');
      const member = await client.patch<MemberView>(apiPath`/v1/incidents/${codename}/roster/${email}`, body);
      session.out.result(member, () => memberLine('Updated', member, codename, key));
    });

  roster
    .command('remove')
    .description('remove a member (their history stays); they receive nothing more about this incident')
    .argument('<codename>', 'the incident')
    .argument('<email>', 'their address')
    .action(async (codename: string, email: string, _opts: unknown, cmd: Command) => {
      const session = app.session(cmd);
      session.errors.codename = codename;
      await session.client().delete(apiPath`/v1/incidents/${codename}/roster/${email}`);
      session.out.result({ codename, email, removed: true }, () => `Removed ${sanitize(email)} from ${sanitize(codename)}.\n`);
    });
}
