/**
 * Group commit on a real file-backed SQLite database (WAL, synchronous=FULL),
 * through the SQLite backend's grouped(): one COMMIT for a turn's work, a
 * promise that settles only once that COMMIT is on disk, one unit's failure
 * rolled back alone, a failed COMMIT refusing the whole group, and the audit
 * chain intact through all of it.
 */
import { mkdtempSync, rmSync } from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import Database from 'better-sqlite3';
import { afterEach, beforeEach, describe, expect, it } from 'vitest';
import { AuditLog } from '../../src/store/audit.js';
import type { Backend } from '../../src/store/backend.js';
import { migrate } from '../../src/store/migrate.js';
import { openSqlite } from '../../src/store/sqlite.js';
import type { SqlExecutor } from '../../src/store/sql.js';

let dir: string;
let file: string;
let backend: Backend;
/** A second connection: sees only what is committed. */
let reader: Database.Database;

async function open(maxGroup?: number): Promise<void> {
  backend = openSqlite(file, maxGroup === undefined ? {} : { maxGroup });
  await migrate(backend);
  await backend.sql.exec(`CREATE TABLE IF NOT EXISTS items (name TEXT PRIMARY KEY);
           CREATE TABLE IF NOT EXISTS parents (id INTEGER PRIMARY KEY);
           CREATE TABLE IF NOT EXISTS children (parent INTEGER REFERENCES parents (id) DEFERRABLE INITIALLY DEFERRED)`);
}

beforeEach(async () => {
  dir = mkdtempSync(path.join(os.tmpdir(), 'group-commit-'));
  file = path.join(dir, 'relay.db');
  await open();
  reader = new Database(file, { readonly: true });
});

afterEach(async () => {
  reader.close();
  await backend.close();
  rmSync(dir, { recursive: true, force: true });
});

const insert = (name: string) => async (sql: SqlExecutor): Promise<string> => {
  await sql.run('INSERT INTO items (name) VALUES (?)', [name]);
  return name;
};
const committed = (): string[] => (reader.prepare('SELECT name FROM items ORDER BY name').all() as { name: string }[]).map((r) => r.name);
const settle = <T>(promises: Promise<T>[]) => Promise.allSettled(promises);

describe('SQLite group commit', () => {
  it('runs a turn\'s work in one transaction and resolves each only once that transaction is committed', async () => {
    const seenByOthers: number[] = [];
    const names = Array.from({ length: 50 }, (_, i) => `m${String(i).padStart(2, '0')}`);
    const done = names.map((name) =>
      backend.grouped(async (sql) => {
        await insert(name)(sql);
        // Another connection sees none of the group while it runs: one transaction, not 50.
        seenByOthers.push(committed().length);
        return name;
      }),
    );
    // Nothing runs inside grouped(): the group starts on a later turn.
    expect(committed()).toEqual([]);
    const visibleAtResolve = await Promise.all(done.map((p) => p.then((name) => committed().includes(name))));
    expect(visibleAtResolve.every(Boolean)).toBe(true);
    expect(seenByOthers.every((n) => n === 0)).toBe(true);
    expect(committed()).toEqual(names);
  });

  it('rolls back a failing unit alone; the others in its group commit', async () => {
    const results = await settle([
      backend.grouped(insert('a')),
      backend.grouped(async (sql) => {
        await insert('b')(sql);
        throw new Error('refused by b');
      }),
      // A constraint error from SQLite itself: 'a' again.
      backend.grouped(insert('a')),
      backend.grouped(insert('c')),
    ]);
    expect(results.map((r) => r.status)).toEqual(['fulfilled', 'rejected', 'rejected', 'fulfilled']);
    expect((results[1] as PromiseRejectedResult).reason).toMatchObject({ message: 'refused by b' });
    expect((results[2] as PromiseRejectedResult).reason).toMatchObject({ code: 'SQLITE_CONSTRAINT_PRIMARYKEY' });
    expect(committed()).toEqual(['a', 'c']);
  });

  it('refuses the whole group when its COMMIT fails, and nothing of it is written', async () => {
    const results = await settle([
      backend.grouped(insert('x')),
      // Checked at COMMIT only (a deferred foreign key): the savepoint succeeds, the group's COMMIT fails.
      backend.grouped(async (sql) => {
        await sql.run('INSERT INTO children (parent) VALUES (42)');
        return 'orphan';
      }),
      backend.grouped(insert('y')),
    ]);
    expect(results.map((r) => r.status)).toEqual(['rejected', 'rejected', 'rejected']);
    for (const r of results) expect((r as PromiseRejectedResult).reason).toMatchObject({ code: 'SQLITE_CONSTRAINT_FOREIGNKEY' });
    expect(committed()).toEqual([]);
    // The next group is unaffected.
    await expect(backend.grouped(insert('z'))).resolves.toBe('z');
    expect(committed()).toEqual(['z']);
  });

  it('refuses the whole group when it cannot begin (the write lock is held elsewhere)', async () => {
    await backend.sql.exec('PRAGMA busy_timeout = 50');
    const other = new Database(file);
    other.exec('BEGIN IMMEDIATE');
    try {
      const results = await settle([backend.grouped(insert('p')), backend.grouped(insert('q'))]);
      expect(results.map((r) => r.status)).toEqual(['rejected', 'rejected']);
      expect((results[0] as PromiseRejectedResult).reason).toMatchObject({ code: 'SQLITE_BUSY' });
    } finally {
      other.exec('ROLLBACK');
      other.close();
    }
    expect(committed()).toEqual([]);
    await expect(backend.grouped(insert('r'))).resolves.toBe('r');
  });

  it('on a full disk (SQLITE_FULL), a promise resolves exactly when its write is on disk', async () => {
    const pages = (await backend.sql.get<{ page_count: number }>('PRAGMA page_count'))!.page_count;
    await backend.sql.exec(`PRAGMA max_page_count = ${pages + 2}`);
    const big = 'x'.repeat(3000);
    const names = Array.from({ length: 12 }, (_, i) => `${String(i).padStart(2, '0')}${big}`);
    const results = await settle(names.map((name) => backend.grouped(insert(name))));
    const rejected = results.filter((r): r is PromiseRejectedResult => r.status === 'rejected');
    expect(rejected.length).toBeGreaterThan(0);
    for (const r of rejected) expect((r.reason as { code?: string }).code).toBe('SQLITE_FULL');
    const resolved = names.filter((_, i) => results[i]!.status === 'fulfilled');
    expect(committed()).toEqual(resolved);
  });

  it('a statement outside any transaction waits while a transaction holds the connection, and never joins it', async () => {
    let release!: () => void;
    const held = new Promise<void>((resolve) => (release = resolve));
    const tx = backend.transaction(async (sql) => {
      await insert('inside')(sql);
      await held; // the transaction awaits something else between its statements
      return 'done';
    });
    // Queued behind the transaction: if it ran inside it, the rollback below would take it away too.
    const outside = backend.sql.run('INSERT INTO items (name) VALUES (?)', ['outside']);
    await new Promise((resolve) => setTimeout(resolve, 20));
    expect(committed()).toEqual([]);
    release();
    await tx;
    await outside;
    expect(committed()).toEqual(['inside', 'outside']);
  });

  it('refuses to run store statements inside a transaction except through the transaction', async () => {
    await expect(backend.transaction(async () => backend.sql.run('INSERT INTO items (name) VALUES (?)', ['nested']))).rejects.toMatchObject({ name: 'StoreMisuse' });
    await expect(backend.transaction(async () => backend.transaction(async () => 1))).rejects.toMatchObject({ name: 'StoreMisuse' });
    expect(committed()).toEqual([]);
  });

  it('splits more than maxGroup units over several transactions, in order', async () => {
    await backend.close();
    await open(4);
    const order: string[] = [];
    const names = Array.from({ length: 10 }, (_, i) => `n${i}`);
    await Promise.all(names.map((name) => backend.grouped(async (sql) => order.push(await insert(name)(sql)))));
    expect(order).toEqual(names);
    expect(committed()).toEqual(names);
  });

  it('keeps the audit chain whole through concurrent groups with failures among them', async () => {
    const now = () => new Date('2026-11-22T09:00:00Z');
    const results = await settle(
      Array.from({ length: 300 }, (_, i) =>
        backend.grouped(async (sql) => {
          const audit = new AuditLog(sql, now, (fn) => fn(sql));
          const event = await audit.append({ type: 'test.event', actor: null, outcome: 'ok', data: { i } });
          // Every seventh unit fails after appending: its event must vanish with it.
          if (i % 7 === 3) throw new Error(`unit ${i} refused`);
          return event.seq;
        }),
      ),
    );
    const kept = results.filter((r) => r.status === 'fulfilled').length;
    expect(kept).toBe(300 - Array.from({ length: 300 }, (_, i) => i).filter((i) => i % 7 === 3).length);
    const seqs = results.flatMap((r) => (r.status === 'fulfilled' ? [r.value] : []));
    expect(seqs).toEqual(Array.from({ length: kept }, (_, i) => i + 1));
    const audit = new AuditLog(backend.sql, now, (fn) => backend.transaction(fn));
    expect(await audit.verify()).toMatchObject({ ok: true, events: kept });
  });
});
