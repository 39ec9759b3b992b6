/**
 * A send the upstream took, whose outcome the store could not record: the
 * delivery stays queued and is sent again (at-least-once). It is never turned
 * into a failure, even past RELAY_DELIVERY_MAX_AGE.
 */
import { afterEach, describe, expect, it } from 'vitest';
import { createSmtpChannel } from '../../src/channels/email/smtp.js';
import { DeliveryWorker } from '../../src/workers/delivery.js';
import { createTestRelay } from '../helpers/relay.js';
import { startUpstream, type Upstream } from '../helpers/upstream.js';

let upstream: Upstream | undefined;
let channel: ReturnType<typeof createSmtpChannel> | undefined;
afterEach(async () => {
  channel?.close();
  await upstream?.stop();
});

describe('recording a delivery outcome fails', () => {
  it('keeps the delivery queued and sends it again, never marking a delivered message failed', async () => {
    upstream = await startUpstream();
    const relay = await createTestRelay({ smtpUpstream: upstream.url });
    channel = createSmtpChannel(upstream.url);
    const worker = new DeliveryWorker(relay.ctx, { channels: { email: channel } });
    const ic = relay.tokenFor('ic@corp.example');
    const auth = { Authorization: `Bearer ${ic}` };
    const { body } = await relay.request.post('/v1/incidents').set(auth).send({});
    await relay.request.put(`/v1/incidents/${body.codename}/roster/sec@corp.example`).set(auth).send({ name: 'Sec', role: 'security' });
    const sent = await relay.request.post(`/v1/incidents/${body.codename}/emails`).set(auth).send({ to: ['sec@corp.example'], text: 'x' });
    expect(sent.status).toBe(202);
    // Any retry would already be past the maximum age.
    relay.ctx.config.deliveryMaxAge = 1;

    // The store fails once, exactly when the sent outcome is written (an I/O
    // error), and works again for whatever the worker writes next.
    const outbox = relay.ctx.store.outbox;
    const markSent = outbox.markSent.bind(outbox);
    let failures = 0;
    outbox.markSent = (...args) => {
      if (failures++ === 0) throw Object.assign(new Error('disk I/O error'), { code: 'SQLITE_IOERR' });
      markSent(...args);
    };
    await worker.runOnce();
    expect(failures).toBe(1);
    expect(upstream.received).toHaveLength(1);
    const row = relay.ctx.store.db.prepare('SELECT status, attempts, body IS NOT NULL AS hasBody FROM deliveries').get();
    expect(row).toEqual({ status: 'queued', attempts: 0, hasBody: 1 });

    upstream.replyDelayMs = 0;
    await worker.drain();
    expect(upstream.received).toHaveLength(2);
    const status = await relay.request.get(`/v1/incidents/${body.codename}/emails/${sent.body.id}`).set(auth);
    expect(status.body).toEqual({ id: sent.body.id, status: 'sent', attempts: 1 });
    expect(relay.ctx.store.audit.verify().ok).toBe(true);
  });
});
