/**
 * Issue 10 §4, the Slack half: a channel renamed in Slack to something
 * descriptive is renamed back, and a topic that keeps the prefix but adds
 * details is set back to the exact template, by the watchdog and by the
 * on-demand sync, through the real @slack/web-api client against the fake
 * workspace, on both store backends.
 */
import { afterEach, beforeEach, describe, expect, it } from 'vitest';
import { startSlackWatchdog, type SlackWatchdog } from '../../../src/channels/slack/index.js';
import type { FakeChannel, FakeSlack } from '../../helpers/fake-slack.js';
import { BACKENDS, type TestRelay } from '../../helpers/relay.js';
import { auditOf, auth, channel, declare, putMember, settle, slackRelay, startWorkspace, waitFor, type Workspace } from './harness.js';

const PERIOD = 200;
const DESCRIPTIVE = 'customer-db-breach';
const DETAILED = 'Attorney Work Project | LockBit on payroll-db-3';
const TOPIC = 'Attorney Work Project | sapphire-unicorn';

describe.each(BACKENDS)('descriptive names and details in Slack (%s)', (backend) => {
  let ws: Workspace;
  let fake: FakeSlack;
  let relay: TestRelay;
  let ic: string;
  let room: FakeChannel;
  let watchdog: SlackWatchdog | undefined;

  beforeEach(async () => {
    ws = await startWorkspace();
    fake = ws.fake;
    relay = await slackRelay(fake, { slackSyncInterval: PERIOD }, backend);
    ic = await relay.tokenFor('ic@corp.example');
    await declare(relay, ic, 'sapphire-unicorn');
    await putMember(relay, ic, 'sapphire-unicorn', 'deputy@corp.example', { role: 'deputy' });
    await settle(relay);
    room = channel(fake, 'sapphire-unicorn');
    watchdog = undefined;
  });

  afterEach(async () => {
    await watchdog?.stop();
    await relay.slack?.stop();
    await fake.close();
  });

  const startWatchdog = (): SlackWatchdog =>
    startSlackWatchdog(relay.slack!, PERIOD, { leases: relay.ctx.store.leases, replicaId: relay.ctx.replicaId, now: relay.ctx.now, logger: relay.ctx.logger });
  const sync = () => relay.request.post('/v1/incidents/sapphire-unicorn/slack/sync').set(auth(ic));
  const auditDump = async (): Promise<string> => JSON.stringify(await relay.ctx.store.sql.all('SELECT type, data FROM audit_events'));
  const renames = () => fake.callsTo('conversations.rename');
  /** Waits for `n` more watchdog passes (each looks at the channel once). */
  const passes = async (n: number): Promise<void> => {
    const from = fake.calls.length;
    await waitFor(() => fake.calls.slice(from).filter((c) => c.method === 'conversations.info').length >= n, PERIOD * 15, `${n} more passes`);
  };

  it('the watchdog renames a channel renamed to something descriptive back, audits the length only, and then leaves it', async () => {
    watchdog = startWatchdog();
    fake.renameChannel(room.id, DESCRIPTIVE);
    await waitFor(() => room.name === 'sapphire-unicorn', PERIOD * 10, 'the name to be restored');
    await waitFor(async () => (await auditOf(relay, 'sapphire-unicorn', 'slack.name_restored')).length > 0, PERIOD * 10, 'the rename to be audited');

    expect(renames().map((c) => [c.params['channel'], c.params['name'], c.error])).toEqual([[room.id, 'sapphire-unicorn', undefined]]);
    const restored = await auditOf(relay, 'sapphire-unicorn', 'slack.name_restored');
    expect(restored.map((e) => [e.actor, e.outcome, e.data])).toEqual([[null, 'corrected', { channelId: room.id, name: 'sapphire-unicorn', previousLength: DESCRIPTIVE.length }]]);
    // The decision, with each rule's outcome (a roster change's routine invite is one too, with outcome ok).
    const corrections = async () => (await auditOf(relay, 'sapphire-unicorn', 'slack.reconciled')).filter((e) => e.outcome === 'corrected');
    await waitFor(async () => (await corrections()).length > 0, PERIOD * 10, 'the decision to be audited');
    const decided = await corrections();
    expect(decided.map((e) => [e.outcome, e.data])).toEqual([
      [
        'corrected',
        {
          channelId: room.id,
          rules: [
            { rule: 'chat', result: 'fail', reason: `the channel was renamed (${DESCRIPTIVE.length} characters): renamed back to sapphire-unicorn` },
            { rule: 'codename', result: 'fail', reason: `the channel name is not sapphire-unicorn (${DESCRIPTIVE.length} characters): renamed back` },
          ],
        },
      ],
    ]);
    expect(await auditDump()).not.toContain(DESCRIPTIVE);

    // No loop: the passes after find the name right and call nothing.
    await passes(2);
    expect(renames()).toHaveLength(1);
    expect(await corrections()).toHaveLength(1);
    expect((await relay.request.get('/v1/incidents/sapphire-unicorn').set(auth(ic))).body.slack).toMatchObject({ state: 'ready', name: 'sapphire-unicorn' });
    expect((await relay.ctx.store.audit.verify()).ok).toBe(true);
  });

  it('the watchdog sets a topic with details after the prefix back to the exact template', async () => {
    watchdog = startWatchdog();
    fake.setTopic(room.id, DETAILED);
    await waitFor(() => room.topic === TOPIC, PERIOD * 10, 'the topic to be restored');
    await waitFor(async () => (await auditOf(relay, 'sapphire-unicorn', 'slack.topic_restored')).length > 0, PERIOD * 10, 'the restore to be audited');
    const restored = await auditOf(relay, 'sapphire-unicorn', 'slack.topic_restored');
    expect(restored.map((e) => [e.outcome, e.data])).toEqual([['corrected', { channelId: room.id, previousLength: DETAILED.length }]]);
    expect(fake.callsTo('conversations.setTopic').at(-1)!.params['topic']).toBe(TOPIC);
    expect(await auditDump()).not.toMatch(/LockBit|payroll/);
    await passes(2);
    expect(room.topic).toBe(TOPIC);
    expect(await auditOf(relay, 'sapphire-unicorn', 'slack.topic_restored')).toHaveLength(1);
  });

  it('the sync answers nameRestored and topicRestored, with the rules it found broken', async () => {
    fake.renameChannel(room.id, DESCRIPTIVE);
    fake.setTopic(room.id, DETAILED);
    const res = await sync();
    expect(res.status).toBe(200);
    expect(res.body).toMatchObject({ state: 'ready', name: 'sapphire-unicorn', nameRestored: true, topicRestored: true, kicked: [], invited: [] });
    expect(res.body.rules).toEqual([
      { rule: 'chat', result: 'fail', reason: `the channel was renamed (${DESCRIPTIVE.length} characters): renamed back to sapphire-unicorn` },
      {
        rule: 'codename',
        result: 'fail',
        reason: `the channel name is not sapphire-unicorn (${DESCRIPTIVE.length} characters): renamed back; the topic is not exactly the template (${DETAILED.length} characters): set back`,
      },
    ]);
    expect([room.name, room.topic]).toEqual(['sapphire-unicorn', TOPIC]);
    expect((await auditOf(relay, 'sapphire-unicorn', 'slack.name_restored'))[0]!.actor).toBe('ic@corp.example');
    expect(JSON.stringify(res.body)).not.toMatch(/customer|LockBit/);

    const again = await sync();
    expect(again.body).toMatchObject({ nameRestored: false, topicRestored: false });
    expect(again.body.rules.map((r: { result: string }) => r.result)).toEqual(['pass', 'pass']);
    expect(renames()).toHaveLength(1);
  });

  it('when another channel took the name meanwhile, it takes the next suffix, keeps it, and does not rename again', async () => {
    fake.renameChannel(room.id, DESCRIPTIVE);
    fake.takeName('sapphire-unicorn');
    const res = await sync();
    expect(res.status).toBe(200);
    expect(res.body).toMatchObject({ state: 'ready', name: 'sapphire-unicorn-2', nameRestored: true });
    expect(room.name).toBe('sapphire-unicorn-2');
    expect(renames().map((c) => [c.params['name'], c.error])).toEqual([
      ['sapphire-unicorn', 'name_taken'],
      ['sapphire-unicorn-2', undefined],
    ]);
    expect((await auditOf(relay, 'sapphire-unicorn', 'slack.name_restored')).map((e) => e.data)).toEqual([{ channelId: room.id, name: 'sapphire-unicorn-2', previousLength: DESCRIPTIVE.length }]);

    watchdog = startWatchdog();
    await passes(2);
    expect(renames()).toHaveLength(2);
    expect(room.name).toBe('sapphire-unicorn-2');
  });

  it('a rename Slack refuses for good leaves the room failed with the reason, audited once, one try per pass; the rest is still corrected', async () => {
    fake.renameChannel(room.id, DESCRIPTIVE);
    fake.setTopic(room.id, DETAILED);
    fake.addMember(room.id, 'UINTRUDER1');
    fake.removeMember(room.id, ws.users.deputy);
    fake.failOnce('conversations.rename', { error: 'not_authorized' });
    fake.failOnce('conversations.rename', { error: 'not_authorized' });

    const started = Date.now();
    const first = await sync();
    expect(first.status).toBe(503);
    expect(first.body.error).toMatchObject({ code: 'unavailable', rule: 'chat' });
    expect(first.body.error.details).toMatchObject({
      state: 'failed',
      reason: 'conversations.rename: not_authorized',
      nameRestored: false,
      topicRestored: true,
      kicked: ['UINTRUDER1'],
      invited: [ws.users.deputy],
    });
    expect(room.members.has('UINTRUDER1')).toBe(false);
    expect(room.members.has(ws.users.deputy)).toBe(true);
    expect(room.topic).toBe(TOPIC);
    // The kick comes first: nobody off the roster reads on while the rest is fixed.
    const order = ['conversations.kick', 'conversations.rename', 'conversations.setTopic', 'conversations.invite'].map((m) => fake.calls.findIndex((c) => c.method === m && c.params['channel'] === room.id && c.at >= started));
    expect(order.every((at, i) => at >= 0 && (i === 0 || order[i - 1]! < at))).toBe(true);
    await sync();
    expect(renames()).toHaveLength(2);
    expect((await auditOf(relay, 'sapphire-unicorn', 'slack.rename_failed')).map((e) => [e.outcome, e.data])).toEqual([
      ['failed', { channelId: room.id, error: 'not_authorized', previousLength: DESCRIPTIVE.length }],
    ]);
    expect((await relay.request.get('/v1/incidents/sapphire-unicorn').set(auth(ic))).body.slack).toMatchObject({ state: 'failed', reason: 'conversations.rename: not_authorized' });
    // The first pass changed the room, so its decision is on record; the second changed nothing.
    const decided = (await auditOf(relay, 'sapphire-unicorn', 'slack.reconciled')).filter((e) => e.outcome === 'corrected');
    expect(decided.map((e) => (e.data['rules'] as Array<{ result: string }>).map((r) => r.result))).toEqual([['fail', 'fail']]);

    // Once Slack lets it, the next pass restores the name and the room is ready.
    const after = await sync();
    expect(after.status).toBe(200);
    expect(after.body).toMatchObject({ state: 'ready', name: 'sapphire-unicorn', nameRestored: true });
    expect(room.name).toBe('sapphire-unicorn');
  });

  it('with every nearby name taken, it stops after five names a pass and says why', async () => {
    fake.renameChannel(room.id, DESCRIPTIVE);
    for (const name of ['sapphire-unicorn', 'sapphire-unicorn-2', 'sapphire-unicorn-3', 'sapphire-unicorn-4', 'sapphire-unicorn-5']) fake.takeName(name);
    const res = await sync();
    expect(res.status).toBe(503);
    expect(res.body.error.details).toMatchObject({ state: 'failed', reason: 'conversations.rename: name_taken' });
    expect(renames().map((c) => c.params['name'])).toEqual(['sapphire-unicorn', 'sapphire-unicorn-2', 'sapphire-unicorn-3', 'sapphire-unicorn-4', 'sapphire-unicorn-5']);
    await sync();
    expect(renames()).toHaveLength(10);
    expect(await auditOf(relay, 'sapphire-unicorn', 'slack.rename_failed')).toHaveLength(1);
  });
});

describe.each(BACKENDS)('a room that had to take a suffix (%s)', (backend) => {
  let ws: Workspace;
  let relay: TestRelay;

  beforeEach(async () => {
    ws = await startWorkspace();
    ws.fake.takeName('sapphire-unicorn');
    relay = await slackRelay(ws.fake, {}, backend);
  });

  afterEach(async () => {
    await relay.slack?.stop();
    await ws.fake.close();
  });

  it('keeps its -2 name, and goes back to it when renamed', async () => {
    const ic = await relay.tokenFor('ic@corp.example');
    await declare(relay, ic, 'sapphire-unicorn');
    await settle(relay);
    const room = channel(ws.fake, 'sapphire-unicorn-2');
    const clean = await relay.request.post('/v1/incidents/sapphire-unicorn/slack/sync').set(auth(ic));
    expect(clean.body).toMatchObject({ name: 'sapphire-unicorn-2', nameRestored: false });
    expect(ws.fake.callsTo('conversations.rename')).toEqual([]);

    ws.fake.renameChannel(room.id, 'payroll-ransomware');
    const res = await relay.request.post('/v1/incidents/sapphire-unicorn/slack/sync').set(auth(ic));
    expect(res.body).toMatchObject({ state: 'ready', name: 'sapphire-unicorn-2', nameRestored: true });
    expect(room.name).toBe('sapphire-unicorn-2');
  });
});
