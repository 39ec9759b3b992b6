/** Fresh PostgreSQL databases for tests, on the server of test/setup/postgres.ts. */
import { randomBytes } from 'node:crypto';
import pg from 'pg';
import { inject } from 'vitest';

/** A new, empty database (C collation, like SQLite's binary ordering); its URL. */
export async function freshDatabaseUrl(): Promise<string> {
  const base = inject('postgresUrl');
  const name = `${inject('postgresRun')}${randomBytes(6).toString('hex')}`;
  const client = new pg.Client({ connectionString: base });
  await client.connect();
  try {
    await client.query(`CREATE DATABASE "${name}" TEMPLATE template0 ENCODING 'UTF8' LC_COLLATE 'C' LC_CTYPE 'C'`);
  } finally {
    await client.end();
  }
  const url = new URL(base);
  url.pathname = `/${name}`;
  return url.toString();
}
