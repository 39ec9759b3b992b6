/**
 * What a database backend gives the store: an executor outside transactions,
 * transactions, and group commit. SQLite (sqlite.ts) and PostgreSQL
 * (postgres.ts) implement it; nothing else in the relay sees either driver.
 */
import type { Dialect, SqlExecutor } from './sql.js';

/** One opened database. */
export interface Backend {
  readonly dialect: Dialect;
  /** Statements outside any transaction, each committed on its own. */
  readonly sql: SqlExecutor;
  /**
   * Runs `fn` in one transaction on one connection; commits when it resolves,
   * rolls back when it rejects. Transactions do not nest, and inside one only
   * the executor handed to `fn` may be used.
   */
  transaction<T>(fn: (sql: SqlExecutor) => Promise<T>): Promise<T>;
  /**
   * Like transaction, but may share one durable commit with the other work
   * queued in the same event-loop turn (each its own savepoint). Resolves only
   * once that commit is on disk; rejects with `fn`'s error (only it is rolled
   * back) or the commit's.
   */
  grouped<T>(fn: (sql: SqlExecutor) => Promise<T>): Promise<T>;
  /** Waits for queued work, then closes. */
  close(): Promise<void>;
  /** Where the data lives, for the banner and logs (never credentials). */
  describe(): string;
}
