/**
 * Email delivery over SMTP with nodemailer to RELAY_SMTP_UPSTREAM. The bytes
 * are sent exactly as composed (raw), with the envelope from the outbox, so
 * nothing downstream of the policy can change the message.
 */
import { Readable } from 'node:stream';
import nodemailer from 'nodemailer';
import type { SMTPPoolOptions } from 'nodemailer/lib/smtp-pool';
import { isLoopbackHost } from '../../loopback.js';
import { DeliveryError, type Channel, type OutgoingDelivery, type RefusedRecipient, type SendReceipt, type UpstreamProblem } from '../channel.js';

interface SmtpErrorShape {
  responseCode?: number;
  code?: string;
  /** The system error's own code (ECONNREFUSED, CERT_HAS_EXPIRED…) that nodemailer replaced with its own. */
  originalCode?: string;
  /** The SMTP step that failed: CONN, EHLO, HELO, STARTTLS, AUTH PLAIN, MAIL FROM, RCPT TO, DATA, API… */
  command?: string;
  response?: string;
  message?: string;
  recipient?: string;
}

function oneLine(text: string): string {
  return text.replace(/[\r\n]+/g, ' ').slice(0, 300);
}

// The replies that decide one message's fate (RFC 5321 §4.2.5): the reply to
// the end of DATA is reported under DATA as well. Only a 5xx here is final.
const TRANSACTION_COMMANDS: ReadonlySet<string> = new Set(['MAIL FROM', 'RCPT TO', 'DATA']);

// Node's and OpenSSL's codes for a TLS handshake or certificate failure, which
// reach us as ESOCKET on an smtps:// connection.
const TLS_SYSTEM_CODE = /^(ERR_SSL_|ERR_TLS_|EPROTO$)|CERT|SELF_SIGNED|UNABLE_TO_(GET|VERIFY)|HOSTNAME_MISMATCH/;

// What the admin should check for each problem; `reply` is the upstream's code, when it gave one.
function hintFor(problem: UpstreamProblem, reply: number | undefined, detail: string): string {
  const code = reply === undefined ? '' : ` (${reply})`;
  switch (problem) {
    case 'auth':
      return reply === 530
        ? 'the upstream requires a login (530): put its credentials in RELAY_SMTP_UPSTREAM (smtp://user:password@host:587)'
        : `the upstream refused the relay's login${code}: check the credentials in RELAY_SMTP_UPSTREAM`;
    case 'tls':
      return `TLS to the upstream failed${detail ? ` (${detail})` : ''}: the upstream must offer STARTTLS with a certificate valid for its host name (or use smtps://); set RELAY_SMTP_UPSTREAM_ALLOW_INSECURE=true only where the path to it is trusted`;
    case 'greeting':
      return `the upstream refused the session${code}: check that it accepts mail from this host`;
    case 'unavailable':
      return `the upstream is closing connections${code}: it is overloaded or shutting down`;
    case 'protocol':
      return 'the upstream does not answer like an SMTP server: check the port in RELAY_SMTP_UPSTREAM (465 needs smtps://)';
    default:
      return `cannot reach the upstream${detail ? ` (${detail})` : ''}: check the host and port in RELAY_SMTP_UPSTREAM and the network path to it`;
  }
}

/** Which UpstreamProblem a failure outside the transaction (connecting, greeting, EHLO, STARTTLS, AUTH) is. */
function upstreamProblemOf(e: SmtpErrorShape, reply: number | undefined): UpstreamProblem {
  const command = e.command ?? '';
  if (e.code === 'EAUTH' || e.code === 'ENOAUTH' || e.code === 'EOAUTH2' || command.startsWith('AUTH')) return 'auth';
  if (e.code === 'ETLS' || e.code === 'EREQUIRETLS' || command === 'STARTTLS' || TLS_SYSTEM_CODE.test(e.originalCode ?? '')) return 'tls';
  if (reply === 421) return 'unavailable';
  // A 4xx/5xx greeting, or EHLO and then HELO refused: the upstream will not talk to us.
  if (reply !== undefined && reply >= 400 && (command === 'CONN' || command === 'EHLO' || command === 'HELO' || command === 'LHLO')) return 'greeting';
  if (e.code === 'EPROTOCOL') return 'protocol';
  return 'connection';
}

/**
 * Maps a nodemailer failure by the step that failed. Permanent only for a 5xx
 * reply to MAIL FROM, RCPT TO or DATA (503, bad sequence, excepted: a new
 * session can take the same message) and for a message over the size the
 * upstream announced (what its 552 would say). Everything before the
 * transaction — connecting, the greeting, EHLO, STARTTLS, AUTH — fails every
 * message alike, so it is transient and names the UpstreamProblem: a rotated
 * password must hold the queue, not empty it. A 530 (authentication, or RFC
 * 3207 STARTTLS, required) is the same whatever command it answers.
 * `redact` removes the relay's own credentials from the text.
 */
export function classifySmtpError(err: unknown, redact: (text: string) => string = (t) => t): DeliveryError {
  const e = (typeof err === 'object' && err !== null ? err : {}) as SmtpErrorShape;
  // Redacted before it is cut to one short line, so no secret survives half-cut at the edge.
  const text = oneLine(redact(e.response ?? e.message ?? String(err)));
  const reply = typeof e.responseCode === 'number' ? e.responseCode : undefined;
  const prefix = `upstream unavailable: ${e.code ? `${e.code} ` : ''}${text}`;
  const command = e.command ?? '';
  if (reply === 530) {
    const problem: UpstreamProblem = /STARTTLS/i.test(text) ? 'tls' : 'auth';
    return new DeliveryError(prefix, true, undefined, { problem, hint: hintFor(problem, reply, 'the upstream requires STARTTLS first') });
  }
  if (TRANSACTION_COMMANDS.has(command)) {
    if (reply !== undefined && reply >= 500 && reply !== 503) return new DeliveryError(`upstream refused: ${text}`, false);
    // nodemailer's own check against the SIZE the upstream announced in EHLO (RFC 1870).
    if (reply === undefined && e.code === 'EMESSAGE' && command === 'MAIL FROM') return new DeliveryError(`upstream refused: ${text}`, false);
    if (reply === 421) return new DeliveryError(prefix, true, undefined, { problem: 'unavailable', hint: hintFor('unavailable', reply, '') });
    // A 4xx (greylisting, a full mailbox, a busy server): this message waits, the upstream works.
    if (reply !== undefined) return new DeliveryError(prefix, true);
  }
  if (e.code === 'EENVELOPE' || e.code === 'EMESSAGE' || e.code === 'ESTREAM' || e.code === 'EMAXLIMIT') {
    // Our side of the dialogue (an envelope nodemailer will not send, a pool limit): retried, not the upstream's fault.
    return new DeliveryError(prefix, true);
  }
  // Before any reply could decide this message: the upstream as a whole failed.
  const problem = upstreamProblemOf(e, reply);
  const detail = e.originalCode ?? (problem === 'connection' && e.code ? e.code : reply === undefined ? '' : String(reply));
  return new DeliveryError(prefix, true, undefined, { problem, hint: hintFor(problem, reply, detail) });
}

/**
 * Removes the relay's upstream password from any text an upstream or the
 * library produced: a server that echoes a refused command (`500 unrecognised
 * command AUTH PLAIN AHJlbGF5AHMzY3JldA==`) would otherwise put it into
 * last_error, the audit log and the admin's log line. Covers the password as
 * written and URL-encoded, and the base64 forms AUTH PLAIN and LOGIN send.
 */
export function credentialRedactor(user: string, pass: string, ...spellings: string[]): (text: string) => string {
  if (pass === '') return (text) => text;
  const b64 = (s: string) => Buffer.from(s, 'utf8').toString('base64');
  const secrets = [b64(`\u0000${user}\u0000${pass}`), b64(`${user}\u0000${user}\u0000${pass}`), b64(pass), b64(pass).replace(/=+$/, ''), encodeURIComponent(pass), pass, ...spellings]
    .filter((s) => s !== '')
    // Longest first, so a secret inside another is not left half-replaced.
    .sort((a, b) => b.length - a.length);
  return (text) => secrets.reduce((out, secret) => out.split(secret).join('[redacted]'), text);
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

/** How the relay protects the connection to RELAY_SMTP_UPSTREAM. */
export interface UpstreamTlsPolicy {
  /** smtps://: TLS from the first byte. */
  secure: boolean;
  /** smtp://: STARTTLS is mandatory, or the delivery fails as a transient `tls` problem (never sent in clear). */
  requireTLS: boolean;
  /** Why: `smtps`, `required`, `loopback` (plain allowed: nothing crosses a network), `allowed-insecure` (RELAY_SMTP_UPSTREAM_ALLOW_INSECURE=true). */
  reason: 'smtps' | 'required' | 'loopback' | 'allowed-insecure';
  /** For the start-up banner. */
  description: string;
}

/**
 * Decides the upstream's TLS: smtps:// is TLS throughout; smtp:// requires
 * STARTTLS with a verified certificate unless the host is loopback
 * (127.0.0.0/8, ::1, `localhost`) or `allowInsecure`
 * (RELAY_SMTP_UPSTREAM_ALLOW_INSECURE) says so, in which case STARTTLS is still
 * used whenever the upstream offers it. Pure: the URL and the setting in, the policy out.
 */
export function upstreamTlsPolicy(url: string, allowInsecure: boolean): UpstreamTlsPolicy {
  const parsed = new URL(url);
  if (parsed.protocol === 'smtps:') return { secure: true, requireTLS: false, reason: 'smtps', description: 'TLS (smtps), certificate verified' };
  if (isLoopbackHost(parsed.hostname)) return { secure: false, requireTLS: false, reason: 'loopback', description: 'STARTTLS when offered (loopback upstream)' };
  if (allowInsecure) {
    return { secure: false, requireTLS: false, reason: 'allowed-insecure', description: 'STARTTLS when offered, plain otherwise (RELAY_SMTP_UPSTREAM_ALLOW_INSECURE=true)' };
  }
  return { secure: false, requireTLS: true, reason: 'required', description: 'STARTTLS required, certificate verified' };
}

/** Options of createSmtpChannel beyond the URL. */
export interface SmtpChannelOptions {
  /** Extra TLS settings (a private CA for tests); certificates are always verified. */
  tls?: { ca?: string | Buffer };
  timeouts?: SmtpTimeouts;
  /** Default: upstreamTlsPolicy(url, false), i.e. STARTTLS required off loopback. */
  tlsPolicy?: UpstreamTlsPolicy;
}

/** Creates the SMTP channel for an smtp:// or smtps:// URL (auth as the URL says, TLS as `tlsPolicy` says). */
export function createSmtpChannel(url: string, options: SmtpChannelOptions = {}): Channel & { close(): void } {
  const parsed = new URL(url);
  const policy = options.tlsPolicy ?? upstreamTlsPolicy(url, false);
  const user = decodeURIComponent(parsed.username);
  const pass = decodeURIComponent(parsed.password);
  const redact = credentialRedactor(user, pass, parsed.password);
  const transportOptions: SMTPPoolOptions & { pool: true } = {
    host: parsed.hostname.replace(/^\[(.*)\]$/, '$1'),
    port: parsed.port ? Number(parsed.port) : policy.secure ? 465 : 587,
    secure: policy.secure,
    // Off loopback STARTTLS is mandatory: an upstream that does not offer it,
    // or an attacker who strips it, gets no mail in clear (an ETLS failure,
    // retried). Otherwise STARTTLS whenever offered, nodemailer's default.
    requireTLS: policy.requireTLS,
    auth: parsed.username ? { user, pass } : undefined,
    connectionTimeout: options.timeouts?.connectionTimeout ?? 30_000,
    greetingTimeout: options.timeouts?.greetingTimeout ?? 30_000,
    socketTimeout: options.timeouts?.socketTimeout ?? 60_000,
    pool: true,
    // Each message is several round trips (MAIL, RCPT per recipient, DATA),
    // so throughput to the upstream is bound by connections, not bandwidth: 4
    // left delivery behind accepts under load (BENCHMARKS.md). 8 stays well
    // under common per-client limits (Postfix allows 50).
    maxConnections: 8,
    // Never rejectUnauthorized: false; a verified certificate is what makes STARTTLS worth requiring.
    tls: { ...options.tls, rejectUnauthorized: true },
  };
  const transport = nodemailer.createTransport(transportOptions);
  return {
    async send(delivery: OutgoingDelivery): Promise<SendReceipt> {
      if (delivery.envelope.kind !== 'email') throw new DeliveryError('not an email envelope', false);
      try {
        // A chunked copy is streamed into DATA; nodemailer dot-stuffs it as it goes.
        const raw = Buffer.isBuffer(delivery.body) ? delivery.body : Readable.from(delivery.body.chunks());
        const info = await transport.sendMail({ envelope: { from: delivery.envelope.from, to: delivery.envelope.to }, raw });
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
        throw err instanceof DeliveryError ? err : classifySmtpError(err, redact);
      }
    },
    close: () => transport.close(),
  };
}
