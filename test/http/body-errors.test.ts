/**
 * A request body the relay cannot read is the client's mistake, answered
 * with a code that says so (400 invalid_request, or 413 payload_too_large
 * for a form with too many fields), never a 500 with no code; and a form is
 * never told it is not valid JSON. The JSON API here; the console's forms in
 * test/console/http.test.ts ("a form with more than 1,000 fields …").
 */
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { MAX_FORM_FIELDS, toRelayError } from '../../src/http/errors.js';
import { createTestRelay, type TestRelay } from '../helpers/relay.js';

const auth = (token: string) => ({ Authorization: `Bearer ${token}` });
const fields = (n: number) => Array.from({ length: n }, (_, i) => `f${i}=1`).join('&');

let relay: TestRelay;
beforeAll(async () => {
  // Twilio configured, so its form webhook exists; nothing here reaches Twilio.
  relay = await createTestRelay({ twilio: { accountSid: `AC${'0'.repeat(32)}`, authToken: 'test-auth-token', from: '+15555550100' } });
});
afterAll(async () => {
  await relay.ctx.store.close();
});

describe('the JSON API', () => {
  it('answers a gzip body that does not inflate with 400 invalid_request, not a 500', async () => {
    const res = await relay.request.post('/v1/tokens').set(auth(relay.admin)).set('Content-Type', 'application/json').set('Content-Encoding', 'gzip').send('not gzip at all');
    expect(res.status).toBe(400);
    expect(res.body).toEqual({ error: { code: 'invalid_request', message: 'The request body could not be read. Send it again, uncompressed (no Content-Encoding) and as UTF-8.' } });
  });

  it('still calls malformed JSON malformed JSON', async () => {
    const res = await relay.request.post('/v1/tokens').set(auth(relay.admin)).set('Content-Type', 'application/json').send('{"email": ');
    expect(res.status).toBe(400);
    expect(res.body).toEqual({ error: { code: 'invalid_request', message: 'The request body is not valid JSON.' } });
  });

  it('answers a Twilio webhook form with more than 1,000 fields with 413 payload_too_large, not a 500', async () => {
    const res = await relay.request.post('/webhooks/twilio/sms').type('form').send(fields(MAX_FORM_FIELDS + 1));
    expect(res.status).toBe(413);
    expect(res.body).toEqual({
      error: { code: 'payload_too_large', message: 'The form has more than 1000 fields; this relay reads at most 1000. Send fewer fields (a list belongs in one field, one item a line).' },
    });
    // 1,000 fields are read, and the request goes on to the signature check.
    const most = await relay.request.post('/webhooks/twilio/sms').type('form').send(fields(MAX_FORM_FIELDS));
    expect(most.status).toBe(403);
    expect(most.body.error.code).toBe('forbidden');
  });
});

describe('toRelayError', () => {
  // body-parser's shape for a body its parser threw on; no real form reaches it with extended: false, so it is built here as body-parser builds it.
  const parseFailed = () => Object.assign(new Error('Unexpected token'), { status: 400, statusCode: 400, expose: true, type: 'entity.parse.failed' });

  it('says "form", not JSON, when a form does not parse', () => {
    expect(toRelayError(parseFailed(), 'form')?.toJSON()).toEqual({ error: { code: 'invalid_request', message: 'The form could not be read; reload the page and send it again.' } });
    expect(toRelayError(parseFailed())?.toJSON()).toEqual({ error: { code: 'invalid_request', message: 'The request body is not valid JSON.' } });
  });

  it('leaves a server-side error (5xx, or not marked for the client) to the bare 500', () => {
    expect(toRelayError(Object.assign(new Error('stream is not readable'), { status: 500, expose: false, type: 'stream.not.readable' }))).toBeUndefined();
    expect(toRelayError(new Error('boom'))).toBeUndefined();
    expect(toRelayError(Object.assign(new Error('hidden'), { status: 400, expose: false }))).toBeUndefined();
  });
});
