/**
 * vitest global setup: a PostgreSQL server for the tests that run the store
 * on PostgreSQL. TEST_POSTGRES_URL names an existing server (tests create
 * and drop their own databases on it); otherwise a private cluster is started
 * from Debian's postgresql binaries for the run and removed after it.
 */
import { randomBytes } from 'node:crypto';
import pg from 'pg';
import type { TestProject } from 'vitest/node';
import { startPostgresCluster } from '../../dev/pg-cluster.js';

declare module 'vitest' {
  export interface ProvidedContext {
    /** Superuser URL of the test server's `postgres` database. */
    postgresUrl: string;
    /** Prefix of the databases this run creates (dropped at the end on an external server). */
    postgresRun: string;
  }
}

export default async function setup(project: TestProject): Promise<() => Promise<void>> {
  const run = `relay_${randomBytes(4).toString('hex')}_`;
  project.provide('postgresRun', run);
  const external = process.env['TEST_POSTGRES_URL'];
  if (external) {
    project.provide('postgresUrl', external);
    return async () => {
      const client = new pg.Client({ connectionString: external });
      await client.connect();
      try {
        const { rows } = await client.query<{ datname: string }>('SELECT datname FROM pg_database WHERE datname LIKE $1', [`${run}%`]);
        for (const { datname } of rows) await client.query(`DROP DATABASE IF EXISTS "${datname}" WITH (FORCE)`);
      } finally {
        await client.end();
      }
    };
  }
  const cluster = await startPostgresCluster();
  project.provide('postgresUrl', cluster.url);
  return async () => cluster.stop();
}
