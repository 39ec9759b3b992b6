/**
 * docs/openapi.yaml is the API reference (issue 12), so it must be the API:
 * every route express knows is in it with the same methods and every
 * documented operation is a route; it is structurally valid OpenAPI 3.1;
 * every error code of the registry is in it, and every code an operation
 * names is a registry code under its own status; every example is valid
 * against its schema; every request example is accepted by the running
 * route, and every answer matches the documented schema (with no field the
 * document does not name); every constraint the document states of a
 * request body (required, unknown fields, lengths, patterns, enums, types)
 * the route enforces; every route the README names is in it. GET
 * /openapi.json serves it without a token, and a broken document stops the
 * built relay from starting.
 */
import { spawn, type ChildProcess } from 'node:child_process';
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { pathToFileURL } from 'node:url';
import twilio from 'twilio';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { z } from 'zod';
import { ERROR_CODES } from '../../src/errors.js';
import { loadApiDocument } from '../../src/http/routes/openapi.js';
import { buildDist, ROOT } from '../helpers/build.js';
import { startFakeSlack, type FakeSlack } from '../helpers/fake-slack.js';
import { BANNER_END, bannerPorts, relayEnv, stopRelayProcess, waitForOutput, type RelayProcess } from '../helpers/process.js';
import { BACKENDS, createTestRelay, type TestRelay } from '../helpers/relay.js';

// The document is walked generically: its shape is exactly what these tests check.
// eslint-disable-next-line @typescript-eslint/no-explicit-any
type Node = any;

const DOC: Node = loadApiDocument();
const METHODS = ['get', 'put', 'post', 'patch', 'delete'] as const;
type Method = (typeof METHODS)[number];

interface Operation {
  path: string;
  method: Method;
  op: Node;
  /** Path-level parameters, then the operation's. */
  parameters: Node[];
}

const OPERATIONS: Operation[] = Object.entries(DOC.paths as Record<string, Node>).flatMap(([p, item]) =>
  METHODS.filter((m) => item[m] !== undefined).map((method) => ({ path: p, method, op: item[method], parameters: [...(item.parameters ?? []), ...(item[method].parameters ?? [])].map(deref) })),
);
const BY_ID = new Map(OPERATIONS.map((o) => [o.op.operationId as string, o]));

/** The object a local `$ref` points to (followed until it is not a reference). */
function deref(node: Node): Node {
  let current = node;
  for (let hops = 0; current && typeof current === 'object' && typeof current.$ref === 'string'; hops++) {
    if (hops > 10) throw new Error(`reference loop at ${node.$ref}`);
    current = resolvePointer(current.$ref);
  }
  return current;
}

function resolvePointer(ref: string): Node {
  if (!ref.startsWith('#/')) throw new Error(`not a local reference: ${ref}`);
  let current: Node = DOC;
  for (const part of ref.slice(2).split('/')) current = current?.[part.replace(/~1/g, '/').replace(/~0/g, '~')];
  return current;
}

/** Every `$ref` in the document, with where it stands. */
function allRefs(node: Node, at = '#'): Array<[string, string]> {
  if (Array.isArray(node)) return node.flatMap((v, i) => allRefs(v, `${at}/${i}`));
  if (node === null || typeof node !== 'object') return [];
  return Object.entries(node).flatMap(([k, v]) => (k === '$ref' ? [[at, v as string] as [string, string]] : allRefs(v, `${at}/${k}`)));
}

/** `:name` (express) and `{name}` (OpenAPI) written the same way. */
const openApiPath = (expressPath: string): string => expressPath.replace(/:([A-Za-z_][A-Za-z0-9_]*)/g, '{$1}');

// ------------------------------------------------------------------ schemas as validators

/** Rewrites references to components/schemas as $defs; `strict` closes every object schema that names its properties and says nothing of others. */
function rewrite(node: Node, strict: boolean): Node {
  if (Array.isArray(node)) return node.map((v) => rewrite(v, strict));
  if (node === null || typeof node !== 'object') return node;
  const out: Node = {};
  for (const [k, v] of Object.entries(node)) out[k] = k === '$ref' && typeof v === 'string' ? v.replace('#/components/schemas/', '#/$defs/') : k === 'properties' ? Object.fromEntries(Object.entries(v as Node).map(([p, s]) => [p, rewrite(s, strict)])) : rewrite(v, strict);
  if (strict && out.properties !== undefined && out.additionalProperties === undefined) out.additionalProperties = false;
  return out;
}

const validators = new Map<string, z.ZodType>();

/**
 * A validator for a schema of the document, through zod's JSON Schema reader
 * (no OpenAPI validator is installed). Answers are checked `strict`: a field
 * the relay sends that the document does not name fails.
 */
function validator(schema: Node, strict: boolean): z.ZodType {
  const key = `${strict}:${JSON.stringify(schema)}`;
  let found = validators.get(key);
  if (found === undefined) {
    const defs = Object.fromEntries(Object.entries(DOC.components.schemas as Record<string, Node>).map(([name, s]) => [name, rewrite(s, strict)]));
    found = z.fromJSONSchema({ ...rewrite(schema, strict), $defs: defs }, { defaultTarget: 'draft-2020-12' });
    validators.set(key, found);
  }
  return found;
}

function expectValid(schema: Node, value: unknown, what: string, strict = false): void {
  const result = validator(schema, strict).safeParse(value);
  expect(result.success ? [] : result.error.issues.map((i) => `${i.path.join('.')}: ${i.message}`), what).toEqual([]);
}

/** The examples of a media type (or parameter), by name: `example` is named "example". */
function examplesOf(media: Node): Array<[string, unknown]> {
  const out: Array<[string, unknown]> = [];
  if (media.example !== undefined) out.push(['example', media.example]);
  for (const [name, ex] of Object.entries((media.examples ?? {}) as Record<string, Node>)) out.push([name, deref(ex).value]);
  return out;
}

// ------------------------------------------------------------------ error codes per operation

/** The error codes a documented response stands for: a response named by its code, or examples named by theirs. */
function codesOf(response: Node): string[] {
  if (typeof response.$ref === 'string') {
    const name = response.$ref.replace('#/components/responses/', '');
    return name === 'unexpected' ? codesOf(deref(response)) : [name];
  }
  const media = response.content?.['application/json'];
  if (media === undefined) return [];
  return Object.entries((media.examples ?? {}) as Record<string, Node>).map(([name, ex]) => {
    expect(ex.$ref, `${name}: an error example refers to components/examples/<code>`).toBe(`#/components/examples/${name}`);
    return name;
  });
}

const isSuccess = (status: string): boolean => /^2\d\d$/.test(status);

// ------------------------------------------------------------------ the document itself

describe('docs/openapi.yaml', () => {
  it('is OpenAPI 3.1 with info, paths and components; every $ref resolves', () => {
    expect(DOC.openapi).toMatch(/^3\.1\.\d+$/);
    expect(DOC.info).toMatchObject({ title: expect.any(String), version: expect.any(String), description: expect.any(String) });
    expect(Object.keys(DOC.paths).length).toBeGreaterThan(20);
    const refs = allRefs(DOC);
    expect(refs.length).toBeGreaterThan(100);
    for (const [at, ref] of refs) expect(resolvePointer(ref), `${at} → ${ref}`).toBeDefined();
  });

  it('gives every operation a unique operationId, a summary, declared tags, responses with a 2xx, and every path parameter', () => {
    const ids = OPERATIONS.map((o) => o.op.operationId);
    expect(ids.every((id) => typeof id === 'string' && /^[a-z][A-Za-z]+$/.test(id))).toBe(true);
    expect(new Set(ids).size).toBe(ids.length);
    const tags = new Set((DOC.tags as Node[]).map((t) => t.name));
    for (const { path: p, method, op, parameters } of OPERATIONS) {
      const where = `${method.toUpperCase()} ${p}`;
      expect(op.summary, where).toEqual(expect.any(String));
      expect(op.tags?.length, where).toBeGreaterThan(0);
      for (const tag of op.tags) expect(tags.has(tag), `${where} tag ${tag}`).toBe(true);
      expect(Object.keys(op.responses).some(isSuccess), `${where} has a 2xx`).toBe(true);
      const inPath = [...p.matchAll(/\{([^}]+)\}/g)].map((m) => m[1]).sort();
      const declared = parameters.filter((q) => q.in === 'path').map((q) => q.name as string);
      expect(declared.sort(), `${where} path parameters`).toEqual(inPath);
      for (const q of parameters.filter((q) => q.in === 'path')) expect(q.required, `${where} ${q.name} is required`).toBe(true);
    }
    // Every security requirement names a declared scheme.
    const schemes = Object.keys(DOC.components.securitySchemes);
    for (const { op } of OPERATIONS) for (const req of op.security ?? DOC.security) for (const name of Object.keys(req)) expect(schemes).toContain(name);
  });

  it('lists every code of the error registry: in ErrorCode, as a response named by the code with its status, and as an example', () => {
    expect([...DOC.components.schemas.ErrorCode.enum].sort()).toEqual(Object.keys(ERROR_CODES).sort());
    for (const [code, spec] of Object.entries(ERROR_CODES)) {
      const response = DOC.components.responses[code];
      expect(response, `components/responses/${code}`).toBeDefined();
      expect(response.description, `${code} description starts with its status`).toMatch(new RegExp(`^${spec.http} — `));
      expect(Object.keys(response.content['application/json'].examples)).toEqual([code]);
      expect(DOC.components.examples[code].value.error.code, `components/examples/${code}`).toBe(code);
    }
  });

  it('names only registry codes in an operation, each under its own status; every error status names at least one', () => {
    const used = new Set<string>();
    for (const { path: p, method, op } of OPERATIONS) {
      for (const [status, response] of Object.entries(op.responses as Record<string, Node>)) {
        const where = `${method.toUpperCase()} ${p} ${status}`;
        if (isSuccess(status)) continue;
        const codes = codesOf(response);
        expect(codes.length, `${where} names its codes`).toBeGreaterThan(0);
        for (const code of codes) {
          expect(Object.keys(ERROR_CODES), where).toContain(code);
          if (status !== 'default') expect(ERROR_CODES[code as keyof typeof ERROR_CODES].http, `${where}: ${code}`).toBe(Number(status));
          used.add(code);
        }
      }
      expect(op.responses.default, `${method.toUpperCase()} ${p} has the default (500/503) answer`).toEqual({ $ref: '#/components/responses/unexpected' });
    }
    // Codes no single operation gives, and why: any path may answer 405; three are SMTP submission's alone.
    const notPerOperation = ['method_not_allowed', 'ambiguous_incident', 'sender_mismatch', 'message_unparsable'];
    expect(Object.keys(ERROR_CODES).filter((c) => !used.has(c)).sort()).toEqual([...notPerOperation].sort());
    for (const code of notPerOperation.slice(1)) expect(DOC.components.responses[code].description).toContain('SMTP submission only');
    expect(DOC.components.responses.method_not_allowed.description).toContain('Any path');
  });

  it('has only examples that are valid against their schemas: bodies, answers, errors and parameters', () => {
    let checked = 0;
    const media = (content: Record<string, Node> | undefined, where: string, strict: boolean) => {
      for (const [type, m] of Object.entries(content ?? {})) {
        for (const [name, value] of examplesOf(m)) {
          expectValid(m.schema, value, `${where} ${type} example ${name}`, strict);
          checked++;
        }
      }
    };
    for (const { path: p, method, op, parameters } of OPERATIONS) {
      const where = `${method.toUpperCase()} ${p}`;
      media(op.requestBody?.content, `${where} request`, false);
      for (const [status, response] of Object.entries(op.responses as Record<string, Node>)) media(deref(response).content, `${where} ${status}`, true);
      for (const q of parameters) {
        if (q.example !== undefined) {
          expectValid(q.schema, q.example, `${where} parameter ${q.name}`);
          checked++;
        }
      }
    }
    for (const [name, response] of Object.entries(DOC.components.responses as Record<string, Node>)) media(response.content, `components/responses/${name}`, true);
    for (const [name, schema] of Object.entries(DOC.components.schemas as Record<string, Node>)) {
      for (const value of [...(schema.example !== undefined ? [schema.example] : []), ...(schema.examples ?? [])]) {
        expectValid(schema, value, `components/schemas/${name} example`, true);
        checked++;
      }
    }
    expect(checked).toBeGreaterThan(80);
  });

  it('shows every field of every request body in an example, so the running route is seen to accept each', () => {
    for (const { path: p, method, op } of OPERATIONS) {
      for (const [type, media] of Object.entries((op.requestBody?.content ?? {}) as Record<string, Node>)) {
        const schema = deref(media.schema);
        if (schema.type !== 'object' || type !== 'application/json') continue;
        const shown = new Set(examplesOf(media).flatMap(([, value]) => Object.entries(value as Record<string, unknown>).flatMap(([k, v]) => [k, ...(v !== null && typeof v === 'object' && !Array.isArray(v) ? Object.keys(v).map((n) => `${k}.${n}`) : [])])));
        const fields = Object.entries(schema.properties as Record<string, Node>).flatMap(([k, v]) => [k, ...Object.keys(deref(v).properties ?? {}).map((n) => `${k}.${n}`)]);
        expect(fields.filter((f) => !shown.has(f)), `${method.toUpperCase()} ${p}: fields no example shows`).toEqual([]);
      }
    }
  });

  it('names every route the README and SECURITY.md name, as they name it', () => {
    const named = ['README.md', 'SECURITY.md'].flatMap((file) =>
      [...fs.readFileSync(path.join(ROOT, file), 'utf8').matchAll(/`(GET|POST|PUT|PATCH|DELETE) (\/[^`\s?]*)/g)].map((m) => ({ file, method: m[1]!.toLowerCase(), path: m[2]! })),
    );
    expect(named.length).toBeGreaterThan(30);
    for (const { file, method, path: p } of named) {
      const documented = openApiPath(p.replace(/<([a-z]+)>/g, ':$1'));
      expect(DOC.paths[documented]?.[method], `${file}: ${method.toUpperCase()} ${p}`).toBeDefined();
    }
  });

  it('says where the console is: outside the API document, and why', () => {
    expect(Object.keys(DOC.paths).filter((p) => p.startsWith('/console'))).toEqual([]);
    expect(DOC.info.description).toContain('**Not in this document: `/console`.**');
  });
});

// ------------------------------------------------------------------ the document against express

/** Every route express holds: its full path and methods, walking mounted routers (express 5's router: layer.route, layer.handle.stack). */
function expressRoutes(stack: Node[], prefix = ''): Array<{ path: string; methods: string[] }> {
  return stack.flatMap((layer: Node) => {
    if (layer.route) {
      const methods = Object.keys(layer.route.methods).filter((m) => m !== '_all');
      return [layer.route.path].flat().map((p: string) => ({ path: prefix + p, methods }));
    }
    if (Array.isArray(layer.handle?.stack)) return expressRoutes(layer.handle.stack, prefix + (layer.rawPath === '/' ? '' : String(layer.rawPath)));
    return [];
  });
}

describe('the document and the routes express knows', () => {
  let relay: TestRelay;
  beforeAll(async () => {
    relay = await createTestRelay();
  });

  it('documents every route with the same methods, and documents nothing else (the console under /console aside)', () => {
    const routes = expressRoutes((relay.app as Node).router.stack);
    expect(routes.some((r) => r.path.startsWith('/console/')), 'the console is mounted').toBe(true);
    const api = routes.filter((r) => !r.path.startsWith('/console'));
    const fromExpress = api.flatMap((r) => r.methods.map((m) => `${m.toUpperCase()} ${openApiPath(r.path)}`)).sort();
    const fromDocument = OPERATIONS.map((o) => `${o.method.toUpperCase()} ${o.path}`).sort();
    expect(fromDocument).toEqual(fromExpress);
  });

  it('asks for a token exactly where the document says so', async () => {
    const open: string[] = [];
    for (const { path: p, method, op, parameters } of OPERATIONS) {
      const url = p.replace(/\{([^}]+)\}/g, (_, name: string) => encodeURIComponent(String(parameters.find((q) => q.name === name)?.example ?? 'x')));
      const res = await relay.request[method](url);
      const bearer = (op.security ?? DOC.security).some((req: Node) => 'bearerAuth' in req);
      const where = `${method.toUpperCase()} ${url}: ${res.status}`;
      if (bearer) {
        expect(res.status, where).toBe(401);
        expect(res.body.error.code, where).toBe('unauthenticated');
        expect(res.headers['www-authenticate'], where).toBe('Bearer realm="incident-relay"');
      } else {
        expect(res.status, where).not.toBe(401);
        open.push(`${method.toUpperCase()} ${p}`);
      }
    }
    expect(open.sort()).toEqual(['GET /.well-known/incident-relay/relay-key.asc', 'GET /healthz', 'GET /openapi.json', 'GET /v1/relay-key', 'POST /webhooks/twilio/sms']);
  });

  it('answers every documented operation with something other than "No route" or 405', async () => {
    for (const { path: p, method, parameters } of OPERATIONS) {
      const url = p.replace(/\{([^}]+)\}/g, (_, name: string) => encodeURIComponent(String(parameters.find((q) => q.name === name)?.example ?? 'x')));
      const res = await relay.request[method](url).set('Authorization', `Bearer ${relay.admin}`);
      const where = `${method.toUpperCase()} ${url}: ${res.status} ${JSON.stringify(res.body).slice(0, 200)}`;
      expect(res.status, where).not.toBe(405);
      expect(String(res.body?.error?.message ?? ''), where).not.toMatch(/^No route /);
    }
  });
});

// ------------------------------------------------------------------ the document against a running relay

const auth = (token: string) => ({ Authorization: `Bearer ${token}` });
const TWILIO = { accountSid: `AC${'0'.repeat(32)}`, authToken: 'twilio-auth-token-for-tests', from: '+15555550199' };
const TWILIO_URL = 'https://relay.corp.example/webhooks/twilio/sms';

/** One request made by the scenario: enough to make it again with another body. */
interface Sent {
  operationId: string;
  example: string | undefined;
  url: string;
  token: string | undefined;
  contentType: string;
  body: unknown;
}

describe.each(BACKENDS)('the document against a running relay (%s)', (backend) => {
  let relay: TestRelay;
  let slack: FakeSlack;
  const sent: Sent[] = [];
  const succeeded = new Set<string>();
  const examplesSent = new Set<string>();

  beforeAll(async () => {
    slack = await startFakeSlack();
    for (const email of ['ic@corp.example', 'legal@corp.example', 'comms@corp.example']) slack.addUser(email);
    // The id the roster examples give the security responder.
    slack.addUser('sec@corp.example', 'U024BE7LH');
    relay = await createTestRelay(
      { slackBotToken: slack.token, slackApiUrl: slack.url, slackSyncInterval: 60_000, twilio: TWILIO },
      { backend, slack: { queue: { backoffBaseMs: 5, backoffMaxMs: 20, maxAttempts: 3 } } },
    );
  });

  afterAll(async () => {
    await relay?.slack?.stop();
    await slack?.close();
  });

  interface Call {
    /** The path with its parameters filled in; must fit the operation's template. */
    url: string;
    token?: string | undefined;
    /** A named example of the operation's request body. */
    example?: string;
    contentType?: string;
    body?: unknown;
    query?: Record<string, string>;
    headers?: Record<string, string>;
  }

  /**
   * Makes one request of `operationId` and checks the answer against the
   * document: a documented status; for an error, a code documented for this
   * operation at that status; for a success, a documented content type and a
   * body valid (strictly) against its schema.
   */
  async function call(operationId: string, c: Call) {
    const operation = BY_ID.get(operationId);
    expect(operation, operationId).toBeDefined();
    const { path: template, method, op } = operation!;
    const pattern = new RegExp(`^${template.replace(/[.]/g, '\\.').replace(/\{[^}]+\}/g, '[^/]+')}$`);
    expect(c.url, `${operationId} path`).toMatch(pattern);
    const contentType = c.contentType ?? 'application/json';
    let body = c.body;
    if (c.example !== undefined) {
      const media = op.requestBody.content[contentType];
      const found = examplesOf(media).find(([name]) => name === c.example);
      expect(found, `${operationId} example ${c.example}`).toBeDefined();
      body = found![1];
      examplesSent.add(`${operationId}:${contentType}:${c.example}`);
    }
    let req = relay.request[method](c.url);
    if (c.query) req = req.query(c.query);
    if (c.token !== undefined) req = req.set(auth(c.token));
    for (const [k, v] of Object.entries(c.headers ?? {})) req = req.set(k, v);
    if (body !== undefined) {
      if (contentType === 'application/x-www-form-urlencoded') req = req.type('form').send(body as Record<string, string>);
      else if (contentType === 'text/plain') req = req.type('text/plain').send(body as string);
      else req = req.send(body as object);
    }
    const res = await req;
    const where = `${operationId} ${method.toUpperCase()} ${c.url}${c.example ? ` (${c.example})` : ''}: ${res.status} ${res.text.slice(0, 300)}`;
    const status = String(res.status);
    const documented = op.responses[status] ?? op.responses.default;
    expect(op.responses[status] !== undefined || !isSuccess(status), `${where}: status documented`).toBe(true);
    if (isSuccess(status)) {
      succeeded.add(operationId);
      const content = deref(documented).content as Record<string, Node> | undefined;
      if (content === undefined) expect(res.text, `${where}: no body`).toBe('');
      else {
        const type = String(res.headers['content-type'] ?? '').split(';')[0]!.trim();
        expect(Object.keys(content), `${where}: content type`).toContain(type);
        if (type === 'application/json') expectValid(content[type].schema, res.body, `${where}: body`, true);
        else expectValid(content[type].schema, res.text, `${where}: body`, true);
      }
    } else {
      expect(codesOf(documented), `${where}: code documented for this status`).toContain(res.body?.error?.code);
    }
    if (c.example !== undefined) sent.push({ operationId, example: c.example, url: c.url, token: c.token, contentType, body });
    return res;
  }

  const ok = async (operationId: string, c: Call, status?: number) => {
    const res = await call(operationId, c);
    expect(isSuccess(String(res.status)), `${operationId} ${c.example ?? ''}: ${res.status} ${res.text.slice(0, 400)}`).toBe(true);
    if (status !== undefined) expect(res.status).toBe(status);
    return res;
  };

  const C = 'sapphire-unicorn';
  const I = `/v1/incidents/${C}`;
  let ic: string;
  let counsel: string;
  let legal: string;
  let comms: string;

  it('serves the document as JSON at GET /openapi.json, without a token', async () => {
    const res = await ok('getApiDocument', { url: '/openapi.json' }, 200);
    expect(res.headers['content-type']).toBe('application/json; charset=utf-8');
    expect(res.body).toEqual(DOC);
    expect((await relay.request.post('/openapi.json')).status).toBe(405);
  });

  it('accepts every request example the document gives, and answers every operation as documented', async () => {
    const admin = relay.admin;
    await ok('getHealth', { url: '/healthz' }, 200);
    await ok('getRelayKey', { url: '/v1/relay-key' }, 200);
    await ok('getRelayKey', { url: '/v1/relay-key', headers: { Accept: 'application/json' } }, 200);
    await ok('getRelayKeyWellKnown', { url: '/.well-known/incident-relay/relay-key.asc' }, 200);
    await ok('getMetrics', { url: '/metrics', token: admin }, 200);

    // The commander's token, issued by the admin as the first example says; then the incident.
    ic = (await ok('createToken', { url: '/v1/tokens', token: admin, example: 'commander' }, 201)).body.token;
    await ok('createIncident', { url: '/v1/incidents', token: ic, example: 'chosen' }, 201);
    await ok('createIncident', { url: '/v1/incidents', token: admin, example: 'byAdmin' }, 201);
    await ok('listIncidents', { url: '/v1/incidents', token: ic, query: { status: 'open' } }, 200);
    await ok('getIncident', { url: I, token: ic }, 200);

    // The roster: the documented members, and legal and communications for the announcement.
    await ok('putRosterMember', { url: `${I}/roster/sec@corp.example`, token: ic, example: 'security' }, 201);
    await ok('putRosterMember', { url: `${I}/roster/counsel@lawfirm.example`, token: ic, example: 'counsel' }, 201);
    await ok('putRosterMember', { url: `${I}/roster/legal@corp.example`, token: ic, body: { name: 'Legal', role: 'legal' } }, 201);
    await ok('putRosterMember', { url: `${I}/roster/comms@corp.example`, token: ic, body: { name: 'Communications', role: 'communications' } }, 201);
    await ok('patchRosterMember', { url: `${I}/roster/sec@corp.example`, token: ic, example: 'newPhone' }, 200);
    await ok('patchRosterMember', { url: `${I}/roster/counsel@lawfirm.example`, token: ic, example: 'counselDetails' }, 200);
    await ok('getRoster', { url: `${I}/roster`, token: ic }, 200);
    legal = await relay.tokenFor('legal@corp.example');
    comms = await relay.tokenFor('comms@corp.example');

    // Tokens: the commander brings counsel in.
    counsel = (await ok('createToken', { url: '/v1/tokens', token: ic, example: 'forRoster' }, 201)).body.token;
    const spare = (await ok('createToken', { url: '/v1/tokens', token: admin, body: { email: 'ic@corp.example', role: 'responder', label: 'old laptop' } }, 201)).body.id;
    await ok('listTokens', { url: '/v1/tokens', token: admin }, 200);

    // Keys: counsel files their own relay-wide key, as JSON and as text/plain, with a token of their own
    // (the one their commander issued is held to the incident and may not).
    expect((await relay.request.put('/v1/keys/counsel@lawfirm.example').set('Authorization', `Bearer ${counsel}`).send({ publicKey: 'x' })).body.error.code).toBe('forbidden');
    const counselOwn = await relay.tokenFor('counsel@lawfirm.example');
    await ok('putKey', { url: '/v1/keys/counsel@lawfirm.example', token: counselOwn, example: 'counselKey' }, 200);
    await ok('putKey', { url: '/v1/keys/counsel@lawfirm.example', token: counselOwn, contentType: 'text/plain', example: 'example' }, 200);
    await ok('getKey', { url: '/v1/keys/counsel@lawfirm.example', token: ic, query: { incident: C } }, 200);

    // Email: a preview, then the documented sends; the list and one status.
    const preview = await ok('sendEmail', { url: `${I}/emails`, token: ic, example: 'briefing', query: { dryRun: 'true' } }, 200);
    expect(preview.body.outcome).toBe('accept');
    const briefing = await ok('sendEmail', { url: `${I}/emails`, token: ic, example: 'briefing', headers: { 'Idempotency-Key': 'first-briefing' } }, 202);
    expect(briefing.body.encrypted).toBe(true);
    await ok('sendEmail', { url: `${I}/emails`, token: ic, example: 'timeline' }, 202);
    await ok('sendEmail', { url: `${I}/emails`, token: ic, example: 'reply' }, 202);
    await ok('listEmails', { url: `${I}/emails`, token: ic, query: { limit: '2' } }, 200);
    await ok('listEmails', { url: `${I}/emails`, token: ic, query: { messageId: briefing.body.messageId } }, 200);
    await ok('getEmail', { url: `${I}/emails/${briefing.body.id}`, token: ic }, 200);

    // SMS, and Twilio's webhook signed as Twilio signs it.
    await ok('sendSms', { url: `${I}/sms`, token: ic, example: 'members' }, 202);
    await ok('sendSms', { url: `${I}/sms`, token: ic, example: 'everyone' }, 202);
    await ok('sendSms', { url: `${I}/sms`, token: ic, example: 'withBody' }, 202);
    const form = examplesOf(BY_ID.get('receiveTwilioSms')!.op.requestBody.content['application/x-www-form-urlencoded'])[0]![1] as Record<string, string>;
    await ok(
      'receiveTwilioSms',
      { url: '/webhooks/twilio/sms', contentType: 'application/x-www-form-urlencoded', example: 'example', headers: { Host: 'relay.corp.example', 'X-Twilio-Signature': twilio.getExpectedTwilioSignature(TWILIO.authToken, TWILIO_URL, form) } },
      200,
    );

    // Slack, once the room is built.
    await relay.slack!.idle();
    await ok('syncSlackRoom', { url: `${I}/slack/sync`, token: ic }, 200);

    // Announcements: the press list, two drafts, an edit, the checks, the record, the approvals, the send.
    await ok('putAudience', { url: '/v1/audiences/press', token: admin, example: 'press' }, 201);
    await ok('putAudience', { url: '/v1/audiences/managers', token: admin, example: 'managers' }, 201);
    await ok('listAudiences', { url: '/v1/audiences', token: ic }, 200);
    await ok('getAudience', { url: '/v1/audiences/press', token: admin }, 200);
    const press = (await ok('createAnnouncement', { url: `${I}/announcements`, token: comms, example: 'press' }, 201)).body.id;
    const staff = (await ok('createAnnouncement', { url: `${I}/announcements`, token: comms, example: 'staff' }, 201)).body.id;
    await ok('editAnnouncement', { url: `${I}/announcements/${staff}`, token: comms, example: 'retitle' }, 200);
    await ok('editAnnouncement', { url: `${I}/announcements/${staff}`, token: comms, example: 'reword' }, 200);
    await ok('listAnnouncements', { url: `${I}/announcements`, token: ic }, 200);
    await ok('checkAnnouncement', { url: `${I}/announcements/${press}/check`, token: comms }, 200);
    await ok('recordInternalSource', { url: `${I}/internal-source`, token: ic, example: 'ruledOut' }, 200);
    await ok('approveAnnouncement', { url: `${I}/announcements/${press}/approve`, token: ic }, 200);
    await ok('approveAnnouncement', { url: `${I}/announcements/${press}/approve`, token: legal }, 200);
    await ok('sendAnnouncement', { url: `${I}/announcements/${press}/send`, token: comms, headers: { 'Idempotency-Key': 'press-1' } }, 202);
    await ok('getAnnouncement', { url: `${I}/announcements/${press}`, token: ic }, 200);

    // The audit log.
    await ok('listIncidentAuditEvents', { url: `${I}/audit`, token: ic, query: { type: 'email.*', limit: '3' } }, 200);
    await ok('listAuditEvents', { url: '/v1/audit', token: admin, query: { incident: C, since: '2000-01-01' } }, 200);
    await ok('verifyAudit', { url: '/v1/audit/verify', token: admin }, 200);
    await ok('listAuditHeads', { url: '/v1/audit/heads', token: admin }, 200);
    await ok('listAuditHeads', { url: '/v1/audit/heads', token: admin, query: { format: 'text' } }, 200);

    // Withdrawals and removals.
    await ok('withdrawRosterMemberKey', { url: `${I}/roster/counsel@lawfirm.example/key`, token: ic }, 204);
    await ok('withdrawKey', { url: '/v1/keys/counsel@lawfirm.example', token: admin }, 204);
    await ok('removeRosterMember', { url: `${I}/roster/legal@corp.example`, token: ic }, 204);
    await ok('revokeToken', { url: `/v1/tokens/${spare}`, token: admin }, 204);
    await ok('deleteAudience', { url: '/v1/audiences/press', token: admin }, 204);

    // The incident's own changes, the withdrawal of the record last (it cancels the queued copies).
    for (const example of ['relabel', 'clearLabel', 'close', 'reopen']) await ok('updateIncident', { url: I, token: ic, example }, 200);
    await ok('recordInternalSource', { url: `${I}/internal-source`, token: ic, example: 'withdraw' }, 200);
    await relay.slack!.idle();

    const everyExample = OPERATIONS.flatMap(({ op }) =>
      Object.entries((op.requestBody?.content ?? {}) as Record<string, Node>).flatMap(([type, media]) => examplesOf(media).map(([name]) => `${op.operationId}:${type}:${name}`)),
    );
    expect(everyExample.filter((e) => !examplesSent.has(e)), 'request examples never sent').toEqual([]);
    expect(OPERATIONS.map((o) => o.op.operationId).filter((id) => !succeeded.has(id)), 'operations never answered with a 2xx').toEqual([]);
  }, 120_000);

  /** The first refusal field a 400 names: `details.fields[].field` (the route's schema) or `details.field` (the service). */
  const refusedFields = (body: Node): string[] => [...((body?.error?.details?.fields ?? []) as Node[]).map((f) => f.field as string), ...(typeof body?.error?.details?.field === 'string' ? [body.error.details.field] : [])];

  /** A value of another JSON type than `type`. */
  const otherType = (type: string): unknown => (type === 'string' ? 12345 : type === 'array' ? 'not-a-list' : type === 'boolean' ? 'true' : type === 'object' ? ['x'] : 'x');

  /** The constraints of a property's schema: through a $ref, and from the string branch of a oneOf with null. */
  const constraintsOf = (schema: Node): Node => {
    const s = deref(schema);
    if (Array.isArray(s.oneOf)) return s.oneOf.map(deref).find((b: Node) => b.type === 'string') ?? {};
    return s;
  };

  it('refuses with 400, naming the field, every request body that breaks a constraint the document states', async () => {
    expect(sent.length).toBeGreaterThan(20);
    const seen = new Set<string>();
    let mutations = 0;
    for (const s of sent) {
      const { op } = BY_ID.get(s.operationId)!;
      if (s.contentType !== 'application/json' || seen.has(`${s.operationId}:${s.example}`)) continue;
      seen.add(`${s.operationId}:${s.example}`);
      const schema = deref(op.requestBody.content['application/json'].schema);
      const body = s.body as Record<string, unknown>;
      // Sent again as it was made, without any Idempotency-Key: each is refused before anything is done.
      const resend = (value: unknown) => call(s.operationId, { url: s.url, token: s.token, body: value });
      const refused = async (value: unknown, field: string, what: string) => {
        const res = await resend(value);
        mutations++;
        const where = `${s.operationId} (${s.example}) ${what}: ${res.status} ${res.text.slice(0, 300)}`;
        expect(res.status, where).toBe(400);
        expect(res.body.error.code, where).toBe('invalid_request');
        expect(refusedFields(res.body), where).toContain(field);
      };
      const notRefusedFor = async (value: unknown, field: string, what: string) => {
        const res = await resend(value);
        const where = `${s.operationId} (${s.example}) ${what}: ${res.status} ${res.text.slice(0, 300)}`;
        expect(res.status === 400 ? refusedFields(res.body) : [], where).not.toContain(field);
      };

      if (schema.additionalProperties === false) await refused({ ...body, zzUnknown: true }, '(root)', 'an unknown field');
      if (schema.minProperties === 1) await refused({}, '(root)', 'no field at all');
      for (const name of schema.required ?? []) {
        const { [name]: _, ...rest } = body;
        await refused(rest, name, `without ${name}`);
      }
      // [field, its schema, the example's value, the body with another value]
      type Property = [string, Node, unknown, (v: unknown) => unknown];
      const props = Object.entries((schema.properties ?? {}) as Record<string, Node>).flatMap(([name, p]): Property[] => {
        const top: Property = [name, p, body[name], (v) => ({ ...body, [name]: v })];
        // One level of nested object (an announcement's audience), built from the example's value.
        const inner = deref(p);
        if (inner.type !== 'object' || !inner.properties) return [top];
        const base = (body[name] ?? {}) as Record<string, unknown>;
        return [top, ...Object.entries(inner.properties as Record<string, Node>).map(([n, q]): Property => [`${name}.${n}`, q, base[n], (v) => ({ ...body, [name]: { ...base, [n]: v } })])];
      });
      for (const [field, property, current, withValue] of props) {
        const c = constraintsOf(property);
        const plain = deref(property);
        if (typeof plain.type === 'string') await refused(withValue(otherType(plain.type)), field, `${field} of another type`);
        if (Array.isArray(c.enum)) await refused(withValue('zz-not-listed'), field, `${field} outside its enum`);
        if (c.type === 'string' && typeof c.pattern === 'string') {
          const pattern = new RegExp(c.pattern);
          const bad = ['', ' ', 'x', '\n', '-', 'x\u2028y'].find((v) => !pattern.test(v));
          expect(bad, `${field}: a value its pattern refuses`).toBeDefined();
          await refused(withValue(bad), field, `${field} = ${JSON.stringify(bad)} against ${c.pattern}`);
        }
        // Lengths, with a filler the pattern accepts; an address's length is the address grammar's (README "Addresses").
        if (c.type === 'string' && typeof c.maxLength === 'number' && property.$ref !== '#/components/schemas/Email') {
          const filler = ['a', 'A', '1'].find((ch) => c.pattern === undefined || new RegExp(c.pattern).test(ch.repeat(3)))!;
          await refused(withValue(filler.repeat(c.maxLength + 1)), field, `${field} of ${c.maxLength + 1} characters`);
          // At the limit the route has nothing to say about the field's length (it may still refuse the value for what it says).
          if (!(s.operationId === 'createIncident' && field === 'codename')) await notRefusedFor(withValue(filler.repeat(c.maxLength)), field, `${field} of ${c.maxLength} characters`);
        }
        // Lists: too few, too many, and an entry too long.
        if (plain.type === 'array') {
          const items = deref(plain.items);
          const entry = (Array.isArray(current) ? current[0] : undefined) ?? (items.type === 'string' ? 'x' : {});
          if (typeof plain.minItems === 'number' && plain.minItems > 0) await refused(withValue([]), field, `${field} empty`);
          if (typeof plain.maxItems === 'number') await refused(withValue(Array.from({ length: plain.maxItems + 1 }, () => entry)), field, `${field} of ${plain.maxItems + 1} entries`);
          if (items.type === 'string' && typeof items.maxLength === 'number' && plain.items.$ref === undefined) {
            const res = await resend(withValue(['a'.repeat(items.maxLength + 1)]));
            mutations++;
            expect(res.status, `${field} entry of ${items.maxLength + 1} characters: ${res.text.slice(0, 300)}`).toBe(400);
            expect(refusedFields(res.body), `${field} entry of ${items.maxLength + 1} characters`).toContain(`${field}.0`);
          }
        }
      }
    }
    expect(mutations).toBeGreaterThan(60);
  }, 120_000);
});

// ------------------------------------------------------------------ a broken document

describe('a broken document', () => {
  const dir = fs.mkdtempSync(path.join(os.tmpdir(), 'openapi-'));
  afterAll(() => fs.rmSync(dir, { recursive: true, force: true }));
  const good = fs.readFileSync(path.join(ROOT, 'docs', 'openapi.yaml'), 'utf8');
  const lineOf = (text: string, needle: string): number => text.slice(0, text.indexOf(needle)).split('\n').length;
  const load = (text: string | undefined) => {
    const file = path.join(dir, `doc-${Math.random().toString(36).slice(2)}.yaml`);
    if (text !== undefined) fs.writeFileSync(file, text);
    return () => loadApiDocument(pathToFileURL(file), 'docs/openapi.yaml');
  };

  it.each([
    // The mistake YAML makes easy: a colon and a space inside an unquoted text.
    ['a YAML error, with its line', good.replace('summary: Whether the relay can reach its store', 'summary: Health: whether the relay can reach its store'), new RegExp(`^docs/openapi\\.yaml: not valid YAML: Nested mappings are not allowed in compact mappings at line ${lineOf(good, 'summary: Whether the relay can reach its store')}, column 16:$`)],
    ['a key given twice', good.replace('  /metrics:\n', '  /healthz:\n    get: {}\n  /metrics:\n'), /^docs\/openapi\.yaml: not valid YAML: Map keys must be unique at line \d+, column \d+:$/],
    ['OpenAPI 3.0', good.replace('openapi: 3.1.0', 'openapi: 3.0.3'), /^docs\/openapi\.yaml: "openapi" must be 3\.1\.x, not "3\.0\.3"\.$/],
    ['no info title', good.replace('  title: incident-relay HTTP API\n', ''), /^docs\/openapi\.yaml: "info" needs a "title" and a "version"\.$/],
    ['no paths', good.replace(/^paths:$/m, 'routes:'), /^docs\/openapi\.yaml: "paths" must be a mapping of the relay's routes\.$/],
    ['a path without its slash', good.replace('  /healthz:\n', '  healthz:\n'), /^docs\/openapi\.yaml: path "healthz" must start with "\/"\.$/],
    ['not a mapping', '- openapi\n', /^docs\/openapi\.yaml: the document is not a mapping; it must be an OpenAPI 3\.1 document\.$/],
    ['a missing file', undefined, /^docs\/openapi\.yaml: cannot be read \(ENOENT\); it is the API reference GET \/openapi\.json serves\.$/],
  ])('is refused with the file and the problem: %s', (_, text, message) => {
    expect(load(text)).toThrow(message);
  });

  it('reads the real document without complaint', () => {
    expect(load(good)()).toEqual(DOC);
  });

  describe('at start', () => {
    // A copy of what `npm start` runs, beside its own docs/, so the real document stays as it is.
    let copy: string;
    const children = new Set<ChildProcess>();

    const start = (): RelayProcess => {
      const data = fs.mkdtempSync(path.join(dir, 'data-'));
      const child = spawn(process.execPath, [path.join(copy, 'dist', 'main.js')], {
        cwd: dir,
        env: relayEnv({ RELAY_DATA_DIR: data, RELAY_HTTP_PORT: '0', RELAY_SMTP_PORT: '0' }),
        stdio: ['ignore', 'pipe', 'pipe'],
      });
      children.add(child);
      let stdout = '';
      let stderr = '';
      child.stdout!.setEncoding('utf8').on('data', (chunk: string) => (stdout += chunk));
      child.stderr!.setEncoding('utf8').on('data', (chunk: string) => (stderr += chunk));
      const exited = new Promise<{ code: number | null; signal: NodeJS.Signals | null }>((resolve) => child.once('exit', (code, signal) => resolve({ code, signal })));
      void exited.then(() => children.delete(child));
      return { child, output: () => ({ stdout, stderr }), exited };
    };

    beforeAll(() => {
      buildDist();
      copy = fs.mkdtempSync(path.join(dir, 'relay-'));
      fs.cpSync(path.join(ROOT, 'dist'), path.join(copy, 'dist'), { recursive: true });
      fs.copyFileSync(path.join(ROOT, 'package.json'), path.join(copy, 'package.json'));
      for (const shared of ['node_modules', 'templates', 'console']) fs.symlinkSync(path.join(ROOT, shared), path.join(copy, shared));
      fs.mkdirSync(path.join(copy, 'docs'));
      fs.writeFileSync(path.join(copy, 'docs', 'openapi.yaml'), good);
    }, 240_000);

    afterAll(() => {
      for (const child of children) child.kill('SIGKILL');
    });

    it('serves the document from the build, and refuses to start with a broken one, saying which file and what is wrong', async () => {
      const relay = start();
      await waitForOutput(relay, BANNER_END, 60_000);
      const { http } = bannerPorts(relay.output().stdout);
      const res = await fetch(`http://127.0.0.1:${http}/openapi.json`);
      expect(res.status).toBe(200);
      expect(await res.json()).toEqual(DOC);
      expect((await stopRelayProcess(relay)).code).toBe(0);

      fs.writeFileSync(path.join(copy, 'docs', 'openapi.yaml'), good.replace('openapi: 3.1.0', 'openapi: 3.0.3'));
      const broken = start();
      // A relay that starts anyway prints its banner: fail at once rather than wait for it to exit.
      const started = waitForOutput(broken, BANNER_END, 60_000).then(
        () => ({ code: 'started' }),
        () => new Promise<never>(() => undefined),
      );
      expect((await Promise.race([broken.exited, started])).code).toBe(1);
      expect(broken.output().stderr).toContain('incident-relay: failed to start: docs/openapi.yaml: "openapi" must be 3.1.x, not "3.0.3".\n');
      expect(broken.output().stdout).not.toContain('incident-relay listening');
    }, 120_000);
  });
});
