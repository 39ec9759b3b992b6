/** `audit`: list events with filters, verify the hash chain, export as JSON lines. */
import fs from 'node:fs';
import type { Command } from 'commander';
import type { AuditCheckpointView, AuditEventView, AuditVerification } from '../api-types.js';
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
    .description('check the audit chain at the relay (admin): every signed checkpoint, and the events after the newest; --full recomputes from the first event. Exits 1 if anything does not hold')
    .option('--full', 'recompute every event from the first, and check every checkpoint signature afresh')
    .action(async (opts: { full?: boolean }, cmd: Command) => {
      const session = app.session(cmd);
      const result = await session.client().get<AuditVerification>(opts.full ? '/v1/audit/verify?full=true' : '/v1/audit/verify');
      const failed = result.checkpoints?.failed ?? [];
      const last = result.lastFullVerification;
      session.out.result(result, () => {
        const fields: [string, unknown][] = [
          ['chain', result.brokenAt === undefined ? 'intact' : `BROKEN at event ${result.brokenAt}`],
          ['events', result.events],
          ['head', result.head],
        ];
        if (result.from !== undefined && result.from > 0) fields.push(['recomputed', `events after ${result.from} (the newest checkpoint that holds); --full for all`]);
        if (result.checkpoints) fields.push(['signed checkpoints', `${result.checkpoints.verified} of ${result.checkpoints.signed} verified`]);
        for (const f of failed) fields.push([`checkpoint ${f.seq}`, `FAILED: ${f.reason}${f.event !== undefined ? ` (recorded by event ${f.event})` : ''}`]);
        if (last) fields.push(['last full verification', `${formatTime(last.at)}: ${last.ok ? 'intact' : `BROKEN${last.brokenAt !== undefined ? ` at event ${last.brokenAt}` : ''}`} (${last.events} events)`]);
        return renderFields(fields);
      });
      if (!result.ok) {
        const where =
          result.brokenAt !== undefined
            ? `from event ${result.brokenAt} on`
            : failed.length > 0
              ? `at signed checkpoint ${failed.map((f) => `${f.seq} (${f.reason})`).join(', ')}`
              : last && !last.ok
                ? `(the last full verification, ${formatTime(last.at)}, found it broken${last.brokenAt !== undefined ? ` at event ${last.brokenAt}` : ''})`
                : '';
        session.out.error([`error audit_broken: The audit chain does not verify ${where}: an event or a checkpoint was edited, inserted or removed behind the relay's back.`, '  what to do: keep a copy of the database as it is (evidence), export the signed heads (incident-relay audit heads), and tell the security team']);
        session.exitCode = EXIT.failure;
      }
    });

  audit
    .command('heads')
    .description("export the audit chain's signed checkpoints (admin), so a copy kept elsewhere proves the history; --text writes clearsigned texts gpg can check against the relay key")
    .option('--text', 'one clearsigned text per checkpoint (check each with gpg --verify after importing incident-relay relay-key)')
    .option('-o, --output <file>', 'write to this file (created readable by you only) instead of stdout')
    .addHelpText('after', '\nExample:\n  incident-relay audit heads -o heads-$(date +%F).json')
    .action(async (opts: { text?: boolean; output?: string }, cmd: Command) => {
      const session = app.session(cmd);
      const client = session.client();
      const chunks: string[] = [];
      if (opts.text) {
        // Clearsigned texts page by the X-Next-Cursor header.
        for (let cursor: string | null = ''; cursor !== null; ) {
          const answer = await client.request('GET', `/v1/audit/heads?format=text&limit=1000${cursor === '' ? '' : `&cursor=${encodeURIComponent(cursor)}`}`, { accept: 'text/plain' });
          chunks.push(typeof answer.body === 'string' ? answer.body : '');
          const next = answer.headers.get('x-next-cursor');
          cursor = next !== null && next !== '' ? next : null;
        }
      } else {
        const heads: AuditCheckpointView[] = [];
        for await (const page of allPages<AuditCheckpointView>(client, '/v1/audit/heads', 'checkpoints', { limit: '1000' })) heads.push(...page);
        chunks.push(JSON.stringify({ checkpoints: heads }, null, 2) + '\n');
      }
      if (opts.output === undefined) {
        session.out.raw(chunks.join(''));
        return;
      }
      let fd: number;
      try {
        fd = fs.openSync(opts.output, 'wx', 0o600);
      } catch (err) {
        throw new CliError('output', `Cannot create ${opts.output}: ${(err as NodeJS.ErrnoException).code ?? (err as Error).message}.`, EXIT.failure, 'choose a new file name; an existing file is not overwritten');
      }
      try {
        fs.writeSync(fd, chunks.join(''));
        fs.fsyncSync(fd);
      } finally {
        fs.closeSync(fd);
      }
      session.out.note(`Wrote the signed heads to ${opts.output}.`);
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
