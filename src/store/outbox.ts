/**
 * The durable outbox: composed messages and their envelopes, committed before
 * the relay answers, delivered by the worker, purged once sent.
 */
import { prepared, type Db, type Prepared } from './db.js';

export type DeliveryChannel = 'email' | 'sms';
export type DeliveryStatus = 'queued' | 'sent' | 'failed';

/** Where a delivery goes: SMTP envelope for email, a phone number for SMS. */
export type Envelope = { kind: 'email'; from: string; to: string[] } | { kind: 'sms'; to: string };

export interface Delivery {
  id: string;
  channel: DeliveryChannel;
  emailId: string | null;
  smsId: string | null;
  incidentId: string | null;
  envelope: Envelope;
  body: Buffer | null;
  status: DeliveryStatus;
  attempts: number;
  createdMs: number;
  nextAttemptMs: number;
  lastError: string | null;
}

export interface NewDelivery {
  id: string;
  channel: DeliveryChannel;
  emailId?: string | null;
  smsId?: string | null;
  incidentId: string | null;
  envelope: Envelope;
  body: Buffer;
}

/** A copy of an email delivery for some of its recipients, made when the upstream refused them (Outbox.splitOff). */
export interface DeliverySplit {
  id: string;
  to: readonly string[];
  /** `queued` to retry them (the body is kept), `failed` when a retry cannot help (no body). */
  status: 'queued' | 'failed';
  nextAttempt: Date;
  error: string;
}

export interface EmailRecord {
  id: string;
  incidentId: string;
  messageId: string;
  sender: string;
  encrypted: boolean;
  chainExternal: boolean;
  recipients: string[];
  createdAt: string;
}

interface DeliveryRow {
  id: string;
  channel: DeliveryChannel;
  email_id: string | null;
  sms_id: string | null;
  incident_id: string | null;
  envelope: string;
  body: Buffer | null;
  status: DeliveryStatus;
  attempts: number;
  created_ms: number;
  next_attempt_ms: number;
  last_error: string | null;
}

function toDelivery(row: DeliveryRow): Delivery {
  return {
    id: row.id,
    channel: row.channel,
    emailId: row.email_id,
    smsId: row.sms_id,
    incidentId: row.incident_id,
    envelope: JSON.parse(row.envelope) as Envelope,
    body: row.body,
    status: row.status,
    attempts: row.attempts,
    createdMs: row.created_ms,
    nextAttemptMs: row.next_attempt_ms,
    lastError: row.last_error,
  };
}

/** Outbox and email-record storage. Call the writes inside a store transaction with their audit event. */
export class Outbox {
  private readonly sql: Prepared;

  constructor(private readonly db: Db) {
    this.sql = prepared(db);
  }

  /** Queues deliveries, due at once. */
  enqueue(deliveries: readonly NewDelivery[], at: Date): void {
    const insert = this.sql(
      `INSERT INTO deliveries (id, channel, email_id, sms_id, incident_id, envelope, body, status, attempts, created_ms, next_attempt_ms)
       VALUES (?, ?, ?, ?, ?, ?, ?, 'queued', 0, ?, ?)`,
    );
    for (const d of deliveries) {
      insert.run(d.id, d.channel, d.emailId ?? null, d.smsId ?? null, d.incidentId, JSON.stringify(d.envelope), d.body, at.getTime(), at.getTime());
    }
  }

  /** Queued deliveries due by `at`, oldest first, skipping ids already in flight. */
  due(at: Date, limit: number, inFlight: ReadonlySet<string>): Delivery[] {
    // In-flight rows are left out in SQL, not in JavaScript: they are queued
    // and overdue until their outcome commits, and reading them would copy
    // every in-flight body out of the database on each look for work.
    const rows = (
      inFlight.size === 0
        ? this.sql("SELECT * FROM deliveries WHERE status = 'queued' AND next_attempt_ms <= ? ORDER BY next_attempt_ms, created_ms LIMIT ?").all(at.getTime(), limit)
        : this.sql(
            "SELECT * FROM deliveries WHERE status = 'queued' AND next_attempt_ms <= ? AND id NOT IN (SELECT value FROM json_each(?)) ORDER BY next_attempt_ms, created_ms LIMIT ?",
          ).all(at.getTime(), JSON.stringify([...inFlight]), limit)
    ) as DeliveryRow[];
    return rows.map(toDelivery);
  }

  /**
   * Makes every queued delivery due by `at`. Used when the worker starts: a
   * backoff chosen before a restart (up to the 15-minute cap) must not keep
   * accepted mail waiting after it; attempts are kept, so backoff resumes
   * from where it was if the next try fails too.
   */
  resumeQueued(at: Date): number {
    return this.sql("UPDATE deliveries SET next_attempt_ms = ? WHERE status = 'queued' AND next_attempt_ms > ?").run(at.getTime(), at.getTime()).changes;
  }

  /**
   * The earliest time a queued delivery is due, if any, leaving out `exclude`
   * (the ones in flight: they are queued and overdue until their outcome is
   * committed, and counting them would make the worker poll without pause).
   */
  nextDueMs(exclude: ReadonlySet<string> = new Set()): number | undefined {
    const row = (
      exclude.size === 0
        ? this.sql("SELECT MIN(next_attempt_ms) AS next FROM deliveries WHERE status = 'queued'").get()
        : this.sql("SELECT MIN(next_attempt_ms) AS next FROM deliveries WHERE status = 'queued' AND id NOT IN (SELECT value FROM json_each(?))")
            .get(JSON.stringify([...exclude]))
    ) as { next: number | null };
    return row.next ?? undefined;
  }

  get(id: string): Delivery | undefined {
    const row = this.sql('SELECT * FROM deliveries WHERE id = ?').get(id) as DeliveryRow | undefined;
    return row ? toDelivery(row) : undefined;
  }

  /**
   * Copies email delivery `sourceId` to a new row for `to`, some of its
   * recipients the upstream refused while taking it for the rest: `queued`
   * keeps the body for a retry at `nextAttempt`, `failed` records them without
   * it. Attempts (so the backoff goes on) and created_ms (so the max age counts
   * from acceptance) are carried over. Call it before markSent, which purges
   * the body the copy needs.
   */
  splitOff(sourceId: string, split: DeliverySplit): void {
    const changes = this.sql(
        `INSERT INTO deliveries (id, channel, email_id, sms_id, incident_id, envelope, body, status, attempts, created_ms, next_attempt_ms, last_error)
         SELECT @id, channel, email_id, sms_id, incident_id, json_set(envelope, '$.to', json(@to)), CASE WHEN @status = 'queued' THEN body END,
                @status, attempts + 1, created_ms, @next, @error
         FROM deliveries WHERE id = @source AND channel = 'email' AND (@status = 'failed' OR body IS NOT NULL)`,
      )
      .run({ id: split.id, to: JSON.stringify(split.to), status: split.status, next: split.nextAttempt.getTime(), error: split.error, source: sourceId }).changes;
    // Throwing rolls back the caller's transaction: the source stays queued
    // and is sent again rather than a refused recipient being dropped.
    if (changes !== 1) throw new Error(`cannot split delivery ${sourceId}: no such email delivery, or its body is already purged`);
  }

  /** Records a delivery and purges its body: only metadata stays (SPEC §6). */
  markSent(id: string, providerId: string, at: Date): void {
    this.sql("UPDATE deliveries SET status = 'sent', body = NULL, attempts = attempts + 1, provider_id = ?, sent_at = ?, last_error = NULL WHERE id = ?")
      .run(providerId, at.toISOString(), id);
  }

  /** Schedules another attempt. */
  markRetry(id: string, error: string, nextAttempt: Date): void {
    this.sql('UPDATE deliveries SET attempts = attempts + 1, last_error = ?, next_attempt_ms = ? WHERE id = ?').run(error, nextAttempt.getTime(), id);
  }

  /** Gives up: the body is purged too, since it will never be sent. */
  markFailed(id: string, error: string): void {
    this.sql("UPDATE deliveries SET status = 'failed', body = NULL, attempts = attempts + 1, last_error = ? WHERE id = ?").run(error, id);
  }

  /** Deliveries of `channel` still queued (waiting, retrying or in flight). */
  queuedCount(channel: DeliveryChannel): number {
    return (this.sql("SELECT COUNT(*) AS n FROM deliveries WHERE status = 'queued' AND channel = ?").get(channel) as { n: number }).n;
  }

  insertEmail(email: EmailRecord): void {
    this.sql('INSERT INTO emails (id, incident_id, message_id, sender, encrypted, external_chain, recipients, created_at) VALUES (?, ?, ?, ?, ?, ?, ?, ?)')
      .run(email.id, email.incidentId, email.messageId, email.sender, email.encrypted ? 1 : 0, email.chainExternal ? 1 : 0, JSON.stringify(email.recipients), email.createdAt);
  }

  email(incidentId: string, id: string): EmailRecord | undefined {
    const row = this.sql('SELECT * FROM emails WHERE incident_id = ? AND id = ?').get(incidentId, id) as
      | { id: string; incident_id: string; message_id: string; sender: string; encrypted: number; external_chain: number; recipients: string; created_at: string }
      | undefined;
    return row
      ? {
          id: row.id,
          incidentId: row.incident_id,
          messageId: row.message_id,
          sender: row.sender,
          encrypted: row.encrypted === 1,
          chainExternal: row.external_chain === 1,
          recipients: JSON.parse(row.recipients) as string[],
          createdAt: row.created_at,
        }
      : undefined;
  }

  /** True when any of these Message-IDs is a relay message whose chain had an external recipient. */
  chainIsExternal(messageIds: readonly string[]): boolean {
    if (messageIds.length === 0) return false;
    const placeholders = messageIds.map(() => '?').join(',');
    // Built from the input's length, so not cached: the cache holds fixed texts only.
    return this.db.prepare(`SELECT 1 FROM emails WHERE external_chain = 1 AND message_id IN (${placeholders}) LIMIT 1`).get(...messageIds) !== undefined;
  }

  /** An email's overall state: failed if any copy failed, queued while any waits, else sent. */
  emailDeliveryState(emailId: string): { status: DeliveryStatus; attempts: number; lastError: string | null } {
    const rows = this.sql('SELECT status, attempts, last_error FROM deliveries WHERE email_id = ?').all(emailId) as Pick<DeliveryRow, 'status' | 'attempts' | 'last_error'>[];
    const status: DeliveryStatus = rows.some((r) => r.status === 'failed') ? 'failed' : rows.some((r) => r.status === 'queued') ? 'queued' : 'sent';
    const attempts = rows.reduce((max, r) => Math.max(max, r.attempts), 0);
    // The error that decided the status: a failed copy's over a retrying one's.
    const lastError =
      (rows.find((r) => r.status === 'failed' && r.last_error !== null) ?? rows.find((r) => r.status === 'queued' && r.last_error !== null) ?? rows.find((r) => r.last_error !== null))
        ?.last_error ?? null;
    return { status, attempts, lastError };
  }
}
