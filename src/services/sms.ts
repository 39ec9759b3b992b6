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
import { loadTemplate } from '../templates.js';
import { isEmailAddress } from '../validation.js';
import { replayAnswer } from './idempotency.js';
import type { Caller } from './incidents.js';

/** A nudge request as the listener hands it over: `to` lowercased, `body` untouched. */
export interface NudgeRequest {
  to: 'roster' | string[];
  body?: string | undefined;
}

/** The 202 answer of SPEC §4. */
export interface NudgeAccepted {
  results: SmsResult[];
}

type Outcome = { kind: 'accepted' | 'replayed'; answer: NudgeAccepted } | { kind: 'refused'; error: RelayError };

/** Runs one nudge request through the policy and queues the nudges; returns once they are committed to the outbox. */
export function sendNudges(ctx: RelayContext, caller: Caller, incident: Incident, request: NudgeRequest, options: { idempotencyKey?: string | undefined } = {}): NudgeAccepted {
  const started = process.hrtime.bigint();
  const route = `sms:${incident.id}`;
  if (options.idempotencyKey) {
    const earlier = replayAnswer<NudgeAccepted>(ctx, caller, options.idempotencyKey, route);
    if (earlier) return earlier;
  }
  ctx.sendLimiter.take(caller.tokenId, ctx.now());
  const nudge = loadTemplate('sms-nudge');
  const sms = ctx.store.sms;
  // What the audit log may say about the request: addresses as given, and for
  // anything else (a body that is not the nudge, entries that are not
  // addresses) a length and a hash only.
  const listed = request.to === 'roster' ? 'roster' : [...new Set(request.to)];
  const blocked = isPermittedSmsBody(request.body, nudge) ? undefined : fingerprint(request.body ?? '');
  const others = listed === 'roster' ? [] : listed.filter((t) => !isEmailAddress(t));
  const requestFacts = {
    via: 'http',
    recipients: listed === 'roster' ? 'roster' : listed.filter(isEmailAddress),
    ...(others.length > 0 ? { otherRecipientsSha256: others.map(sha256Hex) } : {}),
    ...(blocked ? { blockedLength: blocked.length, blockedSha256: blocked.sha256 } : {}),
  };

  // IMMEDIATE transaction: reading the last nudge times and recording the new
  // ones cannot interleave with another request, so the interval holds.
  const outcome = ctx.store.transaction((): Outcome => {
    if (options.idempotencyKey) {
      const earlier = replayAnswer<NudgeAccepted>(ctx, caller, options.idempotencyKey, route);
      if (earlier) return { kind: 'replayed', answer: earlier };
    }
    const now = ctx.now();
    const members = new Map<string, SmsMemberState>();
    const entries = listed === 'roster' ? ctx.store.incidents.roster(incident.id) : listed.filter(isEmailAddress).flatMap((e) => ctx.store.incidents.member(incident.id, e) ?? []);
    for (const m of entries) members.set(m.email, { status: m.status, phone: m.phone, lastNudgeMs: sms.lastNudgeMs(m.email, m.phone) });
    const decision = decideSms({
      sender: caller.email,
      senderOnRoster: ctx.store.incidents.activeMember(incident.id, caller.email) !== undefined,
      incidentStatus: incident.status,
      nudge,
      body: request.body,
      to: listed,
      members,
      nowMs: now.getTime(),
      intervalMs: ctx.config.smsNudgeInterval,
    });
    const audit = { type: 'sms.decision', actor: caller.email, incidentId: incident.id };
    if (decision.outcome === 'refuse') {
      ctx.store.audit.append({ ...audit, outcome: 'refused', data: { ...requestFacts, code: decision.error.code, rules: decision.rules } });
      return { kind: 'refused', error: decision.error };
    }
    const answer: NudgeAccepted = { results: decision.plan.results };
    if (options.idempotencyKey) ctx.store.idempotency.put(caller.tokenId, options.idempotencyKey, { route, status: 202, response: answer }, now);
    const body = Buffer.from(nudge, 'utf8');
    const smsIds: string[] = [];
    const deliveries: NewDelivery[] = decision.plan.send.map(({ email, phone }) => {
      const smsId = randomUUID();
      smsIds.push(smsId);
      sms.insert({ id: smsId, incidentId: incident.id, email, phone, at: now });
      return { id: randomUUID(), channel: 'sms', smsId, incidentId: incident.id, envelope: { kind: 'sms', to: phone }, body };
    });
    ctx.store.outbox.enqueue(deliveries, now);
    ctx.store.audit.append({ ...audit, outcome: 'ok', data: { ...requestFacts, rules: decision.rules, results: decision.plan.results, smsIds } });
    return { kind: 'accepted', answer };
  });

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
export function receiveInboundSms(ctx: RelayContext, inbound: { from: string; messageSid: string | undefined }): InboundReply {
  const sms = ctx.store.sms;
  const nudge = loadTemplate('sms-nudge');
  return ctx.store.transaction((): InboundReply => {
    const now = ctx.now();
    const holders = sms.holdersOf(inbound.from);
    const base = { type: 'sms.inbound', outcome: 'ok' as const };
    const sid = inbound.messageSid === undefined ? {} : { messageSid: inbound.messageSid };
    if (holders.length === 0) {
      ctx.store.audit.append({ ...base, actor: null, data: { ...sid, sender: 'unknown', fromSha256: sha256Hex(inbound.from), reply: 'none' } });
      return { nudge: undefined };
    }
    // The newest open incident answers; every incident the number is on records the message.
    const answering = holders.find((h) => h.incidentStatus === 'open');
    const recent = answering !== undefined && holders.some((h) => {
      const last = sms.lastNudgeMs(h.email, inbound.from);
      return last !== undefined && now.getTime() - last < ctx.config.smsNudgeInterval;
    });
    const reply = answering === undefined ? 'none' : recent ? 'recently_nudged' : 'nudge';
    let smsId: string | undefined;
    if (reply === 'nudge' && answering) {
      smsId = randomUUID();
      // Twilio sends the TwiML reply itself; the row is what keeps the interval.
      sms.insert({ id: smsId, incidentId: answering.incidentId, email: answering.email, phone: inbound.from, at: now });
    }
    for (const h of holders) {
      const answered = h === answering;
      ctx.store.audit.append({
        ...base,
        actor: h.email,
        incidentId: h.incidentId,
        data: { ...sid, sender: 'member', email: h.email, reply: answered ? reply : 'none', ...(answered && smsId ? { smsId } : {}) },
      });
    }
    return { nudge: reply === 'nudge' ? nudge : undefined };
  });
}
