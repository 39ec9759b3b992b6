import { WebAPIHTTPError, WebAPIPlatformError, WebAPIRateLimitedError, WebAPIRequestError } from '@slack/web-api';
import { describe, expect, it } from 'vitest';
import { SlackCallError, SlackQueue, classifySlackError } from '../../../src/channels/slack/queue.js';

const platform = (error: string) => new WebAPIPlatformError({ ok: false, error });

describe('classifySlackError', () => {
  const cases: Array<[string, unknown, ReturnType<typeof classifySlackError>]> = [
    ['HTTP 429 with Retry-After', new WebAPIRateLimitedError(3), { kind: 'ratelimited', retryAfterMs: 3000 }],
    ['ratelimited in a 200 body', platform('ratelimited'), { kind: 'ratelimited', retryAfterMs: undefined }],
    ['internal_error', platform('internal_error'), { kind: 'transient', code: 'internal_error' }],
    ['name_taken', platform('name_taken'), { kind: 'permanent', code: 'name_taken' }],
    ['invalid_auth', platform('invalid_auth'), { kind: 'permanent', code: 'invalid_auth' }],
    ['HTTP 502', new WebAPIHTTPError(502, 'Bad Gateway', {}), { kind: 'transient', code: 'http_502' }],
    ['HTTP 404', new WebAPIHTTPError(404, 'Not Found', {}), { kind: 'permanent', code: 'http_404' }],
    ['connection refused', new WebAPIRequestError(new Error('fetch failed', { cause: Object.assign(new Error('x'), { code: 'ECONNREFUSED' }) })), { kind: 'transient', code: 'unreachable (ECONNREFUSED)' }],
    ['a bug', new TypeError('x is undefined'), { kind: 'permanent', code: 'unexpected_error' }],
  ];
  for (const [name, error, verdict] of cases) {
    it(name, () => expect(classifySlackError(error)).toEqual(verdict));
  }
});

describe('SlackQueue', () => {
  it('runs calls one at a time, in order', async () => {
    const queue = new SlackQueue();
    const log: string[] = [];
    const call = (name: string, ms: number) =>
      queue.run(name, async () => {
        log.push(`start ${name}`);
        await new Promise((r) => setTimeout(r, ms));
        log.push(`end ${name}`);
      });
    await Promise.all([call('a', 20), call('b', 1)]);
    expect(log).toEqual(['start a', 'end a', 'start b', 'end b']);
  });

  it('gives up after maxAttempts on transient errors, and at once on permanent ones', async () => {
    const queue = new SlackQueue({ backoffBaseMs: 1, maxAttempts: 3 });
    let tries = 0;
    const transient = queue.run('conversations.info', async () => {
      tries += 1;
      throw platform('service_unavailable');
    });
    await expect(transient).rejects.toMatchObject({ method: 'conversations.info', code: 'service_unavailable', transient: true });
    expect(tries).toBe(3);

    tries = 0;
    const permanent = queue.run('conversations.kick', async () => {
      tries += 1;
      throw platform('restricted_action');
    });
    await expect(permanent).rejects.toBeInstanceOf(SlackCallError);
    expect(tries).toBe(1);
  });

  it('fails a call whose Retry-After is longer than it may wait, rather than stall everything', async () => {
    const queue = new SlackQueue({ maxRetryAfterMs: 500 });
    await expect(queue.run('chat.postMessage', () => Promise.reject(new WebAPIRateLimitedError(30)))).rejects.toMatchObject({ code: 'ratelimited' });
  });

  it('stop() ends a wait at once', async () => {
    const queue = new SlackQueue({ backoffBaseMs: 60_000 });
    const waiting = queue.run('auth.test', () => Promise.reject(platform('fatal_error')));
    await new Promise((r) => setTimeout(r, 10));
    queue.stop();
    await expect(waiting).rejects.toMatchObject({ code: 'stopped' });
  });
});
