/**
 * The store: one database (SQLite by default, PostgreSQL when
 * RELAY_DATABASE_URL says so) and the repositories over it. Every repository
 * call returns a Promise; a transaction hands its body the same repositories
 * bound to that transaction (`store.transaction(async (tx) => …)`). Nothing
 * outside src/store/ sees a database driver.
 */
import fs from 'node:fs';
import { AnnouncementStore } from './announcements.js';
import { AuditLog, type InTransaction } from './audit.js';
import type { Backend } from './backend.js';
import { ConsoleSessionStore } from './console-sessions.js';
import { IdempotencyStore } from './idempotency.js';
import { IncidentStore } from './incidents.js';
import { KeyStore } from './keys.js';
import { LeaseStore } from './leases.js';
import { CheckpointStore } from './checkpoints.js';
import { SendLimitStore } from './limits.js';
import { migrate } from './migrate.js';
import { normaliseStoredAddresses } from './normalise-addresses.js';
import { Outbox } from './outbox.js';
import { openPostgres } from './postgres.js';
import { SettingsStore } from './settings.js';
import { SlackChannelStore } from './slack.js';
import { SmsStore } from './sms.js';
import { openSqlite } from './sqlite.js';
import type { Dialect, SqlExecutor } from './sql.js';
import { TokenStore } from './tokens.js';
import { announcementHash } from '../policy/gates.js';
import { normalisedEmail } from '../validation.js';

/** The repositories, bound to the store (each call its own statement) or to one transaction. */
export interface Repositories {
  tokens: TokenStore;
  incidents: IncidentStore;
  keys: KeyStore;
  audit: AuditLog;
  outbox: Outbox;
  idempotency: IdempotencyStore;
  sms: SmsStore;
  slackChannels: SlackChannelStore;
  settings: SettingsStore;
  leases: LeaseStore;
  sendLimits: SendLimitStore;
  /** Signed checkpoints of the audit chain's head. */
  checkpoints: CheckpointStore;
  announcements: AnnouncementStore;
  /** Web console sessions (issue 13). */
  consoleSessions: ConsoleSessionStore;
}

/** The store of one relay. */
export interface Store extends Repositories {
  readonly dialect: Dialect;
  /**
   * Backend-neutral SQL outside any transaction: for migrations tooling and
   * tests that must reach behind the repositories (e.g. to tamper with the
   * audit log as an attacker would). Relay code uses the repositories.
   */
  readonly sql: SqlExecutor;
  /** Runs `fn` in one transaction; commits when it resolves, rolls back when it throws. */
  transaction<T>(fn: (tx: Repositories) => Promise<T>): Promise<T>;
  /**
   * Like transaction, but on SQLite may share one fsync'ed COMMIT with the
   * other work queued in the same event-loop turn; resolves only once that
   * commit is on disk (SPEC §6: accepted means committed).
   */
  grouped<T>(fn: (tx: Repositories) => Promise<T>): Promise<T>;
  /** Resolves when the database answers (health checks). */
  ping(): Promise<void>;
  /** Where the data lives (never credentials), for the banner. */
  describe(): string;
  close(): Promise<void>;
}

function repositories(sql: SqlExecutor, now: () => Date, inTransaction: InTransaction): Repositories {
  return {
    tokens: new TokenStore(sql),
    incidents: new IncidentStore(sql),
    keys: new KeyStore(sql),
    audit: new AuditLog(sql, now, inTransaction),
    outbox: new Outbox(sql),
    idempotency: new IdempotencyStore(sql),
    sms: new SmsStore(sql),
    slackChannels: new SlackChannelStore(sql),
    settings: new SettingsStore(sql),
    leases: new LeaseStore(sql),
    sendLimits: new SendLimitStore(sql),
    checkpoints: new CheckpointStore(sql),
    announcements: new AnnouncementStore(sql),
    consoleSessions: new ConsoleSessionStore(sql),
  };
}

/** Where the store lives: a PostgreSQL URL, or a SQLite file (':memory:' for tests). */
export type StoreLocation = { url: string } | { file: string };

/** Options of openStore. */
export interface StoreOptions {
  /** Stamps audit events; tests pass their clock. */
  now: () => Date;
  /** Told when an idle PostgreSQL connection fails (the pool replaces it). */
  onBackendError?: (err: Error) => void;
}

/** Wraps an opened backend as the store. */
export function storeOver(backend: Backend, now: () => Date): Store {
  const wrap = (sql: SqlExecutor) => repositories(sql, now, (fn) => fn(sql));
  const top = repositories(backend.sql, now, (fn) => backend.transaction(fn));
  return {
    ...top,
    dialect: backend.dialect,
    sql: backend.sql,
    transaction: (fn) => backend.transaction((sql) => fn(wrap(sql))),
    grouped: (fn) => backend.grouped((sql) => fn(wrap(sql))),
    ping: async () => {
      await backend.sql.get('SELECT 1 AS ok');
    },
    describe: () => backend.describe(),
    close: () => backend.close(),
  };
}

/** Opens the database, runs the migrations and the address normalisation, and builds the repositories. */
export async function openStore(location: StoreLocation, options: StoreOptions): Promise<Store> {
  const backend = 'url' in location ? openPostgres(location.url, { onIdleError: options.onBackendError }) : openSqlite(location.file);
  try {
    await migrate(backend);
    // After the SQL migrations (SQL cannot punycode): addresses stored before every entry point normalised them.
    await backend.transaction((sql) =>
      normaliseStoredAddresses(sql, new AuditLog(sql, options.now, (fn) => fn(sql)), { normalise: normalisedEmail, announcementHash, now: options.now() }),
    );
  } catch (err) {
    await backend.close().catch(() => undefined);
    throw err;
  }
  if ('file' in location && location.file !== ':memory:') {
    // The WAL and shared-memory files hold the same data as the database file.
    for (const suffix of ['-wal', '-shm']) {
      if (fs.existsSync(location.file + suffix)) fs.chmodSync(location.file + suffix, 0o600);
    }
  }
  return storeOver(backend, options.now);
}

export type { Dialect, SqlExecutor } from './sql.js';
