/**
 * The delivery worker: takes due deliveries from the durable outbox, hands
 * each to its channel, and records the outcome. Transient failures retry with
 * exponential backoff and jitter until RELAY_DELIVERY_MAX_AGE; permanent ones
 * fail. A delivery stays queued until its outcome is committed, so a crash
 * mid-send means it is sent again after restart (at-least-once, never lost).
 */
import type { RelayContext } from '../context.js';
import { DeliveryError, type Channel } from '../channels/channel.js';
import type { Delivery, DeliveryChannel } from '../store/outbox.js';

export interface DeliveryWorkerOptions {
  channels: Partial<Record<DeliveryChannel, Channel>>;
  /** Deliveries in flight at once. */
  concurrency?: number;
  /** Longest sleep between looks at the queue. */
  pollMs?: number;
  /** First retry delay; doubles each attempt up to maxBackoffMs. */
  baseBackoffMs?: number;
  maxBackoffMs?: number;
  /** Random in [0, 1); tests pin it. */
  random?: () => number;
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
    this.concurrency = options.concurrency ?? 8;
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
    const free = this.concurrency - this.inFlight.size;
    if (free <= 0) return 0;
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
    await Promise.all(started);
    return due.length;
  }

  /** Runs until nothing is due now (tests, bench). */
  async drain(): Promise<void> {
    while ((await this.runOnce()) > 0 || this.inFlight.size > 0) {
      await Promise.allSettled([...this.inFlight.values()]);
    }
  }

  private schedule(delayMs: number): void {
    clearTimeout(this.timer);
    this.timer = setTimeout(() => void this.tick(), delayMs);
    this.timer.unref?.();
  }

  private async tick(): Promise<void> {
    if (!this.running) return;
    try {
      this.runOnce().catch((err: unknown) => this.ctx.logger.error({ err }, 'delivery round failed; the deliveries stay queued'));
      for (const channel of ['email', 'sms'] as const) this.ctx.metrics.queueDepth.set({ channel }, this.ctx.store.outbox.queuedCount(channel));
    } catch (err) {
      // The store is unreachable (disk, lock): try again at the next poll.
      this.ctx.logger.error({ err }, 'delivery worker could not read the outbox');
    }
    const next = this.ctx.store.outbox.nextDueMs();
    const wait = next === undefined ? this.pollMs : Math.max(0, Math.min(this.pollMs, next - this.ctx.now().getTime()));
    if (this.running) this.schedule(wait);
  }

  private async attempt(delivery: Delivery): Promise<void> {
    const { ctx } = this;
    const channel = this.options.channels[delivery.channel];
    const base = { actor: null, incidentId: delivery.incidentId };
    const refs = { deliveryId: delivery.id, emailId: delivery.emailId ?? undefined, smsId: delivery.smsId ?? undefined, attempt: delivery.attempts + 1 };
    if (!channel || delivery.body === null) {
      ctx.store.transaction(() => {
        ctx.store.outbox.markFailed(delivery.id, channel ? 'no body to send' : `no ${delivery.channel} channel configured`);
        ctx.store.audit.append({ ...base, type: `${delivery.channel}.delivery_failed`, outcome: 'failed', data: { ...refs, error: 'no channel or body' } });
      });
      return;
    }
    try {
      const receipt = await channel.send({ id: delivery.id, envelope: delivery.envelope, body: delivery.body });
      ctx.store.transaction(() => {
        ctx.store.outbox.markSent(delivery.id, receipt.id, receipt.at);
        ctx.store.audit.append({ ...base, type: `${delivery.channel}.delivered`, outcome: 'ok', data: { ...refs, providerId: receipt.id } });
      });
      ctx.metrics.deliveries.inc({ channel: delivery.channel, outcome: 'sent' });
    } catch (err) {
      const failure = err instanceof DeliveryError ? err : new DeliveryError(`unexpected: ${err instanceof Error ? err.message : String(err)}`, true);
      const now = ctx.now().getTime();
      const wait = Math.max(backoffMs(delivery.attempts, this.baseBackoffMs, this.maxBackoffMs, this.random), (failure.retryAfter ?? 0) * 1000);
      const expired = now + wait - delivery.createdMs > ctx.config.deliveryMaxAge;
      const giveUp = !failure.transient || expired;
      const error = giveUp && failure.transient ? `gave up after RELAY_DELIVERY_MAX_AGE: ${failure.message}` : failure.message;
      ctx.store.transaction(() => {
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
    }
  }
}
