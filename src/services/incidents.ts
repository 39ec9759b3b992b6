/**
 * Incidents and rosters: who may see, change and send for an incident. Every
 * change is audited in the same transaction that makes it.
 */
import { randomUUID } from 'node:crypto';
import { generateCodename, isListedCodename, isValidCodename } from '../codename/generate.js';
import type { RelayContext } from '../context.js';
import { RelayError, invalid } from '../errors.js';
import type { AuditInput } from '../store/audit.js';
import type { Repositories } from '../store/index.js';
import type { Incident, IncidentStatus, MemberInput, RosterMember, RosterRole } from '../store/incidents.js';
import type { Cancellation } from '../store/outbox.js';
import type { TokenRole } from '../store/tokens.js';
import type { KeyMetadata } from './keys.js';

/** The authenticated caller, from the token. */
export interface Caller {
  tokenId: string;
  email: string;
  role: TokenRole;
  /**
   * The one incident a token issued for an incident's roster may act in;
   * null for a token without scope. A commander issues tokens for their
   * roster: scoped, such a token cannot act as that person anywhere else.
   */
  incidentScope: string | null;
}

/** Roster roles allowed to manage the roster. */
export const ROSTER_MANAGERS: readonly RosterRole[] = ['commander', 'deputy'];
/** Roster roles allowed to read the incident's audit events. */
export const AUDIT_READERS: readonly RosterRole[] = ['commander', 'deputy', 'scribe'];
/** Roster roles allowed to close the incident or resync its room. */
export const COMMANDERS: readonly RosterRole[] = ['commander'];

export interface IncidentAccess {
  incident: Incident;
  /** The caller's active roster entry, when there is one. */
  member: RosterMember | undefined;
}

/**
 * Finds the incident for the caller. Non-members get not_found, exactly as for
 * an incident that does not exist, so nobody learns an incident exists. Admins
 * see every incident. `allowed` restricts members by roster role.
 */
export async function authorizeIncident(
  ctx: Pick<RelayContext, 'store'>,
  caller: Caller,
  codename: string,
  allowed: readonly RosterRole[] | 'roster' = 'roster',
): Promise<IncidentAccess> {
  const found = isValidCodename(codename) ? await ctx.store.incidents.withActiveMember(codename, caller.email) : undefined;
  const { incident, member } = found ?? { incident: undefined, member: undefined };
  if (!incident || (!member && caller.role !== 'admin') || !inScope(caller, incident.id)) {
    throw new RelayError('not_found', `No incident "${codename.slice(0, 80)}" that you are on the roster of.`);
  }
  if (!permits(caller, member, allowed)) {
    throw new RelayError('forbidden', `Your roster role (${member!.role}) may not do this; it needs one of: ${allowed === 'roster' ? 'roster' : allowed.join(', ')}, or an admin.`);
  }
  return { incident, member };
}

/** Whether the caller's token may act in this incident at all (see Caller.incidentScope). */
export function inScope(caller: Pick<Caller, 'incidentScope'>, incidentId: string): boolean {
  return caller.incidentScope === null || caller.incidentScope === incidentId;
}

/**
 * Refuses what a token scoped to one incident may not do: anything that is
 * not about that incident (declaring another, relay-wide keys, approving).
 */
export function assertUnscoped(caller: Pick<Caller, 'incidentScope'>, what: string, instead = 'ask an admin for a token of your own'): void {
  const refusal = scopeRefusal(caller, what, instead);
  if (refusal) throw refusal;
}

/** The refusal assertUnscoped throws, for screens that show it before the caller tries. */
export function scopeRefusal(caller: Pick<Caller, 'incidentScope'>, what: string, instead = 'ask an admin for a token of your own'): RelayError | undefined {
  if (caller.incidentScope === null) return undefined;
  return new RelayError('forbidden', `This token was issued for one incident's roster and may not ${what}; ${instead}.`);
}

/**
 * Whether a caller with this roster entry (undefined: not on the roster)
 * may do what needs `allowed`: the one statement of the rule that
 * authorizeIncident enforces, for screens that show only what the caller can
 * do (the console hides the roster forms from a scribe).
 */
export function permits(caller: Pick<Caller, 'role'>, member: Pick<RosterMember, 'role'> | undefined, allowed: readonly RosterRole[] | 'roster' = 'roster'): boolean {
  if (caller.role === 'admin') return true;
  if (member === undefined) return false;
  return allowed === 'roster' || allowed.includes(member.role);
}

/**
 * Whether a caller with this roster entry may send email and nudges in
 * `incident` now: the sender rule is the roster's, so it is permits() for a
 * caller without the admin pass (an admin off the roster sends nothing),
 * and only while the incident is open. For screens; the pipeline decides.
 */
export function maySend(member: Pick<RosterMember, 'role'> | undefined, incident: Pick<Incident, 'status'>): boolean {
  return incident.status === 'open' && permits({ role: 'responder' }, member);
}

/** The commander's address, for the incident view. */
export async function commanderOf(ctx: Pick<RelayContext, 'store'>, incident: Incident): Promise<string | null> {
  return (await ctx.store.incidents.roster(incident.id)).find((m) => m.role === 'commander')?.email ?? null;
}

// Generated codenames tried before giving up; a clash at insert means another relay took it a moment ago.
const CREATE_ATTEMPTS = 5;

/** Declares an incident: codename (chosen or generated), commander on the roster, and an optional private label. */
export async function createIncident(ctx: RelayContext, caller: Caller, input: { commander?: string; codename?: string; label?: string | undefined }): Promise<Incident> {
  assertUnscoped(caller, 'declare an incident');
  if (caller.role === 'admin' && input.commander === undefined) {
    throw invalid('An admin must name the commander: {"commander": "ic@corp.example"}.');
  }
  // A responder declares incidents they command themselves: naming someone
  // else would enlist them on an incident they never joined (and make their
  // SMTP mail ambiguous). Only an admin hands an incident to another person.
  if (caller.role !== 'admin' && input.commander !== undefined && input.commander !== caller.email) {
    throw new RelayError('forbidden', 'Only an admin may name someone else as commander: leave "commander" out to command the incident yourself, or ask an admin to declare it for them.', {
      details: { commander: input.commander },
    });
  }
  const commander = input.commander ?? caller.email;
  const at = ctx.now();
  const chosen = input.codename;
  if (chosen !== undefined && !isListedCodename(chosen)) {
    throw invalid('Codenames are built from the relay\'s word lists, e.g. sapphire-unicorn or amber-otter-2, so they say nothing about the incident; leave it out to get one.', { field: 'codename' });
  }
  for (let attempt = 0; attempt < CREATE_ATTEMPTS; attempt++) {
    const incident = await ctx.store.transaction(async (tx) => {
      let codename = chosen;
      if (codename !== undefined) {
        if (await tx.incidents.codenameTaken(codename)) throw invalid(`The codename "${codename}" is taken; choose another or leave it out to get one.`, { field: 'codename' });
      } else {
        const taken = await tx.incidents.codenames();
        codename = generateCodename((c) => taken.has(c));
      }
      const created = await tx.incidents.create({ id: randomUUID(), codename, createdBy: caller.email, at, label: input.label ?? null });
      if (!created) return undefined;
      await tx.incidents.upsertMember(created.id, { email: commander, name: commander.split('@')[0]!, role: 'commander' }, at);
      // The label's length only: the audit log leaves the relay (exports, SIEMs) more easily than the incident view.
      await tx.audit.append({ type: 'incident.created', actor: caller.email, incidentId: created.id, outcome: 'ok', data: { codename, commander, ...(input.label !== undefined ? { labelLength: input.label.length } : {}) } });
      await enlistSecurityTeam(tx, ctx.config.securityTeam, created, commander, at);
      return created;
    });
    if (incident) {
      ctx.events.incidentCreated(incident);
      return incident;
    }
    if (chosen !== undefined) throw invalid(`The codename "${chosen}" is taken; choose another or leave it out to get one.`, { field: 'codename' });
  }
  throw new RelayError('unavailable', 'Could not find a free codename; try again.', { retryAfter: 1 });
}

/**
 * Rule `security-team`: RELAY_SECURITY_TEAM joins every new incident's roster
 * as `security`, in the transaction that creates it, each addition audited.
 * The commander keeps their role when they are on the team too.
 */
async function enlistSecurityTeam(tx: Repositories, team: readonly string[], incident: Incident, commander: string, at: Date): Promise<void> {
  for (const email of team) {
    if (email === commander) continue;
    const { member } = await tx.incidents.upsertMember(incident.id, { email, name: email.split('@')[0]!, role: 'security' }, at);
    await tx.audit.append({
      type: 'roster.added',
      actor: null,
      incidentId: incident.id,
      outcome: 'ok',
      data: { email: member.email, role: member.role, phone: false, slackUserId: null, source: 'RELAY_SECURITY_TEAM' },
    });
  }
}

/**
 * A member of RELAY_SECURITY_TEAM serving as `security` stays unless an admin
 * removes or demotes them: the playbook has the security team always
 * included, and a commander or deputy must not be able to drop them quietly.
 * `current` is their roster entry as the transaction read it; `change` is the new role, or 'removed'.
 */
function assertSecurityTeamKept(caller: Caller, current: RosterMember | undefined, email: string, change: RosterRole | 'removed', team: readonly string[]): void {
  if (caller.role === 'admin' || change === 'security' || !team.includes(email)) return;
  if (current?.status !== 'active' || current.role !== 'security') return;
  throw new RelayError(
    'security_team_protected',
    `${email} is on the security team (RELAY_SECURITY_TEAM), which is always included: only an admin may ${change === 'removed' ? 'remove them from' : 'change their role on'} this roster. Nothing was changed; ask an admin if they must go.`,
    { rule: 'security-team', details: { email } },
  );
}

/** Closes an open incident; closing a closed one is a no-op. */
export async function closeIncident(ctx: RelayContext, caller: Caller, incident: Incident): Promise<Incident> {
  const changed = await ctx.store.transaction(async (tx) => {
    const closed = await tx.incidents.close(incident.id, ctx.now());
    if (closed) await tx.audit.append({ type: 'incident.closed', actor: caller.email, incidentId: incident.id, outcome: 'ok', data: { codename: incident.codename } });
    return closed;
  });
  const after = (await ctx.store.incidents.byId(incident.id))!;
  if (changed) ctx.events.incidentClosed(after);
  return after;
}

/** Opens a closed incident again, so a mistaken close is not fatal; reopening an open one is a no-op. The Slack room comes back. */
export async function reopenIncident(ctx: RelayContext, caller: Caller, incident: Incident): Promise<Incident> {
  const changed = await ctx.store.transaction(async (tx) => {
    const reopened = await tx.incidents.reopen(incident.id);
    if (reopened) {
      await tx.audit.append({ type: 'incident.reopened', actor: caller.email, incidentId: incident.id, outcome: 'ok', data: { codename: incident.codename, closedAt: incident.closedAt } });
    }
    return reopened;
  });
  const after = (await ctx.store.incidents.byId(incident.id))!;
  if (changed) ctx.events.incidentReopened(after);
  return after;
}

/** Sets (or, with null, clears) the incident's private label; audited by length, never the text. */
export async function setIncidentLabel(ctx: Pick<RelayContext, 'store'>, caller: Caller, incident: Incident, label: string | null): Promise<Incident> {
  await ctx.store.transaction(async (tx) => {
    const current = await tx.incidents.byId(incident.id);
    if (current === undefined || current.label === label) return;
    await tx.incidents.setLabel(incident.id, label);
    await tx.audit.append({ type: 'incident.labelled', actor: caller.email, incidentId: incident.id, outcome: 'ok', data: label === null ? { cleared: true } : { labelLength: label.length } });
  });
  return (await ctx.store.incidents.byId(incident.id))!;
}

/**
 * Roster changes need a commander, a deputy or an admin; and only a
 * commander or an admin hands out the commander role or touches a
 * commander's entry: a deputy manages the roster, but must not be able to
 * demote the commander and take over the incident.
 */
async function assertMayChange(tx: Repositories, caller: Caller, incident: Incident, email: string, newRole?: RosterRole): Promise<void> {
  if (caller.role === 'admin') return;
  const callerRole = (await tx.incidents.activeMember(incident.id, caller.email))?.role;
  // Checked again here, not only by the route: the caller may have been
  // demoted or removed while their key upload was being validated.
  if (callerRole === undefined || !ROSTER_MANAGERS.includes(callerRole)) {
    throw new RelayError('forbidden', 'Only a commander, a deputy or an admin may change the roster.');
  }
  if (callerRole === 'commander') return;
  const target = await tx.incidents.activeMember(incident.id, email);
  if (newRole === 'commander' || target?.role === 'commander') {
    throw new RelayError('forbidden', 'Only a commander or an admin may name a commander or change a commander\'s roster entry.');
  }
}

/** The fields of a roster entry a PATCH may change; those left out keep their values. */
export interface MemberPatch {
  name?: string | undefined;
  role?: RosterRole | undefined;
  phone?: string | null | undefined;
  slackUserId?: string | null | undefined;
  /** An armored key or revocation; null withdraws the member's key in this incident. */
  publicKey?: string | null | undefined;
}

/** What a roster change answers: the member, whether they are new, and the key in effect for them here. */
export interface MemberChange {
  member: RosterMember;
  created: boolean;
  key: KeyMetadata | null;
}

/**
 * Adds or updates a roster member, with their public key when given
 * (validated first; nothing changes if it is refused). That key holds in this
 * incident only: the roster is the commander's to vouch for, other incidents
 * and the relay-wide key are not.
 */
export async function putMember(
  ctx: RelayContext,
  caller: Caller,
  incident: Incident,
  input: MemberInput & { publicKey?: string | undefined },
): Promise<MemberChange> {
  return changeMember(ctx, caller, incident, input.email, () => input, input.publicKey);
}

/**
 * Changes only the given fields of an active member (issue 12 §6): a
 * `publicKey` is checked as for PUT; `publicKey: null` withdraws their key in
 * this incident; `phone: null` / `slackUserId: null` remove those.
 */
export async function patchMember(ctx: RelayContext, caller: Caller, incident: Incident, email: string, patch: MemberPatch): Promise<MemberChange> {
  const merge = (current: RosterMember | undefined): MemberInput => {
    if (current === undefined || current.status !== 'active') {
      throw new RelayError('not_found', `${email} is not an active member of this roster; add them with PUT /v1/incidents/${incident.codename}/roster/${email}.`);
    }
    return {
      email,
      name: patch.name ?? current.name,
      role: patch.role ?? current.role,
      phone: patch.phone !== undefined ? patch.phone : current.phone,
      slackUserId: patch.slackUserId !== undefined ? patch.slackUserId : current.slackUserId,
    };
  };
  // Fail before any key work when there is nobody to patch.
  merge(await ctx.store.incidents.member(incident.id, email));
  return changeMember(ctx, caller, incident, email, merge, patch.publicKey);
}

/**
 * The one roster write: permission (checked again in the transaction: the
 * caller may have been demoted while a key was being validated), the entry
 * built from the current one inside that transaction (so a PATCH never writes
 * back a stale field), the key filed or withdrawn, all audited there.
 *
 * A revocation certificate given as publicKey is applied on its own first:
 * it is signed by the key it revokes, so it stands whoever delivers it, and
 * it revokes every stored copy of that key (KeyService.revoke).
 */
async function changeMember(
  ctx: RelayContext,
  caller: Caller,
  incident: Incident,
  email: string,
  build: (current: RosterMember | undefined) => MemberInput,
  publicKey: string | null | undefined,
): Promise<MemberChange> {
  await ctx.store.transaction(async (tx) => {
    const current = await tx.incidents.member(incident.id, email);
    const role = build(current).role;
    await assertMayChange(tx, caller, incident, email, role);
    assertSecurityTeamKept(caller, current, email, role, ctx.config.securityTeam);
  });
  const revoked = typeof publicKey === 'string' ? await ctx.keys.revoke(email, publicKey, caller.email, incident.id) : undefined;
  const parsedKey = typeof publicKey === 'string' && revoked === undefined ? await ctx.keys.validate(email, publicKey) : undefined;
  const result = await ctx.store.transaction(async (tx) => {
    const current = await tx.incidents.member(incident.id, email);
    const input = build(current);
    await assertMayChange(tx, caller, incident, email, input.role);
    assertSecurityTeamKept(caller, current, email, input.role, ctx.config.securityTeam);
    const { member, created } = await tx.incidents.upsertMember(incident.id, input, ctx.now());
    await tx.audit.append({
      type: created ? 'roster.added' : 'roster.updated',
      actor: caller.email,
      incidentId: incident.id,
      outcome: 'ok',
      data: { email: member.email, role: member.role, phone: member.phone !== null, slackUserId: member.slackUserId },
    });
    const key = parsedKey ? await ctx.keys.file(tx, email, parsedKey, 'roster', caller.email, incident.id) : null;
    if (publicKey === null) await ctx.keys.withdrawIn(tx, email, incident.id, caller.email);
    return { member, created, key };
  });
  if (publicKey === null) ctx.keys.forget(email, incident.id);
  await ctx.events.rosterChanged(incident, result.member);
  return { ...result, key: result.key ?? (await ctx.keys.get(email, incident.id)) ?? null };
}

/** Withdraws a member's key in this incident (commander, deputy or admin); the relay-wide key, if any, holds again. */
export async function withdrawMemberKey(ctx: RelayContext, caller: Caller, incident: Incident, email: string): Promise<void> {
  const withdrawn = await ctx.store.transaction(async (tx) => {
    await assertMayChange(tx, caller, incident, email);
    return ctx.keys.withdrawIn(tx, email, incident.id, caller.email);
  });
  if (!withdrawn) throw new RelayError('not_found', `No key of ${email} was filed with this roster; a relay-wide key is withdrawn by its owner or an admin (DELETE /v1/keys/${email}).`);
  ctx.keys.forget(email, incident.id);
}

/**
 * Marks a member removed (history stays) and, in the same transaction,
 * cancels every queued delivery they would receive or had sent: the stolen
 * laptop, the suspected insider get nothing more once off the roster, even if
 * the upstream was down when it was queued. Each cancellation is audited.
 * not_found when they are not an active member.
 */
export async function removeMember(ctx: RelayContext, caller: Caller, incident: Incident, email: string): Promise<Cancellation[]> {
  const cancelled = await ctx.store.transaction(async (tx) => {
    await assertMayChange(tx, caller, incident, email);
    assertSecurityTeamKept(caller, await tx.incidents.member(incident.id, email), email, 'removed', ctx.config.securityTeam);
    if (!(await tx.incidents.removeMember(incident.id, email, ctx.now()))) return undefined;
    const done = await tx.outbox.cancelForMember(incident.id, email, `cancelled: ${email} left the roster before it was sent`, randomUUID);
    await tx.audit.append({ type: 'roster.removed', actor: caller.email, incidentId: incident.id, outcome: 'ok', data: { email, cancelledDeliveries: done.length } });
    for (const c of done) await tx.audit.append(cancellationEvent(c, caller.email, incident.id, 'removed_from_roster'));
    return done;
  });
  if (!cancelled) throw new RelayError('not_found', `${email} is not an active member of this roster.`);
  await ctx.events.rosterChanged(incident, (await ctx.store.incidents.member(incident.id, email))!);
  return cancelled;
}

/** The audit event of one cancelled delivery (addresses and ids only). */
export function cancellationEvent(c: Cancellation, actor: string | null, incidentId: string, reason: string): AuditInput {
  return {
    type: `${c.channel}.delivery_cancelled`,
    actor,
    incidentId,
    outcome: 'ok',
    data: {
      deliveryId: c.deliveryId,
      ...(c.emailId ? { emailId: c.emailId } : {}),
      ...(c.smsId ? { smsId: c.smsId } : {}),
      recipients: c.recipients,
      ...(c.cancelledDeliveryId ? { cancelledDeliveryId: c.cancelledDeliveryId } : {}),
      reason,
    },
  };
}

/** The incidents a caller may see: an admin every one, anyone else those whose active roster holds them; optionally only open or closed ones. Newest first. */
export async function visibleIncidents(ctx: Pick<RelayContext, 'store'>, caller: Caller, status?: IncidentStatus): Promise<Incident[]> {
  const incidents = await ctx.store.incidents.list(caller.role === 'admin' ? undefined : caller.email, status);
  return incidents.filter((i) => inScope(caller, i.id));
}
