/**
 * The key standing of roster members as the console shows it: the same
 * KeyService.view that GET /v1/keys/:email?incident= and the roster API
 * answer with (the key mail would use, its scope, usable / expired /
 * revoked / unusable with the reason), plus `missing` when there is none
 * and whether the address is outside the company (where a missing key
 * refuses mail).
 */
import type { KeyService, KeyView } from '../services/keys.js';
import type { KeyInfo } from './views/incident.js';

/** The console's KeyInfo for a view (undefined: no key on file). */
export function keyInfoOf(view: KeyView | undefined, external: boolean): KeyInfo {
  if (view === undefined) return { status: 'missing', external };
  return { status: view.status, scope: view.scope, fingerprint: view.fingerprint, expiresAt: view.expiresAt, reason: view.status === 'unusable' ? view.reason : undefined, external };
}

/** Each address's key in the incident, by KeyService.view at the relay's clock now. */
export async function keyInfos(keys: Pick<KeyService, 'view'>, emails: readonly string[], incidentId: string, isInternal: (address: string) => boolean): Promise<Map<string, KeyInfo>> {
  const infos = new Map<string, KeyInfo>();
  for (const email of emails) infos.set(email, keyInfoOf(await keys.view(email, incidentId), !isInternal(email)));
  return infos;
}
