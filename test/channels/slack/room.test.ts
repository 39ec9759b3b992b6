import { afterEach, beforeEach, describe, expect, it } from 'vitest';
import { loadTemplate, renderTemplate } from '../../../src/templates.js';
import { startFakeSlack, type FakeSlack } from '../../helpers/fake-slack.js';
import type { TestRelay } from '../../helpers/relay.js';
import { addPeople, auditOf, auth, channel, declare, putMember, settle, slackRelay, startWorkspace, type Workspace } from './harness.js';

let ws: Workspace;
let fake: FakeSlack;
let relay: TestRelay;
let ic: string;

beforeEach(async () => {
  ws = await startWorkspace();
  fake = ws.fake;
  relay = await slackRelay(fake);
  ic = await relay.tokenFor('ic@corp.example');
});

afterEach(async () => {
  await relay.slack?.stop();
  await fake.close();
});

describe('setting up the room', () => {
  it('creates a private channel named by the codename, with the exact topic, a pinned welcome and the roster invited', async () => {
    const created = await declare(relay, ic, 'sapphire-unicorn');
    // The incident answer does not wait for Slack.
    expect(created['slack']).toMatchObject({ state: 'pending' });

    const byId = await putMember(relay, ic, 'sapphire-unicorn', 'deputy@corp.example', { role: 'deputy', slackUserId: ws.users.deputy });
    expect(byId.status).toBe(201);
    expect(byId.body.slackStatus).toBe('pending');
    expect((await putMember(relay, ic, 'sapphire-unicorn', 'sec@corp.example', {})).status).toBe(201);
    await settle(relay);

    const room = channel(fake, 'sapphire-unicorn');
    expect(room.isPrivate).toBe(true);
    expect(fake.callsTo('conversations.create')[0]!.params).toMatchObject({ name: 'sapphire-unicorn', is_private: 'true' });
    expect(room.topic).toBe('Attorney Work Project | sapphire-unicorn');
    expect(room.messages).toHaveLength(1);
    expect(room.messages[0]!.text).toBe(renderTemplate(loadTemplate('slack-welcome'), { codename: 'sapphire-unicorn' }));
    expect([...room.pins]).toEqual([room.messages[0]!.ts]);
    expect([...room.members].sort()).toEqual([fake.botUserId, ws.users.ic, ws.users.deputy, ws.users.sec].sort());

    const incident = await relay.request.get('/v1/incidents/sapphire-unicorn').set(auth(ic));
    expect(incident.body.slack).toEqual({ state: 'ready', channelId: room.id, name: 'sapphire-unicorn', reason: null });
    const roster = await relay.request.get('/v1/incidents/sapphire-unicorn/roster').set(auth(ic));
    expect(roster.body.roster.map((m: { email: string; slackStatus: string }) => [m.email, m.slackStatus])).toEqual([
      ['deputy@corp.example', 'member'],
      ['ic@corp.example', 'member'],
      ['sec@corp.example', 'member'],
    ]);

    expect((await auditOf(relay, 'sapphire-unicorn', 'slack.channel_created'))[0]!.data).toEqual({ channelId: room.id, name: 'sapphire-unicorn' });
    const invited = await auditOf(relay, 'sapphire-unicorn', 'slack.invited');
    expect(invited.map((e) => [e.data['slackUserId'], e.outcome]).sort()).toEqual(
      [
        [ws.users.ic, 'ok'],
        [ws.users.deputy, 'ok'],
        [ws.users.sec, 'ok'],
      ].sort(),
    );
    // The audit never carries what was said in the room.
    const dump = JSON.stringify(await relay.ctx.store.sql.all('SELECT data FROM audit_events'));
    expect(dump).not.toContain('Attorney Work Project');
    expect(dump).not.toContain('Welcome');
    expect((await relay.ctx.store.audit.verify()).ok).toBe(true);
  });

  it('takes codename-2, then -3, when the name is taken in Slack', async () => {
    fake.takeName('sapphire-unicorn');
    await declare(relay, ic, 'sapphire-unicorn');
    fake.takeName('amber-finch');
    fake.takeName('amber-finch-2');
    await declare(relay, ic, 'amber-finch');
    await settle(relay);

    const second = channel(fake, 'sapphire-unicorn-2');
    expect(second.isPrivate).toBe(true);
    // The topic and welcome name the incident's codename, nothing else.
    expect(second.topic).toBe('Attorney Work Project | sapphire-unicorn');
    expect(channel(fake, 'amber-finch-3').members.has(ws.users.ic)).toBe(true);
    const view = await relay.request.get('/v1/incidents/amber-finch').set(auth(ic));
    expect(view.body.slack).toMatchObject({ state: 'ready', name: 'amber-finch-3' });
  });

  it('retries a ratelimited answer after the Retry-After Slack sent, and succeeds', async () => {
    fake.rateLimitOnce('conversations.create', 1);
    await declare(relay, ic, 'sapphire-unicorn');
    await settle(relay);

    const creates = fake.callsTo('conversations.create');
    expect(creates.map((c) => c.status)).toEqual([429, 200]);
    expect(creates[1]!.at - creates[0]!.at).toBeGreaterThanOrEqual(950);
    expect(channel(fake, 'sapphire-unicorn').topic).toBe('Attorney Work Project | sapphire-unicorn');
    expect((await relay.request.get('/v1/incidents/sapphire-unicorn').set(auth(ic))).body.slack.state).toBe('ready');
  });

  it('retries transient failures (Slack internal_error, HTTP 503) with backoff', async () => {
    fake.failOnce('conversations.setTopic', { error: 'internal_error' });
    fake.failOnce('users.lookupByEmail', { status: 503 });
    await declare(relay, ic, 'sapphire-unicorn');
    await settle(relay);
    expect(fake.callsTo('conversations.setTopic')).toHaveLength(2);
    expect(channel(fake, 'sapphire-unicorn').members.has(ws.users.ic)).toBe(true);
    expect((await relay.request.get('/v1/incidents/sapphire-unicorn').set(auth(ic))).body.slack.state).toBe('ready');
  });

  it('never posts the welcome twice when a failed setup is resumed', async () => {
    fake.failOnce('pins.add', { error: 'not_allowed_token_type' });
    await declare(relay, ic, 'sapphire-unicorn');
    await settle(relay);
    const failed = await relay.request.get('/v1/incidents/sapphire-unicorn').set(auth(ic));
    expect(failed.body.slack).toMatchObject({ state: 'failed', reason: 'pins.add: not_allowed_token_type' });
    expect(await auditOf(relay, 'sapphire-unicorn', 'slack.failed')).toHaveLength(1);

    const sync = await relay.request.post('/v1/incidents/sapphire-unicorn/slack/sync').set(auth(ic));
    expect(sync.status).toBe(200);
    const room = channel(fake, 'sapphire-unicorn');
    expect(room.messages).toHaveLength(1);
    expect([...room.pins]).toEqual([room.messages[0]!.ts]);
    expect(fake.callsTo('conversations.create')).toHaveLength(1);
  });
});

describe('membership follows the roster', () => {
  it('invites an added member, kicks a removed one, and archives the channel on close', async () => {
    await declare(relay, ic, 'sapphire-unicorn');
    await putMember(relay, ic, 'sapphire-unicorn', 'sec@corp.example', {});
    await settle(relay);
    const room = channel(fake, 'sapphire-unicorn');
    expect(room.members.has(ws.users.sec)).toBe(true);

    expect((await relay.request.delete('/v1/incidents/sapphire-unicorn/roster/sec@corp.example').set(auth(ic))).status).toBe(204);
    await settle(relay);
    expect(room.members.has(ws.users.sec)).toBe(false);
    expect(room.members.has(fake.botUserId)).toBe(true);
    const kicked = await auditOf(relay, 'sapphire-unicorn', 'slack.kicked');
    expect(kicked.map((e) => [e.outcome, e.data])).toEqual([['ok', { channelId: room.id, slackUserId: ws.users.sec, email: 'sec@corp.example' }]]);
    const incidentId = (await relay.ctx.store.incidents.byCodename('sapphire-unicorn'))!.id;
    expect((await relay.ctx.store.incidents.member(incidentId, 'sec@corp.example'))!.slackStatus).toBe('removed');

    const closed = await relay.request.patch('/v1/incidents/sapphire-unicorn').set(auth(ic)).send({ status: 'closed' });
    expect(closed.status).toBe(200);
    await settle(relay);
    expect(room.archived).toBe(true);
    expect((await relay.request.get('/v1/incidents/sapphire-unicorn').set(auth(ic))).body.slack).toMatchObject({ state: 'archived', channelId: room.id });
    expect(await auditOf(relay, 'sapphire-unicorn', 'slack.archived')).toHaveLength(1);
  });

  it('leaves the channel open on close when RELAY_SLACK_ARCHIVE_ON_CLOSE is false', async () => {
    await relay.slack!.stop();
    relay = await slackRelay(fake, { slackArchiveOnClose: false });
    ic = await relay.tokenFor('ic@corp.example');
    await declare(relay, ic, 'sapphire-unicorn');
    await settle(relay);
    await relay.request.patch('/v1/incidents/sapphire-unicorn').set(auth(ic)).send({ status: 'closed' });
    await settle(relay);
    await relay.slack!.reconcileAll();
    expect(channel(fake, 'sapphire-unicorn').archived).toBe(false);
    expect(fake.callsTo('conversations.archive')).toHaveLength(0);
  });

  it('reports a member Slack does not know as slackStatus not_found, audited once', async () => {
    await declare(relay, ic, 'sapphire-unicorn');
    const put = await putMember(relay, ic, 'sapphire-unicorn', 'ghost@corp.example', {});
    expect(put.status).toBe(201);
    await settle(relay);

    const roster = await relay.request.get('/v1/incidents/sapphire-unicorn/roster').set(auth(ic));
    const ghost = roster.body.roster.find((m: { email: string }) => m.email === 'ghost@corp.example');
    expect(ghost.slackStatus).toBe('not_found');
    const sync = await relay.request.post('/v1/incidents/sapphire-unicorn/slack/sync').set(auth(ic));
    expect(sync.body.notFound).toEqual(['ghost@corp.example']);
    const audited = await auditOf(relay, 'sapphire-unicorn', 'slack.user_not_found');
    expect(audited.map((e) => [e.outcome, e.data])).toEqual([['failed', { email: 'ghost@corp.example' }]]);
  });

  it('reads every page of conversations.members', async () => {
    await fake.close();
    ws = await startWorkspace({ maxPageSize: 2 });
    fake = ws.fake;
    await relay.slack!.stop();
    relay = await slackRelay(fake);
    ic = await relay.tokenFor('ic@corp.example');
    await declare(relay, ic, 'sapphire-unicorn');
    await putMember(relay, ic, 'sapphire-unicorn', 'deputy@corp.example', { role: 'deputy' });
    await putMember(relay, ic, 'sapphire-unicorn', 'sec@corp.example', {});
    await settle(relay);
    fake.calls.length = 0;

    const sync = await relay.request.post('/v1/incidents/sapphire-unicorn/slack/sync').set(auth(ic));
    expect(sync.status).toBe(200);
    expect(sync.body).toMatchObject({ kicked: [], invited: [] });
    // bot + three members, two per page.
    expect(fake.callsTo('conversations.members')).toHaveLength(2);
  });
});

describe('a Slack outage', () => {
  it('never blocks the incident API; the room is failed with a reason, and recovers when Slack is back', async () => {
    const port = fake.port;
    await fake.close();

    const started = Date.now();
    const created = await declare(relay, ic, 'sapphire-unicorn');
    expect(created['slack']).toMatchObject({ state: 'pending' });
    expect((await putMember(relay, ic, 'sapphire-unicorn', 'sec@corp.example', {})).status).toBe(201);
    expect(Date.now() - started).toBeLessThan(2500);

    await settle(relay);
    const view = await relay.request.get('/v1/incidents/sapphire-unicorn').set(auth(ic));
    expect(view.body.slack.state).toBe('failed');
    expect(view.body.slack.reason).toMatch(/^auth\.test: unreachable \(ECONNREFUSED\)$/);
    const unavailable = await relay.request.post('/v1/incidents/sapphire-unicorn/slack/sync').set(auth(ic));
    expect(unavailable.status).toBe(503);
    expect(unavailable.body.error.code).toBe('unavailable');
    expect(unavailable.headers['retry-after']).toBe('1');

    fake = await startFakeSlack({ port });
    addPeople(fake);
    const sync = await relay.request.post('/v1/incidents/sapphire-unicorn/slack/sync').set(auth(ic));
    expect(sync.status).toBe(200);
    expect(sync.body).toMatchObject({ state: 'ready', name: 'sapphire-unicorn', reason: null });
    expect([...channel(fake, 'sapphire-unicorn').members].sort()).toEqual([fake.botUserId, ws.users.ic, ws.users.sec].sort());
  });
});
