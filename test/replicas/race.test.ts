/**
 * Two relays on one PostgreSQL database race for the same due deliveries:
 * while both are alive, no message is ever sent twice, and both take part.
 * The decision is the database's (leases claimed with SKIP LOCKED), not a
 * set in either process.
 */
import { afterEach, describe, expect, it } from 'vitest';
import type { Channel } from '../../src/channels/channel.js';
import { createSmtpChannel } from '../../src/channels/email/smtp.js';
import { RateLimiter } from '../../src/services/rate-limit.js';
import { DeliveryWorker } from '../../src/workers/delivery.js';
import { freshDatabaseUrl } from '../helpers/postgres.js';
import { createTestRelay, type TestRelay } from '../helpers/relay.js';
import { startUpstream, type Upstream } from '../helpers/upstream.js';

const cleanups: Array<() => Promise<unknown>> = [];
afterEach(async () => {
  for (const c of cleanups.splice(0).reverse()) await c();
});

/** A channel that counts what it sent, so the test can see both relays worked. */
function counting(channel: Channel & { close(): void }): Channel & { sent: number; close(): void } {
  const counted = {
    sent: 0,
    async send(delivery: Parameters<Channel['send']>[0]) {
      const receipt = await channel.send(delivery);
      counted.sent += 1;
      return receipt;
    },
    close: () => channel.close(),
  };
  return counted;
}

async function sendMany(relay: TestRelay, token: string, codename: string, n: number, tag: string): Promise<string[]> {
  const ids: string[] = [];
  for (let i = 0; i < n; i++) {
    const res = await relay.request
      .post(`/v1/incidents/${codename}/emails`)
      .set('Authorization', `Bearer ${token}`)
      .send({ to: ['sec@corp.example'], subject: `${tag} ${i}`, text: `message ${tag} ${i}` });
    expect(res.status).toBe(202);
    ids.push(res.body.messageId as string);
  }
  return ids;
}

describe('two relays on one PostgreSQL database', () => {
  it('never send the same delivery twice while both are alive', async () => {
    const upstream: Upstream = await startUpstream();
    cleanups.push(() => upstream.stop());
    const url = await freshDatabaseUrl();
    const a = await createTestRelay({ smtpUpstream: upstream.url }, { databaseUrl: url, replicaId: 'relay-a' });
    const b = await createTestRelay({ smtpUpstream: upstream.url }, { databaseUrl: url, replicaId: 'relay-b' });
    cleanups.push(() => a.ctx.store.close(), () => b.ctx.store.close());
    // This test is about delivery, not about the per-token limit.
    a.ctx.sendLimiter = b.ctx.sendLimiter = new RateLimiter({ perMinute: 100_000, burst: 100_000 });

    const ic = await a.tokenFor('ic@corp.example');
    const { body: incident } = await a.request.post('/v1/incidents').set('Authorization', `Bearer ${ic}`).send({});
    await a.request.put(`/v1/incidents/${incident.codename}/roster/sec@corp.example`).set('Authorization', `Bearer ${ic}`).send({ name: 'Sec', role: 'security' });
    // Accepted through both relays' APIs, into the one outbox.
    const accepted = [...(await sendMany(a, ic, incident.codename, 150, 'a')), ...(await sendMany(b, ic, incident.codename, 150, 'b'))];

    const channelA = counting(createSmtpChannel(upstream.url));
    const channelB = counting(createSmtpChannel(upstream.url));
    cleanups.push(async () => channelA.close(), async () => channelB.close());
    const workerA = new DeliveryWorker(a.ctx, { channels: { email: channelA }, concurrency: 8, pollMs: 50 });
    const workerB = new DeliveryWorker(b.ctx, { channels: { email: channelB }, concurrency: 8, pollMs: 50 });
    cleanups.push(() => workerA.stop(), () => workerB.stop());
    await Promise.all([workerA.start(), workerB.start()]);

    await upstream.waitFor(accepted.length, 60_000);
    // Give a duplicate the time to show up, if there were one.
    await new Promise((resolve) => setTimeout(resolve, 1500));
    const received = upstream.received.map((m) => /^Message-ID: (.*)$/im.exec(m.raw.toString('latin1'))![1]!.trim());
    expect(received.length).toBe(accepted.length);
    expect(new Set(received)).toEqual(new Set(accepted));
    // A real race: both relays delivered a share.
    expect(channelA.sent).toBeGreaterThan(0);
    expect(channelB.sent).toBeGreaterThan(0);
    expect(channelA.sent + channelB.sent).toBe(accepted.length);
    expect(await a.ctx.store.outbox.queuedCount('email')).toBe(0);
    expect(await a.ctx.store.audit.verify()).toMatchObject({ ok: true });
  }, 120_000);
});
