/**
 * Closed-loop load: `concurrency` clients each send, wait for the answer, and
 * send again, until `count` messages were accepted; then wait until every one
 * has arrived at the upstream. Throughput is messages over the time from the
 * first send to the last arrival (end to end) or to the last accept.
 */
import nodemailer from 'nodemailer';
import { expectStatus, httpClient, latency, now, round } from './lib.js';
import type { Sink } from './upstream.js';

/** The figures of one load run. */
export interface LoadResult {
  count: number;
  concurrency: number;
  /** Accepted messages per second (first send to last 202/250). */
  acceptRate: number;
  /** Delivered messages per second (first send to last arrival at the upstream). */
  e2eRate: number;
  /** Request sent to 202/250 received, ms. */
  accept: { p50: number; p99: number };
  /** 202/250 received to arrival at the upstream, ms. */
  delivery: { p50: number; p99: number };
  /** Request sent to arrival at the upstream, ms. */
  endToEnd: { p50: number; p99: number };
}

interface Sent {
  t0: number;
  t1: number;
  messageId: string;
}

async function drive(count: number, concurrency: number, sink: Sink, sendOne: () => Promise<string>): Promise<LoadResult> {
  const sent: Sent[] = [];
  let next = 0;
  const start = now();
  const lane = async (): Promise<void> => {
    while (next < count) {
      next += 1;
      const t0 = now();
      const messageId = await sendOne();
      sent.push({ t0, t1: now(), messageId });
    }
  };
  await Promise.all(Array.from({ length: concurrency }, lane));
  const acceptedAt = now();
  await sink.expect(
    sent.map((s) => s.messageId),
    Math.max(60_000, count * 500),
  );
  const arrival = (s: Sent): number => sink.arrivals.get(s.messageId)!;
  const lastArrival = Math.max(...sent.map(arrival));
  return {
    count,
    concurrency,
    acceptRate: round((count * 1000) / (acceptedAt - start), 1),
    e2eRate: round((count * 1000) / (lastArrival - start), 1),
    accept: latency(sent.map((s) => s.t1 - s.t0)),
    delivery: latency(sent.map((s) => arrival(s) - s.t1)),
    endToEnd: latency(sent.map((s) => arrival(s) - s.t0)),
  };
}

/**
 * POSTs `body` to the incident's email route `count` times over real HTTP on
 * loopback. With several ports (relays sharing one database), the sends take
 * turns between them, as a load balancer would share them out.
 */
export async function httpLoad(opts: { port: number | number[]; token: string; codename: string; body: Record<string, unknown>; count: number; concurrency: number; sink: Sink }): Promise<LoadResult> {
  const ports = Array.isArray(opts.port) ? opts.port : [opts.port];
  const clients = ports.map((port) => httpClient(port, Math.ceil(opts.concurrency / ports.length)));
  const payload = Buffer.from(JSON.stringify(opts.body));
  let turn = 0;
  try {
    return await drive(opts.count, opts.concurrency, opts.sink, async () => {
      const client = clients[turn++ % clients.length]!;
      const answer = await client.request('POST', `/v1/incidents/${opts.codename}/emails`, opts.token, payload);
      return expectStatus<{ messageId: string }>(answer, 202, 'send').messageId;
    });
  } finally {
    for (const client of clients) client.close();
  }
}

/** Submits over SMTP with nodemailer as the mail client: STARTTLS (certificate pinned), AUTH PLAIN, `concurrency` pooled connections. */
export async function smtpLoad(opts: {
  port: number;
  tlsCert: string;
  user: string;
  token: string;
  codename: string;
  message: { to: string[]; cc: string[]; subject: string; text: string };
  count: number;
  concurrency: number;
  sink: Sink;
}): Promise<LoadResult> {
  const transport = nodemailer.createTransport({
    host: '127.0.0.1',
    port: opts.port,
    secure: false,
    requireTLS: true,
    tls: { ca: opts.tlsCert, servername: 'localhost' },
    auth: { user: opts.user, pass: opts.token },
    pool: true,
    maxConnections: opts.concurrency,
    maxMessages: Infinity,
  });
  try {
    return await drive(opts.count, opts.concurrency, opts.sink, async () => {
      const info = await transport.sendMail({
        from: opts.user,
        to: opts.message.to,
        cc: opts.message.cc,
        subject: opts.message.subject,
        text: opts.message.text,
        headers: { 'X-Incident': opts.codename },
      });
      // replies.ts: "250 2.0.0 Ok: queued as <message-id>, ..." names the relay's own Message-ID.
      const id = /queued as (<[^>\s]+>)/.exec(info.response)?.[1];
      if (!id) throw new Error(`SMTP reply without the queued Message-ID: ${info.response}`);
      return id;
    });
  } finally {
    transport.close();
  }
}
