/**
 * The SQLite backend (better-sqlite3): the embedded default. One connection,
 * WAL, `synchronous=FULL`, owner-only files, freed pages zeroed.
 *
 * better-sqlite3 is synchronous while the store interface is not, so every
 * use of the connection goes through one async lock: a statement outside a
 * transaction runs at once when nobody holds the lock, and waits while a
 * transaction (which may await between its statements) does. Group commit
 * (many small transactions as savepoints of one fsync'ed COMMIT) is kept.
 */
import { AsyncLocalStorage } from 'node:async_hooks';
import fs from 'node:fs';
import path from 'node:path';
import Database from 'better-sqlite3';
import type { Backend } from './backend.js';
import { StoreClosed, StoreMisuse, type SqlExecutor, type SqlParam } from './sql.js';

/** Serialises access to the one connection; FIFO. */
class Lock {
  private held = false;
  private readonly waiters: Array<() => void> = [];

  get locked(): boolean {
    return this.held;
  }

  acquire(): Promise<void> {
    if (!this.held) {
      this.held = true;
      return Promise.resolve();
    }
    return new Promise((resolve) => this.waiters.push(resolve));
  }

  release(): void {
    const next = this.waiters.shift();
    if (next) next();
    else this.held = false;
  }
}

/** A transaction in progress; `active` turns false once it ended, so a leaked executor fails loudly. */
interface Scope {
  active: boolean;
}

interface Pending {
  fn: (sql: SqlExecutor) => Promise<unknown>;
  resolve: (value: unknown) => void;
  reject: (error: unknown) => void;
}

type Outcome = { ok: true; value: unknown } | { ok: false; error: unknown };

// SQL texts built from a length (IN lists) vary; a bound keeps the cache small.
const MAX_CACHED_STATEMENTS = 512;

/** Options of the SQLite backend. */
export interface SqliteOptions {
  /** Units of work per group commit at most (default 256). */
  maxGroup?: number;
}

/** Opens (creating when absent) the database at `file`, or in memory for ':memory:'. */
export function openSqlite(file: string, options: SqliteOptions = {}): Backend & { /** For tests only: the file's path, or ':memory:'. */ file: string } {
  const inMemory = file === ':memory:';
  if (!inMemory) {
    fs.mkdirSync(path.dirname(file), { recursive: true, mode: 0o700 });
    // Create the file owner-only before SQLite does, so it is never world-readable.
    fs.closeSync(fs.openSync(file, 'a', 0o600));
    fs.chmodSync(file, 0o600);
  }
  const db = new Database(file);
  db.pragma('foreign_keys = ON');
  if (!inMemory) db.pragma('journal_mode = WAL');
  // FULL: a commit is on disk before we answer 202 or 250 (SPEC §6).
  db.pragma('synchronous = FULL');
  db.pragma('busy_timeout = 5000');
  // Zero freed pages: a purged body (SPEC §6) must not live on in the file's
  // free list, where a backup or a stolen disk would still hold it.
  db.pragma('secure_delete = ON');

  const statements = new Map<string, Database.Statement>();
  const statement = (sql: string): Database.Statement => {
    let s = statements.get(sql);
    if (!s) {
      if (statements.size >= MAX_CACHED_STATEMENTS) statements.clear();
      s = db.prepare(sql);
      statements.set(sql, s);
    }
    return s;
  };
  const args = (params: readonly SqlParam[] | undefined): SqlParam[] => (params ? [...params] : []);
  // The synchronous operations, shared by the locked and the in-transaction executors.
  const ops = {
    all: <T>(sql: string, params?: readonly SqlParam[]): T[] => statement(sql).all(...args(params)) as T[],
    get: <T>(sql: string, params?: readonly SqlParam[]): T | undefined => statement(sql).get(...args(params)) as T | undefined,
    run: (sql: string, params?: readonly SqlParam[]): number => statement(sql).run(...args(params)).changes,
    exec: (sql: string): void => void db.exec(sql),
  };

  const lock = new Lock();
  const scopes = new AsyncLocalStorage<Scope>();
  // closing: close() has begun (grouped work is refused), and resolves when it is done; closed: the connection is gone.
  let closing: Promise<void> | undefined;
  let closed = false;

  const insideTransaction = (): boolean => scopes.getStore()?.active === true;

  // A statement outside a transaction: at once when the lock is free, else after the holder.
  const locked = <T>(fn: () => T): Promise<T> => {
    if (insideTransaction()) {
      return Promise.reject(new StoreMisuse('store: inside a transaction, use its repositories (tx.…), not the store\'s'));
    }
    if (closed) return Promise.reject(new StoreClosed());
    if (!lock.locked) {
      try {
        return Promise.resolve(fn());
      } catch (err) {
        return Promise.reject(err);
      }
    }
    return lock.acquire().then(() => {
      try {
        return fn();
      } finally {
        lock.release();
      }
    });
  };

  const top: SqlExecutor = {
    dialect: 'sqlite',
    all: (sql, params) => locked(() => ops.all(sql, params)),
    get: (sql, params) => locked(() => ops.get(sql, params)),
    run: (sql, params) => locked(() => ops.run(sql, params)),
    exec: (sql) => locked(() => ops.exec(sql)),
  };

  // The executor handed to a transaction's body: the lock is already held.
  const inScope = (scope: Scope): SqlExecutor => {
    const check = <T>(fn: () => T): Promise<T> => {
      if (!scope.active) return Promise.reject(new StoreMisuse('store: this transaction has ended; its repositories can no longer be used'));
      try {
        return Promise.resolve(fn());
      } catch (err) {
        return Promise.reject(err);
      }
    };
    return {
      dialect: 'sqlite',
      all: (sql, params) => check(() => ops.all(sql, params)),
      get: (sql, params) => check(() => ops.get(sql, params)),
      run: (sql, params) => check(() => ops.run(sql, params)),
      exec: (sql) => check(() => ops.exec(sql)),
    };
  };

  const transaction = async <T>(fn: (sql: SqlExecutor) => Promise<T>): Promise<T> => {
    if (insideTransaction()) throw new StoreMisuse('store: transactions do not nest; use the outer transaction\'s repositories');
    if (closed) throw new StoreClosed();
    await lock.acquire();
    const scope: Scope = { active: true };
    try {
      if (closed) throw new StoreClosed();
      // IMMEDIATE: take the write lock up front, so another process on the
      // same file waits (busy_timeout) instead of failing at the first write.
      db.exec('BEGIN IMMEDIATE');
      try {
        const result = await scopes.run(scope, () => fn(inScope(scope)));
        db.exec('COMMIT');
        return result;
      } catch (err) {
        if (db.inTransaction) db.exec('ROLLBACK');
        throw err;
      }
    } finally {
      scope.active = false;
      lock.release();
    }
  };

  // ---- group commit ----
  const maxGroup = Math.max(1, options.maxGroup ?? 256);
  const pending: Pending[] = [];
  let scheduled = false;
  let flushing: Promise<void> = Promise.resolve();

  const flush = async (): Promise<void> => {
    scheduled = false;
    const batch = pending.splice(0, maxGroup);
    if (pending.length > 0) schedule();
    if (batch.length === 0) return;
    const outcomes: Outcome[] = [];
    await lock.acquire();
    const scope: Scope = { active: true };
    try {
      if (closed) throw new StoreClosed();
      db.exec('BEGIN IMMEDIATE');
      try {
        const sql = inScope(scope);
        for (const item of batch) {
          db.exec('SAVEPOINT grouped');
          try {
            outcomes.push({ ok: true, value: await scopes.run(scope, () => item.fn(sql)) });
            db.exec('RELEASE grouped');
          } catch (error) {
            // Some errors (SQLITE_FULL, SQLITE_IOERR, ...) make SQLite roll
            // back the whole transaction, not just the savepoint: then the
            // rest would run in autocommit, so the group must stop here.
            if (!db.inTransaction) throw error;
            db.exec('ROLLBACK TO grouped');
            db.exec('RELEASE grouped');
            outcomes.push({ ok: false, error });
          }
        }
        db.exec('COMMIT');
      } catch (error) {
        if (db.inTransaction) db.exec('ROLLBACK');
        throw error;
      }
    } catch (error) {
      // Nothing of the group is on disk: everyone is refused. A unit that had
      // failed on its own keeps its own, more precise, error.
      batch.forEach((item, i) => {
        const own = outcomes[i];
        item.reject(own && !own.ok ? own.error : error);
      });
      return;
    } finally {
      scope.active = false;
      lock.release();
    }
    batch.forEach((item, i) => {
      const outcome = outcomes[i]!;
      if (outcome.ok) item.resolve(outcome.value);
      else item.reject(outcome.error);
    });
  };

  function schedule(): void {
    if (scheduled) return;
    scheduled = true;
    // Always on a later turn: setImmediate also lets the I/O that finished
    // during this turn (more outcomes, more requests) join the same group.
    setImmediate(() => {
      flushing = flushing.then(flush, flush);
    });
  }

  const grouped = <T>(fn: (sql: SqlExecutor) => Promise<T>): Promise<T> => {
    if (insideTransaction()) return Promise.reject(new StoreMisuse('store: grouped work cannot start inside a transaction'));
    // Refused from the moment close() begins: work queued during its last
    // flush would otherwise be dropped, its promise never settling.
    if (closing !== undefined) return Promise.reject(new StoreClosed());
    return new Promise<T>((resolve, reject) => {
      pending.push({ fn, resolve: resolve as (value: unknown) => void, reject });
      schedule();
    });
  };

  return {
    dialect: 'sqlite',
    file,
    sql: top,
    transaction,
    grouped,
    close() {
      closing ??= (async () => {
        // Work already queued commits first; nothing new is taken.
        while (pending.length > 0 || scheduled) {
          await new Promise((resolve) => setImmediate(resolve));
          await flushing;
        }
        await flushing;
        closed = true;
        // Nothing can be left (grouped() refuses once closing); if anything is, it is refused, never dropped unsettled.
        for (const item of pending.splice(0)) item.reject(new StoreClosed());
        await lock.acquire();
        try {
          db.close();
        } finally {
          lock.release();
        }
      })();
      return closing;
    },
    describe: () => (inMemory ? 'sqlite (in memory)' : `sqlite ${file}`),
  };
}
