/** Each incident's Slack room: channel id and name, and how far its setup got (SPEC §2 rule `chat`). */
import type { SqlExecutor } from './sql.js';

/** pending: being set up (or waiting for Slack); ready: in line with the roster; failed: see reason; archived: closed. */
export type SlackChannelState = 'pending' | 'ready' | 'failed' | 'archived';

/** One incident's room as stored. */
export interface SlackChannel {
  incidentId: string;
  channelId: string | null;
  name: string | null;
  state: SlackChannelState;
  /** Why the room is failed or pending: a Slack method and error code, never content. */
  reason: string | null;
  /** The pinned welcome message's ts, once posted. */
  welcomeTs: string | null;
  updatedAt: string;
}

/** Fields a save may change; those left out keep their stored values. */
export type SlackChannelChange = Partial<Pick<SlackChannel, 'channelId' | 'name' | 'reason' | 'welcomeTs'>> & { state: SlackChannelState };

interface Row {
  incident_id: string;
  channel_id: string | null;
  name: string | null;
  state: SlackChannelState;
  reason: string | null;
  welcome_ts: string | null;
  updated_at: string;
}

function toChannel(row: Row): SlackChannel {
  return {
    incidentId: row.incident_id,
    channelId: row.channel_id,
    name: row.name,
    state: row.state,
    reason: row.reason,
    welcomeTs: row.welcome_ts,
    updatedAt: row.updated_at,
  };
}

/** Storage for the slack_channels table. */
export class SlackChannelStore {
  constructor(private readonly sql: SqlExecutor) {}

  /** The incident's room, if one was ever started. */
  async get(incidentId: string): Promise<SlackChannel | undefined> {
    const row = await this.sql.get<Row>('SELECT * FROM slack_channels WHERE incident_id = ?', [incidentId]);
    return row ? toChannel(row) : undefined;
  }

  /** Inserts or updates the room; fields absent from `change` keep their values. */
  async save(incidentId: string, change: SlackChannelChange, at: Date): Promise<SlackChannel> {
    const before = await this.get(incidentId);
    const row: Row = {
      incident_id: incidentId,
      channel_id: change.channelId !== undefined ? change.channelId : (before?.channelId ?? null),
      name: change.name !== undefined ? change.name : (before?.name ?? null),
      state: change.state,
      reason: change.reason !== undefined ? change.reason : (before?.reason ?? null),
      welcome_ts: change.welcomeTs !== undefined ? change.welcomeTs : (before?.welcomeTs ?? null),
      updated_at: at.toISOString(),
    };
    await this.sql.run(
      `INSERT INTO slack_channels (incident_id, channel_id, name, state, reason, welcome_ts, updated_at)
       VALUES (?, ?, ?, ?, ?, ?, ?)
       ON CONFLICT (incident_id) DO UPDATE SET channel_id = excluded.channel_id, name = excluded.name, state = excluded.state,
         reason = excluded.reason, welcome_ts = excluded.welcome_ts, updated_at = excluded.updated_at`,
      [row.incident_id, row.channel_id, row.name, row.state, row.reason, row.welcome_ts, row.updated_at],
    );
    return toChannel(row);
  }

  /** Rooms of closed incidents that still have a channel not yet archived. */
  async unarchivedOfClosed(): Promise<SlackChannel[]> {
    const rows = await this.sql.all<Row>(
      `SELECT s.* FROM slack_channels s JOIN incidents i ON i.id = s.incident_id
       WHERE i.status = 'closed' AND s.channel_id IS NOT NULL AND s.state <> 'archived'`,
    );
    return rows.map(toChannel);
  }

  /** The removed roster member whose Slack user id is `slackUserId`, if any: whom a kick was for. */
  async formerMember(incidentId: string, slackUserId: string): Promise<string | undefined> {
    const row = await this.sql.get<{ email: string }>(
      "SELECT email FROM roster WHERE incident_id = ? AND slack_user_id = ? AND status = 'removed' ORDER BY updated_at DESC LIMIT 1",
      [incidentId, slackUserId],
    );
    return row?.email;
  }
}
