/**
 * Shared bench helpers: loading the production build, statistics, a
 * keep-alive HTTP client, process probes. The bench measures dist/ (what
 * `npm start` runs), not the TypeScript sources.
 */
import { fork, type ChildProcess } from 'node:child_process';
import { existsSync, readFileSync, writeFileSync } from 'node:fs';
import http from 'node:http';
import { createRequire } from 'node:module';
import { fileURLToPath, pathToFileURL } from 'node:url';

/** The repository root. */
export const ROOT = fileURLToPath(new URL('..', import.meta.url));

/** Loads `dist/<rel>` (the production build), typed as its source module. */
export async function fromDist<T>(rel: string): Promise<T> {
  const url = new URL(`../dist/${rel}`, import.meta.url);
  if (!existsSync(url)) throw new Error(`dist/${rel} is missing: run \`npm run build\` first (\`npm run bench\` does).`);
  return (await import(url.href)) as T;
}

/** Milliseconds on the monotonic clock. */
export const now = (): number => performance.now();

/** Nearest-rank percentile of `values` (ms); NaN when empty. */
export function percentile(values: readonly number[], p: number): number {
  if (values.length === 0) return Number.NaN;
  const sorted = [...values].sort((a, b) => a - b);
  const rank = Math.min(sorted.length, Math.max(1, Math.ceil((p / 100) * sorted.length)));
  return sorted[rank - 1]!;
}

/** p50 and p99 of latencies in ms, rounded to 0.1 ms. */
export function latency(values: readonly number[]): { p50: number; p99: number } {
  const r = (v: number): number => Math.round(v * 10) / 10;
  return { p50: r(percentile(values, 50)), p99: r(percentile(values, 99)) };
}

/** Rounds to `digits` significant-ish decimals for the table and JSON. */
export function round(value: number, digits = 2): number {
  const f = 10 ** digits;
  return Math.round(value * f) / f;
}

/** One HTTP response, body as text. */
export interface HttpAnswer {
  status: number;
  body: string;
}

/** A small HTTP/1.1 client over a keep-alive agent: cheaper than fetch, so the load generator steals less CPU. */
export function httpClient(port: number, maxSockets: number): {
  request(method: string, path: string, token: string | undefined, body?: string | Buffer): Promise<HttpAnswer>;
  close(): void;
} {
  const agent = new http.Agent({ keepAlive: true, maxSockets });
  return {
    request(method, path, token, body) {
      return new Promise((resolve, reject) => {
        const payload = body === undefined ? undefined : Buffer.isBuffer(body) ? body : Buffer.from(body);
        const req = http.request(
          {
            host: '127.0.0.1',
            port,
            method,
            path,
            agent,
            headers: {
              ...(token ? { authorization: `Bearer ${token}` } : {}),
              ...(payload ? { 'content-type': 'application/json', 'content-length': String(payload.length) } : {}),
            },
          },
          (res) => {
            const chunks: Buffer[] = [];
            res.on('data', (c: Buffer) => chunks.push(c));
            res.on('end', () => resolve({ status: res.statusCode ?? 0, body: Buffer.concat(chunks).toString('utf8') }));
            res.on('error', reject);
          },
        );
        req.on('error', reject);
        req.end(payload);
      });
    },
    close: () => agent.destroy(),
  };
}

/** Throws unless the answer has `status`; returns the parsed JSON body. */
export function expectStatus<T>(answer: HttpAnswer, status: number, what: string): T {
  if (answer.status !== status) throw new Error(`${what}: expected HTTP ${status}, got ${answer.status}: ${answer.body.slice(0, 300)}`);
  return (answer.body === '' ? undefined : JSON.parse(answer.body)) as T;
}

// tsx's loader, resolved from this package so the children do not depend on the cwd.
const TSX_LOADER = pathToFileURL(createRequire(import.meta.url).resolve('tsx')).href;

/** Forks a bench TypeScript file (under tsx) with an IPC channel; its stdout and stderr go to ours. */
export function forkTs(file: string, args: string[]): ChildProcess {
  // BENCH_CPU_PROF=<dir>: the relay child writes a V8 CPU profile there on exit (profiling slows it; not for figures).
  const profDir = process.env['BENCH_CPU_PROF'];
  const profile = profDir && file === './relay-child.ts' ? ['--cpu-prof', '--cpu-prof-dir', profDir] : [];
  return fork(fileURLToPath(new URL(file, import.meta.url)), args, {
    execArgv: ['--import', TSX_LOADER, ...profile],
    stdio: ['ignore', 'inherit', 'inherit', 'ipc'],
  });
}

/** Sends `message` to `child` and resolves with its next reply of type `replyType`. */
export function ask<T>(child: ChildProcess, message: { type: string; [k: string]: unknown }, replyType: string, timeoutMs = 120_000): Promise<T> {
  const reply = waitFor<T>(child, replyType, timeoutMs);
  child.send(message);
  return reply;
}

/** Resolves with the child's first message of type `type`. */
export function waitFor<T>(child: ChildProcess, type: string, timeoutMs = 120_000): Promise<T> {
  return new Promise((resolve, reject) => {
    const timer = setTimeout(() => reject(new Error(`child sent no ${type} within ${timeoutMs} ms`)), timeoutMs);
    const onMessage = (m: { type?: string; error?: string }): void => {
      if (m.type === 'error') finish(new Error(`child failed: ${m.error ?? 'unknown'}`));
      else if (m.type === type) finish(undefined, m as T);
    };
    const onExit = (code: number | null): void => finish(new Error(`child exited (code ${code}) before sending ${type}`));
    function finish(err: Error | undefined, value?: T): void {
      clearTimeout(timer);
      child.off('message', onMessage);
      child.off('exit', onExit);
      if (err) reject(err);
      else resolve(value as T);
    }
    child.on('message', onMessage);
    child.once('exit', onExit);
  });
}

/** This process's resident set and its high-water mark since the last resetPeakRss(), in bytes (Linux). */
export function rssNow(): { rss: number; peak: number } {
  const rss = process.memoryUsage().rss;
  try {
    const status = readFileSync('/proc/self/status', 'utf8');
    const hwm = /^VmHWM:\s+(\d+) kB/m.exec(status);
    return { rss, peak: hwm ? Number(hwm[1]) * 1024 : process.resourceUsage().maxRSS * 1024 };
  } catch {
    return { rss, peak: process.resourceUsage().maxRSS * 1024 };
  }
}

/** Resets the kernel's peak-RSS mark to the current RSS (Linux ≥ 4.0); false where unsupported. */
export function resetPeakRss(): boolean {
  try {
    // proc(5): writing 5 to clear_refs resets VmHWM.
    writeFileSync('/proc/self/clear_refs', '5');
    return true;
  } catch {
    return false;
  }
}
