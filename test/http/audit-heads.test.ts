/**
 * GET /v1/audit/heads (issue 10 §17): the signed checkpoints as JSON, and as
 * clearsigned texts that the real gpg binary verifies against the relay's
 * public key from GET /v1/relay-key, so a copy kept elsewhere proves the
 * history without trusting the relay.
 */
import fs from 'node:fs';
import path from 'node:path';
import { afterAll, afterEach, beforeAll, describe, expect, it } from 'vitest';
import { AuditVerifier, createCheckpoint } from '../../src/services/audit-checkpoints.js';
import type { AuditCheckpoint } from '../../src/store/checkpoints.js';
import { createGpgHome, type GpgHome } from '../helpers/gpg.js';
import { BACKENDS, createTestRelay, type TestRelay } from '../helpers/relay.js';

const auth = (token: string) => ({ Authorization: `Bearer ${token}` });

let gpg: GpgHome;
beforeAll(async () => {
  gpg = await createGpgHome();
}, 60_000);
afterAll(async () => {
  await gpg.cleanup();
});

let relay: TestRelay | undefined;
afterEach(async () => {
  await relay?.ctx.store.close();
  relay = undefined;
});

/** A relay with two signed checkpoints (5 minutes apart). */
async function withTwoCheckpoints(backend: (typeof BACKENDS)[number]): Promise<{ r: TestRelay; checkpoints: AuditCheckpoint[] }> {
  relay = await createTestRelay({}, { backend });
  const r = relay;
  const deps = { store: r.ctx.store, relayKey: r.ctx.relayKey, now: r.clock.now, logger: r.ctx.logger };
  const verifier = new AuditVerifier(r.ctx);
  const checkpoints: AuditCheckpoint[] = [];
  for (let i = 0; i < 2; i++) {
    await r.ctx.store.audit.append({ type: 'test.event', actor: null, outcome: 'ok', data: { i } });
    const outcome = await createCheckpoint(deps, verifier);
    if (!('signed' in outcome)) throw new Error('no checkpoint');
    checkpoints.push(outcome.signed);
    r.clock.advance(5 * 60_000);
  }
  return { r, checkpoints };
}

/** Runs `gpg --verify` on `text`; the exit code and the fingerprint of a good signature. */
async function gpgVerify(text: string): Promise<{ code: number | null; validSig: string | undefined; status: string }> {
  const file = path.join(gpg.dir, `head-${Math.random().toString(36).slice(2)}.asc`);
  fs.writeFileSync(file, text);
  const result = await gpg.run(['--status-fd', '2', '--verify', file], undefined, true);
  const validSig = /^\[GNUPG:\] VALIDSIG (?:\S+ ){9}([0-9A-F]{40})/m.exec(result.stderr)?.[1];
  return { code: result.code, validSig, status: result.stderr };
}

describe.each(BACKENDS)('GET /v1/audit/heads (%s)', (backend) => {
  it('lists the signed checkpoints, oldest first, paged by cursor', async () => {
    const { r, checkpoints } = await withTwoCheckpoints(backend);
    const all = await r.request.get('/v1/audit/heads').set(auth(r.admin));
    expect(all.status).toBe(200);
    expect(all.body).toEqual({ checkpoints });
    expect(Object.keys(all.body.checkpoints[0]).sort()).toEqual(['at', 'fingerprint', 'hash', 'seq', 'signature']);
    expect(checkpoints.map((c) => c.seq)).toEqual([1, 3]);

    const first = await r.request.get('/v1/audit/heads?limit=1').set(auth(r.admin));
    expect(first.body).toEqual({ checkpoints: [checkpoints[0]], next: '1' });
    const second = await r.request.get(`/v1/audit/heads?limit=1&cursor=${first.body.next}`).set(auth(r.admin));
    expect(second.body).toEqual({ checkpoints: [checkpoints[1]] });
  });

  it('gives clearsigned texts that plain gpg --verify accepts with the relay key, and refuses once edited', async () => {
    const { r, checkpoints } = await withTwoCheckpoints(backend);
    const key = await r.request.get('/v1/relay-key').set(auth(r.admin));
    await gpg.importKey(key.text);

    const res = await r.request.get('/v1/audit/heads?format=text').set(auth(r.admin));
    expect(res.status).toBe(200);
    expect(res.headers['content-type']).toMatch(/^text\/plain/);
    const blocks = res.text.split(/(?=-----BEGIN PGP SIGNED MESSAGE-----)/);
    expect(blocks).toHaveLength(2);
    for (const [i, block] of blocks.entries()) {
      const checkpoint = checkpoints[i]!;
      expect(block).toContain(
        `\n\nincident-relay audit checkpoint\nrelay-key: ${r.ctx.relayKey.fingerprint}\nseq: ${checkpoint.seq}\nhash: ${checkpoint.hash}\nat: ${checkpoint.at}\n-----BEGIN PGP SIGNATURE-----\n`,
      );
      const good = await gpgVerify(block);
      expect(good.code).toBe(0);
      expect(good.validSig).toBe(r.ctx.relayKey.fingerprint);
      // One digit of the hash changed: gpg says BAD.
      const edited = block.replace(`hash: ${checkpoint.hash}`, `hash: ${checkpoint.hash.slice(0, -1)}${checkpoint.hash.endsWith('0') ? '1' : '0'}`);
      const bad = await gpgVerify(edited);
      expect(bad.code).not.toBe(0);
      expect(bad.status).toMatch(/^\[GNUPG:\] BADSIG /m);
    }

    // Paged like the JSON, with the next cursor in a header.
    const page = await r.request.get('/v1/audit/heads?format=text&limit=1').set(auth(r.admin));
    expect(page.headers['x-next-cursor']).toBe('1');
    expect(page.text).toBe(blocks[0]!.replace(/\n$/, ''));
  });
});

describe('GET /v1/audit/heads refusals', () => {
  it('is for admins, and refuses a bad query with invalid_request', async () => {
    relay = await createTestRelay();
    const r = relay;
    const ic = await r.tokenFor('ic@corp.example');
    expect((await r.request.get('/v1/audit/heads').set(auth(ic))).status).toBe(403);
    for (const query of ['format=xml', 'limit=0', 'limit=1001', 'cursor=abc', 'cursor=0', 'other=1']) {
      const res = await r.request.get(`/v1/audit/heads?${query}`).set(auth(r.admin));
      expect(res.status, query).toBe(400);
      expect(res.body.error.code).toBe('invalid_request');
    }
    expect((await r.request.post('/v1/audit/heads').set(auth(r.admin))).status).toBe(405);
    expect((await r.request.get('/v1/audit/heads').set(auth(r.admin))).body).toEqual({ checkpoints: [] });
  });
});
