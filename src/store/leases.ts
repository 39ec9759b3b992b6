/**
 * Named leases: periodic work (the Slack watchdog, purges, audit
 * checkpoints) runs on one relay at a time. A relay holds a lease until its
 * expiry and renews it while it works; when it dies, another relay takes the
 * lease once it has expired. The database decides, never a timer race.
 */
import type { SqlExecutor } from './sql.js';

/** Lease storage. */
export class LeaseStore {
  constructor(private readonly sql: SqlExecutor) {}

  /**
   * Takes (or renews) lease `name` for `owner` until `at + ttlMs`, when it is
   * free, expired or already `owner`'s. True when `owner` now holds it.
   */
  async acquire(name: string, owner: string, at: Date, ttlMs: number): Promise<boolean> {
    const changes = await this.sql.run(
      `INSERT INTO leases (name, owner, until_ms) VALUES (?, ?, ?)
       ON CONFLICT (name) DO UPDATE SET owner = excluded.owner, until_ms = excluded.until_ms
       WHERE leases.owner = excluded.owner OR leases.until_ms < ?`,
      [name, owner, at.getTime() + ttlMs, at.getTime()],
    );
    return changes === 1;
  }

  /** Gives the lease up (shutdown), so another relay need not wait for its expiry. */
  async release(name: string, owner: string): Promise<void> {
    await this.sql.run('DELETE FROM leases WHERE name = ? AND owner = ?', [name, owner]);
  }

  /** Who holds `name` at `at`, if anyone. */
  async holder(name: string, at: Date): Promise<string | undefined> {
    const row = await this.sql.get<{ owner: string }>('SELECT owner FROM leases WHERE name = ? AND until_ms >= ?', [name, at.getTime()]);
    return row?.owner;
  }
}
