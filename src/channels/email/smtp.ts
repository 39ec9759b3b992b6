/**
 * Email delivery over SMTP with nodemailer to RELAY_SMTP_UPSTREAM. The bytes
 * are sent exactly as composed (raw), with the envelope from the outbox, so
 * nothing downstream of the policy can change the message.
 */
import nodemailer from 'nodemailer';
import type { SMTPPoolOptions } from 'nodemailer/lib/smtp-pool';
import { DeliveryError, type Channel, type OutgoingDelivery, type RefusedRecipient, type SendReceipt } from '../channel.js';

interface SmtpErrorShape {
  responseCode?: number;
  code?: string;
  response?: string;
  message?: string;
  recipient?: string;
}

function oneLine(text: string): string {
  return text.replace(/[\r\n]+/g, ' ').slice(0, 300);
}

/** Maps a nodemailer failure: a 5xx reply is permanent; 4xx and connection trouble are transient. */
export function classifySmtpError(err: unknown): DeliveryError {
  const e = (err ?? {}) as SmtpErrorShape;
  const text = oneLine(e.response ?? e.message ?? String(err));
  if (typeof e.responseCode === 'number' && e.responseCode >= 500) return new DeliveryError(`upstream refused: ${text}`, false);
  return new DeliveryError(`upstream unavailable: ${e.code ? `${e.code} ` : ''}${text}`, true);
}

/** The recipients nodemailer lists as refused (a 4xx or 5xx to RCPT TO), each with its reply; a 5xx is permanent. */
export function refusedRecipients(info: { rejected?: readonly unknown[]; rejectedErrors?: readonly SmtpErrorShape[] }): RefusedRecipient[] {
  const errors = info.rejectedErrors ?? [];
  const seen = new Set<string>();
  const refused: RefusedRecipient[] = [];
  for (const entry of info.rejected ?? []) {
    const recipient = typeof entry === 'string' ? entry : String((entry as { address?: unknown }).address ?? entry);
    if (seen.has(recipient)) continue;
    seen.add(recipient);
    const e = errors.find((x) => x.recipient === recipient);
    const code = typeof e?.responseCode === 'number' ? e.responseCode : undefined;
    // No reply code means we cannot tell it was final: retrying may send it
    // late, whereas treating it as permanent would drop the recipient.
    const transient = code === undefined || code < 500;
    const reply = e ? oneLine(e.response ?? e.message ?? 'refused') : 'refused without a reply';
    refused.push({ recipient, transient, error: `upstream refused ${recipient}: ${reply}`, ...(code === undefined ? {} : { code }) });
  }
  return refused;
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
    // Each message is several round trips (MAIL, RCPT per recipient, DATA),
    // so throughput to the upstream is bound by connections, not bandwidth: 4
    // left delivery behind accepts under load (BENCHMARKS.md). 8 stays well
    // under common per-client limits (Postfix allows 50).
    maxConnections: 8,
    tls: options.tls,
  };
  const transport = nodemailer.createTransport(transportOptions);
  return {
    async send(delivery: OutgoingDelivery): Promise<SendReceipt> {
      if (delivery.envelope.kind !== 'email') throw new DeliveryError('not an email envelope', false);
      try {
        const info = await transport.sendMail({ envelope: { from: delivery.envelope.from, to: delivery.envelope.to }, raw: delivery.body });
        const refused = refusedRecipients(info);
        if (refused.length > 0 && info.accepted.length === 0) {
          // Nobody took it (nodemailer throws before DATA for SMTP; LMTP can
          // get here): a retry can help only if some refusal was a 4xx.
          throw new DeliveryError(`upstream refused every recipient: ${refused.map((r) => r.error).join('; ').slice(0, 300)}`, refused.some((r) => r.transient));
        }
        // Some recipients were refused, the rest took the message: report them
        // so the worker retries or fails them, instead of calling it all sent.
        return { id: info.messageId || info.response, at: new Date(), ...(refused.length > 0 ? { refused } : {}) };
      } catch (err) {
        throw err instanceof DeliveryError ? err : classifySmtpError(err);
      }
    },
    close: () => transport.close(),
  };
}
