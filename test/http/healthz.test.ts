/**
 * /healthz reports the database (issue 11 §6): 200 with the backend while it
 * answers, 503 unavailable with Retry-After when it does not, so a load
 * balancer sends clients to a relay that can keep what it accepts.
 */
import pg from 'pg';
import { inject, describe, expect, it } from 'vitest';
import { freshDatabaseUrl } from '../helpers/postgres.js';
import { BACKENDS, createTestRelay } from '../helpers/relay.js';

describe.each(BACKENDS)('/healthz on %s', (backend) => {
  it('names the store while it answers', async () => {
    const relay = await createTestRelay({}, { backend });
    const res = await relay.request.get('/healthz');
    expect(res.status).toBe(200);
    expect(res.body).toEqual({ status: 'ok', store: backend });
    await relay.ctx.store.close();
  });
});

describe('/healthz on PostgreSQL', () => {
  it('answers 503 unavailable, with Retry-After, when the database is gone', async () => {
    const url = await freshDatabaseUrl();
    const relay = await createTestRelay({}, { databaseUrl: url });
    expect((await relay.request.get('/healthz')).status).toBe(200);
    // The database disappears under the relay (its connections are terminated).
    const admin = new pg.Client({ connectionString: inject('postgresUrl') });
    await admin.connect();
    await admin.query(`DROP DATABASE "${new URL(url).pathname.slice(1)}" WITH (FORCE)`);
    await admin.end();
    const res = await relay.request.get('/healthz');
    expect(res.status).toBe(503);
    expect(res.headers['retry-after']).toBe('5');
    expect(res.body.error).toEqual({ code: 'unavailable', message: 'The store (postgres) is not reachable; this relay accepts nothing until it is.' });
    await relay.ctx.store.close();
  });
});
