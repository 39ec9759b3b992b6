/**
 * The bench's upstream mail server: a real smtp-server on loopback, like
 * test/helpers/upstream.ts, but it keeps only each message's Message-ID and
 * arrival time (not the bytes), so a 25 MB run does not measure the sink.
 */
import type { AddressInfo } from 'node:net';
import { SMTPServer } from 'smtp-server';
import { now } from './lib.js';

/** A running sink. */
export interface Sink {
  readonly url: string;
  /** Message-ID (with angle brackets) -> arrival time (bench clock, ms). */
  readonly arrivals: Map<string, number>;
  /** Bytes received over all messages. */
  readonly bytes: () => number;
  /** Resolves when every id in `ids` has arrived; rejects after timeoutMs. */
  expect(ids: readonly string[], timeoutMs: number): Promise<void>;
  stop(): Promise<void>;
}

const MESSAGE_ID = /^Message-ID:\s*(<[^>\r\n]+>)/im;

/** Starts a sink on 127.0.0.1, any free port. */
export async function startSink(): Promise<Sink> {
  const arrivals = new Map<string, number>();
  let bytes = 0;
  let waiter: { ids: readonly string[]; resolve: () => void } | undefined;
  const check = (): void => {
    if (waiter && waiter.ids.every((id) => arrivals.has(id))) {
      const w = waiter;
      waiter = undefined;
      w.resolve();
    }
  };
  const server = new SMTPServer({
    authOptional: true,
    disabledCommands: ['STARTTLS'],
    logger: false,
    closeTimeout: 50,
    onData(stream, _session, callback) {
      // The outer headers come first; 16 KiB holds them with room to spare.
      let head = '';
      stream.on('data', (chunk: Buffer) => {
        bytes += chunk.length;
        if (head.length < 16_384) head += chunk.toString('latin1', 0, Math.min(chunk.length, 16_384));
      });
      stream.on('end', () => {
        const at = now();
        const id = MESSAGE_ID.exec(head)?.[1];
        if (id) arrivals.set(id, at);
        check();
        callback();
      });
    },
  });
  await new Promise<void>((resolve, reject) => {
    server.once('error', reject);
    server.listen(0, '127.0.0.1', () => resolve());
  });
  const port = (server.server.address() as AddressInfo).port;
  return {
    url: `smtp://127.0.0.1:${port}`,
    arrivals,
    bytes: () => bytes,
    expect(ids, timeoutMs) {
      return new Promise((resolve, reject) => {
        const timer = setTimeout(() => {
          waiter = undefined;
          reject(new Error(`upstream got ${ids.filter((id) => arrivals.has(id)).length} of ${ids.length} messages within ${timeoutMs} ms`));
        }, timeoutMs);
        waiter = { ids, resolve: () => (clearTimeout(timer), resolve()) };
        check();
      });
    },
    stop: () => new Promise<void>((resolve) => server.close(() => resolve())),
  };
}
