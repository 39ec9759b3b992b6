/**
 * Reopening an incident (issue 12 §5) brings its Slack room back. Slack does
 * not let a bot unarchive a channel, so the reopened incident gets a new
 * private room named by the codename (with a suffix: the archived channel
 * keeps the plain name), with the fixed topic, the welcome and the roster;
 * a room that was never archived is simply reconciled. Against the fake Slack.
 */
import { afterEach, beforeEach, describe, expect, it } from 'vitest';
import type { FakeSlack } from '../../helpers/fake-slack.js';
import type { TestRelay } from '../../helpers/relay.js';
import { auditOf, auth, channel, declare, putMember, settle, slackRelay, startWorkspace, type Workspace } from './harness.js';

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

const patch = (body: Record<string, unknown>) => relay.request.patch('/v1/incidents/sapphire-unicorn').set(auth(ic)).send(body);

describe('reopening an incident', () => {
  it('gives it a new private room in place of the archived one: codename name, exact topic, welcome, the roster invited', async () => {
    await declare(relay, ic, 'sapphire-unicorn');
    expect((await putMember(relay, ic, 'sapphire-unicorn', 'sec@corp.example', {})).status).toBe(201);
    await settle(relay);
    const first = channel(fake, 'sapphire-unicorn');
    expect((await patch({ status: 'closed' })).status).toBe(200);
    await settle(relay);
    expect(first.archived).toBe(true);

    const reopened = await patch({ status: 'open' });
    expect(reopened.status).toBe(200);
    await settle(relay);
    const room = channel(fake, 'sapphire-unicorn-2');
    expect(room.isPrivate).toBe(true);
    expect(room.archived).toBe(false);
    expect(room.topic).toBe('Attorney Work Project | sapphire-unicorn');
    expect(room.messages).toHaveLength(1);
    expect(room.pins.has(room.messages[0]!.ts)).toBe(true);
    expect([...room.members].sort()).toEqual([fake.botUserId, ws.users.ic, ws.users.sec].sort());
    // The archived room is left as it was: its history stays where it is.
    expect(first.archived).toBe(true);
    expect(fake.callsTo('conversations.unarchive')).toHaveLength(0);
    expect((await relay.request.get('/v1/incidents/sapphire-unicorn').set(auth(ic))).body.slack).toMatchObject({ state: 'ready', channelId: room.id, name: 'sapphire-unicorn-2', reason: null });
    expect((await auditOf(relay, 'sapphire-unicorn', 'slack.room_replaced')).map((e) => e.data)).toEqual([{ previousChannelId: first.id, reason: 'incident_reopened' }]);
    expect((await auditOf(relay, 'sapphire-unicorn', 'slack.channel_created')).map((e) => e.data['name'])).toEqual(['sapphire-unicorn', 'sapphire-unicorn-2']);

    // The roster keeps driving the new room.
    expect((await putMember(relay, ic, 'sapphire-unicorn', 'deputy@corp.example', { role: 'deputy' })).status).toBe(201);
    await settle(relay);
    expect(room.members.has(ws.users.deputy)).toBe(true);
    // And closing again archives the new one.
    await patch({ status: 'closed' });
    await settle(relay);
    expect(room.archived).toBe(true);
  });

  it('keeps the same room when it was never archived (RELAY_SLACK_ARCHIVE_ON_CLOSE=false)', async () => {
    await relay.slack!.stop();
    relay = await slackRelay(fake, { slackArchiveOnClose: false });
    ic = await relay.tokenFor('ic@corp.example');
    await declare(relay, ic, 'sapphire-unicorn');
    await settle(relay);
    await patch({ status: 'closed' });
    await settle(relay);
    await patch({ status: 'open' });
    await settle(relay);
    expect(fake.callsTo('conversations.create')).toHaveLength(1);
    expect(channel(fake, 'sapphire-unicorn').archived).toBe(false);
    expect((await relay.request.get('/v1/incidents/sapphire-unicorn').set(auth(ic))).body.slack).toMatchObject({ state: 'ready', name: 'sapphire-unicorn' });
    expect(await auditOf(relay, 'sapphire-unicorn', 'slack.room_replaced')).toEqual([]);
  });
});
