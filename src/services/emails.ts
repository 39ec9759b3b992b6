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
import { composeSealed, inThreadEncryptor, type OuterReferences } from '../pgp/pgp-mime.js';
import { createDomainMatcher } from '../policy/domains.js';
import type { Decision, RuleOutcome } from '../policy/decision.js';
import { decideEmail, emailFindings, type EmailFindings, type EmailPlan, type EmailPolicyInput, type HeaderExposure } from '../policy/email.js';
import { securityMemberCount } from '../policy/security-team.js';
import type { Repositories } from '../store/index.js';
import type { Incident, RosterMember } from '../store/incidents.js';
import { normaliseMessageId, summarise, type BodyKind, type ChainMessage, type DeliveryView, type EmailCursor, type EmailPayload, type EmailRecord, type NewDelivery } from '../store/outbox.js';
import { assertRequestBytes, estimateRequestBytes, type RequestBytes } from './budget.js';
import { rememberAnswer, replayAnswer, requestFingerprint, type IdempotencyUse } from './idempotency.js';
import { ROSTER_MANAGERS, type Caller } from './incidents.js';

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
  /** SMTP: the client's own Message-ID, kept as an alias of the relay's so replies from a Sent folder stay in the thread. */
  clientMessageId?: string | undefined;
}

/** The 202 answer of SPEC §4. */
export interface EmailAccepted {
  id: string;
  messageId: string;
  status: 'queued';
  encrypted: boolean;
  recipients: string[];
}

/** The listener a send or preview came through: the JSON API, SMTP, or the web console. */
export type Via = 'http' | 'smtp' | 'console';

export interface SubmitOptions {
  /** The listener the request came through, as the audit log records it. */
  via: Via;
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
async function changedSinceDecision(tx: Repositories, incidentId: string, sender: string, recipients: readonly string[]): Promise<RelayError | undefined> {
  if ((await tx.incidents.byId(incidentId))?.status !== 'open') {
    return new RelayError('incident_closed', 'This incident was closed while the message was being prepared; nothing was sent.', { rule: 'incident-open' });
  }
  const active = new Set((await tx.incidents.roster(incidentId)).map((m) => m.email));
  if (!active.has(sender)) {
    return new RelayError('forbidden', 'You were removed from this incident\'s roster; nothing was sent.', { rule: 'roster' });
  }
  const gone = recipients.filter((r) => !active.has(r));
  if (gone.length === 0) return undefined;
  return new RelayError('recipient_not_on_roster', `Removed from the roster while the message was being prepared: ${gone.join(', ')}. Nothing was sent to anyone.`, {
    rule: 'roster',
    details: { recipients: gone },
  });
}

// One matcher per configured domain list, built once (STYLE: matchers are built when loaded).
const domainMatchers = new WeakMap<readonly string[], (address: string) => boolean>();
/** The internal-domain predicate of this configuration (SPEC §2). */
export function internalMatcher(domains: readonly string[]): (address: string) => boolean {
  let matcher = domainMatchers.get(domains);
  if (!matcher) domainMatchers.set(domains, (matcher = createDomainMatcher(domains)));
  return matcher;
}

/** What the store knows about a reply's chain, as the policy needs it. */
export interface ChainFacts {
  /** True when any message of the chain had an external sender or recipient, or a reference is not known to be internal. */
  external: boolean;
  /** Why, for the audit log: which references made it external. */
  reasons: string[];
  /** The references the relay knows (it issued them, or kept them as a client's alias), normalised, with their incident. */
  known: ReadonlyMap<string, string>;
}

/**
 * The In-Reply-To and References the clear headers of an encrypted message
 * may carry: only Message-IDs of this incident's threads that the relay knows
 * (issue 10 §8). The rest travel inside the encryption, in the protected
 * headers, where the recipients' mail clients still thread on them.
 */
export function outerReferences(message: Pick<EmailSubmission, 'inReplyTo' | 'references'>, chain: ChainFacts, incidentId: string): OuterReferences {
  const ours = (id: string): boolean => chain.known.get(normaliseMessageId(id)) === incidentId;
  const references = (message.references ?? []).filter(ours);
  return {
    inReplyTo: message.inReplyTo !== undefined && ours(message.inReplyTo) ? message.inReplyTo : undefined,
    references: references.length > 0 ? references : undefined,
  };
}

/**
 * Whether the thread a reply belongs to ever touched the outside (rule
 * `encryption`). Fail closed: a reference the relay did not issue (or receive
 * as a client's own Message-ID) counts as external unless its domain part is
 * internal; a known message counts when its own chain was external or its
 * sender is outside the company (counsel sending through the relay).
 */
export async function chainFacts(repos: Pick<Repositories, 'outbox'>, references: readonly string[], isInternal: (address: string) => boolean): Promise<ChainFacts> {
  if (references.length === 0) return { external: false, reasons: [], known: new Map() };
  const found = await repos.outbox.chainMessages(references);
  // One reference may name several emails (a relay Message-ID and a client's
  // alias stored before addAlias refused such aliases): every one of them
  // counts, and any that says external decides. Never the last row alone.
  const byReference = new Map<string, ChainMessage[]>();
  for (const m of found) byReference.set(m.reference, [...(byReference.get(m.reference) ?? []), m]);
  const reasons: string[] = [];
  const known = new Map<string, string>();
  for (const reference of new Set(references.map(normaliseMessageId))) {
    const messages = byReference.get(reference);
    if (messages === undefined) {
      // `<left@right>`: right is the domain the Message-ID claims to come from.
      const domain = reference.slice(reference.lastIndexOf('@') + 1, -1);
      if (!isInternal(`x@${domain}`)) reasons.push('unknown-reference');
      continue;
    }
    for (const message of messages) {
      if (message.chainExternal) reasons.push('external-chain');
      else if (!isInternal(message.sender)) reasons.push('external-sender');
    }
    // Its incident only when all agree: a reference of two incidents stays inside the encryption (outerReferences).
    const incidents = new Set(messages.map((m) => m.incidentId));
    if (incidents.size === 1) known.set(reference, messages[0]!.incidentId);
  }
  return { external: reasons.length > 0, reasons: [...new Set(reasons)], known };
}

/** The idempotency fingerprint of an email: what was asked, attachments by hash. */
function emailFingerprint(route: string, message: EmailSubmission): string {
  return requestFingerprint(route, {
    to: message.to,
    cc: message.cc,
    bcc: message.bcc,
    subject: message.subject ?? null,
    text: message.text,
    html: message.html ?? null,
    inReplyTo: message.inReplyTo ?? null,
    references: message.references ?? [],
    attachments: message.attachments.map((a) => ({ filename: a.filename, contentType: a.contentType, sha256: requestFingerprint('', a.content.toString('base64')) })),
  });
}

/** A draft's decision and what it was made from: the one step a send and a preview share. */
interface Decided {
  decision: Decision<EmailPlan>;
  findings: EmailFindings;
  roster: RosterMember[];
  chain: ChainFacts;
  /** Decoded content bytes (RELAY_MAX_MESSAGE_BYTES counts these). */
  size: number;
  /** The addresses as asked, deduplicated per field, for the audit log. */
  recipients: { to: string[]; cc: string[]; bcc: string[] };
  /** For an accepted draft: what it would store and what composing it holds (src/services/budget.ts). */
  bytes?: RequestBytes;
  /** For an accepted draft that would store more than a request may: the 413 a send and a preview both throw. */
  tooLarge?: RelayError;
}

/**
 * Checks the draft's shape, looks up the roster, the reply chain and the key
 * states, and asks the policy (src/policy/email.ts) once. A send and a
 * preview both come through here, so a preview says exactly what a send
 * would decide. Bad input throws (invalid_request, payload_too_large); a
 * policy refusal is returned as the decision, its hint fitted to the caller.
 */
async function decide(ctx: RelayContext, caller: Caller, incident: Incident, message: EmailSubmission): Promise<Decided> {
  const recipientCount = new Set([...message.to, ...message.cc, ...message.bcc]).size;
  if (message.to.length === 0) throw invalid('Name at least one recipient in "to".');
  if (recipientCount > MAX_RECIPIENTS) throw invalid(`At most ${MAX_RECIPIENTS} recipients per message; this one has ${recipientCount}.`);
  const size = contentBytes(message);
  if (size > ctx.config.maxMessageBytes) {
    throw new RelayError('payload_too_large', `The message is ${size} bytes; this relay accepts at most ${ctx.config.maxMessageBytes} (RELAY_MAX_MESSAGE_BYTES).`);
  }

  const now = ctx.now();
  const roster = await ctx.store.incidents.roster(incident.id);
  const everyone = [...new Set([...message.to, ...message.cc, ...message.bcc, caller.email])];
  const isInternal = internalMatcher(ctx.config.internalDomains);
  const chain = await chainFacts(ctx.store, [...(message.inReplyTo ? [message.inReplyTo] : []), ...(message.references ?? [])], isInternal);
  const input: EmailPolicyInput = {
    sender: caller.email,
    claimedSenders: message.claimedSenders ?? [],
    incidentStatus: incident.status,
    roster: new Set(roster.map((m) => m.email)),
    securityMembers: securityMemberCount(roster),
    to: message.to,
    cc: message.cc,
    bcc: message.bcc,
    hasSubject: (message.subject ?? '') !== '',
    // The sender counts as a contact of the thread: counsel writing through the
    // relay makes this message, and every reply to it, external.
    chainExternal: chain.external || !isInternal(caller.email),
    isInternal,
    encryptMode: ctx.config.encrypt,
    keys: await ctx.keys.keyStates(everyone, now, incident.id),
    exposure: headerExposure(caller.email, message, new Map(roster.map((m) => [m.email, m.name])), incidentTerms(incident)),
  };
  const findings = emailFindings(input);
  const decision = decideEmail(input, findings);
  // Bounded here, not only at send: the plan fixes the copies, and a preview
  // must not say ok for a message the send refuses with 413 (issue 10 §15).
  let bytes: RequestBytes | undefined;
  let tooLarge: RelayError | undefined;
  if (decision.outcome === 'accept') {
    const plan = decision.plan;
    bytes = estimateRequestBytes(message, {
      encrypted: plan.encrypt,
      headerAddresses: 1 + plan.to.length + plan.cc.length,
      keysPerCopy: plan.encrypt ? [plan.visibleKeyHolders.length, ...plan.bcc.map(() => 1)] : [],
    });
    try {
      assertRequestBytes(bytes.stored, plan.encrypt ? 1 + plan.bcc.length : 1, ctx.config.maxMessageBytes);
    } catch (err) {
      if (!(err instanceof RelayError)) throw err;
      tooLarge = err;
    }
  }
  return {
    ...(bytes !== undefined ? { bytes } : {}),
    ...(tooLarge !== undefined ? { tooLarge } : {}),
    decision: decision.outcome === 'refuse' ? { ...decision, error: withKeyHint(decision.error, caller, incident, roster) } : decision,
    findings,
    roster,
    chain,
    size,
    recipients: { to: [...new Set(message.to)], cc: [...new Set(message.cc)], bcc: [...new Set(message.bcc)] },
  };
}

/**
 * A key refusal says what this caller can do about it (issue 12 §7): a
 * commander, deputy or admin re-adds the member with their key; the owner of
 * an address uploads their own; anyone else asks the commander. The policy
 * cannot say it: it does not know who is asking.
 */
function withKeyHint(error: RelayError, caller: Caller, incident: Incident, roster: readonly RosterMember[]): RelayError {
  if (error.code !== 'missing_public_key' && error.code !== 'unusable_public_key') return error;
  const addresses = Array.isArray(error.details?.['recipients']) ? (error.details['recipients'] as string[]) : [];
  const key = error.code === 'unusable_public_key' ? 'a current key' : 'a key';
  const role = roster.find((m) => m.email === caller.email)?.role;
  const hints: string[] = [];
  if (caller.role === 'admin' || (role !== undefined && ROSTER_MANAGERS.includes(role))) {
    const which = error.code === 'unusable_public_key' ? 'a current key as publicKey' : 'publicKey';
    for (const a of addresses) hints.push(`re-add ${a} with ${which}: PUT /v1/incidents/${incident.codename}/roster/${a}`);
  } else {
    if (addresses.includes(caller.email)) hints.push(`upload ${key} of yours with PUT /v1/keys/${caller.email}`);
    const others = addresses.filter((a) => a !== caller.email);
    const commander = roster.find((m) => m.role === 'commander')?.email;
    if (others.length > 0) hints.push(`ask the incident's commander${commander ? ` (${commander})` : ''} to add ${key} for ${others.join(', ')}`);
  }
  if (hints.length === 0) return error;
  return new RelayError(error.code, `${error.message.replace(/\.$/, ';')} ${hints.join('; ')}.`, { rule: error.rule, details: error.details });
}

/** Runs one email through policy, composition and the outbox; resolves once it is durably queued. */
export async function submitEmail(ctx: RelayContext, caller: Caller, incident: Incident, message: EmailSubmission, options: SubmitOptions): Promise<EmailAccepted> {
  const started = process.hrtime.bigint();
  const route = `email:${incident.id}`;
  const idempotency: IdempotencyUse | undefined = options.idempotencyKey ? { key: options.idempotencyKey, route, fingerprint: emailFingerprint(route, message) } : undefined;
  if (idempotency) {
    const earlier = await replayAnswer<EmailAccepted>(ctx.store, caller, idempotency, ctx.now());
    if (earlier) return earlier;
  }
  await ctx.sendLimiter.take(caller.tokenId, ctx.now());
  const { decision, roster, chain, size, recipients: recipientsOf, bytes, tooLarge } = await decide(ctx, caller, incident, message);
  const now = ctx.now();
  const names = new Map(roster.map((m) => [m.email, m.name]));

  const auditBase = { type: 'email.decision', actor: caller.email, incidentId: incident.id };
  if (decision.outcome === 'refuse') {
    await ctx.store.audit.append({ ...auditBase, outcome: 'refused', data: { via: options.via, code: decision.error.code, rules: decision.rules, recipients: recipientsOf, bytes: size } });
    ctx.metrics.decisions.inc({ channel: 'email', outcome: 'refused', code: decision.error.code });
    throw decision.error;
  }

  if (tooLarge !== undefined || bytes === undefined) {
    const error = tooLarge ?? new RelayError('internal', 'An accepted message had no size estimate.');
    await ctx.store.audit.append({ ...auditBase, outcome: 'refused', data: { via: options.via, code: error.code, stage: 'budget', rules: decision.rules, recipients: recipientsOf, bytes: size } });
    ctx.metrics.decisions.inc({ channel: 'email', outcome: 'refused', code: error.code });
    throw error;
  }
  const plan = decision.plan;
  const id = randomUUID();
  const messageId = `<${randomUUID()}@${ctx.config.mailDomain}>`;
  // Only Message-IDs of this incident's threads the relay issued (or kept as
  // a client's alias) may stand in the clear headers of encrypted mail; the
  // others travel inside the encryption only (issue 10 §8).
  const outer = plan.encrypt ? outerReferences(message, chain, incident.id) : undefined;
  let composed: Composed;
  let release: (() => void) | undefined;
  try {
    // What all requests composing at once may hold (issue 10 §15); what this one would store was bounded in decide().
    release = ctx.inFlight.reserve(bytes.composing);
    composed = await composeDeliveries(ctx, incident, caller, message, plan, { id, messageId, date: now, outerReferences: outer }, names);
  } catch (err) {
    release?.();
    // Composition refused what the policy let through (a value the composer
    // will not put in a header, a failed encryption): nothing is queued, and
    // the refusal is on the record like any other decision.
    const code = asRelayError(err)?.code ?? 'internal';
    try {
      await ctx.store.audit.append({
        ...auditBase,
        outcome: code === 'internal' || code === 'unavailable' ? 'failed' : 'refused',
        data: { via: options.via, code, stage: 'compose', rules: decision.rules, recipients: recipientsOf, bytes: size },
      });
    } catch (auditErr) {
      ctx.logger.error({ err: auditErr }, 'could not audit a refused composition');
    }
    ctx.metrics.decisions.inc({ channel: 'email', outcome: 'refused', code });
    throw err;
  }
  const { deliveries, payload } = composed;
  const answer: EmailAccepted = { id, messageId, status: 'queued', encrypted: plan.encrypt, recipients: [...plan.to, ...plan.cc, ...plan.bcc] };

  // Grouped with the other accepts of this turn: one fsync for all of them.
  // It resolves only once the COMMIT holding this message is on disk, so the
  // 202/250 still means "committed" (SPEC §6); a failed COMMIT rejects it.
  const committed = await ctx.store
    .grouped(async (tx): Promise<'queued' | 'raced' | RelayError> => {
    // Encryption can take a while: the roster or the incident may have changed
    // since the decision. Check again where it counts, in the commit itself.
    const changed = await changedSinceDecision(tx, incident.id, caller.email, answer.recipients);
    if (changed) return changed;
    if (idempotency && !(await rememberAnswer(tx, caller, idempotency, 202, answer, now))) {
      return 'raced'; // another request with this key committed first; queue nothing
    }
    await tx.outbox.insertEmail({
      id,
      incidentId: incident.id,
      messageId,
      sender: caller.email,
      encrypted: plan.encrypt,
      chainExternal: plan.chainExternal,
      recipients: answer.recipients,
      // Kept apart so views that may not show Bcc recipients can take them out (issue 10 §5).
      bcc: plan.bcc,
      createdAt: now.toISOString(),
    });
    // False when the client's id is already a relay Message-ID (or another email's alias): it then names that email only.
    const aliasKept = message.clientMessageId === undefined ? undefined : await tx.outbox.addAlias(message.clientMessageId, id);
    if (payload !== undefined) await tx.outbox.insertPayload(id, payload);
    await tx.outbox.enqueue(deliveries, now);
    await tx.audit.append({
      ...auditBase,
      outcome: 'ok',
      data: {
        via: options.via,
        emailId: id,
        messageId,
        encrypted: plan.encrypt,
        encryptReason: plan.encryptReason,
        ...(chain.reasons.length > 0 ? { chain: chain.reasons } : {}),
        ...(aliasKept === false ? { clientMessageIdKept: false } : {}),
        rules: decision.rules,
        recipients: recipientsOf,
        copies: deliveries.length,
        bytes: size,
      },
    });
    return 'queued';
  })
    .finally(release);
  if (committed instanceof RelayError) {
    await ctx.store.audit.append({ ...auditBase, outcome: 'refused', data: { via: options.via, code: committed.code, rules: decision.rules, recipients: recipientsOf, bytes: size, changedDuringCompose: true } });
    ctx.metrics.decisions.inc({ channel: 'email', outcome: 'refused', code: committed.code });
    throw committed;
  }
  if (committed === 'raced') return (await replayAnswer<EmailAccepted>(ctx.store, caller, idempotency!, now))!;
  ctx.notifyOutbox();
  ctx.metrics.decisions.inc({ channel: 'email', outcome: 'accepted', code: '' });
  ctx.metrics.acceptSeconds.observe({ channel: 'email' }, Number(process.hrtime.bigint() - started) / 1e9);
  return answer;
}

/** What composition hands to the commit: the deliveries, and for encrypted mail the parts all copies share. */
interface Composed {
  deliveries: NewDelivery[];
  payload?: EmailPayload;
}

/**
 * The bytes and envelopes to queue: one plain message for everyone, or one
 * encrypted copy for the visible recipients plus one per Bcc recipient
 * readable with that recipient's key alone (rule `bcc`). The payload is
 * signed and encrypted once; copies differ only in their session key packets,
 * which is all each delivery stores (the shared part is stored once).
 */
async function composeDeliveries(
  ctx: RelayContext,
  incident: Incident,
  caller: Caller,
  message: EmailSubmission,
  plan: EmailPlan,
  ids: { id: string; messageId: string; date: Date; outerReferences: OuterReferences | undefined },
  names: ReadonlyMap<string, string>,
): Promise<Composed> {
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
  const delivery = (to: string[], body: Buffer, bodyKind: BodyKind): NewDelivery => ({
    id: randomUUID(),
    channel: 'email',
    emailId: ids.id,
    incidentId: incident.id,
    envelope: { kind: 'email', from: caller.email, to },
    body,
    bodyKind,
  });
  if (!plan.encrypt) return { deliveries: [delivery([...plan.to, ...plan.cc, ...plan.bcc], composePlain(content), 'raw')] };

  // The worker pool when main.ts made one, else this thread; either way a failure refuses the message.
  const encryptor = ctx.encryptor ?? inThreadEncryptor(ctx.relayKey.privateKey);
  const copy = async (recipients: string[], holders: string[]): Promise<{ recipients: string[]; keys: PublicKey[] }> => ({ recipients, keys: await ctx.keys.publicKeys(holders, incident.id) });
  const copies = await Promise.all([copy([...plan.to, ...plan.cc], plan.visibleKeyHolders), ...plan.bcc.map((bcc) => copy([bcc], [bcc]))]);
  const sealed = await composeSealed(content, copies, encryptor, ids.outerReferences ?? {});
  return {
    deliveries: sealed.copies.map((c) => delivery(c.recipients, Buffer.from(c.keyPackets.buffer, c.keyPackets.byteOffset, c.keyPackets.byteLength), 'sealed')),
    payload: { head: sealed.envelope.head, tail: sealed.envelope.tail, shared: Buffer.from(sealed.shared.buffer, sealed.shared.byteOffset, sealed.shared.byteLength) },
  };
}

/**
 * Rule `codename`'s inputs: the values the sender chose that reach headers
 * or the topic line (display names from the roster, the subject, attachment
 * file names) and the incident's private terms, which none may carry.
 */
function headerExposure(sender: string, message: EmailSubmission, names: ReadonlyMap<string, string>, forbiddenTerms: readonly string[]): HeaderExposure {
  const named = (field: string, emails: readonly string[]) =>
    emails.flatMap((email, i) => {
      const name = names.get(email);
      return name === undefined ? [] : [{ field: `${field}[${i}].name`, value: name }];
    });
  return {
    always: [],
    whenPlain: [
      ...named('from', [sender]),
      ...named('to', message.to),
      ...named('cc', message.cc),
      ...(message.subject ? [{ field: 'subject', value: message.subject }] : []),
      ...message.attachments.map((a, i) => ({ field: `attachments[${i}].filename`, value: a.filename })),
    ],
    forbiddenTerms,
  };
}

/** The incident's private terms that no header may carry: its label, when it has one. */
function incidentTerms(incident: Incident): string[] {
  return incident.label !== null && incident.label !== '' ? [incident.label] : [];
}

/** The answer of a policy preview (POST …/emails?dryRun=true): what a send would do, and every problem at once. */
export interface EmailPreview {
  outcome: 'accept' | 'refuse';
  encrypted: boolean;
  encryptReason: EmailPlan['encryptReason'];
  rules: RuleOutcome[];
  recipients: { to: string[]; cc: string[]; bcc: string[] };
  /** Recipients outside the company (they are why it is encrypted, when encryptReason is external-recipient). */
  externalRecipients: string[];
  offRoster: string[];
  missingKeys: string[];
  unusableKeys: { email: string; reason: string }[];
  /** The refusal a send would get, as the API would answer it. */
  error?: ReturnType<RelayError['toJSON']>['error'];
}

/**
 * Runs a draft through the same decision as submitEmail and says what a send
 * would do, without composing, queueing or sending anything. Rate-limited
 * like a send (it costs the same lookups, and must not become a free oracle
 * of who has a key); audited as `email.preview` with every rule's outcome.
 * Bad input still throws, as for a send.
 */
export async function previewEmail(ctx: RelayContext, caller: Caller, incident: Incident, message: EmailSubmission, options: Pick<SubmitOptions, 'via'>): Promise<EmailPreview> {
  await ctx.sendLimiter.take(caller.tokenId, ctx.now());
  const { decision, findings, size, recipients, tooLarge } = await decide(ctx, caller, incident, message);
  if (tooLarge !== undefined) {
    await ctx.store.audit.append({ type: 'email.preview', actor: caller.email, incidentId: incident.id, outcome: 'refused', data: { via: options.via, code: tooLarge.code, stage: 'budget', rules: decision.rules, recipients, bytes: size } });
    throw tooLarge;
  }
  const preview: EmailPreview = {
    outcome: decision.outcome,
    encrypted: findings.encryptReason !== null,
    encryptReason: findings.encryptReason,
    rules: decision.rules,
    recipients: { to: findings.to, cc: findings.cc, bcc: findings.bcc },
    externalRecipients: findings.externalRecipients,
    offRoster: findings.offRoster,
    missingKeys: findings.missingKeys,
    unusableKeys: findings.unusableKeys.map((u) => ({ email: u.address, reason: u.reason })),
    ...(decision.outcome === 'refuse' ? { error: decision.error.toJSON().error } : {}),
  };
  await ctx.store.audit.append({
    type: 'email.preview',
    actor: caller.email,
    incidentId: incident.id,
    outcome: decision.outcome === 'accept' ? 'ok' : 'refused',
    // Counts, not the lists: addresses are in `recipients`, where Bcc can be redacted for readers who may not see it.
    data: {
      via: options.via,
      ...(decision.outcome === 'refuse' ? { code: decision.error.code } : {}),
      encrypted: preview.encrypted,
      encryptReason: preview.encryptReason,
      rules: decision.rules,
      recipients,
      offRoster: preview.offRoster.length,
      missingKeys: preview.missingKeys.length,
      unusableKeys: preview.unusableKeys.length,
      bytes: size,
    },
  });
  ctx.metrics.decisions.inc({ channel: 'email-preview', outcome: decision.outcome === 'accept' ? 'accepted' : 'refused', code: decision.outcome === 'refuse' ? decision.error.code : '' });
  return preview;
}

/** One copy of an email as the API shows it. */
export interface DeliveryStatusView {
  recipients: string[];
  status: DeliveryView['status'];
  attempts: number;
  lastError?: string;
}

/** An email as GET …/emails and GET …/emails/:id show it (EmailSummary of the API contract). */
export interface EmailView {
  id: string;
  messageId: string;
  sender: string;
  createdAt: string;
  encrypted: boolean;
  recipients: string[];
  status: DeliveryView['status'];
  attempts: number;
  lastError?: string;
  deliveries: DeliveryStatusView[];
}

/** The email with its copies' states. */
export function emailView(email: EmailRecord, deliveries: readonly DeliveryView[]): EmailView {
  const state = summarise(deliveries);
  return {
    id: email.id,
    messageId: email.messageId,
    sender: email.sender,
    createdAt: email.createdAt,
    encrypted: email.encrypted,
    recipients: email.recipients,
    status: state.status,
    attempts: state.attempts,
    ...(state.lastError !== null ? { lastError: state.lastError } : {}),
    deliveries: deliveries.map((d) => ({ recipients: d.recipients, status: d.status, attempts: d.attempts, ...(d.lastError !== null ? { lastError: d.lastError } : {}) })),
  };
}

/**
 * Who sees which emails of an incident: admins and its commander all, anyone
 * else only what they sent. Every reader it lets see an email may see its
 * Bcc recipients (the sender, commanders, admins: issue 10 §5).
 */
function seesAll(caller: Caller, member: RosterMember | undefined): boolean {
  return caller.role === 'admin' || member?.role === 'commander';
}

/** An opaque cursor for the email list: where the next page starts. */
function encodeCursor(at: EmailCursor): string {
  return Buffer.from(JSON.stringify([at.createdAt, at.id]), 'utf8').toString('base64url');
}

function decodeCursor(cursor: string): EmailCursor {
  try {
    const value = JSON.parse(Buffer.from(cursor, 'base64url').toString('utf8')) as unknown;
    if (Array.isArray(value) && value.length === 2 && typeof value[0] === 'string' && typeof value[1] === 'string' && value[0].length <= 40 && value[1].length <= 100) {
      return { createdAt: value[0], id: value[1] };
    }
  } catch {
    // fall through
  }
  throw invalid('cursor is not one this relay gave out; start again without it.', { field: 'cursor' });
}

/** What GET …/emails asks for. */
export interface EmailListQuery {
  limit: number;
  cursor?: string | undefined;
  /** The relay's Message-ID or a client's own (SMTP), angle brackets included. */
  messageId?: string | undefined;
}

/** One page of the incident's emails the caller may see, newest first, each with its delivery status. */
export async function listEmails(
  ctx: Pick<RelayContext, 'store'>,
  caller: Caller,
  access: { incident: Incident; member: RosterMember | undefined },
  query: EmailListQuery,
): Promise<{ emails: EmailView[]; next?: string }> {
  const sender = seesAll(caller, access.member) ? undefined : caller.email;
  let records: EmailRecord[];
  let next: string | undefined;
  if (query.messageId !== undefined) {
    const found = await ctx.store.outbox.emailByMessageId(access.incident.id, query.messageId);
    records = found !== undefined && (sender === undefined || found.sender === sender) ? [found] : [];
  } else {
    // One more than asked: whether there is a next page, without a COUNT.
    const page = await ctx.store.outbox.listEmails({ incidentId: access.incident.id, sender, after: query.cursor === undefined ? undefined : decodeCursor(query.cursor), limit: query.limit + 1 });
    records = page.slice(0, query.limit);
    if (page.length > query.limit) next = encodeCursor(records[records.length - 1]!);
  }
  const deliveries = await ctx.store.outbox.deliveriesOfEmails(records.map((r) => r.id));
  return { emails: records.map((r) => emailView(r, deliveries.get(r.id) ?? [])), ...(next !== undefined ? { next } : {}) };
}

/** GET …/emails/:id: the email with its delivery status, when the caller may see it (sender, commander, admin). */
export async function emailStatus(ctx: Pick<RelayContext, 'store'>, caller: Caller, access: { incident: Incident; member: RosterMember | undefined }, id: string): Promise<EmailView | undefined> {
  const email = await ctx.store.outbox.email(access.incident.id, id);
  if (!email || !(seesAll(caller, access.member) || email.sender === caller.email)) return undefined;
  return emailView(email, await ctx.store.outbox.deliveriesOf(id));
}
