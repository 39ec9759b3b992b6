/**
 * The Slack watchdog: every RELAY_SLACK_SYNC_INTERVAL it reconciles each open
 * incident's room (kicks non-roster members, renames the channel back and
 * restores the exact topic, re-invites the missing, retries a failed setup)
 * and archives rooms of closed incidents; what to do is src/policy/chat.ts's plan.
 * With several relays on one database it runs on one of them at a time.
 */
import { startPeriodic, type Periodic, type PeriodicDeps } from '../../workers/periodic.js';
import type { SlackRoom } from './room.js';

/** A running watchdog. */
export type SlackWatchdog = Pick<Periodic, 'stop' | 'runNow'>;

/** Starts the watchdog: one pass `intervalMs` after the previous one ended, on the relay holding the `slack-watchdog` lease. */
export function startSlackWatchdog(room: SlackRoom, intervalMs: number, deps: PeriodicDeps): SlackWatchdog {
  return startPeriodic(deps, 'slack-watchdog', intervalMs, () => room.reconcileAll());
}
