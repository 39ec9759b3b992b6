/** On-demand reconciliation of an incident's Slack room (SPEC §4, rule `chat`). */
import { Router } from 'express';
import type { RelayContext } from '../../context.js';
import { COMMANDERS, authorizeIncident } from '../../services/incidents.js';
import { syncSlackRoom } from '../../services/slack.js';
import { callerOf, param } from '../auth.js';
import { methodNotAllowed } from '../errors.js';

/** The room as the incident answer shows it: null when the incident never had one. */
export async function slackRoomView(
  ctx: Pick<RelayContext, 'store'>,
  incidentId: string,
): Promise<{ state: string; channelId: string | null; name: string | null; reason: string | null } | null> {
  const room = await ctx.store.slackChannels.get(incidentId);
  return room ? { state: room.state, channelId: room.channelId, name: room.name, reason: room.reason } : null;
}

/** POST /v1/incidents/:codename/slack/sync — commander or admin. */
export function slackRoutes(ctx: RelayContext): Router {
  const router = Router();

  router
    .route('/v1/incidents/:codename/slack/sync')
    .post(async (req, res) => {
      const caller = callerOf(res);
      // Authorize first, so a non-member learns nothing, not even whether Slack is on.
      const { incident } = await authorizeIncident(ctx, caller, param(req, 'codename'), COMMANDERS);
      const result = await syncSlackRoom(ctx, caller, incident);
      res.json(result);
    })
    .all(methodNotAllowed);

  return router;
}
