/**
 * Driving the built CLI (`node dist/cli/main.js`, what bin/incident-relay.js
 * runs) as a subprocess against a relay listening on a real port: real HTTP,
 * a real SQLite file, a real smtp-server upstream. Each CLI run gets a clean
 * environment: nothing INCIDENT_RELAY_* leaks in from the shell running the
 * tests, and HOME / XDG_CONFIG_HOME point at the test's own directory.
 *
 * Why the built file and not `tsx src/cli/main.ts`: it is the artifact users
 * run, and a test drives the CLI some forty times; node on compiled JS starts
 * in a fraction of what tsx needs to transform the sources on every start.
 */
import { spawn } from 'node:child_process';
import fs from 'node:fs';
import http from 'node:http';
import type { AddressInfo } from 'node:net';
import os from 'node:os';
import path from 'node:path';
import { pino } from 'pino';
import { testConfig, type RelayConfig } from '../../src/config.js';
import { startRelay, type RunningRelay } from '../../src/main.js';
import { ROOT, buildDist } from '../helpers/build.js';
import { startUpstream, type Upstream } from '../helpers/upstream.js';

/** The built CLI entry point. */
export const CLI_JS = path.join(ROOT, 'dist', 'cli', 'main.js');

/** The admin token the test relays start with. */
export const ADMIN_TOKEN = 'ir_cli-test-admin-token-0123456789abcdef';

/** Builds dist/ (once per run) and checks the CLI is in it. */
export function buildCli(): void {
  buildDist();
  if (!fs.existsSync(CLI_JS)) throw new Error(`the build did not produce ${CLI_JS}`);
}

/** A relay listening on 127.0.0.1, delivering to a real smtp-server. */
export interface CliRelay {
  url: string;
  relay: RunningRelay;
  upstream: Upstream;
  dataDir: string;
  stop(): Promise<void>;
}

/** Starts a relay with `corp.example` internal and ADMIN_TOKEN as its admin token. */
export async function startCliRelay(overrides: Partial<RelayConfig> = {}): Promise<CliRelay> {
  const upstream = await startUpstream();
  const dataDir = fs.mkdtempSync(path.join(os.tmpdir(), 'cli-relay-'));
  const config = testConfig({
    dataDir,
    httpHost: '127.0.0.1',
    httpPort: 0,
    smtpPort: 0,
    internalDomains: ['corp.example'],
    internalDomainsDefaulted: false,
    mailDomain: 'corp.example',
    keysDir: undefined,
    adminToken: ADMIN_TOKEN,
    smtpUpstream: upstream.url,
    ...overrides,
  });
  // Encryption in the main thread: two shared cores, and a handful of messages.
  const relay = await startRelay(config, pino({ level: 'silent' }), undefined, { encryptionPool: false });
  return {
    url: `http://127.0.0.1:${relay.httpPort}`,
    relay,
    upstream,
    dataDir,
    async stop() {
      await relay.stop();
      await upstream.stop();
      fs.rmSync(dataDir, { recursive: true, force: true });
    },
  };
}

/** What one CLI run did. */
export interface CliResult {
  code: number | null;
  stdout: string;
  stderr: string;
}

/** Options of one CLI run. */
export interface CliRunOptions {
  /** HOME for the run; XDG_CONFIG_HOME is <home>/config. */
  home: string;
  env?: Record<string, string>;
  /** Written to stdin, which is then closed (stdin is never a terminal here). */
  stdin?: string;
  timeoutMs?: number;
}

/** Runs `node dist/cli/main.js …args` and resolves when it exits. */
export function runCli(args: string[], options: CliRunOptions): Promise<CliResult> {
  const env = { PATH: process.env['PATH'] ?? '/usr/bin:/bin', HOME: options.home, XDG_CONFIG_HOME: path.join(options.home, 'config'), LC_ALL: 'C', ...options.env };
  return new Promise((resolve, reject) => {
    const child = spawn(process.execPath, [CLI_JS, ...args], { env, stdio: ['pipe', 'pipe', 'pipe'] });
    let stdout = '';
    let stderr = '';
    const timer = setTimeout(() => child.kill('SIGKILL'), options.timeoutMs ?? 60_000);
    child.stdout.setEncoding('utf8').on('data', (c: string) => (stdout += c));
    child.stderr.setEncoding('utf8').on('data', (c: string) => (stderr += c));
    child.on('error', (err) => {
      clearTimeout(timer);
      reject(err);
    });
    child.on('close', (code) => {
      clearTimeout(timer);
      resolve({ code, stdout, stderr });
    });
    child.stdin.on('error', () => undefined);
    child.stdin.end(options.stdin ?? '');
  });
}

/** A fresh HOME directory for one user of the CLI. */
export function tempHome(prefix = 'cli-home-'): string {
  return fs.mkdtempSync(path.join(os.tmpdir(), prefix));
}

/** A request a test HTTP server received. */
export interface SeenRequest {
  method: string;
  url: string;
  authorization: string | undefined;
  body: string;
}

/**
 * A small HTTP server for what a healthy relay never does (a proxy's 502, a
 * redirect, an old relay that predates a route): it records every request
 * and answers with `handler`'s status, headers and body.
 */
export async function startHttpServer(handler: (req: SeenRequest) => { status: number; headers?: Record<string, string>; body?: string }): Promise<{ url: string; seen: SeenRequest[]; close(): Promise<void> }> {
  const seen: SeenRequest[] = [];
  const server = http.createServer((req, res) => {
    let body = '';
    req.setEncoding('utf8').on('data', (c: string) => (body += c));
    req.on('end', () => {
      const request = { method: req.method ?? '', url: req.url ?? '', authorization: req.headers.authorization, body };
      seen.push(request);
      const answer = handler(request);
      res.writeHead(answer.status, answer.headers ?? {});
      res.end(answer.body ?? '');
    });
  });
  await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
  const { port } = server.address() as AddressInfo;
  return {
    url: `http://127.0.0.1:${port}`,
    seen,
    close: () => new Promise<void>((resolve) => server.close(() => resolve())),
  };
}
