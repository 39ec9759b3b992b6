/**
 * The delivery worker against what happens around it while an attempt runs,
 * on both backends, with a real upstream (smtp-server) and the real app:
 *
 * - a roster check that finds the delivery cancelled whole by a removal
 *   committed between its roster read and its own cancellation sends nothing;
 * - recipients cut from a delivery while its send was under way got it: their
 *   record says `sent`, not `cancelled`;
 * - an attempt whose checks fail before anything is sent or recorded gives its
 *   lease back, not due again before a backoff that grows, and is recorded
 *   failed past RELAY_DELIVERY_MAX_AGE (logged once per failure);
 * - a relay that stalled mid-send and the one that took its lease over both
 *   send: the second record is audited as a duplicate, the row keeps the first;
 * - stop() keeps renewing the leases of the sends it waits for, and waits for
 *   a look at the queue that is part-way through a claim (what it claimed is
 *   given back, never sent after stop() resolved).
 *
 * Where an interleaving has to be forced, the test wraps one method of the
 * real store to run the concurrent step at that point; nothing is mocked.
 */
import { pino } from 'pino';
import { afterEach, describe, expect, it } from 'vitest';
import { createSmtpChannel } from '../../src/channels/email/smtp.js';
import type { Delivery } from '../../src/store/outbox.js';
import { DeliveryWorker, type DeliveryContext } from '../../src/workers/delivery.js';
import { BACKENDS, createTestRelay, type TestRelay } from '../helpers/relay.js';
import { startUpstream, type Upstream } from '../helpers/upstream.js';

const sleep = (ms: number) => new Promise((resolve) => setTimeout(resolve, ms));

/** A real logger whose records are kept for the test to read. */
function capturingLogger(): { logger: DeliveryContext['logger']; lines: Array<{ level: number; msg: string; deliveryId?: string }> } {
  const lines: Array<{ level: number; msg: string; deliveryId?: string }> = [];
  const logger: DeliveryContext['logger'] = pino({ level: 'info' }, { write: (line: string) => void lines.push(JSON.parse(line)) });
  return { lines, logger };
}

const cleanups: Array<() => Promise<unknown> | unknown> = [];
afterEach(async () => {
  for (const c of cleanups.splice(0).reverse()) await c();
});

interface Setup {
  relay: TestRelay;
  upstream: Upstream;
  channel: ReturnType<typeof createSmtpChannel>;
  codename: string;
  incidentId: string;
  /** Commander's Authorization header. */
  ic: Record<string, string>;
  /** Sends `to` from a@corp.example through the API; the email's id. */
  send(to: string[]): Promise<string>;
  /** Removes a member through the API, as the commander. */
  remove(email: string): Promise<void>;
}

async function setup(backend: (typeof BACKENDS)[number]): Promise<Setup> {
  const upstream = await startUpstream();
  cleanups.push(() => upstream.stop());
  const relay = await createTestRelay({ smtpUpstream: upstream.url }, { backend });
  cleanups.push(() => relay.ctx.store.close());
  const channel = createSmtpChannel(upstream.url);
  cleanups.push(() => channel.close());
  const ic = { Authorization: `Bearer ${await relay.tokenFor('ic@corp.example')}` };
  const { body: incident } = await relay.request.post('/v1/incidents').set(ic).send({});
  for (const [email, role] of [['sec@corp.example', 'security'], ['a@corp.example', 'scribe'], ['b@corp.example', 'service-owner']]) {
    expect((await relay.request.put(`/v1/incidents/${incident.codename}/roster/${email}`).set(ic).send({ name: email, role })).status).toBe(201);
  }
  const a = { Authorization: `Bearer ${await relay.tokenFor('a@corp.example')}` };
  const codename = incident.codename as string;
  return {
    relay,
    upstream,
    channel,
    codename,
    incidentId: (await relay.ctx.store.incidents.byCodename(codename))!.id,
    ic,
    async send(to) {
      const res = await relay.request.post(`/v1/incidents/${codename}/emails`).set(a).send({ to, text: 'status update' });
      expect(res.status).toBe(202);
      return res.body.id as string;
    },
    async remove(email) {
      expect((await relay.request.delete(`/v1/incidents/${codename}/roster/${email}`).set(ic)).status).toBe(204);
    },
  };
}

/**
 * Forces an interleaving at the worker's first roster read, on the real store:
 * `before` runs, the roster is read (what the worker acts on), then `after`
 * runs before the worker goes on. `raced()` says whether it happened.
 */
function atFirstRosterRead(s: Setup, before: () => Promise<unknown>, after: () => Promise<unknown>): () => boolean {
  const { incidents } = s.relay.ctx.store;
  const roster = incidents.roster.bind(incidents);
  let raced = false;
  incidents.roster = async (id) => {
    if (raced) return roster(id);
    raced = true;
    await before();
    const seen = await roster(id);
    await after();
    return seen;
  };
  return () => raced;
}

const copies = async (s: Setup, emailId: string) =>
  (await s.relay.ctx.store.outbox.deliveriesOf(emailId)).map((d) => [d.status, d.recipients] as const).sort((x, y) => x[1].join().localeCompare(y[1].join()));

describe.each(BACKENDS)('delivery worker races (%s)', (backend) => {
  it('sends nothing when a removal cancels the whole delivery between its roster check and its own cancellation', async () => {
    const s = await setup(backend);
    const emailId = await s.send(['b@corp.example', 'sec@corp.example']);
    // The worker reads the roster just after b was removed; before it writes
    // b's cancellation, the sender a is removed too (on another relay, say),
    // which cancels the whole delivery.
    const raced = atFirstRosterRead(s, () => s.remove('b@corp.example'), () => s.remove('a@corp.example'));
    const worker = new DeliveryWorker(s.relay.ctx, { channels: { email: s.channel } });
    expect(await worker.runOnce()).toBe(1);
    expect(raced()).toBe(true);
    await sleep(200);
    expect(s.upstream.received).toEqual([]);
    expect(await copies(s, emailId)).toEqual([
      ['cancelled', ['b@corp.example']],
      ['cancelled', ['sec@corp.example']],
    ]);
    const events = await s.relay.ctx.store.audit.listForIncident(s.incidentId);
    expect(events.filter((e) => e.type === 'email.delivered')).toEqual([]);
  });

  it('records as sent the recipients cut from a delivery while its send was under way', async () => {
    const s = await setup(backend);
    const emailId = await s.send(['b@corp.example', 'sec@corp.example']);
    s.upstream.replyDelayMs = 1_000;
    const worker = new DeliveryWorker(s.relay.ctx, { channels: { email: s.channel } });
    const run = worker.runOnce();
    await sleep(400);
    // b leaves while the upstream is taking the message for b and sec.
    await s.remove('b@corp.example');
    expect(await copies(s, emailId)).toEqual([
      ['cancelled', ['b@corp.example']],
      ['queued', ['sec@corp.example']],
    ]);
    await run;
    expect(s.upstream.received.map((m) => m.to)).toEqual([['b@corp.example', 'sec@corp.example']]);
    // b got it: the record says so, with the upstream's id, not `cancelled`.
    expect(await copies(s, emailId)).toEqual([
      ['sent', ['b@corp.example']],
      ['sent', ['sec@corp.example']],
    ]);
    const ids = await s.relay.ctx.store.sql.all<{ provider_id: string | null }>('SELECT provider_id FROM deliveries WHERE email_id = ?', [emailId]);
    expect(new Set(ids.map((r) => r.provider_id)).size).toBe(1);
    expect(ids[0]!.provider_id).not.toBeNull();
    const events = await s.relay.ctx.store.audit.listForIncident(s.incidentId);
    expect(events.filter((e) => e.type === 'email.delivered').map((e) => e.data['cancelledWhileSending'])).toEqual([['b@corp.example']]);
    expect((await s.relay.request.get(`/v1/incidents/${s.codename}/emails/${emailId}`).set(s.ic)).body).toMatchObject({ status: 'sent' });
  });

  it('records as sent a delivery cancelled whole (its sender left) while its send was under way', async () => {
    const s = await setup(backend);
    const emailId = await s.send(['b@corp.example', 'sec@corp.example']);
    s.upstream.replyDelayMs = 1_000;
    const worker = new DeliveryWorker(s.relay.ctx, { channels: { email: s.channel } });
    const run = worker.runOnce();
    await sleep(400);
    await s.remove('a@corp.example');
    expect(await copies(s, emailId)).toEqual([['cancelled', ['b@corp.example', 'sec@corp.example']]]);
    await run;
    expect(s.upstream.received).toHaveLength(1);
    expect(await copies(s, emailId)).toEqual([['sent', ['b@corp.example', 'sec@corp.example']]]);
    const events = await s.relay.ctx.store.audit.listForIncident(s.incidentId);
    expect(events.filter((e) => e.type === 'email.delivered').map((e) => e.data['cancelledWhileSending'])).toEqual([['b@corp.example', 'sec@corp.example']]);
  });

  it('gives the lease back, with a growing backoff, when the checks before sending fail', async () => {
    const s = await setup(backend);
    await s.send(['sec@corp.example']);
    const { store } = s.relay.ctx;
    // The roster read fails (as a store that errors on reads would): nothing is sent or recorded.
    await store.sql.exec('ALTER TABLE roster RENAME TO roster_away');
    const worker = new DeliveryWorker(s.relay.ctx, { channels: { email: s.channel }, baseBackoffMs: 10_000, random: () => 0 });
    const row = () => store.sql.get<{ owner: string | null; next: number; attempts: number; status: string }>(
      'SELECT lease_owner AS owner, next_attempt_ms AS next, attempts, status FROM deliveries',
    );
    const t0 = s.relay.clock.now().getTime();
    expect(await worker.runOnce()).toBe(1);
    expect(await row()).toEqual({ owner: null, next: t0 + 5_000, attempts: 0, status: 'queued' });
    // Not due again before the backoff: no spinning on a failing read.
    expect(await worker.runOnce()).toBe(0);
    s.relay.clock.advance(5_000);
    expect(await worker.runOnce()).toBe(1);
    expect(await row()).toEqual({ owner: null, next: t0 + 5_000 + 10_000, attempts: 0, status: 'queued' });
    // The store reads again: the delivery is taken and sent.
    await store.sql.exec('ALTER TABLE roster_away RENAME TO roster');
    s.relay.clock.advance(10_000);
    expect(await worker.runOnce()).toBe(1);
    expect(s.upstream.received).toHaveLength(1);
    expect(await row()).toMatchObject({ owner: null, attempts: 1, status: 'sent' });
  });

  it('records as failed, audited, a delivery whose checks before sending still fail past RELAY_DELIVERY_MAX_AGE; a store that cannot write that retries it', async () => {
    const s = await setup(backend);
    const emailId = await s.send(['sec@corp.example']);
    const { store } = s.relay.ctx;
    s.relay.ctx.config.deliveryMaxAge = 60_000;
    await store.sql.exec('ALTER TABLE roster RENAME TO roster_away');
    const worker = new DeliveryWorker(s.relay.ctx, { channels: { email: s.channel }, baseBackoffMs: 10_000, random: () => 0 });
    const row = () => store.sql.get<{ owner: string | null; next: number; attempts: number; status: string; error: string | null }>(
      'SELECT lease_owner AS owner, next_attempt_ms AS next, attempts, status, last_error AS error FROM deliveries',
    );
    const t0 = s.relay.clock.now().getTime();
    // Within the max age: given back for a retry.
    expect(await worker.runOnce()).toBe(1);
    expect(await row()).toEqual({ owner: null, next: t0 + 5_000, attempts: 0, status: 'queued', error: null });
    // Past it, and the store cannot write the failure either (its audit log is gone): given back again, nothing lost.
    s.relay.clock.advance(60_000);
    await store.sql.exec('ALTER TABLE audit_events RENAME TO audit_away');
    expect(await worker.runOnce()).toBe(1);
    expect(await row()).toEqual({ owner: null, next: t0 + 70_000, attempts: 0, status: 'queued', error: null });
    await store.sql.exec('ALTER TABLE audit_away RENAME TO audit_events');
    // The store writes again; the checks still fail: recorded failed, with its reason, and audited.
    s.relay.clock.advance(10_000);
    expect(await worker.runOnce()).toBe(1);
    const error = "gave up after RELAY_DELIVERY_MAX_AGE: the checks before sending kept failing (the relay's log says why)";
    expect(await row()).toEqual({ owner: null, next: t0 + 70_000, attempts: 1, status: 'failed', error });
    s.relay.clock.advance(3_600_000);
    expect(await worker.runOnce()).toBe(0);
    expect(s.upstream.received).toEqual([]);
    await store.sql.exec('ALTER TABLE roster_away RENAME TO roster');
    const events = await store.audit.listForIncident(s.incidentId);
    expect(events.filter((e) => e.type === 'email.delivery_failed').map((e) => [e.outcome, e.data])).toEqual([
      ['failed', { deliveryId: expect.any(String), emailId, attempt: 1, error, reason: 'checks_failed_before_send' }],
    ]);
    expect((await store.audit.verify()).ok).toBe(true);
    expect((await s.relay.request.get(`/v1/incidents/${s.codename}/emails/${emailId}`).set(s.ic)).body).toMatchObject({ status: 'failed', lastError: error });
  });

  it('logs a roster check whose write failed once, not once per layer', async () => {
    const s = await setup(backend);
    await s.send(['b@corp.example', 'sec@corp.example']);
    const { store } = s.relay.ctx;
    // The worker sees b gone; before it writes b's cancellation the store stops answering (its table is away).
    const raced = atFirstRosterRead(s, () => s.remove('b@corp.example'), () => store.sql.exec('ALTER TABLE deliveries RENAME TO deliveries_away'));
    const { logger, lines } = capturingLogger();
    const worker = new DeliveryWorker({ ...s.relay.ctx, logger }, { channels: { email: s.channel } });
    expect(await worker.runOnce()).toBe(1);
    await store.sql.exec('ALTER TABLE deliveries_away RENAME TO deliveries');
    expect(raced()).toBe(true);
    const errors = lines.filter((l) => l.level >= 50);
    expect(errors.map((l) => l.msg)).toEqual(['delivery checks failed before sending; the lease is given back']);
    expect(errors[0]!.deliveryId).toEqual(expect.any(String));
    expect(s.upstream.received).toEqual([]);
  });

  /** Two workers (relay-a, relay-b) on this relay's store, each with its own channel: relay-a's send is slow and its lease is made to run out, relay-b takes the delivery over. */
  async function stalledAndTaker(s: Setup) {
    const other = createSmtpChannel(s.upstream.url);
    cleanups.push(() => other.close());
    const a = new DeliveryWorker({ ...s.relay.ctx, replicaId: 'relay-a' }, { channels: { email: s.channel } });
    const b = new DeliveryWorker({ ...s.relay.ctx, replicaId: 'relay-b' }, { channels: { email: other } });
    s.upstream.replyDelayMs = 1_500;
    const runA = a.runOnce();
    await sleep(400);
    // relay-a stalls: it renews nothing, and its lease runs out.
    await s.relay.ctx.store.sql.run('UPDATE deliveries SET lease_until_ms = 0');
    return { runA, b };
  }

  it('audits a second real send as a duplicate when the relay that took the delivery over recorded its own send first', async () => {
    const s = await setup(backend);
    const emailId = await s.send(['sec@corp.example']);
    const { runA, b } = await stalledAndTaker(s);
    // relay-b sends too: its upstream reply comes after relay-a's, which records first.
    expect(await b.runOnce()).toBe(1);
    expect(await runA).toBe(1);
    expect(s.upstream.received).toHaveLength(2);
    // The row keeps relay-a's record (the first written).
    const row = await s.relay.ctx.store.sql.get<{ status: string; attempts: number; owner: string | null; providerId: string; sentAt: string }>(
      'SELECT status, attempts, lease_owner AS owner, provider_id AS "providerId", sent_at AS "sentAt" FROM deliveries',
    );
    expect(row).toMatchObject({ status: 'sent', attempts: 1, owner: null });
    const events = (await s.relay.ctx.store.audit.listForIncident(s.incidentId)).filter((e) => e.type === 'email.delivered');
    // Both sends are in the log: the second says it is one, and which record it met.
    expect(events.map((e) => e.data)).toEqual([
      { deliveryId: expect.any(String), emailId, attempt: 1, providerId: row!.providerId },
      { deliveryId: expect.any(String), emailId, attempt: 1, providerId: expect.any(String), duplicate: true, recordedAs: 'sent', recordedProviderId: row!.providerId },
    ]);
    expect(events[1]!.data['providerId']).not.toBe(row!.providerId);
    expect((await s.relay.ctx.store.audit.verify()).ok).toBe(true);
  });

  it('records as sent, audited, a send the upstream took after the relay that took the delivery over recorded it failed', async () => {
    const s = await setup(backend);
    const emailId = await s.send(['sec@corp.example']);
    const { runA, b } = await stalledAndTaker(s);
    // relay-b's send is refused for good (relay-a's is past RCPT TO, waiting for its reply to DATA).
    s.upstream.refuseRecipients.set('sec@corp.example', 550);
    expect(await b.runOnce()).toBe(1);
    expect(await s.relay.ctx.store.sql.get('SELECT status, lease_owner AS owner FROM deliveries')).toEqual({ status: 'failed', owner: null });
    expect(await runA).toBe(1);
    expect(s.upstream.received).toHaveLength(1);
    // It arrived: the record says sent (with the upstream's id), not failed, so nobody sends it again.
    expect(await copies(s, emailId)).toEqual([['sent', ['sec@corp.example']]]);
    const row = await s.relay.ctx.store.sql.get<{ provider_id: string | null; last_error: string | null }>('SELECT provider_id, last_error FROM deliveries');
    const events = (await s.relay.ctx.store.audit.listForIncident(s.incidentId)).filter((e) => e.type === 'email.delivered' || e.type === 'email.delivery_failed');
    expect(events.map((e) => [e.type, e.data['duplicate'] ?? null, e.data['correctedFrom'] ?? null])).toEqual([
      ['email.delivery_failed', null, null],
      ['email.delivered', null, 'failed'],
    ]);
    expect(row).toEqual({ provider_id: events[1]!.data['providerId'], last_error: null });
    expect(row!.provider_id).toEqual(expect.any(String));
  });

  it('a retried outcome write that finds its own earlier try committed adds nothing: no duplicate', async () => {
    const s = await setup(backend);
    await s.send(['sec@corp.example']);
    const { store } = s.relay.ctx;
    const grouped = store.grouped.bind(store);
    let lost = false;
    // The outcome commits, and the answer is lost on the way back (a dropped connection): the worker keeps it to write again.
    store.grouped = async <T>(write: Parameters<typeof grouped<T>>[0]): Promise<T> => {
      const done = await grouped(write);
      if (!lost) {
        lost = true;
        throw new Error('connection lost after commit');
      }
      return done;
    };
    const worker = new DeliveryWorker(s.relay.ctx, { channels: { email: s.channel } });
    expect(await worker.runOnce()).toBe(1);
    expect(lost).toBe(true);
    expect(worker.unrecordedCount).toBe(1);
    await worker.stop();
    expect(worker.unrecordedCount).toBe(0);
    expect(s.upstream.received).toHaveLength(1);
    const events = (await store.audit.listForIncident(s.incidentId)).filter((e) => e.type === 'email.delivered');
    expect(events.map((e) => e.data['duplicate'] ?? false)).toEqual([false]);
  });

  it('stop() keeps the lease of a slow send alive until it is recorded, so nobody else sends it meanwhile', async () => {
    const s = await setup(backend);
    const emailId = await s.send(['sec@corp.example']);
    s.upstream.replyDelayMs = 1_500;
    const { store } = s.relay.ctx;
    // The relay's clock runs with real time: a 300 ms lease expires unless renewed.
    const clock = s.relay.clock;
    const base = clock.current.getTime();
    const startedAt = Date.now();
    const ticker = setInterval(() => (clock.current = new Date(base + Date.now() - startedAt)), 10);
    cleanups.push(() => clearInterval(ticker));
    const worker = new DeliveryWorker(s.relay.ctx, { channels: { email: s.channel }, pollMs: 50, leaseMs: 300 });
    await worker.start();
    while ((await store.outbox.leasedBy(s.relay.ctx.replicaId)) === 0) await sleep(10);
    await sleep(100);
    const stopped = worker.stop();
    // Well past the lease: another relay looks at the queue.
    await sleep(900);
    expect(await store.outbox.claim('relay-other', clock.now(), 10, 300)).toEqual([]);
    await stopped;
    expect(s.upstream.received).toHaveLength(1);
    expect(await copies(s, emailId)).toEqual([['sent', ['sec@corp.example']]]);
  });

  it('stop() waits for a look at the queue part-way through its claim, and gives back what it claimed', async () => {
    const s = await setup(backend);
    const emailId = await s.send(['sec@corp.example']);
    const { outbox } = s.relay.ctx.store;
    const claim = outbox.claim.bind(outbox);
    let claimed!: () => void;
    const inClaim = new Promise<void>((resolve) => (claimed = resolve));
    let finishClaim!: () => void;
    const gate = new Promise<void>((resolve) => (finishClaim = resolve));
    // The claim is committed, and its answer is slow to come back (a busy database).
    outbox.claim = async (...args): Promise<Delivery[]> => {
      const got = await claim(...args);
      if (got.length > 0) {
        claimed();
        await gate;
      }
      return got;
    };
    const worker = new DeliveryWorker(s.relay.ctx, { channels: { email: s.channel }, pollMs: 50 });
    await worker.start();
    await inClaim;
    let stopped = false;
    const stopping = worker.stop().then(() => (stopped = true));
    await sleep(200);
    expect(stopped).toBe(false);
    finishClaim();
    await stopping;
    // Given back, not sent: not after stop(), and not later either.
    expect(await outbox.leasedBy(s.relay.ctx.replicaId)).toBe(0);
    await sleep(300);
    expect(s.upstream.received).toEqual([]);
    expect(await copies(s, emailId)).toEqual([['queued', ['sec@corp.example']]]);
  });
});
