/**
 * The relay under test, in its own process: the production build's
 * startRelay() over a file-backed SQLite store in a temp dir (or a PostgreSQL
 * database shared with other relay children), delivering to
 * the bench's upstream. Its own process so its memory (peak RSS) and its
 * event loop are its own, as in production. Driven over IPC by run.ts.
 *
 * One deviation from production, on purpose: the per-token send limit
 * (120/min) is lifted, since the bench measures the pipeline, not the limiter.
 */
import { fromDist, resetPeakRss, rssNow } from './lib.js';

/** What run.ts passes (JSON in argv[2]). */
export interface RelayChildArgs {
  dataDir: string;
  upstreamUrl: string;
  adminToken: string;
  keyFile: string;
  pool: boolean;
  /** Run on PostgreSQL (RELAY_DATABASE_URL) instead of SQLite in dataDir. */
  databaseUrl?: string;
}

/** Messages the child answers. */
export type RelayChildRequest = { type: 'memory' } | { type: 'reset-peak' } | { type: 'stop' };

/** The child's `ready` message. */
export interface RelayChildReady {
  type: 'ready';
  httpPort: number;
  smtpPort: number;
  tlsCert: string;
  pool: boolean;
}

/** The child's `memory` answer, bytes. */
export interface RelayChildMemory {
  type: 'memory';
  rss: number;
  peak: number;
  resetWorked: boolean;
}

const send = (message: object): void => {
  process.send?.(message);
};

async function main(): Promise<void> {
  const args = JSON.parse(process.argv[2] ?? '{}') as RelayChildArgs;
  const { startRelay } = await fromDist<typeof import('../src/main.js')>('main.js');
  const { loadConfig } = await fromDist<typeof import('../src/config.js')>('config.js');
  const { createLogger } = await fromDist<typeof import('../src/logger.js')>('logger.js');
  const { RateLimiter } = await fromDist<typeof import('../src/services/rate-limit.js')>('services/rate-limit.js');
  const config = loadConfig({
    RELAY_DATA_DIR: args.dataDir,
    RELAY_HTTP_PORT: '0',
    RELAY_SMTP_PORT: '0',
    RELAY_INTERNAL_DOMAINS: 'corp.example',
    RELAY_SMTP_UPSTREAM: args.upstreamUrl,
    RELAY_ADMIN_TOKEN: args.adminToken,
    RELAY_KEY_FILE: args.keyFile,
    RELAY_LOG_LEVEL: 'warn',
    ...(args.databaseUrl ? { RELAY_DATABASE_URL: args.databaseUrl } : {}),
  });
  const relay = await startRelay(config, createLogger('warn'), undefined, { encryptionPool: args.pool });
  relay.ctx.sendLimiter = new RateLimiter({ perMinute: 1e9, burst: 1e9 });
  let resetWorked = false;
  process.on('message', (m: RelayChildRequest) => {
    if (m.type === 'memory') send({ type: 'memory', ...rssNow(), resetWorked } satisfies RelayChildMemory);
    else if (m.type === 'reset-peak') {
      resetWorked = resetPeakRss();
      send({ type: 'reset-peak', ok: resetWorked });
    } else if (m.type === 'stop') {
      void relay.stop().then(() => {
        send({ type: 'stopped' });
        process.disconnect?.();
      });
    }
  });
  send({ type: 'ready', httpPort: relay.httpPort, smtpPort: relay.smtpPort, tlsCert: relay.tls.cert, pool: args.pool } satisfies RelayChildReady);
}

main().catch((err: unknown) => {
  send({ type: 'error', error: err instanceof Error ? (err.stack ?? err.message) : String(err) });
  process.exitCode = 1;
});
