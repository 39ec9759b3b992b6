/**
 * Closing the SQLite store while group-commit work is still arriving: work
 * queued before close() commits; work offered once close() has begun (during
 * its last flush) is refused with StoreClosed, which callers treat as the
 * store being unavailable, and never dropped with a promise that never settles.
 */
import { describe, expect, it } from 'vitest';
import { isStoreUnavailable } from '../../src/errors.js';
import { migrate } from '../../src/store/migrate.js';
import { StoreClosed } from '../../src/store/sql.js';
import { openSqlite } from '../../src/store/sqlite.js';

const sleep = (ms: number) => new Promise((resolve) => setTimeout(resolve, ms));

/** Resolves with the outcome of `p`, or 'unsettled' if it has not settled within `ms`. */
async function settledWithin<T>(p: Promise<T>, ms: number): Promise<{ ok: T } | { err: unknown } | 'unsettled'> {
  return Promise.race([p.then((ok) => ({ ok }), (err: unknown) => ({ err })), sleep(ms).then(() => 'unsettled' as const)]);
}

describe('sqlite store close', () => {
  it('commits the work queued before close, and refuses (never drops) work offered during its last flush', async () => {
    const backend = openSqlite(':memory:');
    await migrate(backend);
    await backend.sql.exec('CREATE TABLE items (name TEXT PRIMARY KEY)');
    // Work that takes a while to commit: close() waits for it in its final flush.
    const first = backend.grouped(async (sql) => {
      await sleep(100);
      await sql.run('INSERT INTO items (name) VALUES (?)', ['first']);
      return 'first';
    });
    await sleep(10);
    const closing = backend.close();
    await sleep(20);
    // Offered while close() waits for that flush (a worker recording an outcome at shutdown).
    const late = settledWithin(backend.grouped(async (sql) => sql.run('INSERT INTO items (name) VALUES (?)', ['late'])), 1_000);
    expect(await first).toBe('first');
    await closing;
    const outcome = await late;
    expect(outcome).not.toBe('unsettled');
    expect(outcome).toMatchObject({ err: expect.any(StoreClosed) });
    const err = (outcome as { err: unknown }).err;
    expect((err as Error).message).toBe('store: closed (the relay is shutting down); nothing more can be stored here');
    expect(isStoreUnavailable(err)).toBe(true);
    // After close, everything is refused the same way.
    await expect(backend.grouped(async () => 1)).rejects.toBeInstanceOf(StoreClosed);
    await expect(backend.transaction(async () => 1)).rejects.toBeInstanceOf(StoreClosed);
  });
});
