/**
 * The field rules of the HTTP API's request bodies and queries, in one place
 * for both listeners that take them from people: the JSON routes
 * (src/http/routes/) and the web console's forms (src/console/forms.ts).
 * A rule changed here changes for both, so the console cannot accept what
 * the API refuses or the other way round.
 *
 * The building blocks (addresses, header text, phone numbers, Message-IDs)
 * stay in src/validation.ts, which SMTP uses too; this module composes them
 * into the API's fields.
 */
import { z } from 'zod';
import { RelayError } from '../errors.js';
import type { AuditRequest } from '../services/audit-views.js';
import { auditCursorSeq } from '../services/audit-views.js';
import { MAX_RECIPIENTS } from '../services/emails.js';
import { ROSTER_ROLES } from '../store/incidents.js';
import { CONTENT_TYPE, emailAddress, headerText, isContentType, messageId, normalisedEmail, parseInput, phoneNumber, titleText } from '../validation.js';

// ------------------------------------------------------------------ incidents

/** A chosen codename as asked for (the service checks it against the word lists). */
export const codenameField = z.string().max(80);

/** The private label (issue 12 §5): one line, 1-200 characters, for telling codenames apart. */
export const incidentLabel = titleText(200).refine((s) => s.trim() !== '', { message: 'must not be empty (send null to clear it)' });

/** POST /v1/incidents. */
export const CreateIncident = z.strictObject({
  commander: emailAddress.optional(),
  codename: codenameField.optional(),
  label: incidentLabel.optional(),
});

// ------------------------------------------------------------------ roster

/** A member's display name: it goes into From/To/Cc, where the composer refuses a tab too. */
export const memberName = headerText(200).refine((s) => s.trim() !== '' && !s.includes('\t'), { message: 'must not be empty or contain a tab' });

/** A Slack user id, for members whose Slack email differs from their address. */
export const slackUserId = z.string().regex(/^[UW][A-Z0-9]{2,20}$/, 'must be a Slack user id such as U024BE7LH');

/** The longest armored public key (or revocation) a roster entry or upload takes. */
export const MAX_PUBLIC_KEY_LENGTH = 65536;

/** An armored public key or revocation certificate. */
export const publicKeyText = z.string().max(MAX_PUBLIC_KEY_LENGTH);

/** A roster role. */
export const rosterRole = z.enum(ROSTER_ROLES);

/** PUT …/roster/:email: the whole entry (phone and Slack id null or absent: none). */
export const PutMember = z.strictObject({
  name: memberName,
  role: rosterRole,
  phone: phoneNumber.nullable().optional(),
  slackUserId: slackUserId.nullable().optional(),
  publicKey: publicKeyText.optional(),
});

/** PATCH …/roster/:email: only the fields given change; null removes a phone, a Slack id or the member's key in this incident. */
export const PatchMember = z
  .strictObject({
    name: memberName.optional(),
    role: rosterRole.optional(),
    phone: phoneNumber.nullable().optional(),
    slackUserId: slackUserId.nullable().optional(),
    publicKey: publicKeyText.nullable().optional(),
  })
  .refine((b) => Object.keys(b).length > 0, { message: 'give at least one of name, role, phone, slackUserId, publicKey' });

// ------------------------------------------------------------------ emails

// A grouped regex overflowed V8's backtrack stack on a 25 MB attachment (HTTP 500), hence a linear check.
/** RFC 4648 base64 with padding, no line breaks; linear and stack-free at any size. */
export function isBase64(s: string): boolean {
  if (s.length % 4 !== 0) return false;
  const pad = s.endsWith('==') ? 2 : s.endsWith('=') ? 1 : 0;
  return !/[^A-Za-z0-9+/]/.test(pad === 0 ? s : s.slice(0, s.length - pad));
}

// The one MIME-type rule lives in src/validation.ts (SMTP parsing uses it too).
export { isContentType };

/** Attachment names are labels, never paths: no separators, no leading dot, no control characters. */
export const attachmentFilename = headerText(255).refine((s) => s.trim() !== '' && !/[/\\]/.test(s) && !s.startsWith('.') && !/[\x00-\x1f\x7f]/.test(s), {
  message: 'must be a plain file name without path separators or a leading dot',
});

/** An attachment's declared type. */
export const attachmentContentType = z.string().regex(CONTENT_TYPE, 'must be a MIME type such as application/pdf');

/** At most this many attachments per message. */
export const MAX_ATTACHMENTS = 100;

/** One list of recipients (To, Cc or Bcc): addresses, normalised. */
export const emailRecipients = z.array(emailAddress).max(MAX_RECIPIENTS);

/** The fields of an email draft that the API's JSON and the console's compose form share. */
export const emailDraftFields = {
  to: emailRecipients.min(1),
  cc: emailRecipients.optional(),
  bcc: emailRecipients.optional(),
  subject: headerText(998).optional(),
  text: z.string(),
};

/** POST …/emails (and ?dryRun=true): the draft, with the API's own extras (HTML, threading, base64 attachments). */
export const SendEmail = z.strictObject({
  ...emailDraftFields,
  html: z.string().optional(),
  inReplyTo: messageId.optional(),
  references: z.array(messageId).max(100).optional(),
  attachments: z
    .array(
      z.strictObject({
        filename: attachmentFilename,
        contentType: attachmentContentType,
        content: z.string().refine(isBase64, 'must be base64 (RFC 4648, no line breaks)'),
      }),
    )
    .max(MAX_ATTACHMENTS)
    .optional(),
});

// ------------------------------------------------------------------ idempotency

/** An idempotency key (the API's Idempotency-Key header, the console's hidden field): 1-200 printable ASCII characters. */
export const IDEMPOTENCY_KEY = /^[\x21-\x7e]{1,200}$/;

/** Paging and the Message-ID lookup of GET …/emails (API contract: limit 1-1000, default 100). */
export const ListEmails = z.strictObject({
  limit: z.coerce.number().int().min(1).max(1000).default(100),
  cursor: z.string().min(1).max(400).optional(),
  messageId: messageId.optional(),
});

// ------------------------------------------------------------------ audit

/** An ISO date or time, compared as the log stores times (UTC, toISOString). */
const isoTime = z
  .string()
  .max(40)
  .refine((s) => /^\d{4}-\d{2}-\d{2}([T ][0-9:.]+(Z|[+-]\d{2}:?\d{2})?)?$/.test(s) && !Number.isNaN(Date.parse(s)), { message: 'must be an ISO date or time such as 2026-11-28 or 2026-11-28T10:00:00Z' })
  .transform((s) => new Date(Date.parse(s)).toISOString());

const AuditQuery = z.strictObject({
  // `smtp.*` names every type that starts with `smtp.`.
  type: z
    .string()
    .regex(/^[a-z][a-z0-9_]*(\.[a-z0-9_]+)*(\.\*)?$/, 'must be an event type such as email.decision, or a prefix such as smtp.*')
    .max(100)
    .optional(),
  actor: z.string().min(1).max(254).optional(),
  incident: z.string().min(1).max(80).optional(),
  since: isoTime.optional(),
  until: isoTime.optional(),
  limit: z.coerce.number().int().min(1).max(1000).default(100),
  cursor: z.string().max(40).optional(),
  // The incident route's older paging parameter: a sequence number.
  after: z.coerce.number().int().min(0).optional(),
});

/** Parses the audit filters of GET /v1/audit (`scope` all) or GET /v1/incidents/:codename/audit and the console's timeline (no `incident`). */
export function auditQuery(query: unknown, scope: 'all' | 'incident'): AuditRequest {
  const q = parseInput(AuditQuery, query, 'query');
  if (scope === 'incident' && q.incident !== undefined) throw new RelayError('invalid_request', 'incident is a filter of GET /v1/audit; this route is one incident\'s already.', { details: { field: 'incident' } });
  const after = q.cursor !== undefined ? auditCursorSeq(q.cursor) : q.after;
  const prefix = q.type?.endsWith('.*') ? q.type.slice(0, -1) : undefined;
  return {
    type: prefix === undefined ? q.type : undefined,
    typePrefix: prefix,
    // Stored actors are normalised addresses (a Unicode domain as its A-label); a value that is no address is matched lowercase.
    actor: q.actor === undefined ? undefined : (normalisedEmail(q.actor) ?? q.actor.toLowerCase()),
    incident: q.incident,
    since: q.since,
    until: q.until,
    after,
    limit: q.limit,
  };
}

// ------------------------------------------------------------------ announcements

// Lengths here only bound the parsing; the service says what the limits are
// (200-character one-line titles, 100,000-character texts, the configured
// audience maximum) and audits a refusal.
const Audience = z.strictObject({
  addresses: z.array(z.string().max(320)).max(100_000).optional(),
  list: z.string().max(64).optional(),
});

/** An announcement's kind. */
export const announcementKind = z.enum(['internal', 'external']);

/** POST …/announcements: a new draft. */
export const AnnouncementDraft = z.strictObject({
  kind: announcementKind,
  title: z.string().max(10_000),
  text: z.string().max(1_000_000),
  audience: Audience,
});

/** PATCH …/announcements/:id: the fields to change. */
export const AnnouncementEdit = z
  .strictObject({
    kind: announcementKind.optional(),
    title: z.string().max(10_000).optional(),
    text: z.string().max(1_000_000).optional(),
    audience: Audience.optional(),
  })
  .refine((e) => Object.values(e).some((v) => v !== undefined), { message: 'name at least one of kind, title, text, audience' });

/** POST …/internal-source: the commander's record. */
export const InternalSourceRecord = z.strictObject({
  ruledOut: z.boolean(),
  note: z.string().max(10_000).optional(),
});

// ------------------------------------------------------------------ sms

/** At most this many entries in a nudge's `to` list; "roster" names every active member. */
export const MAX_SMS_RECIPIENTS = 100;

/**
 * POST …/sms (and the console's nudge form). Entries are any short string
 * here; the policy refuses (and audits by hash) whatever is not a roster
 * address, phone numbers included.
 */
export const SendSms = z.strictObject({
  to: z.union([z.literal('roster'), z.array(z.string().min(1).max(254).transform((s) => s.toLowerCase())).min(1).max(MAX_SMS_RECIPIENTS)]),
  body: z.string().optional(),
});
