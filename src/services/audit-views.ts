/**
 * Reading the audit log (issue 12 §4): filtered, paged by sequence number,
 * and with Bcc recipients taken out for readers who may not see them
 * (issue 10 §5): only the sender, the incident's commander and admins see
 * who was Bcc'd. The log itself is never changed; a redacted event says so.
 */
import type { RelayContext } from '../context.js';
import { RelayError } from '../errors.js';
import type { AuditEvent, AuditFilter } from '../store/audit.js';
import type { Incident, RosterMember } from '../store/incidents.js';
import type { EmailRecord } from '../store/outbox.js';
import type { Caller } from './incidents.js';

/** What a reader asks of the audit log; `incident` (a codename) only on GET /v1/audit. */
export interface AuditRequest {
  type?: string | undefined;
  /** `smtp.` (from `type=smtp.*`): every type with this prefix. */
  typePrefix?: string | undefined;
  actor?: string | undefined;
  incident?: string | undefined;
  /** ISO times: since inclusive, until exclusive. */
  since?: string | undefined;
  until?: string | undefined;
  /** Start after this sequence number (the `cursor` or the older `after`). */
  after?: number | undefined;
  limit: number;
}

/** A page of events; `next` is the cursor of the following page when there may be one. */
export interface AuditPage {
  events: AuditEvent[];
  next?: string;
}

/** The cursor of the page after `seq`: opaque to clients, a sequence number to the relay. */
export function auditCursor(seq: number): string {
  return String(seq);
}

/** The sequence number a cursor stands for; invalid_request for anything this relay did not give out. */
export function auditCursorSeq(cursor: string): number {
  if (!/^[0-9]{1,15}$/.test(cursor)) throw new RelayError('invalid_request', 'cursor is not one this relay gave out; start again without it.', { details: { field: 'cursor' } });
  return Number(cursor);
}

async function page(ctx: Pick<RelayContext, 'store'>, filter: Omit<AuditFilter, 'limit'>, limit: number): Promise<{ events: AuditEvent[]; next?: string }> {
  // One more than asked: whether there is a next page, without a COUNT.
  const rows = await ctx.store.audit.query({ ...filter, limit: limit + 1 });
  const events = rows.slice(0, limit);
  return rows.length > limit ? { events, next: auditCursor(events[events.length - 1]!.seq) } : { events };
}

function filterOf(request: AuditRequest): Omit<AuditFilter, 'limit' | 'incidentId'> {
  return { type: request.type, typePrefix: request.typePrefix, actor: request.actor, since: request.since, until: request.until, after: request.after };
}

/** GET /v1/audit (admins): every event matching the filters. An unknown incident codename is not_found. */
export async function readAudit(ctx: Pick<RelayContext, 'store'>, caller: Caller, request: AuditRequest): Promise<AuditPage> {
  if (caller.role !== 'admin') throw new RelayError('forbidden', "Only an admin reads the whole audit log; an incident's commander, deputies and scribes read its events at GET /v1/incidents/<codename>/audit.");
  let incidentId: string | undefined;
  if (request.incident !== undefined) {
    const incident = await ctx.store.incidents.byCodename(request.incident);
    if (!incident) throw new RelayError('not_found', `No incident "${request.incident.slice(0, 80)}".`);
    incidentId = incident.id;
  }
  // Admins see Bcc recipients (issue 10 §5): nothing to take out.
  return page(ctx, { ...filterOf(request), incidentId }, request.limit);
}

/** GET /v1/incidents/:codename/audit: the incident's events, with Bcc recipients hidden from readers who may not see them. */
export async function readIncidentAudit(
  ctx: Pick<RelayContext, 'store'>,
  caller: Caller,
  access: { incident: Incident; member: RosterMember | undefined },
  request: AuditRequest,
): Promise<AuditPage> {
  const result = await page(ctx, { ...filterOf(request), incidentId: access.incident.id }, request.limit);
  if (caller.role === 'admin' || access.member?.role === 'commander') return result;
  const emailIds = result.events.flatMap((e) => (typeof e.data['emailId'] === 'string' ? [e.data['emailId']] : []));
  const emails = emailIds.length > 0 ? await ctx.store.outbox.emailsById(emailIds) : new Map<string, EmailRecord>();
  return { ...result, events: result.events.map((e) => redactBcc(e, caller.email, emails)) };
}

/**
 * The event as `reader` may see it: the addresses that were Bcc recipients
 * of its email taken out wherever they stand in its data, unless the reader
 * sent that email. Which addresses: for a decision or preview, the Bcc list
 * it recorded (less any address also in To or Cc, which everyone saw); for
 * an event of a queued email (deliveries, cancellations, partial
 * refusals), that email's Bcc recipients, or, for an email queued before the
 * relay kept them apart (migration 8), every recipient, since which were Bcc
 * is not known. A redacted event carries `data.redacted.bcc`, the number of
 * values taken out, so the reader knows something was; its `hash` is the
 * stored event's and cannot be recomputed from what they see.
 */
export function redactBcc(event: AuditEvent, reader: string, emails: ReadonlyMap<string, EmailRecord>): AuditEvent {
  const hidden = new Set<string>();
  const recipients = event.data['recipients'];
  if ((event.type === 'email.decision' || event.type === 'email.preview') && isRecord(recipients)) {
    if (event.actor === reader) return event;
    const visible = new Set([...strings(recipients['to']), ...strings(recipients['cc'])]);
    for (const a of strings(recipients['bcc'])) if (!visible.has(a)) hidden.add(a);
  }
  const emailId = event.data['emailId'];
  if (event.type !== 'email.decision' && event.type !== 'email.preview' && typeof emailId === 'string') {
    const email = emails.get(emailId);
    if (email?.sender === reader) return event;
    // Unknown email or unknown split: hide every recipient it had (fail closed).
    for (const a of email === undefined ? strings(recipients) : (email.bcc ?? email.recipients)) hidden.add(a);
  }
  if (hidden.size === 0) return event;
  let removed = 0;
  // Inside longer text too (an upstream's reply quotes the address it refused). Literal alternatives: linear in the text.
  const within = new RegExp([...hidden].map((a) => a.replace(/[.*+?^${}()|[\]\\]/g, '\\$&')).join('|'), 'gi');
  const isHidden = (v: unknown): boolean => typeof v === 'string' && hidden.has(v.toLowerCase());
  const walk = (value: unknown): unknown => {
    if (typeof value === 'string') {
      if (isHidden(value)) {
        removed += 1;
        return '(hidden)';
      }
      return value.replace(within, () => {
        removed += 1;
        return '(hidden)';
      });
    }
    if (Array.isArray(value)) {
      // An entry that is a hidden address, or is about one ({recipient, code, error}), goes whole.
      const kept = value.filter((v) => !(isHidden(v) || (isRecord(v) && Object.values(v).some(isHidden))));
      removed += value.length - kept.length;
      return kept.map(walk);
    }
    if (isRecord(value)) return Object.fromEntries(Object.entries(value).map(([k, v]) => [k, walk(v)]));
    return value;
  };
  const data = walk(event.data) as Record<string, unknown>;
  return removed === 0 ? event : { ...event, data: { ...data, redacted: { bcc: removed } } };
}

function isRecord(value: unknown): value is Record<string, unknown> {
  return typeof value === 'object' && value !== null && !Array.isArray(value);
}

function strings(value: unknown): string[] {
  return Array.isArray(value) ? value.filter((v): v is string => typeof v === 'string').map((v) => v.toLowerCase()) : [];
}
