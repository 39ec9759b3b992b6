/**
 * Reading MIME off the event loop (src/smtp/mime-pool.ts): real worker
 * threads, real mailparser. A parse that outlives its deadline or exhausts its
 * worker's heap is a permanent refusal and the worker is replaced; a reader
 * that cannot start or is overloaded is a temporary one.
 */
import { afterEach, describe, expect, it } from 'vitest';
import { RelayError } from '../../src/errors.js';
import { MimeReader } from '../../src/smtp/mime-pool.js';

const readers: MimeReader[] = [];
function reader(options: ConstructorParameters<typeof MimeReader>[0] = {}): MimeReader {
  const r = new MimeReader(options);
  readers.push(r);
  return r;
}

afterEach(async () => {
  await Promise.all(readers.splice(0).map((r) => r.close()));
});

async function refusal(promise: Promise<unknown>): Promise<RelayError> {
  try {
    await promise;
  } catch (err) {
    if (err instanceof RelayError) return err;
    throw err;
  }
  throw new Error('expected a refusal');
}

const small = Buffer.from(
  [
    'From: IC <ic@corp.example>',
    'To: a@corp.example, "B" <b@corp.example>',
    'Subject: =?UTF-8?B?U3TDtnJ1bmc=?=',
    'MIME-Version: 1.0',
    'Content-Type: multipart/mixed; boundary="b"',
    '',
    '--b',
    'Content-Type: text/plain; charset=utf-8',
    '',
    'hello',
    '--b',
    'Content-Type: application/octet-stream; name="big.bin"',
    'Content-Transfer-Encoding: base64',
    '',
    Buffer.alloc(300_000, 7).toString('base64').replace(/.{76}/g, '$&\r\n'),
    '--b--',
    '',
  ].join('\r\n'),
);

// Five megabytes of short lines: mailparser takes a few hundred milliseconds on it.
const slow = Buffer.from(`From: ic@corp.example\r\nTo: a@corp.example\r\n\r\n${'ab\r\n'.repeat(1_300_000)}`);

describe('MimeReader', () => {
  it('reads a message in a worker thread and hands back plain values, the caller keeping its buffer', async () => {
    const r = reader({ size: 1 });
    const copy = Buffer.from(small);
    const parsed = await r.read(small);
    expect(small.equals(copy)).toBe(true);
    expect(parsed.subject).toBe('Störung');
    expect(parsed.text.trim()).toBe('hello');
    expect(parsed.to).toEqual([{ name: '', address: 'a@corp.example' }, { name: 'B', address: 'b@corp.example' }]);
    expect(parsed.from).toEqual([{ name: 'IC', address: 'ic@corp.example' }]);
    expect(parsed.attachments.map((a) => [a.filename, a.content.byteLength, a.content[0]])).toEqual([['big.bin', 300_000, 7]]);
    expect(r.threads()).toHaveLength(1);
  });

  it('refuses a parse that outlives the deadline permanently, replaces the worker, and reads the next message', async () => {
    // 24 MB of two-character lines take mailparser about 12 s; the next message, a few bytes, far less than the deadline.
    const r = reader({ size: 1, deadlineMs: 1_500 });
    const err = await refusal(r.read(Buffer.from(`From: ic@corp.example\r\nTo: a@corp.example\r\n\r\n${'ab\r\n'.repeat(6_000_000)}`)));
    expect(err.code).toBe('message_unparsable');
    expect(err.message).toBe('The message could not be read within 1500 ms, so it can never be accepted; simplify it (fewer parts, plain text) and send it again.');
    expect(r.threads()).toEqual([]);
    expect((await r.read(Buffer.from('From: ic@corp.example\r\n\r\nhello\r\n'))).text.trim()).toBe('hello');
    expect(r.threads()).toHaveLength(1);
  }, 30_000);

  it('refuses a message that exhausts the worker heap permanently', async () => {
    const r = reader({ size: 1, maxHeapMb: 24 });
    // Large decoded text and HTML strings on a small heap.
    const huge = Buffer.from(
      `From: ic@corp.example\r\nTo: a@corp.example\r\nContent-Type: multipart/alternative; boundary=b\r\n\r\n${`--b\r\nContent-Type: text/html\r\n\r\n${'<p>\u00e9</p>\r\n'.repeat(300_000)}\r\n`.repeat(6)}--b--\r\n`,
    );
    const err = await refusal(r.read(huge));
    expect(err.code).toBe('message_unparsable');
    expect(err.message).toBe('Reading the message needs more memory than the relay gives one message, so it can never be accepted; send smaller or fewer parts.');
  }, 60_000);

  it('answers overload with unavailable (try later), not a permanent refusal', async () => {
    const r = reader({ size: 1, maxQueue: 1 });
    const first = r.read(slow);
    const second = r.read(small);
    const third = await refusal(r.read(small));
    expect(third.code).toBe('unavailable');
    expect(third.message).toBe('The relay cannot read messages right now (too many messages waiting to be read); nothing was accepted, try again shortly.');
    await first;
    expect((await second).text.trim()).toBe('hello');
  });

  it('refuses what is still waiting when it closes', async () => {
    const r = reader({ size: 1 });
    const first = r.read(slow);
    const waiting = r.read(small);
    const closing = r.close();
    expect((await refusal(waiting)).code).toBe('unavailable');
    await first;
    await closing;
    expect((await refusal(r.read(small))).code).toBe('unavailable');
  });
});
