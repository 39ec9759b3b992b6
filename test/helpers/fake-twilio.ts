/**
 * A local stand-in for Twilio's Messages API, a real node:http server on
 * 127.0.0.1:0: `POST /2010-04-01/Accounts/{sid}/Messages.json`, form-encoded,
 * HTTP Basic auth (sid:token). It answers 201 with an `SM…` sid, or what the
 * test told it to (503, 429 with Retry-After, 400 with a Twilio error code),
 * and records every request's To, From and Body.
 */
import { randomBytes } from 'node:crypto';
import { createServer, type IncomingMessage, type ServerResponse } from 'node:http';
import type { AddressInfo } from 'node:net';

/** What the fake saw of one request, and what it answered. */
export interface FakeTwilioRequest {
  method: string;
  path: string;
  authorized: boolean;
  to: string | undefined;
  from: string | undefined;
  messagingServiceSid: string | undefined;
  body: string | undefined;
  /** Every form field, for assertions on what else the SDK sent. */
  form: Record<string, string>;
  status: number;
}

/** A failure to answer instead of 201. */
export type FakeTwilioFailure = { status: 503 } | { status: 429; retryAfter?: string } | { status: 400; code: number } | { status: number; code?: number };

export interface FakeTwilio {
  /** The origin to use as TWILIO_API_BASE_URL. */
  url: string;
  accountSid: string;
  authToken: string;
  /** Every request, in order. */
  requests: FakeTwilioRequest[];
  /** Requests answered 201. */
  delivered(): FakeTwilioRequest[];
  /** Answers the next `times` message requests with `failure`, then recovers. */
  failNext(failure: FakeTwilioFailure, times?: number): void;
  stop(): Promise<void>;
}

const hex = (bytes: number) => randomBytes(bytes).toString('hex');

function readBody(req: IncomingMessage): Promise<string> {
  return new Promise((resolve, reject) => {
    const chunks: Buffer[] = [];
    req.on('data', (c: Buffer) => chunks.push(c));
    req.on('end', () => resolve(Buffer.concat(chunks).toString('utf8')));
    req.on('error', reject);
  });
}

function json(res: ServerResponse, status: number, body: unknown, headers: Record<string, string> = {}): void {
  res.writeHead(status, { 'Content-Type': 'application/json', ...headers });
  res.end(JSON.stringify(body));
}

/** Starts the fake with a fresh account SID and auth token. */
export async function startFakeTwilio(): Promise<FakeTwilio> {
  const accountSid = `AC${hex(16)}`;
  const authToken = hex(16);
  const requests: FakeTwilioRequest[] = [];
  const failures: FakeTwilioFailure[] = [];
  const expectedAuth = `Basic ${Buffer.from(`${accountSid}:${authToken}`).toString('base64')}`;

  const server = createServer((req, res) => {
    void (async () => {
      const raw = await readBody(req);
      const form = Object.fromEntries(new URLSearchParams(raw));
      const path = (req.url ?? '').split('?')[0] ?? '';
      const record: FakeTwilioRequest = {
        method: req.method ?? '',
        path,
        authorized: req.headers.authorization === expectedAuth,
        to: form['To'],
        from: form['From'],
        messagingServiceSid: form['MessagingServiceSid'],
        body: form['Body'],
        form,
        status: 0,
      };
      requests.push(record);
      const answer = (status: number, body: unknown, headers?: Record<string, string>) => {
        record.status = status;
        json(res, status, body, headers);
      };
      const match = /^\/2010-04-01\/Accounts\/([^/]+)\/Messages\.json$/.exec(path);
      if (req.method !== 'POST' || !match) return answer(404, { code: 20404, message: 'The requested resource was not found', status: 404 });
      if (!record.authorized || match[1] !== accountSid) return answer(401, { code: 20003, message: 'Authenticate', status: 401 });
      const failure = failures.shift();
      if (failure) {
        const headers: Record<string, string> = 'retryAfter' in failure && failure.retryAfter !== undefined ? { 'Retry-After': failure.retryAfter } : {};
        const code = 'code' in failure && failure.code !== undefined ? failure.code : failure.status === 429 ? 20429 : failure.status >= 500 ? 20500 : 21000;
        // Twilio's messages quote the number; the relay must not copy them into its audit log.
        return answer(failure.status, { code, message: `The 'To' number ${form['To'] ?? ''} is not reachable`, more_info: `https://www.twilio.com/docs/errors/${code}`, status: failure.status }, headers);
      }
      if (!form['To'] || !form['Body'] || !(form['From'] || form['MessagingServiceSid'])) {
        return answer(400, { code: 21604, message: "A 'To' phone number is required.", status: 400 });
      }
      const now = new Date().toUTCString();
      answer(201, {
        sid: `SM${hex(16)}`,
        account_sid: accountSid,
        to: form['To'],
        from: form['From'] ?? null,
        messaging_service_sid: form['MessagingServiceSid'] ?? null,
        body: form['Body'],
        status: 'queued',
        num_segments: '1',
        num_media: '0',
        direction: 'outbound-api',
        api_version: '2010-04-01',
        date_created: now,
        date_updated: now,
        date_sent: null,
        error_code: null,
        error_message: null,
        price: null,
        price_unit: 'USD',
        uri: `/2010-04-01/Accounts/${accountSid}/Messages/SM.json`,
        subresource_uris: {},
      });
    })().catch((err: unknown) => {
      res.statusCode = 500;
      res.end(String(err));
    });
  });
  await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
  const { port } = server.address() as AddressInfo;
  return {
    url: `http://127.0.0.1:${port}`,
    accountSid,
    authToken,
    requests,
    delivered: () => requests.filter((r) => r.status === 201),
    failNext(failure, times = 1) {
      for (let i = 0; i < times; i++) failures.push(failure);
    },
    stop: () =>
      new Promise<void>((resolve) => {
        server.closeAllConnections();
        server.close(() => resolve());
      }),
  };
}
