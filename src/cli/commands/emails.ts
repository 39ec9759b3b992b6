/** `send` (with `--dry-run`, the policy preview) and `emails` (list, status by id or Message-ID). */
import { randomUUID } from 'node:crypto';
import fs from 'node:fs';
import type { Command } from 'commander';
import type { EmailAccepted, EmailView } from '../api-types.js';
import type { App } from '../app.js';
import { ApiError, apiPath, type RelayClient } from '../client.js';
import { readAttachments } from '../attachments.js';
import { CliError, EXIT, usageError } from '../exit.js';
import { cell, formatTime, indent, renderFields, renderTable, sanitize } from '../output.js';
import { readStdin } from '../prompt.js';
import { isDryRunAnswer, renderVerdict } from '../verdict.js';
import { allPages, collect, collectList, fetchPage, positiveInt } from './common.js';

/** A body read from --file or stdin is bounded like the relay bounds a message. */
const MAX_BODY_BYTES = 32 * 1024 * 1024;

interface SendOptions {
  to?: string[];
  cc?: string[];
  bcc?: string[];
  subject?: string;
  text?: string;
  file?: string;
  attach?: string[];
  replyToMessageId?: string;
  dryRun?: boolean;
  idempotencyKey?: string;
}

/** The body from --text, --file PATH or --file - (stdin), bounded; a usage error when neither or both. */
export async function bodyText(opts: Pick<SendOptions, 'text' | 'file'>, stdin: App['environment']['stdin']): Promise<string> {
  if (opts.text !== undefined && opts.file !== undefined) throw usageError('Give the body with --text or --file, not both.');
  if (opts.text !== undefined) return opts.text;
  if (opts.file === undefined) throw usageError('No body.', 'give it with --text "…", --file PATH, or --file - to read stdin');
  if (opts.file === '-') return (await readStdin(stdin, MAX_BODY_BYTES, 'The body')).toString('utf8');
  try {
    const stat = fs.statSync(opts.file);
    if (stat.size > MAX_BODY_BYTES) throw new CliError('body_file', `${opts.file} is larger than ${MAX_BODY_BYTES} bytes; attach it with --attach instead.`, EXIT.failure);
    return fs.readFileSync(opts.file, 'utf8');
  } catch (err) {
    if (err instanceof CliError) throw err;
    throw new CliError('body_file', `Cannot read --file ${opts.file}: ${(err as NodeJS.ErrnoException).code ?? (err as Error).message}.`, EXIT.failure);
  }
}

/**
 * A relay that predates dry runs ignores `?dryRun=true` and SENDS the
 * message. The e-mail list route arrived with dry runs (issue 12 §1-2), and
 * an older relay answers it with 405; so ask it first, and refuse rather
 * than risk sending what the user only wanted to check.
 */
async function assertDryRunSupported(client: RelayClient, codename: string): Promise<void> {
  try {
    await client.get(apiPath`/v1/incidents/${codename}/emails`, { query: { limit: 1 } });
  } catch (err) {
    if (err instanceof ApiError && (err.code === 'method_not_allowed' || (err.code === 'not_found' && /^No route /.test(err.message)))) {
      throw new CliError('dry_run_unsupported', 'This relay predates dry runs: it would have sent the message. Nothing was sent.', EXIT.refused, 'ask an admin to upgrade the relay; until then, check recipients and keys with incident-relay roster');
    }
    throw err;
  }
}

/** The email's state as `label: value` lines, then one line per delivery. */
export function renderEmail(email: EmailView): string {
  const fields: [string, unknown][] = [['id', email.id]];
  if (email.messageId !== undefined) fields.push(['message-id', email.messageId]);
  if (email.sender !== undefined) fields.push(['sender', email.sender]);
  if (email.createdAt !== undefined) fields.push(['created', formatTime(email.createdAt)]);
  if (email.encrypted !== undefined) fields.push(['encrypted', email.encrypted ? 'yes' : 'no']);
  if (email.recipients !== undefined) fields.push(['recipients', email.recipients]);
  fields.push(['status', email.status], ['attempts', email.attempts]);
  if (email.lastError) fields.push(['last error', email.lastError]);
  let text = renderFields(fields);
  if (Array.isArray(email.deliveries) && email.deliveries.length > 0) {
    text += 'deliveries:\n' + indent(renderTable(['RECIPIENTS', 'STATUS', 'ATTEMPTS', 'LAST ERROR'], email.deliveries.map((d) => [d.recipients, d.status, d.attempts, d.lastError])));
  }
  return text;
}

const FINAL = new Set(['sent', 'failed', 'cancelled']);

/** Registers `send` and `emails`. */
export function registerEmails(program: Command, app: App): void {
  program
    .command('send')
    .description('send incident mail through the relay (fixed subject, encrypted when anyone is outside the company)')
    .argument('<codename>', 'the incident')
    .option('--to <addresses>', 'recipient; repeat, or separate with commas', collectList)
    .option('--cc <addresses>', 'Cc recipient; repeat, or separate with commas', collectList)
    .option('--bcc <addresses>', 'Bcc recipient (in no header; own encrypted copy); repeat, or separate with commas', collectList)
    .option('--subject <text>', 'your subject: it becomes the first body line "Topic: …"; the subject sent is always "Attorney Work Project"')
    .option('--text <body>', 'the body')
    .option('--file <path>', 'read the body from a file, or - for stdin')
    .option('--attach <file>', 'attach a file (repeatable); content type from its extension', collect)
    .option('--reply-to-message-id <id>', 'the Message-ID this replies to, angle brackets included (sets In-Reply-To)')
    .option('--dry-run', 'ask the relay what it would do (recipients, encryption, keys) and send nothing')
    .option('--idempotency-key <key>', 'reuse the key of an earlier try so a retry never sends twice (default: a new random one)')
    .addHelpText(
      'after',
      `
Examples:
  incident-relay send amber-otter --to counsel@lawfirm.example --subject Briefing --text "Call at 3pm."
  incident-relay send amber-otter --to sec@corp.example,exec@corp.example --file notes.txt --attach timeline.pdf
  git log -1 | incident-relay send amber-otter --to sec@corp.example --file -
  incident-relay send amber-otter --to counsel@lawfirm.example --text draft --dry-run

--dry-run exits 0 when the relay would accept the message and 3 when it would refuse it.`,
    )
    .action(async (codename: string, opts: SendOptions, cmd: Command) => {
      const session = app.session(cmd);
      session.errors.codename = codename;
      const to = opts.to ?? [];
      if (to.length === 0) throw usageError('No recipient.', 'give at least one --to address');
      const client = session.client();
      const text = await bodyText(opts, app.environment.stdin);
      const body: Record<string, unknown> = { to };
      if (opts.cc?.length) body['cc'] = opts.cc;
      if (opts.bcc?.length) body['bcc'] = opts.bcc;
      if (opts.subject !== undefined) body['subject'] = opts.subject;
      body['text'] = text;
      if (opts.replyToMessageId !== undefined) body['inReplyTo'] = opts.replyToMessageId;
      if (opts.attach?.length) body['attachments'] = readAttachments(opts.attach);

      if (opts.dryRun) {
        await assertDryRunSupported(client, codename);
        const answer = await client.request('POST', apiPath`/v1/incidents/${codename}/emails`, { query: { dryRun: 'true' }, json: body });
        if (answer.status === 202 || !isDryRunAnswer(answer.body)) {
          throw new CliError('dry_run_ignored', `The relay answered HTTP ${answer.status}, not a preview: it may have SENT the message.`, EXIT.failure, `check with incident-relay emails ${codename}, and tell an admin the relay ignores dryRun`);
        }
        const verdict = answer.body;
        session.out.result(verdict, () => renderVerdict(verdict, codename));
        if (verdict.outcome !== 'accept') session.exitCode = EXIT.refused;
        return;
      }

      const key = opts.idempotencyKey ?? `cli-${randomUUID()}`;
      session.errors.idempotencyKey = key;
      const accepted = await client.post<EmailAccepted>(apiPath`/v1/incidents/${codename}/emails`, body, { headers: { 'Idempotency-Key': key } });
      session.out.result({ ...accepted, idempotencyKey: key }, () =>
        [
          `Queued ${sanitize(accepted.messageId)}: ${accepted.encrypted ? 'ENCRYPTED' : 'plain (all recipients inside the company)'}, to ${cell(accepted.recipients)}.`,
          `Delivery: incident-relay emails status ${sanitize(codename)} ${sanitize(accepted.id)}`,
          '',
        ].join('\n'),
      );
    });

  const emails = program.command('emails').description("an incident's emails and their delivery status");

  emails
    .command('list', { isDefault: true })
    .description('list emails, newest first (the sender sees their own; commanders and admins all)')
    .argument('<codename>', 'the incident')
    .option('--limit <n>', 'how many per page (1-1000)', positiveInt)
    .option('--cursor <cursor>', 'continue after an earlier page')
    .option('--all', 'follow every page')
    .action(async (codename: string, opts: { limit?: number; cursor?: string; all?: boolean }, cmd: Command) => {
      const session = app.session(cmd);
      session.errors.codename = codename;
      const client = session.client();
      const path = apiPath`/v1/incidents/${codename}/emails`;
      const query = { limit: opts.limit, cursor: opts.cursor };
      let list: EmailView[] = [];
      let next: string | undefined;
      if (opts.all) for await (const page of allPages<EmailView>(client, path, 'emails', query)) list = list.concat(page);
      else ({ items: list, next } = await fetchPage<EmailView>(client, path, 'emails', query));
      session.out.result({ emails: list, ...(next ? { next } : {}) }, () =>
        session.out.table(
          ['ID', 'CREATED', 'SENDER', 'STATUS', 'ENCRYPTED', 'ATTEMPTS', 'RECIPIENTS'],
          list.map((e) => [e.id, formatTime(e.createdAt), e.sender, e.status, e.encrypted === undefined ? '-' : e.encrypted ? 'yes' : 'no', e.attempts, e.recipients]),
        ),
      );
      if (next && !session.out.json) session.out.note(`more: incident-relay emails list ${codename} --cursor ${sanitize(next)}`);
    });

  emails
    .command('status')
    .description("one email's delivery status, by the id send printed or by its Message-ID (<…@…>)")
    .argument('<codename>', 'the incident')
    .argument('<id>', 'the id, or the Message-ID with its angle brackets')
    .option('--wait <seconds>', 'wait up to this long for it to be sent, failed or cancelled', positiveInt)
    .action(async (codename: string, id: string, opts: { wait?: number }, cmd: Command) => {
      const session = app.session(cmd);
      session.errors.codename = codename;
      const client = session.client();
      const fetchOne = async (): Promise<EmailView> => {
        if (!id.startsWith('<')) return client.get<EmailView>(apiPath`/v1/incidents/${codename}/emails/${id}`);
        const { items } = await fetchPage<EmailView>(client, apiPath`/v1/incidents/${codename}/emails`, 'emails', { messageId: id, limit: 1 });
        if (!items[0]) throw new CliError('not_found', `No email with Message-ID ${id} in ${codename} that you can see.`, EXIT.refused, 'the sender sees their own emails; commanders and admins see all');
        return items[0];
      };
      const deadline = Date.now() + (opts.wait ?? 0) * 1000;
      let email = await fetchOne();
      while (!FINAL.has(email.status) && Date.now() < deadline) {
        await new Promise((resolve) => setTimeout(resolve, 250));
        email = await fetchOne();
      }
      session.out.result(email, () => renderEmail(email));
    });
}
