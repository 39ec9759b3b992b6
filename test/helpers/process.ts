/**
 * Spawning the built relay (`node dist/main.js`) the way an operator runs it:
 * a clean environment, its own working directory, stdout and stderr captured,
 * and every child tracked so a failing test never leaves one running.
 */
import { spawn, type ChildProcess } from 'node:child_process';
import fs from 'node:fs';
import net from 'node:net';
import os from 'node:os';
import path from 'node:path';
import { MAIN_JS } from './build.js';

/** A spawned relay process. */
export interface RelayProcess {
  child: ChildProcess;
  output: () => { stdout: string; stderr: string };
  exited: Promise<{ code: number | null; signal: NodeJS.Signals | null }>;
}

const children = new Set<ChildProcess>();

/** The start-up banner ends with the relay key line, written in the same single write as the token block. */
export const BANNER_END = /relay key: [0-9A-F]{40}\n/;

/**
 * The ports a relay started with RELAY_HTTP_PORT=0 / RELAY_SMTP_PORT=0 bound,
 * read from its banner. Spawned relays take port 0 rather than a port found
 * free a moment earlier: another test file can take that port in between.
 */
export function bannerPorts(stdout: string): { http: number; smtp: number } {
  const http = /incident-relay listening: http:\/\/[^:\s]+:(\d+)/.exec(stdout)?.[1];
  const smtp = /smtp submission: [^:\s]+:(\d+) /.exec(stdout)?.[1];
  if (!http || !smtp) throw new Error(`no listening ports in the banner:\n${stdout}`);
  return { http: Number(http), smtp: Number(smtp) };
}

/** A TCP port that was free a moment ago on 127.0.0.1 (for servers of the test's own, not the relay). */
export function freePort(): Promise<number> {
  return new Promise((resolve, reject) => {
    const server = net.createServer();
    server.once('error', reject);
    server.listen(0, '127.0.0.1', () => {
      const { port } = server.address() as net.AddressInfo;
      server.close(() => resolve(port));
    });
  });
}

/** Temporary directories removed together by cleanup(). */
export function tempDirs(): { make(prefix: string): string; cleanup(): void } {
  const made: string[] = [];
  return {
    make(prefix) {
      const dir = fs.mkdtempSync(path.join(os.tmpdir(), prefix));
      made.push(dir);
      return dir;
    },
    cleanup() {
      for (const dir of made.splice(0)) fs.rmSync(dir, { recursive: true, force: true });
    },
  };
}

/**
 * A clean environment: nothing RELAY_*, TWILIO_* or SLACK_* leaks in from the
 * shell running the tests, so the relay sees only what the test sets.
 */
export function relayEnv(extra: Record<string, string>): NodeJS.ProcessEnv {
  return { PATH: process.env['PATH'] ?? '/usr/bin:/bin', HOME: os.tmpdir(), ...extra };
}

/** Spawns `node dist/main.js` (build it first with buildDist()). */
export function startRelayProcess(env: NodeJS.ProcessEnv, cwd: string): RelayProcess {
  const child = spawn(process.execPath, [MAIN_JS], { cwd, env, stdio: ['ignore', 'pipe', 'pipe'] });
  children.add(child);
  let stdout = '';
  let stderr = '';
  child.stdout?.setEncoding('utf8').on('data', (chunk: string) => (stdout += chunk));
  child.stderr?.setEncoding('utf8').on('data', (chunk: string) => (stderr += chunk));
  const exited = new Promise<{ code: number | null; signal: NodeJS.Signals | null }>((resolve) => {
    child.once('exit', (code, signal) => {
      children.delete(child);
      resolve({ code, signal });
    });
  });
  return { child, output: () => ({ stdout, stderr }), exited };
}

/** Resolves with the first match of `pattern` in stdout; rejects if the process exits or time runs out first. */
export async function waitForOutput(started: RelayProcess, pattern: RegExp, timeoutMs = 30_000): Promise<RegExpExecArray> {
  const deadline = Date.now() + timeoutMs;
  let exitedEarly = false;
  void started.exited.then(() => (exitedEarly = true));
  for (;;) {
    const match = pattern.exec(started.output().stdout);
    if (match) return match;
    if (exitedEarly || Date.now() > deadline) {
      const { stdout, stderr } = started.output();
      throw new Error(`${exitedEarly ? 'relay exited' : 'timed out'} before printing ${pattern}\nstdout:\n${stdout}\nstderr:\n${stderr}`);
    }
    await new Promise((resolve) => setTimeout(resolve, 50));
  }
}

/** Sends SIGTERM and waits for the exit (rejects after timeoutMs). */
export async function stopRelayProcess(started: RelayProcess, timeoutMs = 15_000): Promise<{ code: number | null; signal: NodeJS.Signals | null }> {
  started.child.kill('SIGTERM');
  let timer: NodeJS.Timeout | undefined;
  const timeout = new Promise<never>((_, reject) => {
    timer = setTimeout(() => reject(new Error(`relay did not stop within ${timeoutMs} ms of SIGTERM`)), timeoutMs);
  });
  try {
    return await Promise.race([started.exited, timeout]);
  } finally {
    clearTimeout(timer);
  }
}

/** SIGKILLs every relay this helper spawned that is still running (for afterAll). */
export function killRelayProcesses(): void {
  for (const child of children) child.kill('SIGKILL');
}
