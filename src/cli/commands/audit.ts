/** `audit`: list events with filters, verify the hash chain, export as JSON lines. */
import fs from 'node:fs';
import type { Command } from 'commander';
import type { AuditEventView, AuditVerification } from '../api-types.js';
import type { App } from '../app.js';
import { apiPath } from '../client.js';
import { CliError, EXIT } from '../exit.js';
import { formatTime, renderFields } from '../output.js';
import { allPages, fetchPage, isoTime, positiveInt } from './common.js';

interface FilterOptions {
  incident?: string;
  type?: string;
  actor?: string;
  since?: string;
  until?: string;
  limit?: number;
  cursor?: string;
}

function filtered(cmd: Command): Command {
  return cmd
    .option('--incident <codename>', "one incident's events (its commander, deputy or scribe may read them; else admins only)")
    .option('--type <type>', 'only this event type, e.g. email.decision, roster.added')
    .option('--actor <email>', 'only events caused by this address')
    .option('--since <time>', 'only events at or after this ISO 8601 time', isoTime)
    .option('--until <time>', 'only events before this ISO 8601 time', isoTime)
    .option('--limit <n>', 'how many per page (1-1000)', positiveInt)
    .option('--cursor <cursor>', 'continue after an earlier page');
}

function source(opts: FilterOptions): { path: string; query: Record<string, string | number | undefined> } {
  const query = { type: opts.type, actor: opts.actor, since: opts.since, until: opts.until, limit: opts.limit, cursor: opts.cursor };
  return opts.incident ? { path: apiPath`/v1/incidents/${opts.incident}/audit`, query } : { path: '/v1/audit', query };
}

/** Registers `audit` and its subcommands. */
export function registerAudit(program: Command, app: App): void {
  const audit = program.command('audit').description('the append-only, hash-chained audit log');

  filtered(audit.command('list', { isDefault: true }).description('list events (all: admins; one incident: --incident)'))
    .option('--all', 'follow every page')
    .action(async (opts: FilterOptions & { all?: boolean }, cmd: Command) => {
      const session = app.session(cmd);
      if (opts.incident) session.errors.codename = opts.incident;
      const client = session.client();
      const { path, query } = source(opts);
      let events: AuditEventView[] = [];
      let next: string | undefined;
      if (opts.all) for await (const page of allPages<AuditEventView>(client, path, 'events', query)) events = events.concat(page);
      else ({ items: events, next } = await fetchPage<AuditEventView>(client, path, 'events', query));
      session.out.result({ events, ...(next ? { next } : {}) }, () =>
        session.out.table(
          ['SEQ', 'AT', 'TYPE', 'ACTOR', 'OUTCOME', 'DATA'],
          events.map((e) => [e.seq, formatTime(e.at), e.type, e.actor, e.outcome, e.data]),
        ),
      );
      if (next && !session.out.json) session.out.note(`more: add --cursor ${next}`);
    });

  audit
    .command('verify')
    .description('recompute the whole hash chain at the relay (admin); exits 1 if it is broken')
    .action(async (_opts: unknown, cmd: Command) => {
      const session = app.session(cmd);
      const result = await session.client().get<AuditVerification>('/v1/audit/verify');
      session.out.result(result, () => {
        const fields: [string, unknown][] = [
          ['chain', result.ok ? 'intact' : `BROKEN at event ${result.brokenAt ?? '?'}`],
          ['events', result.events],
          ['head', result.head],
        ];
        if (result.checkpoints) fields.push(['signed checkpoints', `${result.checkpoints.verified} of ${result.checkpoints.signed} verified`]);
        return renderFields(fields);
      });
      if (!result.ok) {
        session.out.error([`error audit_broken: The audit chain does not verify from event ${result.brokenAt ?? '?'} on: an event was edited, inserted or removed behind the relay's back.`, '  what to do: keep a copy of the database as it is (evidence) and tell the security team']);
        session.exitCode = EXIT.failure;
      }
    });

  filtered(audit.command('export').description('every matching event as JSON lines, oldest first, page by page'))
    .option('-o, --output <file>', 'write to this file (created readable by you only) instead of stdout')
    .addHelpText('after', '\nExample:\n  incident-relay audit export --incident amber-otter -o amber-otter-audit.jsonl')
    .action(async (opts: FilterOptions & { output?: string }, cmd: Command) => {
      const session = app.session(cmd);
      if (opts.incident) session.errors.codename = opts.incident;
      const client = session.client();
      const { path, query } = source({ ...opts, limit: opts.limit ?? 1000 });
      let fd: number | undefined;
      if (opts.output !== undefined) {
        try {
          // Audit metadata says who wrote to whom about what: not for other local users.
          fd = fs.openSync(opts.output, 'wx', 0o600);
        } catch (err) {
          throw new CliError('output', `Cannot create ${opts.output}: ${(err as NodeJS.ErrnoException).code ?? (err as Error).message}.`, EXIT.failure, 'choose a new file name; an existing file is not overwritten');
        }
      }
      let count = 0;
      try {
        for await (const page of allPages<AuditEventView>(client, path, 'events', query)) {
          const lines = page.map((e) => JSON.stringify(e) + '\n').join('');
          if (fd !== undefined) fs.writeSync(fd, lines);
          else session.out.raw(lines);
          count += page.length;
        }
        if (fd !== undefined) fs.fsyncSync(fd);
      } finally {
        if (fd !== undefined) fs.closeSync(fd);
      }
      if (opts.output !== undefined) session.out.note(`Wrote ${count} event(s) to ${opts.output}.`);
    });
}
