/**
 * Starts the built relay as a new user would (`node dist/main.js`, no
 * configuration but a data dir and ports) and checks what issue 2 promises of
 * a first start: the bootstrap token printed once, the channel banner, a live
 * API, private files, and a clean SIGTERM.
 */
import { randomBytes } from 'node:crypto';
import fs from 'node:fs';
import path from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { buildDist } from '../helpers/build.js';
import { freshDatabaseUrl } from '../helpers/postgres.js';
import {
  BANNER_END,
  bannerPorts,
  killRelayProcesses,
  relayEnv,
  startRelayProcess as start,
  stopRelayProcess as stop,
  tempDirs,
  waitForOutput as waitFor,
  type RelayProcess as Started,
} from '../helpers/process.js';

const temp = tempDirs();
const tempDir = (prefix: string): string => temp.make(prefix);

function mode(file: string): number {
  return fs.statSync(file).mode & 0o777;
}

// BANNER_END: the token block, when there is one, is part of the same single
// write as the banner, so it is complete once the banner is.
const TOKEN = /Bootstrap admin token[^\n]*\n\s+(\S+)\n/;

beforeAll(() => {
  buildDist();
}, 240_000);

afterAll(() => {
  killRelayProcesses();
  temp.cleanup();
});

describe('first start with no configuration', () => {
  let dataDir: string;
  let cwd: string;
  let httpPort: number;
  let first: Started;
  let token: string;

  beforeAll(async () => {
    const root = tempDir('relay-e2e-');
    dataDir = path.join(root, 'data');
    // Its own working directory, so a ./keys in the repository is not picked up.
    cwd = tempDir('relay-e2e-cwd-');
    first = start(relayEnv({ RELAY_DATA_DIR: dataDir, RELAY_HTTP_PORT: '0', RELAY_SMTP_PORT: '0' }), cwd);
    await waitFor(first, BANNER_END, 60_000);
    httpPort = bannerPorts(first.output().stdout).http;
    token = TOKEN.exec(first.output().stdout)?.[1] ?? '';
  }, 90_000);

  it('prints the bootstrap admin token exactly once, and nowhere in the logs', () => {
    const { stdout, stderr } = first.output();
    expect(stdout).toMatch(TOKEN);
    expect(token.length).toBeGreaterThanOrEqual(22); // ≥ 128 bits in base64url
    expect((stdout + stderr).split(token).length - 1).toBe(1);
  });

  it('lists every channel going to the local outbox or off', () => {
    const { stdout } = first.output();
    expect(stdout).toContain(`incident-relay listening: http://127.0.0.1:${httpPort}`);
    const outbox = path.join(dataDir, 'outbox');
    expect(stdout).toMatch(new RegExp(`^\\s*email: local outbox ${escape(outbox)}`, 'm'));
    expect(stdout).toMatch(new RegExp(`^\\s*sms: local outbox ${escape(path.join(outbox, 'sms.jsonl'))}`, 'm'));
    expect(stdout).toMatch(/^\s*slack: off\b/m);
    expect(stdout).not.toMatch(/^\s*(email|sms|slack): live/m);
  });

  it('names the store on the line after the listening line: SQLite in the data dir', () => {
    expect(storeLine(first.output().stdout)).toMatch(new RegExp(`^  store: sqlite ${escape(path.join(dataDir, 'relay.db'))} \\(replica \\S+\\)$`));
  });

  it('answers /healthz', async () => {
    const res = await fetch(`http://127.0.0.1:${httpPort}/healthz`);
    expect(res.status).toBe(200);
    expect(await res.json()).toEqual({ status: 'ok' });
  });

  it('accepts the printed token, and refuses no token', async () => {
    const ok = await fetch(`http://127.0.0.1:${httpPort}/v1/incidents`, { headers: { authorization: `Bearer ${token}` } });
    expect(ok.status).toBe(200);
    const anonymous = await fetch(`http://127.0.0.1:${httpPort}/v1/incidents`);
    expect(anonymous.status).toBe(401);
    expect(((await anonymous.json()) as { error: { code: string } }).error.code).toBe('unauthenticated');
  });

  it('keeps the database and the generated key private (0600, dir 0700)', () => {
    expect(mode(dataDir)).toBe(0o700);
    expect(mode(path.join(dataDir, 'relay.db'))).toBe(0o600);
    expect(mode(path.join(dataDir, 'relay-key.asc'))).toBe(0o600);
    for (const suffix of ['-wal', '-shm']) {
      const file = path.join(dataDir, `relay.db${suffix}`);
      if (fs.existsSync(file)) expect(mode(file), file).toBe(0o600);
    }
  });

  it('stops on SIGTERM with exit code 0', async () => {
    expect(await stop(first)).toEqual({ code: 0, signal: null });
  });

  it('prints no token on a second start over the same data dir, and the first token still works', async () => {
    const second = start(relayEnv({ RELAY_DATA_DIR: dataDir, RELAY_HTTP_PORT: '0', RELAY_SMTP_PORT: '0' }), cwd);
    await waitFor(second, BANNER_END, 60_000);
    const { stdout, stderr } = second.output();
    const secondPort = bannerPorts(stdout).http;
    expect(stdout).not.toMatch(/Bootstrap admin token/);
    expect(stdout + stderr).not.toContain(token);
    const res = await fetch(`http://127.0.0.1:${secondPort}/v1/incidents`, { headers: { authorization: `Bearer ${token}` } });
    expect(res.status).toBe(200);
    expect(await stop(second)).toEqual({ code: 0, signal: null });
  }, 90_000);
});

describe('with RELAY_DATABASE_URL', () => {
  it('runs on PostgreSQL, names it in the banner without the password, and stops cleanly', async () => {
    const url = new URL(await freshDatabaseUrl());
    // The test server trusts local connections, so any password is accepted; the banner must never show it.
    if (url.password === '') url.password = `pw-${randomBytes(12).toString('hex')}`;
    const password = decodeURIComponent(url.password);
    const dataDir = path.join(tempDir('relay-e2e-pg-'), 'data');
    const started = start(relayEnv({ RELAY_DATA_DIR: dataDir, RELAY_HTTP_PORT: '0', RELAY_SMTP_PORT: '0', RELAY_DATABASE_URL: url.toString() }), tempDir('relay-e2e-cwd-'));
    await waitFor(started, BANNER_END, 60_000);
    const { stdout, stderr } = started.output();
    const shown = new URL(url);
    shown.password = '***';
    expect(storeLine(stdout)).toMatch(new RegExp(`^  store: postgresql ${escape(shown.toString())} \\(replica \\S+\\)$`));
    expect(stdout + stderr).not.toContain(password);
    // The bootstrap token lives in PostgreSQL: it works, and nothing went to a SQLite file.
    const token = TOKEN.exec(stdout)?.[1] ?? '';
    const res = await fetch(`http://127.0.0.1:${bannerPorts(stdout).http}/v1/incidents`, { headers: { authorization: `Bearer ${token}` } });
    expect(res.status).toBe(200);
    expect(fs.existsSync(path.join(dataDir, 'relay.db'))).toBe(false);
    expect(await stop(started)).toEqual({ code: 0, signal: null });
  }, 90_000);
});

describe('invalid configuration', () => {
  it('RELAY_ENCRYPT=sometimes exits non-zero naming the variable, and touches nothing', async () => {
    const dataDir = path.join(tempDir('relay-e2e-bad-'), 'data');
    const started = start(relayEnv({ RELAY_DATA_DIR: dataDir, RELAY_HTTP_PORT: '0', RELAY_ENCRYPT: 'sometimes' }), tempDir('relay-e2e-cwd-'));
    const { code } = await started.exited;
    expect(code).not.toBe(0);
    expect(code).not.toBeNull();
    expect(started.output().stderr).toMatch(/RELAY_ENCRYPT.*external or always/);
    expect(fs.existsSync(dataDir)).toBe(false);
  });
});

/** The banner line right after `incident-relay listening: …`. */
function storeLine(stdout: string): string | undefined {
  const lines = stdout.split('\n');
  const listening = lines.findIndex((l) => l.startsWith('incident-relay listening: '));
  expect(listening, 'the listening line').toBeGreaterThanOrEqual(0);
  return lines[listening + 1];
}

function escape(text: string): string {
  return text.replace(/[.*+?^${}()|[\]\\]/g, '\\$&');
}
