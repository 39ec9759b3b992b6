/**
 * Whether each delivery channel's upstream works, from the outcomes of real
 * sends. A failure that names an UpstreamProblem (a refused login, TLS, a
 * refused greeting, no connection…) makes the channel unhealthy until the
 * next success. The admin hears it once — one error line when a channel goes
 * bad, one info line when it recovers, never one per message — and sees it in
 * /healthz warnings and the relay_channel_healthy gauge. In memory: a restart
 * starts healthy and learns again from the first send.
 */
import type { Logger } from 'pino';
import type { Metrics } from '../metrics.js';
import { DeliveryError, type Channel, type OutgoingDelivery, type SendReceipt, type UpstreamProblem } from './channel.js';

/** A channel's current problem. */
export interface ChannelProblem {
  problem: UpstreamProblem;
  /** When the channel went bad (kept when the kind of problem changes while it stays bad). */
  since: Date;
  /** Failed attempts since then. */
  failures: number;
  /** The last failure's one-line error, as the channel wrote it (the channel keeps secrets out). */
  lastError: string;
  /** What the admin should check. */
  hint: string;
}

/** One entry of /healthz `warnings`: no upstream reply text, since /healthz needs no token. */
export interface HealthWarning {
  channel: string;
  problem: UpstreamProblem;
  /** ISO 8601. */
  since: string;
  failures: number;
  /** The hint: what failed and which setting to check. */
  message: string;
}

/** What ChannelHealth needs: where to log, the two metrics it drives, the clock. */
export interface ChannelHealthDeps {
  logger: Pick<Logger, 'error' | 'info'>;
  metrics: Pick<Metrics, 'upstreamFailures' | 'channelHealthy'>;
  now: () => Date;
}

/** Per-channel upstream health; `record` every send's outcome, read `warnings()`. */
export class ChannelHealth {
  private readonly problems = new Map<string, ChannelProblem>();

  constructor(private readonly deps: ChannelHealthDeps) {}

  /** Declares a channel in use: healthy (gauge 1) until a send says otherwise. */
  track(channel: string): void {
    if (!this.problems.has(channel)) this.deps.metrics.channelHealthy.set({ channel }, 1);
  }

  /**
   * Records one send's outcome. `ok` (the provider took the message, even for
   * only some recipients) clears a problem; a DeliveryError with a `problem`
   * sets or extends one; a DeliveryError without one (this message refused, a
   * 4xx deferral) says nothing about the upstream and changes nothing.
   */
  record(channel: string, outcome: 'ok' | DeliveryError): void {
    const { logger, metrics, now } = this.deps;
    const current = this.problems.get(channel);
    if (outcome === 'ok') {
      metrics.channelHealthy.set({ channel }, 1);
      if (!current) return;
      this.problems.delete(channel);
      logger.info(
        { channel, problem: current.problem, failures: current.failures, downSeconds: Math.round((now().getTime() - current.since.getTime()) / 1000) },
        `${channel} upstream recovered after ${current.failures} failed attempt(s); queued messages are going out`,
      );
      return;
    }
    const { problem, hint } = outcome;
    if (problem === undefined) return;
    metrics.upstreamFailures.inc({ channel, problem });
    const lastError = outcome.message.slice(0, 300);
    if (current && current.problem === problem) {
      current.failures += 1;
      current.lastError = lastError;
      return;
    }
    // Newly bad, or bad in a new way (the login now works, TLS does not): the admin needs the new hint.
    const next: ChannelProblem = { problem, since: current?.since ?? now(), failures: (current?.failures ?? 0) + 1, lastError, hint: hint ?? `${channel} upstream: ${problem}` };
    this.problems.set(channel, next);
    metrics.channelHealthy.set({ channel }, 0);
    logger.error({ channel, problem, lastError }, `${channel} upstream unhealthy: ${next.hint}. Queued messages are kept and retried with backoff until RELAY_DELIVERY_MAX_AGE.`);
  }

  /** The channel's current problem, if any. */
  current(channel: string): ChannelProblem | undefined {
    const problem = this.problems.get(channel);
    return problem ? { ...problem } : undefined;
  }

  /** One warning per unhealthy channel, for /healthz. */
  warnings(): HealthWarning[] {
    return [...this.problems.entries()].map(([channel, p]) => ({ channel, problem: p.problem, since: p.since.toISOString(), failures: p.failures, message: p.hint }));
  }
}

/**
 * Wraps a channel so the outcome of every send is recorded in `health` under
 * `name`; the delivery worker needs no change to feed it. Errors pass through
 * untouched.
 */
export function watchChannel(name: string, channel: Channel, health: ChannelHealth): Channel {
  health.track(name);
  return {
    async send(delivery: OutgoingDelivery): Promise<SendReceipt> {
      let receipt: SendReceipt;
      try {
        receipt = await channel.send(delivery);
      } catch (err) {
        if (err instanceof DeliveryError) health.record(name, err);
        throw err;
      }
      health.record(name, 'ok');
      return receipt;
    },
  };
}
