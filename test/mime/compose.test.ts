import { execFileSync } from 'node:child_process';
import { randomBytes } from 'node:crypto';
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { simpleParser, type AddressObject, type ParsedMail } from 'mailparser';
import { describe, expect, it } from 'vitest';
import { RelayError } from '../../src/errors.js';
import {
  FIXED_SUBJECT,
  composeEncryptedEnvelope,
  composeEncryptedEnvelopeParts,
  composePlain,
  composeProtectedPart,
  type MessageContent,
} from '../../src/mime/compose.js';

/** The relay key every encrypted envelope names in its OpenPGP header. */
const SIGNER = { fingerprint: '0123456789ABCDEF0123456789ABCDEF01234567' };
const ARMOR = ['-----BEGIN PGP MESSAGE-----', '', 'hQEMAxxxxxxxxxxxAQf/dummy+payload/only==', '=abcd', '-----END PGP MESSAGE-----', ''].join('\n');

function message(overrides: Partial<MessageContent> = {}): MessageContent {
  return {
    messageId: '<3f1c2a9e-6d0b-4a57-9d1e-2b8c7e5f0a11@example.com>',
    date: new Date(Date.UTC(2025, 0, 2, 3, 4, 5)),
    from: { name: 'Alice Responder', address: 'alice@example.com' },
    to: [{ name: 'Bob Owner', address: 'bob@example.com' }],
    cc: [],
    text: 'The first line of the body.\nSecond line.',
    attachments: [],
    ...overrides,
  };
}

/** Every LF is preceded by CR and every CR followed by LF. */
function expectCrlfOnly(raw: Buffer): void {
  const s = raw.toString('latin1');
  expect(s).not.toMatch(/(?<!\r)\n/);
  expect(s).not.toMatch(/\r(?!\n)/);
  expect(s.endsWith('\r\n')).toBe(true);
}

/** The unfolded top-level header lines, in order. */
function topHeaders(raw: Buffer): string[] {
  const s = raw.toString('latin1');
  const block = s.slice(0, s.indexOf('\r\n\r\n'));
  return block.replace(/\r\n(?=[ \t])/g, '').split('\r\n');
}

function headerNames(raw: Buffer): string[] {
  return topHeaders(raw).map((l) => l.slice(0, l.indexOf(':')));
}

function addresses(field: AddressObject | AddressObject[] | undefined): Array<{ name: string; address: string | undefined }> {
  const list = field === undefined ? [] : Array.isArray(field) ? field : [field];
  return list.flatMap((o) => o.value.map((v) => ({ name: v.name, address: v.address })));
}

function expectInvalid(fn: () => unknown): void {
  try {
    fn();
  } catch (err) {
    expect(err).toBeInstanceOf(RelayError);
    expect((err as RelayError).code).toBe('invalid_request');
    return;
  }
  expect.fail('expected RelayError invalid_request');
}

async function parse(raw: Buffer): Promise<ParsedMail> {
  return simpleParser(raw);
}

describe('composePlain', () => {
  it('writes exactly the expected headers, in order, with the fixed subject', async () => {
    const raw = composePlain(message({ inReplyTo: '<prev@example.com>', references: ['<root@example.com>', '<prev@example.com>'] }));
    expectCrlfOnly(raw);
    expect(headerNames(raw)).toEqual(['From', 'To', 'Subject', 'Message-ID', 'Date', 'In-Reply-To', 'References', 'MIME-Version', 'Content-Type', 'Content-Transfer-Encoding']);
    expect(topHeaders(raw)).toContain('Date: Thu, 02 Jan 2025 03:04:05 +0000');
    expect(topHeaders(raw)).toContain('Subject: Attorney Work Project');
    expect(topHeaders(raw)).toContain('Content-Type: text/plain; charset=utf-8');
    expect(topHeaders(raw)).toContain('Content-Transfer-Encoding: quoted-printable');

    const p = await parse(raw);
    expect(p.subject).toBe(FIXED_SUBJECT);
    expect(p.messageId).toBe('<3f1c2a9e-6d0b-4a57-9d1e-2b8c7e5f0a11@example.com>');
    expect(p.date?.toISOString()).toBe('2025-01-02T03:04:05.000Z');
    expect(p.inReplyTo).toBe('<prev@example.com>');
    expect(p.references).toEqual(['<root@example.com>', '<prev@example.com>']);
    expect(addresses(p.from)).toEqual([{ name: 'Alice Responder', address: 'alice@example.com' }]);
    expect(addresses(p.to)).toEqual([{ name: 'Bob Owner', address: 'bob@example.com' }]);
    expect(p.cc).toBeUndefined();
    expect(p.headers.get('mime-version')).toBe('1.0');
  });

  it('writes Cc only when there are Cc recipients', async () => {
    const raw = composePlain(message({ cc: [{ address: 'carol@example.com' }, { name: 'Dan', address: 'dan@example.com' }] }));
    expect(headerNames(raw)).toContain('Cc');
    const p = await parse(raw);
    expect(addresses(p.cc)).toEqual([
      { name: '', address: 'carol@example.com' },
      { name: 'Dan', address: 'dan@example.com' },
    ]);
    expect(headerNames(composePlain(message()))).not.toContain('Cc');
  });

  it('names an undisclosed group when there is no To and no Cc (a Bcc-only copy)', () => {
    const raw = composePlain(message({ to: [] }));
    expect(topHeaders(raw)).toContain('To: undisclosed-recipients:;');
  });

  it('has Subject exactly once and never a Bcc header, even if a caller smuggles bcc in', () => {
    const smuggled = { ...message({ topic: 'Quarterly numbers' }), bcc: [{ address: 'eve@example.com' }], subject: 'Sneaky' };
    const raw = composePlain(smuggled).toString('latin1');
    expect(raw.match(/^subject:/gim)).toHaveLength(1);
    expect(raw).toMatch(/^Subject: Attorney Work Project\r$/m);
    expect(raw).not.toMatch(/^bcc:/im);
    expect(raw).not.toContain('eve@example.com');
    expect(raw).not.toContain('Sneaky');
  });

  it('moves the topic to the first body line and keeps it out of every header', async () => {
    const raw = composePlain(message({ topic: 'Quarterly numbers' }));
    const headerBlock = raw.toString('latin1').split('\r\n\r\n')[0] ?? '';
    expect(headerBlock).not.toContain('Quarterly');
    const p = await parse(raw);
    // A single-part message ends in CRLF, which mailparser keeps as a final newline.
    expect(p.text).toBe('Topic: Quarterly numbers\n\nThe first line of the body.\nSecond line.\n');
  });

  it('omits the Topic line when there is no topic', async () => {
    const p = await parse(composePlain(message()));
    expect(p.text).toBe('The first line of the body.\nSecond line.\n');
    expect((await parse(composePlain(message({ topic: '' })))).text).toBe('The first line of the body.\nSecond line.\n');
  });

  it('normalises every line ending of text and html to CRLF', async () => {
    const raw = composePlain(message({ text: 'a\nb\rc\r\nd\n', html: '<p>a</p>\n<p>b</p>\r<p>c</p>' }));
    expectCrlfOnly(raw);
    const p = await parse(raw);
    expect(p.text).toBe('a\nb\nc\nd\n');
  });

  it('survives long lines and unicode via quoted-printable, with every line at most 78 characters', async () => {
    const long = 'x'.repeat(1000) + ' ' + 'ü€😀'.repeat(200);
    const raw = composePlain(message({ topic: 'Überprüfung 😀', text: long }));
    expectCrlfOnly(raw);
    // 7-bit on the wire
    expect(raw.every((b) => b < 0x80)).toBe(true);
    for (const line of raw.toString('latin1').split('\r\n')) expect(line.length).toBeLessThanOrEqual(78);
    const p = await parse(raw);
    expect(p.text).toBe(`Topic: Überprüfung 😀\n\n${long}\n`);
  });

  it('does not let body text forge a MIME boundary', async () => {
    const raw = composePlain(message({ text: '--=_ir_0000\r\nContent-Type: text/html\r\n\r\n<b>x</b>', attachments: [{ filename: 'a.txt', contentType: 'text/plain', content: Buffer.from('hi') }] }));
    const p = await parse(raw);
    expect(p.text).toBe('--=_ir_0000\nContent-Type: text/html\n\n<b>x</b>');
    expect(p.attachments).toHaveLength(1);
  });

  it('builds multipart/alternative with the escaped topic at the top of the html', async () => {
    const raw = composePlain(message({ topic: 'Q3 <b>&', html: '<html><body><p>Hello</p></body></html>' }));
    expectCrlfOnly(raw);
    expect(topHeaders(raw).find((l) => l.startsWith('Content-Type:'))).toMatch(/^Content-Type: multipart\/alternative; boundary="[^"]+"$/);
    const p = await parse(raw);
    expect(p.text).toBe('Topic: Q3 <b>&\n\nThe first line of the body.\nSecond line.');
    expect(p.html).toContain('<body>\n<p>Topic: Q3 &#60;b&#62;&#38;</p>\n<p>Hello</p>');
    expect(p.html).not.toContain('<b>&');
  });

  it('prepends the html topic when there is no body tag', async () => {
    const p = await parse(composePlain(message({ topic: 'T', html: '<p>Hi</p>' })));
    expect(p.html).toBe('<p>Topic: T</p>\n<p>Hi</p>');
  });

  it('round-trips attachments byte-exact, base64 in 76-character lines, names encoded', async () => {
    const binary = randomBytes(10_000);
    const attachments = [
      { filename: 'report.pdf', contentType: 'application/pdf', content: binary },
      { filename: 'Résumé – final «v2» 😀 with a rather long name that needs continuation.txt', contentType: 'text/plain; charset=utf-8', content: Buffer.from('ü\r\n') },
      { filename: 'quote"and\\backslash.bin', contentType: 'Application/Octet-Stream', content: Buffer.alloc(0) },
      { filename: 'semi;colon, comma (paren) 100%.txt', contentType: 'text/plain', content: Buffer.from('x') },
    ];
    const raw = composePlain(message({ topic: 'Files', attachments }));
    expectCrlfOnly(raw);
    expect(raw.every((b) => b < 0x80)).toBe(true);
    const s = raw.toString('latin1');
    expect(topHeaders(raw).find((l) => l.startsWith('Content-Type:'))).toMatch(/^Content-Type: multipart\/mixed; boundary="[^"]+"$/);
    const b64Lines = s.split('\r\n').filter((l) => /^[A-Za-z0-9+/]{20,}={0,2}$/.test(l));
    expect(b64Lines.length).toBeGreaterThan(100);
    for (const l of b64Lines) expect(l.length).toBeLessThanOrEqual(76);

    const p = await parse(raw);
    expect(p.text).toBe('Topic: Files\n\nThe first line of the body.\nSecond line.');
    expect(p.attachments.map((a) => a.filename)).toEqual(attachments.map((a) => a.filename));
    expect(p.attachments.map((a) => a.contentType)).toEqual(['application/pdf', 'text/plain', 'application/octet-stream', 'text/plain']);
    for (const [i, a] of p.attachments.entries()) {
      expect(a.contentDisposition).toBe('attachment');
      expect(Buffer.compare(a.content, attachments[i]?.content ?? Buffer.alloc(1))).toBe(0);
    }
  });

  it('carries composite attachment types opaquely so they cannot reshape the message', async () => {
    const inner = 'Content-Type: multipart/mixed; boundary=x\r\n\r\n--x\r\n\r\nhi\r\n--x--\r\n';
    const raw = composePlain(message({ attachments: [{ filename: 'm.eml', contentType: 'message/rfc822', content: Buffer.from(inner) }, { filename: 'n', contentType: 'multipart/mixed; boundary=x', content: Buffer.from(inner) }] }));
    const types = raw.toString('latin1').split('\r\n').filter((l) => l.startsWith('Content-Type: ') && l.includes('name='));
    expect(types).toEqual(['Content-Type: application/octet-stream; name="m.eml"', 'Content-Type: application/octet-stream; name="n"']);
    const p = await parse(raw);
    expect(p.attachments.map((a) => a.content.toString())).toEqual([inner, inner]);
  });

  it('encodes unicode display names (RFC 2047) and quotes ASCII ones', async () => {
    const raw = composePlain(
      message({
        from: { name: 'Jürgen Müller-Lüdenscheidt von und zu Großherzogtum Öhringen 😀', address: 'juergen@example.com' },
        to: [{ name: 'Smith, "Al" \\ Jr.', address: 'al@example.com' }, { name: '=?utf-8?Q?Boss?=', address: 'x@example.com' }],
        cc: [{ name: '山田 太郎', address: 'taro@example.com' }],
      }),
    );
    expectCrlfOnly(raw);
    expect(raw.every((b) => b < 0x80)).toBe(true);
    expect(topHeaders(raw).find((l) => l.startsWith('From:'))).toMatch(/^From: =\?UTF-8\?B\?/);
    for (const line of raw.toString('latin1').split('\r\n')) expect(line.length).toBeLessThanOrEqual(78);
    const p = await parse(raw);
    expect(addresses(p.from)).toEqual([{ name: 'Jürgen Müller-Lüdenscheidt von und zu Großherzogtum Öhringen 😀', address: 'juergen@example.com' }]);
    expect(addresses(p.to)).toEqual([
      { name: 'Smith, "Al" \\ Jr.', address: 'al@example.com' },
      { name: '=?utf-8?Q?Boss?=', address: 'x@example.com' },
    ]);
    expect(addresses(p.cc)).toEqual([{ name: '山田 太郎', address: 'taro@example.com' }]);
  });

  it('folds long address lists at 78 characters', async () => {
    const to = Array.from({ length: 20 }, (_, i) => ({ name: `Responder Number ${i}`, address: `responder${i}@example.com` }));
    const raw = composePlain(message({ to }));
    const lines = raw.toString('latin1').split('\r\n');
    for (const line of lines) expect(line.length).toBeLessThanOrEqual(78);
    expect(addresses((await parse(raw)).to)).toEqual(to);
  });

  it('draws fresh random boundaries', () => {
    const m = message({ attachments: [{ filename: 'a', contentType: 'text/plain', content: Buffer.from('a') }] });
    const boundaryOf = (raw: Buffer): string => /boundary="([^"]+)"/.exec(raw.toString('latin1'))?.[1] ?? '';
    const a = boundaryOf(composePlain(m));
    const b = boundaryOf(composePlain(m));
    expect(a).not.toBe('');
    expect(a).not.toBe(b);
  });

  it('refuses a topic with a line break instead of stripping it', () => {
    for (const topic of ['a\r\nBcc: eve@example.com', 'a\nb', 'a\rb', 'a\u2028b', 'a\u0085b', 'a\u0000b']) {
      expectInvalid(() => composePlain(message({ topic })));
      expectInvalid(() => composeProtectedPart(message({ topic })));
    }
  });

  it('refuses malformed addresses, message ids and dates', () => {
    for (const address of ['', 'no-at-sign', 'a b@example.com', 'a@', '@example.com', 'a<b>@example.com', 'a@example.com, eve@evil.test', 'ü@example.com']) {
      expectInvalid(() => composePlain(message({ to: [{ address }] })));
    }
    for (const messageId of ['<>', '<nodomain>', '<a b@c>', '<a@b> <c@d>', '<<a@b>>']) {
      expectInvalid(() => composePlain(message({ messageId })));
    }
    expectInvalid(() => composePlain(message({ references: ['<a@b>', 'x y'] })));
    expectInvalid(() => composePlain(message({ date: new Date(Number.NaN) })));
    expectInvalid(() => composePlain(message({ attachments: [{ filename: '', contentType: 'text/plain', content: Buffer.from('') }] })));
    expectInvalid(() => composePlain(message({ attachments: [{ filename: 'a', contentType: 'not a type', content: Buffer.from('') }] })));
  });
});

// Every header-bound value, each with each kind of line break: all three builders refuse.
const INJECTIONS = ['\r\nBcc: eve@evil.test', '\nX-Evil: 1', '\rX-Evil: 1', 'a\r\n\r\nbody'];
const HEADER_FIELDS: Array<[string, (v: string) => Partial<MessageContent>]> = [
  ['from.name', (v) => ({ from: { name: `Alice${v}`, address: 'alice@example.com' } })],
  ['from.address', (v) => ({ from: { address: `alice@example.com${v}` } })],
  ['to.name', (v) => ({ to: [{ name: `Bob${v}`, address: 'bob@example.com' }] })],
  ['to.address', (v) => ({ to: [{ address: `bob@example.com${v}` }] })],
  ['cc.name', (v) => ({ cc: [{ name: `Carol${v}`, address: 'carol@example.com' }] })],
  ['cc.address', (v) => ({ cc: [{ address: `carol@example.com${v}` }] })],
  ['messageId', (v) => ({ messageId: `<id@example.com>${v}` })],
  ['inReplyTo', (v) => ({ inReplyTo: `<id@example.com>${v}` })],
  ['references', (v) => ({ references: ['<a@example.com>', `<id@example.com>${v}`] })],
];
const BODY_HEADER_FIELDS: Array<[string, (v: string) => Partial<MessageContent>]> = [
  ['attachment.filename', (v) => ({ attachments: [{ filename: `a.txt${v}`, contentType: 'text/plain', content: Buffer.from('a') }] })],
  ['attachment.contentType', (v) => ({ attachments: [{ filename: 'a.txt', contentType: `text/plain${v}`, content: Buffer.from('a') }] })],
  ['topic', (v) => ({ topic: `Topic${v}` })],
];

describe('CR/LF in a header-bound value', () => {
  for (const [field, build] of HEADER_FIELDS) {
    it(`refuses it in ${field} for every builder`, () => {
      for (const v of INJECTIONS) {
        const m = message(build(v));
        expectInvalid(() => composePlain(m));
        expectInvalid(() => composeProtectedPart(m));
        expectInvalid(() => composeEncryptedEnvelope(m, ARMOR, SIGNER));
        expectInvalid(() => composeEncryptedEnvelopeParts(m, SIGNER));
      }
    });
  }
  for (const [field, build] of BODY_HEADER_FIELDS) {
    it(`refuses it in ${field}`, () => {
      for (const v of INJECTIONS) {
        const m = message(build(v));
        expectInvalid(() => composePlain(m));
        expectInvalid(() => composeProtectedPart(m));
      }
    });
  }
});

describe('composeProtectedPart', () => {
  it('is multipart/mixed with protected-headers="v1" carrying the protected headers, even for a lone text part', async () => {
    const raw = composeProtectedPart(message({ topic: 'Inside only', cc: [{ address: 'carol@example.com' }], references: ['<r@example.com>'], inReplyTo: '<r@example.com>' }));
    expectCrlfOnly(raw);
    const lines = topHeaders(raw);
    expect(lines[0]).toMatch(/^Content-Type: multipart\/mixed; protected-headers="v1"; boundary="[^"]+"$/);
    expect(headerNames(raw)).toEqual(['Content-Type', 'From', 'To', 'Cc', 'Subject', 'Message-ID', 'Date', 'In-Reply-To', 'References']);
    expect(raw.toString('latin1').match(/^subject:/gim)).toHaveLength(1);

    const p = await parse(raw);
    const ct = p.headers.get('content-type') as { value: string; params: Record<string, string> };
    expect(ct.value).toBe('multipart/mixed');
    expect(ct.params['protected-headers']).toBe('v1');
    expect(p.subject).toBe(FIXED_SUBJECT);
    expect(p.messageId).toBe('<3f1c2a9e-6d0b-4a57-9d1e-2b8c7e5f0a11@example.com>');
    expect(p.date?.toISOString()).toBe('2025-01-02T03:04:05.000Z');
    expect(addresses(p.from)).toEqual([{ name: 'Alice Responder', address: 'alice@example.com' }]);
    expect(addresses(p.to)).toEqual([{ name: 'Bob Owner', address: 'bob@example.com' }]);
    expect(addresses(p.cc)).toEqual([{ name: '', address: 'carol@example.com' }]);
    expect(p.text).toBe('Topic: Inside only\n\nThe first line of the body.\nSecond line.');
  });

  it('puts the body first and each attachment after it in the same multipart/mixed', async () => {
    const content = randomBytes(3000);
    const raw = composeProtectedPart(message({ html: '<p>x</p>', attachments: [{ filename: 'a.bin', contentType: 'application/octet-stream', content }] }));
    const s = raw.toString('latin1');
    const outer = /boundary="([^"]+)"/.exec(s)?.[1] ?? '';
    const parts = s.split(`--${outer}`);
    // preamble (headers), alternative, attachment, closing
    expect(parts).toHaveLength(4);
    expect(parts[1]).toMatch(/^\r\nContent-Type: multipart\/alternative;/);
    expect(parts[2]).toMatch(/^\r\nContent-Type: application\/octet-stream; name="a.bin"\r\n/);
    const p = await parse(raw);
    expect(p.html).toBe('<p>x</p>');
    expect(p.attachments[0]?.content.equals(content)).toBe(true);
  });
});

describe('composeEncryptedEnvelope', () => {
  const headers = { messageId: '<e@example.com>', date: new Date(Date.UTC(2025, 5, 30, 23, 59, 59)), from: { address: 'alice@example.com' }, to: [{ name: 'Ext Counsel', address: 'counsel@law.example' }], cc: [] };

  it('has the RFC 3156 structure exactly', () => {
    const raw = composeEncryptedEnvelope(headers, ARMOR, SIGNER);
    expectCrlfOnly(raw);
    const s = raw.toString('latin1');
    expect(headerNames(raw)).toEqual(['From', 'To', 'Subject', 'Message-ID', 'Date', 'OpenPGP', 'MIME-Version', 'Content-Type']);
    // The relay key that signs, by fingerprint (draft-josefsson-openpgp-mailnews-header): nothing a sender typed.
    expect(topHeaders(raw)).toContain(`OpenPGP: id=${SIGNER.fingerprint}`);
    expect(topHeaders(raw)).toContain('Subject: Attorney Work Project');
    expect(topHeaders(raw)).toContain('Date: Mon, 30 Jun 2025 23:59:59 +0000');
    const ct = topHeaders(raw).find((l) => l.startsWith('Content-Type:')) ?? '';
    expect(ct).toMatch(/^Content-Type: multipart\/encrypted; protocol="application\/pgp-encrypted"; boundary="([^"]+)"$/);
    const b = /boundary="([^"]+)"/.exec(ct)?.[1] ?? '';
    const body = s.slice(s.indexOf('\r\n\r\n') + 4);
    expect(body).toBe(
      'This is an OpenPGP/MIME encrypted message (RFC 4880 and 3156)\r\n' +
        `--${b}\r\n` +
        'Content-Type: application/pgp-encrypted\r\n' +
        'Content-Description: PGP/MIME version identification\r\n' +
        '\r\n' +
        'Version: 1\r\n' +
        '\r\n' +
        `--${b}\r\n` +
        'Content-Type: application/octet-stream; name="encrypted.asc"\r\n' +
        'Content-Description: OpenPGP encrypted message\r\n' +
        'Content-Disposition: inline; filename="encrypted.asc"\r\n' +
        '\r\n' +
        ARMOR.trim().replace(/\n/g, '\r\n') +
        '\r\n' +
        '\r\n' +
        `--${b}--\r\n`,
    );
    expect(s.match(/^subject:/gim)).toHaveLength(1);
    expect(s).not.toMatch(/^bcc:/im);
  });

  it('parses with mailparser into the version part and encrypted.asc', async () => {
    const p = await parse(composeEncryptedEnvelope({ ...headers, cc: [{ address: 'bob@example.com' }], inReplyTo: '<x@example.com>', references: ['<x@example.com>'] }, ARMOR, SIGNER));
    expect(p.subject).toBe(FIXED_SUBJECT);
    expect(p.inReplyTo).toBe('<x@example.com>');
    const ct = p.headers.get('content-type') as { value: string; params: Record<string, string> };
    expect(ct.value).toBe('multipart/encrypted');
    expect(ct.params.protocol).toBe('application/pgp-encrypted');
    expect(p.attachments).toHaveLength(2);
    const [version, payload] = p.attachments;
    expect(version?.contentType).toBe('application/pgp-encrypted');
    expect(version?.headers.get('content-description')).toBe('PGP/MIME version identification');
    expect(version?.content.toString().trim()).toBe('Version: 1');
    expect(payload?.contentType).toBe('application/octet-stream');
    expect(payload?.filename).toBe('encrypted.asc');
    expect(payload?.contentDisposition).toBe('inline');
    expect(payload?.headers.get('content-description')).toBe('OpenPGP encrypted message');
    expect(payload?.content.toString().trim()).toBe(ARMOR.trim().replace(/\n/g, '\r\n'));
  });

  it('writes bare addresses in From, To and Cc: display names stay in the protected headers only', async () => {
    const names = message({
      from: { name: 'Alice Responder', address: 'alice@example.com' },
      to: [{ name: 'Ext Counsel', address: 'counsel@law.example' }, { name: '山田 太郎', address: 'taro@example.com' }],
      cc: [{ name: '=?utf-8?Q?Boss?=', address: 'boss@example.com' }, { address: 'carol@example.com' }],
    });
    for (const raw of [composeEncryptedEnvelope(names, ARMOR, SIGNER), Buffer.concat([composeEncryptedEnvelopeParts(names, SIGNER).head, composeEncryptedEnvelopeParts(names, SIGNER).tail])]) {
      const lines = topHeaders(raw);
      expect(lines.filter((l) => /^(From|To|Cc):/.test(l))).toEqual(['From: alice@example.com', 'To: counsel@law.example, taro@example.com', 'Cc: boss@example.com, carol@example.com']);
      const s = raw.toString('latin1');
      for (const fragment of ['Alice Responder', 'Ext Counsel', '=?UTF-8?B?', 'Boss']) expect(s.slice(0, s.indexOf('\r\n\r\n'))).not.toContain(fragment);
    }
    // The protected part keeps them.
    const inner = await parse(composeProtectedPart(names));
    expect(addresses(inner.from)).toEqual([{ name: 'Alice Responder', address: 'alice@example.com' }]);
    expect(addresses(inner.to)).toEqual([
      { name: 'Ext Counsel', address: 'counsel@law.example' },
      { name: '山田 太郎', address: 'taro@example.com' },
    ]);
  });

  it('names the signer only by a hex fingerprint in its OpenPGP header: anything else is a relay bug, refused', () => {
    expect(topHeaders(composeEncryptedEnvelope(headers, ARMOR, { fingerprint: SIGNER.fingerprint.toLowerCase() }))).toContain(`OpenPGP: id=${SIGNER.fingerprint}`);
    for (const fingerprint of ['', 'ABCDEF', `${SIGNER.fingerprint}\r\nBcc: x@example.com`, 'Z'.repeat(40), `${SIGNER.fingerprint}; url=http://evil.example/`]) {
      let err: unknown;
      try {
        composeEncryptedEnvelopeParts(headers, { fingerprint });
      } catch (e) {
        err = e;
      }
      expect(err, fingerprint).toBeInstanceOf(RelayError);
      expect((err as RelayError).code).toBe('internal');
    }
  });

  it('splits into head and tail around the armor: head + armor + tail is the envelope composeEncryptedEnvelope writes', () => {
    const parts = composeEncryptedEnvelopeParts({ ...headers, inReplyTo: '<x@example.com>' }, SIGNER);
    const armor = Buffer.from(ARMOR.trim().replace(/\n/g, '\r\n'), 'latin1');
    const joined = Buffer.concat([parts.head, armor, parts.tail]);
    expectCrlfOnly(joined);
    const shape = (b: Buffer): string => b.toString('latin1').replace(/=_ir_[0-9a-f]+/g, 'B');
    expect(shape(joined)).toBe(shape(composeEncryptedEnvelope({ ...headers, inReplyTo: '<x@example.com>' }, ARMOR, SIGNER)));
    expect(parts.head.toString('latin1')).toMatch(/Content-Disposition: inline; filename="encrypted.asc"\r\n\r\n$/);
    expect(parts.tail.toString('latin1')).toMatch(/^\r\n\r\n--=_ir_[0-9a-f]+--\r\n$/);
  });

  it('refuses anything but one ASCII-armored message', () => {
    for (const bad of ['', 'not armor', '-----BEGIN PGP SIGNATURE-----\n\nx\n-----END PGP SIGNATURE-----', `${ARMOR}${ARMOR}`, ARMOR.replace('dummy', 'dümmy')]) {
      try {
        composeEncryptedEnvelope(headers, bad, SIGNER);
        expect.fail('expected a refusal');
      } catch (err) {
        expect(err).toBeInstanceOf(RelayError);
        expect((err as RelayError).code).toBe('internal');
      }
    }
  });
});

// gpg is a test requirement (.ci/run installs it): a missing gpg fails here rather than skipping.
describe('interop with gpg', () => {
  it('gpg decrypts the encrypted.asc part back to the protected part, byte for byte', async () => {
    const home = mkdtempSync(join(tmpdir(), 'relay-gpg-'));
    const env = { ...process.env, GNUPGHOME: home };
    try {
      const inner = composeProtectedPart(message({ topic: 'Interop', attachments: [{ filename: 'x.bin', contentType: 'application/octet-stream', content: randomBytes(500) }] }));
      const gpg = (args: string[], input: Buffer): Buffer =>
        execFileSync('gpg', ['--batch', '--quiet', '--pinentry-mode', 'loopback', '--passphrase', 'test-only', ...args], { input, env });
      const armored = gpg(['--symmetric', '--armor'], inner).toString('ascii');
      const p = await parse(composeEncryptedEnvelope(message(), armored, SIGNER));
      const asc = p.attachments.find((a) => a.filename === 'encrypted.asc');
      expect(asc).toBeDefined();
      expect(gpg(['--decrypt'], asc?.content ?? Buffer.alloc(0)).equals(inner)).toBe(true);
    } finally {
      try {
        execFileSync('gpgconf', ['--kill', 'gpg-agent'], { env, stdio: 'ignore' });
      } catch {
        // no agent was started
      }
      rmSync(home, { recursive: true, force: true });
    }
  });
});
