/**
 * Reading from the person at the terminal, or from a pipe: the token without
 * echo, a confirmation, a body on stdin. Every read is bounded.
 */
import { createInterface } from 'node:readline/promises';
import { CliError, EXIT } from './exit.js';

/** The input side the CLI reads from (process.stdin in production). */
export interface InputStream extends NodeJS.ReadableStream {
  isTTY?: boolean;
  setRawMode?: (mode: boolean) => unknown;
}

/** Reads all of stdin, refusing more than `limit` bytes rather than holding it all. */
export async function readStdin(stdin: InputStream, limit: number, what: string): Promise<Buffer> {
  const chunks: Buffer[] = [];
  let size = 0;
  for await (const chunk of stdin) {
    const buf = typeof chunk === 'string' ? Buffer.from(chunk) : (chunk as Buffer);
    size += buf.length;
    if (size > limit) throw new CliError('too_large', `${what} on stdin is larger than ${limit} bytes.`, EXIT.failure);
    chunks.push(buf);
  }
  return Buffer.concat(chunks);
}

/**
 * Reads a secret: from the terminal without echo when stdin is one, else the
 * first line of stdin (so `echo "$TOKEN" | incident-relay login` works in
 * scripts and the token never appears in argv).
 */
export async function readSecret(prompt: string, stdin: InputStream, stderr: { write(s: string): unknown }): Promise<string> {
  if (!stdin.isTTY || !stdin.setRawMode) {
    const text = (await readStdin(stdin, 4096, 'The token')).toString('utf8');
    return (text.split(/\r?\n/)[0] ?? '').trim();
  }
  stderr.write(prompt);
  stdin.setRawMode(true);
  stdin.setEncoding('utf8');
  stdin.resume();
  try {
    return await new Promise<string>((resolve, reject) => {
      let typed = '';
      const onData = (data: string | Buffer): void => {
        for (const ch of data.toString()) {
          if (ch === '\r' || ch === '\n' || ch === '\u0004') {
            stdin.removeListener('data', onData);
            resolve(typed.trim());
            return;
          }
          if (ch === '\u0003') {
            stdin.removeListener('data', onData);
            reject(new CliError('cancelled', 'Cancelled; nothing was saved.', EXIT.failure));
            return;
          }
          if (ch === '\u007f' || ch === '\b') typed = typed.slice(0, -1);
          else if (typed.length < 4096) typed += ch;
        }
      };
      stdin.on('data', onData);
    });
  } finally {
    stdin.setRawMode(false);
    stdin.pause();
    stderr.write('\n');
  }
}

/** Asks a yes/no question on the terminal; false when stdin is not a terminal (scripts pass --yes). */
export async function confirm(question: string, stdin: InputStream, stderr: NodeJS.WritableStream): Promise<boolean> {
  if (!stdin.isTTY) return false;
  const rl = createInterface({ input: stdin, output: stderr, terminal: true });
  try {
    const answer = await rl.question(`${question} [y/N] `);
    return /^(y|yes)$/i.test(answer.trim());
  } finally {
    rl.close();
  }
}
