/**
 * GroupCommit on a real file-backed SQLite database (WAL, synchronous=FULL):
 * one COMMIT for a turn's work, a promise that settles only once that COMMIT
 * is on disk, one unit's failure rolled back alone, a failed COMMIT refusing
 * the whole group, and the audit chain intact through all of it.
 */
import { mkdtempSync, rmSync } from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import Database from 'better-sqlite3';
import { afterEach, beforeEach, describe, expect, it } from 'vitest';
import { AuditLog } from '../../src/store/audit.js';
import { openDatabase, type Db } from '../../src/store/db.js';
import { GroupCommit } from '../../src/store/group-commit.js';

let dir: string;
let file: string;
let db: Db;
/** A second connection: sees only what is committed. */
let reader: Database.Database;

beforeEach(() => {
  dir = mkdtempSync(path.join(os.tmpdir(), 'group-commit-'));
  file = path.join(dir, 'relay.db');
  db = openDatabase(file);
  db.exec(`CREATE TABLE items (name TEXT PRIMARY KEY);
           CREATE TABLE parents (id INTEGER PRIMARY KEY);
           CREATE TABLE children (parent INTEGER REFERENCES parents (id) DEFERRABLE INITIALLY DEFERRED)`);
  reader = new Database(file, { readonly: true });
});

afterEach(() => {
  reader.close();
  if (db.open) db.close();
  rmSync(dir, { recursive: true, force: true });
});

const insert = (name: string) => (): string => {
  db.prepare('INSERT INTO items (name) VALUES (?)').run(name);
  return name;
};
const committed = (): string[] => (reader.prepare('SELECT name FROM items ORDER BY name').all() as { name: string }[]).map((r) => r.name);
const settle = <T>(promises: Promise<T>[]) => Promise.allSettled(promises);

describe('GroupCommit', () => {
  it('runs a turn\'s work in one transaction and resolves each only once that transaction is committed', async () => {
    const group = new GroupCommit(db);
    const seenByOthers: number[] = [];
    const names = Array.from({ length: 50 }, (_, i) => `m${String(i).padStart(2, '0')}`);
    const done = names.map((name) =>
      group.run(() => {
        insert(name)();
        // Another connection sees none of the group while it runs: one transaction, not 50.
        seenByOthers.push(committed().length);
        return name;
      }),
    );
    // Nothing runs inside run(): the group starts on a later turn.
    expect(group.waiting).toBe(50);
    expect(committed()).toEqual([]);
    const visibleAtResolve = await Promise.all(done.map((p) => p.then((name) => committed().includes(name))));
    expect(visibleAtResolve.every(Boolean)).toBe(true);
    expect(seenByOthers.every((n) => n === 0)).toBe(true);
    expect(committed()).toEqual(names);
  });

  it('rolls back a failing unit alone; the others in its group commit', async () => {
    const group = new GroupCommit(db);
    const results = await settle([
      group.run(insert('a')),
      group.run(() => {
        insert('b')();
        throw new Error('refused by b');
      }),
      // A constraint error from SQLite itself: 'a' again.
      group.run(insert('a')),
      group.run(insert('c')),
    ]);
    expect(results.map((r) => r.status)).toEqual(['fulfilled', 'rejected', 'rejected', 'fulfilled']);
    expect((results[1] as PromiseRejectedResult).reason).toMatchObject({ message: 'refused by b' });
    expect((results[2] as PromiseRejectedResult).reason).toMatchObject({ code: 'SQLITE_CONSTRAINT_PRIMARYKEY' });
    expect(committed()).toEqual(['a', 'c']);
  });

  it('refuses the whole group when its COMMIT fails, and nothing of it is written', async () => {
    const group = new GroupCommit(db);
    const results = await settle([
      group.run(insert('x')),
      // Checked at COMMIT only (a deferred foreign key): the savepoint succeeds, the group's COMMIT fails.
      group.run(() => {
        db.prepare('INSERT INTO children (parent) VALUES (42)').run();
        return 'orphan';
      }),
      group.run(insert('y')),
    ]);
    expect(results.map((r) => r.status)).toEqual(['rejected', 'rejected', 'rejected']);
    for (const r of results) expect((r as PromiseRejectedResult).reason).toMatchObject({ code: 'SQLITE_CONSTRAINT_FOREIGNKEY' });
    expect(committed()).toEqual([]);
    expect(db.inTransaction).toBe(false);
    // The next group is unaffected.
    await expect(group.run(insert('z'))).resolves.toBe('z');
    expect(committed()).toEqual(['z']);
  });

  it('refuses the whole group when it cannot begin (the write lock is held elsewhere)', async () => {
    const group = new GroupCommit(db);
    db.pragma('busy_timeout = 50');
    const other = new Database(file);
    other.exec('BEGIN IMMEDIATE');
    try {
      const results = await settle([group.run(insert('p')), group.run(insert('q'))]);
      expect(results.map((r) => r.status)).toEqual(['rejected', 'rejected']);
      expect((results[0] as PromiseRejectedResult).reason).toMatchObject({ code: 'SQLITE_BUSY' });
    } finally {
      other.exec('ROLLBACK');
      other.close();
    }
    expect(committed()).toEqual([]);
    await expect(group.run(insert('r'))).resolves.toBe('r');
  });

  it('on a full disk (SQLITE_FULL), a promise resolves exactly when its write is on disk', async () => {
    const group = new GroupCommit(db);
    const pages = db.pragma('page_count', { simple: true }) as number;
    db.pragma(`max_page_count = ${pages + 2}`);
    const big = 'x'.repeat(3000);
    const names = Array.from({ length: 12 }, (_, i) => `${String(i).padStart(2, '0')}${big}`);
    const results = await settle(names.map((name) => group.run(insert(name))));
    const rejected = results.filter((r): r is PromiseRejectedResult => r.status === 'rejected');
    expect(rejected.length).toBeGreaterThan(0);
    for (const r of rejected) expect((r.reason as { code?: string }).code).toBe('SQLITE_FULL');
    const resolved = names.filter((_, i) => results[i]!.status === 'fulfilled');
    expect(committed()).toEqual(resolved);
    expect(db.inTransaction).toBe(false);
  });

  it('never commits inside a caller\'s transaction: work queued there waits for a later turn', async () => {
    const group = new GroupCommit(db);
    let inner!: Promise<string>;
    db.transaction(() => {
      inner = group.run(insert('later'));
      insert('outer')();
    }).immediate();
    expect(committed()).toEqual(['outer']);
    await expect(inner).resolves.toBe('later');
    expect(committed()).toEqual(['later', 'outer']);
  });

  it('splits more than maxBatch units over several transactions, in order', async () => {
    const group = new GroupCommit(db, { maxBatch: 4 });
    const order: string[] = [];
    const names = Array.from({ length: 10 }, (_, i) => `n${i}`);
    await Promise.all(names.map((name) => group.run(() => order.push(insert(name)()))));
    expect(order).toEqual(names);
    expect(committed()).toEqual(names);
  });

  it('keeps the audit chain whole through concurrent groups with failures among them', async () => {
    const group = new GroupCommit(db);
    const audit = new AuditLog(db, () => new Date('2026-11-22T09:00:00Z'));
    const results = await settle(
      Array.from({ length: 300 }, (_, i) =>
        group.run(() => {
          const event = audit.append({ type: 'test.event', actor: null, outcome: 'ok', data: { i } });
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
    expect(audit.verify()).toMatchObject({ ok: true, events: kept });
  });
});
