/**
 * The one interface every delivery channel implements, and the error that
 * tells the worker whether to try again.
 */
import type { Envelope } from '../store/outbox.js';

/** What a channel needs to send one queued delivery. */
export interface OutgoingDelivery {
  id: string;
  envelope: Envelope;
  body: Buffer;
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

/** A failed attempt: transient ones are retried with backoff, permanent ones fail the delivery. */
export class DeliveryError extends Error {
  constructor(
    message: string,
    readonly transient: boolean,
    /** Seconds the provider asked us to wait, when it said. */
    readonly retryAfter?: number,
  ) {
    super(message);
    this.name = 'DeliveryError';
  }
}
