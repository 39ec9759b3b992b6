/**
 * The delivery worker: takes due deliveries from the durable outbox, hands
 * each to its channel, and records the outcome. Transient failures retry with
 * exponential backoff and jitter until RELAY_DELIVERY_MAX_AGE; permanent ones
 * fail. A delivery stays queued until its outcome is committed, so a crash
 * mid-send means it is sent again after restart (at-least-once, never lost).
 */
import { randomUUID } from 'node:crypto';
import type { RelayContext } from '../context.js';
import { DeliveryError, type Channel, type RefusedRecipient, type SendReceipt } from '../channels/channel.js';
import type { AuditInput } from '../store/audit.js';
import type { Delivery, DeliveryChannel, DeliverySplit } from '../store/outbox.js';

export interface DeliveryWorkerOptions {
  channels: Partial<Record<DeliveryChannel, Channel>>;
  /** Deliveries in flight at once (default 16: twice the SMTP pool's connections, so a freed connection finds its next message queued). */
  concurrency?: number;
  /** Longest sleep between looks at the queue. */
  pollMs?: number;
  /** First retry delay; doubles each attempt up to maxBackoffMs. */
  baseBackoffMs?: number;
  maxBackoffMs?: number;
  /** Random in [0, 1); tests pin it. */
  random?: () => number;
}

/** A row to split off a delivery the upstream took for only some recipients, with its audit event. */
interface Split {
  row: DeliverySplit;
  audit: Omit<AuditInput, 'actor' | 'incidentId'>;
}

/** The delay before attempt `attempts + 1`: exponential, capped, with jitter in [50%, 100%]. */
export function backoffMs(attempts: number, baseMs: number, maxMs: number, random: () => number): number {
  const ceiling = Math.min(maxMs, baseMs * 2 ** Math.min(attempts, 30));
  return Math.round(ceiling / 2 + (ceiling / 2) * random());
}

/** Delivers the outbox. start() runs it in the background; drain() is for tests and shutdown. */
export class DeliveryWorker {
  private readonly inFlight = new Map<string, Promise<void>>();
  private timer: NodeJS.Timeout | undefined;
  private running = false;
  private readonly concurrency: number;
  private readonly pollMs: number;
  private readonly baseBackoffMs: number;
  private readonly maxBackoffMs: number;
  private readonly random: () => number;

  constructor(
    private readonly ctx: RelayContext,
    private readonly options: DeliveryWorkerOptions,
  ) {
    // Twice nodemailer's 8 connections: a connection that frees up takes the
    // next queued message at once instead of waiting for the worker's next
    // look, which waits its turn on a busy event loop (BENCHMARKS.md).
    this.concurrency = options.concurrency ?? 16;
    this.pollMs = options.pollMs ?? 1000;
    this.baseBackoffMs = options.baseBackoffMs ?? 2000;
    this.maxBackoffMs = options.maxBackoffMs ?? 15 * 60_000;
    this.random = options.random ?? Math.random;
  }

  /** Starts polling, retrying everything queued at once; new work is also picked up through notify(). */
  start(): void {
    this.running = true;
    try {
      // A (re)start is when the queue must flush: an operator restarts after
      // fixing the upstream, or after a crash; waiting out backoffs chosen
      // before it would hold incident mail for up to maxBackoffMs.
      const resumed = this.ctx.store.outbox.resumeQueued(this.ctx.now());
      if (resumed > 0) this.ctx.logger.info({ resumed }, 'retrying queued deliveries now');
    } catch (err) {
      // The store cannot be written: the deliveries keep their schedule.
      this.ctx.logger.error({ err }, 'could not reschedule queued deliveries');
    }
    this.schedule(0);
  }

  /** Stops taking new work and waits for what is in flight. */
  async stop(): Promise<void> {
    this.running = false;
    clearTimeout(this.timer);
    await Promise.allSettled([...this.inFlight.values()]);
  }

  /** Wakes the worker: something was just queued. */
  notify(): void {
    if (this.running) this.schedule(0);
  }

  /** Starts every due delivery (up to the concurrency) and waits for them; returns how many ran. */
  async runOnce(): Promise<number> {
    const { started, settled } = this.startDue();
    await settled;
    return started;
  }

  /**
   * Starts every due delivery (up to the concurrency) without waiting for
   * them. A store error is thrown here, synchronously, for the caller to
   * handle; `settled` never rejects.
   */
  private startDue(): { started: number; settled: Promise<unknown> } {
    const free = this.concurrency - this.inFlight.size;
    if (free <= 0) return { started: 0, settled: Promise.resolve() };
    const due = this.ctx.store.outbox.due(this.ctx.now(), free, new Set(this.inFlight.keys()));
    const started = due.map((d) => {
      const attempt = this.attempt(d)
        // Recording the outcome failed (disk full, store closed): the delivery
        // is still queued and will be tried again, which is at-least-once.
        .catch((err: unknown) => this.ctx.logger.error({ err, deliveryId: d.id }, 'could not record a delivery outcome'))
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

  /** Runs until nothing is due now (tests, bench). */
  async drain(): Promise<void> {
    while ((await this.runOnce()) > 0 || this.inFlight.size > 0) {
      await Promise.allSettled([...this.inFlight.values()]);
    }
  }

  private schedule(delayMs: number): void {
    clearTimeout(this.timer);
    this.timer = setTimeout(() => this.tick(), delayMs);
    this.timer.unref?.();
  }

  /**
   * One look at the queue. Synchronous and total: whatever the store throws
   * (SQLITE_BUSY, disk, closed) is logged and the next look is scheduled
   * anyway, so neither a dead worker nor an unhandled rejection can follow.
   */
  private tick(): void {
    if (!this.running) return;
    // On any error below, look again at the next poll rather than at once.
    let wait = this.pollMs;
    try {
      this.startDue();
      wait = this.nextWait();
    } catch (err) {
      // The store is unreachable (disk, lock): the deliveries stay queued.
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
  private nextWait(): number {
    // Every slot is busy: nothing could start anyway, and each attempt
    // schedules a look as soon as it frees its slot.
    if (this.inFlight.size >= this.concurrency) return this.pollMs;
    // In-flight rows are queued and overdue until their outcome is committed;
    // counting them would give a wait of 0 and a busy loop for the whole send.
    const next = this.ctx.store.outbox.nextDueMs(new Set(this.inFlight.keys()));
    return next === undefined ? this.pollMs : Math.max(0, Math.min(this.pollMs, next - this.ctx.now().getTime()));
  }

  private async attempt(delivery: Delivery): Promise<void> {
    const { ctx } = this;
    const channel = this.options.channels[delivery.channel];
    const base = { actor: null, incidentId: delivery.incidentId };
    const refs = { deliveryId: delivery.id, emailId: delivery.emailId ?? undefined, smsId: delivery.smsId ?? undefined, attempt: delivery.attempts + 1 };
    if (!channel || delivery.body === null) {
      // Grouped: one fsync for every outcome recorded in the same turn. The
      // delivery stays in flight (and queued on disk) until this resolves.
      await ctx.store.grouped(() => {
        ctx.store.outbox.markFailed(delivery.id, channel ? 'no body to send' : `no ${delivery.channel} channel configured`);
        ctx.store.audit.append({ ...base, type: `${delivery.channel}.delivery_failed`, outcome: 'failed', data: { ...refs, error: 'no channel or body' } });
      });
      return;
    }
    let receipt: SendReceipt;
    try {
      receipt = await channel.send({ id: delivery.id, envelope: delivery.envelope, body: delivery.body });
    } catch (err) {
      const failure = err instanceof DeliveryError ? err : new DeliveryError(`unexpected: ${err instanceof Error ? err.message : String(err)}`, true);
      const now = ctx.now().getTime();
      const wait = Math.max(backoffMs(delivery.attempts, this.baseBackoffMs, this.maxBackoffMs, this.random), (failure.retryAfter ?? 0) * 1000);
      const expired = now + wait - delivery.createdMs > ctx.config.deliveryMaxAge;
      const giveUp = !failure.transient || expired;
      const error = giveUp && failure.transient ? `gave up after RELAY_DELIVERY_MAX_AGE: ${failure.message}` : failure.message;
      await ctx.store.grouped(() => {
        if (giveUp) ctx.store.outbox.markFailed(delivery.id, error);
        else ctx.store.outbox.markRetry(delivery.id, error, new Date(now + wait));
        ctx.store.audit.append({
          ...base,
          type: giveUp ? `${delivery.channel}.delivery_failed` : `${delivery.channel}.delivery_retry`,
          outcome: giveUp ? 'failed' : 'retry',
          data: { ...refs, error, ...(giveUp ? {} : { retryInMs: wait }) },
        });
      });
      ctx.metrics.deliveries.inc({ channel: delivery.channel, outcome: giveUp ? 'failed' : 'retry' });
      ctx.logger.warn({ deliveryId: delivery.id, channel: delivery.channel, transient: failure.transient, giveUp }, 'delivery attempt failed');
      return;
    }
    // The upstream has it. Recording that is a separate step: if the store
    // cannot write now, this throws, the row stays queued and is sent again
    // later (at-least-once); it is never rewritten as a failed send.
    const splits = this.splitsFor(delivery, receipt.refused ?? []);
    await ctx.store.grouped(() => {
      // The copies first: markSent purges the body a retry copy needs.
      for (const split of splits) ctx.store.outbox.splitOff(delivery.id, split.row);
      ctx.store.outbox.markSent(delivery.id, receipt.id, receipt.at);
      ctx.store.audit.append({ ...base, type: `${delivery.channel}.delivered`, outcome: 'ok', data: { ...refs, providerId: receipt.id } });
      for (const split of splits) ctx.store.audit.append({ ...base, ...split.audit });
    });
    ctx.metrics.deliveries.inc({ channel: delivery.channel, outcome: 'sent' });
    for (const split of splits) {
      ctx.metrics.deliveries.inc({ channel: delivery.channel, outcome: split.row.status === 'queued' ? 'retry' : 'failed' });
      ctx.logger.warn({ deliveryId: delivery.id, splitId: split.row.id, channel: delivery.channel, recipients: split.row.to.length, status: split.row.status }, 'upstream refused some recipients');
    }
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
    const refs = { deliveryId: delivery.id, emailId: delivery.emailId ?? undefined, attempt: delivery.attempts + 1 };
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
