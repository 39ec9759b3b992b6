/**
 * Access tokens (issue 12 §3): who may issue, list and revoke them, and when
 * each was last used. A token's secret is shown once, at issue; nothing here
 * ever returns it again.
 */
import type { RelayContext } from '../context.js';
import { RelayError } from '../errors.js';
import type { Repositories, Store } from '../store/index.js';
import type { TokenRecord, TokenRole } from '../store/tokens.js';
import { authorizeIncident, type Caller } from './incidents.js';

/**
 * last_used_at is kept to the minute: a busy token is written at most once
 * a minute (and this process does not even ask the database more often), not
 * on every request, so using a token costs no write on the request path.
 */
export const TOKEN_USE_RESOLUTION_MS = 60_000;

/** A token as GET /v1/tokens shows it: metadata, never the secret or its hash (the store holds only these fields and the hash). */
export type TokenView = Pick<TokenRecord, 'id' | 'email' | 'role' | 'label' | 'createdAt' | 'createdBy' | 'lastUsedAt' | 'revokedAt'> & {
  /** The codename of the incident the token is held to, or null for a relay-wide token. */
  incident: string | null;
};

/** The view of a token record; `incident`: the codename of the incident it is held to. */
export function tokenView(record: TokenRecord, incident: string | null): TokenView {
  return {
    id: record.id,
    email: record.email,
    role: record.role,
    label: record.label,
    createdAt: record.createdAt,
    createdBy: record.createdBy,
    lastUsedAt: record.lastUsedAt,
    revokedAt: record.revokedAt,
    incident,
  };
}

/** The caller a verified token makes: its address, role and incident scope. The one place a Caller is built. */
export function callerFromToken(record: TokenRecord): Caller {
  return { tokenId: record.id, email: record.email.toLowerCase(), role: record.role, incidentScope: record.incidentId };
}

// When this process last recorded each token's use (ms), per store: the
// database condition alone would still cost a statement per request.
const recorded = new WeakMap<object, Map<string, number>>();

/**
 * Notes that token `id` was used at `now`: at most one write a minute per
 * token (TOKEN_USE_RESOLUTION_MS). Never fails the request: last use is
 * bookkeeping, and a store that cannot write must not turn into a 500 here;
 * `onError` hears about it (the HTTP listener logs it).
 */
export async function recordTokenUse(store: Pick<Store, 'tokens'>, id: string, now: Date, onError?: (err: unknown) => void): Promise<void> {
  let seen = recorded.get(store);
  if (seen === undefined) recorded.set(store, (seen = new Map()));
  const last = seen.get(id);
  if (last !== undefined && now.getTime() - last < TOKEN_USE_RESOLUTION_MS) return;
  seen.set(id, now.getTime());
  try {
    await store.tokens.markUsed(id, now, TOKEN_USE_RESOLUTION_MS);
  } catch (err) {
    seen.delete(id);
    onError?.(err);
  }
}

/** What POST /v1/tokens asks for. */
export interface TokenRequest {
  email: string;
  role: TokenRole;
  label?: string | undefined;
  /** A codename: the token is for a member of this incident's roster, issued by its commander (or an admin). */
  incident?: string | undefined;
}

/**
 * Issues a token. Admins issue any. A responder may issue one only with
 * `incident`: as that incident's commander, a `responder` token for an active
 * member of its roster (so the commander can bring counsel in without an
 * admin), audited with the incident. Everything else is refused before
 * anything is created.
 */
export async function issueToken(ctx: Pick<RelayContext, 'store' | 'now'>, caller: Caller, request: TokenRequest): Promise<{ record: TokenRecord; token: string }> {
  let incidentId: string | null = null;
  if (request.incident !== undefined) {
    const { incident, member } = await authorizeIncident(ctx, caller, request.incident);
    if (caller.role !== 'admin' && member?.role !== 'commander') {
      throw new RelayError('forbidden', `Only ${incident.codename}'s commander (or an admin) issues tokens for its roster; ask them.`);
    }
    if (request.role !== 'responder') {
      throw new RelayError('forbidden', 'A token issued for an incident\'s roster is a responder token; only an admin issues admin tokens, without "incident".');
    }
    incidentId = incident.id;
  } else if (caller.role !== 'admin') {
    throw new RelayError('forbidden', 'Only an admin issues tokens; an incident\'s commander issues responder tokens for its roster with "incident": "<codename>".');
  }
  return ctx.store.transaction(async (tx) => {
    // In the transaction: the member may have left the roster, or the commander been replaced, a moment ago.
    if (incidentId !== null) await assertMayIssueFor(tx, caller, incidentId, request.email);
    const created = await tx.tokens.create({ email: request.email, role: request.role, label: request.label ?? null, createdBy: caller.email, incidentId, at: ctx.now() });
    await tx.audit.append({
      type: 'token.created',
      actor: caller.email,
      incidentId,
      outcome: 'ok',
      data: { id: created.record.id, email: request.email, role: request.role, ...(incidentId !== null ? { forRoster: true } : {}) },
    });
    return created;
  });
}

async function assertMayIssueFor(tx: Repositories, caller: Caller, incidentId: string, email: string): Promise<void> {
  if (caller.role !== 'admin' && (await tx.incidents.activeMember(incidentId, caller.email))?.role !== 'commander') {
    throw new RelayError('forbidden', 'You are no longer this incident\'s commander; nothing was issued.');
  }
  if (!(await tx.incidents.activeMember(incidentId, email))) {
    throw new RelayError('forbidden', `${email} is not an active member of this incident's roster: add them first (PUT /v1/incidents/<codename>/roster/${email}), then issue their token.`, {
      details: { email },
    });
  }
}

/**
 * Whether `caller` may see and revoke `record`: an admin any token, a
 * responder their own, and a token issued for one incident only itself (its
 * holder's other tokens are not its business: the commander who issued it
 * could otherwise list and revoke them, an admin's included).
 */
function mayManage(caller: Caller, record: TokenRecord): boolean {
  if (caller.incidentScope !== null) return record.id === caller.tokenId;
  return caller.role === 'admin' || record.email === caller.email;
}

/** GET /v1/tokens: every token for an admin, a responder's own otherwise, only itself for a token held to an incident. */
export async function listTokens(ctx: Pick<RelayContext, 'store'>, caller: Caller): Promise<TokenView[]> {
  const records = (await ctx.store.tokens.list(caller.role === 'admin' ? undefined : caller.email)).filter((record) => mayManage(caller, record));
  const codenames = new Map<string, string>();
  for (const id of new Set(records.map((record) => record.incidentId))) {
    const incident = id === null ? undefined : await ctx.store.incidents.byId(id);
    if (incident) codenames.set(incident.id, incident.codename);
  }
  return records.map((record) => tokenView(record, record.incidentId === null ? null : (codenames.get(record.incidentId) ?? null)));
}

/** DELETE /v1/tokens/:id: an admin revokes any token, a responder their own. Audited. */
export async function revokeToken(ctx: Pick<RelayContext, 'store' | 'now'>, caller: Caller, id: string): Promise<void> {
  const revoked = await ctx.store.transaction(async (tx) => {
    const record = await tx.tokens.get(id);
    // Someone else's token is answered like an unknown one: ids are not a way to learn who has tokens.
    if (!record || !mayManage(caller, record)) return false;
    const done = await tx.tokens.revoke(id, ctx.now());
    if (done) await tx.audit.append({ type: 'token.revoked', actor: caller.email, outcome: 'ok', data: { id, email: record.email } });
    return done;
  });
  if (!revoked) throw new RelayError('not_found', `No live token with id ${id.slice(0, 40)} that you may revoke (your own, any for an admin, only itself for a token issued for one incident).`);
}
