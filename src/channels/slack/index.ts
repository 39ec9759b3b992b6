/** The Slack room channel: wiring from the configuration, for main.ts and tests. */
import type { RelayContext } from '../../context.js';
import { createSlackClient } from './client.js';
import { SlackRoom, type SlackRoomOptions } from './room.js';

export { createSlackClient } from './client.js';
export { SlackRoom, TOPIC_PREFIX, channelName, type ReconcileResult, type SlackMemberStatus, type SlackRoomOptions } from './room.js';
export { startSlackWatchdog, type SlackWatchdog } from './watchdog.js';
export type { SlackQueueOptions } from './queue.js';

/**
 * When SLACK_BOT_TOKEN is set, builds the room over a client pointed at SLACK_API_URL and
 * hooks it into `ctx` (ctx.events, ctx.slack); returns undefined when Slack is off.
 */
export function attachSlackRoom(ctx: RelayContext, options: SlackRoomOptions = {}): SlackRoom | undefined {
  const token = ctx.config.slackBotToken;
  if (token === undefined) return undefined;
  const client = createSlackClient({ token, apiUrl: ctx.config.slackApiUrl }, ctx.logger);
  const room = new SlackRoom(ctx, client, options);
  ctx.events = room.events;
  ctx.slack = room;
  return room;
}
