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
import { testConfig, type RelayConfig } from '../../src/config.js';
import { NO_EVENTS, type RelayContext } from '../../src/context.js';
import { createApp } from '../../src/http/app.js';
import { createMetrics } from '../../src/metrics.js';
import { loadOrCreateRelayKey, type RelayKey } from '../../src/pgp/relay-key.js';
import { KeyService } from '../../src/services/keys.js';
import { createStore } from '../../src/store/index.js';
import type { TokenRole } from '../../src/store/tokens.js';

/** A clock the test sets and advances. */
export class TestClock {
  constructor(public current = new Date('2026-11-22T09:00:00.000Z')) {}
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

export interface TestRelay {
  ctx: RelayContext;
  app: Express;
  clock: TestClock;
  /** An admin token. */
  admin: string;
  /** Issues a token for `email` directly in the store. */
  tokenFor(email: string, role?: TokenRole): string;
  request: ReturnType<typeof supertest>;
}

/** Builds a relay with `corp.example` internal, over an in-memory database unless `config.dataDir` is set. */
export async function createTestRelay(config: Partial<RelayConfig> = {}, options: { file?: string } = {}): Promise<TestRelay> {
  const clock = new TestClock();
  const fullConfig = testConfig({ internalDomains: ['corp.example'], internalDomainsDefaulted: false, mailDomain: 'corp.example', keysDir: undefined, ...config });
  const store = createStore(options.file ?? ':memory:', clock.now);
  const ctx: RelayContext = {
    config: fullConfig,
    store,
    keys: new KeyService(store, clock.now),
    relayKey: await sharedRelayKey(),
    logger: pino({ level: 'silent' }),
    metrics: createMetrics(),
    now: clock.now,
    events: NO_EVENTS,
  };
  const app = createApp(ctx);
  const tokenFor = (email: string, role: TokenRole = 'responder'): string => store.tokens.create({ email, role, at: clock.now() }).token;
  return { ctx, app, clock, admin: tokenFor('admin@corp.example', 'admin'), tokenFor, request: supertest(app) };
}
