/**
 * A minimal SMTP client over node:net with a node:tls upgrade, for dialogues
 * a mail library would not produce (AUTH before STARTTLS, DATA after a
 * refused RCPT) and for asserting every reply exactly.
 */
import net from 'node:net';
import tls from 'node:tls';

/** One complete reply: the code, every line's text, and the raw lines. */
export interface Reply {
  code: number;
  /** The text of the last line (after "NNN "). */
  text: string;
  lines: string[];
}

/** A connected raw client. */
export interface RawSmtp {
  /** The greeting (220, or 421 when refused). */
  readonly greeting: Reply;
  /** Sends one command line and reads its reply. */
  command(line: string): Promise<Reply>;
  /** Sends bytes without reading a reply (for pipelining or partial input). */
  write(data: string | Buffer): void;
  /** Reads the next reply. */
  read(): Promise<Reply>;
  /** EHLO, STARTTLS trusting `ca`, EHLO again; returns the second EHLO reply. */
  startTls(ca: string): Promise<Reply>;
  /** AUTH PLAIN with an initial response. */
  authPlain(user: string, pass: string, authzid?: string): Promise<Reply>;
  /** DATA, then the message with dot-stuffing and the terminating dot; returns [reply to DATA, reply to the message]. */
  data(message: string | Buffer): Promise<[Reply, Reply | undefined]>;
  /** Resolves when the server closed the connection. */
  readonly closed: Promise<void>;
  close(): void;
}

/** Connects to host:port (default 127.0.0.1) and reads the greeting. */
export async function connectRaw(port: number, host = '127.0.0.1'): Promise<RawSmtp> {
  let socket: net.Socket | tls.TLSSocket = net.connect(port, host);
  let buffer = '';
  let pending: Reply['lines'] = [];
  const replies: Reply[] = [];
  const waiters: ((r: Reply | Error) => void)[] = [];
  let ended = false;
  let resolveClosed: () => void = () => undefined;
  const closed = new Promise<void>((resolve) => (resolveClosed = resolve));

  const deliver = (r: Reply | Error): void => {
    const waiter = waiters.shift();
    if (waiter) waiter(r);
    else if (!(r instanceof Error)) replies.push(r);
  };
  const onData = (chunk: Buffer): void => {
    buffer += chunk.toString('latin1');
    let idx: number;
    while ((idx = buffer.indexOf('\r\n')) >= 0) {
      const line = buffer.slice(0, idx);
      buffer = buffer.slice(idx + 2);
      pending.push(line);
      const m = /^(\d{3})([ -])(.*)$/.exec(line);
      if (m && m[2] === ' ') {
        deliver({ code: Number(m[1]), text: m[3] ?? '', lines: pending });
        pending = [];
      }
    }
  };
  const onClose = (): void => {
    ended = true;
    resolveClosed();
    while (waiters.length > 0) deliver(new Error('connection closed'));
  };
  const attach = (s: net.Socket): void => {
    s.on('data', onData);
    s.on('close', onClose);
    s.on('error', () => undefined);
  };
  attach(socket);

  const read = (): Promise<Reply> => {
    const ready = replies.shift();
    if (ready) return Promise.resolve(ready);
    if (ended) return Promise.reject(new Error('connection closed'));
    return new Promise((resolve, reject) => waiters.push((r) => (r instanceof Error ? reject(r) : resolve(r))));
  };
  const command = (line: string): Promise<Reply> => {
    socket.write(`${line}\r\n`);
    return read();
  };

  const greeting = await read();
  const client: RawSmtp = {
    greeting,
    command,
    read,
    closed,
    write: (data) => void socket.write(data),
    async startTls(ca) {
      await command('EHLO client.test');
      const ready = await command('STARTTLS');
      if (ready.code !== 220) throw new Error(`STARTTLS refused: ${ready.code} ${ready.text}`);
      const plain = socket as net.Socket;
      plain.removeListener('data', onData);
      plain.removeListener('close', onClose);
      const secure = tls.connect({ socket: plain, ca, servername: 'localhost' });
      await new Promise<void>((resolve, reject) => {
        secure.once('secureConnect', () => resolve());
        secure.once('error', reject);
      });
      attach(secure);
      socket = secure;
      return command('EHLO client.test');
    },
    authPlain(user, pass, authzid = '') {
      return command(`AUTH PLAIN ${Buffer.from(`${authzid}\0${user}\0${pass}`).toString('base64')}`);
    },
    async data(message) {
      const go = await command('DATA');
      if (go.code !== 354) return [go, undefined];
      const text = Buffer.isBuffer(message) ? message.toString('latin1') : message;
      const stuffed = text.replace(/\r?\n/g, '\r\n').replace(/^\./gm, '..');
      socket.write(Buffer.from(`${stuffed}${stuffed.endsWith('\r\n') ? '' : '\r\n'}.\r\n`, 'latin1'));
      return [go, await read()];
    },
    close: () => void socket.destroy(),
  };
  return client;
}
