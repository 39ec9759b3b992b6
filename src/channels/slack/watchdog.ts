/**
 * The Slack watchdog: every RELAY_SLACK_SYNC_INTERVAL it reconciles each open
 * incident's room (kicks non-roster members, restores the topic, re-invites
 * the missing, retries a failed setup) and archives rooms of closed incidents.
 */
import type { Logger } from 'pino';
import type { SlackRoom } from './room.js';

/** A running watchdog. */
export interface SlackWatchdog {
  /** Stops scheduling passes and waits for the one in progress. */
  stop(): Promise<void>;
}

/** Starts the watchdog: one pass `intervalMs` after the previous one ended, so passes never overlap. */
export function startSlackWatchdog(room: SlackRoom, intervalMs: number, logger: Logger): SlackWatchdog {
  let timer: NodeJS.Timeout | undefined;
  let running: Promise<void> | undefined;
  let stopped = false;

  const pass = async (): Promise<void> => {
    try {
      await room.reconcileAll();
    } catch (err) {
      // reconcileAll records Slack failures itself; this is a bug, and the next pass still runs.
      logger.error({ err }, 'slack watchdog pass failed');
    }
  };
  const schedule = (): void => {
    if (stopped) return;
    timer = setTimeout(() => {
      running = pass().finally(() => {
        running = undefined;
        schedule();
      });
    }, intervalMs);
    // The watchdog alone must not keep the process alive.
    timer.unref();
  };
  schedule();

  return {
    async stop() {
      stopped = true;
      if (timer !== undefined) clearTimeout(timer);
      await running;
    },
  };
}
