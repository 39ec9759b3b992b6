/**
 * Incidents and rosters: who may see, change and send for an incident. Every
 * change is audited in the same transaction that makes it.
 */
import { randomUUID } from 'node:crypto';
import { generateCodename, isListedCodename, isValidCodename } from '../codename/generate.js';
import type { RelayContext } from '../context.js';
import { RelayError, invalid } from '../errors.js';
import type { Incident, MemberInput, RosterMember, RosterRole } from '../store/incidents.js';
import type { TokenRole } from '../store/tokens.js';
import type { KeyMetadata } from './keys.js';

/** The authenticated caller, from the token. */
export interface Caller {
  tokenId: string;
  email: string;
  role: TokenRole;
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
export function authorizeIncident(ctx: RelayContext, caller: Caller, codename: string, allowed: readonly RosterRole[] | 'roster' = 'roster'): IncidentAccess {
  const incident = isValidCodename(codename) ? ctx.store.incidents.byCodename(codename) : undefined;
  const member = incident ? ctx.store.incidents.activeMember(incident.id, caller.email) : undefined;
  if (!incident || (!member && caller.role !== 'admin')) {
    throw new RelayError('not_found', `No incident "${codename.slice(0, 80)}" that you are on the roster of.`);
  }
  if (caller.role !== 'admin' && allowed !== 'roster' && !allowed.includes(member!.role)) {
    throw new RelayError('forbidden', `Your roster role (${member!.role}) may not do this; it needs one of: ${allowed.join(', ')}, or an admin.`);
  }
  return { incident, member };
}

/** The commander's address, for the incident view. */
export function commanderOf(ctx: RelayContext, incident: Incident): string | null {
  return ctx.store.incidents.roster(incident.id).find((m) => m.role === 'commander')?.email ?? null;
}

/** Declares an incident: codename (chosen or generated), commander on the roster. */
export function createIncident(ctx: RelayContext, caller: Caller, input: { commander?: string; codename?: string }): Incident {
  if (caller.role === 'admin' && input.commander === undefined) {
    throw invalid('An admin must name the commander: {"commander": "ic@corp.example"}.');
  }
  const commander = input.commander ?? caller.email;
  const at = ctx.now();
  const incident = ctx.store.transaction(() => {
    let codename = input.codename;
    if (codename !== undefined) {
      if (!isListedCodename(codename)) {
        throw invalid('Codenames are built from the relay\'s word lists, e.g. sapphire-unicorn or amber-otter-2, so they say nothing about the incident; leave it out to get one.', { field: 'codename' });
      }
      if (ctx.store.incidents.codenameTaken(codename)) throw invalid(`The codename "${codename}" is taken; choose another or leave it out to get one.`, { field: 'codename' });
    } else {
      codename = generateCodename((c) => ctx.store.incidents.codenameTaken(c));
    }
    const created = ctx.store.incidents.create({ id: randomUUID(), codename, createdBy: caller.email, at });
    ctx.store.incidents.upsertMember(created.id, { email: commander, name: commander.split('@')[0]!, role: 'commander' }, at);
    ctx.store.audit.append({ type: 'incident.created', actor: caller.email, incidentId: created.id, outcome: 'ok', data: { codename, commander } });
    return created;
  });
  ctx.events.incidentCreated(incident);
  return incident;
}

/** Closes an open incident; closing a closed one is a no-op. */
export function closeIncident(ctx: RelayContext, caller: Caller, incident: Incident): Incident {
  const changed = ctx.store.transaction(() => {
    const closed = ctx.store.incidents.close(incident.id, ctx.now());
    if (closed) ctx.store.audit.append({ type: 'incident.closed', actor: caller.email, incidentId: incident.id, outcome: 'ok', data: { codename: incident.codename } });
    return closed;
  });
  const after = ctx.store.incidents.byId(incident.id)!;
  if (changed) ctx.events.incidentClosed(after);
  return after;
}

/**
 * Roster changes need a commander, a deputy or an admin; and only a
 * commander or an admin hands out the commander role or touches a
 * commander's entry: a deputy manages the roster, but must not be able to
 * demote the commander and take over the incident.
 */
function assertMayChange(ctx: RelayContext, caller: Caller, incident: Incident, email: string, newRole?: RosterRole): void {
  if (caller.role === 'admin') return;
  const callerRole = ctx.store.incidents.activeMember(incident.id, caller.email)?.role;
  // Checked again here, not only by the route: the caller may have been
  // demoted or removed while their key upload was being validated.
  if (callerRole === undefined || !ROSTER_MANAGERS.includes(callerRole)) {
    throw new RelayError('forbidden', 'Only a commander, a deputy or an admin may change the roster.');
  }
  if (callerRole === 'commander') return;
  const target = ctx.store.incidents.activeMember(incident.id, email);
  if (newRole === 'commander' || target?.role === 'commander') {
    throw new RelayError('forbidden', 'Only a commander or an admin may name a commander or change a commander\'s roster entry.');
  }
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
): Promise<{ member: RosterMember; created: boolean; key: KeyMetadata | null }> {
  assertMayChange(ctx, caller, incident, input.email, input.role);
  const parsedKey = input.publicKey === undefined ? undefined : await ctx.keys.validate(input.email, input.publicKey);
  const result = ctx.store.transaction(() => {
    // Again inside the transaction: the roster may have changed while the key was checked.
    assertMayChange(ctx, caller, incident, input.email, input.role);
    const { member, created } = ctx.store.incidents.upsertMember(incident.id, input, ctx.now());
    ctx.store.audit.append({
      type: created ? 'roster.added' : 'roster.updated',
      actor: caller.email,
      incidentId: incident.id,
      outcome: 'ok',
      data: { email: member.email, role: member.role, phone: member.phone !== null, slackUserId: member.slackUserId },
    });
    const key = parsedKey ? ctx.keys.file(input.email, parsedKey, 'roster', caller.email, incident.id) : (ctx.keys.get(input.email, incident.id) ?? null);
    return { member, created, key };
  });
  ctx.events.rosterChanged(incident, result.member);
  return result;
}

/** Marks a member removed (history stays); not_found when they are not an active member. */
export function removeMember(ctx: RelayContext, caller: Caller, incident: Incident, email: string): void {
  const removed = ctx.store.transaction(() => {
    assertMayChange(ctx, caller, incident, email);
    if (!ctx.store.incidents.removeMember(incident.id, email, ctx.now())) return false;
    ctx.store.audit.append({ type: 'roster.removed', actor: caller.email, incidentId: incident.id, outcome: 'ok', data: { email } });
    return true;
  });
  if (!removed) throw new RelayError('not_found', `${email} is not an active member of this roster.`);
  ctx.events.rosterChanged(incident, ctx.store.incidents.member(incident.id, email)!);
}
