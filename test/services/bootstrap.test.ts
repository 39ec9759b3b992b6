import { pino } from 'pino';
import { describe, expect, it } from 'vitest';
import { ensureBootstrapAdmin } from '../../src/services/bootstrap.js';
import { createStore } from '../../src/store/index.js';

const logger = pino({ level: 'silent' });
const now = new Date('2026-11-22T10:00:00Z');
const ENV_TOKEN = 'env-admin-token-0123456789abcdef';

function tokenEvents(store: ReturnType<typeof createStore>): unknown[] {
  return store.db.prepare("SELECT data FROM audit_events WHERE type = 'token.created'").all().map((r) => JSON.parse((r as { data: string }).data));
}

describe('ensureBootstrapAdmin', () => {
  it('generates one token on the first start only, audited, hash kept', () => {
    const store = createStore(':memory:', () => now);
    const token = ensureBootstrapAdmin(store, { adminToken: undefined, adminEmail: 'admin@corp.example', now, logger });
    expect(token).toMatch(/^ir_/);
    expect(store.tokens.verify(token!)).toMatchObject({ role: 'admin', email: 'admin@corp.example' });
    expect(ensureBootstrapAdmin(store, { adminToken: undefined, adminEmail: 'admin@corp.example', now, logger })).toBeUndefined();
    expect(tokenEvents(store)).toEqual([expect.objectContaining({ bootstrap: 'generated' })]);
    expect(JSON.stringify(store.db.prepare('SELECT * FROM tokens').all())).not.toContain(token!);
  });

  it('keeps RELAY_ADMIN_TOKEN revoked across restarts, and a new value replaces it', () => {
    const store = createStore(':memory:', () => now);
    ensureBootstrapAdmin(store, { adminToken: ENV_TOKEN, adminEmail: 'admin@corp.example', now, logger });
    expect(store.tokens.verify(ENV_TOKEN)?.role).toBe('admin');
    store.tokens.revoke('admin', now);
    // Restart with the same value: still revoked.
    ensureBootstrapAdmin(store, { adminToken: ENV_TOKEN, adminEmail: 'admin@corp.example', now, logger });
    expect(store.tokens.verify(ENV_TOKEN)).toBeUndefined();
    // A new value is a new token; the old one stays dead.
    const next = `${ENV_TOKEN}-rotated`;
    ensureBootstrapAdmin(store, { adminToken: next, adminEmail: 'admin@corp.example', now, logger });
    expect(store.tokens.verify(next)?.role).toBe('admin');
    expect(store.tokens.verify(ENV_TOKEN)).toBeUndefined();
    expect(tokenEvents(store)).toEqual([expect.objectContaining({ bootstrap: 'RELAY_ADMIN_TOKEN', replaced: false }), expect.objectContaining({ bootstrap: 'RELAY_ADMIN_TOKEN', replaced: true })]);
    // Unsetting the variable later does not mint a second bootstrap token.
    expect(ensureBootstrapAdmin(store, { adminToken: undefined, adminEmail: 'admin@corp.example', now, logger })).toBeUndefined();
  });
});
