import { describe, expect, it } from 'vitest';
import { RateLimiter } from '../../src/services/rate-limit.js';
import { createTestRelay } from '../helpers/relay.js';

describe('RateLimiter', () => {
  it('allows the burst, refuses the next with a Retry-After, and refills at the sustained rate', async () => {
    const limiter = new RateLimiter({ perMinute: 6, burst: 2 });
    const t0 = new Date('2026-11-22T10:00:00Z');
    await limiter.take('a', t0);
    await limiter.take('a', t0);
    await expect(limiter.take('a', t0)).rejects.toMatchObject({ code: 'rate_limited', retryAfter: 10 });
    // Another caller has its own bucket.
    await limiter.take('b', t0);
    // One send per 10 s comes back.
    await limiter.take('a', new Date(t0.getTime() + 10_000));
    await expect(limiter.take('a', new Date(t0.getTime() + 10_000))).rejects.toThrow(/try again/);
  });
});

describe('rate limit on POST .../emails', () => {
  it('answers 429 rate_limited with Retry-After and queues nothing more', async () => {
    const relay = await createTestRelay();
    relay.ctx.sendLimiter = new RateLimiter({ perMinute: 1, burst: 1 });
    const ic = await relay.tokenFor('ic@corp.example');
    const auth = { Authorization: `Bearer ${ic}` };
    const { body } = await relay.request.post('/v1/incidents').set(auth).send({});
    await relay.request.put(`/v1/incidents/${body.codename}/roster/sec@corp.example`).set(auth).send({ name: 'Sec', role: 'security' });
    const first = await relay.request.post(`/v1/incidents/${body.codename}/emails`).set(auth).send({ to: ['sec@corp.example'], text: 'one' });
    expect(first.status).toBe(202);
    const second = await relay.request.post(`/v1/incidents/${body.codename}/emails`).set(auth).send({ to: ['sec@corp.example'], text: 'two' });
    expect(second.status).toBe(429);
    expect(second.body.error.code).toBe('rate_limited');
    expect(second.headers['retry-after']).toBe('60');
    expect((await relay.ctx.store.sql.get<{ n: number }>('SELECT COUNT(*) AS n FROM deliveries'))!.n).toBe(1);
  });
});
