/**
 * Accepts are committed in groups (one fsync for the requests of a turn). Each
 * request still gets its own outcome: a 202 only once its message is on disk,
 * its own refusal without touching the others, all 503 when the group cannot
 * be written, and an intact audit chain after concurrent load.
 */
import { mkdtempSync, rmSync } from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import Database from 'better-sqlite3';
import { afterEach, describe, expect, it } from 'vitest';
import type { Dialect } from '../../src/store/sql.js';
import { BACKENDS, createTestRelay, type TestRelay } from '../helpers/relay.js';

const auth = (token: string) => ({ Authorization: `Bearer ${token}` });

let dir: string | undefined;
let relay: TestRelay | undefined;
afterEach(async () => {
  await relay?.ctx.store.close();
  relay = undefined;
  if (dir) rmSync(dir, { recursive: true, force: true });
  dir = undefined;
});

async function setUp(backend: Dialect = 'sqlite'): Promise<{ relay: TestRelay; file: string; post: (body: Record<string, unknown>, key?: string) => Promise<{ status: number; body: Record<string, unknown> }> }> {
  dir = mkdtempSync(path.join(os.tmpdir(), 'grouped-accepts-'));
  const file = path.join(dir, 'relay.db');
  // The file is used on SQLite only; PostgreSQL gets a fresh database.
  relay = await createTestRelay({}, { file, backend });
  const r = relay;
  const ic = await r.tokenFor('ic@corp.example');
  const { body } = await r.request.post('/v1/incidents').set(auth(ic)).send({});
  for (const who of ['sec', 'ops']) await r.request.put(`/v1/incidents/${body.codename}/roster/${who}@corp.example`).set(auth(ic)).send({ name: who, role: 'security' });
  const post = async (payload: Record<string, unknown>, key?: string) => {
    const req = r.request.post(`/v1/incidents/${body.codename}/emails`).set(auth(ic));
    if (key) req.set('Idempotency-Key', key);
    const res = await req.send(payload);
    return { status: res.status, body: res.body as Record<string, unknown> };
  };
  return { relay: r, file, post };
}

const count = async (r: TestRelay, table: 'emails' | 'deliveries'): Promise<number> => (await r.ctx.store.sql.get<{ n: number }>(`SELECT COUNT(*) AS n FROM ${table}`))!.n;

describe('grouped accepts', () => {
  // SQLite only: group commit (one fsync'ed COMMIT for a turn's accepts) is
  // SQLite's; on PostgreSQL each accept is its own transaction. The second
  // connection reads the database file directly.
  it('answers 202 only for messages a second connection already sees committed; the audit chain holds', async () => {
    const { relay, file, post } = await setUp();
    const reader = new Database(file, { readonly: true });
    try {
      const seen = await Promise.all(
        Array.from({ length: 40 }, async (_, i) => {
          const res = await post({ to: ['sec@corp.example', 'ops@corp.example'], text: `message ${i}` });
          expect(res.status).toBe(202);
          // Read at the moment the 202 arrives, from another connection: committed, not just written.
          return reader.prepare('SELECT COUNT(*) AS n FROM deliveries WHERE email_id = ?').get(res.body['id']) as { n: number };
        }),
      );
      expect(seen.every((row) => row.n === 1)).toBe(true);
    } finally {
      reader.close();
    }
    expect(await relay.ctx.store.audit.verify()).toMatchObject({ ok: true });
  });

  it.each(BACKENDS)('gives each request its own outcome: an idempotency race and a roster change at commit leave the others queued (%s)', async (backend) => {
    const { relay, post } = await setUp(backend);
    // Hold the first commit (the message to ops, already past its policy
    // decision), remove ops from the roster, then let it go with the others.
    const grouped = relay.ctx.store.grouped.bind(relay.ctx.store);
    let release!: () => void;
    const held = new Promise<void>((resolve) => (release = resolve));
    let calls = 0;
    relay.ctx.store.grouped = (fn) => {
      calls += 1;
      return calls === 1 ? held.then(() => grouped(fn)) : grouped(fn);
    };
    const toOps = post({ to: ['ops@corp.example'], text: 'to someone just removed' });
    while (calls === 0) await new Promise((resolve) => setTimeout(resolve, 5));
    expect(await relay.ctx.store.incidents.removeMember((await relay.ctx.store.incidents.openIncidents())[0]!.id, 'ops@corp.example', new Date())).toBe(true);
    const others = [
      post({ to: ['sec@corp.example'], text: 'same key' }, 'k-race'),
      post({ to: ['sec@corp.example'], text: 'same key' }, 'k-race'),
      post({ to: ['sec@corp.example'], text: 'other' }),
      post({ to: ['sec@corp.example'], text: 'same key' }, 'k-race'),
    ];
    release();
    const refused = await toOps;
    const results = await Promise.all(others);
    expect(refused.status).toBe(403);
    expect((refused.body['error'] as { code: string }).code).toBe('recipient_not_on_roster');
    expect(results.map((r) => r.status)).toEqual([202, 202, 202, 202]);
    // The three with one key share the first committed answer: one message.
    const ids = new Set([results[0], results[1], results[3]].map((r) => r!.body['id']));
    expect(ids.size).toBe(1);
    expect(await count(relay, 'emails')).toBe(2);
    expect(await count(relay, 'deliveries')).toBe(2);
    const refusals = await relay.ctx.store.sql.all<{ data: string }>("SELECT data FROM audit_events WHERE type = 'email.decision' AND outcome = 'refused'");
    expect(refusals.map((r) => JSON.parse(r.data).changedDuringCompose)).toEqual([true]);
    expect(await relay.ctx.store.audit.verify()).toMatchObject({ ok: true });
  });

  // SQLite only: a full disk is simulated with SQLite's max_page_count.
  it('refuses every request of a group that cannot be written (full disk: 503), and queues none of them', async () => {
    const { relay, post } = await setUp();
    const pages = (await relay.ctx.store.sql.get<{ page_count: number }>('PRAGMA page_count'))!.page_count;
    expect(pages).toBeGreaterThan(0);
    await relay.ctx.store.sql.exec(`PRAGMA max_page_count = ${pages}`);
    const big = Buffer.alloc(200_000, 7).toString('base64');
    const results = await Promise.all(
      Array.from({ length: 6 }, () => post({ to: ['sec@corp.example'], text: 'x', attachments: [{ filename: 'big.bin', contentType: 'application/octet-stream', content: big }] })),
    );
    expect(results.map((r) => r.status)).toEqual(Array(6).fill(503));
    expect(await count(relay, 'deliveries')).toBe(0);
    await relay.ctx.store.sql.exec('PRAGMA max_page_count = 1073741823');
    expect((await post({ to: ['sec@corp.example'], text: 'after' })).status).toBe(202);
    expect(await relay.ctx.store.audit.verify()).toMatchObject({ ok: true });
  });
});
