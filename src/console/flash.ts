/**
 * The one-shot result a POST leaves for the page it redirects to (POST,
 * redirect, GET), kept in the session row so that it works whichever
 * replica serves the GET. It holds addresses, ids and statuses — what the
 * API's answer held — never message content.
 *
 * It reports an action that has already committed, so it is best-effort:
 * a list longer than a page shows is clipped ("and N more"), never refused,
 * and a store that will not keep it does not turn the answer into a
 * refusal (leaveFlash says so, and the route shows the result at once).
 */
import { z } from 'zod';
import type { RelayContext } from '../context.js';
import type { ConsoleSession } from '../store/console-sessions.js';

// How much a page shows; the rest of a list is counted, not shown.
const MAX_NOTICE = 2000;
const MAX_RECIPIENTS_SHOWN = 100;
const MAX_RESULTS_SHOWN = 1000;
const MAX_NOT_FOUND_SHOWN = 1000;

const count = z.number().int().min(0);

const Shown = z.discriminatedUnion('kind', [
  z.object({ kind: z.literal('notice'), text: z.string().max(MAX_NOTICE) }),
  z.object({
    kind: z.literal('email'),
    id: z.string().max(100),
    messageId: z.string().max(600),
    encrypted: z.boolean(),
    recipients: z.array(z.string().max(254)).max(MAX_RECIPIENTS_SHOWN),
    more: count,
  }),
  z.object({
    kind: z.literal('nudge'),
    queued: count,
    skipped: count,
    results: z.array(z.object({ email: z.string().max(254), status: z.string().max(40), reason: z.string().max(80).optional() })).max(MAX_RESULTS_SHOWN),
    more: count,
  }),
  z.object({
    kind: z.literal('slack'),
    name: z.string().max(100).nullable(),
    kicked: count,
    invited: count,
    topicRestored: z.boolean(),
    notFound: z.array(z.string().max(254)).max(MAX_NOT_FOUND_SHOWN),
    more: count,
  }),
]);

/** What the next page shows once: lists clipped to what a page holds, `more` counting the rest. */
export type Flash = z.infer<typeof Shown>;

/** One member's line of a nudge's result. */
export interface NudgeLine {
  email: string;
  status: string;
  reason?: string;
}

/** What a POST reports: lists as long as they are. */
export type FlashInput =
  | { kind: 'notice'; text: string }
  | { kind: 'email'; id: string; messageId: string; encrypted: boolean; recipients: readonly string[] }
  | { kind: 'nudge'; results: readonly NudgeLine[] }
  | { kind: 'slack'; name: string | null; kicked: number; invited: number; topicRestored: boolean; notFound: readonly string[] };

/** A report as a page shows it: each list clipped with a count of the rest, a long notice cut short. */
export function shownFlash(flash: FlashInput): Flash {
  switch (flash.kind) {
    case 'notice':
      return { kind: 'notice', text: flash.text.length > MAX_NOTICE ? `${flash.text.slice(0, MAX_NOTICE - 1)}…` : flash.text };
    case 'email':
      return { ...flash, recipients: flash.recipients.slice(0, MAX_RECIPIENTS_SHOWN), more: Math.max(0, flash.recipients.length - MAX_RECIPIENTS_SHOWN) };
    case 'nudge': {
      const queued = flash.results.filter((r) => r.status === 'queued').length;
      return {
        kind: 'nudge',
        queued,
        skipped: flash.results.length - queued,
        results: flash.results.slice(0, MAX_RESULTS_SHOWN).map((r) => ({ email: r.email, status: r.status, ...(r.reason ? { reason: r.reason } : {}) })),
        more: Math.max(0, flash.results.length - MAX_RESULTS_SHOWN),
      };
    }
    case 'slack':
      return { ...flash, notFound: flash.notFound.slice(0, MAX_NOT_FOUND_SHOWN), more: Math.max(0, flash.notFound.length - MAX_NOT_FOUND_SHOWN) };
  }
}

/**
 * Leaves `flash` for the session's next page; true when it is kept. Never
 * throws: when the store (or the shape check) refuses it, the failure is
 * logged — the kind and the store's error, never the content — and false
 * returned, so the caller shows the result at once instead.
 */
export async function leaveFlash(deps: Pick<RelayContext, 'store' | 'logger'>, session: ConsoleSession, flash: FlashInput): Promise<boolean> {
  try {
    await deps.store.consoleSessions.setFlash(session.idHash, JSON.stringify(Shown.parse(shownFlash(flash))));
    return true;
  } catch (err) {
    // A ZodError's message would quote the fields it found wrong; a store's error names the store's problem only.
    const reason = err instanceof z.ZodError ? 'the result does not fit the page' : err instanceof Error ? err.message : String(err);
    deps.logger.error({ flash: flash.kind, code: (err as { code?: unknown } | null)?.code, reason }, 'could not keep a console result for the next page; shown at once instead');
    return false;
  }
}

/** The flash the last POST left, cleared as it is read; undefined when there is none (or it does not parse). */
export async function takeFlash(deps: Pick<RelayContext, 'store'>, session: ConsoleSession): Promise<Flash | undefined> {
  if (session.flash === null) return undefined;
  await deps.store.consoleSessions.setFlash(session.idHash, null);
  try {
    const parsed = Shown.safeParse(JSON.parse(session.flash));
    return parsed.success ? parsed.data : undefined;
  } catch {
    return undefined;
  }
}
