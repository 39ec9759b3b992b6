/**
 * Counsel checks the relay's signature without an account (issue 12 §8), as
 * the README tells them to: the built relay is started as a new user would,
 * its banner gives the relay key fingerprint; GET /v1/relay-key (and the
 * well-known path) answer without a token; every encrypted mail names that
 * fingerprint in its outer `OpenPGP: id=` header; and gpg, holding only
 * counsel's secret key and the key fetched without a token, decrypts the
 * mail and verifies the signature as made by that key.
 */
import fs from 'node:fs';
import path from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { buildDist } from '../helpers/build.js';
import { createGpgHome, type GeneratedKey, type GpgHome } from '../helpers/gpg.js';
import { armoredPartOf, decryptAs, headerLines } from '../helpers/pgp-mime.js';
import { BANNER_END, bannerPorts, killRelayProcesses, relayEnv, startRelayProcess, stopRelayProcess, tempDirs, waitForOutput, type RelayProcess } from '../helpers/process.js';

const temp = tempDirs();
const TOKEN = /Bootstrap admin token[^\n]*\n\s+(\S+)\n/;

let keyring: GpgHome;
let counsel: GeneratedKey;
let relay: RelayProcess;
let dataDir: string;
let base: string;
let bannerFingerprint: string;
let admin: string;

async function api(method: string, route: string, token: string | undefined, body?: unknown): Promise<Response> {
  return fetch(`${base}${route}`, {
    method,
    headers: { ...(token ? { Authorization: `Bearer ${token}` } : {}), ...(body !== undefined ? { 'Content-Type': 'application/json' } : {}) },
    ...(body !== undefined ? { body: JSON.stringify(body) } : {}),
  });
}

beforeAll(async () => {
  buildDist();
  keyring = await createGpgHome();
  counsel = await keyring.generateKey('counsel@lawfirm.example', 'Outside Counsel');
  dataDir = path.join(temp.make('relay-key-e2e-'), 'data');
  relay = startRelayProcess(relayEnv({ RELAY_DATA_DIR: dataDir, RELAY_HTTP_PORT: '0', RELAY_SMTP_PORT: '0', RELAY_INTERNAL_DOMAINS: 'corp.example' }), temp.make('relay-key-cwd-'));
  await waitForOutput(relay, BANNER_END, 60_000);
  const stdout = relay.output().stdout;
  base = `http://127.0.0.1:${bannerPorts(stdout).http}`;
  bannerFingerprint = /relay key: ([0-9A-F]{40})\n/.exec(stdout)![1]!;
  admin = TOKEN.exec(stdout)![1]!;
}, 240_000);

afterAll(async () => {
  if (relay) await stopRelayProcess(relay).catch(() => killRelayProcesses());
  await keyring?.cleanup();
  temp.cleanup();
});

describe('the relay key, for recipients without an account', () => {
  it('is served without a token: armored text, JSON on request, and at the well-known path', async () => {
    const text = await api('GET', '/v1/relay-key', undefined);
    expect(text.status).toBe(200);
    expect(text.headers.get('content-type')).toMatch(/^text\/plain/);
    const armored = await text.text();
    expect(armored).toMatch(/^-----BEGIN PGP PUBLIC KEY BLOCK-----/);
    expect(armored).not.toMatch(/PRIVATE/);

    const json = await fetch(`${base}/v1/relay-key`, { headers: { Accept: 'application/json' } });
    expect(await json.json()).toEqual({ fingerprint: bannerFingerprint, publicKey: armored });

    const wellKnown = await fetch(`${base}/.well-known/incident-relay/relay-key.asc`);
    expect(wellKnown.status).toBe(200);
    expect(wellKnown.headers.get('content-type')).toMatch(/^application\/pgp-keys/);
    expect(await wellKnown.text()).toBe(armored);

    // gpg computes the same fingerprint the banner printed: what counsel compares.
    const shown = await keyring.run(['--with-colons', '--show-keys'], armored);
    expect(/^fpr:+([0-9A-F]{40}):/m.exec(shown.stdout.toString('utf8'))![1]).toBe(bannerFingerprint);
    // Only reading the key is open: every other route still wants a token.
    expect((await api('GET', '/v1/incidents', undefined)).status).toBe(401);
    expect((await api('POST', '/v1/relay-key', undefined, {})).status).toBe(405);
  });

  it('is named by fingerprint in every encrypted mail, and verifies its signature in gpg', async () => {
    const ic = ((await (await api('POST', '/v1/tokens', admin, { email: 'ic@corp.example', role: 'responder' })).json()) as { token: string }).token;
    const codename = ((await (await api('POST', '/v1/incidents', ic, {})).json()) as { codename: string }).codename;
    // Rule security-team: nothing goes out before a security member is on the roster.
    expect((await api('PUT', `/v1/incidents/${codename}/roster/sec@corp.example`, ic, { name: 'Sec', role: 'security' })).status).toBe(201);
    expect((await api('PUT', `/v1/incidents/${codename}/roster/counsel@lawfirm.example`, ic, { name: 'Outside Counsel', role: 'external', publicKey: counsel.armoredPublic })).status).toBe(201);
    const sent = await api('POST', `/v1/incidents/${codename}/emails`, ic, { to: ['counsel@lawfirm.example'], subject: 'Briefing', text: 'Call at 3pm.' });
    expect(sent.status).toBe(202);

    const outbox = path.join(dataDir, 'outbox');
    const deadline = Date.now() + 20_000;
    let files: string[] = [];
    while (files.length === 0 && Date.now() < deadline) {
      files = fs.existsSync(outbox) ? fs.readdirSync(outbox).filter((f) => f.endsWith('.eml')) : [];
      if (files.length === 0) await new Promise((r) => setTimeout(r, 100));
    }
    expect(files).toHaveLength(1);
    const raw = fs.readFileSync(path.join(outbox, files[0]!));
    const outer = headerLines(raw);
    expect(outer.filter((h) => /^openpgp:/i.test(h))).toEqual([`OpenPGP: id=${bannerFingerprint}`]);

    const fetched = await (await api('GET', '/v1/relay-key', undefined)).text();
    const result = await decryptAs(keyring, counsel.fingerprint, await armoredPartOf(raw), fetched);
    expect(result.plaintext.toString('utf8')).toContain('Call at 3pm.');
    expect(result.goodSignatureFrom).toBe(bannerFingerprint);
  });
});
