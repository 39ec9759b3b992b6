/**
 * The console over HTTP (supertest against the real app, on both store
 * backends): the security headers on every answer, the session cookie's
 * attributes, the Origin check, sign-in back-off and its summary, session
 * ends, the same permissions as the API (404 for non-members, a scribe
 * reads but does not edit), forms that do what the API does, and refusals
 * rendered with the API's code and message.
 */
import fs from 'node:fs';
import type { Response } from 'supertest';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { SESSION_IDLE_MS } from '../../src/console/sessions.js';
import { SIGNIN_REFUSED, SIGNIN_SUMMARY_INTERVAL_MS } from '../../src/console/signin.js';
import { createGpgHome, type GeneratedKey, type GpgHome } from '../helpers/gpg.js';
import { BACKENDS, createTestRelay, type TestRelay } from '../helpers/relay.js';

const HOST = 'relay.test:8080';
const ORIGIN = `http://${HOST}`;

let gpg: GpgHome;
let counselKey: GeneratedKey;
beforeAll(async () => {
  gpg = await createGpgHome();
  counselKey = await gpg.generateKey('counsel@lawfirm.example', 'Outside Counsel');
}, 120_000);
afterAll(async () => {
  await gpg.cleanup();
});

/** The value of the session cookie a sign-in answer set. */
function sessionCookieOf(res: Response): string {
  const header = ([] as string[]).concat(res.headers['set-cookie'] ?? []).find((c) => c.startsWith('relay_console='));
  if (!header) throw new Error(`no session cookie in ${res.status} ${JSON.stringify(res.headers)}`);
  return header.split(';')[0]!;
}

function expectSecurityHeaders(res: Response): void {
  // Spelled out, not the constant: a weakened constant must fail here.
  expect(res.headers['content-security-policy']).toBe(
    "default-src 'none'; script-src 'self'; style-src 'self'; img-src 'self'; connect-src 'self'; form-action 'self'; frame-ancestors 'none'; base-uri 'none'",
  );
  expect(res.headers['referrer-policy']).toBe('no-referrer');
  expect(res.headers['x-frame-options']).toBe('DENY');
  expect(res.headers['cache-control']).toBe('no-store');
  expect(res.headers['x-content-type-options']).toBe('nosniff');
}

function titleOf(body: string): string {
  return /<title>([^<]*)<\/title>/.exec(body)?.[1] ?? '';
}

describe.each(BACKENDS)('the console on %s', (backend) => {
  let relay: TestRelay;
  let icToken: string;

  beforeAll(async () => {
    relay = await createTestRelay({}, { backend });
    icToken = await relay.tokenFor('ic@corp.example');
  });
  afterAll(async () => {
    await relay.ctx.store.close();
  });

  const get = (path: string, cookie?: string) => {
    const r = relay.request.get(path).set('Host', HOST);
    return cookie ? r.set('Cookie', cookie) : r;
  };
  const post = (path: string, cookie?: string, origin: string | null = ORIGIN) => {
    let r = relay.request.post(path).set('Host', HOST);
    if (origin !== null) r = r.set('Origin', origin);
    return cookie ? r.set('Cookie', cookie) : r;
  };
  const signIn = async (token: string): Promise<string> => {
    const res = await post('/console/sign-in').type('form').send({ token });
    expect(res.status, res.text).toBe(303);
    return sessionCookieOf(res);
  };
  // The `via` of each audit event of `type`, oldest first.
  const viaOf = async (type: string) => (await relay.ctx.store.sql.all<{ data: string }>('SELECT data FROM audit_events WHERE type = ? ORDER BY seq', [type])).map((e) => (JSON.parse(e.data) as { via?: unknown }).via);
  const declare = async (cookie: string): Promise<string> => {
    const res = await post('/console/incidents', cookie).type('form').send({ codename: '' });
    expect(res.status, res.text).toBe(303);
    return decodeURIComponent(/^\/console\/incidents\/([^/]+)$/.exec(res.headers['location'] as string)![1]!);
  };
  const auditTypes = async (prefix: string): Promise<string[]> =>
    (await relay.ctx.store.sql.all<{ type: string }>('SELECT type FROM audit_events ORDER BY seq')).map((e) => e.type).filter((t) => t.startsWith(prefix));

  describe('headers, cookie and sign-in', () => {
    it('every /console answer carries the CSP, no referrer, no framing, no caching', async () => {
      const cookie = await signIn(icToken);
      for (const res of [
        await get('/console/sign-in'),
        await get('/console/assets/console.css'),
        await get('/console/assets/console.js'),
        await get('/console/incidents'),
        await get('/console/incidents', cookie),
        await get('/console/no-such-page', cookie),
        await post('/console/incidents', cookie, 'http://evil.example').type('form').send({}),
      ]) {
        expectSecurityHeaders(res);
      }
    });

    it('serves the one script and the one stylesheet from the package, and nothing else by that route', async () => {
      const js = await get('/console/assets/console.js');
      expect(js.status).toBe(200);
      expect(js.headers['content-type']).toBe('text/javascript; charset=utf-8');
      expect(js.text).toBe(fs.readFileSync(new URL('../../console/assets/console.js', import.meta.url), 'utf8'));
      const css = await get('/console/assets/console.css');
      expect(css.headers['content-type']).toBe('text/css; charset=utf-8');
      for (const path of ['/console/assets/package.json', '/console/assets/..%2F..%2Fpackage.json', '/console/assets/console.js.map']) {
        const res = await get(path);
        expect(res.status).toBe(303);
        expect(res.text).not.toContain('"name": "incident-relay"');
      }
    });

    it('sign-in sets an HttpOnly, SameSite=Strict cookie on /console for at most 12 h, Secure only over HTTPS; the token is never echoed', async () => {
      const res = await post('/console/sign-in').type('form').send({ token: icToken });
      expect(res.status).toBe(303);
      expect(res.headers['location']).toBe('/console/incidents');
      const [cookie] = ([] as string[]).concat(res.headers['set-cookie'] ?? []);
      expect(cookie).toMatch(/^relay_console=[A-Za-z0-9_-]{43}; Path=\/console; Max-Age=43200; HttpOnly; SameSite=Strict$/);
      expect(JSON.stringify(res.headers) + res.text).not.toContain(icToken);

      // Behind a TLS proxy: X-Forwarded-Proto: https makes the cookie Secure, and the console's origin https.
      const tls = await relay.request.post('/console/sign-in').set('Host', HOST).set('X-Forwarded-Proto', 'https').set('Origin', `https://${HOST}`).type('form').send({ token: icToken });
      expect(tls.status).toBe(303);
      expect(([] as string[]).concat(tls.headers['set-cookie'] ?? [])[0]).toMatch(/; HttpOnly; SameSite=Strict; Secure$/);
      const httpOrigin = await relay.request.post('/console/sign-in').set('Host', HOST).set('X-Forwarded-Proto', 'https').set('Origin', ORIGIN).type('form').send({ token: icToken });
      expect(httpOrigin.status).toBe(403);
    });

    it('no page holds the token, in text, attributes or storage', async () => {
      const cookie = await signIn(icToken);
      const codename = await declare(cookie);
      for (const path of ['/console/incidents', `/console/incidents/${codename}`, `/console/incidents/${codename}/audit`]) {
        const res = await get(path, cookie);
        expect(res.status).toBe(200);
        expect(res.text).not.toContain(icToken);
        expect(res.text).not.toContain(icToken.slice(20));
      }
    });

    it('a wrong token is refused with one message, counted (metric) rather than audited, and summed up once a minute', async () => {
      const r = await createTestRelay({}, { backend });
      try {
        const attempt = (token: string) => r.request.post('/console/sign-in').set('Host', HOST).set('Origin', ORIGIN).type('form').send({ token });
        const bad = await attempt('ir_0123456789abcdef_wrongwrongwrongwrongwrongwrongwrongwrongwro');
        expect(bad.status).toBe(401);
        expect(bad.text).toContain(SIGNIN_REFUSED.replace(/'/g, '&#39;'));
        expect(bad.text).toContain('<code>unauthenticated</code>');
        expect(bad.headers['set-cookie']).toBeUndefined();
        expect((await attempt('')).status).toBe(401);
        expect((await attempt('not a token at all')).status).toBe(401);
        const events = async () => (await r.ctx.store.sql.all<{ type: string; data: string }>("SELECT type, data FROM audit_events WHERE type LIKE 'console.%'")).map((e) => ({ type: e.type, data: JSON.parse(e.data) as Record<string, unknown> }));
        expect(await events()).toEqual([]);
        expect(await r.ctx.metrics.registry.getSingleMetricAsString('relay_console_signin_failures_total')).toContain('relay_console_signin_failures_total{reason="unknown_token"} 1');
        expect(await r.ctx.metrics.registry.getSingleMetricAsString('relay_console_signin_failures_total')).toContain('relay_console_signin_failures_total{reason="malformed"} 2');

        // Within the minute, no summary; the first console request after it writes one, with exact counts.
        await r.request.get('/console/sign-in').set('Host', HOST);
        expect(await events()).toEqual([]);
        r.clock.advance(SIGNIN_SUMMARY_INTERVAL_MS);
        await r.request.get('/console/sign-in').set('Host', HOST);
        await r.request.get('/console/sign-in').set('Host', HOST);
        const summary = await events();
        expect(summary).toHaveLength(1);
        expect(summary[0]!.type).toBe('console.signin_failures');
        expect(summary[0]!.data).toMatchObject({ via: 'console', failures: 3, reasons: { unknown_token: 1, malformed: 2 }, sourcesOmitted: 0 });
        expect(summary[0]!.data['sources']).toEqual([{ ip: expect.stringMatching(/^127\.0\.0\.1$|^::1::\/64$|^0:0:0:0::\/64$/), failures: 3 }]);
        expect(JSON.stringify(summary)).not.toContain('wrongwrong');
      } finally {
        await r.ctx.store.close();
      }
    });

    it('backs off like SMTP AUTH: after 5 failures for one token id even the right token waits, without being checked', async () => {
      const r = await createTestRelay({}, { backend });
      try {
        const token = await r.tokenFor('ic@corp.example');
        const id = /^ir_([a-z0-9]{16})_/.exec(token)![1]!;
        const attempt = (t: string) => r.request.post('/console/sign-in').set('Host', HOST).set('Origin', ORIGIN).type('form').send({ token: t });
        for (let i = 0; i < 6; i++) expect((await attempt(`ir_${id}_guess${String(i).padStart(38, '0')}`)).status).toBe(401);
        const held = await attempt(token);
        expect(held.status).toBe(429);
        expect(held.headers['retry-after']).toBe('2');
        expect(held.text).toContain('<code>rate_limited</code>');
        expect(held.headers['set-cookie']).toBeUndefined();
        r.clock.advance(2000);
        expect((await attempt(token)).status).toBe(303);
      } finally {
        await r.ctx.store.close();
      }
    });
  });

  describe('sessions', () => {
    it('pages need a session: none, a forged one, a signed-out one and a revoked token are all sent to sign-in', async () => {
      const noCookie = await get('/console/incidents');
      expect(noCookie.status).toBe(303);
      expect(noCookie.headers['location']).toBe('/console/sign-in?notice=required');
      expect((await get('/console/incidents', `relay_console=${'A'.repeat(43)}`)).headers['location']).toBe('/console/sign-in?notice=required');

      const cookie = await signIn(icToken);
      expect((await get('/console/incidents', cookie)).status).toBe(200);
      const out = await post('/console/sign-out', cookie);
      expect(out.status).toBe(303);
      expect(out.headers['location']).toBe('/console/sign-in?notice=signed_out');
      expect(([] as string[]).concat(out.headers['set-cookie'] ?? [])[0]).toBe('relay_console=; Path=/console; Max-Age=0; HttpOnly; SameSite=Strict');
      const after = await get('/console/incidents', cookie);
      expect(after.status).toBe(303);
      expect(after.headers['location']).toBe('/console/sign-in?notice=required');
      expect(await auditTypes('console.')).toContain('console.signed_out');

      const temp = await relay.tokenFor('temp@corp.example');
      const tempCookie = await signIn(temp);
      const { id } = (await relay.ctx.store.tokens.get(/^ir_([a-z0-9]{16})_/.exec(temp)![1]!))!;
      await relay.ctx.store.tokens.revoke(id, relay.clock.now());
      const revoked = await get('/console/incidents', tempCookie);
      expect(revoked.headers['location']).toBe('/console/sign-in?notice=token_revoked');
      expect((await get('/console/sign-in?notice=token_revoked')).text).toContain('has been revoked');
      // A form posted with an ended session is answered 401 with the sign-in page, not a redirect that loses the reason.
      const late = await post('/console/incidents', tempCookie).type('form').send({});
      expect(late.status).toBe(401);
      expect(late.text).toContain('Sign in to continue.');
    });

    it('a token used only through the console shows when it was last used: at sign-in, and as its session is used', async () => {
      const token = await relay.tokenFor('console-only@corp.example');
      const id = /^ir_([a-z0-9]{16})_/.exec(token)![1]!;
      const lastUsed = async () => ((await relay.request.get('/v1/tokens').set('Authorization', `Bearer ${relay.admin}`)).body.tokens as Array<{ id: string; lastUsedAt: string | null }>).find((t) => t.id === id)!.lastUsedAt;
      expect(await lastUsed()).toBeNull();
      const cookie = await signIn(token);
      const signedInAt = relay.clock.now().toISOString();
      expect(await lastUsed()).toBe(signedInAt);
      // Within the minute the session is not touched again, and the use is not written again (as for the API).
      relay.clock.advance(30_000);
      expect((await get('/console/incidents', cookie)).status).toBe(200);
      expect(await lastUsed()).toBe(signedInAt);
      relay.clock.advance(5 * 60_000);
      expect((await get('/console/incidents', cookie)).status).toBe(200);
      expect(await lastUsed()).toBe(relay.clock.now().toISOString());
    });

    it('a session idle for 30 minutes ends', async () => {
      const cookie = await signIn(icToken);
      relay.clock.advance(SESSION_IDLE_MS);
      expect((await get('/console/incidents', cookie)).headers['location']).toBe('/console/sign-in?notice=idle');
    });
  });

  describe('the Origin check', () => {
    it('lets through the console\'s own forms: its origin, or Origin: null (no-referrer) that the browser marks Sec-Fetch-Site: same-origin', async () => {
      const cookie = await signIn(icToken);
      expect((await post('/console/incidents', cookie, ORIGIN).type('form').send({ codename: '' })).status).toBe(303);
      expect((await post('/console/incidents', cookie, 'null').set('Sec-Fetch-Site', 'same-origin').type('form').send({ codename: '' })).status).toBe(303);
    });

    it('refuses a state-changing request with a foreign or missing Origin with 403 and a page that says why; nothing changes', async () => {
      const cookie = await signIn(icToken);
      const before = (await relay.ctx.store.incidents.list()).length;
      const cases: Array<[string | null, string | undefined, string]> = [
        ['http://evil.example', undefined, 'came from another origin'],
        ['http://relay.test:8081', undefined, 'came from another origin'],
        ['https://relay.test:8080', undefined, 'came from another origin'],
        // A client that is not a browser may claim same-origin; the Origin still decides.
        ['http://evil.example', 'same-origin', 'came from another origin'],
        ['null', undefined, 'opaque origin'],
        ['null', 'cross-site', 'opaque origin'],
        ['null', 'same-site', 'opaque origin'],
        [null, 'same-origin', 'carried no Origin header'],
      ];
      for (const [origin, site, why] of cases) {
        let request = post('/console/incidents', cookie, origin);
        if (site !== undefined) request = request.set('Sec-Fetch-Site', site);
        const res = await request.type('form').send({ codename: '' });
        expect(res.status, `${origin} ${site}`).toBe(403);
        expect(res.text).toContain('<code>forbidden</code>');
        expect(res.text).toContain('Nothing was changed.');
        expect(res.text).toContain(why);
      }
      expect((await relay.ctx.store.incidents.list()).length).toBe(before);
      // Sign-out and sign-in too: nobody can sign a browser in or out from another site.
      expect((await post('/console/sign-out', cookie, 'http://evil.example')).status).toBe(403);
      expect((await get('/console/incidents', cookie)).status).toBe(200);
      expect((await post('/console/sign-in', undefined, 'http://evil.example').type('form').send({ token: icToken })).headers['set-cookie']).toBeUndefined();
    });
  });

  describe('screens and permissions', () => {
    let cookie: string;
    let codename: string;
    beforeAll(async () => {
      cookie = await signIn(icToken);
      codename = await declare(cookie);
    });

    it('declaring leaves a one-shot notice; the title is the codename only', async () => {
      const page = await get(`/console/incidents/${codename}`, cookie);
      expect(page.status).toBe(200);
      expect(titleOf(page.text)).toBe(`${codename} · incident-relay`);
      expect(page.text).toContain(`Declared ${codename}.`);
      expect((await get(`/console/incidents/${codename}`, cookie)).text).not.toContain(`Declared ${codename}.`);
      const list = await get('/console/incidents', cookie);
      expect(titleOf(list.text)).toBe('Incidents · incident-relay');
      expect(list.text).toContain(`href="/console/incidents/${codename}"`);
    });

    it('a codename not from the word lists is refused with the API\'s code and message, and the form keeps what was typed', async () => {
      const res = await post('/console/incidents', cookie).type('form').send({ codename: 'customer-db-breach' });
      expect(res.status).toBe(400);
      expect(res.text).toContain('<code>invalid_request</code>');
      expect(res.text).toContain('Codenames are built from the relay&#39;s word lists');
      expect(res.text).toContain('value="customer-db-breach"');
      expect(titleOf(res.text)).toBe('Incidents · incident-relay');
    });

    it('adds outside counsel with a key file (multipart); the roster shows the key as usable with its fingerprint', async () => {
      const res = await post(`/console/incidents/${codename}/roster`, cookie)
        .field('email', 'counsel@lawfirm.example')
        .field('name', 'Outside Counsel')
        .field('role', 'external')
        .field('phone', '')
        .field('slackUserId', '')
        .attach('publicKey', Buffer.from(counselKey.armoredPublic), { filename: 'counsel.asc', contentType: 'application/pgp-keys' });
      expect(res.status, res.text).toBe(303);
      const page = await get(`/console/incidents/${codename}`, cookie);
      expect(page.text).toContain(`Added counsel@lawfirm.example as external. Key ${counselKey.fingerprint.slice(-16)} on file.`);
      const row = page.text.slice(page.text.indexOf('counsel@lawfirm.example</span>'));
      expect(row.slice(0, 400)).toContain('<span class="badge good">usable</span> <code>' + counselKey.fingerprint.slice(-16) + '</code>');
      expect((await relay.ctx.keys.get('counsel@lawfirm.example', (await relay.ctx.store.incidents.byCodename(codename))!.id))?.fingerprint).toBe(counselKey.fingerprint);
    });

    it('a secret key file is refused before anything changes', async () => {
      const secret = await gpg.exportSecret(counselKey.fingerprint);
      const before = await relay.ctx.store.incidents.roster((await relay.ctx.store.incidents.byCodename(codename))!.id);
      const res = await post(`/console/incidents/${codename}/roster`, cookie)
        .field('email', 'leak@lawfirm.example')
        .field('name', 'Leak')
        .field('role', 'external')
        .attach('publicKey', Buffer.from(secret), { filename: 'secret.asc', contentType: 'application/pgp-keys' });
      expect(res.status).toBe(400);
      expect(res.text).toContain('This is a PRIVATE key block; send only the public key');
      expect(res.text).toContain('value="leak@lawfirm.example"');
      expect(res.text).not.toContain('PRIVATE KEY BLOCK-----');
      expect(await relay.ctx.store.incidents.roster((await relay.ctx.store.incidents.byCodename(codename))!.id)).toEqual(before);
    });

    it('renders hostile roster values as text', async () => {
      const res = await post(`/console/incidents/${codename}/roster`, cookie)
        .field('email', 'hostile@corp.example')
        .field('name', '<script>alert(1)</script>"onmouseover="x')
        .field('role', 'security');
      expect(res.status, res.text).toBe(303);
      const page = await get(`/console/incidents/${codename}`, cookie);
      expect(page.text).not.toContain('<script>alert(1)');
      expect(page.text).toContain('&lt;script&gt;alert(1)&lt;/script&gt;&quot;onmouseover=&quot;x');
    });

    it('sends email from the compose form through the same pipeline; a missing key is refused with a link to fix it and the text kept', async () => {
      await post(`/console/incidents/${codename}/roster`, cookie).field('email', 'sec@corp.example').field('name', 'Security').field('role', 'security').field('phone', '+15555550100');
      const sent = await post(`/console/incidents/${codename}/emails`, cookie)
        .field('idempotencyKey', 'compose-1')
        .field('to', 'sec@corp.example')
        .field('subject', 'Rotate keys')
        .field('text', 'Rotate now.')
        .attach('attachments', Buffer.from('timeline'), { filename: 'timeline.txt', contentType: 'text/plain' });
      expect(sent.status, sent.text).toBe(303);
      const page = await get(`/console/incidents/${codename}`, cookie);
      expect(page.text).toContain('Email queued, not encrypted (all recipients are inside the company)');
      const emails = await relay.ctx.store.sql.all<{ id: string }>('SELECT id FROM emails');
      expect(emails).toHaveLength(1);
      // The same form again (a reload, a double click) replays the first answer: still one email.
      expect((await post(`/console/incidents/${codename}/emails`, cookie).field('idempotencyKey', 'compose-1').field('to', 'sec@corp.example').field('subject', 'Rotate keys').field('text', 'Rotate now.').attach('attachments', Buffer.from('timeline'), { filename: 'timeline.txt', contentType: 'text/plain' })).status).toBe(303);
      expect(await relay.ctx.store.sql.all('SELECT id FROM emails')).toHaveLength(1);

      // The audit log tells the console from the API: the send and a preview are `via: "console"` (a nudge: below).
      expect((await post(`/console/incidents/${codename}/emails/preview`, cookie).field('to', 'sec@corp.example').field('text', 'Rotate now.')).status).toBe(200);
      expect(await viaOf('email.decision')).toEqual(['console']);
      expect(await viaOf('email.preview')).toEqual(['console']);

      await post(`/console/incidents/${codename}/roster`, cookie).field('email', 'carol@lawfirm.example').field('name', 'Carol').field('role', 'external');
      const refused = await post(`/console/incidents/${codename}/emails`, cookie).field('to', 'carol@lawfirm.example').field('subject', 'Draft').field('text', 'Keep <this> text');
      expect(refused.status).toBe(422);
      expect(refused.text).toContain('<code>missing_public_key</code> (rule <code>encryption</code>)');
      expect(refused.text).toContain(`<a href="/console/incidents/${codename}/roster/carol%40lawfirm.example">Add a usable key for carol@lawfirm.example</a>`);
      expect(refused.text).toContain('\nKeep &lt;this&gt; text</textarea>');
      expect(refused.text).toMatch(/name="to" value="carol@lawfirm.example" checked>/);
      expect(await relay.ctx.store.sql.all('SELECT id FROM emails')).toHaveLength(1);
    });

    it('nudges everyone and shows who was skipped and why', async () => {
      const res = await post(`/console/incidents/${codename}/sms`, cookie).type('form').send({ scope: 'roster', idempotencyKey: 'nudge-1' });
      expect(res.status, res.text).toBe(303);
      const page = await get(`/console/incidents/${codename}`, cookie);
      expect(page.text).toContain('SMS nudge: 1 queued,');
      expect(await viaOf('sms.decision')).toEqual(['console']);
      expect(page.text).toMatch(/<td>sec@corp\.example<\/td><td><span class="badge good">queued<\/span><\/td>/);
      expect(page.text).toMatch(/<td>ic@corp\.example<\/td><td><span class="badge warn">skipped<\/span><\/td><td>no phone number on the roster<\/td>/);
      const none = await post(`/console/incidents/${codename}/sms`, cookie).type('form').send({ scope: 'selected' });
      expect(none.status).toBe(400);
      expect(none.text).toContain('Tick at least one member to nudge');
    });

    it('a non-member gets 404 for every page and action of the incident, and a title that does not name it', async () => {
      const outsider = await signIn(await relay.tokenFor('outsider@corp.example'));
      const before = await relay.ctx.store.sql.all('SELECT * FROM roster');
      for (const res of [
        await get(`/console/incidents/${codename}`, outsider),
        await get(`/console/incidents/${codename}/audit`, outsider),
        await get(`/console/incidents/${codename}/close`, outsider),
        await get(`/console/incidents/${codename}/roster/sec@corp.example`, outsider),
        await post(`/console/incidents/${codename}/roster`, outsider).field('email', 'x@corp.example').field('name', 'X').field('role', 'security'),
        await post(`/console/incidents/${codename}/close`, outsider),
        await post(`/console/incidents/${codename}/sms`, outsider).type('form').send({ scope: 'roster' }),
        await get('/console/incidents/no-such-codename', outsider),
      ]) {
        expect(res.status).toBe(404);
        expect(res.text).toContain('<code>not_found</code>');
        expect(titleOf(res.text)).toBe('Not found · incident-relay');
      }
      expect((await get('/console/incidents', outsider)).text).not.toContain(codename);
      expect(await relay.ctx.store.sql.all('SELECT * FROM roster')).toEqual(before);
    });

    it('a scribe reads the incident and its audit, sees no roster forms, and is refused with 403 when posting one', async () => {
      await post(`/console/incidents/${codename}/roster`, cookie).field('email', 'scribe@corp.example').field('name', 'Scribe').field('role', 'scribe');
      const scribe = await signIn(await relay.tokenFor('scribe@corp.example'));
      const page = await get(`/console/incidents/${codename}`, scribe);
      expect(page.status).toBe(200);
      expect(page.text).not.toContain('id="add-member"');
      expect(page.text).not.toContain('/roster/sec%40corp.example"');
      expect(page.text).not.toContain('Close incident');
      expect(page.text).toContain('id="compose"');
      expect((await get(`/console/incidents/${codename}/audit`, scribe)).status).toBe(200);
      const refused = await post(`/console/incidents/${codename}/roster`, scribe).field('email', 'x@corp.example').field('name', 'X').field('role', 'security');
      expect(refused.status).toBe(403);
      expect(refused.text).toContain('<code>forbidden</code>');
      expect(refused.text).toContain('Your roster role (scribe) may not do this');
      expect((await get(`/console/incidents/${codename}/close`, scribe)).status).toBe(403);
    });

    it('the audit timeline lists the incident\'s events in the order they happened; only an admin sees the chain check', async () => {
      const page = await get(`/console/incidents/${codename}/audit`, cookie);
      expect(page.status).toBe(200);
      expect(titleOf(page.text)).toBe(`${codename} · incident-relay`);
      const types = [...page.text.matchAll(/<td><code>([a-z_.]+)<\/code><\/td>/g)].map((m) => m[1]);
      expect(types[0]).toBe('incident.created');
      expect(types).toContain('email.decision');
      expect(types).toContain('sms.decision');
      expect(page.text).toContain('rules: ');
      expect(page.text).not.toContain('Rotate now.');
      expect(page.text).not.toContain('Audit chain verified');
      const admin = await signIn(relay.admin);
      // An admin off the roster reads and manages, but the sender rule is the roster's: no compose or nudge form.
      const adminIncident = await get(`/console/incidents/${codename}`, admin);
      expect(adminIncident.text).toContain('id="add-member"');
      expect(adminIncident.text).not.toContain('id="compose"');
      expect(adminIncident.text).not.toContain('id="nudge"');
      expect(adminIncident.text).toContain('<p class="card">Only members of this roster send email and nudges here.</p>');
      const adminPage = await get(`/console/incidents/${codename}/audit`, admin);
      expect(adminPage.text).toContain('Audit chain verified');
      // The same verification as GET /v1/audit/verify, with its signed checkpoints.
      const api = await relay.request.get('/v1/audit/verify').set('Authorization', `Bearer ${relay.admin}`);
      expect(adminPage.text).toContain(`${api.body.events} events, head <code>${api.body.head.slice(0, 16)}…</code>`);
      expect(adminPage.text).toContain(`Signed checkpoints: ${api.body.checkpoints.verified} of ${api.body.checkpoints.signed} hold`);
    });

    it('edits and removes a member through confirmation pages', async () => {
      const edit = await get(`/console/incidents/${codename}/roster/sec%40corp.example`, cookie);
      expect(edit.status).toBe(200);
      expect(edit.text).toContain('value="+15555550100"');
      const saved = await post(`/console/incidents/${codename}/roster/sec%40corp.example`, cookie).field('name', 'Security Lead').field('role', 'deputy').field('phone', '').field('slackUserId', '');
      expect(saved.status, saved.text).toBe(303);
      const incidentId = (await relay.ctx.store.incidents.byCodename(codename))!.id;
      expect(await relay.ctx.store.incidents.activeMember(incidentId, 'sec@corp.example')).toMatchObject({ name: 'Security Lead', role: 'deputy', phone: null });
      const confirm = await get(`/console/incidents/${codename}/roster/sec%40corp.example/remove`, cookie);
      expect(confirm.text).toContain('<h1>Remove sec@corp.example?</h1>');
      expect(await relay.ctx.store.incidents.activeMember(incidentId, 'sec@corp.example')).toBeDefined();
      expect((await post(`/console/incidents/${codename}/roster/sec%40corp.example/remove`, cookie)).status).toBe(303);
      expect(await relay.ctx.store.incidents.activeMember(incidentId, 'sec@corp.example')).toBeUndefined();
      expect((await get(`/console/incidents/${codename}/roster/sec%40corp.example`, cookie)).status).toBe(404);
    });

    it('closes only after the confirmation page is posted; a closed incident shows no sending forms', async () => {
      const confirm = await get(`/console/incidents/${codename}/close`, cookie);
      expect(confirm.status).toBe(200);
      expect(confirm.text).toContain(`<form method="post" action="/console/incidents/${codename}/close"`);
      expect((await relay.ctx.store.incidents.byCodename(codename))!.status).toBe('open');
      expect((await post(`/console/incidents/${codename}/close`, cookie)).status).toBe(303);
      expect((await relay.ctx.store.incidents.byCodename(codename))!.status).toBe('closed');
      const page = await get(`/console/incidents/${codename}`, cookie);
      expect(page.text).toContain(`${codename} is closed.`);
      expect(page.text).not.toContain('id="compose"');
      const refused = await post(`/console/incidents/${codename}/sms`, cookie).type('form').send({ scope: 'roster' });
      expect(refused.status).toBe(409);
      expect(refused.text).toContain('<code>incident_closed</code>');
    });

    it('an unknown console page is a 404 page; a form over the size limit is 413 before it is read', async () => {
      const missing = await get('/console/nothing-here', cookie);
      expect(missing.status).toBe(404);
      expect(missing.headers['content-type']).toBe('text/html; charset=utf-8');
      const open = await declare(cookie);
      const big = await post(`/console/incidents/${open}/emails`, cookie).set('Content-Type', 'multipart/form-data; boundary=x').set('Content-Length', String(relay.ctx.config.maxMessageBytes + 1024 * 1024)).send('--x--');
      expect(big.status).toBe(413);
      expect(big.text).toContain('<code>payload_too_large</code>');
      expect(big.text).toContain(`The form with its files is ${relay.ctx.config.maxMessageBytes + 1024 * 1024} bytes; this relay accepts at most `);
    });

    it('a form with more than 1,000 fields is 413 payload_too_large, and a body that cannot be read a 400 that says "form": never a 500 with no code', async () => {
      const open = await declare(cookie);
      const fields = (n: number) => Array.from({ length: n }, (_, i) => `f${i}=1`).join('&');
      const many = await post(`/console/incidents/${open}/sms`, cookie).type('form').send(fields(1001));
      expect(many.status).toBe(413);
      expect(many.text).toContain('<code>payload_too_large</code>');
      expect(many.text).toContain('The form has more than 1000 fields; this relay reads at most 1000.');
      const broken = await post(`/console/incidents/${open}/sms`, cookie).type('form').set('Content-Encoding', 'gzip').send('scope=roster');
      expect(broken.status).toBe(400);
      expect(broken.text).toContain('<code>invalid_request</code>');
      expect(broken.text).toContain('The request body could not be read.');
      expect(broken.text).not.toContain('JSON');
    });
  });
});
