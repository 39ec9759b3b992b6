import { afterEach, beforeEach, describe, expect, it } from 'vitest';
import { startSlackWatchdog, type SlackWatchdog } from '../../../src/channels/slack/index.js';
import type { FakeChannel, FakeSlack } from '../../helpers/fake-slack.js';
import { createTestRelay, type TestRelay } from '../../helpers/relay.js';
import { auditOf, auth, channel, declare, putMember, settle, slackRelay, startWorkspace, waitFor, type Workspace } from './harness.js';

const PERIOD = 200;

let ws: Workspace;
let fake: FakeSlack;
let relay: TestRelay;
let ic: string;
let room: FakeChannel;
let watchdog: SlackWatchdog | undefined;

beforeEach(async () => {
  ws = await startWorkspace();
  fake = ws.fake;
  relay = await slackRelay(fake, { slackSyncInterval: PERIOD });
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

/** The watchdog over the relay's room, wired the way main.ts wires it (the `slack-watchdog` lease in the relay's store). */
const startWatchdog = (): SlackWatchdog =>
  startSlackWatchdog(relay.slack!, PERIOD, { leases: relay.ctx.store.leases, replicaId: relay.ctx.replicaId, now: relay.ctx.now, logger: relay.ctx.logger });

/** Index in fake.calls of the first call to `method` at or after `from`. */
const nextCall = (method: string, from: number): number => fake.calls.findIndex((c, i) => i >= from && c.method === method);

describe('the watchdog', () => {
  it('kicks an intruder within one watchdog period, and never kicks the bot itself', async () => {
    watchdog = startWatchdog();
    const before = fake.calls.length;
    const added = Date.now();
    fake.addMember(room.id, 'UINTRUDER1');
    await waitFor(() => !room.members.has('UINTRUDER1'), PERIOD * 10, 'the intruder to be kicked');
    // One period, plus slack for a loaded CI machine; the call order below is the exact check.
    expect(Date.now() - added).toBeLessThan(PERIOD * 8);
    // Slack has the kick before the relay has its answer: wait for the audit event too.
    await waitFor(async () => (await auditOf(relay, 'sapphire-unicorn', 'slack.kicked')).length > 0, PERIOD * 10, 'the kick to be audited');

    // The first pass that looked at the members after the intrusion is the one that kicked.
    const firstLook = nextCall('conversations.members', before);
    const kick = nextCall('conversations.kick', before);
    expect(firstLook).toBeGreaterThanOrEqual(0);
    expect(kick).toBeGreaterThan(firstLook);
    const secondLook = nextCall('conversations.members', firstLook + 1);
    expect(secondLook === -1 || kick < secondLook).toBe(true);

    expect(room.members.has(fake.botUserId)).toBe(true);
    expect(fake.callsTo('conversations.kick').map((c) => c.params['user'])).toEqual(['UINTRUDER1']);
    const kicked = await auditOf(relay, 'sapphire-unicorn', 'slack.kicked');
    expect(kicked.map((e) => [e.actor, e.outcome, e.data])).toEqual([[null, 'corrected', { channelId: room.id, slackUserId: 'UINTRUDER1', email: null }]]);
  });

  it('restores a topic edited in Slack, and one that keeps the prefix but adds details, to the exact template', async () => {
    watchdog = startWatchdog();
    fake.setTopic(room.id, 'Ransomware on the payments database');
    await waitFor(() => room.topic === 'Attorney Work Project | sapphire-unicorn', PERIOD * 10, 'the topic to be restored');
    await waitFor(async () => (await auditOf(relay, 'sapphire-unicorn', 'slack.topic_restored')).length > 0, PERIOD * 10, 'the restore to be audited');
    const restored = await auditOf(relay, 'sapphire-unicorn', 'slack.topic_restored');
    expect(restored.map((e) => [e.outcome, e.data])).toEqual([['corrected', { channelId: room.id, previousLength: 'Ransomware on the payments database'.length }]]);
    expect(JSON.stringify(await relay.ctx.store.sql.all('SELECT data FROM audit_events'))).not.toContain('Ransomware');

    // Rule `codename`: the prefix alone is not enough; anything after it may describe the incident.
    fake.setTopic(room.id, 'Attorney Work Project | sapphire-unicorn | bridge at 15:00');
    await waitFor(() => room.topic === 'Attorney Work Project | sapphire-unicorn', PERIOD * 10, 'the detailed topic to be restored');
    await waitFor(async () => (await auditOf(relay, 'sapphire-unicorn', 'slack.topic_restored')).length > 1, PERIOD * 10, 'the second restore to be audited');
    const calls = fake.calls.length;
    await waitFor(() => fake.calls.slice(calls).filter((c) => c.method === 'conversations.info').length >= 2, PERIOD * 10, 'two more passes');
    // Once exact, it is left alone: no pass sets it again.
    expect(fake.calls.slice(calls).filter((c) => c.method === 'conversations.setTopic')).toEqual([]);
    expect(room.topic).toBe('Attorney Work Project | sapphire-unicorn');
  });

  it('re-invites a roster member who left or was removed in Slack', async () => {
    watchdog = startWatchdog();
    fake.removeMember(room.id, ws.users.deputy);
    await waitFor(() => room.members.has(ws.users.deputy), PERIOD * 10, 'the deputy to be re-invited');
    await waitFor(async () => (await auditOf(relay, 'sapphire-unicorn', 'slack.invited')).some((e) => e.outcome === 'corrected'), PERIOD * 10, 'the re-invite to be audited');
    const reinvited = (await auditOf(relay, 'sapphire-unicorn', 'slack.invited')).filter((e) => e.outcome === 'corrected');
    expect(reinvited.map((e) => e.data)).toEqual([{ channelId: room.id, slackUserId: ws.users.deputy, email: 'deputy@corp.example' }]);
  });

  it('replaces a channel the bot has lost with a new private one', async () => {
    fake.removeMember(room.id, fake.botUserId);
    const sync = await relay.request.post('/v1/incidents/sapphire-unicorn/slack/sync').set(auth(ic));
    expect(sync.status).toBe(200);
    expect(sync.body).toMatchObject({ state: 'ready', name: 'sapphire-unicorn-2' });
    const replacement = channel(fake, 'sapphire-unicorn-2');
    expect(replacement.isPrivate).toBe(true);
    expect([...replacement.members].sort()).toEqual([fake.botUserId, ws.users.ic, ws.users.deputy].sort());
    expect((await auditOf(relay, 'sapphire-unicorn', 'slack.channel_lost')).map((e) => e.data)).toEqual([
      {
        channelId: room.id,
        error: 'channel_not_found',
        rules: [
          { rule: 'chat', result: 'fail', reason: 'the channel cannot be seen (deleted, or the bot removed from it): a new private channel replaces it' },
          { rule: 'codename', result: 'skip', reason: 'the channel is being replaced; the new one is checked next' },
        ],
      },
    ]);
  });

  it('runs on one relay at a time: another replica skips its passes while this one holds the slack-watchdog lease', async () => {
    // Passes on demand only (the timers would fire in a minute), so no scheduled pass interleaves.
    const deps = { leases: relay.ctx.store.leases, now: relay.ctx.now, logger: relay.ctx.logger };
    watchdog = startSlackWatchdog(relay.slack!, 60_000, { ...deps, replicaId: relay.ctx.replicaId });
    const other = startSlackWatchdog(relay.slack!, 60_000, { ...deps, replicaId: 'another-relay' });
    try {
      expect(await watchdog.runNow()).toBe(true);
      expect(await relay.ctx.store.leases.holder('slack-watchdog', relay.ctx.now())).toBe(relay.ctx.replicaId);
      const calls = fake.calls.length;
      expect(await other.runNow()).toBe(false);
      expect(fake.calls.length).toBe(calls);
      // Stopping gives the lease up, so the other relay takes over at its next pass rather than after the expiry.
      await watchdog.stop();
      watchdog = undefined;
      expect(await other.runNow()).toBe(true);
      expect(await relay.ctx.store.leases.holder('slack-watchdog', relay.ctx.now())).toBe('another-relay');
    } finally {
      await other.stop();
    }
  });

  it('stops cleanly', async () => {
    watchdog = startWatchdog();
    await waitFor(() => fake.callsTo('conversations.info').length > 0, PERIOD * 10, 'a pass');
    await watchdog.stop();
    const count = fake.calls.length;
    await new Promise((r) => setTimeout(r, PERIOD * 2));
    expect(fake.calls.length).toBe(count);
  });
});

describe('POST /v1/incidents/:codename/slack/sync', () => {
  it('reconciles now and answers what it corrected, for the commander and admins', async () => {
    fake.addMember(room.id, 'UINTRUDER1');
    fake.setTopic(room.id, 'something else');
    const res = await relay.request.post('/v1/incidents/sapphire-unicorn/slack/sync').set(auth(ic));
    expect(res.status).toBe(200);
    expect(res.body).toEqual({
      codename: 'sapphire-unicorn',
      state: 'ready',
      channelId: room.id,
      name: 'sapphire-unicorn',
      reason: null,
      kicked: ['UINTRUDER1'],
      invited: [],
      topicRestored: true,
      nameRestored: false,
      notFound: [],
      failed: [],
      rules: [
        { rule: 'chat', result: 'fail', reason: 'the topic does not start with Attorney Work Project (14 characters): set back; 1 member(s) not on the roster: kicked' },
        { rule: 'codename', result: 'fail', reason: 'the topic is not exactly the template (14 characters): set back' },
      ],
    });
    expect((await auditOf(relay, 'sapphire-unicorn', 'slack.kicked'))[0]!.actor).toBe('ic@corp.example');

    const asAdmin = await relay.request.post('/v1/incidents/sapphire-unicorn/slack/sync').set(auth(relay.admin));
    expect(asAdmin.status).toBe(200);
    expect(asAdmin.body).toMatchObject({ kicked: [], invited: [], topicRestored: false, nameRestored: false });
    expect(asAdmin.body.rules.map((r: { result: string }) => r.result)).toEqual(['pass', 'pass']);
  });

  it('reports a member Slack will not let it remove: the room is failed, audited once, until they are gone', async () => {
    fake.protect('UOWNER0001');
    fake.addMember(room.id, 'UOWNER0001');
    const first = await relay.request.post('/v1/incidents/sapphire-unicorn/slack/sync').set(auth(ic));
    expect(first.status).toBe(503);
    expect(first.body.error.code).toBe('unavailable');
    expect(first.body.error.details.failed).toEqual([{ action: 'kick', slackUserId: 'UOWNER0001', email: null, error: 'restricted_action' }]);
    await relay.request.post('/v1/incidents/sapphire-unicorn/slack/sync').set(auth(ic));
    const view = await relay.request.get('/v1/incidents/sapphire-unicorn').set(auth(ic));
    expect(view.body.slack).toMatchObject({ state: 'failed', reason: 'conversations.kick: restricted_action (UOWNER0001)' });
    expect((await auditOf(relay, 'sapphire-unicorn', 'slack.kick_failed')).map((e) => e.data)).toEqual([{ channelId: room.id, slackUserId: 'UOWNER0001', error: 'restricted_action' }]);

    fake.removeMember(room.id, 'UOWNER0001');
    const after = await relay.request.post('/v1/incidents/sapphire-unicorn/slack/sync').set(auth(ic));
    expect(after.status).toBe(200);
    expect(after.body.state).toBe('ready');
  });

  it('is not_found for non-members and forbidden for roster members who are not the commander', async () => {
    const outsider = await relay.request.post('/v1/incidents/sapphire-unicorn/slack/sync').set(auth(await relay.tokenFor('nosy@corp.example')));
    expect(outsider.status).toBe(404);
    expect(outsider.body.error.code).toBe('not_found');
    const deputy = await relay.request.post('/v1/incidents/sapphire-unicorn/slack/sync').set(auth(await relay.tokenFor('deputy@corp.example')));
    expect(deputy.status).toBe(403);
    expect(deputy.body.error.code).toBe('forbidden');
  });

  it('answers 503 unavailable when Slack is off, after the roster check', async () => {
    const off = await createTestRelay();
    const offIc = await off.tokenFor('ic@corp.example');
    const created = await declare(off, offIc, 'amber-finch');
    expect(created['slack']).toBeNull();
    const res = await off.request.post('/v1/incidents/amber-finch/slack/sync').set(auth(offIc));
    expect(res.status).toBe(503);
    expect(res.body.error).toMatchObject({ code: 'unavailable', rule: 'chat', details: { slack: 'off' } });
    expect((await off.request.post('/v1/incidents/amber-finch/slack/sync').set(auth(await off.tokenFor('nosy@corp.example')))).status).toBe(404);
  });

  it('refuses a closed incident', async () => {
    await relay.request.patch('/v1/incidents/sapphire-unicorn').set(auth(ic)).send({ status: 'closed' });
    const res = await relay.request.post('/v1/incidents/sapphire-unicorn/slack/sync').set(auth(ic));
    expect(res.status).toBe(409);
    expect(res.body.error.code).toBe('incident_closed');
  });
});
