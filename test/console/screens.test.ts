/**
 * The console's second-pass screens over HTTP (supertest against the real
 * app, on both store backends): the compose form's policy preview (the
 * "Check before sending" page and the live region's fragment), the emails
 * screen, the audit timeline's filters and paging, the private label and
 * reopening, the roster's key view with withdrawal and revocation, and the
 * approvals screen. Each calls the service the API's route calls, so each
 * test also compares with what the API answers.
 */
import fs from 'node:fs';
import path from 'node:path';
import type { Response } from 'supertest';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { createGpgHome, type GeneratedKey, type GpgHome } from '../helpers/gpg.js';
import { BACKENDS, createTestRelay, type TestRelay } from '../helpers/relay.js';

const HOST = 'relay.test:8080';
const ORIGIN = `http://${HOST}`;
const auth = (token: string) => ({ Authorization: `Bearer ${token}` });

let gpg: GpgHome;
let counselKey: GeneratedKey;
let carolKey: GeneratedKey;
beforeAll(async () => {
  gpg = await createGpgHome();
  counselKey = await gpg.generateKey('counsel@lawfirm.example', 'Outside Counsel');
  carolKey = await gpg.generateKey('carol@lawfirm.example', 'Carol');
}, 120_000);
afterAll(async () => {
  await gpg.cleanup();
});

function sessionCookieOf(res: Response): string {
  const header = ([] as string[]).concat(res.headers['set-cookie'] ?? []).find((c) => c.startsWith('relay_console='));
  if (!header) throw new Error(`no session cookie in ${res.status}`);
  return header.split(';')[0]!;
}

function titleOf(body: string): string {
  return /<title>([^<]*)<\/title>/.exec(body)?.[1] ?? '';
}

/** The content of the compose form's live region. */
function regionOf(body: string): string {
  const start = body.indexOf('<div id="compose-preview" class="verdict" aria-live="polite">');
  expect(start, 'the live region').toBeGreaterThan(0);
  return body.slice(start, body.indexOf('</details></div>', start) + '</details></div>'.length);
}

describe.each(BACKENDS)('the console screens on %s', (backend) => {
  let relay: TestRelay;
  const tokens: Record<string, string> = {};
  const cookies: Record<string, string> = {};
  let codename: string;

  const get = (p: string, cookie: string) => relay.request.get(p).set('Host', HOST).set('Cookie', cookie);
  const post = (p: string, cookie: string) => relay.request.post(p).set('Host', HOST).set('Origin', ORIGIN).set('Cookie', cookie);
  const signIn = async (token: string): Promise<string> => {
    const res = await relay.request.post('/console/sign-in').set('Host', HOST).set('Origin', ORIGIN).type('form').send({ token });
    expect(res.status).toBe(303);
    return sessionCookieOf(res);
  };
  const api = {
    put: (p: string, token: string, body: unknown) => relay.request.put(p).set(auth(token)).send(body as object),
    post: (p: string, token: string, body: unknown = {}) => relay.request.post(p).set(auth(token)).send(body as object),
    get: (p: string, token: string) => relay.request.get(p).set(auth(token)),
  };

  beforeAll(async () => {
    relay = await createTestRelay({}, { backend });
    for (const email of ['ic', 'deputy', 'scribe', 'sec', 'legal', 'comms', 'outsider']) {
      tokens[email] = await relay.tokenFor(`${email}@corp.example`);
      cookies[email] = await signIn(tokens[email]!);
    }
    cookies['admin'] = await signIn(relay.admin);
    codename = (await api.post('/v1/incidents', tokens['ic']!, { label: 'Payroll database breach' })).body.codename;
    for (const [email, role, publicKey] of [
      ['deputy@corp.example', 'deputy'],
      ['scribe@corp.example', 'scribe'],
      ['sec@corp.example', 'security'],
      ['legal@corp.example', 'legal'],
      ['comms@corp.example', 'communications'],
      ['exec@corp.example', 'executive'],
      ['carol@corp.example', 'executive'],
      ['counsel@lawfirm.example', 'external', counselKey.armoredPublic],
    ] as const) {
      expect((await api.put(`/v1/incidents/${codename}/roster/${email}`, tokens['ic']!, { name: email.split('@')[0], role, ...(publicKey ? { publicKey } : {}) })).status).toBe(201);
    }
  }, 60_000);
  afterAll(async () => {
    await relay.ctx.store.close();
  });

  describe('compose: the policy preview', () => {
    const preview = (cookie: string, fields: Array<[string, string]>, query = '') => {
      let r = post(`/console/incidents/${codename}/emails/preview${query}`, cookie).field('idempotencyKey', 'k');
      for (const [name, value] of fields) r = r.field(name, value);
      return r;
    };

    it('"Check before sending" shows in words why it will be encrypted, what is missing with a link to fix it, and the refusal; the draft is kept and nothing is queued', async () => {
      const res = await preview(cookies['ic']!, [
        ['to', 'counsel@lawfirm.example'],
        ['cc', 'carol@corp.example'],
        ['subject', 'Briefing'],
        ['text', 'Keep <this> draft'],
      ]).attach('attachments', Buffer.from('%PDF'), { filename: 'timeline.pdf', contentType: 'application/pdf' });
      expect(res.status).toBe(200);
      expect(titleOf(res.text)).toBe(`${codename} · incident-relay`);
      const region = regionOf(res.text);
      expect(region).toContain('<span class="badge bad">refused</span> <strong>Will be ENCRYPTED</strong> because counsel@lawfirm.example is outside the company;</p>');
      expect(region).toContain(
        `<li>carol@corp.example has no usable key — <a href="/console/incidents/${codename}/roster/carol%40corp.example">add one<span class="visually-hidden"> for carol@corp.example</span></a></li>`,
      );
      expect(region).toContain('<strong>Will be refused:</strong> <code>missing_public_key</code> (rule <code>encryption</code>) — ');
      expect(region).toContain('<span class="rule-fail">encryption fail</span>');
      // The draft as typed; the file has to be chosen again (browsers do not keep files).
      expect(res.text).toContain('\nKeep &lt;this&gt; draft</textarea>');
      expect(res.text).toMatch(/name="to" value="counsel@lawfirm.example" checked>/);
      expect(res.text).toMatch(/name="cc" value="carol@corp.example" checked>/);
      expect(res.text).toContain('value="Briefing"');
      expect(await relay.ctx.store.sql.all('SELECT id FROM emails')).toEqual([]);
      // Audited as the API's dry run: every rule, counts, never content.
      const events = await relay.ctx.store.audit.query({ type: 'email.preview', limit: 10 });
      const last = events[events.length - 1]!;
      expect(last).toMatchObject({ actor: 'ic@corp.example', outcome: 'refused', data: { code: 'missing_public_key', encrypted: true, missingKeys: 1, offRoster: 0 } });
      expect(JSON.stringify(last)).not.toContain('Keep');
      expect(JSON.stringify(last)).not.toContain('Briefing');
    });

    it('says the same as the API\'s dryRun, because it is the same decision', async () => {
      const body = { to: ['counsel@lawfirm.example'], cc: ['carol@corp.example'], text: 'x' };
      const apiPreview = await api.post(`/v1/incidents/${codename}/emails?dryRun=true`, tokens['ic']!, body);
      expect(apiPreview.body).toMatchObject({ outcome: 'refuse', encrypted: true, externalRecipients: ['counsel@lawfirm.example'], missingKeys: ['carol@corp.example'] });
      const fragment = await preview(cookies['ic']!, [
        ['to', 'counsel@lawfirm.example'],
        ['cc', 'carol@corp.example'],
        ['text', 'x'],
      ], '?fragment=verdict');
      expect(fragment.text).toContain(`<code>${apiPreview.body.error.code}</code>`);
      expect(fragment.text).toContain(apiPreview.body.error.message.replace(/'/g, '&#39;'));
    });

    it('?fragment=verdict answers only the live region\'s content, marked as a verdict, under the same headers', async () => {
      const res = await preview(cookies['ic']!, [
        ['to', 'sec@corp.example'],
        ['bcc', 'exec@corp.example'],
        ['text', 'Rotate keys.'],
      ], '?fragment=verdict');
      expect(res.status).toBe(200);
      expect(res.headers['console-fragment']).toBe('verdict');
      expect(res.headers['content-security-policy']).toContain("connect-src 'self'");
      expect(res.text.startsWith('<p class="verdict-line"><span class="badge neutral">plain</span> <strong>Will go plain</strong> to 2 internal recipients.</p>')).toBe(true);
      expect(res.text).toContain('<p class="verdict-line">Ready to send to 2 recipients.</p>');
      expect(res.text).not.toContain('<html');
      // A draft that cannot be checked says why, with the code, still as a fragment.
      const none = await preview(cookies['ic']!, [['text', 'no one']], '?fragment=verdict');
      expect(none.status).toBe(400);
      expect(none.headers['console-fragment']).toBe('verdict');
      expect(none.text).toBe('<p class="verdict-line"><span class="badge warn">cannot check</span> <code>invalid_request</code>: Tick at least one recipient under To.</p>');
    });

    it('someone who cannot change the roster is told to ask the commander, without a link to the roster form', async () => {
      const res = await preview(cookies['scribe']!, [['to', 'carol@corp.example'], ['to', 'counsel@lawfirm.example'], ['text', 'x']], '?fragment=verdict');
      expect(res.text).toContain('<li>carol@corp.example has no usable key — ask the commander to add one</li>');
      expect(res.text).not.toContain('/roster/');
    });

    it('a non-member gets 404 and a foreign origin 403 before the draft is read', async () => {
      const outsider = await preview(cookies['outsider']!, [['to', 'sec@corp.example'], ['text', 'x']], '?fragment=verdict');
      expect(outsider.status).toBe(404);
      expect(outsider.headers['console-fragment']).toBeUndefined();
      const foreign = await relay.request.post(`/console/incidents/${codename}/emails/preview?fragment=verdict`).set('Host', HOST).set('Origin', 'http://evil.example').set('Cookie', cookies['ic']!).field('to', 'sec@corp.example').field('text', 'x');
      expect(foreign.status).toBe(403);
    });
  });

  describe('the emails screen', () => {
    let sent: Array<{ id: string; messageId: string }>;
    beforeAll(async () => {
      sent = [];
      const send = async (token: string, body: unknown) => {
        const res = await api.post(`/v1/incidents/${codename}/emails`, token, body);
        expect(res.status).toBe(202);
        relay.clock.advance(1000);
        sent.push(res.body);
      };
      await send(tokens['ic']!, { to: ['sec@corp.example'], bcc: ['exec@corp.example'], text: 'one' });
      await send(tokens['deputy']!, { to: ['sec@corp.example'], text: 'two' });
      await send(tokens['ic']!, { to: ['counsel@lawfirm.example'], text: 'three' });
      // Delivery states as the worker leaves them: a retry with its error, a sent copy.
      const deliveryOf = async (emailId: string) => (await relay.ctx.store.sql.all<{ id: string }>('SELECT id FROM deliveries WHERE email_id = ?', [emailId]))[0]!.id;
      await relay.ctx.store.outbox.markRetry(await deliveryOf(sent[0]!.id), '451 4.3.0 try again later', relay.clock.now(), null);
      await relay.ctx.store.outbox.markSent(await deliveryOf(sent[2]!.id), 'up-1', relay.clock.now());
    });

    it('lists the incident\'s emails newest first with status, attempts, last error and each copy; a removed recipient\'s copy shows cancelled', async () => {
      // exec leaves the roster: their part of the first email is cancelled.
      expect((await relay.request.delete(`/v1/incidents/${codename}/roster/exec@corp.example`).set(auth(tokens['ic']!))).status).toBe(204);
      const res = await get(`/console/incidents/${codename}/emails`, cookies['ic']!);
      expect(res.status).toBe(200);
      expect(titleOf(res.text)).toBe(`${codename} · incident-relay`);
      const order = [...res.text.matchAll(/<code class="hint">([^<]+)<\/code>/g)].map((m) => m[1]!.replace(/&lt;/g, '<').replace(/&gt;/g, '>'));
      expect(order).toEqual([sent[2]!.messageId, sent[1]!.messageId, sent[0]!.messageId]);
      const rowOf = (messageId: string) => {
        const at = res.text.indexOf(messageId.replace(/</g, '&lt;').replace(/>/g, '&gt;'));
        return res.text.slice(at, res.text.indexOf('</tr>', at));
      };
      expect(rowOf(sent[2]!.messageId)).toContain('<span class="badge good">sent</span>');
      expect(rowOf(sent[2]!.messageId)).toContain('<td>yes</td>');
      const first = rowOf(sent[0]!.messageId);
      expect(first).toContain('<td>sec@corp.example, exec@corp.example</td>');
      expect(first).toContain('<span class="badge neutral">queued</span>');
      expect(first).toContain('Last error: 451 4.3.0 try again later');
      expect(first).toContain('<li>sec@corp.example: <span class="badge neutral">queued</span> 1 attempt<br><span class="hint">451 4.3.0 try again later</span></li>');
      expect(first).toMatch(/<li>exec@corp\.example: <span class="badge warn">cancelled<\/span> 1 attempt<br><span class="hint">cancelled: exec@corp\.example left the roster before it was sent<\/span><\/li>/);
      // The same as the API's list.
      const apiList = await api.get(`/v1/incidents/${codename}/emails`, tokens['ic']!);
      expect(apiList.body.emails.map((e: { messageId: string }) => e.messageId)).toEqual(order);
    });

    it('pages with the API\'s cursor, finds one by Message-ID, and shows a malformed one as a refusal with the form kept', async () => {
      const page1 = await get(`/console/incidents/${codename}/emails?limit=2`, cookies['ic']!);
      const next = /href="([^"]*cursor=[^"]*)">Older emails<\/a>/.exec(page1.text)?.[1]?.replace(/&amp;/g, '&');
      expect(next).toBeDefined();
      const page2 = await get(next!, cookies['ic']!);
      expect(page2.text).toContain(sent[0]!.messageId.replace(/</g, '&lt;').replace(/>/g, '&gt;'));
      expect(page2.text).not.toContain(sent[2]!.messageId.replace(/</g, '&lt;').replace(/>/g, '&gt;'));
      expect(page2.text).not.toContain('Older emails');

      const found = await get(`/console/incidents/${codename}/emails?messageId=${encodeURIComponent(sent[1]!.messageId)}`, cookies['ic']!);
      expect(found.text).toContain('<caption>The email with that Message-ID</caption>');
      expect([...found.text.matchAll(/<code class="hint">/g)]).toHaveLength(1);

      const bad = await get(`/console/incidents/${codename}/emails?messageId=${encodeURIComponent('<no at sign>')}`, cookies['ic']!);
      expect(bad.status).toBe(400);
      expect(bad.text).toContain('<code>invalid_request</code>');
      expect(bad.text).toContain('value="&lt;no at sign&gt;"');
      // An empty lookup box is no filter at all.
      expect((await get(`/console/incidents/${codename}/emails?messageId=`, cookies['ic']!)).status).toBe(200);
    });

    it('shows each reader only what the API shows them: a deputy their own emails, never the commander\'s Bcc', async () => {
      const res = await get(`/console/incidents/${codename}/emails`, cookies['deputy']!);
      expect(res.status).toBe(200);
      expect(res.text).toContain(sent[1]!.messageId.replace(/</g, '&lt;').replace(/>/g, '&gt;'));
      expect(res.text).not.toContain(sent[0]!.messageId.replace(/</g, '&lt;').replace(/>/g, '&gt;'));
      expect(res.text).not.toContain('exec@corp.example');
      expect((await get(`/console/incidents/${codename}/emails`, cookies['outsider']!)).status).toBe(404);
    });
  });

  describe('the audit timeline', () => {
    it('filters by type (with a prefix), actor and time, in chain order, with the API\'s cursor; a bad filter is a refusal with the form kept', async () => {
      const types = async (query: string, cookie = cookies['ic']!) => {
        const res = await get(`/console/incidents/${codename}/audit${query}`, cookie);
        expect(res.status, res.text.slice(0, 300)).toBe(200);
        return { res, types: [...res.text.matchAll(/<td><code>([a-z_.]+)<\/code><\/td>/g)].map((m) => m[1]!) };
      };
      const all = await types('');
      expect(all.types[0]).toBe('incident.created');
      const api100 = await api.get(`/v1/incidents/${codename}/audit?limit=100`, tokens['ic']!);
      expect(all.types).toEqual(api100.body.events.map((e: { type: string }) => e.type));

      const emails = await types('?type=email.*&actor=&since=&until=');
      expect(new Set(emails.types)).toEqual(new Set(['email.preview', 'email.decision', 'email.delivery_cancelled']));
      expect(emails.res.text).toContain('value="email.*"');
      const byDeputy = await types('?actor=deputy@corp.example');
      expect(byDeputy.types).toEqual(['email.decision']);
      const future = await types(`?since=${encodeURIComponent(new Date(relay.clock.now().getTime() + 60_000).toISOString())}`);
      expect(future.types).toEqual([]);
      expect(future.res.text).toContain('No events match these filters.');

      const page1 = await types('?type=roster.added&limit=3');
      expect(page1.types).toEqual(['roster.added', 'roster.added', 'roster.added']);
      const next = /href="([^"]*)">Next page<\/a>/.exec(page1.res.text)?.[1]?.replace(/&amp;/g, '&');
      expect(next).toMatch(/type=roster\.added/);
      const page2 = await get(`${next!}&limit=3`, cookies['ic']!);
      const seqs = (t: string) => [...t.matchAll(/<tr>\s*<td>(\d+)<\/td>/g)].map((m) => Number(m[1]));
      expect(Math.min(...seqs(page2.text))).toBeGreaterThan(Math.max(...seqs(page1.res.text)));

      const bad = await get(`/console/incidents/${codename}/audit?since=yesterday`, cookies['ic']!);
      expect(bad.status).toBe(400);
      expect(bad.text).toContain('<code>invalid_request</code>');
      expect(bad.text).toContain('value="yesterday"');
    });

    it('takes Bcc recipients out for a scribe, as the API does; the commander sees them', async () => {
      const scribe = await get(`/console/incidents/${codename}/audit?type=email.decision`, cookies['scribe']!);
      const ic = await get(`/console/incidents/${codename}/audit?type=email.decision`, cookies['ic']!);
      expect(ic.text).toContain('bcc exec@corp.example');
      expect(scribe.status).toBe(200);
      expect(scribe.text).not.toContain('exec@corp.example');
      expect(scribe.text).toContain('redacted: {&quot;bcc&quot;:1}');
    });

    it('shows an admin the chain\'s check with its checkpoints and the last full verification', async () => {
      const res = await get(`/console/incidents/${codename}/audit`, cookies['admin']!);
      expect(res.text).toContain('Audit chain verified');
      expect(res.text).toContain('Last full verification from the first event: none recorded yet');
      await relay.request.get('/v1/audit/verify?full=true').set(auth(relay.admin));
      const after = await get(`/console/incidents/${codename}/audit`, cookies['admin']!);
      expect(after.text).toMatch(/Last full verification from the first event: <time datetime="[^"]+">[^<]+<\/time>, <span class="badge good">held<\/span> over \d+ events\./);
      expect((await get(`/console/incidents/${codename}/audit`, cookies['ic']!)).text).not.toContain('Last full verification');
    });
  });

  describe('incidents: the private label and reopening', () => {
    it('shows the label to the roster and admins in the page, never in the title; the commander changes and clears it, a deputy may not', async () => {
      const list = await get('/console/incidents', cookies['deputy']!);
      expect(list.text).toContain('<td>Payroll database breach</td>');
      for (const [p, cookie] of [
        ['/console/incidents', cookies['deputy']!],
        [`/console/incidents/${codename}`, cookies['scribe']!],
        [`/console/incidents/${codename}`, cookies['admin']!],
        [`/console/incidents/${codename}/emails`, cookies['ic']!],
        [`/console/incidents/${codename}/announcements`, cookies['ic']!],
        [`/console/incidents/${codename}/audit`, cookies['ic']!],
      ] as const) {
        const res = await get(p, cookie);
        expect(titleOf(res.text)).not.toContain('Payroll');
      }
      const page = await get(`/console/incidents/${codename}`, cookies['scribe']!);
      expect(page.text).toContain('Private label: <strong>Payroll database breach</strong>');
      expect(page.text).not.toContain('action="/console/incidents/' + codename + '/label"');
      expect((await get('/console/incidents', cookies['outsider']!)).text).not.toContain('Payroll');

      const refused = await post(`/console/incidents/${codename}/label`, cookies['deputy']!).type('form').send({ label: 'x' });
      expect(refused.status).toBe(403);
      const bad = await post(`/console/incidents/${codename}/label`, cookies['ic']!).type('form').send({ label: 'two\nlines' });
      expect(bad.status).toBe(400);
      expect(bad.text).toContain('<code>invalid_request</code>');
      expect(bad.text).toContain('<details class="label-edit" open>');
      const set = await post(`/console/incidents/${codename}/label`, cookies['ic']!).type('form').send({ label: 'Payroll DB <breach>' });
      expect(set.status).toBe(303);
      expect((await api.get(`/v1/incidents/${codename}`, tokens['ic']!)).body.label).toBe('Payroll DB <breach>');
      expect((await get(`/console/incidents/${codename}`, cookies['ic']!)).text).toContain('Private label: <strong>Payroll DB &lt;breach&gt;</strong>');
      expect((await post(`/console/incidents/${codename}/label`, cookies['ic']!).type('form').send({ label: '' })).status).toBe(303);
      expect((await api.get(`/v1/incidents/${codename}`, tokens['ic']!)).body.label).toBeNull();
      const events = await relay.ctx.store.audit.query({ type: 'incident.labelled', limit: 10 });
      expect(events.map((e) => e.data)).toEqual([{ labelLength: 19 }, { cleared: true }]);
      await post(`/console/incidents/${codename}/label`, cookies['ic']!).type('form').send({ label: 'Payroll database breach' });
    });

    it('declares with a label; reopens a closed incident only after its confirmation page, commander or admin only', async () => {
      const declared = await post('/console/incidents', cookies['ic']!).type('form').send({ codename: '', label: 'Laptop theft' });
      expect(declared.status).toBe(303);
      const other = decodeURIComponent(/\/console\/incidents\/([^/]+)$/.exec(declared.headers['location'] as string)![1]!);
      expect((await relay.ctx.store.incidents.byCodename(other))!.label).toBe('Laptop theft');
      expect((await post(`/console/incidents/${other}/close`, cookies['ic']!)).status).toBe(303);
      const closedList = await get('/console/incidents?status=closed', cookies['ic']!);
      expect(closedList.text).toContain(`<a href="/console/incidents/${other}/reopen">Reopen…<span class="visually-hidden"> ${other}</span></a>`);
      expect(closedList.text).not.toContain(`>${codename}</a>`);
      const confirm = await get(`/console/incidents/${other}/reopen`, cookies['ic']!);
      expect(confirm.status).toBe(200);
      expect(confirm.text).toContain(`<h1>Reopen ${other}?</h1>`);
      expect((await relay.ctx.store.incidents.byCodename(other))!.status).toBe('closed');
      expect((await post(`/console/incidents/${other}/reopen`, cookies['outsider']!)).status).toBe(404);
      expect((await relay.ctx.store.incidents.byCodename(other))!.status).toBe('closed');
      const reopened = await post(`/console/incidents/${other}/reopen`, cookies['ic']!);
      expect(reopened.status).toBe(303);
      expect((await relay.ctx.store.incidents.byCodename(other))!.status).toBe('open');
      expect((await get(`/console/incidents/${other}`, cookies['ic']!)).text).toContain(`${other} is open again.`);
      expect((await relay.ctx.store.audit.query({ type: 'incident.reopened', limit: 10 })).map((e) => e.actor)).toEqual(['ic@corp.example']);
    });

    it('a deputy sees no reopen and is refused with 403 when posting it', async () => {
      const c = (await api.post('/v1/incidents', tokens['ic']!, {})).body.codename as string;
      await api.put(`/v1/incidents/${c}/roster/deputy@corp.example`, tokens['ic']!, { name: 'deputy', role: 'deputy' });
      await relay.request.patch(`/v1/incidents/${c}`).set(auth(tokens['ic']!)).send({ status: 'closed' });
      expect((await get(`/console/incidents/${c}`, cookies['deputy']!)).text).not.toContain('Reopen');
      const refused = await post(`/console/incidents/${c}/reopen`, cookies['deputy']!);
      expect(refused.status).toBe(403);
      expect(refused.text).toContain('<code>forbidden</code>');
      expect((await relay.ctx.store.incidents.byCodename(c))!.status).toBe('closed');
    });
  });

  describe('the roster: keys as the API views them', () => {
    it('shows each key\'s status and scope from the same view as GET /v1/keys/:email?incident=', async () => {
      // Carol of the law firm: a relay-wide key from herself, then one given with the roster entry.
      const carolToken = await relay.tokenFor('carol@lawfirm.example');
      expect((await relay.request.put('/v1/keys/carol@lawfirm.example').set(auth(carolToken)).type('text/plain').send(carolKey.armoredPublic)).status).toBe(200);
      await api.put(`/v1/incidents/${codename}/roster/carol@lawfirm.example`, tokens['ic']!, { name: 'Carol', role: 'external' });
      const page = await get(`/console/incidents/${codename}`, cookies['ic']!);
      const cell = (email: string) => {
        const at = page.text.indexOf(`<span class="hint">${email}</span>`);
        return page.text.slice(at, page.text.indexOf('</tr>', at));
      };
      expect(cell('carol@lawfirm.example')).toContain(`<span class="badge good">usable</span> <code>${carolKey.fingerprint.slice(-16)}</code><br><span class="hint">relay-wide</span>`);
      expect(cell('counsel@lawfirm.example')).toContain(`<span class="badge good">usable</span> <code>${counselKey.fingerprint.slice(-16)}</code><br><span class="hint">given for this incident</span>`);
      expect(cell('carol@corp.example')).toContain('<span class="badge neutral">missing</span>');
      const view = await api.get(`/v1/keys/counsel@lawfirm.example?incident=${codename}`, tokens['ic']!);
      expect(view.body).toMatchObject({ scope: 'incident', status: 'usable', fingerprint: counselKey.fingerprint });
    });

    it('withdraws the key given for this incident (the relay-wide key holds again) and revokes a key with gpg\'s certificate', async () => {
      const carolPath = `/console/incidents/${codename}/roster/carol%40lawfirm.example`;
      // Give Carol a key with the roster entry too, then withdraw it.
      expect((await post(carolPath, cookies['ic']!).field('name', 'Carol').field('role', 'external').attach('publicKey', Buffer.from(carolKey.armoredPublic), { filename: 'carol.asc' })).status).toBe(303);
      expect((await api.get(`/v1/keys/carol@lawfirm.example?incident=${codename}`, tokens['ic']!)).body.scope).toBe('incident');
      const edit = await get(carolPath, cookies['ic']!);
      expect(edit.text).toContain(`action="${carolPath}/key/withdraw"`);
      expect((await post(`${carolPath}/key/withdraw`, cookies['scribe']!)).status).toBe(403);
      const withdrawn = await post(`${carolPath}/key/withdraw`, cookies['ic']!);
      expect(withdrawn.status).toBe(303);
      expect(withdrawn.headers['location']).toBe(carolPath);
      const after = await get(carolPath, cookies['ic']!);
      expect(after.text).toContain(`Withdrew the key given for carol@lawfirm.example in this incident. Their relay-wide key ${carolKey.fingerprint.slice(-16)} (usable) holds again.`);
      expect(after.text).not.toContain('/key/withdraw"');
      expect((await api.get(`/v1/keys/carol@lawfirm.example?incident=${codename}`, tokens['ic']!)).body.scope).toBe('relay');
      // Nothing more to withdraw: the service's refusal, on the member page.
      const none = await post(`${carolPath}/key/withdraw`, cookies['ic']!);
      expect(none.status).toBe(404);
      expect(none.text).toContain('No key of carol@lawfirm.example was filed with this roster');

      // gpg's revocation certificate, as gpg wrote it: every stored copy is revoked.
      const certificate = fs.readFileSync(path.join(gpg.dir, 'openpgp-revocs.d', `${carolKey.fingerprint}.rev`));
      const revoked = await post(`${carolPath}/key/revoke`, cookies['ic']!).attach('revocation', certificate, { filename: `${carolKey.fingerprint}.rev` });
      expect(revoked.status, revoked.text.slice(0, 500)).toBe(303);
      const shown = await get(carolPath, cookies['ic']!);
      expect(shown.text).toContain(`Revoked the key ${carolKey.fingerprint.slice(-16)} of carol@lawfirm.example: every stored copy is revoked`);
      expect(shown.text).toContain('<span class="badge bad">revoked</span>');
      expect((await api.get(`/v1/keys/carol@lawfirm.example?incident=${codename}`, tokens['ic']!)).body).toMatchObject({ status: 'revoked' });
      // Another key's certificate changes nothing and says so.
      const mismatch = await post(`/console/incidents/${codename}/roster/counsel%40lawfirm.example/key/revoke`, cookies['ic']!).attach('revocation', certificate, { filename: 'x.rev' });
      expect(mismatch.status).toBe(422);
      expect(mismatch.text).toContain('<code>revocation_mismatch</code>');
      expect((await api.get(`/v1/keys/counsel@lawfirm.example?incident=${codename}`, tokens['ic']!)).body.status).toBe('usable');
    });
  });

  describe('the approvals screen', () => {
    const announcements = `/console/incidents/CODENAME/announcements`;
    const at = (rest = '') => announcements.replace('CODENAME', codename) + rest;
    let id: string;

    it('drafts an external announcement from the form; the list and its page show what still blocks it', async () => {
      const refused = await post(at(), cookies['comms']!).type('form').send({ kind: 'external', title: 'Security notice, 2026-11-28', text: 'Hello', addresses: 'not-an-address', list: '' });
      expect(refused.status).toBe(400);
      expect(refused.text).toContain('<code>invalid_request</code>');
      expect(refused.text).toContain('not-an-address');
      expect(refused.text).toContain('value="Security notice, 2026-11-28"');

      const created = await post(at(), cookies['comms']!).type('form').send({ kind: 'external', title: 'Security notice, 2026-11-28 <b>', text: 'On November 28 we found unauthorised access.', addresses: 'desk@news.example\ntips@paper.example', list: '' });
      expect(created.status, created.text.slice(0, 400)).toBe(303);
      id = /\/announcements\/([^/]+)$/.exec(created.headers['location'] as string)![1]!;
      const page = await get(at(`/${id}`), cookies['comms']!);
      expect(titleOf(page.text)).toBe(`${codename} · incident-relay`);
      expect(page.text).toContain('<h1>Security notice, 2026-11-28 &lt;b&gt;</h1>');
      expect(page.text).toContain('Saved the draft for 2 address(es).');
      expect(page.text).toContain('<li>the content has not passed its checks (run them)</li>');
      expect(page.text).toContain('<li>internal-source: no record that forensics ruled out an internal source</li>');
      expect(page.text).toContain('<li>approval: missing approval by: commander, legal or communications</li>');
      // The author cannot approve: the approve step's own rule, in its words.
      expect(page.text).toContain('You cannot approve it: You wrote this announcement');
      expect(page.text).not.toContain('>Approve</button>');
      const list = await get(at(), cookies['scribe']!);
      expect(list.text).toContain(`<a href="${at(`/${id}`)}">Security notice, 2026-11-28 &lt;b&gt;</a>`);
      expect(list.text).toContain('<td>2 addresses</td>');
    });

    it('refuses each step that may not happen yet with its code and what to do, and changes nothing', async () => {
      const unchecked = await post(at(`/${id}/approve`), cookies['ic']!);
      expect(unchecked.status).toBe(409);
      expect(unchecked.text).toContain('<code>announcement_not_checked</code>');
      const byAuthor = await post(at(`/${id}/approve`), cookies['comms']!);
      expect(byAuthor.status).toBe(403);
      expect(byAuthor.text).toContain('<code>approval_not_allowed</code>');
      expect((await post(at(`/${id}/approve`), cookies['outsider']!)).status).toBe(404);
      const early = await post(at(`/${id}/send`), cookies['comms']!).type('form').send({ idempotencyKey: 'early' });
      expect(early.status).toBe(409);
      expect(early.text).toContain('<code>announcement_not_checked</code>');
      expect(await relay.ctx.store.sql.all("SELECT id FROM emails WHERE sender = 'comms@corp.example'")).toEqual([]);
    });

    it('a session with a token held to the incident is not offered what it would be refused: approving, declaring', async () => {
      const issued = await api.post('/v1/tokens', tokens['ic']!, { email: 'legal@corp.example', role: 'responder', incident: codename });
      expect(issued.status).toBe(201);
      const scoped = await signIn(issued.body.token);
      const page = await get(at(`/${id}`), scoped);
      expect(page.text).toContain('You cannot approve it: This token was issued for one incident&#39;s roster and may not approve an announcement; ask an admin for a token of your own.');
      expect(page.text).not.toContain('>Approve</button>');
      const incidents = await get('/console/incidents', scoped);
      expect(incidents.status).toBe(200);
      expect(incidents.text).not.toContain('Declare an incident');
      expect((await get('/console/incidents', cookies['legal']!)).text).toContain('Declare an incident');
    });

    it('checks, approves (commander and legal), records the internal source and sends, each through the announcements service', async () => {
      // The title's "<b>" is content: the checks pass (it is dated); edit it away first, which is the author's to do.
      const edited = await post(at(`/${id}`), cookies['comms']!).type('form').send({ kind: 'external', title: 'Security notice, 2026-11-28', text: 'On November 28 we found unauthorised access.', addresses: 'desk@news.example\ntips@paper.example', list: '' });
      expect(edited.status).toBe(303);
      expect((await get(at(`/${id}`), cookies['comms']!)).text).toContain('Saved the changes.');
      expect((await post(at(`/${id}/check`), cookies['scribe']!)).status).toBe(303);
      expect((await get(at(`/${id}`), cookies['scribe']!)).text).toContain('The checks passed: checked. It needs the approvals next.');
      // The scribe's role does not approve: said in the rule's words, no button.
      expect((await get(at(`/${id}`), cookies['scribe']!)).text).toContain('You cannot approve it: Your roster role (scribe) does not approve announcements');

      const legalPage = await get(at(`/${id}`), cookies['legal']!);
      expect(legalPage.text).toContain(`<form method="post" action="${at(`/${id}/approve`)}" class="buttons">`);
      expect((await post(at(`/${id}/approve`), cookies['legal']!)).status).toBe(303);
      expect((await post(at(`/${id}/approve`), cookies['legal']!)).text).toContain('<code>already_approved</code>');
      expect((await post(at(`/${id}/approve`), cookies['ic']!)).status).toBe(303);
      const approved = await get(at(`/${id}`), cookies['ic']!);
      expect(approved.text).toContain('<td>legal@corp.example</td><td>legal</td>');
      expect(approved.text).toContain('<td>ic@corp.example</td><td>commander</td>');
      expect(approved.text).toContain('<li>internal-source: no record that forensics ruled out an internal source</li>');
      expect(approved.text).not.toContain('<li>approval:');

      // Only the commander records the internal source: no form for the deputy, and a refusal if posted.
      expect((await get(at(), cookies['deputy']!)).text).toContain("Only the incident's commander records this.");
      const byDeputy = await post(`/console/incidents/${codename}/internal-source`, cookies['deputy']!).type('form').send({ ruledOut: 'true', note: 'x' });
      expect(byDeputy.status).toBe(403);
      expect(byDeputy.text).toContain("Only the incident's commander records whether forensics ruled out an internal source.".replace(/'/g, '&#39;'));
      const noNote = await post(`/console/incidents/${codename}/internal-source`, cookies['ic']!).type('form').send({ ruledOut: 'true', note: '' });
      expect(noNote.status).toBe(400);
      expect((await post(`/console/incidents/${codename}/internal-source`, cookies['ic']!).type('form').send({ ruledOut: 'true', note: 'Report FR-7: external IP, no insider.' })).status).toBe(303);
      const listed = await get(at(), cookies['ic']!);
      expect(listed.text).toContain('Recorded: forensics ruled out an internal source.');
      expect(listed.text).toContain('Report FR-7: external IP, no insider.');
      expect((await api.get(`/v1/incidents/${codename}`, tokens['ic']!)).body.internalSourceRuledOut).toMatchObject({ by: 'ic@corp.example', note: 'Report FR-7: external IP, no insider.' });

      const ready = await get(at(`/${id}`), cookies['comms']!);
      expect(ready.text).toContain('Nothing blocks it: it can be sent.');
      const key = /name="idempotencyKey" value="([^"]+)"/.exec(ready.text)![1]!;
      const sent = await post(at(`/${id}/send`), cookies['comms']!).type('form').send({ idempotencyKey: key });
      expect(sent.status).toBe(303);
      // The same form again (a reload) replays the answer: one email.
      expect((await post(at(`/${id}/send`), cookies['comms']!).type('form').send({ idempotencyKey: key })).status).toBe(303);
      const emails = await relay.ctx.store.sql.all<{ recipients: string }>("SELECT recipients FROM emails WHERE sender = 'comms@corp.example'");
      expect(emails).toHaveLength(1);
      const done = await get(at(`/${id}`), cookies['comms']!);
      expect(done.text).toMatch(/Sent: 2 copies queued \(0 encrypted\), Message-ID &lt;[^&]+@corp\.example&gt;\./);
      expect(done.text).not.toContain('>Send to');
      const api1 = await api.get(`/v1/incidents/${codename}/announcements/${id}`, tokens['comms']!);
      expect(api1.body.state).toBe('sent');
    });

    it('an edit voids the approvals, and the screen says so', async () => {
      const created = await post(at(), cookies['comms']!).type('form').send({ kind: 'external', title: 'Update, 2026-11-29', text: 'More facts.', addresses: 'desk@news.example', list: '' });
      const other = /\/announcements\/([^/]+)$/.exec(created.headers['location'] as string)![1]!;
      await post(at(`/${other}/check`), cookies['comms']!);
      await post(at(`/${other}/approve`), cookies['legal']!);
      // Saving the form as it is changes nothing and voids nothing.
      expect((await post(at(`/${other}`), cookies['comms']!).type('form').send({ kind: 'external', title: 'Update, 2026-11-29', text: 'More facts.', addresses: 'desk@news.example', list: '' })).status).toBe(303);
      expect((await get(at(`/${other}`), cookies['comms']!)).text).toContain('Nothing changed.');
      expect((await post(at(`/${other}`), cookies['comms']!).type('form').send({ kind: 'external', title: 'Update, 2026-11-29', text: 'More facts, corrected.', addresses: 'desk@news.example', list: '' })).status).toBe(303);
      const page = await get(at(`/${other}`), cookies['comms']!);
      expect(page.text).toContain('Saved the changes. 1 approval(s) voided: it must be approved again.');
      expect(page.text).toContain('<td>legal@corp.example</td><td>legal</td>');
      expect(page.text).toContain('<span class="badge warn">void</span> <span class="hint">edited by comms@corp.example</span>');
      // A deputy who is not its author may not edit it: the service's refusal, with the form as typed.
      const byDeputy = await post(at(`/${other}`), cookies['deputy']!).type('form').send({ kind: 'external', title: 'Hijacked, 2026-11-29', text: 'x', addresses: 'desk@news.example', list: '' });
      expect(byDeputy.status).toBe(403);
      expect(byDeputy.text).toContain('value="Hijacked, 2026-11-29"');
    });
  });

  describe('one place for the field rules', () => {
    it.each([
      ['a Slack id that is not one', { slackUserId: 'not-slack' }, 'slackUserId must be a Slack user id such as U024BE7LH'],
      ['a phone that is not E.164', { phone: '555-0100' }, 'phone must be an E.164 number such as +15555550100'],
      ['a name with a tab', { name: 'A\tB' }, 'name must not be empty or contain a tab'],
      ['a role that does not exist', { role: 'boss' }, 'role '],
    ])('the roster form refuses %s as the API does', async (_what, change, problem) => {
      const fields = { name: 'Pat', role: 'security', phone: '', slackUserId: '', ...change };
      const apiRes = await api.put(`/v1/incidents/${codename}/roster/pat@corp.example`, tokens['ic']!, Object.fromEntries(Object.entries(fields).filter(([, v]) => v !== '')));
      expect(apiRes.status).toBe(400);
      const apiProblem = (apiRes.body.error.details.fields as Array<{ field: string; problem: string }>).map((f) => `${f.field} ${f.problem}`).join('; ');
      expect(apiProblem).toContain(problem);
      let form = post(`/console/incidents/${codename}/roster`, cookies['ic']!).field('email', 'pat@corp.example');
      for (const [k, v] of Object.entries(fields)) form = form.field(k, v);
      const consoleRes = await form;
      expect(consoleRes.status).toBe(400);
      expect(consoleRes.text).toContain(apiProblem.replace(/"/g, '&quot;'));
    });

    it('the compose form refuses an attachment name with a path as the API does', async () => {
      const apiRes = await api.post(`/v1/incidents/${codename}/emails?dryRun=true`, tokens['ic']!, { to: ['sec@corp.example'], text: 'x', attachments: [{ filename: '.hidden', contentType: 'text/plain', content: 'eA==' }] });
      expect(apiRes.status).toBe(400);
      expect(apiRes.body.error.message).toContain('must be a plain file name without path separators or a leading dot');
      const consoleRes = await post(`/console/incidents/${codename}/emails/preview?fragment=verdict`, cookies['ic']!).field('to', 'sec@corp.example').field('text', 'x').attach('attachments', Buffer.from('x'), { filename: '.hidden', contentType: 'text/plain' });
      expect(consoleRes.status).toBe(400);
      expect(consoleRes.text).toContain('must be a plain file name without path separators or a leading dot');
    });
  });
});
