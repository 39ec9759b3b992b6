/**
 * `npm start` runs dist/main.js: the built console must find its script and
 * stylesheet in console/assets/ from dist/ as it does from src/ (they are
 * resolved from the module, like templates/, never from the working directory).
 */
import fs from 'node:fs';
import path from 'node:path';
import { pathToFileURL } from 'node:url';
import { beforeAll, describe, expect, it } from 'vitest';
import { ROOT, buildDist } from '../helpers/build.js';

beforeAll(() => {
  buildDist();
}, 240_000);

describe('the built console', () => {
  it('serves the package\'s own console.js and console.css from dist/, whatever the working directory', async () => {
    const built = path.join(ROOT, 'dist', 'console', 'assets.js');
    expect(fs.existsSync(built)).toBe(true);
    const cwd = process.cwd();
    process.chdir(fs.mkdtempSync(path.join(fs.realpathSync('/tmp'), 'console-cwd-')));
    try {
      const { loadAsset } = (await import(pathToFileURL(built).href)) as typeof import('../../src/console/assets.js');
      for (const name of ['console.js', 'console.css']) {
        expect(loadAsset(name)?.body.equals(fs.readFileSync(path.join(ROOT, 'console', 'assets', name)))).toBe(true);
      }
      expect(loadAsset('../package.json')).toBeUndefined();
    } finally {
      process.chdir(cwd);
    }
  });
});
