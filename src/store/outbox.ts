/**
 * The durable outbox: composed messages and their envelopes, committed before
 * the relay answers, claimed by a delivery worker under a lease, purged once
 * sent. A lease is a row-level fact in the database (owner, expiry), so two
 * live relays do not send the same delivery at once, and a delivery held by a
 * relay that died (or stalled past its lease: at least once, then) is taken
 * over when its lease expires.
 */
import { lookupSlices, placeholders, type SqlExecutor } from './sql.js';

export type DeliveryChannel = 'email' | 'sms';
/** `cancelled`: the recipient (or the sender) left the roster before it could be sent. */
export type DeliveryStatus = 'queued' | 'sent' | 'failed' | 'cancelled';

/**
 * What a delivery's body holds: `raw`, the bytes to send; `sealed`, one
 * encrypted copy's session key packets, sent with its email's stored payload
 * (EmailPayload) as armor(key packets, shared) between the envelope's head and tail.
 */
export type BodyKind = 'raw' | 'sealed';

/** The parts of an encrypted email stored once for all its copies. */
export interface EmailPayload {
  /** The outer RFC 3156 bytes before the armor. */
  head: Buffer;
  /** The outer bytes after it. */
  tail: Buffer;
  /** The signed and encrypted protected part (one SEIPD packet), shared by every copy. */
  shared: Buffer;
}

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
  bodyKind: BodyKind;
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
  /** Default `raw`. */
  bodyKind?: BodyKind;
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

/** What a cancellation did to one delivery, for the audit log. */
export interface Cancellation {
  deliveryId: string;
  channel: DeliveryChannel;
  emailId: string | null;
  smsId: string | null;
  /** The recipients whose copy will not be sent (all of the delivery's when the sender left). */
  recipients: string[];
  /** Set when only some recipients were cancelled: the row recording them. */
  cancelledDeliveryId?: string;
}

export interface EmailRecord {
  id: string;
  incidentId: string;
  messageId: string;
  sender: string;
  encrypted: boolean;
  chainExternal: boolean;
  recipients: string[];
  /**
   * Which of `recipients` were Bcc: views that may not show Bcc recipients
   * take these out. Null for emails queued before migration 8 (unknown).
   */
  bcc: string[] | null;
  createdAt: string;
}

/** Where a page of the email list starts: after this email, newest first. */
export interface EmailCursor {
  createdAt: string;
  id: string;
}

/** A message of a reply chain as the store knows it. */
export interface ChainMessage {
  /** The reference as looked up (normalised). */
  reference: string;
  emailId: string;
  incidentId: string;
  /** The relay's Message-ID of that email. */
  messageId: string;
  sender: string;
  chainExternal: boolean;
}

/** One delivery as an email's status shows it. */
export interface DeliveryView {
  id: string;
  recipients: string[];
  status: DeliveryStatus;
  attempts: number;
  lastError: string | null;
}

/** A delivery as the worker checks it before sending and when recording: never its body (up to 25 MB). */
export interface DeliveryState {
  status: DeliveryStatus;
  envelope: Envelope;
  /** The relay holding its lease, if any. */
  leaseOwner: string | null;
  /** Once recorded sent: the upstream's id and the time of the receipt recorded (ISO 8601), which tell one send's record from another's. */
  providerId: string | null;
  sentAt: string | null;
}

interface DeliveryRow {
  id: string;
  channel: DeliveryChannel;
  email_id: string | null;
  sms_id: string | null;
  incident_id: string | null;
  envelope: string;
  body: Buffer | null;
  body_kind: BodyKind;
  status: DeliveryStatus;
  attempts: number;
  created_ms: number;
  next_attempt_ms: number;
  last_error: string | null;
}

interface EmailRow {
  id: string;
  incident_id: string;
  message_id: string;
  sender: string;
  encrypted: number;
  external_chain: number;
  recipients: string;
  bcc: string | null;
  created_at: string;
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
    bodyKind: row.body_kind,
    status: row.status,
    attempts: row.attempts,
    createdMs: row.created_ms,
    nextAttemptMs: row.next_attempt_ms,
    lastError: row.last_error,
  };
}

function toEmail(row: EmailRow): EmailRecord {
  return {
    id: row.id,
    incidentId: row.incident_id,
    messageId: row.message_id,
    sender: row.sender,
    encrypted: row.encrypted === 1,
    chainExternal: row.external_chain === 1,
    recipients: JSON.parse(row.recipients) as string[],
    bcc: row.bcc === null || row.bcc === undefined ? null : (JSON.parse(row.bcc) as string[]),
    createdAt: row.created_at,
  };
}

/**
 * A Message-ID as the store compares it: RFC 5322 §3.6.4 leaves the left part
 * case-sensitive, while the right part is a domain (or domain-like) and
 * compared without case.
 */
export function normaliseMessageId(id: string): string {
  const at = id.lastIndexOf('@');
  return at < 0 ? id : id.slice(0, at) + id.slice(at).toLowerCase();
}


// Removes an email's stored payload once none of its deliveries waits for it
// any more (SPEC §6: bodies are purged once delivered). One parameter: a delivery id.
const PURGE_PAYLOAD_OF_DELIVERY = `DELETE FROM email_payloads
  WHERE email_id = (SELECT email_id FROM deliveries WHERE id = ?)
    AND NOT EXISTS (SELECT 1 FROM deliveries d WHERE d.email_id = email_payloads.email_id AND d.status = 'queued')`;
// PostgreSQL: two copies of one email recorded at the same moment would each
// still see the other queued and neither would purge; locking the payload row
// first makes the second wait, and its next statement sees the first's outcome.
const LOCK_PAYLOAD_OF_DELIVERY = 'SELECT email_id FROM email_payloads WHERE email_id = (SELECT email_id FROM deliveries WHERE id = ?) FOR UPDATE';

// The condition that the lease is `owner`'s (one `?` parameter), or nobody's when null.
const heldBy = (owner: string | null): string => (owner === null ? 'lease_owner IS NULL' : 'lease_owner = ?');

/** Outbox and email-record storage. Call the writes inside a store transaction with their audit event. */
export class Outbox {
  constructor(private readonly sql: SqlExecutor) {}

  /** Queues deliveries, due at once. */
  async enqueue(deliveries: readonly NewDelivery[], at: Date): Promise<void> {
    for (const d of deliveries) {
      await this.sql.run(
        `INSERT INTO deliveries (id, channel, email_id, sms_id, incident_id, envelope, body, body_kind, status, attempts, created_ms, next_attempt_ms)
         VALUES (?, ?, ?, ?, ?, ?, ?, ?, 'queued', 0, ?, ?)`,
        [d.id, d.channel, d.emailId ?? null, d.smsId ?? null, d.incidentId, JSON.stringify(d.envelope), d.body, d.bodyKind ?? 'raw', at.getTime(), at.getTime()],
      );
    }
  }

  /** Stores the parts an encrypted email's copies share (once per email; its deliveries are `sealed`). */
  async insertPayload(emailId: string, payload: EmailPayload): Promise<void> {
    await this.sql.run('INSERT INTO email_payloads (email_id, head, tail, shared) VALUES (?, ?, ?, ?)', [emailId, payload.head, payload.tail, payload.shared]);
  }

  /** The stored parts of an encrypted email, while any of its copies is queued. */
  async payload(emailId: string): Promise<EmailPayload | undefined> {
    const row = await this.sql.get<{ head: Buffer; tail: Buffer; shared: Buffer }>('SELECT head, tail, shared FROM email_payloads WHERE email_id = ?', [emailId]);
    return row ? { head: row.head, tail: row.tail, shared: row.shared } : undefined;
  }

  /**
   * Leases up to `limit` queued deliveries that are due by `at` and not
   * leased by anyone (or whose lease expired: their relay died), oldest
   * first, to `owner` until `at + leaseMs`. One statement: on PostgreSQL the
   * candidate rows are locked with SKIP LOCKED, so relays claiming at the same
   * moment never get the same row; SQLite has a single writer.
   */
  async claim(owner: string, at: Date, limit: number, leaseMs: number): Promise<Delivery[]> {
    const now = at.getTime();
    const lock = this.sql.dialect === 'postgres' ? ' FOR UPDATE SKIP LOCKED' : '';
    const rows = await this.sql.all<DeliveryRow>(
      `UPDATE deliveries SET lease_owner = ?, lease_until_ms = ?
       WHERE id IN (SELECT id FROM deliveries
                    WHERE status = 'queued' AND next_attempt_ms <= ? AND (lease_until_ms IS NULL OR lease_until_ms < ?)
                    ORDER BY next_attempt_ms, created_ms LIMIT ?${lock})
       RETURNING *`,
      [owner, now + leaseMs, now, now, limit],
    );
    return rows.sort((a, b) => a.next_attempt_ms - b.next_attempt_ms || a.created_ms - b.created_ms).map(toDelivery);
  }

  /**
   * Extends `owner`'s leases on these still-queued deliveries (the sends in
   * progress and the outcomes waiting to be written); returns how many. Only
   * these: a lease the worker forgot (an attempt that threw) must run out so
   * that another relay, or this one later, can take the delivery.
   */
  async renewLeases(owner: string, ids: readonly string[], until: Date): Promise<number> {
    let renewed = 0;
    for (const slice of lookupSlices(ids)) {
      renewed += await this.sql.run(
        `UPDATE deliveries SET lease_until_ms = ? WHERE id IN (
           SELECT id FROM deliveries WHERE lease_owner = ? AND status = 'queued' AND id IN (${placeholders(slice.length)})${this.inIdOrder()})`,
        [until.getTime(), owner, ...slice],
      );
    }
    return renewed;
  }

  /**
   * Gives a lease back without an outcome (the worker stopped before sending,
   * or its attempt failed before it could record anything). With `notBefore`,
   * the delivery is not due again before then (never earlier than it was), so
   * an attempt that keeps failing the same way is not claimed again at once.
   */
  async release(id: string, owner: string, notBefore?: Date): Promise<boolean> {
    if (notBefore === undefined) {
      return (await this.sql.run('UPDATE deliveries SET lease_owner = NULL, lease_until_ms = NULL WHERE id = ? AND lease_owner = ?', [id, owner])) === 1;
    }
    const ms = notBefore.getTime();
    const changes = await this.sql.run(
      'UPDATE deliveries SET lease_owner = NULL, lease_until_ms = NULL, next_attempt_ms = CASE WHEN next_attempt_ms > ? THEN next_attempt_ms ELSE ? END WHERE id = ? AND lease_owner = ?',
      [ms, ms, id, owner],
    );
    return changes === 1;
  }

  /**
   * Gives back every lease on a queued delivery, whoever holds it; returns how
   * many. Only where one relay uses the database (SQLite): at its start, its
   * own leases from before a crash.
   */
  async releaseAll(): Promise<number> {
    return this.sql.run("UPDATE deliveries SET lease_owner = NULL, lease_until_ms = NULL WHERE status = 'queued' AND lease_owner IS NOT NULL");
  }

  /** Deliveries `owner` holds a lease on (for /metrics). */
  async leasedBy(owner: string): Promise<number> {
    return (await this.sql.get<{ n: number }>("SELECT COUNT(*) AS n FROM deliveries WHERE lease_owner = ? AND status = 'queued'", [owner]))?.n ?? 0;
  }

  /**
   * Makes every queued delivery due by `at`. Used when the worker starts: a
   * backoff chosen before a restart (up to the 15-minute cap) must not keep
   * accepted mail waiting after it; attempts are kept, so backoff resumes
   * from where it was if the next try fails too.
   */
  async resumeQueued(at: Date): Promise<number> {
    return this.sql.run(`UPDATE deliveries SET next_attempt_ms = ? WHERE id IN (SELECT id FROM deliveries WHERE status = 'queued' AND next_attempt_ms > ?${this.inIdOrder()})`, [
      at.getTime(),
      at.getTime(),
    ]);
  }

  /**
   * On PostgreSQL, the tail of a subquery that locks its rows in id order: a
   * statement that locks several delivery rows takes them in the order
   * cancelForMember does, so the two cannot deadlock (an UPDATE alone locks
   * in whatever order its plan visits the rows). SQLite has one writer.
   */
  private inIdOrder(): string {
    return this.sql.dialect === 'postgres' ? ' ORDER BY id FOR UPDATE' : '';
  }

  /**
   * The earliest time a queued delivery that `owner` does not hold could be
   * claimed: when it is due, or when the lease another relay holds on it
   * expires. Undefined when nothing is queued.
   */
  async nextDueMs(owner: string): Promise<number | undefined> {
    const row = await this.sql.get<{ next: number | null }>(
      `SELECT MIN(CASE WHEN lease_until_ms IS NOT NULL AND lease_until_ms > next_attempt_ms THEN lease_until_ms ELSE next_attempt_ms END) AS next
       FROM deliveries WHERE status = 'queued' AND (lease_owner IS NULL OR lease_owner <> ?)`,
      [owner],
    );
    return row?.next ?? undefined;
  }

  async get(id: string): Promise<Delivery | undefined> {
    const row = await this.sql.get<DeliveryRow>('SELECT * FROM deliveries WHERE id = ?', [id]);
    return row ? toDelivery(row) : undefined;
  }

  /**
   * A delivery's status, envelope, lease holder and recorded receipt, without its body. With
   * `lock` (inside a transaction), the row is locked until the transaction
   * ends (PostgreSQL: FOR UPDATE; SQLite has one writer), so a cancellation
   * on another relay waits instead of changing it under the caller.
   */
  async state(id: string, lock = false): Promise<DeliveryState | undefined> {
    const forUpdate = lock && this.sql.dialect === 'postgres' ? ' FOR UPDATE' : '';
    const row = await this.sql.get<{ status: DeliveryStatus; envelope: string; lease_owner: string | null; provider_id: string | null; sent_at: string | null }>(
      `SELECT status, envelope, lease_owner, provider_id, sent_at FROM deliveries WHERE id = ?${forUpdate}`,
      [id],
    );
    return row
      ? { status: row.status, envelope: JSON.parse(row.envelope) as Envelope, leaseOwner: row.lease_owner, providerId: row.provider_id, sentAt: row.sent_at }
      : undefined;
  }

  /**
   * Copies email delivery `sourceId` to a new row for `to`, some of its
   * recipients the upstream refused while taking it for the rest: `queued`
   * keeps the body for a retry at `nextAttempt`, `failed` records them without
   * it. Attempts (so the backoff goes on) and created_ms (so the max age counts
   * from acceptance) are carried over. Call it before markSent, which purges
   * the body the copy needs.
   */
  async splitOff(sourceId: string, split: DeliverySplit): Promise<void> {
    const source = await this.sql.get<{ envelope: string }>("SELECT envelope FROM deliveries WHERE id = ? AND channel = 'email'", [sourceId]);
    const envelope = source ? { ...(JSON.parse(source.envelope) as Envelope), to: [...split.to] } : undefined;
    // The body is copied inside the database, never through the relay's memory.
    const changes =
      envelope === undefined
        ? 0
        : await this.sql.run(
            `INSERT INTO deliveries (id, channel, email_id, sms_id, incident_id, envelope, body, body_kind, status, attempts, created_ms, next_attempt_ms, last_error)
             SELECT ?, channel, email_id, sms_id, incident_id, ?, CASE WHEN ? = 'queued' THEN body END, body_kind, ?, attempts + 1, created_ms, ?, ?
             FROM deliveries WHERE id = ? AND channel = 'email' AND (? = 'failed' OR body IS NOT NULL)`,
            [split.id, JSON.stringify(envelope), split.status, split.status, split.nextAttempt.getTime(), split.error, sourceId, split.status],
          );
    // Throwing rolls back the caller's transaction: the source stays queued
    // and is sent again rather than a refused recipient being dropped.
    if (changes !== 1) throw new Error(`cannot split delivery ${sourceId}: no such email delivery, or its body is already purged`);
  }

  /**
   * Records a delivery and purges its body: only metadata stays (SPEC §6).
   * False when it was no longer queued. Whoever holds the lease: the upstream
   * has the message, so the record is written even when a stalled relay's
   * lease was taken over meanwhile; it clears that lease, and the relay that
   * took over finds the delivery sent before it sends (DeliveryWorker).
   */
  async markSent(id: string, providerId: string, at: Date): Promise<boolean> {
    const row = await this.sql.get<{ body_kind: BodyKind }>(
      `UPDATE deliveries SET status = 'sent', body = NULL, attempts = attempts + 1, provider_id = ?, sent_at = ?, last_error = NULL,
         lease_owner = NULL, lease_until_ms = NULL
       WHERE id = ? AND status = 'queued'
       RETURNING body_kind`,
      [providerId, at.toISOString(), id],
    );
    if (row?.body_kind === 'sealed') await this.purgePayloadOf(id);
    return row !== undefined;
  }

  /**
   * Corrects a delivery recorded failed to sent: the upstream took a send the
   * record did not know of (a relay that stalled past its lease sent it, while
   * the relay that took the lease over was refused). Its body is gone already.
   */
  async correctFailedToSent(id: string, providerId: string, at: Date): Promise<boolean> {
    const changed = await this.sql.run("UPDATE deliveries SET status = 'sent', provider_id = ?, sent_at = ?, last_error = NULL WHERE id = ? AND status = 'failed'", [
      providerId,
      at.toISOString(),
      id,
    ]);
    return changed === 1;
  }

  /** Run after a change that took a delivery out of the queue: its email's payload goes when no copy waits for it. */
  private async purgePayloadOf(deliveryId: string): Promise<void> {
    if (this.sql.dialect === 'postgres') await this.sql.get(LOCK_PAYLOAD_OF_DELIVERY, [deliveryId]);
    await this.sql.run(PURGE_PAYLOAD_OF_DELIVERY, [deliveryId]);
  }

  /** Payloads no queued copy needs (a safety net for the maintenance pass); returns how many were removed. */
  async purgeOrphanPayloads(): Promise<number> {
    return this.sql.run("DELETE FROM email_payloads WHERE NOT EXISTS (SELECT 1 FROM deliveries d WHERE d.email_id = email_payloads.email_id AND d.status = 'queued')");
  }

  /**
   * Schedules another attempt and gives the lease back. Only while `owner`
   * holds the lease (null: while nobody does): a relay whose lease lapsed
   * during a stall must not clear the lease of the relay that took the
   * delivery over, or a third could claim and send it again. False when the
   * delivery is no longer queued or someone else holds it. `owner` has no
   * default: a caller that left it out would silently change nothing on a
   * leased row.
   */
  async markRetry(id: string, error: string, nextAttempt: Date, owner: string | null): Promise<boolean> {
    const changes = await this.sql.run(
      `UPDATE deliveries SET attempts = attempts + 1, last_error = ?, next_attempt_ms = ?, lease_owner = NULL, lease_until_ms = NULL
       WHERE id = ? AND status = 'queued' AND ${heldBy(owner)}`,
      [error, nextAttempt.getTime(), id, ...(owner === null ? [] : [owner])],
    );
    return changes === 1;
  }

  /** Gives up: the body is purged too, since it will never be sent. Only while `owner` holds the lease, as markRetry. */
  async markFailed(id: string, error: string, owner: string | null): Promise<boolean> {
    const row = await this.sql.get<{ body_kind: BodyKind }>(
      `UPDATE deliveries SET status = 'failed', body = NULL, attempts = attempts + 1, last_error = ?, lease_owner = NULL, lease_until_ms = NULL
       WHERE id = ? AND status = 'queued' AND ${heldBy(owner)} RETURNING body_kind`,
      [error, id, ...(owner === null ? [] : [owner])],
    );
    if (row?.body_kind === 'sealed') await this.purgePayloadOf(id);
    return row !== undefined;
  }

  /**
   * Cancels the copy of queued delivery `deliveryId` for `recipients` (or for
   * everyone: 'all'): the whole row when nobody is left, else the recipients
   * are taken out of its envelope and recorded in a `cancelled` row of their
   * own. Undefined when the delivery is no longer queued or holds none of them.
   * Call it in a transaction: the row is locked while its envelope is read and
   * rewritten (PostgreSQL: FOR UPDATE; SQLite has one writer), so two
   * removals on two relays cannot each write back an envelope from the same
   * old copy, and a row another relay just recorded is left alone.
   */
  async cancelRecipients(deliveryId: string, recipients: readonly string[] | 'all', reason: string, newId: () => string): Promise<Cancellation | undefined> {
    const lock = this.sql.dialect === 'postgres' ? ' FOR UPDATE' : '';
    const row = await this.sql.get<DeliveryRow>(`SELECT id, channel, email_id, sms_id, envelope, body_kind FROM deliveries WHERE id = ? AND status = 'queued'${lock}`, [deliveryId]);
    if (!row) return undefined;
    const envelope = JSON.parse(row.envelope) as Envelope;
    const all = envelope.kind === 'sms' ? [envelope.to] : envelope.to;
    const gone = recipients === 'all' ? all : all.filter((r) => recipients.includes(r));
    if (gone.length === 0) return undefined;
    const base = { deliveryId, channel: row.channel, emailId: row.email_id, smsId: row.sms_id, recipients: gone };
    if (gone.length === all.length || envelope.kind === 'sms') {
      const changes = await this.sql.run(
        "UPDATE deliveries SET status = 'cancelled', body = NULL, last_error = ?, lease_owner = NULL, lease_until_ms = NULL WHERE id = ? AND status = 'queued'",
        [reason, deliveryId],
      );
      // Locked and read as queued above: anything else is a broken promise, and rolls the caller's transaction back.
      if (changes !== 1) throw new Error(`cannot cancel delivery ${deliveryId}: it changed while locked`);
      if (row.body_kind === 'sealed') await this.purgePayloadOf(deliveryId);
      return base;
    }
    const cancelledId = newId();
    await this.sql.run(
      `INSERT INTO deliveries (id, channel, email_id, sms_id, incident_id, envelope, body, status, attempts, created_ms, next_attempt_ms, last_error)
       SELECT ?, channel, email_id, sms_id, incident_id, ?, NULL, 'cancelled', attempts, created_ms, next_attempt_ms, ?
       FROM deliveries WHERE id = ?`,
      [cancelledId, JSON.stringify({ ...envelope, to: gone }), reason, deliveryId],
    );
    const changes = await this.sql.run("UPDATE deliveries SET envelope = ? WHERE id = ? AND status = 'queued'", [
      JSON.stringify({ ...envelope, to: envelope.to.filter((r) => !gone.includes(r)) }),
      deliveryId,
    ]);
    if (changes !== 1) throw new Error(`cannot cancel recipients of delivery ${deliveryId}: it changed while locked`);
    return { ...base, cancelledDeliveryId: cancelledId };
  }

  /**
   * Corrects the record of recipients whose copy was cancelled while a send
   * to them was already under way, and which the upstream then took: the
   * cancelled rows of this delivery's email (or the delivery itself, cancelled
   * whole) are recorded `sent` for them, with the upstream's id. A cancelled
   * row that also holds recipients who did not get it is split: they stay
   * `cancelled`. Returns the recipients whose record was corrected. Call it
   * inside the transaction that records the send.
   */
  async sentDespiteCancel(deliveryId: string, received: readonly string[], providerId: string, at: Date, newId: () => string): Promise<string[]> {
    const wanted = new Set(received);
    if (wanted.size === 0) return [];
    const lock = this.sql.dialect === 'postgres' ? ' FOR UPDATE' : '';
    const rows = await this.sql.all<{ id: string; envelope: string }>(
      `SELECT id, envelope FROM deliveries
       WHERE status = 'cancelled' AND (id = ? OR email_id = (SELECT email_id FROM deliveries WHERE id = ?))
       ORDER BY created_ms, id${lock}`,
      [deliveryId, deliveryId],
    );
    const corrected: string[] = [];
    for (const row of rows) {
      const envelope = JSON.parse(row.envelope) as Envelope;
      const to = envelope.kind === 'sms' ? [envelope.to] : envelope.to;
      const got = to.filter((r) => wanted.has(r));
      if (got.length === 0) continue;
      for (const r of got) wanted.delete(r);
      corrected.push(...got);
      if (got.length === to.length) {
        await this.sql.run(
          "UPDATE deliveries SET status = 'sent', attempts = attempts + 1, provider_id = ?, sent_at = ?, last_error = NULL WHERE id = ? AND status = 'cancelled'",
          [providerId, at.toISOString(), row.id],
        );
      } else if (envelope.kind === 'email') {
        await this.sql.run(
          `INSERT INTO deliveries (id, channel, email_id, sms_id, incident_id, envelope, body, body_kind, status, attempts, created_ms, next_attempt_ms, provider_id, sent_at)
           SELECT ?, channel, email_id, sms_id, incident_id, ?, NULL, body_kind, 'sent', attempts + 1, created_ms, next_attempt_ms, ?, ?
           FROM deliveries WHERE id = ?`,
          [newId(), JSON.stringify({ ...envelope, to: got }), providerId, at.toISOString(), row.id],
        );
        await this.sql.run('UPDATE deliveries SET envelope = ? WHERE id = ?', [JSON.stringify({ ...envelope, to: to.filter((r) => !got.includes(r)) }), row.id]);
      }
      if (wanted.size === 0) break;
    }
    return corrected;
  }

  /**
   * Cancels, in the caller's transaction, every queued delivery of the
   * incident that `email` would receive, or that `email` sent: they left the
   * roster, and nothing may reach or come from them any more.
   *
   * Lock order (PostgreSQL): every queued delivery row of the incident is
   * locked first, in one statement and in id order, and only then is any
   * email's payload row locked (cancelling a sealed copy whole purges it).
   * The worker recording a send locks its one delivery row, then the payload
   * (markSent). Locking the rows one at a time instead let a removal hold a
   * payload (after cancelling one copy) while waiting for another copy's row
   * that a worker held while waiting for that payload: a deadlock, and
   * PostgreSQL aborted one of them (`test/store/outbox.test.ts`).
   */
  async cancelForMember(incidentId: string, email: string, reason: string, newId: () => string): Promise<Cancellation[]> {
    const lock = this.sql.dialect === 'postgres' ? ' FOR UPDATE OF d' : '';
    const locked = await this.sql.all<{ id: string; channel: DeliveryChannel; envelope: string; member: string | null; created_ms: number }>(
      `SELECT d.id, d.channel, d.envelope, d.created_ms, s.email AS member FROM deliveries d LEFT JOIN sms_messages s ON s.id = d.sms_id
       WHERE d.incident_id = ? AND d.status = 'queued' ORDER BY d.id${lock}`,
      [incidentId],
    );
    // Cancelled oldest first, as queued (the order the audit events follow).
    const rows = locked.sort((a, b) => Number(a.created_ms) - Number(b.created_ms) || (a.id < b.id ? -1 : a.id > b.id ? 1 : 0));
    const cancelled: Cancellation[] = [];
    for (const row of rows) {
      const envelope = JSON.parse(row.envelope) as Envelope;
      let which: string[] | 'all' | undefined;
      if (envelope.kind === 'sms') which = row.member === email ? 'all' : undefined;
      else if (envelope.from === email) which = 'all';
      else if (envelope.to.includes(email)) which = [email];
      if (which === undefined) continue;
      const done = await this.cancelRecipients(row.id, which, reason, newId);
      if (done) cancelled.push(done);
    }
    return cancelled;
  }

  /** The roster address an SMS delivery was for (sms_messages.email). */
  async smsMember(smsId: string): Promise<string | undefined> {
    return (await this.sql.get<{ email: string | null }>('SELECT email FROM sms_messages WHERE id = ?', [smsId]))?.email ?? undefined;
  }

  /** Deliveries of `channel` still queued (waiting, retrying or in flight). */
  async queuedCount(channel: DeliveryChannel): Promise<number> {
    return (await this.sql.get<{ n: number }>("SELECT COUNT(*) AS n FROM deliveries WHERE status = 'queued' AND channel = ?", [channel]))?.n ?? 0;
  }

  /** Records an accepted email (`bcc` left out: unknown, as for emails older than migration 8). */
  async insertEmail(email: Omit<EmailRecord, 'bcc'> & { bcc?: string[] | null }): Promise<void> {
    await this.sql.run('INSERT INTO emails (id, incident_id, message_id, sender, encrypted, external_chain, recipients, bcc, created_at) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?)', [
      email.id,
      email.incidentId,
      normaliseMessageId(email.messageId),
      email.sender,
      email.encrypted ? 1 : 0,
      email.chainExternal ? 1 : 0,
      JSON.stringify(email.recipients),
      email.bcc === undefined || email.bcc === null ? null : JSON.stringify(email.bcc),
      email.createdAt,
    ]);
  }

  /**
   * One page of an incident's emails, newest first (created_at, then id), from
   * `after` on; only `sender`'s when given. At most `limit` rows.
   */
  async listEmails(query: { incidentId: string; sender?: string | undefined; after?: EmailCursor | undefined; limit: number }): Promise<EmailRecord[]> {
    const where = ['incident_id = ?'];
    const params: (string | number)[] = [query.incidentId];
    if (query.sender !== undefined) {
      where.push('sender = ?');
      params.push(query.sender);
    }
    if (query.after !== undefined) {
      where.push('(created_at < ? OR (created_at = ? AND id < ?))');
      params.push(query.after.createdAt, query.after.createdAt, query.after.id);
    }
    const rows = await this.sql.all<EmailRow>(`SELECT * FROM emails WHERE ${where.join(' AND ')} ORDER BY created_at DESC, id DESC LIMIT ?`, [...params, query.limit]);
    return rows.map(toEmail);
  }

  /** The incident's email with this Message-ID: the relay's own, or a client's alias of it (SMTP). */
  async emailByMessageId(incidentId: string, messageId: string): Promise<EmailRecord | undefined> {
    const id = normaliseMessageId(messageId);
    const row = await this.sql.get<EmailRow>(
      'SELECT * FROM emails WHERE incident_id = ? AND (message_id = ? OR id IN (SELECT email_id FROM message_aliases WHERE alias = ?))',
      [incidentId, id, id],
    );
    return row ? toEmail(row) : undefined;
  }

  /** The emails with these ids (any incident), by id; unknown ids are absent. */
  async emailsById(ids: readonly string[]): Promise<Map<string, EmailRecord>> {
    const found = new Map<string, EmailRecord>();
    const wanted = [...new Set(ids)];
    for (const slice of lookupSlices(wanted)) {
      for (const row of await this.sql.all<EmailRow>(`SELECT * FROM emails WHERE id IN (${placeholders(slice.length)})`, slice)) found.set(row.id, toEmail(row));
    }
    return found;
  }

  /**
   * Keeps a client's own Message-ID (SMTP) as another name of the relay's
   * email, for replies written from a Sent folder. Not when it is the relay's
   * Message-ID of an email already (a client resending or "redirecting" a
   * message it received keeps that id): the alias would give that id a
   * second chain, and a reply could be judged by the wrong one. Nor when the
   * id is already another email's alias (the first keeps it). True when kept.
   */
  async addAlias(alias: string, emailId: string): Promise<boolean> {
    const id = normaliseMessageId(alias);
    const changes = await this.sql.run(
      'INSERT INTO message_aliases (alias, email_id) SELECT ?, ? WHERE NOT EXISTS (SELECT 1 FROM emails WHERE message_id = ?) ON CONFLICT (alias) DO NOTHING',
      [id, emailId, id],
    );
    return changes === 1;
  }

  async email(incidentId: string, id: string): Promise<EmailRecord | undefined> {
    const row = await this.sql.get<EmailRow>('SELECT * FROM emails WHERE incident_id = ? AND id = ?', [incidentId, id]);
    return row ? toEmail(row) : undefined;
  }

  /**
   * The emails these references name, by the relay's Message-ID or by a
   * client's alias; references the relay never saw are absent from the answer.
   */
  async chainMessages(references: readonly string[]): Promise<ChainMessage[]> {
    const wanted = [...new Set(references.map(normaliseMessageId))];
    const found: ChainMessage[] = [];
    for (const slice of lookupSlices(wanted)) {
      const marks = placeholders(slice.length);
      const rows = await this.sql.all<EmailRow & { reference: string }>(
        `SELECT e.*, e.message_id AS reference FROM emails e WHERE e.message_id IN (${marks})
         UNION ALL
         SELECT e.*, a.alias AS reference FROM message_aliases a JOIN emails e ON e.id = a.email_id WHERE a.alias IN (${marks})`,
        [...slice, ...slice],
      );
      for (const row of rows) {
        found.push({ reference: row.reference, emailId: row.id, incidentId: row.incident_id, messageId: row.message_id, sender: row.sender, chainExternal: row.external_chain === 1 });
      }
    }
    return found;
  }

  /** The copies of an email and their states. */
  async deliveriesOf(emailId: string): Promise<DeliveryView[]> {
    return (await this.deliveriesOfEmails([emailId])).get(emailId) ?? [];
  }

  /** The copies of each of these emails and their states, in one query per slice (a page of the email list). */
  async deliveriesOfEmails(emailIds: readonly string[]): Promise<Map<string, DeliveryView[]>> {
    const found = new Map<string, DeliveryView[]>();
    const wanted = [...new Set(emailIds)];
    for (const slice of lookupSlices(wanted)) {
      const rows = await this.sql.all<Pick<DeliveryRow, 'id' | 'email_id' | 'envelope' | 'status' | 'attempts' | 'last_error' | 'created_ms'>>(
        `SELECT id, email_id, envelope, status, attempts, last_error, created_ms FROM deliveries WHERE email_id IN (${placeholders(slice.length)}) ORDER BY created_ms, id`,
        slice,
      );
      for (const r of rows) {
        const envelope = JSON.parse(r.envelope) as Envelope;
        const view: DeliveryView = { id: r.id, recipients: envelope.kind === 'email' ? envelope.to : [envelope.to], status: r.status, attempts: r.attempts, lastError: r.last_error };
        const list = found.get(r.email_id!);
        if (list) list.push(view);
        else found.set(r.email_id!, [view]);
      }
    }
    return found;
  }

  /** An email's overall state: failed if any copy failed, queued while any waits, cancelled when every copy was, else sent. */
  async emailDeliveryState(emailId: string): Promise<{ status: DeliveryStatus; attempts: number; lastError: string | null }> {
    return summarise(await this.deliveriesOf(emailId));
  }
}

/** The overall state of an email from its copies. */
export function summarise(rows: readonly DeliveryView[]): { status: DeliveryStatus; attempts: number; lastError: string | null } {
  const has = (s: DeliveryStatus): boolean => rows.some((r) => r.status === s);
  const status: DeliveryStatus = has('failed') ? 'failed' : has('queued') ? 'queued' : rows.length > 0 && rows.every((r) => r.status === 'cancelled') ? 'cancelled' : 'sent';
  const attempts = rows.reduce((max, r) => Math.max(max, r.attempts), 0);
  // The error that decided the status: a failed copy's over a retrying one's.
  const lastError =
    (rows.find((r) => r.status === 'failed' && r.lastError !== null) ?? rows.find((r) => r.status === 'queued' && r.lastError !== null) ?? rows.find((r) => r.lastError !== null))
      ?.lastError ?? null;
  return { status, attempts, lastError };
}
