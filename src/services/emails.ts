/**
 * The email pipeline shared by the HTTP and SMTP listeners: policy, then
 * composition, then the durable outbox. Nothing reaches the outbox that the
 * policy refused, and every decision is audited without content.
 */
import { randomUUID } from 'node:crypto';
import type { PublicKey } from 'openpgp';
import type { RelayContext } from '../context.js';
import { RelayError, asRelayError, invalid } from '../errors.js';
import type { Attachment, MessageContent } from '../mime/compose.js';
import { composePlain } from '../mime/compose.js';
import { composeSealed, inThreadEncryptor, renderCopy } from '../pgp/pgp-mime.js';
import { createDomainMatcher } from '../policy/domains.js';
import { decideEmail, type EmailPlan } from '../policy/email.js';
import type { Incident } from '../store/incidents.js';
import type { NewDelivery } from '../store/outbox.js';
import { replayAnswer } from './idempotency.js';
import type { Caller } from './incidents.js';

/** At most this many distinct recipients per message (To, Cc and Bcc together). */
export const MAX_RECIPIENTS = 100;

/** A message as both listeners hand it over. Addresses are lowercased and validated. */
export interface EmailSubmission {
  to: string[];
  cc: string[];
  bcc: string[];
  subject?: string | undefined;
  text: string;
  html?: string | undefined;
  inReplyTo?: string | undefined;
  references?: string[] | undefined;
  attachments: Attachment[];
  /** SMTP: the MAIL FROM and From: addresses the client claimed. */
  claimedSenders?: string[];
}

/** The 202 answer of SPEC §4. */
export interface EmailAccepted {
  id: string;
  messageId: string;
  status: 'queued';
  encrypted: boolean;
  recipients: string[];
}

export interface SubmitOptions {
  via: 'http' | 'smtp';
  /** Replays the first answer for the same caller and key. */
  idempotencyKey?: string | undefined;
}

/** Decoded size of the message content, as RELAY_MAX_MESSAGE_BYTES counts it. */
export function contentBytes(message: Pick<EmailSubmission, 'text' | 'html' | 'subject' | 'attachments'>): number {
  return (
    Buffer.byteLength(message.text) +
    Buffer.byteLength(message.html ?? '') +
    Buffer.byteLength(message.subject ?? '') +
    message.attachments.reduce((sum, a) => sum + a.content.length, 0)
  );
}

/** The refusal due when the incident closed or someone left the roster after the decision; undefined when nothing changed. */
function changedSinceDecision(ctx: RelayContext, incidentId: string, sender: string, recipients: readonly string[]): RelayError | undefined {
  if (ctx.store.incidents.byId(incidentId)?.status !== 'open') {
    return new RelayError('incident_closed', 'This incident was closed while the message was being prepared; nothing was sent.', { rule: 'incident-open' });
  }
  if (!ctx.store.incidents.activeMember(incidentId, sender)) {
    return new RelayError('forbidden', 'You were removed from this incident\'s roster; nothing was sent.', { rule: 'roster' });
  }
  const gone = recipients.filter((r) => !ctx.store.incidents.activeMember(incidentId, r));
  if (gone.length === 0) return undefined;
  return new RelayError('recipient_not_on_roster', `Removed from the roster while the message was being prepared: ${gone.join(', ')}. Nothing was sent to anyone.`, {
    rule: 'roster',
    details: { recipients: gone },
  });
}

// One matcher per configured domain list, built once (STYLE: matchers are built when loaded).
const domainMatchers = new WeakMap<readonly string[], (address: string) => boolean>();
function internalMatcher(domains: readonly string[]): (address: string) => boolean {
  let matcher = domainMatchers.get(domains);
  if (!matcher) domainMatchers.set(domains, (matcher = createDomainMatcher(domains)));
  return matcher;
}

/** Runs one email through policy, composition and the outbox; resolves once it is durably queued. */
export async function submitEmail(ctx: RelayContext, caller: Caller, incident: Incident, message: EmailSubmission, options: SubmitOptions): Promise<EmailAccepted> {
  const started = process.hrtime.bigint();
  const route = `email:${incident.id}`;
  if (options.idempotencyKey) {
    const earlier = replayAnswer<EmailAccepted>(ctx, caller, options.idempotencyKey, route);
    if (earlier) return earlier;
  }
  ctx.sendLimiter.take(caller.tokenId, ctx.now());
  const recipientCount = new Set([...message.to, ...message.cc, ...message.bcc]).size;
  if (message.to.length === 0) throw invalid('Name at least one recipient in "to".');
  if (recipientCount > MAX_RECIPIENTS) throw invalid(`At most ${MAX_RECIPIENTS} recipients per message; this one has ${recipientCount}.`);
  const size = contentBytes(message);
  if (size > ctx.config.maxMessageBytes) {
    throw new RelayError('payload_too_large', `The message is ${size} bytes; this relay accepts at most ${ctx.config.maxMessageBytes} (RELAY_MAX_MESSAGE_BYTES).`);
  }

  const now = ctx.now();
  const roster = ctx.store.incidents.roster(incident.id);
  const everyone = [...new Set([...message.to, ...message.cc, ...message.bcc, caller.email])];
  const decision = decideEmail({
    sender: caller.email,
    claimedSenders: message.claimedSenders ?? [],
    incidentStatus: incident.status,
    roster: new Set(roster.map((m) => m.email)),
    to: message.to,
    cc: message.cc,
    bcc: message.bcc,
    hasSubject: (message.subject ?? '') !== '',
    chainExternal: ctx.store.outbox.chainIsExternal([...(message.inReplyTo ? [message.inReplyTo] : []), ...(message.references ?? [])]),
    isInternal: internalMatcher(ctx.config.internalDomains),
    encryptMode: ctx.config.encrypt,
    keys: await ctx.keys.keyStates(everyone, now, incident.id),
  });

  const auditBase = { type: 'email.decision', actor: caller.email, incidentId: incident.id };
  const recipientsOf = { to: [...new Set(message.to)], cc: [...new Set(message.cc)], bcc: [...new Set(message.bcc)] };
  if (decision.outcome === 'refuse') {
    ctx.store.transaction(() =>
      ctx.store.audit.append({ ...auditBase, outcome: 'refused', data: { via: options.via, code: decision.error.code, rules: decision.rules, recipients: recipientsOf, bytes: size } }),
    );
    ctx.metrics.decisions.inc({ channel: 'email', outcome: 'refused', code: decision.error.code });
    throw decision.error;
  }

  const plan = decision.plan;
  const id = randomUUID();
  const messageId = `<${randomUUID()}@${ctx.config.mailDomain}>`;
  let deliveries: NewDelivery[];
  try {
    deliveries = await composeDeliveries(ctx, incident, caller, message, plan, { id, messageId, date: now }, new Map(roster.map((m) => [m.email, m.name])));
  } catch (err) {
    // Composition refused what the policy let through (a value the composer
    // will not put in a header, a failed encryption): nothing is queued, and
    // the refusal is on the record like any other decision.
    const code = asRelayError(err)?.code ?? 'internal';
    try {
      ctx.store.transaction(() =>
        ctx.store.audit.append({ ...auditBase, outcome: code === 'internal' || code === 'unavailable' ? 'failed' : 'refused', data: { via: options.via, code, stage: 'compose', rules: decision.rules, recipients: recipientsOf, bytes: size } }),
      );
    } catch (auditErr) {
      ctx.logger.error({ err: auditErr }, 'could not audit a refused composition');
    }
    ctx.metrics.decisions.inc({ channel: 'email', outcome: 'refused', code });
    throw err;
  }
  const answer: EmailAccepted = { id, messageId, status: 'queued', encrypted: plan.encrypt, recipients: [...plan.to, ...plan.cc, ...plan.bcc] };

  // Grouped with the other accepts of this turn: one fsync for all of them.
  // It resolves only once the COMMIT holding this message is on disk, so the
  // 202/250 still means "committed" (SPEC §6); a failed COMMIT rejects it.
  const committed = await ctx.store.grouped((): 'queued' | 'raced' | RelayError => {
    // Encryption can take a while: the roster or the incident may have changed
    // since the decision. Check again where it counts, in the commit itself.
    const changed = changedSinceDecision(ctx, incident.id, caller.email, answer.recipients);
    if (changed) return changed;
    if (options.idempotencyKey && !ctx.store.idempotency.put(caller.tokenId, options.idempotencyKey, { route, status: 202, response: answer }, now)) {
      return 'raced'; // another request with this key committed first; queue nothing
    }
    ctx.store.outbox.insertEmail({ id, incidentId: incident.id, messageId, sender: caller.email, encrypted: plan.encrypt, chainExternal: plan.chainExternal, recipients: answer.recipients, createdAt: now.toISOString() });
    ctx.store.outbox.enqueue(deliveries, now);
    ctx.store.audit.append({
      ...auditBase,
      outcome: 'ok',
      data: { via: options.via, emailId: id, messageId, encrypted: plan.encrypt, encryptReason: plan.encryptReason, rules: decision.rules, recipients: recipientsOf, copies: deliveries.length, bytes: size },
    });
    return 'queued';
  });
  if (committed instanceof RelayError) {
    ctx.store.transaction(() =>
      ctx.store.audit.append({ ...auditBase, outcome: 'refused', data: { via: options.via, code: committed.code, rules: decision.rules, recipients: recipientsOf, bytes: size, changedDuringCompose: true } }),
    );
    ctx.metrics.decisions.inc({ channel: 'email', outcome: 'refused', code: committed.code });
    throw committed;
  }
  if (committed === 'raced') return replayAnswer<EmailAccepted>(ctx, caller, options.idempotencyKey!, route)!;
  ctx.notifyOutbox();
  ctx.metrics.decisions.inc({ channel: 'email', outcome: 'accepted', code: '' });
  ctx.metrics.acceptSeconds.observe({ channel: 'email' }, Number(process.hrtime.bigint() - started) / 1e9);
  return answer;
}

/**
 * The bytes and envelopes to queue: one plain message for everyone, or one
 * encrypted copy for the visible recipients plus one per Bcc recipient
 * readable with that recipient's key alone (rule `bcc`). The payload is
 * signed and encrypted once; copies differ only in their session key packets.
 */
async function composeDeliveries(
  ctx: RelayContext,
  incident: Incident,
  caller: Caller,
  message: EmailSubmission,
  plan: EmailPlan,
  ids: { id: string; messageId: string; date: Date },
  names: ReadonlyMap<string, string>,
): Promise<NewDelivery[]> {
  const address = (email: string) => ({ name: names.get(email), address: email });
  const content: MessageContent = {
    messageId: ids.messageId,
    date: ids.date,
    from: address(caller.email),
    to: plan.to.map(address),
    cc: plan.cc.map(address),
    topic: message.subject,
    text: message.text,
    html: message.html,
    attachments: message.attachments,
    inReplyTo: message.inReplyTo,
    references: message.references,
  };
  const delivery = (to: string[], body: Buffer): NewDelivery => ({
    id: randomUUID(),
    channel: 'email',
    emailId: ids.id,
    incidentId: incident.id,
    envelope: { kind: 'email', from: caller.email, to },
    body,
  });
  if (!plan.encrypt) return [delivery([...plan.to, ...plan.cc, ...plan.bcc], composePlain(content))];

  // The worker pool when main.ts made one, else this thread; either way a failure refuses the message.
  const encryptor = ctx.encryptor ?? inThreadEncryptor(ctx.relayKey.privateKey);
  const copy = async (recipients: string[], holders: string[]): Promise<{ recipients: string[]; keys: PublicKey[] }> => ({ recipients, keys: await ctx.keys.publicKeys(holders, incident.id) });
  const copies = await Promise.all([copy([...plan.to, ...plan.cc], plan.visibleKeyHolders), ...plan.bcc.map((bcc) => copy([bcc], [bcc]))]);
  const sealed = await composeSealed(content, copies, encryptor);
  // Until the outbox stores `sealed.shared` once, each delivery holds its whole rendered copy.
  return sealed.copies.map((c) => delivery(c.recipients, renderCopy(sealed.envelope, c.keyPackets, sealed.shared)));
}

/** The status view of SPEC §4 for GET .../emails/:id. */
export function emailStatus(ctx: RelayContext, incident: Incident, id: string): { id: string; status: string; attempts: number; lastError?: string } | undefined {
  const email = ctx.store.outbox.email(incident.id, id);
  if (!email) return undefined;
  const state = ctx.store.outbox.emailDeliveryState(id);
  return { id, status: state.status, attempts: state.attempts, ...(state.lastError ? { lastError: state.lastError } : {}) };
}
