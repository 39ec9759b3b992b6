/**
 * Applies the schema migrations at start, on either backend, and refuses a
 * database whose schema is newer than this relay knows (a newer relay ran on
 * it; running an older one could misread or damage its data).
 */
import type { Backend } from './backend.js';
import { MIGRATIONS, type Migration } from './migrations.js';

/** The newest schema version this relay knows. */
export const SCHEMA_VERSION = MIGRATIONS[MIGRATIONS.length - 1]!.version;

/** Thrown when the database was migrated by a newer relay. */
export class SchemaTooNew extends Error {
  constructor(
    readonly found: number,
    readonly known: number,
  ) {
    super(`The database schema is version ${found}, newer than this relay knows (${known}): a newer relay has used it. Run that version (or newer), not this one.`);
    this.name = 'SchemaTooNew';
  }
}

// An arbitrary constant: the advisory lock relays take while migrating, so two starting at once do not both migrate.
const MIGRATION_LOCK = 7_263_401;

/** Brings the schema to SCHEMA_VERSION; returns it. */
export async function migrate(backend: Backend, migrations: readonly Migration[] = MIGRATIONS): Promise<number> {
  const known = migrations[migrations.length - 1]?.version ?? 0;
  if (backend.dialect === 'sqlite') {
    const current = (await backend.sql.get<{ user_version: number }>('PRAGMA user_version'))!.user_version;
    if (current > known) throw new SchemaTooNew(current, known);
    for (const migration of migrations) {
      if (migration.version <= current) continue;
      // Each step in its own transaction: a failure leaves the last good version.
      await backend.transaction(async (sql) => {
        await sql.exec(migration.sqlite);
        await sql.exec(`PRAGMA user_version = ${migration.version}`);
      });
    }
    return (await backend.sql.get<{ user_version: number }>('PRAGMA user_version'))!.user_version;
  }
  return backend.transaction(async (sql) => {
    // Transaction-scoped: released at COMMIT, after the new version is visible.
    await sql.get('SELECT pg_advisory_xact_lock(?)', [MIGRATION_LOCK]);
    await sql.exec('CREATE TABLE IF NOT EXISTS schema_migrations (version INTEGER PRIMARY KEY, name TEXT NOT NULL, applied_at TEXT NOT NULL)');
    const row = await sql.get<{ version: number | null }>('SELECT MAX(version) AS version FROM schema_migrations');
    const current = row?.version ?? 0;
    if (current > known) throw new SchemaTooNew(current, known);
    for (const migration of migrations) {
      if (migration.version <= current) continue;
      await sql.exec(migration.postgres);
      await sql.run('INSERT INTO schema_migrations (version, name, applied_at) VALUES (?, ?, ?)', [migration.version, migration.name, new Date().toISOString()]);
    }
    return Math.max(current, known);
  });
}
