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
 *
 * What the room must do is decided by the pure planner in src/policy/chat.ts
 * (rules `chat` and `codename`); this module looks at Slack, asks the
 * planner, carries the plan out and audits each change.
 */
import type { WebClient } from '@slack/web-api';
import type { IncidentEvents, RelayContext } from '../../context.js';
import type { AuditOutcome } from '../../store/audit.js';
import type { Repositories } from '../../store/index.js';
import type { Incident, RosterMember } from '../../store/incidents.js';
import type { SlackChannelStore, SlackChannel, SlackChannelChange, SlackChannelState } from '../../store/slack.js';
import { MAX_NAME_ATTEMPTS, channelLoss, channelName, channelNameAttempt, planRoom, type ChatDecision, type ChatMember, type ChatPlan, type ObservedChannel } from '../../policy/chat.js';
import type { RuleOutcome } from '../../policy/decision.js';
import { loadTemplate } from '../../templates.js';
import { SlackCallError, SlackQueue, type SlackQueueOptions } from './queue.js';

export { TOPIC_PREFIX, channelName } from '../../policy/chat.js';

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
  /** The channel had been renamed in Slack and was renamed back to the room's name. */
  nameRestored: boolean;
  /** Roster emails with no Slack account. */
  notFound: string[];
  /** Invites or kicks Slack refused. A refused kick leaves the room failed: someone off the roster is still in it. */
  failed: Array<{ action: 'invite' | 'kick'; slackUserId: string; email: string | null; error: string }>;
  /** Rules `chat` and `codename` as this pass found the room (empty when it made no plan). */
  rules: RuleOutcome[];
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

const MAX_MEMBER_PAGES = 1000;
// Names tried per pass when renaming back: conversations.rename is Slack's tier 2
// (about 20 a minute), so a squatted name costs a few calls, not a rate limit.
const MAX_RENAME_TRIES = 5;

/** Corrections Slack refused this pass; the room stays failed until they go through. */
interface Refusals {
  kicks: ReconcileResult['failed'];
  rename?: { error: string; previousLength: number };
}

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
      incidentReopened: (incident) => this.hook('incidentReopened', incident, () => this.schedule(incident.id, () => this.exclusively(incident.id, () => this.reopenRoom(incident.id)))),
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

  /** Brings the open incident's room in line: look, plan (src/policy/chat.ts), carry out. Never throws for Slack failures. */
  private async ensureRoom(incidentId: string, actor: string | null, trigger: Trigger): Promise<ReconcileResult> {
    const incident = await this.ctx.store.incidents.byId(incidentId);
    const result = emptyResult(incident?.codename ?? '');
    if (!incident || incident.status !== 'open' || this.stopped) return withRoom(result, await this.channels.get(incidentId));
    let room = (await this.channels.get(incidentId)) ?? (await this.save(this.ctx.store, incidentId, { state: 'pending', reason: null }));
    try {
      const botId = await this.bot();
      let created = false;
      for (;;) {
        if (room.channelId === null) {
          room = await this.createChannel(incident, actor);
          created = true;
        }
        const channelId = room.channelId!;
        const channel = await this.observe(channelId, botId);
        const lost = channel === null || channelLoss(channel, botId) !== undefined;
        const decision = planRoom({
          codename: incident.codename,
          incidentStatus: incident.status,
          room: { name: room.name, state: room.state, welcomePosted: room.welcomeTs !== null },
          channel,
          created,
          botUserId: botId,
          roster: lost ? [] : await this.resolveRoster(incident),
          templates: { topic: loadTemplate('slack-topic'), welcome: loadTemplate('slack-welcome') },
          archiveOnClose: this.ctx.config.slackArchiveOnClose,
        });
        result.rules = decision.rules;
        const replace = decision.plan.replace;
        if (replace === undefined) {
          room = await this.carryOut(incident, room, channelId, channel!, decision, actor, trigger, result);
          break;
        }
        // A channel this very pass created is already unusable: something is wrong on Slack's side; do not loop.
        if (created) throw new SlackCallError('conversations.create', `new channel unusable (${replace})`, false);
        // The bot can no longer manage this channel (deleted, archived, made public, or the bot removed):
        // start a new private room rather than leave the incident without one.
        const previous = room;
        room = await this.ctx.store.transaction(async (tx) => {
          await this.audit(tx, 'slack.channel_lost', incidentId, actor, 'failed', { channelId: previous.channelId, error: replace, rules: decision.rules });
          return this.save(tx, incidentId, { channelId: null, name: null, welcomeTs: null, state: 'pending', reason: `channel lost: ${replace}` });
        });
      }
    } catch (err) {
      room = await this.failed(incidentId, room, actor, err);
    }
    return withRoom(result, room);
  }

  /**
   * Carries out the plan, in this order: kick (nobody off the roster reads on
   * while the rest is fixed), rename, topic, welcome, invites. A correction
   * Slack refuses for good is recorded and the rest still done; the room is
   * then failed until it goes through.
   */
  private async carryOut(
    incident: Incident,
    room: SlackChannel,
    channelId: string,
    observed: ObservedChannel,
    decision: ChatDecision,
    actor: string | null,
    trigger: Trigger,
    result: ReconcileResult,
  ): Promise<SlackChannel> {
    const { plan } = decision;
    const refusals: Refusals = { kicks: [] };
    await this.kick(incident, channelId, plan.kick, actor, trigger, result);
    refusals.kicks = result.failed.filter((f) => f.action === 'kick');
    if (plan.rename !== undefined) {
      const renamed = await this.restoreName(incident, room, channelId, plan.rename, observed.name.length, actor);
      if (typeof renamed === 'string') refusals.rename = { error: renamed, previousLength: observed.name.length };
      else {
        room = renamed;
        result.nameRestored = true;
      }
    }
    if (plan.setTopic !== undefined) {
      const topic = plan.setTopic;
      await this.call('conversations.setTopic', () => this.client.conversations.setTopic({ channel: channelId, topic }));
      if (plan.topicRestore) {
        // Length only: the edited topic may hold exactly what must not be repeated (rule `codename`).
        await this.audit(this.ctx.store, 'slack.topic_restored', incident.id, actor, 'corrected', { channelId, previousLength: observed.topic.length });
        result.topicRestored = true;
      }
    }
    if (plan.postWelcome !== undefined) {
      const text = plan.postWelcome;
      const posted = await this.call('chat.postMessage', () => this.client.chat.postMessage({ channel: channelId, text }));
      if (posted.ts === undefined) throw new SlackCallError('chat.postMessage', 'no_ts', false);
      room = await this.save(this.ctx.store, incident.id, { state: room.state, welcomeTs: posted.ts });
    }
    if (plan.pinWelcome) await this.pin(channelId, room.welcomeTs!);
    await this.invite(incident, channelId, plan, actor, trigger, result);

    // The decision that led to changes is audited with every rule's outcome, in the
    // transaction that records the room's new state (each change has its own event too).
    const changed = result.kicked.length > 0 || result.invited.length > 0 || result.nameRestored || result.topicRestored;
    const recordDecision = async (tx: Pick<Repositories, 'audit'>): Promise<void> => {
      if (changed && decision.rules.some((r) => r.result === 'fail')) {
        await this.audit(tx, 'slack.reconciled', incident.id, actor, trigger === 'sync' ? 'corrected' : 'ok', { channelId, rules: decision.rules });
      }
    };
    if (refusals.kicks.length > 0 || refusals.rename !== undefined) return this.refused(room, actor, refusals, recordDecision);
    return this.ctx.store.transaction(async (tx) => {
      await recordDecision(tx);
      return this.save(tx, incident.id, { state: 'ready', reason: null });
    });
  }

  /**
   * Renames the channel back to the room's name. When another channel has
   * taken that name meanwhile, the next suffixes are tried (as at creation:
   * never anything descriptive) and the name taken is stored. Answers the
   * updated room, or Slack's error code when it refused for good.
   */
  private async restoreName(incident: Incident, room: SlackChannel, channelId: string, wanted: string, previousLength: number, actor: string | null): Promise<SlackChannel | string> {
    const first = channelNameAttempt(incident.codename, wanted) ?? 1;
    const last = Math.min(MAX_NAME_ATTEMPTS, first + MAX_RENAME_TRIES - 1);
    for (let attempt = first; attempt <= last; attempt++) {
      const name = channelName(incident.codename, attempt);
      try {
        await this.call('conversations.rename', () => this.client.conversations.rename({ channel: channelId, name }));
      } catch (err) {
        if (err instanceof SlackCallError && err.code === 'name_taken') continue;
        if (err instanceof SlackCallError && !err.transient) return err.code;
        throw err;
      }
      return this.ctx.store.transaction(async (tx) => {
        // The length of the name it had, never the name: it may describe the incident (rule `codename`).
        await this.audit(tx, 'slack.name_restored', incident.id, actor, 'corrected', { channelId, name, previousLength });
        return this.save(tx, incident.id, { state: room.state, name });
      });
    }
    return 'name_taken';
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

  /** What Slack shows of the channel: null when it answers channel_not_found; members only read while the channel is still usable. */
  private async observe(channelId: string, botId: string): Promise<ObservedChannel | null> {
    let info;
    try {
      info = await this.call('conversations.info', () => this.client.conversations.info({ channel: channelId }));
    } catch (err) {
      // A private channel the bot is not in answers channel_not_found, exactly like a deleted one.
      if (err instanceof SlackCallError && err.code === 'channel_not_found') return null;
      throw err;
    }
    const channel: ObservedChannel = {
      name: info.channel?.name ?? '',
      topic: info.channel?.topic?.value ?? '',
      isPrivate: info.channel?.is_private !== false,
      archived: info.channel?.is_archived === true,
      members: null,
    };
    if (channelLoss(channel, botId) !== undefined) return channel;
    return { ...channel, members: await this.channelMembers(channelId) };
  }

  private async pin(channelId: string, ts: string): Promise<void> {
    try {
      await this.call('pins.add', () => this.client.pins.add({ channel: channelId, timestamp: ts }));
    } catch (err) {
      if (!(err instanceof SlackCallError && err.code === 'already_pinned')) throw err;
    }
  }

  /** Removes the planned members (not on the roster) from the channel; a refusal is recorded in result.failed. */
  private async kick(incident: Incident, channelId: string, kick: readonly string[], actor: string | null, trigger: Trigger, result: ReconcileResult): Promise<void> {
    for (const slackUserId of kick) {
      try {
        await this.call('conversations.kick', () => this.client.conversations.kick({ channel: channelId, user: slackUserId }));
      } catch (err) {
        if (err instanceof SlackCallError && err.code === 'not_in_channel') continue;
        if (err instanceof SlackCallError && !err.transient) {
          // Audited when the room's state changes, not on every pass.
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
  }

  /** Records who Slack does not know, confirms who is already in, and invites the missing. */
  private async invite(incident: Incident, channelId: string, plan: ChatPlan, actor: string | null, trigger: Trigger, result: ReconcileResult): Promise<void> {
    const roster = new Map((await this.ctx.store.incidents.roster(incident.id)).map((m) => [m.email, m]));
    for (const email of plan.notFound) {
      // Audited once per finding, not on every watchdog pass.
      await this.ctx.store.transaction(async (tx) => {
        if (roster.get(email)?.slackStatus !== 'not_found') await this.audit(tx, 'slack.user_not_found', incident.id, actor, 'failed', { email });
        await tx.incidents.setSlackStatus(incident.id, email, 'not_found');
      });
      result.notFound.push(email);
    }
    for (const { email, slackUserId } of plan.confirm) await this.ctx.store.incidents.setSlackStatus(incident.id, email, 'member', slackUserId);
    for (const { email, slackUserId } of plan.invite) {
      try {
        await this.call('conversations.invite', () => this.client.conversations.invite({ channel: channelId, users: slackUserId }));
      } catch (err) {
        if (err instanceof SlackCallError && err.code === 'already_in_channel') {
          // Joined between our look at the members and the invite: nothing was done, so nothing to audit.
          await this.ctx.store.incidents.setSlackStatus(incident.id, email, 'member', slackUserId);
          continue;
        }
        if (err instanceof SlackCallError && !err.transient) {
          const status: SlackMemberStatus = err.code === 'user_not_found' ? 'not_found' : 'invite_failed';
          await this.ctx.store.transaction(async (tx) => {
            if (roster.get(email)?.slackStatus !== status) await this.audit(tx, 'slack.invite_failed', incident.id, actor, 'failed', { channelId, slackUserId, email, error: err.code });
            await tx.incidents.setSlackStatus(incident.id, email, status);
          });
          if (status === 'not_found') result.notFound.push(email);
          result.failed.push({ action: 'invite', slackUserId, email, error: err.code });
          continue;
        }
        throw err;
      }
      await this.ctx.store.transaction(async (tx) => {
        await tx.incidents.setSlackStatus(incident.id, email, 'member', slackUserId);
        await this.audit(tx, 'slack.invited', incident.id, actor, trigger === 'sync' ? 'corrected' : 'ok', { channelId, slackUserId, email });
      });
      result.invited.push(slackUserId);
    }
  }

  /** The active roster with each member's Slack user id: the one on the roster, else looked up by email (and kept); null when Slack has none. */
  private async resolveRoster(incident: Incident): Promise<ChatMember[]> {
    const members: ChatMember[] = [];
    for (const member of await this.ctx.store.incidents.roster(incident.id)) {
      members.push({ email: member.email, slackUserId: await this.slackIdOf(incident, member), slackStatus: member.slackStatus });
    }
    return members;
  }

  /** The member's Slack user id: the one on the roster, else looked up by email (and kept); null when Slack does not know them. */
  private async slackIdOf(incident: Incident, member: RosterMember): Promise<string | null> {
    if (member.slackUserId !== null) return member.slackUserId;
    let found: string | undefined;
    try {
      const answer = await this.call('users.lookupByEmail', () => this.client.users.lookupByEmail({ email: member.email }));
      found = answer.user?.id;
    } catch (err) {
      if (!(err instanceof SlackCallError && err.code === 'users_not_found')) throw err;
    }
    if (found === undefined) return null;
    await this.ctx.store.incidents.setSlackStatus(incident.id, member.email, member.slackStatus ?? 'pending', found);
    return found;
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
    if (!incident || incident.status !== 'closed' || !room || this.stopped) return;
    const { plan } = planRoom({
      codename: incident.codename,
      incidentStatus: incident.status,
      room: { name: room.name, state: room.state, welcomePosted: room.welcomeTs !== null },
      channel: undefined,
      created: false,
      botUserId: '',
      roster: [],
      templates: { topic: loadTemplate('slack-topic'), welcome: loadTemplate('slack-welcome') },
      archiveOnClose: this.ctx.config.slackArchiveOnClose,
    });
    if (plan.archive !== true) return;
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

  /**
   * The incident was reopened: its room must come back. An archived channel
   * cannot be brought back by the bot (Slack refuses conversations.unarchive
   * to bot tokens, and the bot lost its access when it archived it), so a new
   * private room is made, named by the codename as always (with a suffix,
   * since the archived channel keeps the plain name); the archived one keeps
   * the history. A room that was never archived is simply reconciled.
   */
  private async reopenRoom(incidentId: string): Promise<ReconcileResult> {
    const room = await this.channels.get(incidentId);
    if (room?.state === 'archived') {
      await this.ctx.store.transaction(async (tx) => {
        if (room.channelId !== null) await this.audit(tx, 'slack.room_replaced', incidentId, null, 'ok', { previousChannelId: room.channelId, reason: 'incident_reopened' });
        return this.save(tx, incidentId, { channelId: null, name: null, welcomeTs: null, state: 'pending', reason: 'incident reopened: a new room replaces the archived one' });
      });
    }
    return this.ensureRoom(incidentId, null, 'event');
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

  /**
   * Someone off the roster could not be removed, or the name could not be
   * restored: the room is failed until that goes through; audited when the
   * reason changes, not on every pass.
   */
  private refused(room: SlackChannel, actor: string | null, refusals: Refusals, recordDecision: (tx: Pick<Repositories, 'audit'>) => Promise<void>): Promise<SlackChannel> {
    const parts: string[] = [];
    if (refusals.kicks.length > 0) parts.push(`conversations.kick: ${refusals.kicks.map((f) => `${f.error} (${f.slackUserId})`).join(', ')}`);
    if (refusals.rename !== undefined) parts.push(`conversations.rename: ${refusals.rename.error}`);
    const reason = parts.join('; ');
    this.ctx.logger.warn({ incidentId: room.incidentId, reason }, 'slack room: a correction was refused');
    return this.ctx.store.transaction(async (tx) => {
      await recordDecision(tx);
      if (room.state !== 'failed' || room.reason !== reason) {
        for (const f of refusals.kicks) await this.audit(tx, 'slack.kick_failed', room.incidentId, actor, 'failed', { channelId: room.channelId, slackUserId: f.slackUserId, error: f.error });
        if (refusals.rename !== undefined) await this.audit(tx, 'slack.rename_failed', room.incidentId, actor, 'failed', { channelId: room.channelId, error: refusals.rename.error, previousLength: refusals.rename.previousLength });
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
  return { codename, state: null, channelId: null, name: null, reason: null, kicked: [], invited: [], topicRestored: false, nameRestored: false, notFound: [], failed: [], rules: [] };
}

function withRoom(result: ReconcileResult, room: SlackChannel | undefined): ReconcileResult {
  return { ...result, state: room?.state ?? null, channelId: room?.channelId ?? null, name: room?.name ?? null, reason: room?.reason ?? null };
}
