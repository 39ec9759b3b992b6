/**
 * Which incident a submitted message belongs to (SPEC §5): the X-Incident
 * header, else a codename in the submitted subject, else the one open
 * incident whose roster holds the sender; anything else is ambiguous. An
 * incident the sender is not on is answered exactly like one that does not
 * exist, as on the HTTP API.
 */
import type { RelayContext } from '../context.js';
import { RelayError } from '../errors.js';
import { authorizeIncident, inScope, type Caller } from '../services/incidents.js';
import type { Incident } from '../store/incidents.js';

const HINT = 'Name it in an X-Incident: <codename> header, or put its codename in the subject.';
const LIST_AT_MOST = 5;

function listed(codenames: readonly string[]): string {
  const shown = codenames.slice(0, LIST_AT_MOST).join(', ');
  return codenames.length > LIST_AT_MOST ? `${shown} and ${codenames.length - LIST_AT_MOST} more` : shown;
}

function ambiguous(message: string): RelayError {
  return new RelayError('ambiguous_incident', `${message} ${HINT}`);
}

/** Codename-shaped words of a subject: lowercase runs of letters, digits and hyphens. */
export function subjectTokens(subject: string): string[] {
  return subject
    .toLowerCase()
    .split(/[^a-z0-9-]+/)
    .map((t) => t.replace(/^-+|-+$/g, ''))
    .filter((t) => t.length >= 3);
}

/** Resolves the incident of one message, or throws RelayError ambiguous_incident / not_found. */
export async function resolveIncident(ctx: Pick<RelayContext, 'store'>, caller: Caller, hints: { xIncident: readonly string[]; subject?: string | undefined }): Promise<Incident> {
  const named = [...new Set(hints.xIncident.map((v) => v.trim().toLowerCase()).filter((v) => v !== ''))];
  if (named.length > 1) throw ambiguous(`The message names ${named.length} incidents in X-Incident headers; name exactly one.`);
  if (named.length === 1) return (await authorizeIncident(ctx, caller, named[0]!)).incident;

  if (hints.subject) {
    // Only incidents the sender is on count, so a word that happens to be someone else's codename reveals nothing.
    const mine = new Map((await ctx.store.incidents.list(caller.email)).filter((i) => inScope(caller, i.id)).map((i) => [i.codename, i]));
    const found = [...new Set(subjectTokens(hints.subject).filter((t) => mine.has(t)))];
    if (found.length > 1) throw ambiguous(`The subject names ${found.length} of your incidents (${listed(found)}).`);
    if (found.length === 1) return mine.get(found[0]!)!;
  }

  const open = await possibleIncidents(ctx, caller);
  if (open.length === 1) return open[0]!;
  if (open.length === 0) throw ambiguous('You are on no open incident\'s roster, so the relay cannot tell which incident this message is for.');
  throw ambiguous(`You are on ${open.length} open incidents (${listed(open.map((i) => i.codename))}); the relay cannot tell which one this message is for.`);
}

/**
 * The incidents a message from `caller` can possibly be accepted for: the open
 * ones whose roster holds them (a closed or foreign one is refused whatever
 * the headers say). Used at RCPT time, before the headers are known.
 */
export async function possibleIncidents(ctx: Pick<RelayContext, 'store'>, caller: Caller): Promise<Incident[]> {
  return (await ctx.store.incidents.openFor(caller.email)).filter((i) => inScope(caller, i.id));
}

/**
 * The refusal for recipient `address` at RCPT time, when it can already be
 * given: the recipient is on the roster of none of the incidents the message
 * could belong to. Undefined when it must wait for the headers (DATA).
 */
export async function recipientRefusal(ctx: Pick<RelayContext, 'store'>, caller: Caller, address: string): Promise<RelayError | undefined> {
  const candidates = await possibleIncidents(ctx, caller);
  // With no candidate the message fails at DATA anyway, with the precise reason (closed, unknown, ambiguous).
  if (candidates.length === 0) return undefined;
  for (const i of candidates) if ((await ctx.store.incidents.activeMember(i.id, address)) !== undefined) return undefined;
  const where = candidates.length === 1 ? `the response roster of ${candidates[0]!.codename}` : 'the roster of any open incident you are on';
  return new RelayError(
    'recipient_not_on_roster',
    `${address} is not on ${where}. The whole message will be refused, so nothing reaches anyone; remove them, or ask the commander to add them. People outside the response team hear only through an approved announcement.`,
    { rule: 'roster', details: { recipients: [address] } },
  );
}
