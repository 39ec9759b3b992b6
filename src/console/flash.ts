/**
 * The one-shot result a POST leaves for the page it redirects to (POST,
 * redirect, GET), kept in the session row so that it works whichever
 * replica serves the GET. It holds addresses, ids and statuses — what the
 * API's answer held — never message content.
 */
import { z } from 'zod';
import type { RelayContext } from '../context.js';
import type { ConsoleSession } from '../store/console-sessions.js';

const Flash = z.discriminatedUnion('kind', [
  z.object({ kind: z.literal('notice'), text: z.string().max(2000) }),
  z.object({
    kind: z.literal('email'),
    id: z.string().max(100),
    messageId: z.string().max(600),
    encrypted: z.boolean(),
    recipients: z.array(z.string().max(254)).max(100),
  }),
  z.object({
    kind: z.literal('nudge'),
    results: z.array(z.object({ email: z.string().max(254), status: z.string().max(40), reason: z.string().max(80).optional() })).max(1000),
  }),
  z.object({
    kind: z.literal('slack'),
    name: z.string().max(100).nullable(),
    kicked: z.number().int(),
    invited: z.number().int(),
    topicRestored: z.boolean(),
    notFound: z.array(z.string().max(254)).max(1000),
  }),
]);

/** What the next page shows once. */
export type Flash = z.infer<typeof Flash>;

/** Leaves `flash` for the session's next page. */
export async function leaveFlash(deps: Pick<RelayContext, 'store'>, session: ConsoleSession, flash: Flash): Promise<void> {
  await deps.store.consoleSessions.setFlash(session.idHash, JSON.stringify(Flash.parse(flash)));
}

/** The flash the last POST left, cleared as it is read; undefined when there is none (or it does not parse). */
export async function takeFlash(deps: Pick<RelayContext, 'store'>, session: ConsoleSession): Promise<Flash | undefined> {
  if (session.flash === null) return undefined;
  await deps.store.consoleSessions.setFlash(session.idHash, null);
  try {
    const parsed = Flash.safeParse(JSON.parse(session.flash));
    return parsed.success ? parsed.data : undefined;
  } catch {
    return undefined;
  }
}
