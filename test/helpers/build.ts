/**
 * Builds dist/ the way `npm start` does, once per test run, so end-to-end
 * tests drive the artifact users run rather than the TypeScript sources.
 */
import { spawnSync } from 'node:child_process';
import fs from 'node:fs';
import path from 'node:path';
import { fileURLToPath } from 'node:url';

/** The repository root. */
export const ROOT = path.resolve(path.dirname(fileURLToPath(import.meta.url)), '..', '..');
/** The built entry point that `npm start` runs. */
export const MAIN_JS = path.join(ROOT, 'dist', 'main.js');

const LOCK = path.join(ROOT, 'dist', '.e2e-build.lock');
const STAMP = path.join(ROOT, 'dist', '.e2e-build.stamp');

function newestSource(dir: string): number {
  let newest = 0;
  for (const entry of fs.readdirSync(dir, { withFileTypes: true })) {
    const full = path.join(dir, entry.name);
    newest = Math.max(newest, entry.isDirectory() ? newestSource(full) : fs.statSync(full).mtimeMs);
  }
  return newest;
}

function sleep(ms: number): void {
  Atomics.wait(new Int32Array(new SharedArrayBuffer(4)), 0, 0, ms);
}

/**
 * Runs `tsc -p tsconfig.build.json` unless dist/ is already newer than every
 * source file. Test files run in parallel workers, so a lock directory keeps
 * two builds from writing dist/ at once. Type errors are reported, but do not
 * stop the build: tsc still emits, `npm test` type-checks separately, and
 * these tests are about runtime behaviour.
 */
export function buildDist(): void {
  fs.mkdirSync(path.dirname(LOCK), { recursive: true });
  const deadline = Date.now() + 120_000;
  for (;;) {
    try {
      fs.mkdirSync(LOCK);
      break;
    } catch (err) {
      if ((err as NodeJS.ErrnoException).code !== 'EEXIST') throw err;
      // A lock left by a killed run would block for ever; one older than the deadline is stale.
      const age = Date.now() - fs.statSync(LOCK).mtimeMs;
      if (age > 120_000) fs.rmSync(LOCK, { recursive: true, force: true });
      else if (Date.now() > deadline) throw new Error(`timed out waiting for ${LOCK}`);
      else sleep(200);
    }
  }
  try {
    const stamp = fs.existsSync(STAMP) ? fs.statSync(STAMP).mtimeMs : 0;
    const inputs = Math.max(newestSource(path.join(ROOT, 'src')), ...['tsconfig.json', 'tsconfig.build.json'].map((f) => fs.statSync(path.join(ROOT, f)).mtimeMs));
    const fresh = stamp > inputs && fs.existsSync(MAIN_JS);
    if (fresh) return;
    const tsc = path.join(ROOT, 'node_modules', 'typescript', 'bin', 'tsc');
    const result = spawnSync(process.execPath, [tsc, '-p', 'tsconfig.build.json'], { cwd: ROOT, encoding: 'utf8', timeout: 180_000 });
    if (result.error) throw result.error;
    if (result.status !== 0) process.stderr.write(`tsc -p tsconfig.build.json reported errors (continuing with what it emitted):\n${result.stdout}${result.stderr}\n`);
    if (!fs.existsSync(MAIN_JS)) throw new Error(`the build did not produce ${MAIN_JS}:\n${result.stdout}${result.stderr}`);
    fs.writeFileSync(STAMP, new Date().toISOString());
  } finally {
    fs.rmSync(LOCK, { recursive: true, force: true });
  }
}
