/**
 * GET /openapi.json: the API reference, docs/openapi.yaml, served as JSON
 * without a token (issue 12). The document is read, parsed and checked once
 * per process, when the first app is built at start; a broken document stops
 * the start with the file, the line and the problem, rather than serving a
 * reference that is wrong or missing.
 */
import { readFileSync } from 'node:fs';
import { Router } from 'express';
import { parseDocument } from 'yaml';
import { methodNotAllowed } from '../errors.js';

/**
 * Resolved from this module, not the working directory, as src/templates.ts
 * resolves templates/: src/http/routes/openapi.ts under vitest and
 * dist/http/routes/openapi.js after the build both sit three levels below
 * the repository root, so `npm start` finds the same file.
 */
export const API_DOCUMENT_URL = new URL('../../../docs/openapi.yaml', import.meta.url);

// How the file is named in a refusal to start: what an operator finds in the repository.
const SHOWN_AS = 'docs/openapi.yaml';

// The document's anchors expand into a few shared examples; a file with more is not ours.
const MAX_ALIASES = 100;

/** An OpenAPI 3.1 document, as far as the relay relies on its shape. */
export interface ApiDocument {
  openapi: string;
  info: { title: string; version: string } & Record<string, unknown>;
  paths: Record<string, Record<string, unknown>>;
  [key: string]: unknown;
}

function isObject(value: unknown): value is Record<string, unknown> {
  return typeof value === 'object' && value !== null && !Array.isArray(value);
}

/**
 * Reads and checks the document at `url`: YAML without duplicate keys,
 * `openapi: 3.1.x`, an `info` with title and version, and `paths` whose keys
 * start with `/`. Throws an Error naming the file (`shownAs`), the line
 * where YAML fails, and what is wrong.
 */
export function loadApiDocument(url: URL = API_DOCUMENT_URL, shownAs = SHOWN_AS): ApiDocument {
  let text: string;
  try {
    text = readFileSync(url, 'utf8');
  } catch (err) {
    throw new Error(`${shownAs}: cannot be read (${(err as NodeJS.ErrnoException).code ?? String(err)}); it is the API reference GET /openapi.json serves.`);
  }
  const parsed = parseDocument(text, { uniqueKeys: true, prettyErrors: true });
  const first = parsed.errors[0];
  // The first problem only, on one line: later ones are usually the same mistake seen again.
  if (first !== undefined) throw new Error(`${shownAs}: not valid YAML: ${first.message.split('\n')[0]}`);
  let document: unknown;
  try {
    document = parsed.toJS({ maxAliasCount: MAX_ALIASES });
  } catch (err) {
    throw new Error(`${shownAs}: ${(err as Error).message.split('\n')[0]}`);
  }
  if (!isObject(document)) throw new Error(`${shownAs}: the document is not a mapping; it must be an OpenAPI 3.1 document.`);
  if (typeof document['openapi'] !== 'string' || !/^3\.1\.\d+$/.test(document['openapi'])) {
    throw new Error(`${shownAs}: "openapi" must be 3.1.x, not ${JSON.stringify(document['openapi'] ?? null)}.`);
  }
  const info = document['info'];
  if (!isObject(info) || typeof info['title'] !== 'string' || typeof info['version'] !== 'string') {
    throw new Error(`${shownAs}: "info" needs a "title" and a "version".`);
  }
  const paths = document['paths'];
  if (!isObject(paths)) throw new Error(`${shownAs}: "paths" must be a mapping of the relay's routes.`);
  for (const [path, item] of Object.entries(paths)) {
    if (!path.startsWith('/')) throw new Error(`${shownAs}: path "${path.slice(0, 80)}" must start with "/".`);
    if (!isObject(item)) throw new Error(`${shownAs}: path "${path.slice(0, 80)}" must be a mapping of its operations.`);
  }
  return document as ApiDocument;
}

// The document's JSON, made once per process: parsing 100 KB of YAML per test relay would be waste.
let json: string | undefined;

/** GET /openapi.json (no token): the document as JSON, serialised once. Throws when the document is broken, so the start stops. */
export function openApiRoutes(): Router {
  json ??= JSON.stringify(loadApiDocument());
  const body = json;
  const router = Router();
  router
    .route('/openapi.json')
    .get((_req, res) => {
      res.type('application/json').send(body);
    })
    .all(methodNotAllowed);
  return router;
}
