/**
 * The on-demand reconciliation of an incident's Slack room (rule `chat`),
 * shared by POST /v1/incidents/:codename/slack/sync and the console's
 * "Sync now" button. The caller has been authorized (commander or admin).
 */
import type { ReconcileResult } from '../channels/slack/room.js';
import type { RelayContext } from '../context.js';
import { RelayError } from '../errors.js';
import type { Incident } from '../store/incidents.js';
import type { Caller } from './incidents.js';

/**
 * Reconciles the room now and reports what it did; `unavailable` when Slack
 * is off or would not let it finish (the watchdog tries again), and
 * `incident_closed` for a closed incident, whose room is no longer kept.
 */
export async function syncSlackRoom(ctx: Pick<RelayContext, 'slack' | 'config'>, caller: Caller, incident: Incident): Promise<ReconcileResult> {
  const room = ctx.slack;
  if (room === undefined) {
    throw new RelayError('unavailable', 'Slack is off on this relay: an admin sets SLACK_BOT_TOKEN to manage incident rooms (README, "Installing the Slack app").', {
      rule: 'chat',
      details: { slack: 'off' },
    });
  }
  if (incident.status !== 'open') {
    throw new RelayError('incident_closed', `${incident.codename} is closed; its room is no longer reconciled.`, { rule: 'incident-open' });
  }
  const result = await room.reconcile(incident, caller.email);
  if (result.state !== 'ready') {
    const retryAfter = Math.ceil(ctx.config.slackSyncInterval / 1000);
    throw new RelayError('unavailable', `Slack did not let the room be reconciled (${result.reason ?? 'unknown'}); the watchdog tries again within ${retryAfter}s.`, {
      rule: 'chat',
      details: { ...result },
      retryAfter,
    });
  }
  return result;
}
