/**
 * Regressions for "never a secret, never content": no private key is
 * committed outside test/, the audit log refuses content and secret fields,
 * and the operational log redacts them.
 */
import { execFileSync } from 'node:child_process';
import fs from 'node:fs';
import path from 'node:path';
import { Writable } from 'node:stream';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { createLogger } from '../../src/logger.js';
import type { Store } from '../../src/store/index.js';
import { ROOT } from '../helpers/build.js';
import { BACKENDS, openTestStore } from '../helpers/relay.js';

const PRIVATE_KEY_MARKERS = [
  'BEGIN PGP PRIVATE KEY BLOCK',
  'BEGIN RSA PRIVATE KEY',
  'BEGIN PRIVATE KEY',
  'BEGIN EC PRIVATE KEY',
  'BEGIN ENCRYPTED PRIVATE KEY',
  'BEGIN OPENSSH PRIVATE KEY',
];

// Tracked files plus the untracked ones git would pick up on the next
// `git add`, so a key is caught before it is committed, not after.
function repositoryFiles(): string[] {
  const out = execFileSync('git', ['ls-files', '-z', '--cached', '--others', '--exclude-standard'], { cwd: ROOT, encoding: 'utf8', maxBuffer: 64 * 1024 * 1024 });
  return [...new Set(out.split('\0').filter((f) => f !== ''))];
}

describe('no private key in the repository outside test/', () => {
  const files = repositoryFiles();

  it('finds the files to scan', () => {
    expect(files).toContain('package.json');
    expect(files).toContain('src/main.ts');
  });

  it.each(PRIVATE_KEY_MARKERS)('no file outside test/ contains "%s"', (marker) => {
    const offenders = files
      .filter((file) => !file.startsWith('test/'))
      .filter((file) => {
        const full = path.join(ROOT, file);
        // Tracked-but-deleted files are listed too; symlinks are not followed.
        if (!fs.existsSync(full) || !fs.lstatSync(full).isFile()) return false;
        return fs.readFileSync(full).includes(marker);
      });
    expect(offenders, `remove the key material and rotate the key: ${offenders.join(', ')}`).toEqual([]);
  });

  it('keys.example holds one public key block per .asc file', () => {
    const dir = path.join(ROOT, 'keys.example');
    const ascs = fs.readdirSync(dir).filter((name) => name.endsWith('.asc'));
    expect(ascs.length).toBeGreaterThan(0);
    for (const name of ascs) {
      const text = fs.readFileSync(path.join(dir, name), 'utf8');
      expect(text.match(/^-----BEGIN PGP [A-Z ]+-----$/gm), name).toEqual(['-----BEGIN PGP PUBLIC KEY BLOCK-----']);
    }
  });
});

describe('the audit log refuses content and secrets', () => {
  const forbidden: Array<[string, Record<string, unknown>]> = [
    ['body', { body: 'x' }],
    ['text', { text: 'x' }],
    ['html', { html: '<p>x</p>' }],
    ['subject', { subject: 'Customer data in S3 bucket' }],
    ['topic', { topic: 'x' }],
    ['content', { content: 'eA==' }],
    ['token', { token: 'x' }],
    ['password', { password: 'x' }],
    ['passphrase', { passphrase: 'x' }],
    ['armored', { armored: '-----BEGIN PGP PUBLIC KEY BLOCK-----' }],
    ['publicKey', { publicKey: 'x' }],
    ['privateKey', { privateKey: 'x' }],
    ['case-insensitive', { Body: 'x' }],
    ['nested', { message: { recipients: 2, body: 'x' } }],
    ['inside an array', { attachments: [{ filename: 'a.txt', content: 'eA==' }] }],
  ];

  describe.each(BACKENDS)('on %s', (backend) => {
    let store: Store;
    beforeAll(async () => {
      store = await openTestStore(backend, () => new Date('2026-11-22T09:00:00Z'));
    });
    afterAll(async () => {
      await store?.close();
    });

    it.each(forbidden)('%s', async (_name, data) => {
      await store.audit.append({ type: 'test.before', actor: null, outcome: 'ok', data: { n: 1 } });
      const events = (await store.audit.verify()).events;
      // Refused whether append throws at once or rejects: either way nothing is written.
      await expect((async () => store.audit.append({ type: 'email.accepted', actor: 'ic@corp.example', outcome: 'ok', data }))()).rejects.toThrow(/audit data may not carry/);
      // The refused event left no trace and the chain still holds.
      expect(await store.audit.verify()).toMatchObject({ ok: true, events });
    });

    it('accepts lengths and hashes in their place', async () => {
      const event = await store.audit.append({ type: 'sms.refused', actor: 'ic@corp.example', outcome: 'refused', data: { bodyLength: 42, bodySha256: 'ab'.repeat(32) } });
      expect(event.data).toEqual({ bodyLength: 42, bodySha256: 'ab'.repeat(32) });
      const stored = await store.sql.get<{ data: string }>('SELECT data FROM audit_events WHERE seq = ?', [event.seq]);
      expect(JSON.parse(stored!.data)).toEqual({ bodyLength: 42, bodySha256: 'ab'.repeat(32) });
    });
  });
});

describe('the operational log redacts secrets and content', () => {
  function capture(): { stream: Writable; text: () => string } {
    let written = '';
    const stream = new Writable({
      write(chunk: Buffer, _encoding, callback) {
        written += chunk.toString('utf8');
        callback();
      },
    });
    return { stream, text: () => written };
  }

  it('top level, one level down, request headers and HTTP client errors', () => {
    const { stream, text } = capture();
    const logger = createLogger('info', stream);
    const clientError = Object.assign(new Error('Request failed with status code 401'), {
      config: { headers: { Authorization: 'Basic SECRET-twilio-basic' } },
    });
    logger.info({ token: 'SECRET-top-token', nested: { token: 'SECRET-nested-token', password: 'SECRET-pw' } }, 'tokens');
    logger.info({ body: 'SECRET-body', subject: 'SECRET-subject', text: 'SECRET-text', html: 'SECRET-html', passphrase: 'SECRET-pass' }, 'content');
    logger.info({ req: { method: 'GET', headers: { authorization: 'Bearer SECRET-header', cookie: 'SECRET-cookie' } } }, 'request');
    logger.warn({ err: clientError }, 'upstream refused');
    logger.info({ email: { to: 2, subject: 'SECRET-nested-subject' } }, 'nested content');
    const out = text();
    expect(out).not.toMatch(/SECRET-/);
    expect(out).toContain('[redacted]');
    // What is safe to log still is.
    expect(out).toContain('"method":"GET"');
    expect(out).toContain('Request failed with status code 401');
  });

  const FIELDS = ['token', 'password', 'passphrase', 'authorization', 'Authorization', 'body', 'subject', 'text', 'html'] as const;
  // Every field holding a secret value unique to where it was put, so a leak names its place.
  const secrets = (where: string): Record<string, string> => Object.fromEntries(FIELDS.map((f) => [f, `SECRET-${where}-${f}`]));

  /** Logs through the real logger into a string and returns the lines written. */
  function logged(write: (logger: ReturnType<typeof createLogger>) => void): string {
    const { stream, text } = capture();
    write(createLogger('debug', stream));
    return text();
  }

  it.each<[string, (logger: ReturnType<typeof createLogger>) => void]>([
    ['top level', (l) => l.info(secrets('top'), 'm')],
    ['one level down', (l) => l.info({ email: secrets('one') }, 'm')],
    ['two levels down, inside an array', (l) => l.info({ batch: [{ message: secrets('two') }] }, 'm')],
    ['as fields of err', (l) => l.error({ err: Object.assign(new Error('failed'), secrets('err')) }, 'm')],
    ['in err.config.headers (an HTTP client error)', (l) => l.error({ err: Object.assign(new Error('failed'), { config: { headers: secrets('config'), auth: { password: 'SECRET-basic' } } }) }, 'm')],
    ['in err.response.config and err.response.request (axios with a response)', (l) =>
      l.error({ err: Object.assign(new Error('failed'), { response: { status: 401, config: { headers: secrets('rc') }, request: { _header: 'Authorization: Bearer SECRET-raw-header' } } }) }, 'm')],
    ['in a plain-object err.cause', (l) => l.error({ err: new Error('failed', { cause: secrets('cause') }) }, 'm')],
    ['in an err.cause assigned after construction (enumerable)', (l) => l.error({ err: Object.assign(new Error('failed'), { cause: { request: { headers: secrets('late-cause') } } }) }, 'm')],
    ['in an Error cause with a nested error field', (l) => l.error({ err: new Error('failed', { cause: Object.assign(new Error('inner'), { detail: secrets('inner') }) }) }, 'm')],
    ['an Error passed as the first argument', (l) => l.error(Object.assign(new Error('failed'), secrets('first'), { original: { config: { headers: secrets('orig') } } }), 'm')],
    ['an Error under another key', (l) => l.warn({ error: Object.assign(new Error('failed'), { config: { headers: secrets('error-key') } }) }, 'm')],
    // Bindings skip formatters.log; pino's path redaction covers them at the top level and one down.
    ['in child bindings', (l) => l.child({ component: 'x', token: 'SECRET-child-token', passphrase: 'SECRET-child-pp', slack: { authorization: 'SECRET-child-auth' } }).info('m')],
  ])('%s: no secret value is written', (_where, write) => {
    const out = logged(write);
    expect(out).not.toContain('SECRET-');
    // The line is still written, whole.
    expect(JSON.parse(out)).toMatchObject({ msg: 'm' });
  });

  it('keeps what is safe to log: error type, message and stack, status, other fields', () => {
    const out = logged((l) => l.error({ err: Object.assign(new TypeError('boom'), { code: 'E_X', response: { status: 503 } }), deliveryId: 'd-1' }, 'upstream failed'));
    const line = JSON.parse(out) as { err: { type: string; message: string; stack: string; code: string; response: { status: number } }; deliveryId: string; msg: string };
    expect(line.err).toMatchObject({ type: 'TypeError', message: 'boom', code: 'E_X', response: { status: 503 } });
    expect(line.err.stack).toContain('TypeError: boom');
    expect(line).toMatchObject({ deliveryId: 'd-1', msg: 'upstream failed' });
  });

  it('survives cycles and throwing getters', () => {
    const cyclic: Record<string, unknown> = { token: 'SECRET-cyclic' };
    cyclic['self'] = cyclic;
    const trap = Object.defineProperty({}, 'boom', {
      enumerable: true,
      get: () => {
        throw new Error('getter');
      },
    });
    const out = logged((l) => l.info({ cyclic, trap }, 'm'));
    expect(out).not.toContain('SECRET-');
    expect(out).toContain('[Circular]');
    expect(out).toContain('"boom":"[unreadable]"');
  });
});
