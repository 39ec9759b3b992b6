/**
 * The first admin token: RELAY_ADMIN_TOKEN when set, else one generated on
 * the first start and shown once. Only hashes are kept, and a revocation
 * survives restarts.
 */
import type { Logger } from 'pino';
import type { Store } from '../store/index.js';
import { BOOTSTRAP_TOKEN_ID } from '../store/tokens.js';

const GENERATED_SETTING = 'bootstrap_admin_token_issued';
// The settings row whose lock serialises ensureBootstrapAdmin across relays.
const BOOTSTRAP_LOCK = 'bootstrap_admin_lock';

/** Ensures a bootstrap admin exists; returns the token only when this call generated it. */
export async function ensureBootstrapAdmin(store: Store, options: { adminToken: string | undefined; adminEmail: string; now: Date; logger: Logger }): Promise<string | undefined> {
  const { adminToken, adminEmail, now, logger } = options;
  return store.transaction(async (tx) => {
    // Relays starting at once on one PostgreSQL database take turns here: the
    // upsert locks the row until this transaction ends, so the next relay
    // waits, then sees the token this one filed (instead of minting a second
    // one, or failing on the bootstrap token's id). SQLite has one writer anyway.
    await tx.settings.put(BOOTSTRAP_LOCK, 'held');
    if (adminToken) {
      const outcome = await tx.tokens.setBootstrap(adminToken, adminEmail, now);
      if (outcome === 'revoked') logger.warn('RELAY_ADMIN_TOKEN was revoked and stays revoked; set a new value to get an admin token back');
      if (outcome === 'created' || outcome === 'replaced') {
        await tx.audit.append({ type: 'token.created', actor: null, outcome: 'ok', data: { id: BOOTSTRAP_TOKEN_ID, email: adminEmail, role: 'admin', bootstrap: 'RELAY_ADMIN_TOKEN', replaced: outcome === 'replaced' } });
      }
      return undefined;
    }
    // Generate once per store: not again after a restart, nor after RELAY_ADMIN_TOKEN was used and then unset.
    const issued = (await tx.settings.get(GENERATED_SETTING)) !== undefined || (await tx.tokens.get(BOOTSTRAP_TOKEN_ID)) !== undefined;
    if (issued) return undefined;
    const { record, token } = await tx.tokens.create({ email: adminEmail, role: 'admin', label: 'bootstrap', at: now });
    await tx.settings.put(GENERATED_SETTING, record.id);
    await tx.audit.append({ type: 'token.created', actor: null, outcome: 'ok', data: { id: record.id, email: adminEmail, role: 'admin', bootstrap: 'generated' } });
    return token;
  });
}
