/** The Twilio channel's pieces: origin rewriting, Retry-After, error classes, and the nudge guard. */
import { describe, expect, it } from 'vitest';
import { DeliveryError, type UpstreamProblem } from '../../../src/channels/channel.js';
import { nudgeFor } from '../../../src/channels/sms/guard.js';
import { RelayTwilioHttpClient, TwilioRateLimited, classifyTwilioError, createTwilioChannel, parseRetryAfter, rewriteOrigin } from '../../../src/channels/sms/twilio.js';
import { startFakeTwilio } from '../../helpers/fake-twilio.js';

const NUDGE = 'Please join Slack ASAP.';
const delivery = (to: string, body: string) => ({ id: 'd1', envelope: { kind: 'sms' as const, to }, body: Buffer.from(body) });

describe('rewriteOrigin', () => {
  it.each([
    ['http://127.0.0.1:4010', 'http://127.0.0.1:4010/2010-04-01/Accounts/AC1/Messages.json'],
    ['https://proxy.corp.example/twilio/', 'https://proxy.corp.example/twilio/2010-04-01/Accounts/AC1/Messages.json'],
  ])('%s', (base, expected) => {
    expect(rewriteOrigin('https://api.twilio.com/2010-04-01/Accounts/AC1/Messages.json', base)).toBe(expected);
  });

  it('keeps the query string', () => {
    expect(rewriteOrigin('https://api.twilio.com/x?PageSize=1', 'http://h:1')).toBe('http://h:1/x?PageSize=1');
  });
});

describe('parseRetryAfter', () => {
  const now = new Date('2026-11-22T09:00:00Z');
  it.each<[unknown, number | undefined]>([
    ['30', 30],
    [' 7 ', 7],
    ['Sun, 22 Nov 2026 09:01:00 GMT', 60],
    ['Sun, 22 Nov 2026 08:00:00 GMT', 0],
    [['5'], 5],
    ['soon', undefined],
    ['', undefined],
    [undefined, undefined],
  ])('%j → %j', (value, seconds) => {
    expect(parseRetryAfter(value, now)).toBe(seconds);
  });
});

describe('classifyTwilioError', () => {
  it.each<[string, unknown, boolean, number | undefined, UpstreamProblem | undefined]>([
    ['429 with Retry-After', new TwilioRateLimited(12), true, 12, 'rate'],
    ['503', { status: 503, code: 20500 }, true, undefined, 'unavailable'],
    ['500', { status: 500 }, true, undefined, 'unavailable'],
    // Per message: this number, this recipient. Never helped by a retry.
    ['400 invalid number', { status: 400, code: 21211 }, false, undefined, undefined],
    ['400 unsubscribed', { status: 400, code: 21610 }, false, undefined, undefined],
    ['400 region not enabled for this To', { status: 400, code: 21408 }, false, undefined, undefined],
    ['400 not a mobile number', { status: 400, code: 21614 }, false, undefined, undefined],
    ['400 without a code', { status: 400 }, false, undefined, undefined],
    // The account or the sending setup: every nudge would fail alike until an operator acts.
    ['401 bad credentials', { status: 401, code: 20003 }, true, undefined, 'auth'],
    ['401 without a code', { status: 401 }, true, undefined, 'auth'],
    ['403 from an egress proxy', { status: 403 }, true, undefined, 'auth'],
    ['account not active (10001)', { status: 400, code: 10001 }, true, undefined, 'account'],
    ['account not active (20005)', { status: 401, code: 20005 }, true, undefined, 'auth'],
    ['account not active (20005, as a 400)', { status: 400, code: 20005 }, true, undefined, 'account'],
    ['TWILIO_FROM not a number of this account (21606)', { status: 400, code: 21606 }, true, undefined, 'config'],
    ['TWILIO_FROM invalid (21212)', { status: 400, code: 21212 }, true, undefined, 'config'],
    ['TWILIO_FROM not a Twilio number (21659)', { status: 400, code: 21659 }, true, undefined, 'config'],
    ['messaging service missing (21701)', { status: 400, code: 21701 }, true, undefined, 'config'],
    ['404 on the Messages path', { status: 404, code: 20404 }, true, undefined, 'config'],
    ['connection refused', Object.assign(new Error('connect ECONNREFUSED'), { code: 'ECONNREFUSED' }), true, undefined, 'connection'],
    ['timeout', Object.assign(new Error('timeout of 30000ms exceeded'), { code: 'ECONNABORTED' }), true, undefined, 'connection'],
    ['anything else', new Error('boom'), true, undefined, 'connection'],
  ])('%s', (_name, err, transient, retryAfter, problem) => {
    const mapped = classifyTwilioError(err);
    expect(mapped).toBeInstanceOf(DeliveryError);
    expect(mapped.transient).toBe(transient);
    expect(mapped.retryAfter).toBe(retryAfter);
    expect(mapped.problem).toBe(problem);
    if (problem) expect(mapped.hint).toEqual(expect.any(String));
  });

  it('names the settings to check for a refused login, and never Twilio\'s own message text', () => {
    const mapped = classifyTwilioError(Object.assign(new Error("Authenticate: the 'To' number +15555550101 …"), { status: 401, code: 20003 }));
    expect(mapped.message).toBe("Twilio refused the relay's credentials (HTTP 401, error 20003: authentication failed: check TWILIO_ACCOUNT_SID and TWILIO_AUTH_TOKEN)");
    expect(mapped.hint).toMatch(/check TWILIO_ACCOUNT_SID and TWILIO_AUTH_TOKEN$/);
    expect(`${mapped.message} ${mapped.hint}`).not.toContain('+1555');
  });
});

describe('the nudge guard', () => {
  it.each([
    ['other text', delivery('+15555550101', 'hello')],
    ['the nudge with text added', delivery('+15555550101', `${NUDGE} x`)],
    ['the nudge in UTF-16', { ...delivery('+15555550101', ''), body: Buffer.from(NUDGE, 'utf16le') }],
    ['a number that is not E.164', delivery('5555550101', NUDGE)],
    ['an email envelope', { id: 'd1', envelope: { kind: 'email' as const, from: 'a@corp.example', to: ['b@corp.example'] }, body: Buffer.from(NUDGE) }],
  ])('refuses %s, permanently', (_name, d) => {
    expect(() => nudgeFor(d)).toThrow(DeliveryError);
    try {
      nudgeFor(d);
    } catch (err) {
      expect((err as DeliveryError).transient).toBe(false);
    }
  });

  it('passes the nudge to an E.164 number', () => {
    expect(nudgeFor(delivery('+15555550101', NUDGE))).toEqual({ to: '+15555550101', nudge: NUDGE });
  });
});

describe('createTwilioChannel', () => {
  it('sends through the SDK to TWILIO_API_BASE_URL, and refuses other text before any request', async () => {
    const fake = await startFakeTwilio();
    try {
      const channel = createTwilioChannel({ accountSid: fake.accountSid, authToken: fake.authToken, from: '+15555550100', apiBaseUrl: fake.url });
      await expect(channel.send(delivery('+15555550101', 'the breach is in prod'))).rejects.toMatchObject({ transient: false });
      expect(fake.requests).toHaveLength(0);
      const receipt = await channel.send(delivery('+15555550101', NUDGE));
      expect(receipt.id).toMatch(/^SM[0-9a-f]{32}$/);
      expect(fake.requests.map((r) => [r.to, r.from, r.body, r.authorized])).toEqual([['+15555550101', '+15555550100', NUDGE, true]]);
    } finally {
      await fake.stop();
    }
  });

  it('a wrong auth token is a transient auth problem: the nudge waits for the fix instead of being dropped', async () => {
    const fake = await startFakeTwilio();
    try {
      const channel = createTwilioChannel({ accountSid: fake.accountSid, authToken: 'wrong', from: '+15555550100', apiBaseUrl: fake.url });
      await expect(channel.send(delivery('+15555550101', NUDGE))).rejects.toMatchObject({ transient: true, problem: 'auth', message: expect.stringMatching(/HTTP 401, error 20003/) });
    } finally {
      await fake.stop();
    }
  });

  it('is a subclass of the SDK RequestClient', async () => {
    const { default: twilio } = await import('twilio');
    expect(new RelayTwilioHttpClient('http://127.0.0.1:1')).toBeInstanceOf(twilio.RequestClient);
  });
});
