/**
 * A deliberately broken SMTP server, scripted over a raw TCP socket so each
 * fault happens at an exact point of the dialogue (RFC 5321 §3.3, §4.1.1.4):
 * a server that never greets, one that drops the connection in the middle of
 * DATA, and ones that take the whole message but never answer it or hang up
 * before answering — the cases where the client cannot know whether the mail
 * was taken, so at-least-once delivery must send it again. And servers that
 * refuse the relay before any message: a 554 greeting, a STARTTLS they
 * announce but will not start, an AUTH refusal that echoes the command.
 */
import net from 'node:net';

/** Where the server fails. */
export type SmtpFault =
  /** Accepts the TCP connection and never says a word: the greeting times out. */
  | 'silent'
  /** Answers DATA with 354, reads the first chunk of the message, then destroys the socket. */
  | 'drop-mid-data'
  /** Reads the whole message up to the final dot, records it, then destroys the socket without a reply. */
  | 'drop-after-data'
  /** Reads the whole message, records it, and never replies: the client's socket timeout fires. */
  | 'hang-after-data'
  /** Greets with `554 go away` (RFC 5321 §3.1: no service here), then waits for QUIT. */
  | 'reject-greeting'
  /** Announces STARTTLS in EHLO and answers it `454 4.7.0 TLS not available due to temporary reason`. */
  | 'refuse-starttls'
  /** Announces AUTH and answers it 535, quoting the command line it got (credentials included), as some servers do. */
  | 'echo-auth';

/** A message the faulty server read in full before failing (the client saw no 250). */
export interface HalfTaken {
  to: string[];
  raw: Buffer;
}

/** A running faulty server. */
export interface FaultySmtp {
  readonly port: number;
  readonly url: string;
  /** Connections accepted so far. */
  readonly connections: number;
  /** Messages read in full before the fault (only for the *-after-data faults). */
  readonly halfTaken: HalfTaken[];
  /** Closes the listener and every open connection, freeing the port for a healthy server. */
  stop(): Promise<void>;
}

const END_OF_DATA = Buffer.from('\r\n.\r\n');

/** Starts a server on 127.0.0.1 that fails with `fault` on every connection. */
export async function startFaultySmtp(fault: SmtpFault, port = 0): Promise<FaultySmtp> {
  const sockets = new Set<net.Socket>();
  const halfTaken: HalfTaken[] = [];
  let connections = 0;
  const server = net.createServer((socket) => {
    connections += 1;
    sockets.add(socket);
    socket.on('close', () => sockets.delete(socket));
    socket.on('error', () => undefined);
    if (fault === 'silent') return;
    let inData = false;
    let buffer = Buffer.alloc(0);
    let rcpt: string[] = [];
    const reply = (line: string): void => {
      if (!socket.destroyed) socket.write(`${line}\r\n`);
    };
    reply(fault === 'reject-greeting' ? '554 go away' : '220 faulty.test ESMTP');
    socket.on('data', (chunk: Buffer) => {
      buffer = Buffer.concat([buffer, chunk]);
      for (;;) {
        if (inData) {
          if (fault === 'drop-mid-data') {
            socket.destroy();
            return;
          }
          const end = buffer.indexOf(END_OF_DATA);
          if (end < 0) return;
          halfTaken.push({ to: rcpt, raw: buffer.subarray(0, end + 2) });
          buffer = buffer.subarray(end + END_OF_DATA.length);
          inData = false;
          if (fault === 'drop-after-data') socket.destroy();
          // 'hang-after-data': say nothing, ever.
          return;
        }
        const eol = buffer.indexOf('\r\n');
        if (eol < 0) return;
        const line = buffer.subarray(0, eol).toString('latin1');
        buffer = buffer.subarray(eol + 2);
        const verb = line.slice(0, 4).toUpperCase();
        if (verb === 'EHLO') {
          reply('250-faulty.test');
          if (fault === 'refuse-starttls') reply('250-STARTTLS');
          if (fault === 'echo-auth') reply('250-AUTH PLAIN LOGIN');
          reply('250 8BITMIME');
        } else if (verb === 'STAR' && fault === 'refuse-starttls') {
          reply('454 4.7.0 TLS not available due to temporary reason');
        } else if (verb === 'AUTH' && fault === 'echo-auth') {
          reply(`535 5.7.8 authentication failed for: ${line}`);
        } else if (verb === 'HELO' || verb === 'RSET' || verb === 'NOOP') {
          if (verb === 'RSET') rcpt = [];
          reply('250 OK');
        } else if (verb === 'MAIL') {
          rcpt = [];
          reply('250 OK');
        } else if (verb === 'RCPT') {
          rcpt.push(/<([^>]*)>/.exec(line)?.[1] ?? '');
          reply('250 OK');
        } else if (verb === 'DATA') {
          inData = true;
          reply('354 go ahead');
        } else if (verb === 'QUIT') {
          reply('221 bye');
          socket.end();
          return;
        } else {
          reply('502 not implemented');
        }
      }
    });
  });
  await new Promise<void>((resolve, reject) => {
    server.once('error', reject);
    server.listen(port, '127.0.0.1', () => resolve());
  });
  const bound = (server.address() as net.AddressInfo).port;
  return {
    port: bound,
    url: `smtp://127.0.0.1:${bound}`,
    get connections() {
      return connections;
    },
    halfTaken,
    async stop() {
      for (const socket of sockets) socket.destroy();
      await new Promise<void>((resolve) => server.close(() => resolve()));
    },
  };
}
