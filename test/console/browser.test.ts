/**
 * The console as a person uses it, in headless Chromium (Debian's
 * /usr/bin/chromium driven by playwright-core), against a relay started as
 * `npm start` starts it (startRelay, a real port, a real SQLite file) that
 * delivers to a real smtp-server upstream:
 *
 * sign in, declare, add outside counsel with a key file, see the live
 * policy preview say "encrypted", send, see the email reach "sent" on the
 * emails screen (counsel's gpg decrypts what reached the upstream), nudge,
 * read and filter the audit timeline, draft, check and approve an
 * announcement, sign out; a non-member's session gets 404; a form on
 * another origin that posts to the console is refused; sign-in, compose
 * with its preview, and approving work with the keyboard alone, with focus
 * visible; axe-core finds no WCAG 2 A/AA violation on any screen.
 * Screenshots go to test-output/console/.
 */
import fs from 'node:fs';
import http from 'node:http';
import type { AddressInfo } from 'node:net';
import os from 'node:os';
import path from 'node:path';
import { simpleParser } from 'mailparser';
import { pino } from 'pino';
import { chromium, type Browser, type BrowserContext, type Page } from 'playwright-core';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { testConfig } from '../../src/config.js';
import { startRelay, type RunningRelay } from '../../src/main.js';
import { ROOT } from '../helpers/build.js';
import { createGpgHome, type GeneratedKey, type GpgHome } from '../helpers/gpg.js';
import { armoredPartOf, decryptAs } from '../helpers/pgp-mime.js';
import { startUpstream, type Upstream } from '../helpers/upstream.js';

// The page's globals, as far as the callbacks run in the page use them (the project's lib has no DOM types).
interface PageElement {
  id: string;
  textContent: string | null;
  matches(selector: string): boolean;
  getAttribute(name: string): string | null;
}
interface Axe {
  run(context: unknown, options: unknown): Promise<{ violations: Array<{ id: string; impact: string | null; nodes: Array<{ target: string[] }> }> }>;
}
declare const window: { axe?: Axe };
declare const document: { activeElement: PageElement | null; cookie: string };
declare const localStorage: Record<string, string>;
declare const sessionStorage: Record<string, string>;
declare function getComputedStyle(element: PageElement): { outlineStyle: string; outlineWidth: string };

const CHROMIUM = '/usr/bin/chromium';
const SCREENSHOTS = path.join(ROOT, 'test-output', 'console');
const AXE_SOURCE = fs.readFileSync(path.join(ROOT, 'node_modules', 'axe-core', 'axe.min.js'), 'utf8');
const WCAG_TAGS = ['wcag2a', 'wcag2aa', 'wcag21a', 'wcag21aa'];
const ADMIN_TOKEN = 'ir_console-test-admin-token-0123456789abcdef';
// Announcement titles carry a date near today (rule statement).
const today = new Date().toISOString().slice(0, 10);

let browser: Browser;
let relay: RunningRelay;
let upstream: Upstream;
let gpg: GpgHome;
let counsel: GeneratedKey;
let base: string;
let dataDir: string;
let keyFile: string;
let attachmentFile: string;
let tokens: { ic: string; outsider: string; legal: string; comms: string };

beforeAll(async () => {
  fs.mkdirSync(SCREENSHOTS, { recursive: true });
  gpg = await createGpgHome();
  counsel = await gpg.generateKey('counsel@lawfirm.example', 'Outside Counsel');
  upstream = await startUpstream();
  dataDir = fs.mkdtempSync(path.join(os.tmpdir(), 'console-relay-'));
  keyFile = path.join(dataDir, 'counsel.asc');
  fs.writeFileSync(keyFile, counsel.armoredPublic);
  attachmentFile = path.join(dataDir, 'timeline.pdf');
  fs.writeFileSync(attachmentFile, '%PDF-1.4 timeline\n');
  const config = testConfig({
    dataDir,
    httpHost: '127.0.0.1',
    httpPort: 0,
    smtpPort: 0,
    internalDomains: ['corp.example'],
    internalDomainsDefaulted: false,
    mailDomain: 'corp.example',
    keysDir: undefined,
    adminToken: ADMIN_TOKEN,
    smtpUpstream: upstream.url,
  });
  relay = await startRelay(config, pino({ level: 'silent' }), undefined, { encryptionPool: false });
  base = `http://127.0.0.1:${relay.httpPort}`;
  const at = new Date();
  tokens = {
    ic: (await relay.ctx.store.tokens.create({ email: 'ic@corp.example', role: 'responder', at })).token,
    outsider: (await relay.ctx.store.tokens.create({ email: 'outsider@corp.example', role: 'responder', at })).token,
    legal: (await relay.ctx.store.tokens.create({ email: 'legal@corp.example', role: 'responder', at })).token,
    comms: (await relay.ctx.store.tokens.create({ email: 'comms@corp.example', role: 'responder', at })).token,
  };
  // Root in CI containers: Chromium's sandbox needs user namespaces it does not have there.
  browser = await chromium.launch({ executablePath: CHROMIUM, args: process.getuid?.() === 0 ? ['--no-sandbox'] : [] });
}, 120_000);

afterAll(async () => {
  await browser?.close();
  await relay?.stop();
  await upstream?.stop();
  await gpg?.cleanup();
  if (dataDir) fs.rmSync(dataDir, { recursive: true, force: true });
});

/** axe-core's WCAG 2 A/AA violations on the page as it is now. The source is evaluated, not added as a script: the CSP rightly blocks that. */
async function accessibilityViolations(page: Page): Promise<Array<{ id: string; impact: string | null; nodes: string[] }>> {
  const hasAxe = await page.evaluate(() => 'axe' in window);
  if (!hasAxe) await page.evaluate(AXE_SOURCE);
  return page.evaluate(async (tags) => {
    const result = await window.axe!.run(document, { runOnly: { type: 'tag', values: tags } });
    return result.violations.map((v) => ({ id: v.id, impact: v.impact, nodes: v.nodes.map((n) => n.target.join(' ')) }));
  }, WCAG_TAGS);
}

/** Checks a screen: no accessibility violation, and a screenshot of it for people to look at. */
async function checkScreen(page: Page, name: string): Promise<void> {
  expect(await accessibilityViolations(page), `axe on ${name}`).toEqual([]);
  await page.screenshot({ path: path.join(SCREENSHOTS, `${name}.png`), fullPage: true });
}

/**
 * The one-shot result the page shows after a post, once it is there. A post
 * to the incident page redirects back to the same URL, so waiting for the
 * URL alone could return before the new page has loaded.
 */
async function flash(page: Page, text: string): Promise<string> {
  const section = page.locator('section.flash', { hasText: text });
  await section.waitFor({ timeout: 20_000 });
  return (await section.textContent()) ?? '';
}

/** A roster entry through the API, as the commander (for people the test needs but whose forms it already covered). */
async function addToRoster(codename: string, email: string, role: string): Promise<void> {
  const res = await fetch(`${base}/v1/incidents/${codename}/roster/${email}`, {
    method: 'PUT',
    headers: { Authorization: `Bearer ${tokens.ic}`, 'Content-Type': 'application/json' },
    body: JSON.stringify({ name: email.split('@')[0], role }),
  });
  expect(res.status).toBe(201);
}

/** Presses Tab until `selector` has the focus (at most 200 times). */
async function tabTo(page: Page, selector: string): Promise<void> {
  for (let i = 0; i < 200; i++) {
    if (await page.evaluate((s) => document.activeElement?.matches(s) ?? false, selector)) return;
    await page.keyboard.press('Tab');
  }
  throw new Error(`Tab never reached ${selector}`);
}

/** The focused element's outline, as the browser draws it. */
function focusOutline(page: Page) {
  return page.evaluate(() => {
    const el = document.activeElement!;
    const style = getComputedStyle(el);
    return { focusVisible: el.matches(':focus-visible'), style: style.outlineStyle, width: style.outlineWidth };
  });
}

async function signIn(context: BrowserContext, token: string): Promise<Page> {
  const page = await context.newPage();
  await page.goto(`${base}/console`);
  await page.getByLabel('Relay token').fill(token);
  await page.getByRole('button', { name: 'Sign in' }).click();
  await page.waitForURL(`${base}/console/incidents`);
  return page;
}

describe('the console in Chromium', () => {
  let codename: string;
  let icContext: BrowserContext;
  let ic: Page;

  it('sign in, declare, add counsel with a key file, see the preview say encrypted, send, see it reach sent (gpg decrypts it at the upstream), nudge, filter the audit, draft, check and approve an announcement, sign out', async () => {
    icContext = await browser.newContext();
    ic = await icContext.newPage();

    // Opening the console without a session leads to sign-in.
    await ic.goto(`${base}/console`);
    expect(ic.url()).toBe(`${base}/console/sign-in?notice=required`);
    expect(await ic.title()).toBe('Sign in · incident-relay');
    await checkScreen(ic, '01-sign-in');
    await ic.getByLabel('Relay token').fill(tokens.ic);
    await ic.getByRole('button', { name: 'Sign in' }).click();
    await ic.waitForURL(`${base}/console/incidents`);
    // The browser holds a session cookie, never the token: not in the URL, the page, or storage.
    const cookies = await icContext.cookies();
    expect(cookies.map((c) => [c.name, c.httpOnly, c.sameSite, c.path])).toEqual([['relay_console', true, 'Strict', '/console']]);
    expect(await ic.content()).not.toContain(tokens.ic);
    expect(await ic.evaluate(() => JSON.stringify({ ...localStorage }) + JSON.stringify({ ...sessionStorage }) + document.cookie)).toBe('{}{}');
    await checkScreen(ic, '02-incidents');

    await ic.getByRole('button', { name: 'Declare incident' }).click();
    await ic.waitForURL(/\/console\/incidents\/[a-z]+-[a-z]+(-\d+)?$/);
    codename = decodeURIComponent(ic.url().split('/').pop()!);
    expect(await ic.title()).toBe(`${codename} · incident-relay`);
    expect(await ic.getByRole('heading', { level: 1 }).textContent()).toBe(codename);
    expect(await flash(ic, 'Declared')).toContain(`Declared ${codename}.`);

    // Outside counsel, with their key from a file.
    await ic.getByLabel('Email address').fill('counsel@lawfirm.example');
    await ic.getByLabel('Name', { exact: true }).fill('Outside Counsel');
    await ic.getByLabel('Role').selectOption('external');
    await ic.getByLabel('Public key file (optional)').setInputFiles(keyFile);
    await ic.getByRole('button', { name: 'Add to roster' }).click();
    await flash(ic, 'Added counsel@lawfirm.example');
    const counselRow = ic.getByRole('row').filter({ hasText: 'counsel@lawfirm.example' });
    expect(await counselRow.textContent()).toContain('usable');
    expect(await counselRow.textContent()).toContain(counsel.fingerprint.slice(-16));

    // A colleague with a phone, for the nudge.
    await ic.getByLabel('Email address').fill('sec@corp.example');
    await ic.getByLabel('Name', { exact: true }).fill('Security Lead');
    await ic.getByLabel('Role').selectOption('security');
    await ic.getByLabel('Phone for SMS nudges (optional)').fill('+15555550100');
    await ic.getByRole('button', { name: 'Add to roster' }).click();
    await flash(ic, 'Added sec@corp.example');
    await checkScreen(ic, '03-incident');

    // Compose: ticking counsel under To, the live preview says why it will be encrypted, before anything is sent.
    const preview = ic.locator('#compose-preview');
    expect(await preview.getAttribute('aria-live')).toBe('polite');
    await ic.getByRole('group', { name: 'To', exact: true }).getByLabel('Outside Counsel <counsel@lawfirm.example>').check();
    await ic.locator('#compose-preview', { hasText: /Will be ENCRYPTED/ }).waitFor({ timeout: 10_000 });
    expect(await preview.locator('p').first().textContent()).toBe('encrypted Will be ENCRYPTED because counsel@lawfirm.example is outside the company.');
    expect(upstream.received).toHaveLength(0);
    await checkScreen(ic, '04-preview');
    await ic.getByLabel('Topic (optional)').fill('Briefing');
    await ic.getByLabel('Message').fill('Call at 3pm.');
    await ic.getByLabel('Attachments (optional)').setInputFiles(attachmentFile);
    await ic.getByRole('button', { name: 'Send', exact: true }).click();
    expect(await flash(ic, 'Email queued')).toContain('Email queued, encrypted');
    await checkScreen(ic, '05-sent');

    // The emails screen follows it until the upstream has accepted it.
    await ic.getByRole('link', { name: 'Follow its delivery' }).click();
    await ic.waitForURL(/\/emails\?messageId=/);
    expect(await ic.title()).toBe(`${codename} · incident-relay`);
    const status = ic.locator('table.emails tbody tr td:nth-child(5) .badge');
    for (let i = 0; i < 80 && (await status.textContent()) !== 'sent'; i++) {
      await ic.waitForTimeout(250);
      await ic.getByRole('link', { name: 'Refresh' }).click();
      await ic.waitForLoadState();
    }
    expect(await status.textContent()).toBe('sent');
    expect(await ic.locator('table.emails tbody tr td:nth-child(6)').textContent()).toBe('counsel@lawfirm.example: sent 1 attempt');
    await checkScreen(ic, '06-emails');

    const [mail] = await upstream.waitFor(1, 20_000);
    expect(mail!.to).toEqual(['counsel@lawfirm.example']);
    expect(mail!.raw.toString('latin1')).toContain('Subject: Attorney Work Project\r\n');
    expect(mail!.raw.toString('latin1')).not.toContain('Briefing');
    const decrypted = await decryptAs(gpg, counsel.fingerprint, await armoredPartOf(mail!.raw), relay.ctx.relayKey.publicArmored);
    expect(decrypted.goodSignatureFrom).toBe(relay.ctx.relayKey.fingerprint);
    const inner = await simpleParser(decrypted.plaintext);
    expect(inner.text).toBe('Topic: Briefing\n\nCall at 3pm.');
    expect(inner.attachments.map((a) => [a.filename, a.contentType, a.content.toString('utf8')])).toEqual([['timeline.pdf', 'application/pdf', '%PDF-1.4 timeline\n']]);

    // The SMS nudge to everyone: who got it and who was skipped, and why.
    await ic.goto(`${base}/console/incidents/${codename}`);
    await ic.getByRole('button', { name: 'Nudge everyone on the roster' }).click();
    await flash(ic, 'SMS nudge');
    const results = ic.getByRole('table', { name: 'Who gets “Please join Slack ASAP.”' });
    expect(await results.getByRole('row').allTextContents()).toEqual([
      'MemberResultWhy',
      'counsel@lawfirm.exampleskippedno phone number on the roster',
      'ic@corp.exampleskippedno phone number on the roster',
      'sec@corp.examplequeued',
    ]);
    await checkScreen(ic, '07-nudged');

    await ic.getByRole('link', { name: 'Audit timeline' }).click();
    await ic.waitForURL(`${base}/console/incidents/${codename}/audit`);
    expect(await ic.title()).toBe(`${codename} · incident-relay`);
    const types = await ic.locator('table.timeline tbody tr td:nth-child(3)').allTextContents();
    expect(types[0]).toBe('incident.created');
    for (const type of ['roster.added', 'key.stored', 'email.preview', 'email.decision', 'sms.decision']) expect(types).toContain(type);
    await ic.getByLabel('Event type').fill('email.*');
    await ic.getByRole('button', { name: 'Apply filters' }).click();
    await ic.waitForURL(/\/audit\?type=email\.\*/);
    const emailTypes = await ic.locator('table.timeline tbody tr td:nth-child(3)').allTextContents();
    expect(emailTypes.length).toBeGreaterThan(0);
    expect(emailTypes.every((t) => t.startsWith('email.'))).toBe(true);
    await checkScreen(ic, '08-audit');

    // The approvals screen: communications drafts and checks an external statement…
    await addToRoster(codename, 'legal@corp.example', 'legal');
    await addToRoster(codename, 'comms@corp.example', 'communications');
    const commsContext = await browser.newContext();
    try {
      const comms = await signIn(commsContext, tokens.comms);
      await comms.goto(`${base}/console/incidents/${codename}/announcements`);
      expect(await comms.title()).toBe(`${codename} · incident-relay`);
      await comms.getByLabel('Title').fill(`Security notice, ${today}`);
      await comms.getByLabel('Text').fill(`On ${today} we found unauthorised access to one system.`);
      await comms.getByLabel('Audience addresses').fill('desk@news.example');
      await comms.getByRole('button', { name: 'Save draft' }).click();
      await flash(comms, 'Saved the draft');
      expect(await comms.locator('ul.blocking').textContent()).toContain('approval: missing approval by: commander, legal or communications');
      await comms.getByRole('button', { name: 'Run the checks' }).click();
      expect(await flash(comms, 'The checks passed')).toContain('The checks passed: checked. It needs the approvals next.');
      await checkScreen(comms, '09-announcement');
    } finally {
      await commsContext.close();
    }
    // …the commander records the internal source and approves it.
    await ic.goto(`${base}/console/incidents/${codename}`);
    await ic.getByRole('link', { name: 'Announcements' }).click();
    await ic.getByLabel('How forensics ruled it out').fill('Report FR-7: external IP, no insider.');
    await ic.getByRole('button', { name: 'Record: internal source ruled out' }).click();
    await flash(ic, 'Recorded: forensics ruled out an internal source.');
    await checkScreen(ic, '10-announcements');
    await ic.getByRole('link', { name: `Security notice, ${today}` }).click();
    await ic.getByRole('button', { name: 'Approve' }).click();
    expect(await flash(ic, 'Approved')).toContain('Approved as commander.');

    // The confirmation screens and the member editor are screens too.
    await ic.goto(`${base}/console/incidents/${codename}/roster/${encodeURIComponent('counsel@lawfirm.example')}`);
    expect(await ic.getByRole('heading', { name: 'Withdraw the key given for this incident' }).count()).toBe(1);
    await checkScreen(ic, '11-edit-member');
    await ic.goto(`${base}/console/incidents/${codename}/roster/${encodeURIComponent('sec@corp.example')}/remove`);
    await checkScreen(ic, '12-remove-member');
    await ic.goto(`${base}/console/incidents/${codename}/close`);
    await checkScreen(ic, '13-close');

    // A refusal is a screen: the API's code and message, and where to fix it.
    await ic.goto(`${base}/console/incidents/${codename}`);
    await ic.getByLabel('Email address').fill('carol@lawfirm.example');
    await ic.getByLabel('Name', { exact: true }).fill('Carol');
    await ic.getByLabel('Role').selectOption('external');
    await ic.getByRole('button', { name: 'Add to roster' }).click();
    await flash(ic, 'Added carol@lawfirm.example');
    await ic.getByRole('group', { name: 'To', exact: true }).getByLabel('Carol <carol@lawfirm.example>').check();
    // The preview says so before sending, with where to fix it.
    await ic.locator('#compose-preview', { hasText: /Will be refused/ }).waitFor({ timeout: 10_000 });
    expect(await ic.locator('#compose-preview ul.problems').textContent()).toBe('carol@lawfirm.example has no usable key — add one for carol@lawfirm.example');
    expect(await ic.locator('#compose-preview').getByRole('link', { name: 'add one for carol@lawfirm.example' }).getAttribute('href')).toBe(`/console/incidents/${codename}/roster/carol%40lawfirm.example`);
    await ic.getByLabel('Message').fill('Draft for Carol');
    await ic.getByRole('button', { name: 'Send', exact: true }).click();
    const alert = ic.getByRole('alert');
    await alert.waitFor();
    expect(await alert.textContent()).toContain('missing_public_key');
    expect(await ic.getByRole('link', { name: 'Add a usable key for carol@lawfirm.example' }).count()).toBe(1);
    // The script moves the keyboard to the refusal, and the draft is kept.
    expect(await ic.evaluate(() => document.activeElement?.getAttribute('role'))).toBe('alert');
    expect(await ic.getByLabel('Message').inputValue()).toBe('Draft for Carol');
    await checkScreen(ic, '14-refused');

    await ic.getByRole('button', { name: 'Sign out' }).click();
    await ic.waitForURL(`${base}/console/sign-in?notice=signed_out`);
    expect(await flash(ic, 'signed out')).toContain('You are signed out.');
    expect(await icContext.cookies()).toEqual([]);
    await ic.goto(`${base}/console/incidents/${codename}`);
    expect(ic.url()).toBe(`${base}/console/sign-in?notice=required`);
  }, 180_000);

  it("a non-member's session gets 404 for the incident, with a title that does not name it", async () => {
    const context = await browser.newContext();
    try {
      const page = await signIn(context, tokens.outsider);
      const response = await page.goto(`${base}/console/incidents/${codename}`);
      expect(response?.status()).toBe(404);
      expect(await page.title()).toBe('Not found · incident-relay');
      expect(await page.getByRole('alert').textContent()).toContain('not_found');
      expect(await page.content()).not.toContain('counsel@lawfirm.example');
      await checkScreen(page, '15-not-found');
    } finally {
      await context.close();
    }
  }, 60_000);

  it('a form on another origin that posts to the console is refused, even with the session cookie sent', async () => {
    // Another port on the same host is the same site: SameSite=Strict still sends the cookie, so the Origin check is what stops it.
    const attacker = http.createServer((_req, res) => {
      res.writeHead(200, { 'Content-Type': 'text/html' });
      res.end(`<!doctype html><title>x</title><form id="f" method="post" action="${base}/console/incidents"><input name="codename" value=""></form><script>document.getElementById('f').submit()</script>`);
    });
    await new Promise<void>((resolve) => attacker.listen(0, '127.0.0.1', resolve));
    const context = await browser.newContext();
    try {
      const page = await signIn(context, tokens.ic);
      const before = (await relay.ctx.store.incidents.list()).length;
      const refused = page.waitForResponse((r) => r.url() === `${base}/console/incidents` && r.request().method() === 'POST');
      await page.goto(`http://127.0.0.1:${(attacker.address() as AddressInfo).port}/`);
      const response = await refused;
      expect(response.status()).toBe(403);
      expect(await response.request().headerValue('cookie')).toMatch(/^relay_console=/);
      await page.waitForURL(`${base}/console/incidents`);
      expect(await page.getByRole('alert').textContent()).toContain('came from another origin');
      expect((await relay.ctx.store.incidents.list()).length).toBe(before);
      await checkScreen(page, '16-cross-origin-refused');
    } finally {
      await context.close();
      await new Promise<void>((resolve) => attacker.close(() => resolve()));
    }
  }, 60_000);

  it('signs in and sends with the keyboard alone, the preview following the recipients, with the focus always visible', async () => {
    const context = await browser.newContext();
    const page = await context.newPage();
    try {
      await page.goto(`${base}/console/sign-in`);
      // The token field has the focus at once; type and press Enter.
      expect(await page.evaluate(() => document.activeElement?.id)).toBe('token');
      await page.keyboard.type(tokens.ic);
      await page.keyboard.press('Enter');
      await page.waitForURL(`${base}/console/incidents`);

      // First Tab: the skip link, visibly focused.
      await page.keyboard.press('Tab');
      expect(await page.evaluate(() => document.activeElement?.textContent)).toBe('Skip to content');
      expect(await focusOutline(page)).toEqual({ focusVisible: true, style: 'solid', width: '3px' });

      await tabTo(page, `a[href="/console/incidents/${codename}"]`);
      expect(await focusOutline(page)).toEqual({ focusVisible: true, style: 'solid', width: '3px' });
      await page.keyboard.press('Enter');
      await page.waitForURL(`${base}/console/incidents/${codename}`);

      await tabTo(page, '#compose input[name="to"][value="sec@corp.example"]');
      await page.keyboard.press('Space');
      expect(await page.locator('#compose input[name="to"][value="sec@corp.example"]').isChecked()).toBe(true);
      // The live region follows the ticked recipients without the focus moving.
      await page.locator('#compose-preview', { hasText: /Will go plain/ }).waitFor({ timeout: 10_000 });
      expect(await page.locator('#compose-preview p').first().textContent()).toBe('plain Will go plain to 1 internal recipient.');
      expect(await page.evaluate(() => document.activeElement?.getAttribute('value'))).toBe('sec@corp.example');
      await tabTo(page, '#compose-text');
      await page.keyboard.type('Sent with the keyboard only.');
      // "Check before sending" asks at once, still from the keyboard.
      await tabTo(page, '#compose button[data-check]');
      expect(await focusOutline(page)).toEqual({ focusVisible: true, style: 'solid', width: '3px' });
      await page.keyboard.press('Enter');
      await page.locator('#compose-preview', { hasText: /Ready to send to 1 recipient\./ }).waitFor({ timeout: 10_000 });
      expect(page.url()).toBe(`${base}/console/incidents/${codename}`);
      await page.keyboard.press('Shift+Tab');
      expect(await page.evaluate(() => document.activeElement?.textContent)).toBe('Send');
      expect(await focusOutline(page)).toEqual({ focusVisible: true, style: 'solid', width: '3px' });
      const before = upstream.received.length;
      await page.keyboard.press('Enter');
      expect(await flash(page, 'Email queued')).toContain('Email queued, not encrypted');
      const mails = await upstream.waitFor(before + 1, 20_000);
      expect(mails[mails.length - 1]!.to).toEqual(['sec@corp.example']);
      expect(mails[mails.length - 1]!.raw.toString('utf8')).toContain('Sent with the keyboard only.');
    } finally {
      await context.close();
    }
  }, 90_000);

  it('approves an announcement with the keyboard alone', async () => {
    const context = await browser.newContext();
    try {
      const page = await signIn(context, tokens.legal);
      await page.keyboard.press('Tab');
      await tabTo(page, `a[href="/console/incidents/${codename}"]`);
      await page.keyboard.press('Enter');
      await page.waitForURL(`${base}/console/incidents/${codename}`);
      await tabTo(page, `a[href="/console/incidents/${codename}/announcements"]`);
      await page.keyboard.press('Enter');
      await page.waitForURL(`${base}/console/incidents/${codename}/announcements`);
      await tabTo(page, 'table a[href*="/announcements/"]');
      expect(await page.evaluate(() => document.activeElement?.textContent)).toBe(`Security notice, ${today}`);
      await page.keyboard.press('Enter');
      await page.waitForURL(/\/announcements\/[^/]+$/);
      await tabTo(page, 'form[action$="/approve"] button');
      expect(await focusOutline(page)).toEqual({ focusVisible: true, style: 'solid', width: '3px' });
      await page.keyboard.press('Enter');
      expect(await flash(page, 'Approved')).toContain('Approved as legal. Nothing blocks it now.');
      expect(await page.locator('main').textContent()).toContain('Nothing blocks it: it can be sent.');
      const [announcement] = await relay.ctx.store.announcements.list((await relay.ctx.store.incidents.byCodename(codename))!.id);
      expect(announcement!.state).toBe('approved');
    } finally {
      await context.close();
    }
  }, 60_000);
});
