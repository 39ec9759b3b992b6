/** Shared set-up for the Slack room tests: a fake Slack, a relay wired to it, and small helpers. */
import { expect } from 'vitest';
import type { RelayConfig } from '../../../src/config.js';
import type { Dialect } from '../../../src/store/sql.js';
import type { AuditEvent } from '../../../src/store/audit.js';
import { startFakeSlack, type FakeChannel, type FakeSlack, type FakeSlackOptions } from '../../helpers/fake-slack.js';
import { createTestRelay, type TestRelay } from '../../helpers/relay.js';

/** Backoff small enough to keep tests fast; the logic is the production one. */
export const FAST_QUEUE = { backoffBaseMs: 5, backoffMaxMs: 20, maxAttempts: 3 };

/** Bearer header. */
export const auth = (token: string): { Authorization: string } => ({ Authorization: `Bearer ${token}` });

/** A fake workspace where the commander and two responders have Slack accounts. */
export interface Workspace {
  fake: FakeSlack;
  users: { ic: string; deputy: string; sec: string };
}

/** Starts a fake Slack with the usual people in it. */
export async function startWorkspace(options: FakeSlackOptions = {}): Promise<Workspace> {
  const fake = await startFakeSlack(options);
  return { fake, users: addPeople(fake) };
}

/** Registers the usual people in a (possibly restarted) fake. */
export function addPeople(fake: FakeSlack): Workspace['users'] {
  return { ic: fake.addUser('ic@corp.example', 'UIC0000001'), deputy: fake.addUser('deputy@corp.example', 'UDEPUTY001'), sec: fake.addUser('sec@corp.example', 'USEC000001') };
}

/** A relay with Slack on, pointed at `fake`, on the default store backend or the one given. */
export function slackRelay(fake: FakeSlack, config: Partial<RelayConfig> = {}, backend?: Dialect): Promise<TestRelay> {
  return createTestRelay({ slackBotToken: fake.token, slackApiUrl: fake.url, slackSyncInterval: 200, ...config }, { slack: { queue: FAST_QUEUE }, ...(backend !== undefined ? { backend } : {}) });
}

/** Declares an incident as `token`, expecting 201; returns the answer body. */
export async function declare(relay: TestRelay, token: string, codename?: string): Promise<Record<string, unknown>> {
  const res = await relay.request.post('/v1/incidents').set(auth(token)).send(codename === undefined ? {} : { codename });
  expect(res.status).toBe(201);
  return res.body as Record<string, unknown>;
}

/** PUTs a roster member; returns the response. */
export function putMember(relay: TestRelay, token: string, codename: string, email: string, body: Record<string, unknown>) {
  return relay.request.put(`/v1/incidents/${codename}/roster/${email}`).set(auth(token)).send({ name: email.split('@')[0], role: 'security', ...body });
}

/** Waits until every queued room task is done. */
export function settle(relay: TestRelay): Promise<void> {
  return relay.slack!.idle();
}

/** The channel by name, failing the test when it does not exist. */
export function channel(fake: FakeSlack, name: string): FakeChannel {
  const found = fake.channelByName(name);
  expect(found, `channel #${name}`).toBeDefined();
  return found!;
}

/** The incident's audit events of `type`. */
export async function auditOf(relay: TestRelay, codename: string, type: string): Promise<AuditEvent[]> {
  const incident = await relay.ctx.store.incidents.byCodename(codename);
  expect(incident, `incident ${codename}`).toBeDefined();
  return (await relay.ctx.store.audit.listForIncident(incident!.id)).filter((e) => e.type === type);
}

/** Polls `predicate` (which may read the store) every 10ms; fails after `timeoutMs`. */
export async function waitFor(predicate: () => boolean | Promise<boolean>, timeoutMs: number, what: string): Promise<void> {
  const deadline = Date.now() + timeoutMs;
  while (!(await predicate())) {
    if (Date.now() > deadline) throw new Error(`timed out after ${timeoutMs}ms waiting for ${what}`);
    await new Promise((r) => setTimeout(r, 10));
  }
}
