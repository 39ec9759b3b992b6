/**
 * Worst-case timing of every pattern and parser that sees user bytes (issue 10
 * item 14): one table, one row per pattern or parser, each fed the input that
 * is worst for it (a few MB where the size is not bounded before it runs, the
 * bound where it is). The wall-clock bounds are generous for a loaded two-core
 * CI machine; the quadratic versions these rows replace took from seconds to
 * hours on the same inputs (see the commit messages and SECURITY.md).
 *
 * Not in the table, and why:
 * - src/config.ts, src/smtp/tls.ts: configuration, not user input.
 * - src/smtp/backoff.ts ipKey: the peer address from the socket.
 * - JSON bodies (express.json, JSON.parse): linear; 100,000-deep nesting and
 *   oversize bodies are in test/security/hostile-http.test.ts.
 * - smtp-server's command parser: lines are capped at 16 KiB by smtp-server
 *   (maxCommandLength) before its regexes run, and its address patterns have
 *   no ambiguous repetition.
 * - The announcement checks (src/policy/statement.ts, dates.ts, normalise.ts,
 *   phrases.ts) have their own table: test/policy/statement-linear.test.ts.
 */
import fc from 'fast-check';
import MailComposer from 'nodemailer/lib/mail-composer';
import twilio from 'twilio';
import { describe, expect, it } from 'vitest';
import { RelayError } from '../../src/errors.js';
import { isBase64 } from '../../src/http/routes/emails.js';
import { checkAddress } from '../../src/mail/address.js';
import { bodyTagEnd, composeEncryptedEnvelope, composePlain, type MessageContent } from '../../src/mime/compose.js';
import { parsePublicKey } from '../../src/pgp/keys.js';
import { createDomainMatcher } from '../../src/policy/domains.js';
import { decideSms } from '../../src/policy/sms.js';
import { subjectTokens } from '../../src/smtp/incident-resolution.js';
import { checkMimeLimits, headerParams } from '../../src/smtp/mime-limits.js';
import { MimeReader } from '../../src/smtp/mime-pool.js';
import { parseSubmission } from '../../src/smtp/parse.js';
import { singleLine } from '../../src/smtp/replies.js';
import { emailAddress, headerText, isMessageId, parseInput, phoneNumber } from '../../src/validation.js';

const MB = 1024 * 1024;

/** One row: where the pattern lives, what it is fed, and the bound. `prepare` builds the input untimed and returns the timed work. */
interface Row {
  where: string;
  what: string;
  boundMs: number;
  prepare: () => () => unknown;
}

function refusedWith(code: string, fn: () => unknown): () => unknown {
  return () => {
    try {
      fn();
    } catch (err) {
      expect((err as RelayError).code).toBe(code);
      return;
    }
    throw new Error('expected a refusal');
  };
}

async function refusedAsync(code: string, promise: Promise<unknown>): Promise<void> {
  try {
    await promise;
  } catch (err) {
    expect(err).toBeInstanceOf(RelayError);
    expect((err as RelayError).code).toBe(code);
    return;
  }
  throw new Error('expected a refusal');
}

function message(overrides: Partial<MessageContent>): MessageContent {
  return {
    messageId: '<id@corp.example>',
    date: new Date(0),
    from: { address: 'ic@corp.example' },
    to: [{ address: 'sec@corp.example' }],
    cc: [],
    text: 'x',
    attachments: [],
    ...overrides,
  };
}

// One reader for the rows that parse MIME; its workers start before the timed part.
const reader = new MimeReader({ size: 1 });
const envelope = { mailFrom: 'ic@corp.example', rcptTo: ['sec@corp.example'] };

const ROWS: Row[] = [
  // ---------------------------------------------------------------- src/validation.ts
  {
    where: 'src/validation.ts headerText',
    what: '5 MB one-line value (control-character scan)',
    boundMs: 3_000,
    prepare: () => {
      const s = 'a'.repeat(5 * MB);
      return () => expect(parseInput(headerText(10 * MB), s)).toBe(s);
    },
  },
  {
    where: 'src/validation.ts isMessageId',
    what: '5 MB "<aaa…" with no @ or >',
    boundMs: 3_000,
    prepare: () => {
      const s = `<${'a'.repeat(5 * MB)}`;
      return () => expect(isMessageId(s)).toBe(false);
    },
  },
  {
    where: 'src/validation.ts phoneNumber',
    what: '5 MB of digits',
    boundMs: 3_000,
    prepare: () => {
      const s = `+${'1'.repeat(5 * MB)}`;
      return () => expect(phoneNumber.safeParse(s).success).toBe(false);
    },
  },
  {
    where: 'src/mail/address.ts (validation emailAddress, emailParam, composer, domains, SMTP)',
    what: '5 MB address-like value, and 100,000 addresses at the 254-character limit',
    boundMs: 3_000,
    prepare: () => {
      const huge = `${'a%'.repeat(2.5 * MB)}@corp.example`;
      const longest = `${'l'.repeat(64)}@${`${'d'.repeat(61)}.`.repeat(3)}abc`;
      const internal = createDomainMatcher(['corp.example', '*.corp.example']);
      return () => {
        expect(checkAddress(huge)).toMatchObject({ ok: false, fault: 'too_long' });
        expect(emailAddress.safeParse(huge).success).toBe(false);
        for (let i = 0; i < 100_000; i++) checkAddress(longest);
        expect(internal(huge)).toBe(false);
      };
    },
  },
  // ---------------------------------------------------------------- src/mime/compose.ts
  {
    where: 'src/mime/compose.ts withHtmlTopic (bodyTagEnd)',
    what: '2 MB of "<body" with a subject (was quadratic: 400 KB took 28 s)',
    boundMs: 3_000,
    prepare: () => {
      const html = '<body'.repeat(400_000);
      return () => {
        expect(bodyTagEnd(html)).toBe(-1);
        expect(composePlain(message({ html, topic: 'status' })).length).toBeGreaterThan(2_000_000);
      };
    },
  },
  {
    where: 'src/mime/compose.ts text and HTML bodies (newlines, quoted-printable, HTML escaping of the topic)',
    // Linear, but about 1 µs per bare CR (each becomes a CRLF line of its own): sizes and bound leave room for a loaded machine.
    what: '1 MB of bare CRs, 2 MB of "=" in one line, 0.5 MB topic of "&<>"',
    boundMs: 15_000,
    prepare: () => {
      const text = '\r'.repeat(MB);
      const html = '='.repeat(2 * MB);
      const topic = '&<>"\''.repeat(100_000);
      return () => expect(composePlain(message({ text, html, topic })).length).toBeGreaterThan(4 * MB);
    },
  },
  {
    where: 'src/mime/compose.ts header folding, display names, mediaType and charset patterns, RFC 2231 file names',
    what: '100 recipients with 200-character names, a 1 MB content type, a 1 MB non-ASCII file name',
    boundMs: 3_000,
    prepare: () => {
      const to = Array.from({ length: 100 }, (_, i) => ({ name: 'a b '.repeat(50), address: `r${i}@corp.example` }));
      const contentType = `text/plain;${`charset=${'a'.repeat(100)}"x;`.repeat(10_000)}`;
      const spaced = `${' '.repeat(MB)}a/a${' '.repeat(MB)}x`;
      const filename = 'é'.repeat(MB / 2);
      const attachments = [
        { filename: 'a.txt', contentType, content: Buffer.from('x') },
        { filename, contentType: 'text/plain', content: Buffer.from('x') },
      ];
      return () => {
        expect(composePlain(message({ to, attachments })).length).toBeGreaterThan(MB);
        refusedWith('invalid_request', () => composePlain(message({ attachments: [{ filename: 'a', contentType: spaced, content: Buffer.from('x') }] })))();
      };
    },
  },
  {
    where: 'src/mime/compose.ts armored message check',
    what: '5 MB armor with a bad byte at the end',
    boundMs: 3_000,
    prepare: () => {
      const armor = `-----BEGIN PGP MESSAGE-----\n\n${'QUFB\n'.repeat(MB)}\x01\n-----END PGP MESSAGE-----\n`;
      return refusedWith('internal', () => composeEncryptedEnvelope(message({}), armor, { fingerprint: '0123456789ABCDEF0123456789ABCDEF01234567' }));
    },
  },
  // ---------------------------------------------------------------- src/smtp/*.ts
  {
    where: 'src/smtp/mime-limits.ts checkMimeLimits',
    what: '24 MB of delimiter look-alikes under 200 declared boundaries, and 24 MB without a line break',
    boundMs: 5_000,
    prepare: () => {
      const declared = Array.from({ length: 200 }, (_, i) => `Content-Type: multipart/mixed; boundary="b${i}${'x'.repeat(150)}"`).join('\r\n');
      const lookalikes = Buffer.from(`${declared}\r\n\r\n${`--b1${'x'.repeat(149)}\r\n`.repeat(160_000)}`, 'latin1');
      const oneLine = Buffer.alloc(24 * MB, 0x61);
      return () => {
        expect(lookalikes.length).toBeGreaterThan(23 * MB);
        // Every line is short enough to be a delimiter and is looked up; none is one.
        checkMimeLimits(lookalikes);
        refusedWith('payload_too_large', () => checkMimeLimits(oneLine))();
      };
    },
  },
  {
    where: 'src/smtp/mime-limits.ts headerParams (libmime parameter grammar)',
    what: '5 MB of quotes, escapes and semicolons',
    boundMs: 3_000,
    prepare: () => {
      const value = `multipart/mixed; ${'a="\\";b'.repeat(700_000)}`;
      return () => expect(headerParams(value).value).toBe('multipart/mixed');
    },
  },
  {
    where: 'src/smtp/mime-read.ts mailparser (in a worker)',
    what: 'HTML-only message of 300,000 <div> (html-to-text took 40 s on the event loop)',
    boundMs: 15_000,
    prepare: () => {
      const raw = Buffer.from(`From: ic@corp.example\r\nTo: sec@corp.example\r\nContent-Type: text/html\r\n\r\n${'<div>'.repeat(300_000)}\r\n`);
      return async () => expect((await reader.read(raw)).html?.length).toBeGreaterThanOrEqual(1_500_000);
    },
  },
  {
    where: 'src/smtp/mime-read.ts mailparser address headers (in a worker)',
    what: 'the costliest address headers the limits let through: 15 parts each with a 32 KB "To: a:a:a…"',
    boundMs: 15_000,
    prepare: () => {
      const part = `To: ${'a:'.repeat(16_000)}\r\nContent-Type: text/plain\r\n\r\nx\r\n`;
      const raw = Buffer.from(`From: ic@corp.example\r\nTo: sec@corp.example\r\nContent-Type: multipart/mixed; boundary=b\r\n\r\n${`--b\r\n${part}`.repeat(15)}--b--\r\n`);
      return async () => expect((await reader.read(raw)).attachments).toHaveLength(0);
    },
  },
  {
    where: 'src/smtp/mime-pool.ts deadline',
    what: '24 MB of two-character lines (mailparser: ~12 s) against a 1 s deadline',
    boundMs: 8_000,
    prepare: () => {
      const raw = Buffer.from(`From: ic@corp.example\r\nTo: a@corp.example\r\n\r\n${'ab\r\n'.repeat(6_000_000)}`);
      const strict = new MimeReader({ size: 1, deadlineMs: 1_000 });
      return async () => {
        await refusedAsync('message_unparsable', strict.read(raw));
        await strict.close();
      };
    },
  },
  {
    where: 'src/smtp/parse.ts (header addresses, References, attachment names, subject)',
    what: 'headers near their 32 KB limit: 1,000 Cc addresses, 1,000 References (refused: at most 100), a name of 9,000 separators, 12,000 control characters and spaces in the subject',
    boundMs: 15_000,
    prepare: () => {
      const cc = Array.from({ length: 1_000 }, (_, i) => `person.${i}@corp.example`).join(', ');
      const references = Array.from({ length: 1_000 }, (_, i) => `<r${i}@corp.example>`).join(' \t ');
      return () => {
        let raw: Buffer;
        return (async () => {
          raw = await new MailComposer({
            from: 'ic@corp.example',
            to: 'sec@corp.example',
            cc,
            subject: '\x01 '.repeat(6_000),
            headers: { References: references },
            text: 'x',
            attachments: [{ filename: '/\\.'.repeat(3_000), content: 'x' }],
          })
            .compile()
            .build();
          await expect(parseSubmission(raw, envelope, reader)).rejects.toThrow('The References header names 1000 messages; at most 100.');
        })();
      };
    },
  },
  {
    where: 'src/smtp/replies.ts singleLine',
    what: '5 MB of alternating control characters and spaces',
    boundMs: 3_000,
    prepare: () => {
      const text = '\x00 \u2028  '.repeat(MB);
      return () => expect(singleLine(text).length).toBeLessThanOrEqual(480);
    },
  },
  {
    where: 'src/smtp/incident-resolution.ts subjectTokens',
    what: 'the longest subject SMTP passes (998 characters), hyphens between letters; quadratic in a token, bounded by that limit',
    boundMs: 3_000,
    prepare: () => {
      const subject = `a${'-'.repeat(996)}a`;
      return () => {
        for (let i = 0; i < 100; i++) expect(subjectTokens(subject)).toHaveLength(1);
      };
    },
  },
  // ---------------------------------------------------------------- src/http/*.ts, src/http/routes/*.ts
  {
    where: 'src/http/routes/emails.ts isBase64',
    what: '30 MB of base64 with one bad character at the end',
    boundMs: 3_000,
    prepare: () => {
      const s = `${'A'.repeat(30 * MB - 4)}AA*=`;
      return () => expect(isBase64(s)).toBe(false);
    },
  },
  {
    where: 'src/http/routes/*.ts field patterns (content type, file name, Idempotency-Key, Slack user id, Twilio SID) and src/http/auth.ts Bearer',
    what: '5 MB values against each anchored pattern',
    boundMs: 3_000,
    prepare: () => {
      const big = 'a'.repeat(5 * MB);
      const patterns = [
        /^[a-z0-9][a-z0-9!#$&^_.+-]{0,126}\/[a-z0-9][a-z0-9!#$&^_.+-]{0,126}$/i,
        /^[\x21-\x7e]{1,200}$/,
        /^[UW][A-Z0-9]{2,20}$/,
        /^(SM|MM)[0-9a-f]{32}$/i,
        /^Bearer ([\x21-\x7e]{1,200})$/,
        /[/\\]/,
        /[\x00-\x1f\x7f]/,
      ];
      return () => {
        for (const p of patterns) expect(p.test(`${big}/${big}`)).toBe(p.source === '[/\\\\]');
      };
    },
  },
  {
    where: 'src/http/routes/sms.ts twilio.validateRequest',
    what: 'the 64 KiB webhook form as 8,000 parameters',
    boundMs: 3_000,
    prepare: () => {
      const params = Object.fromEntries(Array.from({ length: 8_000 }, (_, i) => [`k${i}`, 'v']));
      return () => expect(twilio.validateRequest('token', 'bad-signature', 'https://relay.example/webhooks/twilio/sms', params)).toBe(false);
    },
  },
  // ---------------------------------------------------------------- src/policy/*.ts
  {
    where: 'src/policy/sms.ts PHONE_LIKE and the body fingerprint',
    what: '5 MB phone-like entry and a 5 MB body',
    boundMs: 3_000,
    prepare: () => {
      const entry = `+${'1 '.repeat(2.5 * MB)}x`;
      const body = 'ä'.repeat(5 * MB);
      return () => {
        const decision = decideSms({ sender: 'ic@corp.example', senderOnRoster: true, incidentStatus: 'open', securityMembers: 1, nudge: 'Please join Slack ASAP.', body, to: [entry], members: new Map(), nowMs: 0, intervalMs: 0 });
        expect(decision.outcome === 'refuse' && decision.error.code).toBe('invalid_request');
      };
    },
  },
  // ---------------------------------------------------------------- src/pgp/keys.ts
  {
    where: 'src/pgp/keys.ts armor patterns and openpgp.readKeys',
    what: 'a 5 MB upload (refused by size first), and 64 KiB of BEGIN look-alikes and of junk packets',
    boundMs: 3_000,
    prepare: () => {
      const huge = 'a'.repeat(5 * MB);
      const lookalikes = `${'-----BEGIN PGP A\n'.repeat(3_000)}-----BEGIN PGP PUBLIC KEY BLOCK-----${' \n'.repeat(5_000)}x`;
      const junk = `-----BEGIN PGP PUBLIC KEY BLOCK-----\n\n${'mQINBGAAAAA'.repeat(5_500)}\n-----END PGP PUBLIC KEY BLOCK-----\n`;
      return async () => {
        expect(lookalikes.length).toBeLessThan(64 * 1024);
        expect(junk.length).toBeLessThan(64 * 1024);
        await refusedAsync('invalid_request', parsePublicKey(huge));
        await refusedAsync('invalid_request', parsePublicKey(lookalikes));
        await refusedAsync('invalid_request', parsePublicKey(junk));
      };
    },
  },
];

describe('worst-case input for every pattern and parser that sees user bytes', () => {
  it('starts the MIME reader thread before anything is timed', async () => {
    await reader.read(Buffer.from('From: a@corp.example\r\n\r\nx'));
  });

  it.each(ROWS.map((row) => [`${row.where}: ${row.what}`, row] as const))('%s', async (_name, row) => {
    const work = row.prepare();
    const started = performance.now();
    await work();
    const elapsed = performance.now() - started;
    expect(elapsed, `${row.where}: ${Math.round(elapsed)} ms`).toBeLessThan(row.boundMs);
  }, 60_000);
});

describe('the linear replacements answer as the patterns they replace', () => {
  it('bodyTagEnd finds the same <body …> as /<body\\b[^>]*>/i', () => {
    const piece = fc.constantFrom('<body', '<BODY', '<Body ', '<bodyx', '<body_', '<body-', '>', 'x', ' ', '\n', '<', 'ody');
    fc.assert(
      fc.property(fc.array(piece, { maxLength: 12 }), (pieces) => {
        const html = pieces.join('');
        const old = /<body\b[^>]*>/i.exec(html);
        expect(bodyTagEnd(html)).toBe(old === null ? -1 : old.index + old[0].length);
      }),
      { numRuns: 5_000 },
    );
  });
});
