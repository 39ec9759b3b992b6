/**
 * A store that cannot take writes (full disk, read-only data dir) refuses new
 * messages with 503 unavailable: nothing is accepted that could not be kept.
 */
import { describe, expect, it } from 'vitest';
import { createTestRelay, type TestRelay } from '../helpers/relay.js';

async function setUp(): Promise<{ relay: TestRelay; send: () => Promise<{ status: number; body: { error?: { code: string } }; headers: Record<string, string> }> }> {
  const relay = await createTestRelay();
  const ic = relay.tokenFor('ic@corp.example');
  const auth = { Authorization: `Bearer ${ic}` };
  const { body } = await relay.request.post('/v1/incidents').set(auth).send({});
  await relay.request.put(`/v1/incidents/${body.codename}/roster/sec@corp.example`).set(auth).send({ name: 'Sec', role: 'security' });
  const send = async () => {
    const res = await relay.request
      .post(`/v1/incidents/${body.codename}/emails`)
      .set(auth)
      .send({ to: ['sec@corp.example'], text: 'x', attachments: [{ filename: 'big.bin', contentType: 'application/octet-stream', content: Buffer.alloc(200_000, 7).toString('base64') }] });
    return { status: res.status, body: res.body, headers: res.headers as Record<string, string> };
  };
  return { relay, send };
}

function queued(relay: TestRelay): number {
  return (relay.ctx.store.db.prepare('SELECT COUNT(*) AS n FROM deliveries').get() as { n: number }).n;
}

describe('store that cannot write', () => {
  it('a full disk answers 503 unavailable with Retry-After, and accepts nothing', async () => {
    const { relay, send } = await setUp();
    const pages = relay.ctx.store.db.pragma('page_count', { simple: true }) as number;
    relay.ctx.store.db.pragma(`max_page_count = ${pages}`);
    const res = await send();
    expect(res.status).toBe(503);
    expect(res.body.error?.code).toBe('unavailable');
    expect(res.headers['retry-after']).toBe('30');
    expect(queued(relay)).toBe(0);
    // The relay is still up.
    expect((await relay.request.get('/healthz')).status).toBe(200);
  });

  it('a read-only store answers 503 unavailable', async () => {
    const { relay, send } = await setUp();
    relay.ctx.store.db.pragma('query_only = ON');
    const res = await send();
    expect(res.status).toBe(503);
    expect(res.body.error?.code).toBe('unavailable');
    relay.ctx.store.db.pragma('query_only = OFF');
    expect(queued(relay)).toBe(0);
  });
});
