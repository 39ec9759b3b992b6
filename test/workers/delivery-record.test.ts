/**
 * A send the upstream took, whose outcome the store could not record (issue
 * 10 §11): the delivery stays queued (at-least-once: a crash now means it is
 * sent again), but this relay does not send it again and again while the
 * store refuses writes; it keeps the outcome and records it once the store
 * accepts writes again. It is never turned into a failure, even past
 * RELAY_DELIVERY_MAX_AGE.
 *
 * The store fails for real: a trigger makes the database itself refuse every
 * change of a delivery's status (the outcome write), while claims, lease
 * renewals and reads still work, so nothing but the worker's own rule stands
 * between a refused write and another send.
 */
import { afterEach, describe, expect, it } from 'vitest';
import { createSmtpChannel } from '../../src/channels/email/smtp.js';
import type { Store } from '../../src/store/index.js';
import { DeliveryWorker } from '../../src/workers/delivery.js';
import { BACKENDS, createTestRelay, type TestRelay } from '../helpers/relay.js';
import { startUpstream, type Upstream } from '../helpers/upstream.js';

const sleep = (ms: number) => new Promise((resolve) => setTimeout(resolve, ms));

let upstream: Upstream | undefined;
let channel: ReturnType<typeof createSmtpChannel> | undefined;
let worker: DeliveryWorker | undefined;
let ticker: NodeJS.Timeout | undefined;
let relay: TestRelay | undefined;
afterEach(async () => {
  clearInterval(ticker);
  await worker?.stop();
  channel?.close();
  await upstream?.stop();
  await relay?.ctx.store.close();
  worker = undefined;
  relay = undefined;
});

const REFUSAL = 'disk I/O error (test: outcome writes refused)';

/** Makes the database refuse every change of a delivery's status, as a failing disk would refuse the write. */
async function refuseOutcomeWrites(store: Store): Promise<void> {
  if (store.dialect === 'postgres') {
    await store.sql.exec(`CREATE FUNCTION test_refuse_outcomes() RETURNS trigger LANGUAGE plpgsql AS $$ BEGIN RAISE EXCEPTION '${REFUSAL}'; END $$;
      CREATE TRIGGER test_refuse_outcomes BEFORE UPDATE OF status ON deliveries FOR EACH ROW EXECUTE FUNCTION test_refuse_outcomes();`);
  } else {
    await store.sql.exec(`CREATE TRIGGER test_refuse_outcomes BEFORE UPDATE OF status ON deliveries BEGIN SELECT RAISE(ABORT, '${REFUSAL}'); END;`);
  }
}

async function acceptWritesAgain(store: Store): Promise<void> {
  await store.sql.exec(store.dialect === 'postgres' ? 'DROP TRIGGER test_refuse_outcomes ON deliveries' : 'DROP TRIGGER test_refuse_outcomes');
}

interface Row {
  status: string;
  attempts: number;
  hasBody: number;
}
const deliveryRow = async (store: Store): Promise<Row | undefined> =>
  store.sql.get<Row>('SELECT status, attempts, CASE WHEN body IS NULL THEN 0 ELSE 1 END AS "hasBody" FROM deliveries');

describe('recording a delivery outcome fails', () => {
  it.each(BACKENDS)('sends once while the store refuses the outcome, records it when the store recovers, never marks it failed (%s)', async (backend) => {
    upstream = await startUpstream();
    relay = await createTestRelay({ smtpUpstream: upstream.url }, { backend });
    const { store } = relay.ctx;
    channel = createSmtpChannel(upstream.url);
    // A short lease and a fast poll: a worker that went back to the queue
    // while an outcome is unrecorded would claim and send it again within
    // a fraction of a second, many times over the seconds watched below.
    worker = new DeliveryWorker(relay.ctx, { channels: { email: channel }, pollMs: 50, leaseMs: 300 });
    const ic = await relay.tokenFor('ic@corp.example');
    const auth = { Authorization: `Bearer ${ic}` };
    const { body } = await relay.request.post('/v1/incidents').set(auth).send({});
    await relay.request.put(`/v1/incidents/${body.codename}/roster/sec@corp.example`).set(auth).send({ name: 'Sec', role: 'security' });
    const sent = await relay.request.post(`/v1/incidents/${body.codename}/emails`).set(auth).send({ to: ['sec@corp.example'], text: 'x' });
    expect(sent.status).toBe(202);
    // Any retry would already be past the maximum age.
    relay.ctx.config.deliveryMaxAge = 1;

    // The relay's clock runs with real time (leases expire, write retries fall due), plus whatever the test adds.
    const clock = relay.clock;
    const base = clock.current.getTime();
    const startedAt = Date.now();
    let skipped = 0;
    ticker = setInterval(() => (clock.current = new Date(base + skipped + Date.now() - startedAt)), 10);

    await refuseOutcomeWrites(store);
    await worker.start();
    await upstream.waitFor(1);
    // A few seconds of refused writes: the outcome write is retried (and refused) several times meanwhile.
    await sleep(3_000);
    expect(upstream.received, 'sent exactly once while the outcome could not be recorded').toHaveLength(1);
    expect(worker.unrecordedCount).toBe(1);
    // Still queued, body kept (a crash now means it is sent again: at-least-once), never failed.
    expect(await deliveryRow(store)).toEqual({ status: 'queued', attempts: 0, hasBody: 1 });
    expect((await relay.request.get(`/v1/incidents/${body.codename}/emails/${sent.body.id}`).set(auth)).body).toMatchObject({ status: 'queued' });

    // The store takes writes again: the kept outcome is written (time passes; the worker is woken rather than waited for).
    await acceptWritesAgain(store);
    skipped += 60_000;
    worker.notify();
    const deadline = Date.now() + 10_000;
    while ((await deliveryRow(store))?.status === 'queued' && Date.now() < deadline) await sleep(50);
    expect(await deliveryRow(store)).toEqual({ status: 'sent', attempts: 1, hasBody: 0 });
    expect(worker.unrecordedCount).toBe(0);
    const status = await relay.request.get(`/v1/incidents/${body.codename}/emails/${sent.body.id}`).set(auth);
    expect(status.body).toMatchObject({ id: sent.body.id, status: 'sent', attempts: 1, deliveries: [{ status: 'sent', attempts: 1 }] });
    expect(status.body).not.toHaveProperty('lastError');
    // Recorded once, and the upstream still got it once.
    const incident = (await store.incidents.byCodename(body.codename))!;
    const events = await store.audit.listForIncident(incident.id);
    expect(events.filter((e) => e.type === 'email.delivered')).toHaveLength(1);
    expect(events.filter((e) => e.type === 'email.delivery_failed')).toEqual([]);
    expect(upstream.received).toHaveLength(1);
    expect((await store.audit.verify()).ok).toBe(true);
  }, 30_000);
});
