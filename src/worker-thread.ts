/**
 * Starting a worker thread whose code is a module of this package, both when
 * built (`dist/…/x.js`) and when run from TypeScript sources under tsx or
 * vitest (`src/…/x.ts`): the encryption pool and the MIME reader use it.
 */
import { existsSync, readFileSync } from 'node:fs';
import { createRequire } from 'node:module';
import path from 'node:path';
import { fileURLToPath, pathToFileURL } from 'node:url';
import { Worker, type WorkerOptions } from 'node:worker_threads';

/** Where the worker code is: the built .js beside `base`, or the .ts source. */
function workerEntry(base: string, name: string): { url: URL; typescript: boolean } {
  const js = new URL(`./${name}.js`, base);
  if (existsSync(fileURLToPath(js))) return { url: js, typescript: false };
  const ts = new URL(`./${name}.ts`, base);
  if (existsSync(fileURLToPath(ts))) return { url: ts, typescript: true };
  throw new Error(`no ${name}.js or ${name}.ts next to ${fileURLToPath(base)}; rebuild with npm run build`);
}

// tsx's ESM API entry, resolved from this package so it works whatever the cwd is.
function tsxEsmApi(): string {
  const require = createRequire(import.meta.url);
  const manifest = require.resolve('tsx/package.json');
  const exportsField = (JSON.parse(readFileSync(manifest, 'utf8')) as { exports?: Record<string, { import?: { default?: string } }> }).exports;
  const entry = exportsField?.['./esm/api']?.import?.default;
  if (!entry) throw new Error('running worker threads from TypeScript sources needs tsx (devDependency) with an ./esm/api export');
  return pathToFileURL(path.join(path.dirname(manifest), entry)).href;
}

/** Starts the worker module `name` that sits next to the module at `base` (its import.meta.url). */
export function startModuleWorker(base: string, name: string, options: WorkerOptions = {}): Worker {
  const entry = workerEntry(base, name);
  if (!entry.typescript) return new Worker(entry.url, options);
  // Node 20 does not apply `--import tsx` in a worker's execArgv to the entry
  // module, so register tsx's loader inside the worker before importing it.
  const bootstrap = `import(${JSON.stringify(tsxEsmApi())}).then((api) => { api.register(); return import(${JSON.stringify(entry.url.href)}); });`;
  return new Worker(bootstrap, { ...options, eval: true });
}
