/**
 * The console's two static files, console/assets/console.js and
 * console/assets/console.css, served from the package itself: no CDN, no
 * build step. They are resolved from this module as src/templates.ts
 * resolves templates/: src/console/assets.ts under vitest and
 * dist/console/assets.js after `npm run build` both sit two levels below
 * the repository root, so `npm start` finds the same files.
 */
import { readFileSync } from 'node:fs';
import type { RequestHandler } from 'express';

const ASSET_DIR = new URL('../../console/assets/', import.meta.url);

// A fixed map rather than a path from the URL, so no request can name another file.
const ASSETS: Readonly<Record<string, { file: string; type: string }>> = {
  'console.js': { file: 'console.js', type: 'text/javascript; charset=utf-8' },
  'console.css': { file: 'console.css', type: 'text/css; charset=utf-8' },
};

const cache = new Map<string, Buffer>();

/** The asset's bytes, read once; undefined for a name that is not an asset. */
export function loadAsset(name: string): { body: Buffer; type: string } | undefined {
  if (!Object.hasOwn(ASSETS, name)) return undefined;
  const asset = ASSETS[name]!;
  let body = cache.get(name);
  if (body === undefined) {
    body = readFileSync(new URL(asset.file, ASSET_DIR));
    cache.set(name, body);
  }
  return { body, type: asset.type };
}

/** GET /console/assets/:name — the script and the stylesheet; 404 for anything else (handled by the caller). */
export const serveAsset: RequestHandler = (req, res, next) => {
  const name = typeof req.params['name'] === 'string' ? req.params['name'] : '';
  const asset = loadAsset(name);
  if (!asset) {
    next();
    return;
  }
  res.status(200).type(asset.type).send(asset.body);
};
