/** Small named facts the relay keeps about itself (e.g. that the bootstrap token was issued). */
import type { SqlExecutor } from './sql.js';

/** The settings table. */
export class SettingsStore {
  constructor(private readonly sql: SqlExecutor) {}

  async get(name: string): Promise<string | undefined> {
    return (await this.sql.get<{ value: string }>('SELECT value FROM settings WHERE name = ?', [name]))?.value;
  }

  /** Sets `name` unless it is set; true when this call set it. Atomic: of two callers at once, one wins. */
  async putIfAbsent(name: string, value: string): Promise<boolean> {
    return (await this.sql.run('INSERT INTO settings (name, value) VALUES (?, ?) ON CONFLICT (name) DO NOTHING', [name, value])) === 1;
  }

  /** Sets `name`; true when it was not set before. */
  async put(name: string, value: string): Promise<boolean> {
    const before = await this.get(name);
    await this.sql.run('INSERT INTO settings (name, value) VALUES (?, ?) ON CONFLICT (name) DO UPDATE SET value = excluded.value', [name, value]);
    return before === undefined;
  }
}
