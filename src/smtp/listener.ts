/**
 * The SMTP submission listener (SPEC §5) over smtp-server. It only turns an
 * SMTP transaction into an EmailSubmission for submitEmail (the one email
 * pipeline) and a failure into a reply through replies.ts.
 *
 * Dialogue: STARTTLS, then AUTH PLAIN/LOGIN (auth.ts); MAIL FROM must be the
 * authenticated address; RCPT TO is checked against the rosters the message
 * can belong to, and a refused recipient also refuses the transaction at DATA
 * so the accepted ones never get a message that had an outsider on it; DATA
 * is parsed (parse.ts), its incident resolved (incident-resolution.ts) and
 * submitted; `250` only once submitEmail resolved, i.e. the message is
 * durably queued.
 */
import type { AddressInfo } from 'node:net';
import { SMTPServer, type SMTPServerDataStream, type SMTPServerSession } from 'smtp-server';
import type { RelayContext } from '../context.js';
import { RelayError, type ErrorCode } from '../errors.js';
import { MAX_RECIPIENTS, submitEmail } from '../services/emails.js';
import type { Caller } from '../services/incidents.js';
import type { Incident } from '../store/incidents.js';
import { isLoopbackHost } from '../loopback.js';
import { authenticate, createAuthGuard, type AuthGuard } from './auth.js';
import { ipKey } from './backoff.js';
import { possibleIncidents, recipientRefusal, resolveIncident } from './incident-resolution.js';
import type { MimeReader } from './mime-pool.js';
import { envelopeAddress, parseSubmission } from './parse.js';
import { acceptedText, closingError, errorCodeOf, smtpError, type SmtpStage } from './replies.js';
import { UnauthenticatedTally } from './unauthenticated.js';

/** Limits of the listener; the defaults suit a submission service for people, tests shrink them. */
export interface SmtpLimits {
  /** Idle time allowed while the relay waits for the client (smtp-server socketTimeout). */
  socketTimeoutMs: number;
  /** Concurrent connections; more are answered 421 and closed. */
  maxClients: number;
  /** Longest session; bounds clients that trickle bytes just often enough to dodge the idle timeout. */
  maxSessionMs: number;
  /** On shutdown, how long open sessions may finish before they are cut with 421. */
  closeTimeoutMs: number;
  /** Failed AUTH attempts on one connection before it is closed with 421. */
  maxAuthFailuresPerSession: number;
}

/** Defaults for SmtpLimits. */
export const DEFAULT_SMTP_LIMITS: SmtpLimits = {
  socketTimeoutMs: 60_000,
  maxClients: 100,
  maxSessionMs: 10 * 60_000,
  closeTimeoutMs: 10_000,
  maxAuthFailuresPerSession: 3,
};

/** Where to listen, the STARTTLS pair, and optional limits and back-off state. */
export interface SmtpListenerOptions {
  host: string;
  /** 0 picks a free port. */
  port: number;
  /** PEM certificate and key for STARTTLS. */
  tls: { cert: string; key: string };
  limits?: Partial<SmtpLimits>;
  /** Shared back-off state; tests pass their own. */
  guard?: AuthGuard;
  /** Reads submitted MIME off the event loop; the relay owns (and closes) it. Default: the process's shared reader. */
  mimeReader?: MimeReader;
  /** How often the summary of unauthenticated clients is audited (default 5 minutes; also at close). */
  summaryIntervalMs?: number;
}

/** Default SmtpListenerOptions.summaryIntervalMs. */
export const UNAUTHENTICATED_SUMMARY_INTERVAL_MS = 5 * 60_000;

/** A listening submission server. */
export interface SmtpListener {
  host: string;
  port: number;
  /** Stops accepting, lets open sessions finish (up to closeTimeoutMs), waits for submissions in flight, and audits the last summary. */
  close(): Promise<void>;
  /** Audits the `smtp.unauthenticated_summary` of what unauthenticated clients did since the last one, if anything (as the timer does). */
  summarizeUnauthenticated(): Promise<void>;
}

interface SessionState {
  id: string;
  ip: string;
  startedAt: number;
  user: string | undefined;
  authFailures: number;
  accepted: number;
  aborted: number;
  refused: Partial<Record<ErrorCode, number>>;
  /** Recipients refused at RCPT in the current transaction as off-roster; DATA is then refused too. */
  refusedRecipients: string[];
  /** Any other RCPT refusal of the current transaction (bad address, store failure); DATA repeats it. */
  rcptFailure: unknown;
  /** True while a received message is being submitted; the session-time sweep leaves it alone. */
  submitting: boolean;
  cutReason: string | undefined;
}

function isCaller(value: unknown): value is Caller {
  if (typeof value !== 'object' || value === null) return false;
  const v = value as Record<string, unknown>;
  return typeof v['tokenId'] === 'string' && typeof v['email'] === 'string' && (v['role'] === 'admin' || v['role'] === 'responder');
}

// smtp-server answers 530 before MAIL/RCPT/DATA reach us without a login, so this only guards against a library change.
function callerOf(session: SMTPServerSession): Caller {
  const user: unknown = session.user;
  if (!isCaller(user)) throw new RelayError('unauthenticated', 'Log in first: STARTTLS, then AUTH with your email address and relay token.');
  return user;
}

// The caller is cached at AUTH for the whole session (up to maxSessionMs); a
// token revoked since then must stop working on the open session too, so each
// transaction looks the token up again.
async function liveCaller(ctx: RelayContext, session: SMTPServerSession): Promise<Caller> {
  const caller = callerOf(session);
  const record = await ctx.store.tokens.get(caller.tokenId);
  if (!record || record.revokedAt !== null) {
    throw new RelayError('unauthenticated', 'Your token was revoked after you logged in; ask an admin for a new one, then reconnect and log in with it.');
  }
  return caller;
}

function oversize(max: number): RelayError {
  return new RelayError('payload_too_large', `The message is larger than this relay accepts (${max} bytes, RELAY_MAX_MESSAGE_BYTES); send smaller attachments.`);
}

/** Reads the DATA stream, keeping at most `max` bytes; rejects with payload_too_large when it was more. */
function readMessage(stream: SMTPServerDataStream, max: number): Promise<Buffer> {
  return new Promise((resolve, reject) => {
    const chunks: Buffer[] = [];
    let size = 0;
    stream.on('data', (chunk: Buffer) => {
      size += chunk.length;
      // Past the limit the rest is read and dropped: smtp-server needs the stream drained to answer.
      if (size <= max) chunks.push(chunk);
      else chunks.length = 0;
    });
    stream.once('error', reject);
    stream.once('end', () => (stream.sizeExceeded || size > max ? reject(oversize(max)) : resolve(Buffer.concat(chunks, size))));
  });
}

/** Starts the submission listener on options.host:options.port. */
export async function startSmtpListener(ctx: RelayContext, options: SmtpListenerOptions): Promise<SmtpListener> {
  const limits: SmtpLimits = { ...DEFAULT_SMTP_LIMITS, ...options.limits };
  const guard = options.guard ?? createAuthGuard();
  const tally = new UnauthenticatedTally(ctx.metrics.smtpUnauthenticated, ctx.now());
  const sessions = new Map<string, SessionState>();
  const inFlight = new Set<Promise<void>>();
  const max = ctx.config.maxMessageBytes;

  const stateOf = (session: SMTPServerSession): SessionState => {
    let state = sessions.get(session.id);
    if (!state) {
      state = {
        id: session.id,
        ip: ipKey(session.remoteAddress ?? ''),
        startedAt: Date.now(),
        user: undefined,
        authFailures: 0,
        accepted: 0,
        aborted: 0,
        refused: {},
        refusedRecipients: [],
        rcptFailure: undefined,
        submitting: false,
        cutReason: undefined,
      };
      sessions.set(session.id, state);
    }
    return state;
  };

  const audit = (input: Parameters<RelayContext['store']['audit']['append']>[0]): void => {
    // Not awaited by the reply; tracked so close() waits for it before the store goes.
    const pending: Promise<void> = ctx.store.audit.append(input).then(
      () => undefined,
      // A closed or failing store must not take the listener down; the refusal itself still stands.
      (err: unknown) => ctx.logger.error({ err, type: input.type }, 'could not append an SMTP audit event'),
    );
    const tracked = pending.finally(() => inFlight.delete(tracked));
    inFlight.add(tracked);
  };

  /** Answers a refusal, counts it for the session record, and audits it. */
  const refuse = (session: SMTPServerSession, stage: SmtpStage, err: unknown, extra: { incident?: Incident | undefined; recipients?: string[] } = {}) => {
    const state = stateOf(session);
    const code = errorCodeOf(err);
    state.refused[code] = (state.refused[code] ?? 0) + 1;
    if (!(err instanceof RelayError)) ctx.logger.error({ err, session: session.id, stage }, 'SMTP submission failed');
    const user: unknown = session.user;
    audit({
      type: 'smtp.message',
      actor: isCaller(user) ? user.email : null,
      incidentId: extra.incident?.id ?? null,
      outcome: err instanceof RelayError ? 'refused' : 'failed',
      data: { via: 'smtp', session: session.id, stage, code, ...(extra.recipients ? { recipients: extra.recipients } : {}) },
    });
    // No metrics here: submitEmail already counts the policy's decisions, and the rest are audited.
    return smtpError(err, stage);
  };

  // One DATA transaction: the bytes, the submission, the incident, then the pipeline.
  const receive = async (stream: SMTPServerDataStream, session: SMTPServerSession, found: { incident?: Incident }): Promise<string> => {
    const state = stateOf(session);
    // Checked before the bytes are read, and again below just before submission.
    await liveCaller(ctx, session);
    if (state.refusedRecipients.length > 0) {
      const outsiders = [...new Set(state.refusedRecipients)];
      throw new RelayError('recipient_not_on_roster', `Not on the response roster: ${outsiders.join(', ')}. Nothing was sent to anyone; remove them, or ask the commander to add them. People outside the response team hear only through an approved announcement.`, {
        rule: 'roster',
        details: { recipients: outsiders },
      });
    }
    // Any other recipient refused at RCPT refuses the whole transaction the same way: all or nothing.
    if (state.rcptFailure !== undefined) throw state.rcptFailure;
    const raw = await readMessage(stream, max);
    state.submitting = true;
    const envelope = {
      mailFrom: session.envelope.mailFrom ? session.envelope.mailFrom.address : '',
      rcptTo: session.envelope.rcptTo.map((r) => r.address),
    };
    const { submission, xIncident } = await parseSubmission(raw, envelope, options.mimeReader);
    // Reading a large message takes time; the token must still be live when the message is accepted.
    const caller = await liveCaller(ctx, session);
    found.incident = await resolveIncident(ctx, caller, { xIncident, subject: submission.subject });
    const accepted = await submitEmail(ctx, caller, found.incident, submission, { via: 'smtp' });
    state.accepted += 1;
    return acceptedText(accepted);
  };

  const server = new SMTPServer({
    name: ctx.config.mailDomain,
    banner: 'incident-relay submission: STARTTLS, then AUTH with your email address and relay token',
    secure: false,
    // Always ours: without key/cert smtp-server would fall back to its bundled, publicly known localhost pair.
    key: options.tls.key,
    cert: options.tls.cert,
    // smtp-server defaults to TLSv1 for old clients; submission clients that speak only TLS 1.0/1.1 are long gone.
    minVersion: 'TLSv1.2',
    authMethods: ['PLAIN', 'LOGIN'],
    // smtp-server refuses AUTH before STARTTLS (538) unless this is set: RELAY_SMTP_ALLOW_INSECURE_AUTH, loopback clients only (onAuth).
    allowInsecureAuth: ctx.config.smtpAllowInsecureAuth,
    authRequiredMessage: '5.7.0 Authentication required: STARTTLS, then AUTH PLAIN or LOGIN with your email address and relay token',
    // Announced in EHLO (RFC 1870) and checked again at the end of DATA.
    size: max,
    maxRecipients: MAX_RECIPIENTS,
    maxClients: limits.maxClients,
    socketTimeout: limits.socketTimeoutMs,
    closeTimeout: limits.closeTimeoutMs,
    // No PTR lookups: they leak who connects to DNS and add up to 1.5 s per connection.
    disableReverseLookup: true,
    logger: false,

    onConnect(session, callback) {
      stateOf(session);
      callback();
    },

    onAuth(auth, session, callback) {
      const state = stateOf(session);
      // allowInsecureAuth is one switch for the whole server; the setting is
      // for loopback testing only, so anyone else gets smtp-server's own 538,
      // exactly as without it, and their credentials are not looked at.
      if (!session.secure && !isLoopbackHost(session.remoteAddress ?? '')) {
        callback(Object.assign(new Error('Error: Must issue a STARTTLS command first'), { responseCode: 538 }));
        return;
      }
      const attempt = async (): Promise<Caller> => {
        if (auth.method !== 'PLAIN' && auth.method !== 'LOGIN') throw new RelayError('unauthenticated', 'Use AUTH PLAIN or AUTH LOGIN.');
        return authenticate(
          ctx,
          guard,
          {
            method: auth.method,
            username: auth.username ?? '',
            password: auth.password ?? '',
            authzid: auth.authzid ?? '',
            remoteAddress: session.remoteAddress ?? '',
            sessionId: session.id,
          },
          tally,
        );
      };
      attempt().then(
        (caller) => {
          state.user = caller.email;
          callback(null, { user: caller });
        },
        (err: unknown) => {
          state.authFailures += 1;
          if (!(err instanceof RelayError)) ctx.logger.error({ err, session: session.id }, 'SMTP AUTH failed internally');
          if (state.authFailures >= limits.maxAuthFailuresPerSession) {
            state.cutReason = 'auth_failures';
            callback(closingError('Too many failed logins on this connection; closing it.'));
            return;
          }
          callback(smtpError(err, 'auth'));
        },
      );
    },

    onMailFrom(address, session, callback) {
      const state = stateOf(session);
      // A new transaction: RCPT refusals of an earlier one no longer apply.
      state.refusedRecipients = [];
      state.rcptFailure = undefined;
      const check = async (): Promise<void> => {
        const caller = await liveCaller(ctx, session);
        // A routed or malformed address is refused for what it is (with a hint), not as somebody else's.
        const from = address.address.trim() === '' ? '' : envelopeAddress(address.address, 'MAIL FROM');
        if (from !== caller.email) {
          throw new RelayError('sender_mismatch', `You are authenticated as ${caller.email}; you cannot send as ${from === '' ? '<>' : from}. Use your own address as the sender.`, {
            rule: 'sender',
            details: { claimed: [from] },
          });
        }
      };
      check().then(
        () => callback(),
        (err: unknown) => callback(refuse(session, 'mail', err)),
      );
    },

    onRcptTo(address, session, callback) {
      const state = stateOf(session);
      const check = async (): Promise<void> => {
        // RCPT replies tell who is on a roster: a revoked token learns nothing more.
        const caller = await liveCaller(ctx, session);
        const rcpt = envelopeAddress(address.address, 'RCPT TO');
        const refusal = await recipientRefusal(ctx, caller, rcpt);
        if (refusal) {
          state.refusedRecipients.push(rcpt);
          const candidates = await possibleIncidents(ctx, caller);
          callback(refuse(session, 'rcpt', refusal, { recipients: [rcpt], incident: candidates.length === 1 ? candidates[0] : undefined }));
          return;
        }
        callback();
      };
      check().catch((err: unknown) => {
        // Whatever went wrong, this recipient was not accepted: the transaction must not go ahead without it.
        state.rcptFailure ??= err;
        callback(refuse(session, 'rcpt', err));
      });
    },

    onData(stream, session, callback) {
      const state = stateOf(session);
      const found: { incident?: Incident } = {};
      const work = receive(stream, session, found).then(
        (text) => callback(null, text),
        (err: unknown) => {
          if (err instanceof Error && (err as NodeJS.ErrnoException).code === 'ECONNECTION') {
            // The client left mid-message: nobody to answer, nothing to refuse.
            state.aborted += 1;
            callback(err);
            return;
          }
          callback(refuse(session, 'data', err, { incident: found.incident }));
        },
      );
      const tracked = work.finally(() => {
        state.submitting = false;
        inFlight.delete(tracked);
      });
      inFlight.add(tracked);
    },

    onClose(session) {
      const state = sessions.get(session.id);
      sessions.delete(session.id);
      if (state?.user === undefined) {
        // Never authenticated: counted for the periodic summary, not audited one by one (issue 10 §16).
        tally.connection(session.remoteAddress ?? '', state ? { cut: state.cutReason } : { beforeGreeting: true });
        return;
      }
      const refusedTotal = Object.values(state.refused).reduce((a, b) => a + (b ?? 0), 0);
      audit({
        type: 'smtp.session',
        actor: state.user,
        outcome: refusedTotal > 0 || state.authFailures > 0 || state.cutReason ? 'refused' : 'ok',
        data: {
          via: 'smtp',
          session: session.id,
          ip: state.ip,
          tls: session.secure === true,
          user: state.user,
          authFailures: state.authFailures,
          accepted: state.accepted,
          refused: state.refused,
          aborted: state.aborted,
          seconds: Math.round((Date.now() - state.startedAt) / 1000),
          ...(state.cutReason ? { cut: state.cutReason } : {}),
        },
      });
    },
  });
  server.on('error', (err) => ctx.logger.warn({ err }, 'SMTP listener error'));

  // Ends sessions that outlive maxSessionMs, unless a received message is being submitted right now.
  const sweep = setInterval(
    () => {
      const now = Date.now();
      for (const connection of server.connections) {
        const state = sessions.get(connection.id);
        if (!state || state.submitting || now - state.startedAt <= limits.maxSessionMs) continue;
        state.cutReason = 'session_time';
        connection.send(421, '4.4.2 Session time limit reached; reconnect to continue');
      }
    },
    Math.max(250, Math.min(15_000, Math.floor(limits.maxSessionMs / 4))),
  );
  sweep.unref();

  // One audit event per interval for everything unauthenticated clients did, and only when they did something.
  const summarize = async (): Promise<void> => {
    const summary = tally.take(ctx.replicaId, ctx.now());
    if (!summary) return;
    audit({ type: 'smtp.unauthenticated_summary', actor: null, outcome: 'refused', data: { ...summary } });
    await Promise.allSettled([...inFlight]);
  };
  const summaries = setInterval(() => void summarize(), options.summaryIntervalMs ?? UNAUTHENTICATED_SUMMARY_INTERVAL_MS);
  summaries.unref();

  await new Promise<void>((resolve, reject) => {
    server.once('error', reject);
    server.listen(options.port, options.host, () => {
      server.off('error', reject);
      resolve();
    });
  });
  const port = (server.server.address() as AddressInfo).port;

  let closing: Promise<void> | undefined;
  return {
    host: options.host,
    port,
    summarizeUnauthenticated: summarize,
    close: () =>
      (closing ??= (async () => {
        clearInterval(sweep);
        clearInterval(summaries);
        await new Promise<void>((resolve) => server.close(() => resolve()));
        await Promise.allSettled([...inFlight]);
        // onClose handlers run on setImmediate after the sockets close; let them audit (and count) before the store goes.
        await new Promise((resolve) => setImmediate(resolve));
        await summarize();
        await Promise.allSettled([...inFlight]);
      })()),
  };
}
