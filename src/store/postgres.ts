/**
 * The PostgreSQL backend (`pg`), selected by RELAY_DATABASE_URL: several
 * relays share one database. Each transaction runs on one pooled connection;
 * concurrency between relays is the database's (row locks, `FOR UPDATE SKIP
 * LOCKED` on delivery claims, an advisory lock around audit appends), never
 * an in-process structure.
 */
import { AsyncLocalStorage } from 'node:async_hooks';
import pg from 'pg';
import type { Backend } from './backend.js';
import { redactDatabaseUrl } from './database-url.js';
import { StoreMisuse, toDollarParams, type SqlExecutor, type SqlParam } from './sql.js';

// int8 (COUNT(*), BIGINT columns such as ms timestamps) as a JS number: every
// value the relay stores fits in 2^53; a string would leak the driver's choice.
const INT8_OID = 20;
const types = {
  getTypeParser: ((oid: number, format?: 'text' | 'binary') => (oid === INT8_OID ? (value: string) => Number(value) : pg.types.getTypeParser(oid, format))) as typeof pg.types.getTypeParser,
};

/** Options of the PostgreSQL backend. */
export interface PostgresOptions {
  /** Connections in the pool (default 10). */
  maxConnections?: number;
  /** Told about errors of idle pooled connections (a restarted server); they must not crash the relay. */
  onIdleError?: (err: Error) => void;
}

/** Opens a pool on `url` (postgres://…; TLS as its sslmode says). Does not connect until first used. */
export function openPostgres(url: string, options: PostgresOptions = {}): Backend {
  const pool = new pg.Pool({ connectionString: url, max: options.maxConnections ?? 10, types, application_name: 'incident-relay' });
  pool.on('error', (err) => options.onIdleError?.(err));
  const scopes = new AsyncLocalStorage<{ active: boolean }>();
  const texts = new Map<string, string>();
  const text = (sql: string): string => {
    let converted = texts.get(sql);
    if (converted === undefined) {
      if (texts.size >= 1024) texts.clear();
      converted = toDollarParams(sql);
      texts.set(sql, converted);
    }
    return converted;
  };
  const values = (params: readonly SqlParam[] | undefined): SqlParam[] => (params ? [...params] : []);

  const executor = (query: (sql: string, params: SqlParam[]) => Promise<pg.QueryResult>, guard: () => void): SqlExecutor => ({
    dialect: 'postgres',
    async all<T>(sql: string, params?: readonly SqlParam[]) {
      guard();
      return (await query(text(sql), values(params))).rows as T[];
    },
    async get<T>(sql: string, params?: readonly SqlParam[]) {
      guard();
      return (await query(text(sql), values(params))).rows[0] as T | undefined;
    },
    async run(sql: string, params?: readonly SqlParam[]) {
      guard();
      return (await query(text(sql), values(params))).rowCount ?? 0;
    },
    async exec(sql: string) {
      guard();
      await query(sql, []);
    },
  });

  // Outside a transaction: any pooled connection. Inside one, this would use
  // another connection that cannot see the transaction's rows (and could wait
  // on its locks for ever), so it is refused.
  const top = executor(
    (sql, params) => (params.length === 0 ? pool.query(sql) : pool.query(sql, params)),
    () => {
      if (scopes.getStore()?.active === true) throw new StoreMisuse('store: inside a transaction, use its repositories (tx.…), not the store\'s');
    },
  );

  const transaction = async <T>(fn: (sql: SqlExecutor) => Promise<T>): Promise<T> => {
    if (scopes.getStore()?.active === true) throw new StoreMisuse('store: transactions do not nest; use the outer transaction\'s repositories');
    const client = await pool.connect();
    const scope = { active: true };
    let broken: Error | undefined;
    try {
      await client.query('BEGIN');
      try {
        const sql = executor(
          (q, params) => (params.length === 0 ? client.query(q) : client.query(q, params)),
          () => {
            if (!scope.active) throw new StoreMisuse('store: this transaction has ended; its repositories can no longer be used');
          },
        );
        const result = await scopes.run(scope, () => fn(sql));
        await client.query('COMMIT');
        return result;
      } catch (err) {
        try {
          await client.query('ROLLBACK');
        } catch (rollbackErr) {
          // The connection itself is gone: do not hand it back to the pool.
          broken = rollbackErr as Error;
        }
        throw err;
      }
    } finally {
      scope.active = false;
      client.release(broken);
    }
  };

  return {
    dialect: 'postgres',
    sql: top,
    transaction,
    // PostgreSQL already shares WAL flushes between concurrent commits; a
    // transaction per unit keeps one unit's failure from touching another's.
    grouped: transaction,
    async close() {
      await pool.end();
    },
    describe: () => `postgresql ${redactDatabaseUrl(url)}`,
  };
}
