/**
 * `announce` (issue 14): draft, edit, check, approve, send and show the
 * announcements that tell people outside the response team, and record the
 * commander's "internal source ruled out"; `audiences`: the admin's lists.
 */
import { randomUUID } from 'node:crypto';
import fs from 'node:fs';
import { Option, type Command } from 'commander';
import type { AnnouncementListItem, AnnouncementSent, AnnouncementView, AudienceView } from '../api-types.js';
import type { App } from '../app.js';
import { apiPath } from '../client.js';
import { CliError, EXIT, usageError } from '../exit.js';
import { formatTime, indent, renderFields, renderTable, sanitize } from '../output.js';
import { readStdin } from '../prompt.js';
import { bodyText } from './emails.js';
import { collectList } from './common.js';

// An address list from a file: one address per line (or comma-separated), as big as the relay's largest audience.
const MAX_LIST_BYTES = 8 * 1024 * 1024;

interface ContentOptions {
  kind?: string;
  title?: string;
  text?: string;
  file?: string;
  to?: string[];
  list?: string;
}

/** The audience part of a draft or edit; undefined when neither --to nor --list was given. */
function audienceOf(opts: ContentOptions): { addresses?: string[]; list?: string } | undefined {
  if ((opts.to === undefined || opts.to.length === 0) && opts.list === undefined) return undefined;
  return { ...(opts.to?.length ? { addresses: opts.to } : {}), ...(opts.list !== undefined ? { list: opts.list } : {}) };
}

function contentOptions(cmd: Command, required: boolean): Command {
  const kind = new Option('--kind <kind>', 'internal (employees, stakeholders) or external (customers, partners, regulators, the press)').choices(['internal', 'external']);
  return cmd
    .addOption(required ? kind.makeOptionMandatory() : kind)
    .option('--title <title>', 'the title, with its date (e.g. "Security notice, 2026-11-28"); it is the subject readers see')
    .option('--text <text>', 'the text')
    .option('--file <path>', 'read the text from a file, or - for stdin')
    .option('--to <addresses>', 'audience addresses; repeat, or separate with commas', collectList)
    .option('--list <name>', 'an audience list an admin keeps (incident-relay audiences)');
}

/** The announcement as `label: value` lines, its approvals and release rules as tables, then its text. */
export function renderAnnouncement(a: AnnouncementView): string {
  const fields: [string, unknown][] = [
    ['id', a.id],
    ['kind', a.kind],
    ['state', a.state],
    ['title', a.title],
    ['author', a.author],
    ['audience', `${a.audience.count} address(es)${a.audience.list ? ` (list ${sanitize(a.audience.list)})` : ''}`],
    ['checked', a.checked ? 'yes, this content' : 'no'],
    ['ready to send', a.release.ready ? 'yes' : 'no'],
    ['updated', formatTime(a.updatedAt)],
  ];
  if (a.sent) fields.push(['sent', `${formatTime(a.sent.at)} by ${sanitize(a.sent.by)}`], ['message-id', a.sent.messageId ?? '-']);
  let text = renderFields(fields);
  if (a.approvals.length > 0) {
    text += 'approvals:\n' + indent(renderTable(['APPROVER', 'ROLE', 'AT', 'COUNTS'], a.approvals.map((p) => [p.approver, p.role, formatTime(p.approvedAt), p.current ? 'yes' : `no (${p.voidReason ?? 'earlier content'})`])));
  }
  text += 'release:\n' + indent(renderTable(['RULE', 'RESULT', 'REASON'], a.release.rules.map((r) => [r.rule, r.result, r.reason])));
  // The text, each line escaped like every other relay text.
  text += 'text:\n' + a.text.split('\n').map((line) => `  ${sanitize(line)}`).join('\n') + '\n';
  return text;
}

/** Registers `announce` and `audiences`. */
export function registerAnnounce(program: Command, app: App): void {
  const announce = program
    .command('announce')
    .description('announcements: the only way to tell people outside the response team (checked, approved, then sent)')
    .addHelpText(
      'after',
      `
The lifecycle: draft → check → approve → send.
  external: the commander and a member with role legal or communications approve (neither the author);
  both internal and external: the commander first records that forensics ruled out an internal source.

Example:
  ID=$(incident-relay --json announce draft amber-otter --kind external --title "Security notice, 2026-11-28" --file notice.txt --list press | jq -r .id)
  incident-relay announce check amber-otter $ID
  incident-relay announce approve amber-otter $ID        # the commander, then legal
  incident-relay announce send amber-otter $ID`,
    );

  announce
    .command('list', { isDefault: true })
    .description("the incident's announcements, newest first")
    .argument('<codename>', 'the incident')
    .action(async (codename: string, _opts: unknown, cmd: Command) => {
      const session = app.session(cmd);
      session.errors.codename = codename;
      const answer = await session.client().get<{ announcements?: AnnouncementListItem[] }>(apiPath`/v1/incidents/${codename}/announcements`);
      const all = answer?.announcements ?? [];
      session.out.result({ announcements: all }, () =>
        all.length === 0
          ? `No announcements on ${sanitize(codename)}.\n`
          : session.out.table(
              ['ID', 'KIND', 'STATE', 'READY', 'AUTHOR', 'AUDIENCE', 'TITLE'],
              all.map((a) => [a.id, a.kind, a.state, a.state === 'sent' ? '-' : a.release.ready ? 'yes' : 'no', a.author, a.audience.count, a.title]),
            ),
      );
    });

  contentOptions(announce.command('draft').description('write a new announcement (you are its author)').argument('<codename>', 'the incident'), true).action(
    async (codename: string, opts: ContentOptions, cmd: Command) => {
      const session = app.session(cmd);
      session.errors.codename = codename;
      if (opts.title === undefined) throw usageError('No title.', 'give it with --title, including its date, e.g. "Security notice, 2026-11-28"');
      const audience = audienceOf(opts);
      if (audience === undefined) throw usageError('No audience.', 'give addresses with --to, or a list with --list (incident-relay audiences lists them)');
      const client = session.client();
      const text = await bodyText(opts, app.environment.stdin);
      const created = await client.post<AnnouncementView>(apiPath`/v1/incidents/${codename}/announcements`, { kind: opts.kind, title: opts.title, text, audience });
      session.errors.announcementId = created.id;
      session.out.result(created, () => `${sanitize(created.id)}\n`);
      if (!session.out.json) session.out.note(`Drafted ${created.kind} announcement ${sanitize(created.id)} to ${created.audience.count} address(es). Next: incident-relay announce check ${sanitize(codename)} ${sanitize(created.id)}`);
    },
  );

  contentOptions(announce.command('edit').description('change a draft (its author or a commander); any approval given is void').argument('<codename>', 'the incident').argument('<id>', 'the announcement'), false).action(
    async (codename: string, id: string, opts: ContentOptions, cmd: Command) => {
      const session = app.session(cmd);
      session.errors.codename = codename;
      session.errors.announcementId = id;
      const patch: Record<string, unknown> = {};
      if (opts.kind !== undefined) patch['kind'] = opts.kind;
      if (opts.title !== undefined) patch['title'] = opts.title;
      if (opts.text !== undefined || opts.file !== undefined) patch['text'] = await bodyText(opts, app.environment.stdin);
      const audience = audienceOf(opts);
      if (audience !== undefined) patch['audience'] = audience;
      if (Object.keys(patch).length === 0) throw usageError('Nothing to change.', 'give --kind, --title, --text/--file, --to or --list');
      const edited = await session.client().patch<AnnouncementView>(apiPath`/v1/incidents/${codename}/announcements/${id}`, patch);
      session.out.result(edited, () => renderAnnouncement(edited));
      const voided = edited.approvals.filter((p) => p.voidReason === 'edited' && !p.current).length;
      if (!session.out.json && voided > 0) session.out.note(`The edit voided ${voided} approval(s); check it again and ask for them again.`);
    },
  );

  announce
    .command('show')
    .description('an announcement: state, approvals, what still stops it, its text')
    .argument('<codename>', 'the incident')
    .argument('<id>', 'the announcement')
    .action(async (codename: string, id: string, _opts: unknown, cmd: Command) => {
      const session = app.session(cmd);
      session.errors.codename = codename;
      session.errors.announcementId = id;
      const a = await session.client().get<AnnouncementView>(apiPath`/v1/incidents/${codename}/announcements/${id}`);
      session.out.result(a, () => renderAnnouncement(a));
    });

  for (const [step, description, done] of [
    ['check', 'run the checks: a date in the title, no "We take security very seriously", no codename or responder address, the right audience', 'Checked'],
    ['approve', 'approve its exact content (the commander, or role legal or communications; never its author)', 'Approved'],
  ] as const) {
    announce
      .command(step)
      .description(description)
      .argument('<codename>', 'the incident')
      .argument('<id>', 'the announcement')
      .action(async (codename: string, id: string, _opts: unknown, cmd: Command) => {
        const session = app.session(cmd);
        session.errors.codename = codename;
        session.errors.announcementId = id;
        const a = await session.client().post<AnnouncementView>(apiPath`/v1/incidents/${codename}/announcements/${id}/${step}`, {});
        session.out.result(a, () => `${done} ${sanitize(a.id)}: ${a.state}${a.state !== 'sent' ? `, ${a.release.ready ? 'ready to send' : `not yet ready (${a.release.rules.filter((r) => r.result === 'fail').map((r) => sanitize(r.reason)).join('; ')})`}` : ''}.\n`);
      });
  }

  announce
    .command('send')
    .description('send it: one copy per audience address (the author or a commander)')
    .argument('<codename>', 'the incident')
    .argument('<id>', 'the announcement')
    .option('--idempotency-key <key>', 'reuse the key of an earlier try so a retry never sends twice (default: a new random one)')
    .action(async (codename: string, id: string, opts: { idempotencyKey?: string }, cmd: Command) => {
      const session = app.session(cmd);
      session.errors.codename = codename;
      session.errors.announcementId = id;
      const client = session.client();
      const key = opts.idempotencyKey ?? `cli-${randomUUID()}`;
      session.errors.idempotencyKey = key;
      const sent = await client.post<AnnouncementSent>(apiPath`/v1/incidents/${codename}/announcements/${id}/send`, {}, { headers: { 'Idempotency-Key': key } });
      session.out.result({ ...sent, idempotencyKey: key }, () => `Queued ${sent.copies} copies of ${sanitize(sent.id)} (${sent.encrypted} encrypted); email ${sanitize(sent.emailId)}, ${sanitize(sent.messageId)}.\n`);
      if (!session.out.json) session.out.note(`Follow it with: incident-relay emails status ${sanitize(codename)} ${sanitize(sent.emailId)}`);
    });

  announce
    .command('internal-source')
    .description('the commander records that forensics ruled out an internal source (or withdraws it: queued copies are cancelled)')
    .argument('<codename>', 'the incident')
    .option('--ruled-out', 'record it (needs --note)')
    .option('--withdraw', 'withdraw the record: nothing more goes out until it is recorded again')
    .option('--note <text>', 'how forensics showed it, e.g. the report that does')
    .action(async (codename: string, opts: { ruledOut?: boolean; withdraw?: boolean; note?: string }, cmd: Command) => {
      const session = app.session(cmd);
      session.errors.codename = codename;
      if (opts.ruledOut === opts.withdraw) throw usageError('Give exactly one of --ruled-out and --withdraw.');
      if (opts.ruledOut && (opts.note === undefined || opts.note.trim() === '')) throw usageError('Say how forensics ruled it out.', `incident-relay announce internal-source ${codename} --ruled-out --note "report FR-7: external IP, no insider"`);
      const answer = await session.client().post<{ internalSourceRuledOut: { at: string; by: string; note: string } | null; cancelledDeliveries: number }>(
        apiPath`/v1/incidents/${codename}/internal-source`,
        { ruledOut: opts.ruledOut === true, ...(opts.note !== undefined ? { note: opts.note } : {}) },
      );
      session.out.result(answer, () => {
        const r = answer.internalSourceRuledOut;
        return r
          ? `Recorded on ${sanitize(codename)}: internal source ruled out, ${formatTime(r.at)} by ${sanitize(r.by)}.\n`
          : `Withdrawn on ${sanitize(codename)}: nothing about the incident leaves the response team until it is recorded again; ${answer.cancelledDeliveries} queued announcement copies cancelled.\n`;
      });
    });

  const audiences = program.command('audiences').description('audience lists for announcements (kept by admins)');

  audiences
    .command('list', { isDefault: true })
    .description('the lists, by name and size')
    .action(async (_opts: unknown, cmd: Command) => {
      const session = app.session(cmd);
      const answer = await session.client().get<{ audiences?: AudienceView[] }>('/v1/audiences');
      const lists = answer?.audiences ?? [];
      session.out.result({ audiences: lists }, () =>
        lists.length === 0 ? 'No audience lists; an admin creates one with incident-relay audiences set NAME --to … (or --file).\n' : session.out.table(['NAME', 'ADDRESSES', 'UPDATED', 'BY'], lists.map((l) => [l.name, l.count, formatTime(l.updatedAt), l.updatedBy])),
      );
    });

  audiences
    .command('show')
    .description('one list with its addresses (admin)')
    .argument('<name>', 'the list')
    .action(async (name: string, _opts: unknown, cmd: Command) => {
      const session = app.session(cmd);
      const list = await session.client().get<AudienceView>(apiPath`/v1/audiences/${name}`);
      session.out.result(list, () => renderFields([['name', list.name], ['addresses', list.count], ['updated', `${formatTime(list.updatedAt)} by ${sanitize(list.updatedBy)}`]]) + (list.addresses ?? []).map((a) => `  ${sanitize(a)}\n`).join(''));
    });

  audiences
    .command('set')
    .description('create or replace a list (admin); drafts already written keep the addresses they read')
    .argument('<name>', 'the list: lowercase letters, digits, ".", "_", "-"')
    .option('--to <addresses>', 'addresses; repeat, or separate with commas', collectList)
    .option('--file <path>', 'addresses from a file (one per line, or comma-separated), or - for stdin')
    .action(async (name: string, opts: { to?: string[]; file?: string }, cmd: Command) => {
      const session = app.session(cmd);
      if ((opts.to === undefined) === (opts.file === undefined)) throw usageError('Give the addresses with --to or --file, one of them.');
      let addresses = opts.to ?? [];
      if (opts.file !== undefined) {
        let text: string;
        try {
          if (opts.file === '-') text = (await readStdin(app.environment.stdin, MAX_LIST_BYTES, 'The list')).toString('utf8');
          else if (fs.statSync(opts.file).size > MAX_LIST_BYTES) throw new CliError('body_file', `${opts.file} is larger than ${MAX_LIST_BYTES} bytes; an audience list is one address a line.`, EXIT.failure);
          else text = fs.readFileSync(opts.file, 'utf8');
        } catch (err) {
          if (err instanceof CliError) throw err;
          throw new CliError('body_file', `Cannot read --file ${opts.file}: ${(err as NodeJS.ErrnoException).code ?? (err as Error).message}.`, EXIT.failure);
        }
        addresses = text.split(/[\s,]+/).filter((a) => a !== '');
      }
      const list = await session.client().put<AudienceView>(apiPath`/v1/audiences/${name}`, { addresses });
      session.out.result(list, () => `Audience list ${sanitize(list.name)}: ${list.count} address(es).\n`);
    });

  audiences
    .command('delete')
    .description('delete a list (admin); drafts already written keep the addresses they read')
    .argument('<name>', 'the list')
    .action(async (name: string, _opts: unknown, cmd: Command) => {
      const session = app.session(cmd);
      await session.client().delete(apiPath`/v1/audiences/${name}`);
      session.out.result({ deleted: name }, () => `Deleted audience list ${sanitize(name)}.\n`);
    });
}
