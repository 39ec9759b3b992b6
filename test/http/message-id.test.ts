/**
 * One Message-ID check (isMessageId) for the HTTP route, SMTP parsing and the
 * composer: an id the listeners accept is one the composer writes, so a bad
 * one is refused at the door, before it takes a rate-limit slot.
 */
import { describe, expect, it } from 'vitest';
import { RelayError } from '../../src/errors.js';
import { composePlain, type MessageContent } from '../../src/mime/compose.js';
import { RateLimiter } from '../../src/services/rate-limit.js';
import { parseSubmission } from '../../src/smtp/parse.js';
import { isMessageId } from '../../src/validation.js';
import { createTestRelay } from '../helpers/relay.js';

const CASES: Array<[string, boolean]> = [
  ['<3f1c2a9e-6d0b-4a57-9d1e-2b8c7e5f0a11@corp.example>', true],
  ["<a.b+c!#$%&'*/=?^_`{|}~-@host.example>", true],
  [`<${'l'.repeat(255)}@${'r'.repeat(255)}>`, true],
  ['<a@b@c>', false],
  ['<@b>', false],
  ['<a@>', false],
  ['<nodomain>', false],
  ['<a b@c>', false],
  ['<<a@b>>', false],
  ['<a@b> <c@d>', false],
  ['<a@b>\r\nBcc: x@corp.example', false],
  [`<${'l'.repeat(256)}@r>`, false],
];
// Not in the table: a bare `a@b`. HTTP refuses it (isMessageId wants the
// brackets); mailparser and the composer add the brackets, and `<a@b>` passes.

function composes(id: string): boolean {
  try {
    const message: MessageContent = {
      messageId: '<m@corp.example>',
      date: new Date(),
      from: { address: 'ic@corp.example' },
      to: [{ address: 'sec@corp.example' }],
      cc: [],
      inReplyTo: id,
      text: 'x',
      attachments: [],
    };
    composePlain(message);
    return true;
  } catch (err) {
    if (err instanceof RelayError && err.code === 'invalid_request') return false;
    throw err;
  }
}

async function smtpAccepts(id: string): Promise<boolean> {
  try {
    await parseSubmission(Buffer.from(['From: ic@corp.example', 'To: a@corp.example', `References: ${id}`, '', 'x', ''].join('\r\n')), { mailFrom: 'ic@corp.example', rcptTo: ['a@corp.example'] });
    return true;
  } catch (err) {
    if (err instanceof RelayError && err.code === 'invalid_request') return false;
    throw err;
  }
}

describe('isMessageId', () => {
  it.each(CASES)('%s → %s, and the composer agrees', (id, ok) => {
    expect(isMessageId(id)).toBe(ok);
    expect(composes(id)).toBe(ok);
  });

  it.each(CASES.filter(([id]) => !/[\r\n ]/.test(id)))('SMTP References: %s → %s', async (id, ok) => {
    expect(await smtpAccepts(id)).toBe(ok);
  });
});

describe('POST .../emails with a bad Message-ID', () => {
  it.each(['inReplyTo', 'references'] as const)('refuses <a@b@c> in %s with 400 invalid_request, before the rate limit', async (field) => {
    const relay = await createTestRelay();
    relay.ctx.sendLimiter = new RateLimiter({ perMinute: 1, burst: 1 });
    const auth = { Authorization: `Bearer ${await relay.tokenFor('ic@corp.example')}` };
    const { body } = await relay.request.post('/v1/incidents').set(auth).send({});
    await relay.request.put(`/v1/incidents/${body.codename}/roster/sec@corp.example`).set(auth).send({ name: 'Sec', role: 'security' });
    const url = `/v1/incidents/${body.codename}/emails`;
    const bad = await relay.request
      .post(url)
      .set(auth)
      .send({ to: ['sec@corp.example'], text: 'x', ...(field === 'inReplyTo' ? { inReplyTo: '<a@b@c>' } : { references: ['<ok@corp.example>', '<a@b@c>'] }) });
    expect(bad.status).toBe(400);
    expect(bad.body.error.code).toBe('invalid_request');
    expect(bad.body.error.details.fields[0].field).toBe(field === 'inReplyTo' ? 'inReplyTo' : 'references.1');
    // The refusal took no slot of the one-message budget: a good message still goes.
    const good = await relay.request.post(url).set(auth).send({ to: ['sec@corp.example'], text: 'x', inReplyTo: '<ok@corp.example>' });
    expect(good.status).toBe(202);
    expect((await relay.ctx.store.sql.get<{ n: number }>('SELECT COUNT(*) AS n FROM deliveries'))!.n).toBe(1);
  });
});
