/**
 * The delivery worker: claims due deliveries from the durable outbox under a
 * lease in the database, hands each to its channel, and records the outcome.
 *
 * - Who sends what is decided by the database (Outbox.claim), never by a set
 *   in this process: several relays may run this worker on one database, and
 *   a delivery whose relay died is taken over when its lease expires. While a
 *   send runs, its lease is renewed.
 * - Every attempt re-checks the envelope against the incident's roster: a
 *   recipient (or sender) who left the roster is cancelled, not sent to. The
 *   copies of an announcement go to people off the roster by design: they are
 *   checked instead against the announcement (still the content that was
 *   approved, its release gates still met, the recipient in its audience).
 * - Rule `security-team` holds for the whole life of a message: while the
 *   incident has no active security member, its deliveries wait (retried with
 *   backoff until RELAY_DELIVERY_MAX_AGE), neither sent nor dropped.
 * - Transient failures retry with exponential backoff and jitter until
 *   RELAY_DELIVERY_MAX_AGE; permanent ones fail.
 * - A delivery stays queued until its outcome is committed, so a crash
 *   mid-send means it is sent again (at-least-once, never lost). When the
 *   outcome cannot be recorded (store read-only, full, unreachable), the
 *   worker keeps it in memory and retries the write with backoff, and claims
 *   no new work until writes succeed again: at-least-once must not mean
 *   hundreds of copies.
 */
import { randomUUID } from 'node:crypto';
import type { RelayContext } from '../context.js';
import { DeliveryError, type Channel, type ChunkedBody, type RefusedRecipient, type SendReceipt } from '../channels/channel.js';
import { renderCopyChunks, renderedCopyLength } from '../pgp/pgp-mime.js';
import { decideRelease } from '../policy/gates.js';
import { securityMemberCount } from '../policy/security-team.js';
import { cancellationEvent } from '../services/incidents.js';
import type { Announcement } from '../store/announcements.js';
import type { AuditInput } from '../store/audit.js';
import type { RosterMember } from '../store/incidents.js';
import type { Repositories } from '../store/index.js';
import type { Cancellation, Delivery, DeliveryChannel, DeliverySplit, EmailPayload, Envelope } from '../store/outbox.js';

/** What the worker needs from the relay: the store, the clock, its identity, and where to report. */
export type DeliveryContext = Pick<RelayContext, 'store' | 'now' | 'logger' | 'metrics' | 'config' | 'replicaId'>;

export interface DeliveryWorkerOptions {
  channels: Partial<Record<DeliveryChannel, Channel>>;
  /** Deliveries in flight at once (default 16: twice the SMTP pool's connections, so a freed connection finds its next message queued). */
  concurrency?: number;
  /** Longest sleep between looks at the queue. */
  pollMs?: number;
  /** First retry delay; doubles each attempt up to maxBackoffMs. */
  baseBackoffMs?: number;
  maxBackoffMs?: number;
  /** How long a claimed delivery stays ours without renewal (default RELAY_DELIVERY_LEASE). */
  leaseMs?: number;
  /**
   * Give back every lease at start. Only where one relay uses the database
   * (SQLite): its own leases from before a crash would otherwise hold the
   * queue for a lease period.
   */
  releaseLeasesAtStart?: boolean;
  /** Random in [0, 1); tests pin it. */
  random?: () => number;
}

/** A row to split off a delivery the upstream took for only some recipients, with its audit event. */
interface Split {
  row: DeliverySplit;
  audit: Omit<AuditInput, 'actor' | 'incidentId'>;
}

/** What an attempt sends, once every check before the send passed. */
interface Ready {
  channel: Channel;
  body: Buffer;
  envelope: Envelope;
}

/** An outcome whose write failed; kept and retried, never re-sent while this process lives. */
interface Unrecorded {
  delivery: Delivery;
  write: (tx: Repositories) => Promise<void>;
  failures: number;
  retryAtMs: number;
}

/** The delay before attempt `attempts + 1`: exponential, capped, with jitter in [50%, 100%]. */
export function backoffMs(attempts: number, baseMs: number, maxMs: number, random: () => number): number {
  const ceiling = Math.min(maxMs, baseMs * 2 ** Math.min(attempts, 30));
  return Math.round(ceiling / 2 + (ceiling / 2) * random());
}

// Retrying a failed outcome write: from 250 ms, doubling, at most 30 s.
const RECORD_RETRY_BASE_MS = 250;
const RECORD_RETRY_MAX_MS = 30_000;
// Deliveries whose checks before sending failed, remembered for their backoff; a bound on memory.
const MAX_REMEMBERED_FAILURES = 10_000;

/** The addresses an envelope sends to. */
function recipientsOf(envelope: Envelope): string[] {
  return envelope.kind === 'sms' ? [envelope.to] : envelope.to;
}

/**
 * The envelope to send: what the checks left (`checked`), narrowed to what
 * the row holds now (`stored`: a removal on another relay may have taken
 * recipients out since). Undefined when nobody is left.
 */
function narrowed(checked: Envelope, stored: Envelope): Envelope | undefined {
  if (checked.kind === 'sms' || stored.kind === 'sms') return checked.kind === stored.kind && checked.to === stored.to ? checked : undefined;
  const now = new Set(stored.to);
  const to = checked.to.filter((r) => now.has(r));
  return to.length === 0 ? undefined : { ...checked, to };
}

/** What every event of a delivery attempt names: the delivery, its email or SMS, and which attempt this is. */
function refsOf(delivery: Delivery): { deliveryId: string; emailId?: string | undefined; smsId?: string | undefined; attempt: number } {
  return { deliveryId: delivery.id, emailId: delivery.emailId ?? undefined, smsId: delivery.smsId ?? undefined, attempt: delivery.attempts + 1 };
}

/** An announcement whose email this is, with its audience as a set. */
interface SentAnnouncement {
  announcement: Announcement;
  audience: ReadonlySet<string>;
}

/** Delivers the outbox. start() runs it in the background; drain() is for tests and shutdown. */
export class DeliveryWorker {
  private readonly inFlight = new Map<string, Promise<void>>();
  private readonly unrecorded = new Map<string, Unrecorded>();
  // The stored payload of an encrypted email, read once for all its copies in flight at the same time.
  private readonly payloads = new Map<string, { payload: Promise<EmailPayload | undefined>; users: number }>();
  // Looks at the queue in progress: stop() waits for them, and for what they claim.
  private readonly ticks = new Set<Promise<void>>();
  // Consecutive failures of the checks before sending, per delivery (giveBack's backoff).
  private readonly prepareFailures = new Map<string, number>();
  private timer: NodeJS.Timeout | undefined;
  private renewTimer: NodeJS.Timeout | undefined;
  private running = false;
  private stopping = false;
  private storeFailing = false;
  private readonly concurrency: number;
  private readonly pollMs: number;
  private readonly baseBackoffMs: number;
  private readonly maxBackoffMs: number;
  private readonly leaseMs: number;
  private readonly random: () => number;

  constructor(
    private readonly ctx: DeliveryContext,
    private readonly options: DeliveryWorkerOptions,
  ) {
    // Twice nodemailer's 8 connections: a connection that frees up takes the
    // next queued message at once instead of waiting for the worker's next
    // look, which waits its turn on a busy event loop (BENCHMARKS.md).
    this.concurrency = options.concurrency ?? 16;
    this.pollMs = options.pollMs ?? 1000;
    this.baseBackoffMs = options.baseBackoffMs ?? 2000;
    this.maxBackoffMs = options.maxBackoffMs ?? 15 * 60_000;
    this.leaseMs = options.leaseMs ?? ctx.config.deliveryLease;
    this.random = options.random ?? Math.random;
  }

  /** This worker's lease owner name (the replica). */
  get owner(): string {
    return this.ctx.replicaId;
  }

  /** Deliveries whose outcome is waiting to be written (for /healthz and tests). */
  get unrecordedCount(): number {
    return this.unrecorded.size;
  }

  /** Starts polling, retrying everything queued at once; new work is also picked up through notify(). */
  async start(): Promise<void> {
    this.running = true;
    this.stopping = false;
    try {
      if (this.options.releaseLeasesAtStart) await this.ctx.store.outbox.releaseAll();
      // A (re)start is when the queue must flush: an operator restarts after
      // fixing the upstream, or after a crash; waiting out backoffs chosen
      // before it would hold incident mail for up to maxBackoffMs.
      const resumed = await this.ctx.store.outbox.resumeQueued(this.ctx.now());
      if (resumed > 0) this.ctx.logger.info({ resumed }, 'retrying queued deliveries now');
    } catch (err) {
      // The store cannot be written: the deliveries keep their schedule.
      this.ctx.logger.error({ err }, 'could not reschedule queued deliveries');
    }
    this.renewTimer = setInterval(() => void this.renewLeases(), Math.max(50, Math.floor(this.leaseMs / 3)));
    this.renewTimer.unref();
    this.schedule(0);
  }

  /**
   * Stops taking new work and waits for it to end: the look at the queue in
   * progress first (what it claims now is given back, not started), then the
   * sends in flight; outcomes still unwritten are tried once more. Leases are
   * renewed until then: a long send must not outlive its lease and be sent
   * again by another relay while this one still waits for the upstream.
   */
  async stop(): Promise<void> {
    this.running = false;
    this.stopping = true;
    clearTimeout(this.timer);
    await Promise.allSettled([...this.ticks]);
    await Promise.allSettled([...this.inFlight.values()]);
    await this.retryUnrecorded(true);
    clearInterval(this.renewTimer);
    if (this.unrecorded.size > 0) {
      // Their leases expire and they are sent again after the restart: at-least-once.
      this.ctx.logger.error({ deliveries: this.unrecorded.size }, 'stopping with delivery outcomes that could not be recorded; they will be sent again');
    }
  }

  /** Wakes the worker: something was just queued. */
  notify(): void {
    if (this.running) this.schedule(0);
  }

  /** Claims every due delivery (up to the concurrency) and waits for them; returns how many ran. */
  async runOnce(): Promise<number> {
    const { started, settled } = await this.startDue();
    await settled;
    return started;
  }

  /** Runs until nothing is due now (tests, bench). */
  async drain(): Promise<void> {
    while ((await this.runOnce()) > 0 || this.inFlight.size > 0) {
      await Promise.allSettled([...this.inFlight.values()]);
    }
  }

  /**
   * Claims due deliveries (up to the free slots) and starts them without
   * waiting. A store error is thrown for the caller to handle; `settled`
   * never rejects. Nothing is claimed while outcomes are waiting to be written.
   */
  private async startDue(): Promise<{ started: number; settled: Promise<unknown> }> {
    const free = this.concurrency - this.inFlight.size;
    if (free <= 0 || this.unrecorded.size > 0) return { started: 0, settled: Promise.resolve() };
    const due = await this.ctx.store.outbox.claim(this.owner, this.ctx.now(), free, this.leaseMs);
    if (this.stopping) {
      // stop() came while claiming: give them back rather than start sends after the channel and store are closed.
      await Promise.allSettled(due.map((d) => this.ctx.store.outbox.release(d.id, this.owner)));
      return { started: 0, settled: Promise.resolve() };
    }
    const started = due.map((d) => {
      const attempt = this.attempt(d)
        .catch((err: unknown) => this.ctx.logger.error({ err, deliveryId: d.id }, 'delivery attempt failed unexpectedly'))
        .finally(() => {
          this.inFlight.delete(d.id);
          // A slot came free: look for more without waiting for the poll.
          if (this.running) this.schedule(0);
        });
      this.inFlight.set(d.id, attempt);
      return attempt;
    });
    return { started: due.length, settled: Promise.all(started) };
  }

  private schedule(delayMs: number): void {
    clearTimeout(this.timer);
    this.timer = setTimeout(() => {
      const tick: Promise<void> = this.tick().finally(() => this.ticks.delete(tick));
      this.ticks.add(tick);
    }, delayMs);
    this.timer.unref?.();
  }

  /**
   * One look at the queue. Total: whatever the store throws (busy, disk,
   * closed, a lost connection) is logged and the next look is scheduled
   * anyway, so neither a dead worker nor an unhandled rejection can follow.
   */
  private async tick(): Promise<void> {
    if (!this.running) return;
    // On any error below, look again at the next poll rather than at once.
    let wait = this.pollMs;
    try {
      if (this.unrecorded.size > 0) {
        wait = await this.retryUnrecorded(false);
      } else {
        await this.startDue();
        wait = await this.nextWait();
      }
    } catch (err) {
      // The store is unreachable (disk, lock, network): the deliveries stay queued.
      try {
        this.ctx.logger.error({ err }, 'delivery worker could not read the outbox; trying again at the next poll');
      } catch {
        // A logger that throws must not stop the worker either.
      }
    } finally {
      if (this.running) this.schedule(wait);
    }
  }

  /** How long to sleep before the next look: until the next delivery that could start now is due, at most pollMs. */
  private async nextWait(): Promise<number> {
    // Every slot is busy: nothing could start anyway, and each attempt
    // schedules a look as soon as it frees its slot.
    if (this.inFlight.size >= this.concurrency) return this.pollMs;
    const next = await this.ctx.store.outbox.nextDueMs(this.owner);
    return next === undefined ? this.pollMs : Math.max(0, Math.min(this.pollMs, next - this.ctx.now().getTime()));
  }

  /** Keeps the leases of the sends in progress (and of unwritten outcomes) alive: those, and no other lease of this relay. */
  private async renewLeases(): Promise<void> {
    const ids = [...new Set([...this.inFlight.keys(), ...this.unrecorded.keys()])];
    if (ids.length === 0) return;
    try {
      await this.ctx.store.outbox.renewLeases(this.owner, ids, new Date(this.ctx.now().getTime() + this.leaseMs));
    } catch (err) {
      // Not fatal: if the leases expire, another relay may send these again (at-least-once).
      this.ctx.logger.warn({ err }, 'could not renew delivery leases');
    }
  }

  private async attempt(delivery: Delivery): Promise<void> {
    let ready: Ready | undefined;
    try {
      ready = await this.prepare(delivery);
    } catch (err) {
      await this.giveBack(delivery, err);
      return;
    }
    this.prepareFailures.delete(delivery.id);
    if (ready !== undefined) await this.send(delivery, ready);
  }

  /**
   * Everything before the bytes go out: the channel, the roster (or the
   * announcement), the security team, and a last look at the row. Undefined
   * when there is nothing to send now (its outcome recorded, or no longer
   * this relay's to send). Throws when the store fails a read or a write:
   * nothing was sent or recorded.
   */
  private async prepare(delivery: Delivery): Promise<Ready | undefined> {
    const { ctx } = this;
    const channel = this.options.channels[delivery.channel];
    if (!channel || delivery.body === null) {
      const refs = refsOf(delivery);
      await this.record(delivery, async (tx) => {
        if (!(await tx.outbox.markFailed(delivery.id, channel ? 'no body to send' : `no ${delivery.channel} channel configured`, this.owner))) return;
        await tx.audit.append({ actor: null, incidentId: delivery.incidentId, type: `${delivery.channel}.delivery_failed`, outcome: 'failed', data: { ...refs, error: 'no channel or body' } });
      });
      return undefined;
    }
    const roster = delivery.incidentId === null ? undefined : await ctx.store.incidents.roster(delivery.incidentId);
    const checked = await this.rosterCheck(delivery, roster);
    if (checked === undefined) return undefined;
    if (roster !== undefined && (await this.heldForSecurityTeam(delivery, roster))) return undefined;
    // The last look before sending, without the body: recorded meanwhile by
    // a relay whose lease this one took over (it had stalled), or the lease
    // lost, and it is not this relay's to send; recipients cancelled meanwhile
    // (a removal on another relay) are no longer in the row's envelope.
    const current = await ctx.store.outbox.state(delivery.id);
    if (current === undefined || current.status !== 'queued' || current.leaseOwner !== this.owner) {
      ctx.logger.info({ deliveryId: delivery.id, status: current?.status }, 'delivery no longer ours to send; skipped');
      return undefined;
    }
    const envelope = narrowed(checked, current.envelope);
    return envelope === undefined ? undefined : { channel, body: delivery.body, envelope };
  }

  /**
   * The checks before sending failed (the store refused a read or a write):
   * nothing was sent or recorded. The lease is given back at once, rather
   * than held (and, before, renewed for as long as other sends kept this
   * relay busy), and the delivery is not due again before a backoff that
   * grows while it keeps failing, so a failing read neither holds it nor
   * spins on it. Past RELAY_DELIVERY_MAX_AGE it is recorded failed (audited),
   * as any other expired delivery, so a check that can never pass surfaces
   * instead of being retried for ever; when that write fails too (the store
   * is out), the lease is given back as before and it is tried again later.
   */
  private async giveBack(delivery: Delivery, err: unknown): Promise<void> {
    const failures = (this.prepareFailures.get(delivery.id) ?? 0) + 1;
    this.prepareFailures.delete(delivery.id);
    if (this.prepareFailures.size >= MAX_REMEMBERED_FAILURES) this.prepareFailures.delete(this.prepareFailures.keys().next().value!);
    this.prepareFailures.set(delivery.id, failures);
    const wait = backoffMs(delivery.attempts + failures - 1, this.baseBackoffMs, this.maxBackoffMs, this.random);
    const settled = this.ctx.now().getTime() + wait - delivery.createdMs > this.ctx.config.deliveryMaxAge ? await this.failExpired(delivery) : undefined;
    if (settled !== undefined) {
      this.prepareFailures.delete(delivery.id);
      if (settled === 'failed') {
        this.ctx.logger.error({ err, deliveryId: delivery.id }, 'delivery checks kept failing until RELAY_DELIVERY_MAX_AGE; recorded failed');
        this.ctx.metrics.deliveries.inc({ channel: delivery.channel, outcome: 'failed' });
      }
      return;
    }
    try {
      this.ctx.logger.error({ err, deliveryId: delivery.id, retryInMs: wait }, 'delivery checks failed before sending; the lease is given back');
      await this.ctx.store.outbox.release(delivery.id, this.owner, new Date(this.ctx.now().getTime() + wait));
    } catch (releaseErr) {
      // No longer in flight, so no longer renewed: the lease runs out on its own.
      this.ctx.logger.warn({ err: releaseErr, deliveryId: delivery.id }, 'could not give a delivery lease back; it expires on its own');
    }
  }

  /**
   * Records, now, a delivery whose checks before sending kept failing until
   * RELAY_DELIVERY_MAX_AGE as failed, with its audit event: `failed`, or
   * `gone` when it is no longer queued under this relay's lease (another
   * relay's record decides); undefined when the store refused the write.
   */
  private async failExpired(delivery: Delivery): Promise<'failed' | 'gone' | undefined> {
    // The store's error stays in the relay's log: last_error is shown to callers.
    const error = "gave up after RELAY_DELIVERY_MAX_AGE: the checks before sending kept failing (the relay's log says why)";
    const refs = refsOf(delivery);
    try {
      return await this.ctx.store.transaction(async (tx) => {
        if (!(await tx.outbox.markFailed(delivery.id, error, this.owner))) return 'gone' as const;
        await tx.audit.append({
          actor: null,
          incidentId: delivery.incidentId,
          type: `${delivery.channel}.delivery_failed`,
          outcome: 'failed',
          data: { ...refs, error, reason: 'checks_failed_before_send' },
        });
        return 'failed' as const;
      });
    } catch {
      // The caller logs the checks' error and gives the lease back.
      return undefined;
    }
  }

  /** Hands the delivery to its channel and records the outcome. */
  private async send(delivery: Delivery, ready: Ready): Promise<void> {
    const { ctx } = this;
    const { channel, envelope } = ready;
    const base = { actor: null, incidentId: delivery.incidentId };
    const refs = refsOf(delivery);
    let receipt: SendReceipt;
    try {
      receipt = await this.withBody(delivery, ready.body, (body) => channel.send({ id: delivery.id, envelope, body }));
    } catch (err) {
      const failure = err instanceof DeliveryError ? err : new DeliveryError(`unexpected: ${err instanceof Error ? err.message : String(err)}`, true);
      const now = ctx.now().getTime();
      const wait = Math.max(backoffMs(delivery.attempts, this.baseBackoffMs, this.maxBackoffMs, this.random), (failure.retryAfter ?? 0) * 1000);
      const expired = now + wait - delivery.createdMs > ctx.config.deliveryMaxAge;
      const giveUp = !failure.transient || expired;
      const error = giveUp && failure.transient ? `gave up after RELAY_DELIVERY_MAX_AGE: ${failure.message}` : failure.message;
      await this.recordRetryOrFail(delivery, { giveUp, error, now, wait, waitType: 'delivery_retry' });
      ctx.logger.warn({ deliveryId: delivery.id, channel: delivery.channel, transient: failure.transient, giveUp }, 'delivery attempt failed');
      return;
    }
    // The upstream has it. Recording that is a separate step: if the store
    // cannot write now, the outcome is kept and written later; the delivery
    // is never sent again by this process, and never rewritten as failed.
    const refused = receipt.refused ?? [];
    const refusedNow = new Set(refused.map((r) => r.recipient));
    const received = recipientsOf(envelope).filter((r) => !refusedNow.has(r));
    let splits: Split[] = [];
    let duplicate = false;
    await this.record(delivery, async (tx) => {
      // Locked: a cancellation on another relay waits until this is recorded.
      const stored = await tx.outbox.state(delivery.id, true);
      if (stored === undefined) return;
      if (stored.status === 'failed' && (await tx.outbox.correctFailedToSent(delivery.id, receipt.id, receipt.at))) {
        // The relay that took the lease over while this one stalled was
        // refused and recorded failed; this send went out. The record says
        // what happened (sent), so nobody resends a message that arrived.
        await tx.audit.append({ ...base, type: `${delivery.channel}.delivered`, outcome: 'ok', data: { ...refs, providerId: receipt.id, correctedFrom: 'failed' } });
        return;
      }
      if (stored.status === 'sent' || stored.status === 'failed') {
        // Recorded with this very receipt: an earlier try of this write did commit.
        if (stored.status === 'sent' && stored.providerId === receipt.id && stored.sentAt === receipt.at.toISOString()) return;
        // Recorded by the relay that took the lease over while this one
        // stalled, and this send went out too: a second real send (maybe to
        // outside recipients), audited as one. The id alone cannot always tell
        // the two apart (the SMS file channel's is the delivery's own id); the
        // time of the receipt can. The row keeps the other relay's record.
        duplicate = true;
        await tx.audit.append({
          ...base,
          type: `${delivery.channel}.delivered`,
          outcome: 'ok',
          data: { ...refs, providerId: receipt.id, duplicate: true, recordedAs: stored.status, ...(stored.providerId !== null ? { recordedProviderId: stored.providerId } : {}) },
        });
        return;
      }
      // Recipients cut from the row while the send was under way (they, or
      // the sender, left the roster; cancelled whole) have the message all
      // the same: their cancelled record is corrected to sent, and said so.
      const still = new Set(stored.status === 'queued' ? recipientsOf(stored.envelope) : []);
      const gotAnyway = await tx.outbox.sentDespiteCancel(
        delivery.id,
        received.filter((r) => !still.has(r)),
        receipt.id,
        receipt.at,
        randomUUID,
      );
      // Refused recipients who were cancelled meanwhile stay cancelled: no retry copy for them.
      splits = stored.status === 'queued' ? this.splitsFor(delivery, refused.filter((r) => still.has(r.recipient))) : [];
      // The copies first: markSent purges the body a retry copy needs.
      for (const split of splits) await tx.outbox.splitOff(delivery.id, split.row);
      if (stored.status === 'queued') await tx.outbox.markSent(delivery.id, receipt.id, receipt.at);
      await tx.audit.append({
        ...base,
        type: `${delivery.channel}.delivered`,
        outcome: 'ok',
        data: { ...refs, providerId: receipt.id, ...(gotAnyway.length > 0 ? { cancelledWhileSending: gotAnyway } : {}) },
      });
      for (const split of splits) await tx.audit.append({ ...base, ...split.audit });
    });
    ctx.metrics.deliveries.inc({ channel: delivery.channel, outcome: 'sent' });
    if (duplicate) ctx.logger.warn({ deliveryId: delivery.id, channel: delivery.channel }, 'sent a delivery another relay had already recorded (its lease had moved); audited as a duplicate');
    for (const split of splits) {
      ctx.metrics.deliveries.inc({ channel: delivery.channel, outcome: split.row.status === 'queued' ? 'retry' : 'failed' });
      ctx.logger.warn({ deliveryId: delivery.id, splitId: split.row.id, channel: delivery.channel, recipients: split.row.to.length, status: split.row.status }, 'upstream refused some recipients');
    }
  }

  /**
   * Runs `send` with the delivery's bytes: a raw body as it is; a sealed
   * copy as its email's stored envelope and shared payload around its own key
   * packets, written a chunk at a time (a large attachment to 99 Bcc
   * recipients is held once, not once per copy in flight).
   */
  private async withBody<T>(delivery: Delivery, stored: Buffer, send: (body: Buffer | ChunkedBody) => Promise<T>): Promise<T> {
    if (delivery.bodyKind === 'raw') return send(stored);
    const emailId = delivery.emailId;
    // A sealed copy without its payload can never be sent: permanent, so it fails rather than loops.
    if (emailId === null) throw new DeliveryError('sealed copy without an email', false);
    let entry = this.payloads.get(emailId);
    if (!entry) this.payloads.set(emailId, (entry = { payload: this.ctx.store.outbox.payload(emailId), users: 0 }));
    entry.users += 1;
    try {
      const payload = await entry.payload;
      if (payload === undefined) throw new DeliveryError('the encrypted payload of this copy is gone', false);
      const keyPackets = stored;
      const envelope = { head: payload.head, tail: payload.tail };
      return await send({ length: renderedCopyLength(envelope, keyPackets.length, payload.shared.length), chunks: () => renderCopyChunks(envelope, keyPackets, payload.shared) });
    } finally {
      entry.users -= 1;
      if (entry.users === 0 && this.payloads.get(emailId) === entry) this.payloads.delete(emailId);
    }
  }

  /**
   * The envelope to send now, after taking out whoever left the incident's
   * roster since the message was queued (SPEC §2 rule `roster`, for the whole
   * life of a message). A sender who left cancels the whole delivery; so does
   * the member an SMS nudge was for. Undefined when nothing is left to send.
   * Messages of a closed incident that were accepted before it closed are
   * still delivered (rule `incident-open` refuses new messages only).
   */
  private async rosterCheck(delivery: Delivery, roster: readonly RosterMember[] | undefined): Promise<Envelope | undefined> {
    const { store } = this.ctx;
    if (delivery.incidentId === null || roster === undefined) return delivery.envelope;
    const sent = delivery.emailId === null ? null : await this.sentAnnouncementOf(delivery.emailId);
    if (sent !== null) return this.announcementCheck(delivery, sent, roster);
    const active = new Set(roster.map((m) => m.email));
    const envelope = delivery.envelope;
    let gone: string[] | 'all' = [];
    if (envelope.kind === 'sms') {
      const member = delivery.smsId === null ? undefined : await store.outbox.smsMember(delivery.smsId);
      if (member !== undefined && !active.has(member)) gone = 'all';
    } else if (!active.has(envelope.from)) gone = 'all';
    else gone = envelope.to.filter((r) => !active.has(r));
    if (gone !== 'all' && gone.length === 0) return envelope;
    const incidentId = delivery.incidentId;
    return this.cancelNow(delivery, gone, 'cancelled: left the roster before it was sent', (done) => cancellationEvent(done, null, incidentId, 'not_on_roster_at_send'));
  }

  /**
   * The envelope of an announcement copy to send now: the announcement must
   * still be the content that was sent (its hash unchanged), its release gates
   * met as they were at send (internal source still ruled out; for an
   * external one, the approvals of that content still live and their givers
   * still on the roster in their roles), and each recipient in its audience.
   * Otherwise the copy is cancelled, not sent. Undefined when nothing is left.
   */
  private async announcementCheck(delivery: Delivery, { announcement, audience }: SentAnnouncement, roster: readonly RosterMember[]): Promise<Envelope | undefined> {
    const { store } = this.ctx;
    const envelope = delivery.envelope;
    let reason: string | undefined;
    if (envelope.kind !== 'email' || announcement.incidentId !== delivery.incidentId) reason = 'announcement_mismatch';
    else if (announcement.state !== 'sent' || announcement.sentHash === null || announcement.sentHash !== announcement.contentHash) reason = 'announcement_changed';
    else {
      const release = decideRelease({
        kind: announcement.kind,
        author: announcement.author,
        contentHash: announcement.sentHash,
        approvals: await store.announcements.approvals(announcement.id),
        roster: new Map(roster.map((m) => [m.email, m.role])),
        internalSource: await store.announcements.internalSource(announcement.incidentId),
      });
      if (release.outcome === 'refuse') reason = `announcement_${release.error.code}`;
    }
    const gone: string[] | 'all' = reason !== undefined ? 'all' : envelope.kind === 'email' ? envelope.to.filter((r) => !audience.has(r)) : 'all';
    if (gone !== 'all' && gone.length === 0) return envelope;
    const incidentId = delivery.incidentId!;
    const why = reason ?? 'not_in_announcement_audience';
    return this.cancelNow(delivery, gone, `cancelled: ${why.replace(/_/g, ' ')}`, (done) => {
      const event = cancellationEvent(done, null, incidentId, why);
      return { ...event, data: { ...event.data, announcementId: announcement.id } };
    });
  }

  /**
   * Cancels `gone` of this delivery now, with its audit event, and returns
   * what is left to send: the envelope the row holds afterwards, less `gone`.
   * Undefined unless the row is still queued: cancelled whole (by this check,
   * or by a removal on another relay between this check's roster read and
   * its write) or already recorded, nothing of it may be sent.
   */
  private async cancelNow(delivery: Delivery, gone: readonly string[] | 'all', reason: string, event: (done: Cancellation) => AuditInput): Promise<Envelope | undefined> {
    const { done, stored } = await this.ctx.store.transaction(async (tx) => {
      const done = await tx.outbox.cancelRecipients(delivery.id, gone, reason, randomUUID);
      if (done) await tx.audit.append(event(done));
      return { done, stored: await tx.outbox.state(delivery.id) };
    });
    if (done) this.ctx.metrics.deliveries.inc({ channel: delivery.channel, outcome: 'cancelled' });
    if (gone === 'all' || stored?.status !== 'queued' || stored.envelope.kind !== 'email') return undefined;
    const left = stored.envelope.to.filter((r) => !gone.includes(r));
    return left.length === 0 ? undefined : { ...stored.envelope, to: left };
  }

  // The announcements being sent, by email id, read and their audience parsed
  // once each: an announcement has a copy per recipient (thousands), and a
  // sent one never changes (every write to it requires state <> 'sent'), so
  // reading it per copy cost the whole audience per copy. Null: an email that
  // is no announcement (the link is written with its deliveries). Only what
  // can change after the send (approvals, the internal-source record, the
  // roster) is read again for each copy.
  private readonly announcements = new Map<string, SentAnnouncement | null>();

  private async sentAnnouncementOf(emailId: string): Promise<SentAnnouncement | null> {
    const known = this.announcements.get(emailId);
    if (known !== undefined) return known;
    const announcement = await this.ctx.store.announcements.byEmail(emailId);
    const found = announcement === undefined ? null : { announcement, audience: new Set(announcement.audience) };
    // Not kept unless sent: announcementCheck cancels such a copy, and the row could still change.
    if (found === null || announcement!.state === 'sent') {
      if (this.announcements.size >= 256) this.announcements.delete(this.announcements.keys().next().value!);
      this.announcements.set(emailId, found);
    }
    return found;
  }

  /**
   * Rule `security-team` at send time: with no active security member on the
   * incident's roster, the delivery is held (its attempt counted, retried with
   * backoff, failed only after RELAY_DELIVERY_MAX_AGE) rather than sent or
   * dropped. True when it was held.
   */
  private async heldForSecurityTeam(delivery: Delivery, roster: readonly RosterMember[]): Promise<boolean> {
    if (securityMemberCount(roster) > 0) return false;
    const now = this.ctx.now().getTime();
    const wait = backoffMs(delivery.attempts, this.baseBackoffMs, this.maxBackoffMs, this.random);
    const giveUp = now + wait - delivery.createdMs > this.ctx.config.deliveryMaxAge;
    const held = 'held: the incident has no active member with role security (rule security-team); add one to release it';
    const error = giveUp ? `gave up after RELAY_DELIVERY_MAX_AGE: ${held}` : held;
    await this.recordRetryOrFail(delivery, { giveUp, error, now, wait, waitType: 'delivery_held', extra: { rule: 'security-team' } });
    return true;
  }

  /**
   * Records an attempt that did not send: failed for good (`giveUp`), or to be
   * tried again `wait` ms after `now`, audited as `<channel>.<waitType>` (with `extra`).
   */
  private async recordRetryOrFail(
    delivery: Delivery,
    outcome: { giveUp: boolean; error: string; now: number; wait: number; waitType: 'delivery_retry' | 'delivery_held'; extra?: Record<string, string> },
  ): Promise<void> {
    const { giveUp, error, now, wait } = outcome;
    await this.record(delivery, async (tx) => {
      const changed = giveUp ? await tx.outbox.markFailed(delivery.id, error, this.owner) : await tx.outbox.markRetry(delivery.id, error, new Date(now + wait), this.owner);
      // No longer queued (cancelled meanwhile, or recorded by an earlier try
      // of this write), or its lease taken over by another relay while this
      // one stalled: the other relay's attempt decides. Nothing more to say.
      if (!changed) return;
      await tx.audit.append({
        actor: null,
        incidentId: delivery.incidentId,
        type: `${delivery.channel}.${giveUp ? 'delivery_failed' : outcome.waitType}`,
        outcome: giveUp ? 'failed' : 'retry',
        data: { ...refsOf(delivery), error, ...outcome.extra, ...(giveUp ? {} : { retryInMs: wait }) },
      });
    });
    this.ctx.metrics.deliveries.inc({ channel: delivery.channel, outcome: giveUp ? 'failed' : 'retry' });
  }

  /**
   * Commits an outcome (grouped with the other outcomes of this turn). When
   * the store refuses the write, the outcome is kept in memory and retried
   * with backoff, and the worker stops claiming until writes succeed again.
   */
  private async record(delivery: Delivery, write: (tx: Repositories) => Promise<void>): Promise<void> {
    try {
      await this.ctx.store.grouped(write);
      this.storeRecovered();
    } catch (err) {
      this.unrecorded.set(delivery.id, { delivery, write, failures: 1, retryAtMs: this.ctx.now().getTime() + RECORD_RETRY_BASE_MS });
      if (!this.storeFailing) {
        this.storeFailing = true;
        // Once per outage, not per delivery.
        this.ctx.logger.error({ err, deliveryId: delivery.id }, 'cannot record delivery outcomes; pausing deliveries until the store accepts writes again');
      }
      this.ctx.metrics.deliveries.inc({ channel: delivery.channel, outcome: 'unrecorded' });
    }
  }

  /** Tries the outcomes whose write failed (all of them when `force`); returns how long to wait before the next look. */
  private async retryUnrecorded(force: boolean): Promise<number> {
    const now = this.ctx.now().getTime();
    let next = Infinity;
    for (const [id, pending] of this.unrecorded) {
      if (!force && pending.retryAtMs > now) {
        next = Math.min(next, pending.retryAtMs);
        continue;
      }
      try {
        await this.ctx.store.grouped(pending.write);
        this.unrecorded.delete(id);
      } catch {
        pending.failures += 1;
        pending.retryAtMs = now + Math.min(RECORD_RETRY_MAX_MS, RECORD_RETRY_BASE_MS * 2 ** Math.min(pending.failures, 16));
        next = Math.min(next, pending.retryAtMs);
      }
    }
    if (this.unrecorded.size === 0) {
      this.storeRecovered();
      return 0;
    }
    return Math.max(0, Math.min(RECORD_RETRY_MAX_MS, next - now));
  }

  private storeRecovered(): void {
    if (!this.storeFailing || this.unrecorded.size > 0) return;
    this.storeFailing = false;
    this.ctx.logger.info('the store accepts writes again; deliveries resume');
  }

  /**
   * The rows to add when the upstream took a message but refused some of its
   * recipients: one queued copy for the 4xx ones, due after the backoff this
   * attempt earned, and one failed row for the 5xx ones (and for 4xx ones past
   * RELAY_DELIVERY_MAX_AGE), so none of them is silently dropped.
   */
  private splitsFor(delivery: Delivery, refused: readonly RefusedRecipient[]): Split[] {
    if (refused.length === 0 || delivery.envelope.kind !== 'email') return [];
    const now = this.ctx.now().getTime();
    const wait = backoffMs(delivery.attempts, this.baseBackoffMs, this.maxBackoffMs, this.random);
    const expired = now + wait - delivery.createdMs > this.ctx.config.deliveryMaxAge;
    const retry = expired ? [] : refused.filter((r) => r.transient);
    const failed = expired ? refused : refused.filter((r) => !r.transient);
    const refs = refsOf(delivery);
    // Addresses and reply codes only: never anything of the message.
    const listed = (rs: readonly RefusedRecipient[]) => rs.map((r) => ({ recipient: r.recipient, code: r.code ?? null, error: r.error }));
    const splits: Split[] = [];
    if (retry.length > 0) {
      const id = randomUUID();
      splits.push({
        row: { id, to: retry.map((r) => r.recipient), status: 'queued', nextAttempt: new Date(now + wait), error: retry.map((r) => r.error).join('; ') },
        audit: { type: 'email.delivery_partial', outcome: 'retry', data: { ...refs, splitDeliveryId: id, recipients: listed(retry), retryInMs: wait } },
      });
    }
    if (failed.length > 0) {
      const id = randomUUID();
      const error = failed.map((r) => (r.transient ? `gave up after RELAY_DELIVERY_MAX_AGE: ${r.error}` : r.error)).join('; ');
      splits.push({
        row: { id, to: failed.map((r) => r.recipient), status: 'failed', nextAttempt: new Date(now), error },
        audit: { type: 'email.delivery_partial', outcome: 'failed', data: { ...refs, splitDeliveryId: id, recipients: listed(failed) } },
      });
    }
    return splits;
  }
}
