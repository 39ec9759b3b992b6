/** The store: one SQLite database and the repositories over it. */
import { AuditLog } from './audit.js';
import { openDatabase, type Db } from './db.js';
import { GroupCommit } from './group-commit.js';
import { IdempotencyStore } from './idempotency.js';
import { IncidentStore } from './incidents.js';
import { KeyStore } from './keys.js';
import { Outbox } from './outbox.js';
import { SlackChannelStore } from './slack.js';
import { SmsStore } from './sms.js';
import { TokenStore } from './tokens.js';

export interface Store {
  db: Db;
  tokens: TokenStore;
  incidents: IncidentStore;
  keys: KeyStore;
  audit: AuditLog;
  outbox: Outbox;
  idempotency: IdempotencyStore;
  sms: SmsStore;
  slackChannels: SlackChannelStore;
  /** Runs `fn` in one transaction (IMMEDIATE: takes the write lock up front). */
  transaction<T>(fn: () => T): T;
  /**
   * Runs `fn` as a savepoint of the next group commit (one COMMIT for all the
   * work queued in the same event-loop turn); resolves once that commit is on
   * disk, rejects with `fn`'s error (only it is rolled back) or the commit's.
   */
  grouped<T>(fn: () => T): Promise<T>;
  close(): void;
}

/** Opens the database file (or ':memory:') and builds the repositories; `now` stamps the audit log. */
export function createStore(file: string, now: () => Date): Store {
  const db = openDatabase(file);
  const group = new GroupCommit(db);
  return {
    db,
    tokens: new TokenStore(db),
    incidents: new IncidentStore(db),
    keys: new KeyStore(db),
    audit: new AuditLog(db, now),
    outbox: new Outbox(db),
    idempotency: new IdempotencyStore(db),
    sms: new SmsStore(db),
    slackChannels: new SlackChannelStore(db),
    transaction: <T>(fn: () => T): T => db.transaction(fn).immediate(),
    grouped: <T>(fn: () => T): Promise<T> => group.run(fn),
    close: () => db.close(),
  };
}
