/**
 * Periodic work that must run on one relay at a time (the Slack watchdog,
 * purges, audit checkpoints). Each pass first takes (or renews) a named lease
 * in the database; a relay that does not get it skips the pass. When the
 * holder dies its lease expires and the next relay to look takes over. Passes
 * never overlap on one relay: the next is scheduled when the last has ended.
 */
import type { Logger } from 'pino';
import type { LeaseStore } from '../store/leases.js';

/** What a periodic job needs: the leases, who we are, the clock, and where to log. */
export interface PeriodicDeps {
  leases: Pick<LeaseStore, 'acquire' | 'release'>;
  replicaId: string;
  now: () => Date;
  logger: Logger;
}

/** A running periodic job. */
export interface Periodic {
  /** Runs one pass now if this relay gets the lease; true when it ran. */
  runNow(): Promise<boolean>;
  /** Stops scheduling, waits for the pass in progress, and gives the lease up. */
  stop(): Promise<void>;
}

/** Starts `task` every `intervalMs` (first pass after one interval) under lease `name`. */
export function startPeriodic(deps: PeriodicDeps, name: string, intervalMs: number, task: () => Promise<void>): Periodic {
  // Held across passes: long enough that a slow pass does not lose it, short
  // enough that a dead relay's work is taken over within a few intervals.
  const ttlMs = Math.max(3 * intervalMs, 30_000);
  let timer: NodeJS.Timeout | undefined;
  let running: Promise<boolean> | undefined;
  let stopped = false;

  const pass = async (): Promise<boolean> => {
    try {
      if (!(await deps.leases.acquire(name, deps.replicaId, deps.now(), ttlMs))) return false;
      await task();
      return true;
    } catch (err) {
      // The task records its own failures; this is a bug or a store outage, and the next pass still runs.
      deps.logger.error({ err, job: name }, 'periodic job failed');
      return false;
    }
  };
  const runNow = (): Promise<boolean> => {
    running ??= pass().finally(() => {
      running = undefined;
    });
    return running;
  };
  const schedule = (): void => {
    if (stopped) return;
    timer = setTimeout(() => {
      void runNow().finally(schedule);
    }, intervalMs);
    // A periodic job alone must not keep the process alive.
    timer.unref();
  };
  schedule();

  return {
    runNow,
    async stop() {
      stopped = true;
      if (timer !== undefined) clearTimeout(timer);
      await running;
      await deps.leases.release(name, deps.replicaId).catch(() => undefined);
    },
  };
}
