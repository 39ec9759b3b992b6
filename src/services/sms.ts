/**
 * The SMS nudge pipeline: policy, then the durable outbox, in one store
 * transaction so the per-member interval holds under concurrent requests. The
 * text queued is always the template; a client's body is only compared,
 * fingerprinted for the audit log (length and SHA-256), and dropped.
 */
import { randomUUID } from 'node:crypto';
import type { RelayContext } from '../context.js';
import type { RelayError } from '../errors.js';
import { decideSms, fingerprint, sha256Hex, isPermittedSmsBody, type SmsMemberState, type SmsResult } from '../policy/sms.js';
import type { Incident } from '../store/incidents.js';
import type { NewDelivery } from '../store/outbox.js';
import { checkSecurityTeam, securityMemberCount } from '../policy/security-team.js';
import { loadTemplate } from '../templates.js';
import { isEmailAddress, normalisedEmail } from '../validation.js';
import type { Via } from './emails.js';
import { rememberAnswer, replayAnswer, requestFingerprint, type IdempotencyUse } from './idempotency.js';
import type { Caller } from './incidents.js';

/** A nudge request as the listener hands it over (`to` is normalised again here), `body` untouched. */
export interface NudgeRequest {
  to: 'roster' | string[];
  body?: string | undefined;
}

/** The 202 answer of SPEC §4. */
export interface NudgeAccepted {
  results: SmsResult[];
}

type Outcome = { kind: 'accepted' | 'replayed'; answer: NudgeAccepted } | { kind: 'refused'; error: RelayError } | { kind: 'raced' };

/** Runs one nudge request through the policy and queues the nudges; returns once they are committed to the outbox. */
export async function sendNudges(ctx: RelayContext, caller: Caller, incident: Incident, request: NudgeRequest, options: { via: Extract<Via, 'http' | 'console'>; idempotencyKey?: string | undefined }): Promise<NudgeAccepted> {
  const started = process.hrtime.bigint();
  const route = `sms:${incident.id}`;
  const idempotency: IdempotencyUse | undefined = options.idempotencyKey
    ? { key: options.idempotencyKey, route, fingerprint: requestFingerprint(route, { to: request.to, body: request.body ?? null }) }
    : undefined;
  if (idempotency) {
    const earlier = await replayAnswer<NudgeAccepted>(ctx.store, caller, idempotency, ctx.now());
    if (earlier) return earlier;
  }
  await ctx.sendLimiter.take(caller.tokenId, ctx.now());
  const nudge = loadTemplate('sms-nudge');
  // What the audit log may say about the request: addresses as given, and for
  // anything else (a body that is not the nudge, entries that are not
  // addresses) a length and a hash only.
  // Normalised as the roster stores addresses (lowercase, A-label domain): a Unicode domain names the same member.
  const listed = request.to === 'roster' ? 'roster' : [...new Set(request.to.map((t) => normalisedEmail(t) ?? t))];
  const blocked = isPermittedSmsBody(request.body, nudge) ? undefined : fingerprint(request.body ?? '');
  const others = listed === 'roster' ? [] : listed.filter((t) => !isEmailAddress(t));
  const requestFacts = {
    via: options.via,
    recipients: listed === 'roster' ? 'roster' : listed.filter(isEmailAddress),
    ...(others.length > 0 ? { otherRecipientsSha256: others.map(sha256Hex) } : {}),
    ...(blocked ? { blockedLength: blocked.length, blockedSha256: blocked.sha256 } : {}),
  };

  // One transaction: reading the last nudge times and recording the new ones
  // cannot interleave with another request (SQLite: the write lock is taken
  // up front; PostgreSQL: the rows of the members nudged are locked), so the
  // interval holds, across relays too.
  const outcome = await ctx.store.transaction(async (tx): Promise<Outcome> => {
    if (idempotency) {
      const earlier = await replayAnswer<NudgeAccepted>(tx, caller, idempotency, ctx.now());
      if (earlier) return { kind: 'replayed', answer: earlier };
    }
    const now = ctx.now();
    const members = new Map<string, SmsMemberState>();
    const entries =
      listed === 'roster'
        ? await tx.incidents.roster(incident.id)
        : (await Promise.all(listed.filter(isEmailAddress).map((e) => tx.incidents.member(incident.id, e)))).flatMap((m) => (m ? [m] : []));
    await tx.sms.lockNudgeTargets(entries);
    for (const m of entries) members.set(m.email, { status: m.status, phone: m.phone, lastNudgeMs: await tx.sms.lastNudgeMs(m.email, m.phone) });
    const decision = decideSms({
      sender: caller.email,
      senderOnRoster: (await tx.incidents.activeMember(incident.id, caller.email)) !== undefined,
      incidentStatus: incident.status,
      securityMembers: securityMemberCount(await tx.incidents.roster(incident.id)),
      nudge,
      body: request.body,
      to: listed,
      members,
      nowMs: now.getTime(),
      intervalMs: ctx.config.smsNudgeInterval,
    });
    const audit = { type: 'sms.decision', actor: caller.email, incidentId: incident.id };
    if (decision.outcome === 'refuse') {
      await tx.audit.append({ ...audit, outcome: 'refused', data: { ...requestFacts, code: decision.error.code, rules: decision.rules } });
      return { kind: 'refused', error: decision.error };
    }
    const answer: NudgeAccepted = { results: decision.plan.results };
    // False when a request with the same key committed first (PostgreSQL: it
    // waited on that row): queue and audit nothing, and answer what it answered.
    if (idempotency && !(await rememberAnswer(tx, caller, idempotency, 202, answer, now))) return { kind: 'raced' };
    const body = Buffer.from(nudge, 'utf8');
    const smsIds: string[] = [];
    const deliveries: NewDelivery[] = [];
    for (const { email, phone } of decision.plan.send) {
      const smsId = randomUUID();
      smsIds.push(smsId);
      await tx.sms.insert({ id: smsId, incidentId: incident.id, email, phone, at: now });
      deliveries.push({ id: randomUUID(), channel: 'sms', smsId, incidentId: incident.id, envelope: { kind: 'sms', to: phone }, body });
    }
    await tx.outbox.enqueue(deliveries, now);
    await tx.audit.append({ ...audit, outcome: 'ok', data: { ...requestFacts, rules: decision.rules, results: decision.plan.results, smsIds } });
    return { kind: 'accepted', answer };
  });

  if (outcome.kind === 'raced') return (await replayAnswer<NudgeAccepted>(ctx.store, caller, idempotency!, ctx.now()))!;
  if (outcome.kind === 'refused') {
    ctx.metrics.decisions.inc({ channel: 'sms', outcome: 'refused', code: outcome.error.code });
    throw outcome.error;
  }
  if (outcome.kind === 'accepted') {
    if (outcome.answer.results.some((r) => r.status === 'queued')) ctx.notifyOutbox();
    ctx.metrics.decisions.inc({ channel: 'sms', outcome: 'accepted', code: '' });
    ctx.metrics.acceptSeconds.observe({ channel: 'sms' }, Number(process.hrtime.bigint() - started) / 1e9);
  }
  return outcome.answer;
}

/** What the webhook answers: the nudge again, or nothing. */
export interface InboundReply {
  nudge: string | undefined;
}

/**
 * An inbound SMS (already signature-checked). Its text is never looked at or
 * kept. The audit records that it came from a roster member (by address) or
 * from an unknown number (SHA-256 of the number). A member of an open
 * incident gets the nudge again, unless nudged within the interval; anyone
 * else gets nothing, since SMS goes only to roster phones (rule `sms`).
 */
export async function receiveInboundSms(ctx: RelayContext, inbound: { from: string; messageSid: string | undefined }): Promise<InboundReply> {
  const nudge = loadTemplate('sms-nudge');
  return ctx.store.transaction(async (tx): Promise<InboundReply> => {
    const now = ctx.now();
    const holders = await tx.sms.holdersOf(inbound.from);
    const base = { type: 'sms.inbound', outcome: 'ok' as const };
    const sid = inbound.messageSid === undefined ? {} : { messageSid: inbound.messageSid };
    if (holders.length === 0) {
      await tx.audit.append({ ...base, actor: null, data: { ...sid, sender: 'unknown', fromSha256: sha256Hex(inbound.from), reply: 'none' } });
      return { nudge: undefined };
    }
    // The newest open incident answers; every incident the number is on records the message.
    const answering = holders.find((h) => h.incidentStatus === 'open');
    await tx.sms.lockNudgeTargets(holders.map((h) => ({ email: h.email, phone: inbound.from })));
    let recent = false;
    for (const h of answering === undefined ? [] : holders) {
      const last = await tx.sms.lastNudgeMs(h.email, inbound.from);
      if (last !== undefined && now.getTime() - last < ctx.config.smsNudgeInterval) recent = true;
    }
    // Rule security-team holds for this SMS too (the one rule, as for a nudge): no reply until the incident has a security member.
    const noSecurity = answering !== undefined && checkSecurityTeam(securityMemberCount(await tx.incidents.roster(answering.incidentId)), 'SMS').error !== undefined;
    const reply = answering === undefined ? 'none' : noSecurity ? 'security_team_missing' : recent ? 'recently_nudged' : 'nudge';
    let smsId: string | undefined;
    if (reply === 'nudge' && answering) {
      smsId = randomUUID();
      // Twilio sends the TwiML reply itself; the row is what keeps the interval.
      await tx.sms.insert({ id: smsId, incidentId: answering.incidentId, email: answering.email, phone: inbound.from, at: now });
    }
    for (const h of holders) {
      const answered = h === answering;
      await tx.audit.append({
        ...base,
        actor: h.email,
        incidentId: h.incidentId,
        data: { ...sid, sender: 'member', email: h.email, reply: answered ? reply : 'none', ...(answered && smsId ? { smsId } : {}) },
      });
    }
    return { nudge: reply === 'nudge' ? nudge : undefined };
  });
}
