/**
 * The one interface every delivery channel implements, and the error that
 * tells the worker whether to try again.
 */
import type { Envelope } from '../store/outbox.js';

/**
 * A message too large to want whole in memory (an encrypted copy of a large
 * attachment): its exact length, and its bytes a chunk at a time, each time
 * `chunks()` is called.
 */
export interface ChunkedBody {
  readonly length: number;
  chunks(): Iterable<Buffer>;
}

/** What a channel needs to send one queued delivery. */
export interface OutgoingDelivery {
  id: string;
  envelope: Envelope;
  /** The bytes to send: whole, or (an encrypted copy) written as it is sent. */
  body: Buffer | ChunkedBody;
}

/** A recipient the provider refused while it took the message for the others. */
export interface RefusedRecipient {
  recipient: string;
  /** A 4xx (try this recipient again later) rather than a 5xx (never). */
  transient: boolean;
  /** The provider's reply, one line, for last_error and the audit log. */
  error: string;
  /** The reply code (e.g. 450, 550), when the provider gave one. */
  code?: number;
}

/** A provider's receipt. */
export interface SendReceipt {
  /** The provider's id: SMTP queue id or Message-ID, Twilio SID, file name. */
  id: string;
  at: Date;
  /**
   * Recipients of this delivery the provider did not take although it took the
   * message for the rest; the worker retries or fails them on their own.
   */
  refused?: RefusedRecipient[];
}

/** Sends one delivery. Throws DeliveryError to say whether a retry can help. */
export interface Channel {
  send(delivery: OutgoingDelivery): Promise<SendReceipt>;
}

/**
 * Why the upstream itself, rather than this one message, could not be used:
 * the same failure will meet every queued message until someone fixes it.
 * - `auth`: the provider refused the relay's credentials (SMTP 535/530, Twilio 401/20003)
 * - `tls`: TLS to the upstream could not be set up (STARTTLS refused or missing when required, handshake, certificate)
 * - `greeting`: the upstream refused the session (a 4xx/5xx greeting, EHLO and HELO refused)
 * - `connection`: cannot connect, DNS, a dropped connection, a timeout
 * - `protocol`: the peer does not speak SMTP as expected (wrong port, a proxy in the way)
 * - `unavailable`: the provider says it is out of service (SMTP 421, Twilio 5xx)
 * - `rate`: the provider asks the relay to slow down (Twilio 429)
 * - `account`: the provider account is not active (Twilio 10001, 20005)
 * - `config`: the sending setup is wrong for every message (Twilio `From` number or messaging service, a 404 on the API path)
 */
export type UpstreamProblem = 'auth' | 'tls' | 'greeting' | 'connection' | 'protocol' | 'unavailable' | 'rate' | 'account' | 'config';

/** What a channel knows about a failure of the upstream as a whole (see UpstreamProblem). */
export interface UpstreamFault {
  problem: UpstreamProblem;
  /** One line for the admin: what failed and what to check, naming the setting; never a secret. */
  hint: string;
}

/** A failed attempt: transient ones are retried with backoff, permanent ones fail the delivery. */
export class DeliveryError extends Error {
  /** Set when the upstream itself is misconfigured or unreachable; undefined when only this message was refused. */
  readonly problem: UpstreamProblem | undefined;
  /** The admin's hint for `problem`. */
  readonly hint: string | undefined;

  constructor(
    message: string,
    readonly transient: boolean,
    /** Seconds the provider asked us to wait, when it said. */
    readonly retryAfter?: number,
    upstream?: UpstreamFault,
  ) {
    super(message);
    this.name = 'DeliveryError';
    this.problem = upstream?.problem;
    this.hint = upstream?.hint;
  }
}
