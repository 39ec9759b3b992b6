import { pino } from 'pino';
import { afterEach, describe, expect, it } from 'vitest';
import { ensureBootstrapAdmin } from '../../src/services/bootstrap.js';
import { openStore, type Store } from '../../src/store/index.js';
import { freshDatabaseUrl } from '../helpers/postgres.js';
import { BACKENDS, openTestStore } from '../helpers/relay.js';

const logger = pino({ level: 'silent' });
const now = new Date('2026-11-22T10:00:00Z');
const ENV_TOKEN = 'env-admin-token-0123456789abcdef';

async function tokenEvents(store: Store): Promise<unknown[]> {
  return (await store.sql.all<{ data: string }>("SELECT data FROM audit_events WHERE type = 'token.created' ORDER BY seq")).map((r) => JSON.parse(r.data));
}

const opened: Store[] = [];
async function open(backend: (typeof BACKENDS)[number]): Promise<Store> {
  const store = await openTestStore(backend, () => now);
  opened.push(store);
  return store;
}
afterEach(async () => {
  await Promise.all(opened.splice(0).map((s) => s.close()));
});

describe.each(BACKENDS)('ensureBootstrapAdmin (%s)', (backend) => {
  it('generates one token on the first start only, audited, hash kept', async () => {
    const store = await open(backend);
    const token = await ensureBootstrapAdmin(store, { adminToken: undefined, adminEmail: 'admin@corp.example', now, logger });
    expect(token).toMatch(/^ir_/);
    expect(await store.tokens.verify(token!)).toMatchObject({ role: 'admin', email: 'admin@corp.example' });
    expect(await ensureBootstrapAdmin(store, { adminToken: undefined, adminEmail: 'admin@corp.example', now, logger })).toBeUndefined();
    expect(await tokenEvents(store)).toEqual([expect.objectContaining({ bootstrap: 'generated' })]);
    expect(JSON.stringify(await store.sql.all('SELECT * FROM tokens'))).not.toContain(token!);
  });

  it('keeps RELAY_ADMIN_TOKEN revoked across restarts, and a new value replaces it', async () => {
    const store = await open(backend);
    await ensureBootstrapAdmin(store, { adminToken: ENV_TOKEN, adminEmail: 'admin@corp.example', now, logger });
    expect((await store.tokens.verify(ENV_TOKEN))?.role).toBe('admin');
    expect(await store.tokens.revoke('admin', now)).toBe(true);
    // Restart with the same value: still revoked.
    await ensureBootstrapAdmin(store, { adminToken: ENV_TOKEN, adminEmail: 'admin@corp.example', now, logger });
    expect(await store.tokens.verify(ENV_TOKEN)).toBeUndefined();
    // A new value is a new token; the old one stays dead.
    const next = `${ENV_TOKEN}-rotated`;
    await ensureBootstrapAdmin(store, { adminToken: next, adminEmail: 'admin@corp.example', now, logger });
    expect((await store.tokens.verify(next))?.role).toBe('admin');
    expect(await store.tokens.verify(ENV_TOKEN)).toBeUndefined();
    expect(await tokenEvents(store)).toEqual([expect.objectContaining({ bootstrap: 'RELAY_ADMIN_TOKEN', replaced: false }), expect.objectContaining({ bootstrap: 'RELAY_ADMIN_TOKEN', replaced: true })]);
    // Unsetting the variable later does not mint a second bootstrap token.
    expect(await ensureBootstrapAdmin(store, { adminToken: undefined, adminEmail: 'admin@corp.example', now, logger })).toBeUndefined();
  });
});

describe('ensureBootstrapAdmin with several relays on one PostgreSQL database', () => {
  it('two relays starting at once for the first time mint one bootstrap token between them', async () => {
    const url = await freshDatabaseUrl();
    const a = await openStore({ url }, { now: () => now });
    opened.push(a);
    const b = await openStore({ url }, { now: () => now });
    opened.push(b);
    const tokens = await Promise.all([a, b].map((store) => ensureBootstrapAdmin(store, { adminToken: undefined, adminEmail: 'admin@corp.example', now, logger })));
    expect(tokens.filter((t) => t !== undefined)).toHaveLength(1);
    expect(await a.sql.all("SELECT id FROM tokens WHERE role = 'admin'")).toHaveLength(1);
    expect(await tokenEvents(a)).toEqual([expect.objectContaining({ bootstrap: 'generated' })]);
  });

  it('two relays starting at once with the same RELAY_ADMIN_TOKEN both start, and file it once', async () => {
    const url = await freshDatabaseUrl();
    const a = await openStore({ url }, { now: () => now });
    opened.push(a);
    const b = await openStore({ url }, { now: () => now });
    opened.push(b);
    const started = await Promise.allSettled([a, b].map((store) => ensureBootstrapAdmin(store, { adminToken: ENV_TOKEN, adminEmail: 'admin@corp.example', now, logger })));
    expect(started.map((r) => r.status)).toEqual(['fulfilled', 'fulfilled']);
    expect((await a.tokens.verify(ENV_TOKEN))?.role).toBe('admin');
    expect(await a.sql.all("SELECT id FROM tokens WHERE role = 'admin'")).toHaveLength(1);
    expect(await tokenEvents(a)).toEqual([expect.objectContaining({ bootstrap: 'RELAY_ADMIN_TOKEN', replaced: false })]);
  });
});
