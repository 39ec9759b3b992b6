/**
 * A store that cannot take writes (full disk, read-only data dir) refuses new
 * messages with 503 unavailable: nothing is accepted that could not be kept.
 *
 * SQLite only: the faults are made with SQLite pragmas (max_page_count,
 * query_only) on the relay's one connection; PostgreSQL's pool offers no
 * equivalent switch for connections already open.
 */
import { describe, expect, it } from 'vitest';
import { createTestRelay, type TestRelay } from '../helpers/relay.js';

async function setUp(): Promise<{ relay: TestRelay; send: () => Promise<{ status: number; body: { error?: { code: string } }; headers: Record<string, string> }> }> {
  const relay = await createTestRelay({}, { backend: 'sqlite' });
  const ic = await relay.tokenFor('ic@corp.example');
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

async function queued(relay: TestRelay): Promise<number> {
  return (await relay.ctx.store.sql.get<{ n: number }>('SELECT COUNT(*) AS n FROM deliveries'))!.n;
}

describe('store that cannot write', () => {
  it('a full disk answers 503 unavailable with Retry-After, and accepts nothing', async () => {
    const { relay, send } = await setUp();
    const pages = (await relay.ctx.store.sql.get<{ page_count: number }>('PRAGMA page_count'))!.page_count;
    expect(pages).toBeGreaterThan(0);
    await relay.ctx.store.sql.exec(`PRAGMA max_page_count = ${pages}`);
    const res = await send();
    expect(res.status).toBe(503);
    expect(res.body.error?.code).toBe('unavailable');
    expect(res.headers['retry-after']).toBe('30');
    expect(await queued(relay)).toBe(0);
    // The relay is still up.
    expect((await relay.request.get('/healthz')).status).toBe(200);
  });

  it('a read-only store answers 503 unavailable', async () => {
    const { relay, send } = await setUp();
    await relay.ctx.store.sql.exec('PRAGMA query_only = ON');
    const res = await send();
    expect(res.status).toBe(503);
    expect(res.body.error?.code).toBe('unavailable');
    await relay.ctx.store.sql.exec('PRAGMA query_only = OFF');
    expect(await queued(relay)).toBe(0);
  });
});
