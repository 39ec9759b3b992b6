/**
 * The incident's Slack room (SPEC §2 rule `chat`): a private channel named by
 * the codename, its topic `Attorney Work Project | <codename>`, a pinned
 * welcome, and members exactly the roster plus the relay's bot.
 *
 * The incident hooks only record `pending` and schedule work: nothing here is
 * awaited by the incident API, so a Slack outage delays the room but never an
 * answer. Work for one incident runs in order (setup before invites before
 * archive); every Slack call goes through the SlackQueue. Every trigger
 * (creation, roster change, watchdog, on-demand sync) runs the same
 * idempotent `ensureRoom`, so a failed step is simply retried by the next one.
 */
import type { WebClient } from '@slack/web-api';
import type { IncidentEvents, RelayContext } from '../../context.js';
import type { AuditOutcome } from '../../store/audit.js';
import type { Repositories } from '../../store/index.js';
import type { Incident, RosterMember } from '../../store/incidents.js';
import type { SlackChannelStore, SlackChannel, SlackChannelChange, SlackChannelState } from '../../store/slack.js';
import { loadTemplate, renderTemplate } from '../../templates.js';
import { SlackCallError, SlackQueue, type SlackQueueOptions } from './queue.js';

/** Every topic of an incident channel starts with this (rule `chat`). */
export const TOPIC_PREFIX = 'Attorney Work Project';

/** A roster member's standing in the room, shown as `slackStatus`. */
export type SlackMemberStatus = 'pending' | 'member' | 'not_found' | 'invite_failed' | 'removed';

/** What one reconciliation found and did; Slack user ids and roster emails only, never message text. */
export interface ReconcileResult {
  codename: string;
  state: SlackChannelState | null;
  channelId: string | null;
  name: string | null;
  reason: string | null;
  /** Slack user ids removed from the channel. */
  kicked: string[];
  /** Slack user ids added to the channel. */
  invited: string[];
  topicRestored: boolean;
  /** Roster emails with no Slack account. */
  notFound: string[];
  /** Invites or kicks Slack refused. A refused kick leaves the room failed: someone off the roster is still in it. */
  failed: Array<{ action: 'invite' | 'kick'; slackUserId: string; email: string | null; error: string }>;
}

/** Options for the room. */
export interface SlackRoomOptions {
  queue?: Partial<SlackQueueOptions>;
  /** How long a relay may work on one room before another may take over (default 5 minutes). */
  roomLeaseMs?: number;
  /** How long the on-demand sync waits for another relay working on the same room (default 15 s). */
  syncWaitMs?: number;
}

// Invites and kicks a roster change or the initial setup asks for are routine;
// the same actions found necessary by a reconciliation are corrections of drift.
type Trigger = 'event' | 'sync';

// Slack's channel-name limit; a suffix must fit inside it.
const MAX_CHANNEL_NAME = 80;
const MAX_NAME_ATTEMPTS = 50;
const MAX_MEMBER_PAGES = 1000;

/** The channel name for the n-th attempt: the codename, then codename-2, -3… (never anything descriptive). */
export function channelName(codename: string, attempt: number): string {
  if (attempt <= 1) return codename;
  const suffix = `-${attempt}`;
  return codename.slice(0, MAX_CHANNEL_NAME - suffix.length).replace(/-+$/, '') + suffix;
}

/** A channel we can no longer use as the room, and why. */
type ChannelCheck = { usable: true; topic: string } | { usable: false; why: string };

/** The Slack room manager: incident hooks, reconciliation, archive. */
export class SlackRoom {
  /** Hooks for RelayContext.events; they never throw and never wait for Slack. */
  readonly events: IncidentEvents;
  private readonly channels: SlackChannelStore;
  private readonly queue: SlackQueue;
  private readonly chains = new Map<string, Promise<void>>();
  private botUserId: string | undefined;
  private stopped = false;
  private readonly roomLeaseMs: number;
  private readonly syncWaitMs: number;

  constructor(
    private readonly ctx: RelayContext,
    private readonly client: WebClient,
    options: SlackRoomOptions = {},
  ) {
    this.channels = ctx.store.slackChannels;
    this.roomLeaseMs = options.roomLeaseMs ?? 5 * 60_000;
    this.syncWaitMs = options.syncWaitMs ?? 15_000;
    this.queue = new SlackQueue(options.queue, (retry) => ctx.logger.warn({ slack: retry }, 'slack call failed; retrying'));
    this.events = {
      incidentCreated: (incident) =>
        this.hook('incidentCreated', incident, () =>
          this.schedule(incident.id, async () => {
            await this.channels.save(incident.id, { state: 'pending', reason: null }, ctx.now());
            return this.exclusively(incident.id, () => this.ensureRoom(incident.id, null, 'event'));
          }),
        ),
      rosterChanged: (incident, member) => {
        // Marked now, not when the room's turn comes: the roster answer (which
        // awaits this) says the invite is under way rather than showing a stale
        // status, and room work already queued sees it too.
        const marking =
          this.stopped || member.status !== 'active' || incident.status !== 'open'
            ? Promise.resolve()
            : ctx.store.incidents
                .setSlackStatus(incident.id, member.email, 'pending')
                .catch((err: unknown) => ctx.logger.error({ err, incidentId: incident.id, hook: 'rosterChanged' }, 'slack room hook failed'));
        this.hook('rosterChanged', incident, () =>
          this.schedule(incident.id, async () => {
            await marking;
            return this.exclusively(incident.id, () => this.ensureRoom(incident.id, null, 'event'));
          }),
        );
        return marking;
      },
      incidentClosed: (incident) => this.hook('incidentClosed', incident, () => this.schedule(incident.id, () => this.exclusively(incident.id, () => this.archive(incident.id, null)))),
    };
  }

  /**
   * Reconciles the incident's room now (after any work already queued for it)
   * and reports what it did. When another relay is working on the same room,
   * waits for it (up to syncWaitMs) and then reconciles.
   */
  reconcile(incident: Incident, actor: string | null): Promise<ReconcileResult> {
    return this.enqueue(incident.id, async () => {
      const deadline = Date.now() + this.syncWaitMs;
      for (;;) {
        const result = await this.exclusively(incident.id, () => this.ensureRoom(incident.id, actor, 'sync'));
        if (result !== undefined) return result;
        if (Date.now() >= deadline || this.stopped) {
          const room = await this.channels.get(incident.id);
          return withRoom({ ...emptyResult(incident.codename), reason: 'another relay is reconciling this room; try again shortly' }, room && { ...room, state: 'pending' });
        }
        await new Promise((resolve) => setTimeout(resolve, 250));
      }
    });
  }

  /** One watchdog pass: reconcile every open incident, then archive rooms of closed ones that are still open. */
  async reconcileAll(): Promise<void> {
    for (const incident of await this.ctx.store.incidents.openIncidents()) {
      if (this.stopped) return;
      // A room another relay is working on right now is skipped this pass.
      await this.enqueue(incident.id, () => this.exclusively(incident.id, () => this.ensureRoom(incident.id, null, 'sync')));
    }
    if (!this.ctx.config.slackArchiveOnClose) return;
    for (const room of await this.channels.unarchivedOfClosed()) {
      if (this.stopped) return;
      await this.enqueue(room.incidentId, () => this.exclusively(room.incidentId, () => this.archive(room.incidentId, null)));
    }
  }

  /**
   * Runs `task` only while this relay holds the room's lease in the database,
   * so that several relays seeing the same incident never create its channel
   * twice or work on it at once. Undefined when another relay holds it.
   */
  private async exclusively<T>(incidentId: string, task: () => Promise<T>): Promise<T | undefined> {
    const name = `slack-room:${incidentId}`;
    const owner = this.ctx.replicaId;
    if (!(await this.ctx.store.leases.acquire(name, owner, this.ctx.now(), this.roomLeaseMs))) return undefined;
    try {
      return await task();
    } finally {
      await this.ctx.store.leases.release(name, owner).catch((err: unknown) => this.ctx.logger.warn({ err, incidentId }, 'could not release a slack room lease; it expires on its own'));
    }
  }

  /** Resolves when no room work is queued or running (tests and shutdown). */
  async idle(): Promise<void> {
    while (this.chains.size > 0) await Promise.all([...this.chains.values()]);
  }

  /** Stops taking work, fails queued Slack calls, and waits for the work in flight. */
  async stop(): Promise<void> {
    this.stopped = true;
    this.queue.stop();
    await this.idle();
  }

  // ---- scheduling ----

  private hook(name: string, incident: Incident, fn: () => void): void {
    // A hook runs after the incident change committed: failing here must not turn that success into a 500.
    try {
      if (!this.stopped) fn();
    } catch (err) {
      this.ctx.logger.error({ err, incidentId: incident.id, hook: name }, 'slack room hook failed');
    }
  }

  private schedule(incidentId: string, task: () => Promise<unknown>): void {
    void this.enqueue(incidentId, task).catch((err: unknown) => this.ctx.logger.error({ err, incidentId }, 'slack room task failed'));
  }

  private enqueue<T>(incidentId: string, task: () => Promise<T>): Promise<T> {
    const previous = this.chains.get(incidentId) ?? Promise.resolve();
    const result = previous.then(task);
    const settled = result.then(
      () => undefined,
      () => undefined,
    );
    this.chains.set(incidentId, settled);
    void settled.then(() => {
      if (this.chains.get(incidentId) === settled) this.chains.delete(incidentId);
    });
    return result;
  }

  // ---- the room ----

  /** Brings the open incident's room in line: channel, topic, welcome, members. Never throws for Slack failures. */
  private async ensureRoom(incidentId: string, actor: string | null, trigger: Trigger): Promise<ReconcileResult> {
    const incident = await this.ctx.store.incidents.byId(incidentId);
    const result = emptyResult(incident?.codename ?? '');
    if (!incident || incident.status !== 'open' || this.stopped) return withRoom(result, await this.channels.get(incidentId));
    let room = (await this.channels.get(incidentId)) ?? (await this.save(this.ctx.store, incidentId, { state: 'pending', reason: null }));
    try {
      const botId = await this.bot();
      let topic: string | undefined;
      if (room.channelId !== null) {
        const check = await this.checkChannel(room.channelId);
        if (check.usable) {
          topic = check.topic;
        } else {
          // The bot can no longer manage this channel (deleted, archived, made public, or the bot removed):
          // start a new private room rather than leave the incident without one.
          const lost = room;
          room = await this.ctx.store.transaction(async (tx) => {
            await this.audit(tx, 'slack.channel_lost', incidentId, actor, 'failed', { channelId: lost.channelId, error: check.why });
            return this.save(tx, incidentId, { channelId: null, name: null, welcomeTs: null, state: 'pending', reason: `channel lost: ${check.why}` });
          });
        }
      }
      if (room.channelId === null) room = await this.createChannel(incident, actor);
      const channelId = room.channelId!;
      if (topic === undefined || !topic.startsWith(TOPIC_PREFIX)) {
        await this.call('conversations.setTopic', () => this.client.conversations.setTopic({ channel: channelId, topic: renderTemplate(loadTemplate('slack-topic'), { codename: incident.codename }) }));
        if (topic !== undefined) {
          // Length only: the edited topic may hold exactly what must not be repeated (rule `codename`).
          await this.audit(this.ctx.store, 'slack.topic_restored', incidentId, actor, 'corrected', { channelId, previousLength: topic.length });
          result.topicRestored = true;
        }
      }
      if (room.welcomeTs === null) {
        const posted = await this.call('chat.postMessage', () => this.client.chat.postMessage({ channel: channelId, text: renderTemplate(loadTemplate('slack-welcome'), { codename: incident.codename }) }));
        if (posted.ts === undefined) throw new SlackCallError('chat.postMessage', 'no_ts', false);
        room = await this.save(this.ctx.store, incidentId, { state: room.state, welcomeTs: posted.ts });
      }
      if (room.state !== 'ready') await this.pin(channelId, room.welcomeTs!);
      await this.syncMembers(incident, channelId, botId, actor, trigger, result);
      const refused = result.failed.filter((f) => f.action === 'kick');
      room = refused.length === 0 ? await this.save(this.ctx.store, incidentId, { state: 'ready', reason: null }) : await this.kickRefused(room, actor, refused);
    } catch (err) {
      room = await this.failed(incidentId, room, actor, err);
    }
    return withRoom(result, room);
  }

  private async createChannel(incident: Incident, actor: string | null): Promise<SlackChannel> {
    for (let attempt = 1; attempt <= MAX_NAME_ATTEMPTS; attempt++) {
      const name = channelName(incident.codename, attempt);
      let created;
      try {
        created = await this.call('conversations.create', () => this.client.conversations.create({ name, is_private: true }));
      } catch (err) {
        // Someone else's channel (or an earlier incident's) has the name: take the next suffix.
        if (err instanceof SlackCallError && err.code === 'name_taken') continue;
        throw err;
      }
      const channelId = created.channel?.id;
      if (channelId === undefined) throw new SlackCallError('conversations.create', 'no_channel_id', false);
      if (created.channel?.is_private === false) throw new SlackCallError('conversations.create', 'channel_not_private', false);
      const createdName = created.channel?.name ?? name;
      return this.ctx.store.transaction(async (tx) => {
        await this.audit(tx, 'slack.channel_created', incident.id, actor, 'ok', { channelId, name: createdName });
        return this.save(tx, incident.id, { channelId, name: createdName, welcomeTs: null, state: 'pending', reason: null });
      });
    }
    throw new SlackCallError('conversations.create', 'name_taken', false);
  }

  private async checkChannel(channelId: string): Promise<ChannelCheck> {
    let info;
    try {
      info = await this.call('conversations.info', () => this.client.conversations.info({ channel: channelId }));
    } catch (err) {
      // A private channel the bot is not in answers channel_not_found, exactly like a deleted one.
      if (err instanceof SlackCallError && err.code === 'channel_not_found') return { usable: false, why: 'channel_not_found' };
      throw err;
    }
    if (info.channel?.is_archived === true) return { usable: false, why: 'is_archived' };
    if (info.channel?.is_private === false) return { usable: false, why: 'not_private' };
    return { usable: true, topic: info.channel?.topic?.value ?? '' };
  }

  private async pin(channelId: string, ts: string): Promise<void> {
    try {
      await this.call('pins.add', () => this.client.pins.add({ channel: channelId, timestamp: ts }));
    } catch (err) {
      if (!(err instanceof SlackCallError && err.code === 'already_pinned')) throw err;
    }
  }

  /** Members := roster + bot: kick the rest, invite the missing. */
  private async syncMembers(incident: Incident, channelId: string, botId: string, actor: string | null, trigger: Trigger, result: ReconcileResult): Promise<void> {
    const wanted = new Map<string, RosterMember>();
    for (const member of await this.ctx.store.incidents.roster(incident.id)) {
      const slackUserId = await this.slackIdOf(incident, member, actor, result);
      if (slackUserId !== undefined && slackUserId !== botId) wanted.set(slackUserId, member);
    }
    const present = await this.channelMembers(channelId);

    for (const slackUserId of present) {
      // The bot is never kicked: it would lose the room it is meant to keep.
      if (slackUserId === botId || wanted.has(slackUserId)) continue;
      try {
        await this.call('conversations.kick', () => this.client.conversations.kick({ channel: channelId, user: slackUserId }));
      } catch (err) {
        if (err instanceof SlackCallError && err.code === 'not_in_channel') continue;
        if (err instanceof SlackCallError && !err.transient) {
          // Audited by ensureRoom when the room's state changes, not on every pass.
          result.failed.push({ action: 'kick', slackUserId, email: null, error: err.code });
          continue;
        }
        throw err;
      }
      const former = await this.channels.formerMember(incident.id, slackUserId);
      await this.ctx.store.transaction(async (tx) => {
        if (former !== undefined) await tx.incidents.setSlackStatus(incident.id, former, 'removed');
        // Kicking a member just removed from the roster is routine; anybody else in the room is drift.
        const outcome: AuditOutcome = trigger === 'event' && former !== undefined ? 'ok' : 'corrected';
        await this.audit(tx, 'slack.kicked', incident.id, actor, outcome, { channelId, slackUserId, email: former ?? null });
      });
      result.kicked.push(slackUserId);
    }

    for (const [slackUserId, member] of wanted) {
      if (present.has(slackUserId)) {
        if (member.slackStatus !== 'member') await this.ctx.store.incidents.setSlackStatus(incident.id, member.email, 'member', slackUserId);
        continue;
      }
      try {
        await this.call('conversations.invite', () => this.client.conversations.invite({ channel: channelId, users: slackUserId }));
      } catch (err) {
        if (err instanceof SlackCallError && err.code === 'already_in_channel') {
          // Joined between our look at the members and the invite: nothing was done, so nothing to audit.
          await this.ctx.store.incidents.setSlackStatus(incident.id, member.email, 'member', slackUserId);
          continue;
        }
        if (err instanceof SlackCallError && !err.transient) {
          const status: SlackMemberStatus = err.code === 'user_not_found' ? 'not_found' : 'invite_failed';
          await this.ctx.store.transaction(async (tx) => {
            if (member.slackStatus !== status) await this.audit(tx, 'slack.invite_failed', incident.id, actor, 'failed', { channelId, slackUserId, email: member.email, error: err.code });
            await tx.incidents.setSlackStatus(incident.id, member.email, status);
          });
          if (status === 'not_found') result.notFound.push(member.email);
          result.failed.push({ action: 'invite', slackUserId, email: member.email, error: err.code });
          continue;
        }
        throw err;
      }
      await this.ctx.store.transaction(async (tx) => {
        await tx.incidents.setSlackStatus(incident.id, member.email, 'member', slackUserId);
        await this.audit(tx, 'slack.invited', incident.id, actor, trigger === 'sync' ? 'corrected' : 'ok', { channelId, slackUserId, email: member.email });
      });
      result.invited.push(slackUserId);
    }
  }

  /** The member's Slack user id: the one on the roster, else looked up by email (and kept). Not found is recorded. */
  private async slackIdOf(incident: Incident, member: RosterMember, actor: string | null, result: ReconcileResult): Promise<string | undefined> {
    if (member.slackUserId !== null) return member.slackUserId;
    let found: string | undefined;
    try {
      const answer = await this.call('users.lookupByEmail', () => this.client.users.lookupByEmail({ email: member.email }));
      found = answer.user?.id;
    } catch (err) {
      if (!(err instanceof SlackCallError && err.code === 'users_not_found')) throw err;
    }
    if (found !== undefined) {
      await this.ctx.store.incidents.setSlackStatus(incident.id, member.email, member.slackStatus ?? 'pending', found);
      return found;
    }
    // Audited once per finding, not on every watchdog pass.
    await this.ctx.store.transaction(async (tx) => {
      if (member.slackStatus !== 'not_found') await this.audit(tx, 'slack.user_not_found', incident.id, actor, 'failed', { email: member.email });
      await tx.incidents.setSlackStatus(incident.id, member.email, 'not_found');
    });
    result.notFound.push(member.email);
    return undefined;
  }

  private async channelMembers(channelId: string): Promise<Set<string>> {
    const members = new Set<string>();
    let cursor: string | undefined;
    for (let page = 0; page < MAX_MEMBER_PAGES; page++) {
      const answer = await this.call('conversations.members', () =>
        this.client.conversations.members({ channel: channelId, limit: 200, ...(cursor !== undefined ? { cursor } : {}) }),
      );
      for (const id of answer.members ?? []) members.add(id);
      const next = answer.response_metadata?.next_cursor;
      if (next === undefined || next === '') return members;
      cursor = next;
    }
    throw new SlackCallError('conversations.members', 'too_many_pages', false);
  }

  /** Archives the closed incident's channel when RELAY_SLACK_ARCHIVE_ON_CLOSE is true. */
  private async archive(incidentId: string, actor: string | null): Promise<void> {
    const incident = await this.ctx.store.incidents.byId(incidentId);
    const room = await this.channels.get(incidentId);
    if (!incident || incident.status !== 'closed' || !room || room.state === 'archived' || !this.ctx.config.slackArchiveOnClose || this.stopped) return;
    if (room.channelId === null) {
      // Setup never got as far as a channel; there is nothing left to close.
      await this.save(this.ctx.store, incidentId, { state: 'archived', reason: null });
      return;
    }
    const channelId = room.channelId;
    try {
      await this.call('conversations.archive', () => this.client.conversations.archive({ channel: channelId }));
    } catch (err) {
      if (!(err instanceof SlackCallError && err.code === 'already_archived')) {
        await this.failed(incidentId, room, actor, err);
        return;
      }
    }
    await this.ctx.store.transaction(async (tx) => {
      await this.audit(tx, 'slack.archived', incidentId, actor, 'ok', { channelId });
      await this.save(tx, incidentId, { state: 'archived', reason: null });
    });
  }

  // ---- helpers ----

  private async bot(): Promise<string> {
    if (this.botUserId !== undefined) return this.botUserId;
    const answer = await this.call('auth.test', () => this.client.auth.test());
    if (answer.user_id === undefined) throw new SlackCallError('auth.test', 'no_user_id', false);
    this.botUserId = answer.user_id;
    return answer.user_id;
  }

  private call<T>(method: string, fn: () => Promise<T>): Promise<T> {
    return this.queue.run(method, fn);
  }

  private save(repos: Pick<Repositories, 'slackChannels'>, incidentId: string, change: SlackChannelChange): Promise<SlackChannel> {
    return repos.slackChannels.save(incidentId, change, this.ctx.now());
  }

  private async audit(repos: Pick<Repositories, 'audit'>, type: string, incidentId: string, actor: string | null, outcome: AuditOutcome, data: Record<string, unknown>): Promise<void> {
    await repos.audit.append({ type, actor, incidentId, outcome, data });
  }

  /** Someone off the roster could not be removed: the room is failed until they are; audited when that changes. */
  private kickRefused(room: SlackChannel, actor: string | null, refused: ReconcileResult['failed']): Promise<SlackChannel> {
    const reason = `conversations.kick: ${refused.map((f) => `${f.error} (${f.slackUserId})`).join(', ')}`;
    this.ctx.logger.warn({ incidentId: room.incidentId, reason }, 'slack room: a non-roster member could not be removed');
    return this.ctx.store.transaction(async (tx) => {
      if (room.state !== 'failed' || room.reason !== reason) {
        for (const f of refused) await this.audit(tx, 'slack.kick_failed', room.incidentId, actor, 'failed', { channelId: room.channelId, slackUserId: f.slackUserId, error: f.error });
      }
      return this.save(tx, room.incidentId, { state: 'failed', reason });
    });
  }

  /** Records the room as failed with a reason (Slack method and error code); audited when the state or reason changes. */
  private async failed(incidentId: string, room: SlackChannel, actor: string | null, err: unknown): Promise<SlackChannel> {
    // Shutting down is not a failure: the room stays pending and the next start picks it up.
    if (this.stopped && err instanceof SlackCallError && err.code === 'stopped') return room;
    if (!(err instanceof SlackCallError)) this.ctx.logger.error({ err, incidentId }, 'slack room: unexpected error');
    const reason = err instanceof SlackCallError ? err.message : 'unexpected error; see the relay log';
    this.ctx.logger.warn({ incidentId, reason }, 'slack room failed');
    return this.ctx.store.transaction(async (tx) => {
      if (room.state !== 'failed' || room.reason !== reason) await this.audit(tx, 'slack.failed', incidentId, actor, 'failed', { channelId: room.channelId, error: reason });
      return this.save(tx, incidentId, { state: 'failed', reason });
    });
  }
}

function emptyResult(codename: string): ReconcileResult {
  return { codename, state: null, channelId: null, name: null, reason: null, kicked: [], invited: [], topicRestored: false, notFound: [], failed: [] };
}

function withRoom(result: ReconcileResult, room: SlackChannel | undefined): ReconcileResult {
  return { ...result, state: room?.state ?? null, channelId: room?.channelId ?? null, name: room?.name ?? null, reason: room?.reason ?? null };
}
