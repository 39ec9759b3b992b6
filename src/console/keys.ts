/**
 * The key standing of roster members as the console shows it: usable,
 * expired, revoked, unusable (another reason) or missing, computed by the
 * same KeyService.keyStates the pipeline checks at every send, at the
 * relay's clock now.
 *
 * TODO(api-routes, second pass): KeyService.view (issue 12 §7) gives the
 * same status with the key's scope; use it and drop this mapping.
 */
import type { KeyService } from '../services/keys.js';
import type { KeyInfo } from './views/incident.js';

/** Each address's key in the incident, in the order given. */
export async function keyInfos(
  keys: Pick<KeyService, 'keyStates' | 'get'>,
  emails: readonly string[],
  incidentId: string,
  at: Date,
  isInternal: (address: string) => boolean,
): Promise<Map<string, KeyInfo>> {
  const states = await keys.keyStates(emails, at, incidentId);
  const infos = new Map<string, KeyInfo>();
  for (const email of emails) {
    const external = !isInternal(email);
    const state = states.get(email) ?? { state: 'missing' as const };
    const meta = state.state === 'missing' ? undefined : await keys.get(email, incidentId);
    if (state.state === 'missing' || !meta) {
      infos.set(email, { status: 'missing', external });
      continue;
    }
    const base = { fingerprint: meta.fingerprint, expiresAt: meta.expiresAt, external };
    if (state.state === 'usable') infos.set(email, { status: 'usable', ...base });
    else if (state.reason === 'expired' || state.reason === 'revoked') infos.set(email, { status: state.reason, ...base });
    else infos.set(email, { status: 'unusable', reason: state.reason, ...base });
  }
  return infos;
}
