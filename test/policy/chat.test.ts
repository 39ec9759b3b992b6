import { describe, expect, it } from 'vitest';
import { channelName, channelNameAttempt, expectedChannelName, planRoom, type ChatMember, type ChatPlan, type ChatPlanInput, type ObservedChannel } from '../../src/policy/chat.js';
import { loadTemplate } from '../../src/templates.js';

const BOT = 'UBOTRELAY';
const IC = 'UIC0000001';
const DEPUTY = 'UDEPUTY001';
const TOPIC = 'Attorney Work Project | sapphire-unicorn';
const WELCOME = loadTemplate('slack-welcome').split('{codename}').join('sapphire-unicorn');

const ROSTER: ChatMember[] = [
  { email: 'deputy@corp.example', slackUserId: DEPUTY, slackStatus: 'member' },
  { email: 'ic@corp.example', slackUserId: IC, slackStatus: 'member' },
];

/** A ready room in line with the rules, then the case's changes. */
function input(overrides: Partial<ChatPlanInput> = {}, channel: Partial<ObservedChannel> | null = {}): ChatPlanInput {
  return {
    codename: 'sapphire-unicorn',
    incidentStatus: 'open',
    room: { name: 'sapphire-unicorn', state: 'ready', welcomePosted: true },
    channel: channel === null ? null : { name: 'sapphire-unicorn', topic: TOPIC, isPrivate: true, archived: false, members: new Set([BOT, IC, DEPUTY]), ...channel },
    created: false,
    botUserId: BOT,
    roster: ROSTER,
    templates: { topic: loadTemplate('slack-topic'), welcome: loadTemplate('slack-welcome') },
    archiveOnClose: true,
    ...overrides,
  };
}

const NOTHING: ChatPlan = { kick: [], topicRestore: false, pinWelcome: false, invite: [], confirm: [], notFound: [] };
type Result = 'pass' | 'fail' | 'skip';

describe('planRoom: one case per way a room drifts', () => {
  it.each<[string, ChatPlanInput, ChatPlan, [Result, Result]]>([
    ['a room in line: nothing to do', input(), NOTHING, ['pass', 'pass']],
    ['renamed in Slack to something descriptive: renamed back', input({}, { name: 'customer-db-breach' }), { ...NOTHING, rename: 'sapphire-unicorn' }, ['fail', 'fail']],
    [
      'a topic that keeps the prefix but adds details: set back exactly (rule chat holds, rule codename does not)',
      input({}, { topic: `${TOPIC} | LockBit on payroll-db-3` }),
      { ...NOTHING, setTopic: TOPIC, topicRestore: true },
      ['pass', 'fail'],
    ],
    ['details after the prefix, without the codename', input({}, { topic: 'Attorney Work Project | LockBit on payroll-db-3' }), { ...NOTHING, setTopic: TOPIC, topicRestore: true }, ['pass', 'fail']],
    ['a topic changed entirely', input({}, { topic: 'Ransomware on the payments database' }), { ...NOTHING, setTopic: TOPIC, topicRestore: true }, ['fail', 'fail']],
    ['an empty topic', input({}, { topic: '' }), { ...NOTHING, setTopic: TOPIC, topicRestore: true }, ['fail', 'fail']],
    ['the template with a trailing newline', input({}, { topic: `${TOPIC}\n` }), { ...NOTHING, setTopic: TOPIC, topicRestore: true }, ['pass', 'fail']],
    ['the template with a zero-width space', input({}, { topic: `${TOPIC}\u200b` }), { ...NOTHING, setTopic: TOPIC, topicRestore: true }, ['pass', 'fail']],
    ['a lookalike prefix (Cyrillic А)', input({}, { topic: `\u0410ttorney Work Project | sapphire-unicorn` }), { ...NOTHING, setTopic: TOPIC, topicRestore: true }, ['fail', 'fail']],
    ['made public: replaced, nothing else done there', input({}, { isPrivate: false, members: null }), { ...NOTHING, replace: 'not_private' }, ['fail', 'skip']],
    ['archived: replaced', input({}, { archived: true, members: null }), { ...NOTHING, replace: 'is_archived' }, ['fail', 'skip']],
    ['deleted, or the bot removed from a private channel (channel_not_found): replaced', input({}, null), { ...NOTHING, replace: 'channel_not_found' }, ['fail', 'skip']],
    ['members listed without the bot: replaced', input({}, { members: new Set([IC, DEPUTY]) }), { ...NOTHING, replace: 'bot_not_member' }, ['fail', 'skip']],
    ['an extra member: kicked', input({}, { members: new Set([BOT, IC, DEPUTY, 'UINTRUDER1']) }), { ...NOTHING, kick: ['UINTRUDER1'] }, ['fail', 'pass']],
    ['a missing member: invited', input({}, { members: new Set([BOT, IC]) }), { ...NOTHING, invite: [{ email: 'deputy@corp.example', slackUserId: DEPUTY }] }, ['fail', 'pass']],
    [
      'the bot is never kicked, nor invited when a roster entry carries its id',
      input({ roster: [...ROSTER, { email: 'bot@corp.example', slackUserId: BOT, slackStatus: 'pending' }] }),
      NOTHING,
      ['pass', 'pass'],
    ],
    ['a suffixed name the room had to take is kept', input({ room: { name: 'sapphire-unicorn-2', state: 'ready', welcomePosted: true } }, { name: 'sapphire-unicorn-2' }), NOTHING, ['pass', 'pass']],
    [
      'a suffixed room renamed to the bare codename goes back to its own name',
      input({ room: { name: 'sapphire-unicorn-2', state: 'ready', welcomePosted: true } }, { name: 'sapphire-unicorn' }),
      { ...NOTHING, rename: 'sapphire-unicorn-2' },
      ['fail', 'fail'],
    ],
    ['a stored name that is not one of the room\'s: the bare codename', input({ room: { name: 'customer-db-breach', state: 'ready', welcomePosted: true } }, { name: 'customer-db-breach' }), { ...NOTHING, rename: 'sapphire-unicorn' }, ['fail', 'fail']],
    ['closed: archived', input({ incidentStatus: 'closed', channel: undefined }), { ...NOTHING, archive: true }, ['skip', 'skip']],
    ['closed, already archived: nothing', input({ incidentStatus: 'closed', channel: undefined, room: { name: 'sapphire-unicorn', state: 'archived', welcomePosted: true } }), NOTHING, ['skip', 'skip']],
    ['closed with RELAY_SLACK_ARCHIVE_ON_CLOSE=false: left as it is', input({ incidentStatus: 'closed', channel: undefined, archiveOnClose: false }), NOTHING, ['skip', 'skip']],
    ['closed, even when Slack shows drift: nothing but the archive', input({ incidentStatus: 'closed' }, { name: 'customer-db-breach', members: new Set([BOT, 'UINTRUDER1']) }), { ...NOTHING, archive: true }, ['skip', 'skip']],
    ['open but not looked at: nothing', input({ channel: undefined }), NOTHING, ['skip', 'skip']],
    [
      'a channel this pass created: topic, welcome, pin and invites are setup',
      input({ created: true, room: { name: 'sapphire-unicorn', state: 'pending', welcomePosted: false } }, { topic: '', members: new Set([BOT]) }),
      {
        ...NOTHING,
        setTopic: TOPIC,
        postWelcome: WELCOME,
        pinWelcome: true,
        invite: [
          { email: 'deputy@corp.example', slackUserId: DEPUTY },
          { email: 'ic@corp.example', slackUserId: IC },
        ],
      },
      ['skip', 'skip'],
    ],
    ['a setup that failed after the welcome: pinned again', input({ room: { name: 'sapphire-unicorn', state: 'failed', welcomePosted: true } }), { ...NOTHING, pinWelcome: true }, ['pass', 'pass']],
    [
      'someone Slack does not know: reported, not invited',
      input({ roster: [...ROSTER, { email: 'ghost@corp.example', slackUserId: null, slackStatus: 'pending' }] }),
      { ...NOTHING, notFound: ['ghost@corp.example'] },
      ['pass', 'pass'],
    ],
    [
      'a member already in whose status says otherwise: confirmed',
      input({ roster: [{ ...ROSTER[0]!, slackStatus: 'pending' }, ROSTER[1]!] }),
      { ...NOTHING, confirm: [{ email: 'deputy@corp.example', slackUserId: DEPUTY }] },
      ['pass', 'pass'],
    ],
    [
      'two roster entries with one Slack user: invited once',
      input({ roster: [...ROSTER, { email: 'ic2@corp.example', slackUserId: IC, slackStatus: 'pending' }] }, { members: new Set([BOT, DEPUTY]) }),
      { ...NOTHING, invite: [{ email: 'ic@corp.example', slackUserId: IC }] },
      ['fail', 'pass'],
    ],
    [
      'everything at once',
      input({}, { name: 'customer-db-breach', topic: 'LockBit', members: new Set([BOT, IC, 'UINTRUDER1']) }),
      { ...NOTHING, rename: 'sapphire-unicorn', setTopic: TOPIC, topicRestore: true, kick: ['UINTRUDER1'], invite: [{ email: 'deputy@corp.example', slackUserId: DEPUTY }] },
      ['fail', 'fail'],
    ],
  ])('%s', (_name, given, plan, [chat, codename]) => {
    const decision = planRoom(given);
    expect(decision.plan).toEqual(plan);
    expect(decision.rules.map((r) => [r.rule, r.result])).toEqual([
      ['chat', chat],
      ['codename', codename],
    ]);
    // Reasons are computed from what was seen, and never repeat what someone typed into Slack.
    for (const rule of decision.rules) expect(rule.reason).not.toMatch(/customer|LockBit|payroll|Ransomware|\u200b|\u0410/);
  });
});

describe('planRoom: the reasons say what was found', () => {
  it('names the correction, with lengths instead of the text', () => {
    const { rules } = planRoom(input({}, { name: 'customer-db-breach', topic: 'Attorney Work Project | LockBit on payroll-db-3', members: new Set([BOT, IC, 'UINTRUDER1']) }));
    expect(rules).toEqual([
      {
        rule: 'chat',
        result: 'fail',
        reason: 'the channel was renamed (18 characters): renamed back to sapphire-unicorn; 1 member(s) not on the roster: kicked; 1 roster member(s) missing: invited',
      },
      {
        rule: 'codename',
        result: 'fail',
        reason: 'the channel name is not sapphire-unicorn (18 characters): renamed back; the topic is not exactly the template (47 characters): set back',
      },
    ]);
  });

  it('passes only after checking, and says what it checked', () => {
    const { rules } = planRoom(input({ roster: [...ROSTER, { email: 'ghost@corp.example', slackUserId: null, slackStatus: 'not_found' }] }));
    expect(rules).toEqual([
      {
        rule: 'chat',
        result: 'pass',
        reason: "private, named sapphire-unicorn, the topic starts with Attorney Work Project, members are the roster's 2 Slack user(s) and the bot; 1 roster member(s) without a Slack account",
      },
      { rule: 'codename', result: 'pass', reason: 'the channel is named sapphire-unicorn and its topic is exactly the template' },
    ]);
  });

  it('names the loss', () => {
    expect(planRoom(input({}, { isPrivate: false, members: null })).rules[0]).toEqual({ rule: 'chat', result: 'fail', reason: 'the channel was made public: a new private channel replaces it' });
    expect(planRoom(input({}, null)).rules[0]!.reason).toBe('the channel cannot be seen (deleted, or the bot removed from it): a new private channel replaces it');
  });

  it('stays linear on a huge topic and name', () => {
    const huge = 'Attorney Work Project | '.padEnd(2_000_000, 'a ');
    const started = performance.now();
    const { plan, rules } = planRoom(input({}, { topic: huge, name: 'x'.repeat(1_000_000) }));
    expect(performance.now() - started).toBeLessThan(500);
    expect(plan.setTopic).toBe(TOPIC);
    expect(rules[1]!.reason).toBe('the channel name is not sapphire-unicorn (1000000 characters): renamed back; the topic is not exactly the template (2000000 characters): set back');
  });
});

describe('channel names', () => {
  it('are the codename, then -2, -3 …, cut to fit 80 characters', () => {
    expect(channelName('sapphire-unicorn', 1)).toBe('sapphire-unicorn');
    expect(channelName('sapphire-unicorn', 2)).toBe('sapphire-unicorn-2');
    const long = `${'a'.repeat(39)}-${'b'.repeat(40)}`;
    expect(channelName(long, 12)).toHaveLength(80);
    expect(channelName(long, 12).endsWith('-12')).toBe(true);
  });

  it.each<[string, number | undefined]>([
    ['sapphire-unicorn', 1],
    ['sapphire-unicorn-2', 2],
    ['sapphire-unicorn-50', 50],
    ['sapphire-unicorn-51', undefined],
    ['sapphire-unicorn-0', undefined],
    ['sapphire-unicorn-02', undefined],
    ['customer-db-breach', undefined],
    ['sapphire-unicorn-breach', undefined],
  ])('%s is attempt %s', (name, attempt) => {
    expect(channelNameAttempt('sapphire-unicorn', name)).toBe(attempt);
  });

  it('expected: the stored name when it is one of the room\'s, else the codename', () => {
    expect(expectedChannelName('sapphire-unicorn', 'sapphire-unicorn-3')).toBe('sapphire-unicorn-3');
    expect(expectedChannelName('sapphire-unicorn', null)).toBe('sapphire-unicorn');
    expect(expectedChannelName('sapphire-unicorn', 'payroll-breach')).toBe('sapphire-unicorn');
  });
});
