/**
 * Who may do what with a key through /v1/keys (issue 12 §7, issue 10 §7),
 * and refusals that name something the caller can actually do.
 *
 * A relay-wide key comes from its owner or an admin. A commander or deputy
 * vouches for keys in their own incident only, through the roster entry. A
 * revocation is different: it is signed by the key it revokes, so it proves
 * itself, and the owner, an admin or the commander of an incident with that
 * member may hand it in here.
 */
import type { RelayContext } from '../context.js';
import { RelayError } from '../errors.js';
import type { Incident } from '../store/incidents.js';
import { ROSTER_MANAGERS, assertUnscoped, authorizeIncident, inScope, type Caller } from './incidents.js';
import type { KeyMetadata, KeyView, RevocationApplied } from './keys.js';

/** The incidents where `caller` manages the roster (commander or deputy) and `email` is an active member. */
async function incidentsManagingFor(ctx: Pick<RelayContext, 'store'>, caller: Caller, email: string, roles: readonly string[] = ROSTER_MANAGERS): Promise<Incident[]> {
  const found: Incident[] = [];
  for (const incident of await ctx.store.incidents.list(caller.email)) {
    if (!inScope(caller, incident.id)) continue;
    const role = (await ctx.store.incidents.activeMember(incident.id, caller.email))?.role;
    if (role !== undefined && roles.includes(role) && (await ctx.store.incidents.activeMember(incident.id, email))) found.push(incident);
  }
  return found;
}

/** The refusal for someone who may not file `email`'s relay-wide key, with what they can do instead. */
async function notYourKey(ctx: Pick<RelayContext, 'store'>, caller: Caller, email: string, what: string): Promise<RelayError> {
  const managed = await incidentsManagingFor(ctx, caller, email);
  const hint =
    managed.length > 0
      ? `to give a key that holds in your incident, re-add the member with publicKey: PUT /v1/incidents/${managed[0]!.codename}/roster/${email}`
      : `ask the commander of the incident ${email} is on to add their key with the roster entry, or ask ${email} to upload it`;
  return new RelayError('forbidden', `Only ${email} (with their own token) or an admin may ${what} the relay-wide key of this address; ${hint}.`);
}

/**
 * PUT /v1/keys/:email: a revocation of a key on file (owner, admin, or the
 * commander of an incident with that member), or a new relay-wide key (owner
 * or admin), validated before it is stored.
 */
export async function putKey(ctx: Pick<RelayContext, 'store' | 'keys'>, caller: Caller, email: string, armored: string): Promise<KeyMetadata | RevocationApplied> {
  const owner = caller.role === 'admin' || caller.email === email;
  if (!owner && (await incidentsManagingFor(ctx, caller, email, ['commander'])).length === 0) throw await notYourKey(ctx, caller, email, 'file or revoke');
  const revoked = await ctx.keys.revoke(email, armored, caller.email);
  if (revoked) return revoked;
  if (!owner) throw await notYourKey(ctx, caller, email, 'file');
  // Whoever issued a scoped token (a commander) could otherwise swap this address's key for every incident.
  assertUnscoped(caller, 'file a relay-wide key', 'ask the commander to give your key with your roster entry (PUT /v1/incidents/<codename>/roster/<email> with publicKey), where it holds in that incident, or an admin for a token of your own');
  return ctx.keys.put(email, armored, 'api', caller.email);
}

/** GET /v1/keys/:email[?incident=]: the key mail to that address would use (in that incident, which the caller must see). */
export async function showKey(ctx: Pick<RelayContext, 'store' | 'keys'>, caller: Caller, email: string, codename: string | undefined): Promise<KeyView> {
  const incident = codename === undefined ? undefined : (await authorizeIncident(ctx, caller, codename)).incident;
  const view = await ctx.keys.view(email, incident?.id ?? null);
  if (view) return view;
  throw new RelayError(
    'not_found',
    incident
      ? `No public key on file for ${email} in ${incident.codename} (neither with the roster entry nor relay-wide).`
      : `No public key on file for ${email} relay-wide; add ?incident=<codename> to see the key a roster entry gave.`,
  );
}

/** DELETE /v1/keys/:email: withdraws the relay-wide key (owner or admin). A commander withdraws a roster key instead. */
export async function withdrawKey(ctx: Pick<RelayContext, 'store' | 'keys'>, caller: Caller, email: string): Promise<void> {
  if (caller.role !== 'admin' && caller.email !== email) {
    const managed = await incidentsManagingFor(ctx, caller, email);
    if (managed.length > 0) {
      throw new RelayError('forbidden', `Only ${email} or an admin may withdraw the relay-wide key; to withdraw the key given with the roster entry: DELETE /v1/incidents/${managed[0]!.codename}/roster/${email}/key.`);
    }
    throw await notYourKey(ctx, caller, email, 'withdraw');
  }
  assertUnscoped(caller, 'withdraw a relay-wide key');
  if (!(await ctx.keys.withdraw(email, null, caller.email))) {
    throw new RelayError('not_found', `No relay-wide key on file for ${email}; a key given with a roster entry is withdrawn with DELETE /v1/incidents/<codename>/roster/${email}/key.`);
  }
}
