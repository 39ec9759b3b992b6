/**
 * A real SMTP server (smtp-server) standing in for the company's mail server:
 * it records every envelope and the exact bytes, and can be told to answer
 * with a temporary or permanent failure (for the whole message, or for one
 * recipient at RCPT TO), to answer slowly, or be stopped and started again.
 * Optionally it requires AUTH (answering 535 to other credentials, as a mail
 * server does after a password rotation), offers STARTTLS with a given
 * certificate, or listens on another address than 127.0.0.1.
 */
import type { AddressInfo } from 'node:net';
import { SMTPServer, type SMTPServerOptions } from 'smtp-server';

export interface ReceivedMail {
  from: string;
  to: string[];
  raw: Buffer;
  /** Whether the session was encrypted (STARTTLS) when the message came in. */
  secure: boolean;
}

/** How the upstream is set up beyond its port. */
export interface UpstreamOptions {
  /** Listen address; default 127.0.0.1. */
  host?: string;
  /** Require AUTH PLAIN/LOGIN with exactly these credentials; anything else gets `535 5.7.8`. */
  auth?: { user: string; pass: string };
  /** Offer STARTTLS with this PEM pair (default: STARTTLS disabled). */
  tls?: { key: string; cert: string };
}

export interface Upstream {
  readonly port: number;
  readonly url: string;
  readonly received: ReceivedMail[];
  /** Answer DATA with this reply code (e.g. 451 or 550), or undefined to accept. */
  failWith: number | undefined;
  /** Answer RCPT TO for these addresses (lower case) with the reply code given (e.g. 450 or 550); the others are accepted. */
  readonly refuseRecipients: Map<string, number>;
  /** Wait this long (ms) before answering the end of DATA; 0 answers at once. */
  replyDelayMs: number;
  /** The credentials AUTH accepts (options.auth); change them to rotate the password. */
  auth: { user: string; pass: string } | undefined;
  /** Every AUTH attempt: the username, and whether it was accepted (never the password). */
  readonly logins: { user: string; ok: boolean }[];
  /** Resolves when `count` messages have arrived (or rejects after timeoutMs). */
  waitFor(count: number, timeoutMs?: number): Promise<ReceivedMail[]>;
  stop(): Promise<void>;
  /** Starts again on the same port. */
  start(): Promise<void>;
}

/** Starts an upstream on 127.0.0.1 (port 0 = any free port). */
export async function startUpstream(port = 0, options: UpstreamOptions = {}): Promise<Upstream> {
  const host = options.host ?? '127.0.0.1';
  const received: ReceivedMail[] = [];
  const waiters: { count: number; resolve: (m: ReceivedMail[]) => void }[] = [];
  let server: SMTPServer | undefined;
  const upstream: Upstream = {
    port,
    url: '',
    received,
    failWith: undefined,
    refuseRecipients: new Map(),
    replyDelayMs: 0,
    auth: options.auth,
    logins: [],
    waitFor(count, timeoutMs = 15_000) {
      if (received.length >= count) return Promise.resolve(received.slice());
      return new Promise((resolve, reject) => {
        const timer = setTimeout(() => reject(new Error(`upstream got ${received.length} of ${count} messages in ${timeoutMs} ms`)), timeoutMs);
        waiters.push({ count, resolve: (m) => (clearTimeout(timer), resolve(m)) });
      });
    },
    async stop() {
      const s = server;
      server = undefined;
      if (s) await new Promise<void>((resolve) => s.close(() => resolve()));
    },
    async start() {
      const serverOptions: SMTPServerOptions = {
        authOptional: options.auth === undefined,
        // Over plain TCP too: the relay decides whether that is acceptable (upstreamTlsPolicy), not this server.
        allowInsecureAuth: true,
        disabledCommands: options.tls ? [] : ['STARTTLS'],
        ...(options.tls ? { key: options.tls.key, cert: options.tls.cert } : {}),
        logger: false,
        onAuth(auth, _session, callback) {
          const expected = upstream.auth;
          const ok = expected !== undefined && auth.username === expected.user && auth.password === expected.pass;
          upstream.logins.push({ user: auth.username ?? '', ok });
          if (!ok) return callback(Object.assign(new Error('5.7.8 Authentication credentials invalid'), { responseCode: 535 }));
          callback(null, { user: auth.username });
        },
        // Do not wait 30 s for pooled client connections when a test stops us.
        closeTimeout: 50,
        onRcptTo(address, _session, callback) {
          const code = upstream.refuseRecipients.get(address.address.toLowerCase());
          if (code === undefined) return callback();
          callback(Object.assign(new Error(code >= 500 ? '5.1.1 mailbox unavailable' : '4.2.1 mailbox busy, try again later'), { responseCode: code }));
        },
        onData(stream, session, callback) {
          const chunks: Buffer[] = [];
          stream.on('data', (c: Buffer) => chunks.push(c));
          const answer = (): void => {
            if (upstream.failWith !== undefined) {
              const err = Object.assign(new Error(upstream.failWith >= 500 ? 'mailbox unavailable' : 'try again later'), { responseCode: upstream.failWith });
              callback(err);
              return;
            }
            received.push({
              from: session.envelope.mailFrom ? session.envelope.mailFrom.address : '',
              to: session.envelope.rcptTo.map((r) => r.address),
              raw: Buffer.concat(chunks),
              secure: session.secure === true,
            });
            for (const w of waiters.filter((w) => received.length >= w.count)) {
              waiters.splice(waiters.indexOf(w), 1);
              w.resolve(received.slice());
            }
            callback();
          };
          stream.on('end', () => (upstream.replyDelayMs > 0 ? setTimeout(answer, upstream.replyDelayMs) : answer()));
        },
      };
      const s = new SMTPServer(serverOptions);
      // A client that vanishes mid-session (a relay killed with SIGKILL) resets its connection; that is not the upstream's failure.
      s.on('error', () => undefined);
      await new Promise<void>((resolve, reject) => {
        s.once('error', reject);
        s.listen(upstream.port, host, () => resolve());
      });
      server = s;
      (upstream as { port: number }).port = (s.server.address() as AddressInfo).port;
      (upstream as { url: string }).url = `smtp://${host.includes(':') ? `[${host}]` : host}:${upstream.port}`;
    },
  };
  await upstream.start();
  return upstream;
}
