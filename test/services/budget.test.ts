/**
 * Bytes bounded before they are made (issue 10 item 15): the estimate of one
 * request is never below what the real composer and encryption produce, the
 * per-request limit lets one large attachment to 100 copies through when the
 * payload is stored once and refuses it when every copy would be whole, and
 * the in-flight budget refuses with exact codes, statuses and replies.
 */
import { randomBytes } from 'node:crypto';
import express from 'express';
import fc from 'fast-check';
import { encode as qpEncode, wrap as qpWrap } from 'nodemailer/lib/qp';
import * as openpgp from 'openpgp';
import { pino } from 'pino';
import supertest from 'supertest';
import { beforeAll, describe, expect, it } from 'vitest';
import { RelayError } from '../../src/errors.js';
import { errorHandler } from '../../src/http/errors.js';
import { composePlain, composeProtectedPart, type MessageContent } from '../../src/mime/compose.js';
import { composeSealed, inThreadEncryptor, renderedCopyLength } from '../../src/pgp/pgp-mime.js';
import { assertRequestBytes, base64Bytes, defaultInFlightBytes, estimateRequestBytes, InFlightBudget, quotedPrintableBound, requestBytesLimit, type RequestContent } from '../../src/services/budget.js';
import { smtpReply } from '../../src/smtp/replies.js';
import { sharedRelayKey } from '../helpers/relay.js';

const MAX = 26_214_400; // RELAY_MAX_MESSAGE_BYTES default

function thrown(fn: () => unknown): RelayError {
  try {
    fn();
  } catch (err) {
    expect(err).toBeInstanceOf(RelayError);
    return err as RelayError;
  }
  return expect.fail('expected a RelayError');
}

describe('InFlightBudget', () => {
  it('reserves up to its limit, refuses beyond it, and frees on release (once)', () => {
    const budget = new InFlightBudget({ limitBytes: 100 });
    const a = budget.tryReserve(60)!;
    expect(budget.inFlight).toBe(60);
    expect(budget.tryReserve(41)).toBeUndefined();
    const b = budget.tryReserve(40)!; // exactly the limit
    expect(budget.inFlight).toBe(100);
    expect(budget.tryReserve(1)).toBeUndefined();
    a();
    a(); // a second release frees nothing more
    expect(budget.inFlight).toBe(40);
    expect(budget.tryReserve(61)).toBeUndefined();
    const c = budget.tryReserve(60)!;
    b();
    c();
    expect(budget.inFlight).toBe(0);
    expect(budget.tryReserve(0)).toBeTypeOf('function');
  });

  it('refuses nonsense sizes and limits instead of miscounting', () => {
    const budget = new InFlightBudget({ limitBytes: 100 });
    for (const bad of [-1, 1.5, Number.NaN, Number.POSITIVE_INFINITY]) expect(() => budget.tryReserve(bad)).toThrow(/non-negative integer/);
    for (const bad of [0, -5, 2.5, Number.NaN]) expect(() => new InFlightBudget({ limitBytes: bad })).toThrow(/positive integer/);
    expect(budget.inFlight).toBe(0);
  });

  it('refuses with unavailable and Retry-After while full: HTTP 503, SMTP 451 4.3.0', async () => {
    const budget = new InFlightBudget({ limitBytes: 1000, retryAfterSeconds: 7 });
    const hold = budget.reserve(900);
    const err = thrown(() => budget.reserve(200));
    expect(err.code).toBe('unavailable');
    expect(err.retryAfter).toBe(7);
    expect(err.message).toBe('The relay is composing other large messages right now and accepted nothing; try again in 7 s.');
    expect(smtpReply(err, 'data')).toEqual({ code: 451, text: `4.3.0 unavailable: ${err.message}` });
    const app = express();
    app.post('/send', () => {
      budget.reserve(200);
    });
    app.use(errorHandler(pino({ level: 'silent' })));
    const res = await supertest(app).post('/send');
    expect(res.status).toBe(503);
    expect(res.headers['retry-after']).toBe('7');
    expect(res.body.error).toMatchObject({ code: 'unavailable', details: { bytes: 200, inFlight: 900, limit: 1000 } });
    hold();
    budget.reserve(200)();
    expect(budget.inFlight).toBe(0);
  });

  it('refuses a request larger than the whole budget as payload_too_large (waiting would never help)', () => {
    const budget = new InFlightBudget({ limitBytes: 1000 });
    const err = thrown(() => budget.reserve(1001));
    expect(err.code).toBe('payload_too_large');
    expect(err.httpStatus).toBe(413);
    expect(smtpReply(err, 'data').code).toBe(552);
  });

  it('defaults to 4 × RELAY_MAX_MESSAGE_BYTES, room for the largest request twice', () => {
    expect(defaultInFlightBytes(MAX)).toBe(104_857_600);
    expect(requestBytesLimit(MAX)).toBe(52_428_800);
  });
});

describe('quotedPrintableBound', () => {
  it('is never below what the composer’s quoted-printable (nodemailer encode + wrap at 76) writes', () => {
    const piece = fc.constantFrom('a', ' ', '\t', '\n', '\r', '\r\n', '=', 'ü', '€', '😀', '\u0000', '.', 'x'.repeat(80), ' \n', '😀'.repeat(30));
    fc.assert(
      fc.property(fc.array(fc.oneof(piece, fc.string({ unit: 'binary', maxLength: 40 })), { maxLength: 60 }), (pieces) => {
        const text = pieces.join('');
        const normalised = text.replace(/\r\n|\r|\n/g, '\r\n');
        const actual = qpWrap(qpEncode(Buffer.from(normalised, 'utf8')), 76).length;
        expect(quotedPrintableBound(text)).toBeGreaterThanOrEqual(actual);
      }),
      { numRuns: 2000 },
    );
  });

  it('holds for the worst cases one at a time: escaped spaces before line ends, UTF-8 kept whole across soft breaks, early wraps at spaces', () => {
    const worst = [' \n'.repeat(2000), '\t\r\n'.repeat(1000), '\r'.repeat(3000), '😀'.repeat(3000), 'ü'.repeat(5000), '€'.repeat(4000), '='.repeat(5000), `${'x'.repeat(50)} `.repeat(500), `${'='.repeat(16)} `.repeat(500), '\u0000'.repeat(3000)];
    for (const text of worst) {
      const actual = qpWrap(qpEncode(Buffer.from(text.replace(/\r\n|\r|\n/g, '\r\n'), 'utf8')), 76).length;
      expect(quotedPrintableBound(text), JSON.stringify(text.slice(0, 12))).toBeGreaterThanOrEqual(actual);
    }
  });

  it('stays close for ordinary prose (within 15 %)', () => {
    const prose = 'The attacker pivoted from the VPN appliance to the build server at 09:14 UTC.\n'.repeat(2000);
    const actual = qpWrap(qpEncode(Buffer.from(prose.replace(/\n/g, '\r\n'))), 76).length;
    expect(quotedPrintableBound(prose) / actual).toBeLessThan(1.15);
  });
});

describe('base64Bytes', () => {
  it('is the exact size of base64 in 76-character CRLF lines', () => {
    for (const n of [0, 1, 2, 3, 56, 57, 58, 114, 1000, 6_000_000]) {
      const b64 = Buffer.alloc(n).toString('base64');
      expect(base64Bytes(n)).toBe(b64.length + 2 * Math.max(0, Math.ceil(b64.length / 76) - 1));
    }
  });
});

describe('estimateRequestBytes, against the real composer and encryption', () => {
  let signing: openpgp.PrivateKey;
  const keys: openpgp.PublicKey[] = [];

  beforeAll(async () => {
    signing = (await sharedRelayKey()).privateKey;
    // ECC keys and one RSA-3072 key (the largest session key packets the test makes).
    for (let i = 0; i < 4; i++) keys.push((await openpgp.generateKey({ userIDs: [{ email: `k${i}@x.example` }], format: 'object' })).publicKey);
    keys.push((await openpgp.generateKey({ type: 'rsa', rsaBits: 3072, userIDs: [{ email: 'rsa@x.example' }], format: 'object' })).publicKey);
  }, 120_000);

  const name = fc.option(fc.string({ unit: 'grapheme', maxLength: 200 }).filter((s) => !/[\x00-\x1f\x7f\u0085\u2028\u2029]/.test(s)), { nil: undefined });
  const address = (i: number) => fc.tuple(name, fc.constant(`r${i}@corp.example`)).map(([n, a]) => ({ ...(n === undefined ? {} : { name: n }), address: a }));
  const oneLine = fc.string({ unit: 'grapheme', maxLength: 300 }).filter((s) => !/[\x00-\x1f\x7f\u0085\u2028\u2029]/.test(s));

  it('is never below the composed and encrypted sizes, plain or encrypted, for any content', async () => {
    await fc.assert(
      fc.asyncProperty(
        fc.record({
          text: fc.string({ unit: 'binary', maxLength: 3000 }),
          html: fc.option(fc.string({ unit: 'binary', maxLength: 2000 }), { nil: undefined }),
          subject: fc.option(oneLine, { nil: undefined }),
          attachments: fc.array(fc.record({ filename: oneLine.filter((s) => s.trim() !== ''), size: fc.nat({ max: 20_000 }) }), { maxLength: 3 }),
          to: fc.integer({ min: 1, max: 3 }),
          cc: fc.integer({ min: 0, max: 3 }),
          bcc: fc.integer({ min: 0, max: 3 }),
          encrypted: fc.boolean(),
          references: fc.array(fc.constant('<0123456789abcdef-0123456789abcdef@mail.example.org>'), { maxLength: 5 }),
        }),
        fc.array(address(0), { minLength: 8, maxLength: 8 }),
        async (r, addrs) => {
          const content: MessageContent = {
            messageId: '<3f1c2a9e-6d0b-4a57-9d1e-2b8c7e5f0a11@corp.example>',
            date: new Date(),
            from: addrs[0]!,
            to: addrs.slice(1, 1 + r.to).map((a, i) => ({ ...a, address: `to${i}@corp.example` })),
            cc: addrs.slice(4, 4 + r.cc).map((a, i) => ({ ...a, address: `cc${i}@corp.example` })),
            topic: r.subject,
            text: r.text,
            html: r.html,
            attachments: r.attachments.map((a) => ({ filename: a.filename, contentType: 'application/octet-stream', content: randomBytes(a.size) })),
            references: r.references.length > 0 ? r.references : undefined,
            inReplyTo: r.references[0],
          };
          const request: RequestContent = { ...content, subject: r.subject };
          const visibleKeys = keys.slice(0, 1 + ((r.to + r.cc) % keys.length));
          const keysPerCopy = [visibleKeys.length, ...Array.from({ length: r.bcc }, () => 1)];
          const estimate = estimateRequestBytes(request, { encrypted: r.encrypted, headerAddresses: 1 + r.to + r.cc, keysPerCopy });
          if (!r.encrypted) {
            expect(estimate.stored).toBeGreaterThanOrEqual(composePlain(content).length);
            return;
          }
          expect(estimate.payload).toBeGreaterThanOrEqual(composeProtectedPart(content).length);
          const copies = keysPerCopy.map((n, i) => ({ recipients: [`c${i}@x.example`], keys: i === 0 ? visibleKeys : [keys[4]!] }));
          const sealed = await composeSealed(content, copies, inThreadEncryptor(signing));
          const envelope = sealed.envelope.head.length + sealed.envelope.tail.length;
          expect(estimate.shared).toBeGreaterThanOrEqual(sealed.shared.length);
          // The OpenPGP overhead on its own (signature, packet headers, partial lengths, MDC), not only the total.
          expect(estimate.shared - estimate.payload).toBeGreaterThanOrEqual(sealed.shared.length - composeProtectedPart(content).length);
          sealed.copies.forEach((c, i) => expect(estimate.perCopy[i]).toBeGreaterThanOrEqual(envelope + c.keyPackets.length));
          const stored = sealed.shared.length + sealed.copies.reduce((sum, c) => sum + envelope + c.keyPackets.length, 0);
          expect(estimate.stored).toBeGreaterThanOrEqual(stored);
          const rendered = sealed.copies.reduce((sum, c) => sum + renderedCopyLength(sealed.envelope, c.keyPackets.length, sealed.shared.length), 0);
          expect(estimate.rendered).toBeGreaterThanOrEqual(rendered);
        },
      ),
      { numRuns: 40 },
    );
  }, 120_000);

  it('6 MB attachment to 1 To and 99 Bcc: stored once it fits the limit, close to the real size; as 100 whole copies it is refused', async () => {
    const content: MessageContent = {
      messageId: '<3f1c2a9e-6d0b-4a57-9d1e-2b8c7e5f0a11@corp.example>',
      date: new Date(),
      from: { name: 'Incident Commander', address: 'ic@corp.example' },
      to: [{ name: 'Outside Counsel', address: 'counsel@lawfirm.example' }],
      cc: [],
      text: 'Disk image attached.',
      attachments: [{ filename: 'disk.img', contentType: 'application/octet-stream', content: randomBytes(6_000_000) }],
    };
    const keysPerCopy = [2, ...Array.from({ length: 99 }, () => 1)];
    const estimate = estimateRequestBytes(content, { encrypted: true, headerAddresses: 2, keysPerCopy });
    const copies = keysPerCopy.map((n, i) => ({ recipients: [`c${i}@x.example`], keys: i === 0 ? keys.slice(0, 2) : [keys[i % 4]!] }));
    const sealed = await composeSealed(content, copies, inThreadEncryptor(signing));
    const envelope = sealed.envelope.head.length + sealed.envelope.tail.length;
    const stored = sealed.shared.length + sealed.copies.reduce((sum, c) => sum + envelope + c.keyPackets.length, 0);
    expect(estimate.stored).toBeGreaterThanOrEqual(stored);
    // A bound, not a guess: within 15 % plus the fixed allowances of 100 copies (about 1.3 MB).
    expect(estimate.stored).toBeLessThan(stored * 1.15 + 1_500_000);
    expect(() => assertRequestBytes(estimate.stored, 100, MAX)).not.toThrow();

    const err = thrown(() => assertRequestBytes(estimate.rendered, 100, MAX));
    expect(estimate.rendered).toBeGreaterThan(800_000_000);
    expect(err.code).toBe('payload_too_large');
    expect(err.httpStatus).toBe(413);
    expect(err.details).toEqual({ bytes: estimate.rendered, limit: 52_428_800, copies: 100 });
    expect(err.message).toBe(
      `This message would make the relay store about ${estimate.rendered} bytes for 100 copies; one message may store at most 52428800 (2 × RELAY_MAX_MESSAGE_BYTES). ` +
        'Send the attachment once to fewer Bcc recipients (or put them in To or Cc), send long text as an attachment (it encodes more compactly), or split the message.',
    );
    expect(smtpReply(err, 'data')).toEqual({ code: 552, text: expect.stringMatching(/^5\.3\.4 payload_too_large: This message would make the relay store about \d+ bytes for 100 copies/) });
  }, 60_000);

  it('refuses the largest allowed text when it encodes beyond the limit, and lets the same bytes through as an attachment', () => {
    const text = 'ü'.repeat(MAX / 2); // MAX bytes of UTF-8, every byte escaped by quoted-printable
    const asText = estimateRequestBytes({ text, attachments: [] }, { encrypted: true, headerAddresses: 2, keysPerCopy: [2] });
    expect(thrown(() => assertRequestBytes(asText.stored, 1, MAX)).code).toBe('payload_too_large');
    const asFile = estimateRequestBytes({ text: '', attachments: [{ filename: 'notes.txt', contentType: 'text/plain', content: new Uint8Array(MAX) }] }, { encrypted: true, headerAddresses: 2, keysPerCopy: [2] });
    expect(() => assertRequestBytes(asFile.stored, 1, MAX)).not.toThrow();
  });
});
