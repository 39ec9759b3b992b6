/**
 * The console's bounded multipart/form-data parser: what browsers send is
 * read exactly (bytes of a binary file, UTF-8 names, empty file inputs),
 * malformed or oversized forms are invalid_request, and hostile bodies cost
 * time linear in their size.
 */
import { describe, expect, it } from 'vitest';
import { RelayError } from '../../src/errors.js';
import { FormData, boundaryOf, parseMultipart, urlencodedForm } from '../../src/console/multipart.js';

const B = '----WebKitFormBoundaryX3bY8zQ1';
const TYPE = `multipart/form-data; boundary=${B}`;

function body(...parts: Array<string | Buffer>): Buffer {
  return Buffer.concat(parts.map((p) => (typeof p === 'string' ? Buffer.from(p, 'utf8') : p)));
}

function refusal(fn: () => unknown): RelayError {
  try {
    fn();
  } catch (err) {
    if (err instanceof RelayError) return err;
    throw err;
  }
  throw new Error('expected a refusal');
}

describe('parseMultipart', () => {
  it('reads text fields, repeated fields, a binary file byte for byte, and drops an empty file input', () => {
    const binary = Buffer.from([0, 1, 2, 0x0d, 0x0a, 0x2d, 0x2d, 255, 13, 10]);
    const form = new FormData(
      parseMultipart(
        body(
          `--${B}\r\nContent-Disposition: form-data; name="to"\r\n\r\nsec@corp.example\r\n`,
          `--${B}\r\nContent-Disposition: form-data; name="to"\r\n\r\ncounsel@lawfirm.example\r\n`,
          `--${B}\r\nContent-Disposition: form-data; name="text"\r\n\r\nline 1\r\nline 2 – ünïcode\r\n`,
          `--${B}\r\nContent-Disposition: form-data; name="attachments"; filename="tïmeline.pdf"\r\nContent-Type: Application/PDF\r\n\r\n`,
          binary,
          `\r\n--${B}\r\nContent-Disposition: form-data; name="attachments"; filename=""\r\nContent-Type: application/octet-stream\r\n\r\n\r\n`,
          `--${B}--\r\n`,
        ),
        TYPE,
      ),
    );
    expect(form.all('to')).toEqual(['sec@corp.example', 'counsel@lawfirm.example']);
    expect(form.one('text')).toBe('line 1\r\nline 2 – ünïcode');
    const files = form.files('attachments');
    expect(files).toHaveLength(1);
    expect(files[0]).toMatchObject({ filename: 'tïmeline.pdf', contentType: 'application/pdf' });
    expect(files[0]!.data.equals(binary)).toBe(true);
    expect(form.one('missing')).toBeUndefined();
    expect(refusal(() => form.one('to')).code).toBe('invalid_request');
  });

  it('decodes the escapes browsers write in file names and drops directories', () => {
    const parts = parseMultipart(
      body(`--${B}\r\nContent-Disposition: form-data; name="f"; filename="C:\\\\Users\\\\me\\\\a%22b%0D%0Ac.txt"\r\n\r\nx\r\n--${B}--`),
      TYPE,
    );
    expect(parts[0]!.filename).toBe('a"b\r\nc.txt');
  });

  it('accepts a quoted boundary and a preamble, and an empty form', () => {
    expect(boundaryOf(`multipart/form-data; boundary="${B}"`)).toBe(B);
    const parts = parseMultipart(body(`preamble\r\n--${B}\r\nContent-Disposition: form-data; name="a"\r\n\r\n1\r\n--${B}--`), `multipart/form-data; boundary="${B}"`);
    expect(parts.map((p) => [p.name, p.data.toString()])).toEqual([['a', '1']]);
    expect(parseMultipart(body(`--${B}--\r\n`), TYPE)).toEqual([]);
  });

  it.each([
    ['no boundary in the Content-Type', body(`--${B}--`), 'multipart/form-data'],
    ['not multipart at all', body('a=1'), 'application/x-www-form-urlencoded'],
    ['a boundary longer than 70 characters', body('--x--'), `multipart/form-data; boundary=${'x'.repeat(71)}`],
    ['no delimiter in the body', body('just some bytes'), TYPE],
    ['a part that is never closed', body(`--${B}\r\nContent-Disposition: form-data; name="a"\r\n\r\nno end`), TYPE],
    ['a part without Content-Disposition', body(`--${B}\r\nContent-Type: text/plain\r\n\r\nx\r\n--${B}--`), TYPE],
    ['a part without a name', body(`--${B}\r\nContent-Disposition: form-data; filename="a"\r\n\r\nx\r\n--${B}--`), TYPE],
    ['headers that never end', body(`--${B}\r\nContent-Disposition: form-data; name="a"\r\nX: ${'y'.repeat(10_000)}`), TYPE],
    ['junk after a delimiter', body(`--${B}junk\r\n`), TYPE],
  ])('refuses %s as invalid_request', (_what, input, type) => {
    expect(refusal(() => parseMultipart(input, type)).code).toBe('invalid_request');
  });

  it('refuses more parts than the limit, and headers longer than the limit', () => {
    const many = body(...Array.from({ length: 6 }, (_, i) => `--${B}\r\nContent-Disposition: form-data; name="f${i}"\r\n\r\nx\r\n`), `--${B}--`);
    expect(parseMultipart(many, TYPE, { maxParts: 6, maxHeaderBytes: 4096 })).toHaveLength(6);
    expect(refusal(() => parseMultipart(many, TYPE, { maxParts: 5, maxHeaderBytes: 4096 })).message).toMatch(/more than 5 fields/);
    const longHeader = body(`--${B}\r\nContent-Disposition: form-data; name="${'n'.repeat(200)}"\r\n\r\nx\r\n--${B}--`);
    expect(refusal(() => parseMultipart(longHeader, TYPE, { maxParts: 10, maxHeaderBytes: 100 })).code).toBe('invalid_request');
  });

  it('takes time linear in the body for hostile inputs (near-delimiters, endless headers)', () => {
    // Bodies of 1 MB and 8 MB full of almost-delimiters: 8x the bytes must not cost 64x the time.
    const timed = (size: number): number => {
      const filler = Buffer.from(`\r\n--${B.slice(0, -1)}`.repeat(Math.ceil(size / (B.length + 3)))).subarray(0, size);
      const input = body(`--${B}\r\nContent-Disposition: form-data; name="a"\r\n\r\n`, filler, `\r\n--${B}--`);
      const started = process.hrtime.bigint();
      expect(parseMultipart(input, TYPE)[0]!.data.length).toBe(size);
      return Number(process.hrtime.bigint() - started) / 1e6;
    };
    timed(100_000);
    const small = Math.max(timed(1_000_000), 1);
    const large = timed(8_000_000);
    expect(large).toBeLessThan(small * 30);
  });
});

describe('urlencodedForm', () => {
  it('reads what express.urlencoded gives: strings and repeated fields as lists', () => {
    const form = urlencodedForm({ token: 'ir_x', to: ['a@corp.example', 'b@corp.example'] });
    expect(form.one('token')).toBe('ir_x');
    expect(form.all('to')).toEqual(['a@corp.example', 'b@corp.example']);
    expect(form.files('to')).toEqual([]);
    expect(urlencodedForm(undefined).all('x')).toEqual([]);
  });
});
