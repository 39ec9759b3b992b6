/** The store: one SQLite database and the repositories over it. */
import { AuditLog } from './audit.js';
import { openDatabase, type Db } from './db.js';
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
  close(): void;
}

/** Opens the database file (or ':memory:') and builds the repositories; `now` stamps the audit log. */
export function createStore(file: string, now: () => Date): Store {
  const db = openDatabase(file);
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
    close: () => db.close(),
  };
}
