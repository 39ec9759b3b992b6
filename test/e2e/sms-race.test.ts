/**
 * Two nudge requests with the same Idempotency-Key that race on PostgreSQL
 * (review of the accept path, item 7). Both get past the replay check before
 * either commits; the second then loses the insert of the key. It must answer
 * what the first answered and record nothing of its own: before, it answered
 * its own decision (here: "recently nudged") and audited a second
 * sms.decision.
 *
 * The race is made certain, not hoped for: the test holds the advisory lock
 * the nudge transaction takes on its target until both requests wait on it.
 * PostgreSQL only: on SQLite the write lock is taken up front, so the second
 * request sees the first one's key.
 */
import { afterEach, beforeEach, describe, expect, it } from 'vitest';
import { createTestRelay, type TestRelay } from '../helpers/relay.js';

const auth = (token: string) => ({ Authorization: `Bearer ${token}` });
const PHONE = '+15555550101';

describe('two same-key nudge requests racing (postgres)', () => {
  let relay: TestRelay;
  let ic: string;
  let codename: string;

  beforeEach(async () => {
    relay = await createTestRelay({ smsNudgeInterval: 5 * 60_000 }, { backend: 'postgres' });
    ic = await relay.tokenFor('ic@corp.example');
    codename = (await relay.request.post('/v1/incidents').set(auth(ic)).send({})).body.codename;
    const put = await relay.request.put(`/v1/incidents/${codename}/roster/sec@corp.example`).set(auth(ic)).send({ name: 'sec', role: 'security', phone: PHONE });
    expect(put.status).toBe(201);
  });

  afterEach(async () => {
    await relay.ctx.store.close();
  });

  async function waitingOnLocks(): Promise<number> {
    const row = await relay.ctx.store.sql.get<{ n: number | string }>("SELECT COUNT(*) AS n FROM pg_stat_activity WHERE datname = current_database() AND wait_event_type = 'Lock' AND wait_event = 'advisory'");
    return Number(row!.n);
  }

  it('both get the first answer, one nudge is queued and one sms.decision recorded', async () => {
    let release!: () => void;
    const released = new Promise<void>((resolve) => (release = resolve));
    let held!: () => void;
    const holding = new Promise<void>((resolve) => (held = resolve));
    // The same advisory lock a nudge to sec takes, held by another transaction.
    const holder = relay.ctx.store.transaction(async (tx) => {
      await tx.sms.lockNudgeTargets([{ email: 'sec@corp.example', phone: PHONE }]);
      held();
      await released;
    });
    await holding;
    const send = () => relay.request.post(`/v1/incidents/${codename}/sms`).set(auth(ic)).set('Idempotency-Key', 'nudge-race').send({ to: ['sec@corp.example'] }).then((r) => r);
    const answers = [send(), send()];
    // Both requests are past their replay checks and wait on the lock.
    for (let i = 0; (await waitingOnLocks()) < 2; i++) {
      expect(i).toBeLessThan(500);
      await new Promise((r) => setTimeout(r, 10));
    }
    release();
    await holder;
    const [a, b] = await Promise.all(answers);
    expect([a!.status, b!.status]).toEqual([202, 202]);
    expect(a!.body).toEqual({ results: [{ email: 'sec@corp.example', status: 'queued' }] });
    expect(b!.body).toEqual(a!.body);
    expect(Number((await relay.ctx.store.sql.get<{ n: number | string }>('SELECT COUNT(*) AS n FROM deliveries'))!.n)).toBe(1);
    const decisions = await relay.ctx.store.sql.all<{ outcome: string }>("SELECT outcome FROM audit_events WHERE type = 'sms.decision'");
    expect(decisions.map((d) => d.outcome)).toEqual(['ok']);
  });
});
