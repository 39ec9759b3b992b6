/**
 * SMS delivery through the twilio SDK (`messages.create`). The SDK client gets
 * our own http client, a RequestClient subclass, which sends its requests to
 * TWILIO_API_BASE_URL when set (proxies, tests) and hands 429's Retry-After on
 * to the worker; the SDK itself is not patched.
 */
import twilio from 'twilio';
import type RequestClient from 'twilio/lib/base/RequestClient.js';
// A CommonJS module whose class is its `default` export, hence the namespace import.
import type * as TwilioResponse from 'twilio/lib/http/response.js';
import { DeliveryError, type Channel, type OutgoingDelivery, type SendReceipt } from '../channel.js';
import { nudgeFor } from './guard.js';

/** Twilio answered 429. Raised by the http client because the SDK's RestException drops the Retry-After header. */
export class TwilioRateLimited extends Error {
  constructor(
    /** Seconds Twilio asked us to wait, when it said. */
    readonly retryAfter: number | undefined,
  ) {
    super('Twilio rate limit (HTTP 429)');
    this.name = 'TwilioRateLimited';
  }
}

/** Seconds from a Retry-After header (delta-seconds or HTTP-date, RFC 9110 §10.2.3); undefined when absent or unreadable. */
export function parseRetryAfter(value: unknown, now: Date = new Date()): number | undefined {
  const text = Array.isArray(value) ? value[0] : value;
  if (typeof text !== 'string' || text.trim() === '') return undefined;
  if (/^\d+$/.test(text.trim())) return Number(text.trim());
  const at = Date.parse(text);
  return Number.isNaN(at) ? undefined : Math.max(0, Math.ceil((at - now.getTime()) / 1000));
}

/** The same path and query on another origin (and path prefix): `https://api.twilio.com/2010-04-01/…` → `<base>/2010-04-01/…`. */
export function rewriteOrigin(uri: string, baseUrl: string): string {
  const original = new URL(uri);
  return `${baseUrl.replace(/\/+$/, '')}${original.pathname}${original.search}`;
}

/** The twilio SDK's RequestClient, pointed at `baseUrl` when given, raising TwilioRateLimited on 429. */
export class RelayTwilioHttpClient extends twilio.RequestClient {
  constructor(
    private readonly baseUrl: string | undefined,
    options: RequestClient.RequestClientOptions = {},
  ) {
    super(options);
  }

  override async request<TData>(opts: RequestClient.RequestOptions<TData>): Promise<TwilioResponse.default<TData>> {
    const uri = this.baseUrl === undefined ? opts.uri : rewriteOrigin(opts.uri, this.baseUrl);
    const response = await super.request<TData>({ ...opts, uri });
    const headers = (response.headers ?? {}) as Record<string, unknown>;
    if (response.statusCode === 429) throw new TwilioRateLimited(parseRetryAfter(headers['retry-after']));
    return response;
  }
}

// Twilio error codes seen when texting; the hint is what an operator can do.
const TWILIO_CODES: Readonly<Record<number, string>> = {
  10001: 'the Twilio account is not active (suspended, or out of funds)',
  20003: 'authentication failed: check TWILIO_ACCOUNT_SID and TWILIO_AUTH_TOKEN',
  20005: 'the Twilio account is not active (suspended, or out of funds)',
  20404: 'the Messages API was not found: check TWILIO_ACCOUNT_SID and TWILIO_API_BASE_URL',
  21211: "'To' is not a valid phone number: fix the member's roster phone",
  21212: 'TWILIO_FROM is not a valid sender number',
  21408: 'sending to this region is not enabled on the Twilio account',
  21601: 'TWILIO_FROM is not an SMS-capable number of this account',
  21603: 'no sender: set TWILIO_FROM',
  21606: 'TWILIO_FROM is not an SMS-capable number of this account',
  21610: 'the recipient has unsubscribed (replied STOP); they must reply START',
  21612: 'Twilio cannot route to this number',
  21614: "'To' is not a mobile number",
  21659: 'TWILIO_FROM is not a Twilio number of this account',
  21660: 'TWILIO_FROM belongs to another Twilio account',
  21701: 'the messaging service in TWILIO_FROM does not exist in this account',
  21705: 'the messaging service in TWILIO_FROM is not valid',
};

// Failures of the account or the sending setup, not of one message: every
// nudge would meet them until an operator acts, so they are retried (and
// raised as a channel problem) rather than failing each nudge for good.
const ACCOUNT_CODES: ReadonlySet<number> = new Set([10001, 20005]);
const CONFIG_CODES: ReadonlySet<number> = new Set([21212, 21601, 21603, 21606, 21659, 21660, 21701, 21705]);

interface TwilioErrorShape {
  status?: unknown;
  code?: unknown;
}

/**
 * Maps a failed send. Permanent only for a 4xx about this message (21211
 * invalid number, 21610 unsubscribed, 21408 region, …). 401/403 and 20003
 * (credentials), 10001/20005 (account not active), the codes of a bad
 * TWILIO_FROM or messaging service, and a 404 on the API path fail every
 * nudge alike, so they are transient with an UpstreamProblem, as are 429
 * (`rate`), 5xx (`unavailable`) and connection trouble (`connection`).
 */
export function classifyTwilioError(err: unknown): DeliveryError {
  if (err instanceof DeliveryError) return err;
  if (err instanceof TwilioRateLimited) {
    return new DeliveryError('Twilio rate limit (HTTP 429)', true, err.retryAfter, { problem: 'rate', hint: 'Twilio asks the relay to slow down (HTTP 429); nudges are kept and sent as it allows' });
  }
  const e = (typeof err === 'object' && err !== null ? err : {}) as TwilioErrorShape;
  // Twilio's own message can quote the phone number; only the status and code are kept.
  if (typeof e.status === 'number') {
    const code = typeof e.code === 'number' ? e.code : undefined;
    const known = code !== undefined ? TWILIO_CODES[code] : undefined;
    const label = `HTTP ${e.status}${code === undefined ? '' : `, error ${code}`}${known ? `: ${known}` : ''}`;
    if (e.status === 429) return new DeliveryError(`Twilio rate limit (${label})`, true, undefined, { problem: 'rate', hint: `Twilio asks the relay to slow down (${label})` });
    if (e.status >= 500) return new DeliveryError(`Twilio unavailable (${label})`, true, undefined, { problem: 'unavailable', hint: `Twilio is failing (${label}); nudges are kept and retried` });
    if (e.status === 401 || e.status === 403 || code === 20003) {
      return new DeliveryError(`Twilio refused the relay's credentials (${label})`, true, undefined, {
        problem: 'auth',
        hint: `Twilio refused the relay's credentials (${label}): check TWILIO_ACCOUNT_SID and TWILIO_AUTH_TOKEN`,
      });
    }
    if (code !== undefined && ACCOUNT_CODES.has(code)) {
      return new DeliveryError(`Twilio account not active (${label})`, true, undefined, { problem: 'account', hint: `Twilio says the account cannot send (${label}): check it in the Twilio console` });
    }
    if (e.status === 404 || (code !== undefined && CONFIG_CODES.has(code))) {
      return new DeliveryError(`Twilio refused the relay's sending setup (${label})`, true, undefined, {
        problem: 'config',
        hint: `Twilio refused the relay's sending setup (${label}): check TWILIO_FROM, TWILIO_ACCOUNT_SID and TWILIO_API_BASE_URL`,
      });
    }
    return new DeliveryError(`Twilio refused the message (${label})`, false);
  }
  const network = (err as { code?: unknown } | null)?.code;
  const reason = typeof network === 'string' ? `: ${network}` : '';
  return new DeliveryError(`cannot reach Twilio${reason}`, true, undefined, {
    problem: 'connection',
    hint: `cannot reach Twilio${reason}: check the network path to it (and TWILIO_API_BASE_URL when set)`,
  });
}

export interface TwilioChannelOptions {
  accountSid: string;
  authToken: string;
  /** An E.164 number, or a messaging service SID (MG…). */
  from: string;
  /** TWILIO_API_BASE_URL: another origin for the SDK's requests. */
  apiBaseUrl?: string | undefined;
  /** Per request, ms. */
  timeoutMs?: number;
  now?: () => Date;
}

/** Creates the Twilio SMS channel: one `messages.create` per delivery, the nudge as body. */
export function createTwilioChannel(options: TwilioChannelOptions): Channel {
  const httpClient = new RelayTwilioHttpClient(options.apiBaseUrl, { timeout: options.timeoutMs ?? 30_000 });
  // autoRetry off: the durable queue retries, with backoff and RELAY_DELIVERY_MAX_AGE, across restarts.
  const client = twilio(options.accountSid, options.authToken, { httpClient, autoRetry: false });
  const sender = options.from.startsWith('MG') ? { messagingServiceSid: options.from } : { from: options.from };
  const now = options.now ?? (() => new Date());
  return {
    async send(delivery: OutgoingDelivery): Promise<SendReceipt> {
      const { to, nudge } = nudgeFor(delivery);
      try {
        const message = await client.messages.create({ to, body: nudge, ...sender });
        return { id: message.sid, at: now() };
      } catch (err) {
        throw classifyTwilioError(err);
      }
    },
  };
}
