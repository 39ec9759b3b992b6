/**
 * The dialect seam: every repository speaks to the database through this one
 * small interface, with SQL written once, `?` placeholders and portable SQL
 * (ON CONFLICT, RETURNING, CASE, COALESCE). The two backends (sqlite.ts,
 * postgres.ts) run it; the few places where the dialects differ ask
 * `dialect` (e.g. `FOR UPDATE SKIP LOCKED`, advisory locks).
 *
 * No driver type crosses this file: repositories see rows as plain objects,
 * integers as numbers, blobs as Buffers.
 */

/** The two databases the store runs on. */
export type Dialect = 'sqlite' | 'postgres';

/** A value bound to a `?` placeholder. Booleans are stored as 0/1 integers on both backends. */
export type SqlParam = string | number | Buffer | null;

/** Runs SQL on one connection (or the pool, outside a transaction). */
export interface SqlExecutor {
  readonly dialect: Dialect;
  /** Every row. */
  all<T>(sql: string, params?: readonly SqlParam[]): Promise<T[]>;
  /** The first row, or undefined. */
  get<T>(sql: string, params?: readonly SqlParam[]): Promise<T | undefined>;
  /** A write; resolves with the number of rows it changed. */
  run(sql: string, params?: readonly SqlParam[]): Promise<number>;
  /** Several statements without parameters (migrations, tests). */
  exec(sql: string): Promise<void>;
}

/** `?, ?, ?` for a list of `n` values (n ≥ 1): IN lists built from a length, never from input text. */
export function placeholders(n: number): string {
  if (!Number.isInteger(n) || n < 1) throw new Error(`placeholders: need at least one value (got ${n})`);
  return new Array<string>(n).fill('?').join(', ');
}

// IN lists longer than this are looked up in slices: SQLite binds at most
// 32,766 variables and PostgreSQL 65,535 parameters in one statement, and a
// caller's list (an announcement audience: up to 100,000) may be longer.
/** How many values one IN (...) list binds at most. */
export const LOOKUP_SLICE = 200;

/** `values` in consecutive slices of at most LOOKUP_SLICE, for one IN (...) query each. */
export function* lookupSlices<T>(values: readonly T[]): Generator<T[]> {
  for (let i = 0; i < values.length; i += LOOKUP_SLICE) yield values.slice(i, i + LOOKUP_SLICE);
}

/**
 * Rewrites `?` placeholders to PostgreSQL's `$1, $2, …`, leaving `?` inside
 * single-quoted literals and double-quoted identifiers alone.
 */
export function toDollarParams(sql: string): string {
  let out = '';
  let n = 0;
  let quote: "'" | '"' | null = null;
  for (const ch of sql) {
    if (quote !== null) {
      if (ch === quote) quote = null;
      out += ch;
    } else if (ch === "'" || ch === '"') {
      quote = ch;
      out += ch;
    } else if (ch === '?') {
      n += 1;
      out += `$${n}`;
    } else {
      out += ch;
    }
  }
  return out;
}

/** Thrown when store code is used the wrong way (a bug in the relay, never a user error). */
export class StoreMisuse extends Error {
  constructor(message: string) {
    super(message);
    this.name = 'StoreMisuse';
  }
}

/**
 * Thrown for work offered to a store that is closing or closed (the relay is
 * shutting down): the store cannot take it, as when it is unreachable, so
 * callers answer `unavailable` (try again shortly) and keep what they could
 * not record.
 */
export class StoreClosed extends Error {
  constructor() {
    super('store: closed (the relay is shutting down); nothing more can be stored here');
    this.name = 'StoreClosed';
  }
}
