#!/usr/bin/env node
// The `incident-relay` command: a thin shim over the compiled CLI, so a
// checkout that has not been built says what to do instead of a stack trace.
import { existsSync } from 'node:fs';
import { fileURLToPath } from 'node:url';

const target = new URL('../dist/cli/main.js', import.meta.url);
if (!existsSync(fileURLToPath(target))) {
  process.stderr.write(`incident-relay: ${fileURLToPath(target)} is missing; run "npm run build" in ${fileURLToPath(new URL('..', import.meta.url))} first.\n`);
  process.exitCode = 1;
} else {
  const { main } = await import(target.href);
  await main();
}
