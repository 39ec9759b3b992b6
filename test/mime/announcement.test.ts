/**
 * The announcement composer: the approved title as the Subject, exactly, and
 * never a second header; one recipient per copy; CRLF 7-bit bytes; the
 * RFC 3156 structure around an armored message. Parsed back with mailparser,
 * as a mail client would.
 */
import { simpleParser } from 'mailparser';
import { describe, expect, it } from 'vitest';
import { composeAnnouncementEncrypted, composeAnnouncementPlain, composeAnnouncementProtectedPart, subjectValue, type AnnouncementCopy } from '../../src/mime/announcement.js';
import { armorMessage } from '../../src/pgp/armor.js';
import { headerLines } from '../helpers/pgp-mime.js';

const copy = (over: Partial<AnnouncementCopy> = {}): AnnouncementCopy => ({
  messageId: '<5f1c1d7e-2d1c-4a5e-9a0e-0c1f2e3d4b5a@corp.example>',
  date: new Date('2026-11-28T10:00:00Z'),
  from: 'announcements@corp.example',
  to: 'cto@client.example',
  title: 'Security notice, 2026-11-28',
  text: 'Line one.\nLine two.',
  ...over,
});

/** The unfolded value of each header named `name`. */
function headers(raw: Buffer, name: string): string[] {
  const head = raw.toString('latin1').split('\r\n\r\n')[0]!.replace(/\r\n[ \t]/g, (m) => m.slice(2));
  return head.split('\r\n').filter((l) => l.toLowerCase().startsWith(`${name.toLowerCase()}:`)).map((l) => l.slice(name.length + 1).trimStart());
}

describe('the Subject is the approved title, exactly', () => {
  it.each<[string, string]>([
    ['plain ASCII', 'Security notice, 2026-11-28'],
    ['the longest title, 200 characters', `Notice 2026-11-28 ${'word '.repeat(36)}end`.slice(0, 200)],
    ['accents and an em dash', 'Sécurité — avis du 28 novembre 2026'],
    ['CJK', '2026-11-28 セキュリティに関するお知らせ'],
    ['emoji (astral plane)', 'Notice 🔒 2026-11-28'],
    ['a look-alike encoded word, shown literally', '=?utf-8?b?QmNjOiBldmVyeW9uZQ==?= 2026-11-28'],
    ['double spaces kept', 'Notice  of  2026-11-28'],
    ['quotes and a colon', 'Update: "what happened" on 2026-11-28'],
  ])('%s', async (_name, title) => {
    const raw = composeAnnouncementPlain(copy({ title }));
    expect(headers(raw, 'Subject')).toHaveLength(1);
    expect((await simpleParser(raw)).subject).toBe(title);
    // 7-bit, CRLF only, every line within 998 characters.
    expect(raw.every((b) => b < 0x80)).toBe(true);
    expect(raw.toString('latin1').replace(/\r\n/g, '')).not.toMatch(/[\r\n]/);
    for (const line of raw.toString('latin1').split('\r\n')) expect(line.length).toBeLessThanOrEqual(998);
  });

  it('encodes a title that is not plain ASCII, or holds "=?", as RFC 2047 words', () => {
    expect(subjectValue('Plain 2026-11-28')).toBe('Plain 2026-11-28');
    expect(subjectValue('Café 2026-11-28')).toBe(`=?UTF-8?B?${Buffer.from('Café 2026-11-28').toString('base64')}?=`);
    expect(subjectValue('=?x?= 2026-11-28')).toMatch(/^=\?UTF-8\?B\?[A-Za-z0-9+/=]+\?=$/);
  });

  it.each<[string, string]>([
    ['CRLF and a header', 'Notice 2026-11-28\r\nBcc: everyone@corp.example'],
    ['LF', 'Notice 2026-11-28\nX-Evil: 1'],
    ['CR', 'Notice 2026-11-28\rX'],
    ['NUL', 'Notice\u0000 2026-11-28'],
    ['NEL', 'Notice\u0085 2026-11-28'],
    ['U+2028', 'Notice\u2028 2026-11-28'],
    ['U+2029', 'Notice\u2029 2026-11-28'],
    ['ESC', 'Notice\u001b[2J 2026-11-28'],
    ['empty', '   '],
  ])('refuses a title with %s, in the composer too', (_name, title) => {
    expect(() => composeAnnouncementPlain(copy({ title }))).toThrow(expect.objectContaining({ code: 'invalid_request', details: { field: 'title' } }));
    expect(() => composeAnnouncementProtectedPart(copy({ title }))).toThrow(expect.objectContaining({ code: 'invalid_request' }));
  });
});

describe('one copy for one reader', () => {
  it('names only its recipient, from the announcement address, with the text exactly', async () => {
    const text = 'Dear customer,\n\nOn 2026-11-28 we found…\nA line with a trailing space \nand = signs = and a very long line ' + 'x'.repeat(200) + '\n\nÜnïcode: 東京 🔒';
    const raw = composeAnnouncementPlain(copy({ text }));
    const parsed = await simpleParser(raw);
    expect(headers(raw, 'To')).toEqual(['cto@client.example']);
    expect(headers(raw, 'From')).toEqual(['announcements@corp.example']);
    expect(headers(raw, 'Cc')).toEqual([]);
    expect(headers(raw, 'Bcc')).toEqual([]);
    expect(headers(raw, 'Message-ID')).toEqual(['<5f1c1d7e-2d1c-4a5e-9a0e-0c1f2e3d4b5a@corp.example>']);
    expect(headers(raw, 'Date')).toEqual(['Sat, 28 Nov 2026 10:00:00 +0000']);
    expect(parsed.text?.replace(/\r\n/g, '\n').replace(/\n$/, '')).toBe(text);
    expect(headerLines(raw)).toContain('Content-Transfer-Encoding: quoted-printable');
  });

  it('refuses addresses that are not plain', () => {
    for (const to of ['a@b', 'x@client.example\r\nBcc: y@z.example', 'Name <x@client.example>', '']) {
      expect(() => composeAnnouncementPlain(copy({ to }))).toThrow(expect.objectContaining({ code: 'invalid_request' }));
    }
  });
});

describe('encrypted copies', () => {
  it('the protected part names no recipient and carries the title and text', async () => {
    const inner = composeAnnouncementProtectedPart(copy());
    const parsed = await simpleParser(inner);
    expect(headers(inner, 'To')).toEqual(['undisclosed-recipients:;']);
    expect(headers(inner, 'Content-Type')[0]).toMatch(/^multipart\/mixed; protected-headers="v1"; boundary="=_ir_[0-9a-f]{36}"$/);
    expect(parsed.subject).toBe('Security notice, 2026-11-28');
    expect(parsed.text?.replace(/\r\n/g, '\n').replace(/\n$/, '')).toBe('Line one.\nLine two.');
    expect(inner.toString('latin1')).not.toContain('cto@client.example');
  });

  it('wraps the armor in RFC 3156 with the title as the outer Subject and one recipient', async () => {
    const armor = armorMessage([Buffer.from('not really packets, but armored all the same')]);
    const raw = composeAnnouncementEncrypted(copy(), armor);
    const parsed = await simpleParser(raw);
    expect(parsed.subject).toBe('Security notice, 2026-11-28');
    expect(headers(raw, 'To')).toEqual(['cto@client.example']);
    expect(headers(raw, 'Content-Type')[0]).toMatch(/^multipart\/encrypted; protocol="application\/pgp-encrypted"; boundary="=_ir_[0-9a-f]{36}"$/);
    const parts = parsed.attachments.map((a) => [a.contentType, a.filename ?? null]);
    expect(parts).toEqual([
      ['application/pgp-encrypted', null],
      ['application/octet-stream', 'encrypted.asc'],
    ]);
    expect(parsed.attachments[1]!.content.toString('latin1').replace(/\r?\n$/, '')).toBe(armor.toString('latin1'));
    expect(raw.toString('latin1')).not.toContain('Line one');
  });

  it('refuses anything but one armored message', () => {
    expect(() => composeAnnouncementEncrypted(copy(), Buffer.from('plain text\r\n'))).toThrow(expect.objectContaining({ code: 'internal' }));
    expect(() => composeAnnouncementEncrypted(copy(), Buffer.from('-----BEGIN PGP MESSAGE-----\r\n\r\nä\r\n-----END PGP MESSAGE-----', 'utf8'))).toThrow(expect.objectContaining({ code: 'internal' }));
  });
});
