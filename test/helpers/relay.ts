/**
 * A relay for tests: the real app over a real SQLite database (in memory
 * unless a data dir is given), a real relay key, and a clock the test moves.
 */
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import * as openpgp from 'openpgp';
import { pino } from 'pino';
import supertest from 'supertest';
import type { Express } from 'express';
import { ChannelHealth } from '../../src/channels/health.js';
import { attachSlackRoom, type SlackRoom, type SlackRoomOptions } from '../../src/channels/slack/index.js';
import { testConfig, type RelayConfig } from '../../src/config.js';
import { NO_EVENTS, type RelayContext } from '../../src/context.js';
import { createApp } from '../../src/http/app.js';
import { createMetrics } from '../../src/metrics.js';
import { EncryptionPool } from '../../src/pgp/pool.js';
import { GENERATED_KEY_FILE, loadOrCreateRelayKey, type RelayKey } from '../../src/pgp/relay-key.js';
import { KeyService } from '../../src/services/keys.js';
import { InFlightBudget, defaultInFlightBytes } from '../../src/services/budget.js';
import { RateLimiter } from '../../src/services/rate-limit.js';
import { openStore, type Store } from '../../src/store/index.js';
import type { Dialect } from '../../src/store/sql.js';
import type { TokenRole } from '../../src/store/tokens.js';
import { freshDatabaseUrl } from './postgres.js';

/** A clock the test sets and advances. */
export class TestClock {
  // Real time by default: keys made by gpg during the test must already be valid.
  constructor(public current = new Date()) {}
  now = (): Date => new Date(this.current.getTime());
  advance(ms: number): void {
    this.current = new Date(this.current.getTime() + ms);
  }
}

let relayKeyPromise: Promise<RelayKey> | undefined;

/**
 * How old the shared relay key is when it is made. A TestClock is frozen when
 * its relay is built, and OpenPGP refuses to sign at a time before the key's
 * creation ("Signature creation time is in the future"): a key generated
 * after some clock was frozen (the first relay of a process, any test that
 * freezes a clock before its first relay) would fail at random. Backdated by
 * a day, the key is valid at every clock a test sets, whatever the order.
 */
const RELAY_KEY_AGE_MS = 24 * 60 * 60 * 1000;

/** One relay key per test process: generating is cheap, but not free. */
export function sharedRelayKey(): Promise<RelayKey> {
  relayKeyPromise ??= (async () => {
    const dir = fs.mkdtempSync(path.join(os.tmpdir(), 'relay-key-'));
    const userId = { name: 'incident-relay', email: 'relay@corp.example' };
    // The key loadOrCreateRelayKey would generate (same type), but created in
    // the past; it is then loaded the way the relay loads its data dir's key.
    const { privateKey } = await openpgp.generateKey({
      type: 'ecc',
      curve: 'curve25519Legacy',
      userIDs: [userId],
      keyExpirationTime: 0,
      date: new Date(Date.now() - RELAY_KEY_AGE_MS),
      format: 'armored',
    });
    fs.writeFileSync(path.join(dir, GENERATED_KEY_FILE), privateKey, { mode: 0o600 });
    const { key, created } = await loadOrCreateRelayKey({ dataDir: dir, userId });
    if (created) throw new Error('sharedRelayKey: the backdated key was not loaded');
    return key;
  })();
  return relayKeyPromise;
}

// --- encryption pool (issue 7) ---
let poolPromise: Promise<EncryptionPool> | undefined;

/** One encryption worker pool per test process, over sharedRelayKey(); its idle workers do not hold the process open. */
export function sharedEncryptionPool(): Promise<EncryptionPool> {
  poolPromise ??= sharedRelayKey().then((key) => new EncryptionPool(key.privateKey, { size: 2 }));
  return poolPromise;
}

// TEST_ENCRYPTION_POOL=1 runs every test relay's PGP work in the pool, as main.ts does.
const POOL_BY_DEFAULT = process.env['TEST_ENCRYPTION_POOL'] === '1';
// --- end encryption pool ---

/** The backends every store and pipeline test can run on; TEST_STORE picks the default of createTestRelay. */
export const BACKENDS: readonly Dialect[] = ['sqlite', 'postgres'];

/** The default backend of test relays: TEST_STORE=postgres runs the whole suite on PostgreSQL. */
export const DEFAULT_BACKEND: Dialect = process.env['TEST_STORE'] === 'postgres' ? 'postgres' : 'sqlite';

/** A store for a test: SQLite (in memory unless `file` is given) or PostgreSQL (a fresh database unless `url` is given). */
export async function openTestStore(backend: Dialect, now: () => Date, file = ':memory:', url?: string): Promise<Store> {
  return backend === 'postgres' ? openStore({ url: url ?? (await freshDatabaseUrl()) }, { now }) : openStore({ file }, { now });
}

export interface TestRelay {
  ctx: RelayContext;
  app: Express;
  clock: TestClock;
  /** An admin token. */
  admin: string;
  /** Issues a token for `email` directly in the store. */
  tokenFor(email: string, role?: TokenRole): Promise<string>;
  request: ReturnType<typeof supertest>;
  /** The Slack room, when `options.slack` was given and config.slackBotToken is set. */
  slack: SlackRoom | undefined;
}

/** Options of createTestRelay beyond the configuration. */
export interface TestRelayOptions {
  /** SQLite file (default in memory). */
  file?: string;
  /** The store backend (default DEFAULT_BACKEND). */
  backend?: Dialect;
  /** PostgreSQL: this database (a second relay on the same data) instead of a fresh one. */
  databaseUrl?: string;
  encryptionPool?: boolean;
  slack?: SlackRoomOptions;
  /** Replica id (default a fresh one per relay). */
  replicaId?: string;
}

let relays = 0;

/** Builds a relay with `corp.example` internal, over an in-memory SQLite database unless a file or another backend is given. */
export async function createTestRelay(config: Partial<RelayConfig> = {}, options: TestRelayOptions = {}): Promise<TestRelay> {
  // The key first, then the clock (the key is backdated anyway: see RELAY_KEY_AGE_MS).
  const relayKey = await sharedRelayKey();
  const clock = new TestClock();
  const fullConfig = testConfig({ internalDomains: ['corp.example'], internalDomainsDefaulted: false, mailDomain: 'corp.example', keysDir: undefined, ...config });
  const store = await openTestStore(options.databaseUrl ? 'postgres' : (options.backend ?? DEFAULT_BACKEND), clock.now, options.file, options.databaseUrl);
  const replicaId = options.replicaId ?? `test-relay-${process.pid}-${++relays}`;
  const logger = pino({ level: 'silent' });
  const metrics = createMetrics(false, { queued: (channel) => store.outbox.queuedCount(channel), leased: () => store.outbox.leasedBy(replicaId) });
  const ctx: RelayContext = {
    config: fullConfig,
    store,
    keys: new KeyService(store, clock.now),
    relayKey,
    logger,
    metrics,
    now: clock.now,
    replicaId,
    events: NO_EVENTS,
    notifyOutbox: () => undefined,
    sendLimiter: new RateLimiter(),
    inFlight: new InFlightBudget({ limitBytes: defaultInFlightBytes(fullConfig.maxMessageBytes) }),
    // As main.ts: tests wrap their channels with watchChannel(name, channel, ctx.health).
    health: new ChannelHealth({ logger, metrics, now: clock.now }),
  };
  if (options.encryptionPool ?? POOL_BY_DEFAULT) ctx.encryptor = await sharedEncryptionPool(); // issue 7
  // Wired the way main.ts wires it: a real WebClient at config.slackApiUrl, ctx.events and ctx.slack set.
  const slack = options.slack ? attachSlackRoom(ctx, options.slack) : undefined;
  const app = createApp(ctx);
  const tokenFor = async (email: string, role: TokenRole = 'responder'): Promise<string> => (await store.tokens.create({ email, role, at: clock.now() })).token;
  return { ctx, app, clock, admin: await tokenFor('admin@corp.example', 'admin'), tokenFor, request: supertest(app), slack };
}
