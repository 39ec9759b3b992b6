/**
 * The Slack room's decisions (SPEC §2, rules `chat` and `codename`) as a pure
 * plan: values in — the roster with Slack user ids, what Slack shows of the
 * channel, the incident and the fixed templates — and out comes what the room
 * must do (replace, rename, set the topic, post and pin the welcome, kick,
 * invite, archive) with each rule's outcome computed from what was observed.
 * No I/O: src/channels/slack/room.ts looks, asks this module, and carries the
 * plan out, like Haraka's core acting on a plugin's result.
 */
import { renderTemplate } from '../templates.js';
import { fail, pass, skip, type RuleOutcome } from './decision.js';

/** Every topic of an incident channel starts with this (rule `chat`); the codename rule asks for the whole template. */
export const TOPIC_PREFIX = 'Attorney Work Project';

// Slack's channel-name limit; a suffix must fit inside it.
const MAX_CHANNEL_NAME = 80;

/** How many names (codename, codename-2, …) the room tries when creating its channel. */
export const MAX_NAME_ATTEMPTS = 50;

/** The channel name for the n-th attempt: the codename, then codename-2, -3… (never anything descriptive). */
export function channelName(codename: string, attempt: number): string {
  if (attempt <= 1) return codename;
  const suffix = `-${attempt}`;
  return codename.slice(0, MAX_CHANNEL_NAME - suffix.length).replace(/-+$/, '') + suffix;
}

/** The attempt n with channelName(codename, n) === name, or undefined when the name is not one the room could have taken. */
export function channelNameAttempt(codename: string, name: string): number | undefined {
  for (let attempt = 1; attempt <= MAX_NAME_ATTEMPTS; attempt++) if (channelName(codename, attempt) === name) return attempt;
  return undefined;
}

/** Why the channel can no longer be the room: the bot cannot see it (deleted, or the bot removed), it was archived, or made public. */
export type ChannelLoss = 'channel_not_found' | 'is_archived' | 'not_private' | 'bot_not_member';

/** What Slack showed of the channel (conversations.info and conversations.members). */
export interface ObservedChannel {
  name: string;
  topic: string;
  isPrivate: boolean;
  archived: boolean;
  /** Every member's Slack user id; null when not read because the channel is lost anyway. */
  members: ReadonlySet<string> | null;
}

/** One active roster member as the room sees them. */
export interface ChatMember {
  email: string;
  /** Their Slack user id (from the roster or users.lookupByEmail); null when Slack has no such user. */
  slackUserId: string | null;
  /** The slackStatus the roster shows now. */
  slackStatus: string | null;
}

/** Everything the plan is made from. */
export interface ChatPlanInput {
  codename: string;
  incidentStatus: 'open' | 'closed';
  /** The room as the relay stored it: the name it created the channel under, how far setup got. */
  room: { name: string | null; state: 'pending' | 'ready' | 'failed' | 'archived'; welcomePosted: boolean };
  /** What Slack showed; null when it answered channel_not_found; undefined when not looked at (a closed incident). */
  channel: ObservedChannel | null | undefined;
  /** True when this pass created the channel: its empty topic and missing members are setup, not drift. */
  created: boolean;
  /** The relay's own Slack user (auth.test): never kicked, never invited. */
  botUserId: string;
  roster: readonly ChatMember[];
  /** templates/slack-topic.txt and templates/slack-welcome.txt as the files hold them. */
  templates: { topic: string; welcome: string };
  /** RELAY_SLACK_ARCHIVE_ON_CLOSE. */
  archiveOnClose: boolean;
}

/** A roster member and the Slack user they are. */
export interface ChatInvite {
  email: string;
  slackUserId: string;
}

/** What the room does, in the order room.ts carries it out. Empty lists and absent fields mean nothing to do. */
export interface ChatPlan {
  /** The channel is lost: a new private channel replaces it, and the room is planned again there. Nothing else is done. */
  replace?: ChannelLoss;
  /** Members who are not on the roster, by Slack user id: kicked first, so nobody reads on while the rest is fixed. */
  kick: string[];
  /** The name to rename the channel back to: the one the room created it under. */
  rename?: string;
  /** The exact topic to set. */
  setTopic?: string;
  /** True when setTopic restores a topic someone changed (audited), false when it is the new channel's first. */
  topicRestore: boolean;
  /** The welcome to post: the room has none yet. */
  postWelcome?: string;
  /** Pin the welcome (again: already_pinned is fine) because setup has not finished. */
  pinWelcome: boolean;
  /** Roster members missing from the channel. */
  invite: ChatInvite[];
  /** Roster members already in the channel whose slackStatus does not say so yet. */
  confirm: ChatInvite[];
  /** Roster emails Slack has no user for. */
  notFound: string[];
  /** The incident is closed and the room is to be archived. */
  archive?: true;
}

/** The plan and the outcome of rules `chat` and `codename`, each computed from what was observed. */
export interface ChatDecision {
  rules: RuleOutcome[];
  plan: ChatPlan;
}

/** The loss of an observed channel, or undefined while it can still be the room. */
export function channelLoss(channel: ObservedChannel | null, botUserId: string): ChannelLoss | undefined {
  if (channel === null) return 'channel_not_found';
  if (channel.archived) return 'is_archived';
  if (!channel.isPrivate) return 'not_private';
  if (channel.members !== null && !channel.members.has(botUserId)) return 'bot_not_member';
  return undefined;
}

const LOSS_TEXT: Readonly<Record<ChannelLoss, string>> = {
  channel_not_found: 'cannot be seen (deleted, or the bot removed from it)',
  is_archived: 'was archived',
  not_private: 'was made public',
  bot_not_member: 'no longer has the bot as a member',
};

/**
 * The name the room's channel must have: the one it was created under (a
 * `-2` it had to take is kept), or the bare codename when what was stored is
 * not one of the room's names.
 */
export function expectedChannelName(codename: string, stored: string | null): string {
  return stored !== null && channelNameAttempt(codename, stored) !== undefined ? stored : channelName(codename, 1);
}

const NOTHING: ChatPlan = { kick: [], topicRestore: false, pinWelcome: false, invite: [], confirm: [], notFound: [] };

/** Plans one pass over the incident's room. Pure: the same input always gives the same plan. */
export function planRoom(input: ChatPlanInput): ChatDecision {
  if (input.incidentStatus === 'closed') {
    const archive = input.archiveOnClose && input.room.state !== 'archived';
    return {
      rules: [
        skip('chat', input.archiveOnClose ? `incident closed: the room is ${archive ? 'archived now' : 'archived'}` : 'incident closed: RELAY_SLACK_ARCHIVE_ON_CLOSE=false leaves the room as it is'),
        skip('codename', 'incident closed: the room is no longer reconciled'),
      ],
      plan: archive ? { ...NOTHING, archive: true } : { ...NOTHING },
    };
  }
  const channel = input.channel;
  if (channel === undefined) {
    return { rules: [skip('chat', 'the channel was not looked at'), skip('codename', 'the channel was not looked at')], plan: { ...NOTHING } };
  }
  const loss = channelLoss(channel, input.botUserId);
  if (channel === null || loss !== undefined) {
    const why = loss ?? 'channel_not_found';
    return {
      rules: [fail('chat', `the channel ${LOSS_TEXT[why]}: a new private channel replaces it`), skip('codename', 'the channel is being replaced; the new one is checked next')],
      plan: { ...NOTHING, replace: why },
    };
  }
  const observed = channel;

  // Who belongs: each roster member Slack knows, once, and never the bot (it is always there).
  const wanted = new Map<string, ChatInvite>();
  const notFound: string[] = [];
  for (const member of input.roster) {
    if (member.slackUserId === null) notFound.push(member.email);
    else if (member.slackUserId !== input.botUserId && !wanted.has(member.slackUserId)) wanted.set(member.slackUserId, { email: member.email, slackUserId: member.slackUserId });
  }
  const present = observed.members ?? new Set<string>();
  const kick = [...present].filter((id) => id !== input.botUserId && !wanted.has(id));
  const invite = [...wanted.values()].filter((m) => !present.has(m.slackUserId));
  const statusOf = new Map(input.roster.map((m) => [m.email, m.slackStatus]));
  const confirm = [...wanted.values()].filter((m) => present.has(m.slackUserId) && statusOf.get(m.email) !== 'member');

  const name = expectedChannelName(input.codename, input.room.name);
  const topic = renderTemplate(input.templates.topic, { codename: input.codename });
  const nameWrong = observed.name !== name;
  const topicWrong = observed.topic !== topic;

  const plan: ChatPlan = {
    kick,
    ...(nameWrong ? { rename: name } : {}),
    ...(topicWrong ? { setTopic: topic } : {}),
    topicRestore: topicWrong && !input.created,
    ...(input.room.welcomePosted ? {} : { postWelcome: renderTemplate(input.templates.welcome, { codename: input.codename }) }),
    pinWelcome: !input.room.welcomePosted || input.room.state !== 'ready',
    invite,
    confirm,
    notFound,
  };

  if (input.created) {
    // A channel this pass made has only the bot and no topic yet: that is setup, not drift.
    return {
      rules: [
        skip('chat', `new private channel: ${invite.length} roster member(s) to invite${notFound.length > 0 ? `, ${notFound.length} without a Slack account` : ''}`),
        skip('codename', `new channel named ${observed.name}: its topic is set from the template`),
      ],
      plan,
    };
  }

  // Rule chat: private (checked above), named by the codename, topic starting with the prefix, members exactly the roster and the bot.
  const drift: string[] = [];
  if (nameWrong) drift.push(`the channel was renamed (${observed.name.length} characters): renamed back to ${name}`);
  if (!observed.topic.startsWith(TOPIC_PREFIX)) drift.push(`the topic does not start with ${TOPIC_PREFIX} (${observed.topic.length} characters): set back`);
  if (kick.length > 0) drift.push(`${kick.length} member(s) not on the roster: kicked`);
  if (invite.length > 0) drift.push(`${invite.length} roster member(s) missing: invited`);
  const chat =
    drift.length === 0
      ? pass('chat', `private, named ${name}, the topic starts with ${TOPIC_PREFIX}, members are the roster's ${wanted.size} Slack user(s) and the bot${notFound.length > 0 ? `; ${notFound.length} roster member(s) without a Slack account` : ''}`)
      : fail('chat', drift.join('; '));

  // Rule codename: the name and the topic say nothing but the codename, so they must be exactly the room's.
  const exposed: string[] = [];
  if (nameWrong) exposed.push(`the channel name is not ${name} (${observed.name.length} characters): renamed back`);
  if (topicWrong) exposed.push(`the topic is not exactly the template (${observed.topic.length} characters): set back`);
  const codename = exposed.length === 0 ? pass('codename', `the channel is named ${name} and its topic is exactly the template`) : fail('codename', exposed.join('; '));

  return { rules: [chat, codename], plan };
}
