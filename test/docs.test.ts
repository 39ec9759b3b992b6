/**
 * The product carries its own reference: every error code of the registry has
 * a row in the README's errors table, every README section an error hint
 * sends people to exists, and nothing points to files a user's clone does
 * not have.
 */
import fs from 'node:fs';
import path from 'node:path';
import { describe, expect, it } from 'vitest';
import type { Command } from 'commander';
import type { App } from '../src/cli/app.js';
import { buildProgram } from '../src/cli/main.js';
import { ERROR_CODES } from '../src/errors.js';
import { ROOT } from './helpers/build.js';

const readme = fs.readFileSync(path.join(ROOT, 'README.md'), 'utf8');
const headings = new Set(
  readme
    .split('\n')
    .filter((l) => /^#{1,4} /.test(l))
    .map((l) => l.replace(/^#+ /, '').replace(/`/g, '').trim()),
);

function sourceFiles(dir: string): string[] {
  return fs.readdirSync(dir, { withFileTypes: true }).flatMap((e) => (e.isDirectory() ? sourceFiles(path.join(dir, e.name)) : e.name.endsWith('.ts') ? [path.join(dir, e.name)] : []));
}

describe('the README is the reference', () => {
  it('has a row in its CLI table for every CLI command (a group\'s default command under the group\'s name), and for audit verify --full', () => {
    const program = buildProgram({ environment: { version: '0.0.0', streams: { stdout: process.stdout, stderr: process.stderr } }, session: () => { throw new Error('no session here'); } } as unknown as App);
    const rows = readme.split('\n').filter((l) => l.startsWith('| `'));
    const missing: string[] = [];
    const walk = (parent: Command, prefix: string): void => {
      const defaultName = (parent as unknown as { _defaultCommandName?: string })._defaultCommandName;
      for (const cmd of parent.commands) {
        const name = `${prefix}${cmd.name()}`;
        if (cmd.commands.length > 0) {
          walk(cmd, `${name} `);
          continue;
        }
        const spellings = cmd.name() === defaultName ? [name, prefix.trimEnd()] : [name];
        if (!rows.some((r) => spellings.some((s) => r.startsWith(`| \`${s}\``) || r.startsWith(`| \`${s} `) || r.includes(` / \`${s}`)))) missing.push(name);
      }
    };
    walk(program, '');
    expect(missing).toEqual([]);
    expect(rows.some((r) => r.startsWith('| `audit verify --full`'))).toBe(true);
  });

  it('lists every error code of the registry in its errors table, with its HTTP status', () => {
    const table = readme.slice(readme.indexOf('\n## Errors\n'), readme.indexOf('\n## ', readme.indexOf('\n## Errors\n') + 5));
    for (const [code, spec] of Object.entries(ERROR_CODES)) {
      expect(table, `errors table row for ${code}`).toMatch(new RegExp(`^\\| \`${code}\` \\| ${spec.http} \\|`, 'm'));
    }
  });

  it('has every section an error hint names', () => {
    const named = sourceFiles(path.join(ROOT, 'src')).flatMap((file) => [...fs.readFileSync(file, 'utf8').matchAll(/README, \\?"([^"\\]+)\\?"/g)].map((m) => [path.relative(ROOT, file), m[1]!]));
    expect(named.length).toBeGreaterThan(0);
    for (const [file, section] of named) expect(headings.has(section!), `${file} names README section "${section}"`).toBe(true);
  });

  it('never sends readers to files a clone does not have', () => {
    const shipped = ['README.md', 'SECURITY.md', 'BENCHMARKS.md', ...sourceFiles(path.join(ROOT, 'src')).map((f) => path.relative(ROOT, f))];
    for (const file of shipped) expect(fs.readFileSync(path.join(ROOT, file), 'utf8'), file).not.toMatch(/\.\.\/shared|docs\/(sms|slack)\.md/);
  });
});
