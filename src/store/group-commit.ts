/**
 * Group commit: many small write transactions run as savepoints of one outer
 * transaction, so that one `fsync`ed COMMIT (synchronous=FULL) covers all of
 * them. Each one's promise settles only after that COMMIT has returned, so
 * "resolved" still means "on disk".
 */
import type { Db } from './db.js';

/** How a group commit batches its work. */
export interface GroupCommitOptions {
  /** At most this many units of work per outer transaction; the rest go in the next one. */
  maxBatch?: number;
}

interface Pending {
  fn: () => unknown;
  resolve: (value: unknown) => void;
  reject: (error: unknown) => void;
}

type Outcome = { ok: true; value: unknown } | { ok: false; error: unknown };

/** Batches write transactions queued in the same event-loop turn into one durable commit. */
export class GroupCommit {
  private pending: Pending[] = [];
  private scheduled = false;
  private readonly maxBatch: number;

  constructor(
    private readonly db: Db,
    options: GroupCommitOptions = {},
  ) {
    this.maxBatch = Math.max(1, options.maxBatch ?? 256);
  }

  /**
   * Runs `fn` in the next group transaction as its own savepoint. Resolves
   * with its result once the transaction holding it has committed; rejects
   * with `fn`'s own error (only `fn` is rolled back, the others commit), or
   * with the group's error when the group could not commit (nothing of it did).
   * `fn` must be synchronous, as for any better-sqlite3 transaction.
   */
  run<T>(fn: () => T): Promise<T> {
    return new Promise<T>((resolve, reject) => {
      this.pending.push({ fn, resolve: resolve as (value: unknown) => void, reject });
      this.schedule();
    });
  }

  /** Units of work waiting for the next flush. */
  get waiting(): number {
    return this.pending.length;
  }

  private schedule(): void {
    if (this.scheduled) return;
    this.scheduled = true;
    // Always on a later turn, never inside run(): run() may be called from
    // within another transaction, where BEGIN would only open a savepoint and
    // "committed" would be a lie. setImmediate also lets the I/O that finished
    // during this turn (more outcomes, more requests) join the same group.
    setImmediate(() => this.flush());
  }

  private flush(): void {
    this.scheduled = false;
    const batch = this.pending.splice(0, this.maxBatch);
    if (this.pending.length > 0) this.schedule();
    if (batch.length === 0) return;
    const outcomes: Outcome[] = [];
    try {
      // A transaction left open by someone else would turn ours into a savepoint.
      if (this.db.inTransaction) throw new Error('group commit: a transaction is already open on this connection');
      this.db
        .transaction(() => {
          for (const item of batch) {
            try {
              outcomes.push({ ok: true, value: this.db.transaction(item.fn)() });
            } catch (error) {
              // Some errors (SQLITE_FULL, SQLITE_IOERR, ...) make SQLite roll
              // back the whole transaction, not just the savepoint: then the
              // rest would run in autocommit, so the group must stop here.
              if (!this.db.inTransaction) throw error;
              outcomes.push({ ok: false, error });
            }
          }
        })
        .immediate();
    } catch (error) {
      // Nothing of the group is on disk: everyone is refused. A unit that had
      // failed on its own keeps its own, more precise, error.
      batch.forEach((item, i) => {
        const own = outcomes[i];
        item.reject(own && !own.ok ? own.error : error);
      });
      return;
    }
    batch.forEach((item, i) => {
      const outcome = outcomes[i]!;
      if (outcome.ok) item.resolve(outcome.value);
      else item.reject(outcome.error);
    });
  }
}
