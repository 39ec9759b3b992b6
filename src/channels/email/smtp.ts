/**
 * Email delivery over SMTP with nodemailer to RELAY_SMTP_UPSTREAM. The bytes
 * are sent exactly as composed (raw), with the envelope from the outbox, so
 * nothing downstream of the policy can change the message.
 */
import nodemailer from 'nodemailer';
import type { SMTPPoolOptions } from 'nodemailer/lib/smtp-pool';
import { DeliveryError, type Channel, type OutgoingDelivery, type SendReceipt } from '../channel.js';

interface SmtpErrorShape {
  responseCode?: number;
  code?: string;
  response?: string;
  message?: string;
}

/** Maps a nodemailer failure: a 5xx reply is permanent; 4xx and connection trouble are transient. */
export function classifySmtpError(err: unknown): DeliveryError {
  const e = (err ?? {}) as SmtpErrorShape;
  const text = (e.response ?? e.message ?? String(err)).replace(/[\r\n]+/g, ' ').slice(0, 300);
  if (typeof e.responseCode === 'number' && e.responseCode >= 500) return new DeliveryError(`upstream refused: ${text}`, false);
  return new DeliveryError(`upstream unavailable: ${e.code ? `${e.code} ` : ''}${text}`, true);
}

/** How long to wait on the upstream, in ms; a silent server must not hold a delivery slot for ever. */
export interface SmtpTimeouts {
  /** TCP connect. */
  connectionTimeout?: number;
  /** The 220 greeting after connecting. */
  greetingTimeout?: number;
  /** Inactivity on an open connection, including the reply to the end of DATA. */
  socketTimeout?: number;
}

/** Creates the SMTP channel for an smtp:// or smtps:// URL (auth and TLS as the URL says). */
export function createSmtpChannel(
  url: string,
  options: { tls?: { rejectUnauthorized?: boolean; ca?: string | Buffer }; timeouts?: SmtpTimeouts } = {},
): Channel & { close(): void } {
  const parsed = new URL(url);
  const secure = parsed.protocol === 'smtps:';
  const transportOptions: SMTPPoolOptions & { pool: true } = {
    host: parsed.hostname,
    port: parsed.port ? Number(parsed.port) : secure ? 465 : 587,
    secure,
    // STARTTLS whenever the server offers it on smtp://; nodemailer's default.
    auth: parsed.username ? { user: decodeURIComponent(parsed.username), pass: decodeURIComponent(parsed.password) } : undefined,
    connectionTimeout: options.timeouts?.connectionTimeout ?? 30_000,
    greetingTimeout: options.timeouts?.greetingTimeout ?? 30_000,
    socketTimeout: options.timeouts?.socketTimeout ?? 60_000,
    pool: true,
    maxConnections: 4,
    tls: options.tls,
  };
  const transport = nodemailer.createTransport(transportOptions);
  return {
    async send(delivery: OutgoingDelivery): Promise<SendReceipt> {
      if (delivery.envelope.kind !== 'email') throw new DeliveryError('not an email envelope', false);
      try {
        const info = await transport.sendMail({ envelope: { from: delivery.envelope.from, to: delivery.envelope.to }, raw: delivery.body });
        if (info.rejected.length > 0 && info.accepted.length === 0) throw new DeliveryError(`upstream refused every recipient`, false);
        return { id: info.messageId || info.response, at: new Date() };
      } catch (err) {
        throw err instanceof DeliveryError ? err : classifySmtpError(err);
      }
    },
    close: () => transport.close(),
  };
}
