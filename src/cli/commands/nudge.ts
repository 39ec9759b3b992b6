/** `nudge`: the SMS "Please join Slack ASAP." to named members or the whole roster, and `slack sync`. */
import { randomUUID } from 'node:crypto';
import type { Command } from 'commander';
import type { NudgeAnswer } from '../api-types.js';
import type { App } from '../app.js';
import { apiPath } from '../client.js';
import { usageError } from '../exit.js';
import { cell, renderFields } from '../output.js';

/** Registers `nudge` and `slack sync`. */
export function registerNudge(program: Command, app: App): void {
  program
    .command('nudge')
    .description('text roster members the fixed nudge "Please join Slack ASAP." (SMS carries nothing else)')
    .argument('<codename>', 'the incident')
    .argument('[emails...]', "members to nudge, by their roster address (texted at the roster's phone)")
    .option('--roster', 'every active member of the roster (you included)')
    .option('--idempotency-key <key>', 'reuse the key of an earlier try so a retry never texts twice (default: a new random one)')
    .addHelpText('after', '\nExamples:\n  incident-relay nudge amber-otter sec@corp.example exec@corp.example\n  incident-relay nudge amber-otter --roster\n\nA member nudged within RELAY_SMS_NUDGE_INTERVAL is skipped (recently_nudged).')
    .action(async (codename: string, emails: string[], opts: { roster?: boolean; idempotencyKey?: string }, cmd: Command) => {
      const session = app.session(cmd);
      session.errors.codename = codename;
      if (opts.roster && emails.length > 0) throw usageError('Give member addresses or --roster, not both.');
      if (!opts.roster && emails.length === 0) throw usageError('Whom to nudge?', `name members (incident-relay nudge ${codename} EMAIL…) or use --roster`);
      const client = session.client();
      const key = opts.idempotencyKey ?? `cli-${randomUUID()}`;
      session.errors.idempotencyKey = key;
      const answer = await client.post<NudgeAnswer>(apiPath`/v1/incidents/${codename}/sms`, { to: opts.roster ? 'roster' : emails }, { headers: { 'Idempotency-Key': key } });
      const results = Array.isArray(answer?.results) ? answer.results : [];
      session.out.result({ ...answer, idempotencyKey: key }, () => session.out.table(['EMAIL', 'STATUS', 'REASON'], results.map((r) => [r.email, r.status, r.reason])));
    });

  const slack = program.command('slack').description("the incident's Slack room");
  slack
    .command('sync')
    .description('reconcile the room now: kick non-members, invite missing members, restore the topic (commander or admin)')
    .argument('<codename>', 'the incident')
    .action(async (codename: string, _opts: unknown, cmd: Command) => {
      const session = app.session(cmd);
      session.errors.codename = codename;
      const result = await session.client().post<Record<string, unknown>>(apiPath`/v1/incidents/${codename}/slack/sync`, {});
      session.out.result(result, () =>
        renderFields([
          ['room', `${cell(result['state'])} ${result['name'] ? `#${cell(result['name'])}` : ''}`.trim()],
          ['kicked', result['kicked']],
          ['invited', result['invited']],
          ['topic restored', result['topicRestored'] ? 'yes' : 'no'],
          ['not found in Slack', result['notFound']],
          ['failed', result['failed']],
        ]),
      );
    });
}
