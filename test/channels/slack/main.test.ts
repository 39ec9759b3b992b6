/**
 * The composition root's Slack wiring: startRelay with SLACK_BOT_TOKEN and
 * SLACK_API_URL builds the room over the real client, hooks it into the
 * incident API, runs the watchdog, and stops it on shutdown.
 */
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { pino } from 'pino';
import supertest from 'supertest';
import { afterEach, beforeEach, expect, it } from 'vitest';
import { testConfig } from '../../../src/config.js';
import { startRelay, type RunningRelay } from '../../../src/main.js';
import type { FakeSlack } from '../../helpers/fake-slack.js';
import { auth, startWorkspace, waitFor, type Workspace } from './harness.js';

const ADMIN = 'admin-token-for-the-slack-wiring-test-0123456789';

let ws: Workspace;
let fake: FakeSlack;
let relay: RunningRelay | undefined;
let dataDir: string;

beforeEach(async () => {
  ws = await startWorkspace();
  fake = ws.fake;
  dataDir = fs.mkdtempSync(path.join(os.tmpdir(), 'relay-slack-'));
});

afterEach(async () => {
  await relay?.stop();
  await fake.close();
  fs.rmSync(dataDir, { recursive: true, force: true });
});

it('startRelay wires the room and its watchdog when SLACK_BOT_TOKEN is set', async () => {
  const config = testConfig({
    dataDir,
    httpPort: 0,
    keysDir: undefined,
    internalDomains: ['corp.example'],
    mailDomain: 'corp.example',
    adminToken: ADMIN,
    slackBotToken: fake.token,
    slackApiUrl: fake.url,
    slackSyncInterval: 200,
  });
  relay = await startRelay(config, pino({ level: 'silent' }));
  const api = supertest(`http://127.0.0.1:${relay.httpPort}`);

  const created = await api.post('/v1/incidents').set(auth(ADMIN)).send({ commander: 'ic@corp.example', codename: 'sapphire-unicorn' });
  expect(created.status).toBe(201);
  expect(created.body.slack).toMatchObject({ state: 'pending' });

  await waitFor(() => fake.channelByName('sapphire-unicorn')?.members.has(ws.users.ic) === true, 5000, 'the room to be set up');
  const room = fake.channelByName('sapphire-unicorn')!;
  // Slack shows the invite before the relay has recorded its answer.
  const incident = await relay.ctx.store.incidents.byCodename('sapphire-unicorn');
  expect(incident).toBeDefined();
  await waitFor(async () => (await relay!.ctx.store.slackChannels.get(incident!.id))?.state === 'ready', 5000, 'the room to be ready');
  expect(room.isPrivate).toBe(true);
  expect(room.topic).toBe('Attorney Work Project | sapphire-unicorn');

  fake.addMember(room.id, 'UINTRUDER1');
  await waitFor(() => !room.members.has('UINTRUDER1'), 2000, 'the watchdog to kick the intruder');

  const view = await api.get('/v1/incidents/sapphire-unicorn').set(auth(ADMIN));
  expect(view.body.slack).toEqual({ state: 'ready', channelId: room.id, name: 'sapphire-unicorn', reason: null });

  await relay.stop();
  relay = undefined;
  const calls = fake.calls.length;
  await new Promise((r) => setTimeout(r, 500));
  expect(fake.calls.length).toBe(calls);
});
