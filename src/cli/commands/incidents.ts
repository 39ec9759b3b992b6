/** `incidents`, `declare`, `show`, `close`, `reopen`. */
import { Option, type Command } from 'commander';
import type { IncidentView } from '../api-types.js';
import type { App } from '../app.js';
import { apiPath } from '../client.js';
import { CliError, EXIT, usageError } from '../exit.js';
import { formatTime, renderFields, sanitize } from '../output.js';
import { confirm } from '../prompt.js';

function slackSummary(slack: IncidentView['slack']): string {
  if (!slack) return '-';
  return [slack.state, slack.name ? `#${slack.name}` : '', slack.reason ? `(${slack.reason})` : ''].filter((s) => s !== '').join(' ');
}

/** The incident as `label: value` lines. */
export function renderIncident(incident: IncidentView): string {
  const fields: [string, unknown][] = [
    ['codename', incident.codename],
    ['status', incident.status],
    ['commander', incident.commander],
  ];
  if (incident.label !== undefined) fields.push(['label', incident.label]);
  fields.push(['created', formatTime(incident.createdAt)], ['closed', formatTime(incident.closedAt)], ['slack', slackSummary(incident.slack)]);
  if (incident.internalSourceRuledOut !== undefined) {
    const r = incident.internalSourceRuledOut;
    fields.push(['internal source', r ? `ruled out ${formatTime(r.at)} by ${sanitize(r.by)}: ${sanitize(r.note)}` : 'not ruled out']);
  }
  fields.push(['id', incident.id]);
  return renderFields(fields);
}

/** Registers the incident commands. */
export function registerIncidents(program: Command, app: App): void {
  program
    .command('incidents')
    .description('list the incidents whose roster holds you (admins: all)')
    .addOption(new Option('--status <status>', 'only open or only closed incidents').choices(['open', 'closed']))
    .action(async (opts: { status?: string }, cmd: Command) => {
      const session = app.session(cmd);
      const answer = await session.client().get<{ incidents?: IncidentView[] }>('/v1/incidents', { query: { status: opts.status } });
      // Filtered here too: a relay that predates ?status= sends them all.
      const incidents = (answer?.incidents ?? []).filter((i) => opts.status === undefined || i.status === opts.status);
      session.out.result({ incidents }, () => {
        if (incidents.length === 0) return `No ${opts.status ?? ''}${opts.status ? ' ' : ''}incidents that you are on.\n`;
        const withLabel = incidents.some((i) => i.label);
        return session.out.table(
          ['CODENAME', 'STATUS', 'COMMANDER', 'CREATED', 'CLOSED', 'SLACK', ...(withLabel ? ['LABEL'] : [])],
          incidents.map((i) => [i.codename, i.status, i.commander, formatTime(i.createdAt), formatTime(i.closedAt), slackSummary(i.slack), ...(withLabel ? [i.label] : [])]),
        );
      });
    });

  program
    .command('declare')
    .description('declare an incident; prints its codename (you become its commander unless --commander)')
    .option('--codename <codename>', 'choose the codename (lowercase words and hyphens); default: a generated innocuous one')
    .option('--commander <email>', 'the commander (admins must name one; a responder may name only themself)')
    .option('--label <text>', 'a private one-line note, shown only to the roster and admins')
    .addHelpText('after', '\nPrints only the codename on stdout, so a script can keep it:\n  CODENAME=$(incident-relay declare)')
    .action(async (opts: { codename?: string; commander?: string; label?: string }, cmd: Command) => {
      const session = app.session(cmd);
      const body: Record<string, string> = {};
      if (opts.codename !== undefined) body['codename'] = opts.codename;
      if (opts.commander !== undefined) body['commander'] = opts.commander;
      if (opts.label !== undefined) body['label'] = opts.label;
      const incident = await session.client().post<IncidentView>('/v1/incidents', body);
      session.out.result(incident, () => `${sanitize(incident.codename)}\n`);
      if (!session.out.json) {
        session.out.note(`Declared ${sanitize(incident.codename)}; commander ${sanitize(incident.commander)}. Next: incident-relay roster add ${sanitize(incident.codename)} EMAIL --role ROLE`);
      }
    });

  program
    .command('show')
    .description("show an incident: status, commander, Slack room")
    .argument('<codename>', 'the incident')
    .action(async (codename: string, _opts: unknown, cmd: Command) => {
      const session = app.session(cmd);
      session.errors.codename = codename;
      const incident = await session.client().get<IncidentView>(apiPath`/v1/incidents/${codename}`);
      session.out.result(incident, () => renderIncident(incident));
    });

  program
    .command('close')
    .description('close an incident: no more mail or nudges for it (asks first unless --yes)')
    .argument('<codename>', 'the incident')
    .option('-y, --yes', 'do not ask for confirmation (needed when stdin is not a terminal)')
    .action(async (codename: string, opts: { yes?: boolean }, cmd: Command) => {
      const session = app.session(cmd);
      session.errors.codename = codename;
      const client = session.client();
      if (!opts.yes) {
        if (!app.environment.stdin.isTTY) throw usageError(`Closing ${codename} needs confirmation, and stdin is not a terminal.`, `incident-relay close ${codename} --yes`);
        const sure = await confirm(`Close ${codename}? Nobody will be able to send mail or nudges for it.`, app.environment.stdin, app.environment.stderr);
        if (!sure) throw new CliError('cancelled', `Not closed: ${codename} stays open.`, EXIT.failure);
      }
      const incident = await client.patch<IncidentView>(apiPath`/v1/incidents/${codename}`, { status: 'closed' });
      session.out.result(incident, () => `Closed ${sanitize(incident.codename)} at ${formatTime(incident.closedAt)}.\n`);
    });

  program
    .command('reopen')
    .description('reopen a closed incident (commander or admin)')
    .argument('<codename>', 'the incident')
    .action(async (codename: string, _opts: unknown, cmd: Command) => {
      const session = app.session(cmd);
      session.errors.codename = codename;
      const incident = await session.client().patch<IncidentView>(apiPath`/v1/incidents/${codename}`, { status: 'open' });
      session.out.result(incident, () => `Reopened ${sanitize(incident.codename)}.\n`);
    });
}
