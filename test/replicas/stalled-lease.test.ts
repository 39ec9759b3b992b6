/**
 * Two relays on one PostgreSQL database, one of which stalls mid-send: its
 * lease runs out and the other relay takes the delivery over. The upstream
 * did take the first relay's send, so that relay still records it `sent`
 * (an outcome the upstream has is never lost for want of a lease), and the
 * relay that took over, finding it sent, does not send it again.
 */
import { afterEach, describe, expect, it } from 'vitest';
import { createSmtpChannel } from '../../src/channels/email/smtp.js';
import { DeliveryWorker } from '../../src/workers/delivery.js';
import { freshDatabaseUrl } from '../helpers/postgres.js';
import { createTestRelay } from '../helpers/relay.js';
import { startUpstream } from '../helpers/upstream.js';

const sleep = (ms: number) => new Promise((resolve) => setTimeout(resolve, ms));
const cleanups: Array<() => Promise<unknown> | unknown> = [];
afterEach(async () => {
  for (const c of cleanups.splice(0).reverse()) await c();
});

describe('a relay that stalls mid-send on a shared PostgreSQL database', () => {
  it('records its send although its lease moved, and the relay that took over does not send again', async () => {
    const upstream = await startUpstream();
    cleanups.push(() => upstream.stop());
    const url = await freshDatabaseUrl();
    const a = await createTestRelay({ smtpUpstream: upstream.url }, { databaseUrl: url, replicaId: 'relay-a' });
    const b = await createTestRelay({ smtpUpstream: upstream.url }, { databaseUrl: url, replicaId: 'relay-b' });
    cleanups.push(() => a.ctx.store.close(), () => b.ctx.store.close());
    const channelA = createSmtpChannel(upstream.url);
    const channelB = createSmtpChannel(upstream.url);
    cleanups.push(() => channelA.close(), () => channelB.close());

    const ic = { Authorization: `Bearer ${await a.tokenFor('ic@corp.example')}` };
    const { body: incident } = await a.request.post('/v1/incidents').set(ic).send({});
    await a.request.put(`/v1/incidents/${incident.codename}/roster/sec@corp.example`).set(ic).send({ name: 'Sec', role: 'security' });
    const sent = await a.request.post(`/v1/incidents/${incident.codename}/emails`).set(ic).send({ to: ['sec@corp.example'], text: 'x' });
    expect(sent.status).toBe(202);

    // relay-a sends; the upstream is slow, and relay-a renews nothing (it stalls): its lease is made to run out.
    upstream.replyDelayMs = 1_500;
    const workerA = new DeliveryWorker(a.ctx, { channels: { email: channelA } });
    const runA = workerA.runOnce();
    await sleep(400);
    await a.ctx.store.sql.run('UPDATE deliveries SET lease_until_ms = 0');

    // relay-b takes it over; its checks are slow (a busy database) and end after relay-a recorded its send.
    const { incidents } = b.ctx.store;
    const roster = incidents.roster.bind(incidents);
    let tookOver!: () => void;
    const inChecks = new Promise<void>((resolve) => (tookOver = resolve));
    incidents.roster = async (id) => {
      tookOver();
      await runA;
      return roster(id);
    };
    const workerB = new DeliveryWorker(b.ctx, { channels: { email: channelB } });
    const runB = workerB.runOnce();
    await inChecks;
    expect(await a.ctx.store.sql.get('SELECT lease_owner AS owner, status FROM deliveries')).toEqual({ owner: 'relay-b', status: 'queued' });
    expect(await runB).toBe(1);

    await sleep(500);
    expect(upstream.received).toHaveLength(1);
    expect(await a.ctx.store.sql.get('SELECT lease_owner AS owner, status, attempts FROM deliveries')).toEqual({ owner: null, status: 'sent', attempts: 1 });
    const events = await a.ctx.store.audit.listForIncident((await a.ctx.store.incidents.byCodename(incident.codename))!.id);
    expect(events.filter((e) => e.type === 'email.delivered')).toHaveLength(1);
    expect((await a.ctx.store.audit.verify()).ok).toBe(true);
  }, 30_000);
});
