/**
 * A relay for tests: the real app over a real SQLite database (in memory
 * unless a data dir is given), a real relay key, and a clock the test moves.
 */
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
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
import { loadOrCreateRelayKey, type RelayKey } from '../../src/pgp/relay-key.js';
import { KeyService } from '../../src/services/keys.js';
import { RateLimiter } from '../../src/services/rate-limit.js';
import { createStore } from '../../src/store/index.js';
import type { TokenRole } from '../../src/store/tokens.js';

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

/** One relay key per test process: generating is cheap, but not free. */
export function sharedRelayKey(): Promise<RelayKey> {
  relayKeyPromise ??= (async () => {
    const dir = fs.mkdtempSync(path.join(os.tmpdir(), 'relay-key-'));
    const { key } = await loadOrCreateRelayKey({ dataDir: dir, userId: { name: 'incident-relay', email: 'relay@corp.example' } });
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

export interface TestRelay {
  ctx: RelayContext;
  app: Express;
  clock: TestClock;
  /** An admin token. */
  admin: string;
  /** Issues a token for `email` directly in the store. */
  tokenFor(email: string, role?: TokenRole): string;
  request: ReturnType<typeof supertest>;
  /** The Slack room, when `options.slack` was given and config.slackBotToken is set. */
  slack: SlackRoom | undefined;
}

/** Builds a relay with `corp.example` internal, over an in-memory database unless `config.dataDir` is set. */
export async function createTestRelay(config: Partial<RelayConfig> = {}, options: { file?: string; encryptionPool?: boolean; slack?: SlackRoomOptions } = {}): Promise<TestRelay> {
  const clock = new TestClock();
  const fullConfig = testConfig({ internalDomains: ['corp.example'], internalDomainsDefaulted: false, mailDomain: 'corp.example', keysDir: undefined, ...config });
  const store = createStore(options.file ?? ':memory:', clock.now);
  const logger = pino({ level: 'silent' });
  const metrics = createMetrics(false, { queued: (channel) => store.outbox.queuedCount(channel) });
  const ctx: RelayContext = {
    config: fullConfig,
    store,
    keys: new KeyService(store, clock.now),
    relayKey: await sharedRelayKey(),
    logger,
    metrics,
    now: clock.now,
    events: NO_EVENTS,
    notifyOutbox: () => undefined,
    sendLimiter: new RateLimiter(),
    // As main.ts: tests wrap their channels with watchChannel(name, channel, ctx.health).
    health: new ChannelHealth({ logger, metrics, now: clock.now }),
  };
  if (options.encryptionPool ?? POOL_BY_DEFAULT) ctx.encryptor = await sharedEncryptionPool(); // issue 7
  // Wired the way main.ts wires it: a real WebClient at config.slackApiUrl, ctx.events and ctx.slack set.
  const slack = options.slack ? attachSlackRoom(ctx, options.slack) : undefined;
  const app = createApp(ctx);
  const tokenFor = (email: string, role: TokenRole = 'responder'): string => store.tokens.create({ email, role, at: clock.now() }).token;
  return { ctx, app, clock, admin: tokenFor('admin@corp.example', 'admin'), tokenFor, request: supertest(app), slack };
}
