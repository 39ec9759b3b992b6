/**
 * The linear pre-scan of submitted MIME (src/smtp/mime-limits.ts): its
 * refusals, what it lets through, and that it never counts fewer parts or
 * header bytes than the splitter mailparser uses (@zone-eu/mailsplit), on
 * generated messages built to make the two disagree: colliding and nested
 * boundaries, delimiter look-alikes, quoted and escaped boundary parameters,
 * embedded messages.
 */
import { finished } from 'node:stream/promises';
import mailsplit from '@zone-eu/mailsplit';
import fc from 'fast-check';
import MailComposer from 'nodemailer/lib/mail-composer';
import { describe, expect, it } from 'vitest';
import { RelayError } from '../../src/errors.js';
import { DEFAULT_MIME_LIMITS, checkMimeLimits, headerParams, type MimeLimits } from '../../src/smtp/mime-limits.js';

const CRLF = '\r\n';

function refusal(raw: string | Buffer, limits?: MimeLimits): RelayError | undefined {
  try {
    checkMimeLimits(Buffer.isBuffer(raw) ? raw : Buffer.from(raw, 'latin1'), limits);
  } catch (err) {
    if (err instanceof RelayError) return err;
    throw err;
  }
  return undefined;
}

const multipart = (parts: string[], boundary = 'b') =>
  ['From: ic@corp.example', 'To: sec@corp.example', `Content-Type: multipart/mixed; boundary="${boundary}"`, '', ...parts.map((p) => `--${boundary}${CRLF}${p}`), `--${boundary}--`, ''].join(CRLF);

describe('refusals', () => {
  it.each<[string, string, string, string]>([
    ['a header field over 32 KiB', `To: ${'a,'.repeat(17_000)}${CRLF}${CRLF}x`, 'payload_too_large', 'The To header of MIME part 1 is longer than 32768 bytes; shorten it (a To: or Cc: of up to 100 recipients fits easily).'],
    ['a folded header field over 32 KiB', `Subject: x${`${CRLF} ${'y'.repeat(70)}`.repeat(500)}${CRLF}${CRLF}x`, 'payload_too_large', 'The Subject header of MIME part 1 is longer than 32768 bytes; shorten it (a To: or Cc: of up to 100 recipients fits easily).'],
    ['a header block over 128 KiB', `${`X-A: ${'y'.repeat(1000)}${CRLF}`.repeat(140)}${CRLF}x`, 'payload_too_large', 'The header block of MIME part 1 is larger than 131072 bytes; send it with fewer or shorter headers.'],
    ['headers over 512 KiB in all', multipart(Array.from({ length: 6 }, () => `${`X-A: ${'y'.repeat(1000)}${CRLF}`.repeat(100)}${CRLF}x`)), 'payload_too_large', "The message's header blocks add up to more than 524288 bytes; send it with fewer or shorter headers."],
    ['a message without a blank line after its headers', `From: x${CRLF}${'y'.repeat(100)}${CRLF}`.repeat(2000), 'payload_too_large', 'The header block of MIME part 1 is larger than 131072 bytes; send it with fewer or shorter headers.'],
    ['251 parts', multipart(Array.from({ length: 250 }, () => `Content-Type: text/plain${CRLF}${CRLF}x`)), 'payload_too_large', 'The message has more than 250 MIME parts; send fewer attachments, or put them in one archive.'],
    ['parts hidden in an embedded message', multipart([`Content-Type: message/rfc822${CRLF}${CRLF}${multipart(Array.from({ length: 249 }, () => `${CRLF}x`), 'inner')}`]), 'payload_too_large', 'The message has more than 250 MIME parts; send fewer attachments, or put them in one archive.'],
    ['an RFC 2231 boundary', `Content-Type: multipart/mixed; boundary*0=a; boundary*1=b${CRLF}${CRLF}--ab${CRLF}`, 'message_unparsable', 'MIME part 1 gives its boundary in RFC 2231 form (boundary*=); send it with a plain boundary parameter.'],
    ['a non-ASCII boundary', `Content-Type: multipart/mixed; boundary="\xe9t\xe9"${CRLF}${CRLF}x`, 'message_unparsable', 'MIME part 1 declares a boundary that is not 1-200 printable ASCII characters (RFC 2046 section 5.1.1); the message cannot be read.'],
    ['a 201-character boundary', `Content-Type: multipart/mixed; boundary=${'b'.repeat(201)}${CRLF}${CRLF}x`, 'message_unparsable', 'MIME part 1 declares a boundary that is not 1-200 printable ASCII characters (RFC 2046 section 5.1.1); the message cannot be read.'],
  ])('%s', (_name, raw, code, message) => {
    const err = refusal(raw);
    expect(err?.code).toBe(code);
    expect(err?.message).toBe(message);
  });
});

describe('what passes', () => {
  it('a message with 100 attachments, text and HTML, as a mail client builds it', async () => {
    const raw = await new MailComposer({
      from: 'IC <ic@corp.example>',
      to: Array.from({ length: 100 }, (_, i) => `"Responder Number ${i}" <responder.number.${i}@subdomain.corp.example>`),
      subject: 'Status',
      text: 'text',
      html: '<p>html</p>',
      attachments: Array.from({ length: 100 }, (_, i) => ({ filename: `file-${i}.txt`, content: `-- not a boundary\n--\n${i}` })),
    })
      .compile()
      .build();
    expect(refusal(raw)).toBeUndefined();
  });

  it('a forwarded message as an attachment, and body lines that only look like delimiters', () => {
    const inner = ['From: a@x.example', 'Received: by relay'.padEnd(900, 'x'), 'Subject: fwd', '', '--b', '--b--', 'text'].join(CRLF);
    expect(refusal(multipart([`Content-Type: text/plain${CRLF}${CRLF}-- ${CRLF}--b-not${CRLF}x`, `Content-Type: message/rfc822${CRLF}Content-Disposition: attachment${CRLF}${CRLF}${inner}`]))).toBeUndefined();
  });

  it('reads a boundary parameter exactly as libmime does', () => {
    expect(headerParams('multipart/mixed; boundary="a b"; x=1').params.get('boundary')).toBe('a b');
    expect(headerParams('multipart/mixed;BOUNDARY = "q\\"x"').params.get('boundary')).toBe('q"x');
    expect(headerParams('multipart/mixed; boundary=a"b;c"d; e=f').params.get('boundary')).toBe('ab;cd');
    expect(headerParams('multipart/mixed; boundary=\ta\v ;').params.get('boundary')).toBe('a');
    expect(headerParams('multipart/mixed; boundary=a; boundary=b').params.get('boundary')).toBe('b');
  });
});

/** What the splitter mailparser uses makes of `raw`: MIME nodes and header bytes. */
async function splitterCounts(raw: Buffer): Promise<{ nodes: number; headerBytes: number }> {
  const splitter = new mailsplit.Splitter();
  let nodes = 0;
  let headerBytes = 0;
  splitter.on('data', (data: { type: string; _headerlen?: number }) => {
    if (data.type !== 'node') return;
    nodes++;
    headerBytes += data._headerlen ?? 0;
  });
  splitter.end(raw);
  await finished(splitter);
  return { nodes, headerBytes };
}

// Few, colliding boundary names (one the prefix of another, one with a "--" tail) provoke disagreements.
const boundaryName = fc.constantFrom('b', 'bb', 'b--', 'x y', 'q"z', '=_1');
const parameter = (b: string) =>
  fc.constantFrom(
    `boundary=${b.includes(' ') || b.includes('"') ? `"${b.replace(/"/g, '\\"')}"` : b}`,
    `boundary="${b.replace(/"/g, '\\"')}"`,
    ` BOUNDARY = "${b.replace(/"/g, '\\"')}" ; x=1`,
    `charset=utf-8;${CRLF}\tboundary="${b.replace(/"/g, '\\"')}"`,
  );
const noise = (boundaries: string[]) =>
  fc.array(
    fc.oneof(
      fc.constantFrom('text', '', ' ', '--', '-- ', 'X-Filler: y', ' folded', 'Content-Type: text/plain', 'Content-Type: message/rfc822', 'Content-Disposition: inline', '--b--x', '\r', '\r--b'),
      fc.constantFrom(...boundaries, 'b').map((b) => `--${b}`),
      fc.constantFrom(...boundaries, 'b').map((b) => `--${b}--`),
      fc.constantFrom(...boundaries, 'b').map((b) => `--${b}\rjunk`),
    ),
    { maxLength: 4 },
  );

type Tree = { lines: string[]; boundaries: string[] };

const tree: fc.Memo<Tree> = fc.memo((depth) => {
  const leaf = fc
    .tuple(fc.array(fc.constantFrom('Content-Type: text/plain', 'Content-Disposition: attachment', 'Content-Transfer-Encoding: base64', 'X-A: 1', ' continued'), { maxLength: 3 }), noise([]))
    .map(([headers, body]): Tree => ({ lines: [...headers, '', ...body], boundaries: [] }));
  if (depth <= 1) return leaf;
  const multi = fc
    .tuple(boundaryName, fc.array(tree(depth - 1), { minLength: 1, maxLength: 3 }), fc.boolean(), fc.boolean())
    .chain(([b, children, close, blankFirst]) =>
      fc.tuple(parameter(b), noise([b, ...children.flatMap((c) => c.boundaries)])).map(([param, preamble]): Tree => ({
        lines: [
          `Content-Type: multipart/mixed; ${param}`,
          ...(blankFirst ? [''] : ['X-B: 2', '']),
          ...preamble,
          ...children.flatMap((c) => [`--${b}`, ...c.lines]),
          ...(close ? [`--${b}--`] : []),
        ],
        boundaries: [b, ...children.flatMap((c) => c.boundaries)],
      })),
    );
  const embedded = fc
    .tuple(tree(depth - 1), fc.constantFrom('', 'Content-Transfer-Encoding: 7bit', 'Content-Transfer-Encoding: base64', 'Content-Transfer-Encoding: base64 (x)'), fc.constantFrom('', 'Content-Disposition: inline', 'Content-Disposition: attachment'))
    .map(([inner, cte, disposition]): Tree => ({
      lines: ['Content-Type: message/rfc822', ...(cte ? [cte] : []), ...(disposition ? [disposition] : []), '', ...inner.lines],
      boundaries: inner.boundaries,
    }));
  return fc.oneof({ depthSize: 'small' }, leaf, multi, embedded);
});

describe('never counts less than the splitter mailparser uses', () => {
  const unlimited: MimeLimits = { maxParts: 1e9, maxHeaderField: 1e9, maxHeaderBlock: 1e9, maxHeaderTotal: 1e9 };

  it('parts and header bytes, on generated messages', async () => {
    await fc.assert(
      // Line ends mixed at random: the splitter takes LF alone as a line end too.
      fc.asyncProperty(tree(4), fc.array(fc.boolean(), { minLength: 64, maxLength: 64 }), async (t, lf) => {
        const raw = Buffer.from(t.lines.map((line, i) => line + (lf[i % 64] ? '\n' : CRLF)).join(''), 'latin1');
        const seen = await splitterCounts(raw);
        // Told to accept one part fewer than the splitter finds, the pre-scan refuses.
        expect(refusal(raw, { ...unlimited, maxParts: seen.nodes - 1 })?.message).toMatch(/^The message has more than/);
        if (seen.headerBytes > 0) {
          expect(refusal(raw, { ...unlimited, maxHeaderTotal: seen.headerBytes - 1 })?.message).toMatch(/^The (message's header blocks add up|header block of MIME part)/);
        }
        expect(refusal(raw, unlimited)).toBeUndefined();
      }),
      { numRuns: Number(process.env['FC_MIME_RUNS'] ?? 1500) },
    );
  }, 120_000);
});

describe('defaults', () => {
  it('are the documented ones', () => {
    expect(DEFAULT_MIME_LIMITS).toEqual({ maxParts: 250, maxHeaderField: 32_768, maxHeaderBlock: 131_072, maxHeaderTotal: 524_288 });
  });
});
