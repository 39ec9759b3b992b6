/**
 * Schema migrations on both backends: a fresh database reaches the newest
 * version, running them again changes nothing, a database migrated by a newer
 * relay is refused, and the data steps of old migrations still do what they
 * did (migration 5 on SQLite; migration 6 keeps queued deliveries).
 */
import { mkdtempSync, rmSync } from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import Database from 'better-sqlite3';
import { afterEach, describe, expect, it } from 'vitest';
import { openStore, type Store } from '../../src/store/index.js';
import { SCHEMA_VERSION, SchemaTooNew, migrate } from '../../src/store/migrate.js';
import { MIGRATIONS } from '../../src/store/migrations.js';
import { openPostgres } from '../../src/store/postgres.js';
import { openSqlite } from '../../src/store/sqlite.js';
import { freshDatabaseUrl } from '../helpers/postgres.js';
import { BACKENDS } from '../helpers/relay.js';

const dirs: string[] = [];
const stores: Store[] = [];
afterEach(async () => {
  await Promise.all(stores.splice(0).map((s) => s.close()));
  for (const d of dirs.splice(0)) rmSync(d, { recursive: true, force: true });
});

function tempFile(): string {
  const dir = mkdtempSync(path.join(os.tmpdir(), 'migrations-'));
  dirs.push(dir);
  return path.join(dir, 'relay.db');
}

describe('the migration list', () => {
  it('numbers its versions 1, 2, 3, … in order, with none missing: a database past a gap would skip the missing version for good', () => {
    expect(MIGRATIONS.map((m) => m.version)).toEqual(MIGRATIONS.map((_, i) => i + 1));
    expect(SCHEMA_VERSION).toBe(MIGRATIONS.length);
    for (const m of MIGRATIONS) {
      expect(m.sqlite.trim(), `migration ${m.version} sqlite`).not.toBe('');
      expect(m.postgres.trim(), `migration ${m.version} postgres`).not.toBe('');
    }
  });
});

describe.each(BACKENDS)('migrations on %s', (backend) => {
  const open = async () => (backend === 'postgres' ? openPostgres(await freshDatabaseUrl()) : openSqlite(':memory:'));

  it('bring a fresh database to the newest version, and running them again changes nothing', async () => {
    const b = await open();
    try {
      expect(await migrate(b)).toBe(SCHEMA_VERSION);
      expect(await migrate(b)).toBe(SCHEMA_VERSION);
      // The append-only audit log holds on this backend too.
      await b.sql.run("INSERT INTO audit_events (seq, at, type, actor, incident_id, outcome, data, prev_hash, hash) VALUES (1, 't', 'x', NULL, NULL, 'ok', '{}', 'p', 'h')");
      await expect(b.sql.run("UPDATE audit_events SET type = 'y'")).rejects.toThrow(/append-only/);
      await expect(b.sql.run('DELETE FROM audit_events')).rejects.toThrow(/append-only/);
    } finally {
      await b.close();
    }
  });

  it('refuse a database migrated by a newer relay', async () => {
    const b = await open();
    try {
      await migrate(b);
      const newer = [...MIGRATIONS, { version: SCHEMA_VERSION + 1, name: 'future', sqlite: 'CREATE TABLE future (x INTEGER);', postgres: 'CREATE TABLE future (x INTEGER);' }];
      await migrate(b, newer);
      const refusal = await migrate(b).catch((err: unknown) => err);
      expect(refusal).toBeInstanceOf(SchemaTooNew);
      expect(refusal).toMatchObject({ found: SCHEMA_VERSION + 1, known: SCHEMA_VERSION });
    } finally {
      await b.close();
    }
  });
});

describe.each(BACKENDS)('migration 8 on %s', (backend) => {
  it('keeps every token, incident and email, with no issuer, last use, label or Bcc split for the old ones', async () => {
    const url = backend === 'postgres' ? await freshDatabaseUrl() : undefined;
    const file = backend === 'sqlite' ? tempFile() : undefined;
    const b = url !== undefined ? openPostgres(url) : openSqlite(file!);
    try {
      await migrate(b, MIGRATIONS.filter((m) => m.version < 8));
      await b.sql.run("INSERT INTO tokens (id, email, role, label, hash, created_at) VALUES ('t1', 'ic@corp.example', 'responder', 'laptop', 'h1', '2026-01-01T00:00:00.000Z')");
      await b.sql.run("INSERT INTO incidents (id, codename, status, created_by, created_at) VALUES ('i1', 'amber-otter', 'open', 'ic@corp.example', '2026-01-01T00:00:00.000Z')");
      await b.sql.run(
        "INSERT INTO emails (id, incident_id, message_id, sender, encrypted, external_chain, recipients, created_at) VALUES ('e1', 'i1', '<e1@corp.example>', 'ic@corp.example', 0, 0, '[\"a@corp.example\",\"b@corp.example\"]', '2026-01-01T00:00:00.000Z')",
      );
    } finally {
      await b.close();
    }
    const store = await openStore(url !== undefined ? { url } : { file: file! }, { now: () => new Date() });
    stores.push(store);
    expect(await store.tokens.get('t1')).toEqual({ id: 't1', email: 'ic@corp.example', role: 'responder', label: 'laptop', createdAt: '2026-01-01T00:00:00.000Z', createdBy: null, lastUsedAt: null, revokedAt: null, incidentId: null });
    expect(await store.incidents.byId('i1')).toMatchObject({ codename: 'amber-otter', label: null });
    // Which recipients were Bcc is unknown for an email queued before: null, not [] (views hide them all).
    expect((await store.outbox.emailsById(['e1'])).get('e1')).toMatchObject({ recipients: ['a@corp.example', 'b@corp.example'], bcc: null });
    expect(await store.outbox.listEmails({ incidentId: 'i1', limit: 10 })).toHaveLength(1);
  });
});

describe('migrations on SQLite databases of the first wave', () => {
  function legacy(file: string, upTo: number): Database.Database {
    const db = new Database(file);
    for (const m of MIGRATIONS.filter((m) => m.version <= upTo)) db.exec(m.sqlite);
    db.pragma(`user_version = ${upTo}`);
    return db;
  }

  it('migration 5 drops relay-wide keys a roster entry filed, and keeps keys from owners, admins and the keys directory', async () => {
    const file = tempFile();
    const db = legacy(file, 4);
    const insert = db.prepare("INSERT INTO public_keys (email, fingerprint, algorithm, expires_at, armored, source, updated_at) VALUES (?, 'F', 'a', NULL, 'k', ?, 't')");
    insert.run('counsel@lawfirm.example', 'roster');
    insert.run('owner@lawfirm.example', 'api');
    insert.run('dir@lawfirm.example', 'keys-dir');
    db.close();
    const store = await openStore({ file }, { now: () => new Date() });
    stores.push(store);
    expect(await store.sql.all('SELECT email, source FROM public_keys ORDER BY email')).toEqual([
      { email: 'dir@lawfirm.example', source: 'keys-dir' },
      { email: 'owner@lawfirm.example', source: 'api' },
    ]);
  });

  it('migration 6 keeps every queued delivery, its body and schedule, and allows the cancelled status', async () => {
    const file = tempFile();
    const db = legacy(file, 5);
    db.prepare("INSERT INTO deliveries (id, channel, incident_id, envelope, body, status, attempts, created_ms, next_attempt_ms, last_error) VALUES ('d1', 'email', NULL, '{}', ?, 'queued', 3, 10, 20, 'busy')").run(Buffer.from('queued body'));
    db.prepare("INSERT INTO idempotency (token_id, key, route, status, response, created_at) VALUES ('t', 'k', 'r', 202, '{}', 'x')").run();
    db.close();
    const store = await openStore({ file }, { now: () => new Date() });
    stores.push(store);
    const row = await store.sql.get<{ body: Buffer; attempts: number; next_attempt_ms: number; last_error: string; lease_owner: string | null }>(
      "SELECT body, attempts, next_attempt_ms, last_error, lease_owner FROM deliveries WHERE id = 'd1'",
    );
    expect(row).toMatchObject({ attempts: 3, next_attempt_ms: 20, last_error: 'busy', lease_owner: null });
    expect(row!.body.toString()).toBe('queued body');
    await store.sql.run("UPDATE deliveries SET status = 'cancelled' WHERE id = 'd1'");
    // An old key has no fingerprint; it is kept and still matched by its route.
    expect(await store.idempotency.get('t', 'k')).toMatchObject({ fingerprint: null, route: 'r' });
  });
});

describe.each(BACKENDS)('migration 12 on %s', (backend) => {
  it('holds a token issued for an incident before it to the incident its token.created event recorded, and leaves the others relay-wide', async () => {
    const url = backend === 'postgres' ? await freshDatabaseUrl() : undefined;
    const file = backend === 'sqlite' ? tempFile() : undefined;
    const b = url !== undefined ? openPostgres(url) : openSqlite(file!);
    try {
      await migrate(b, MIGRATIONS.filter((m) => m.version < 12));
      await b.sql.run("INSERT INTO incidents (id, codename, status, created_by, created_at) VALUES ('i1', 'amber-otter', 'open', 'ic@corp.example', '2026-01-01T00:00:00.000Z')");
      for (const id of ['scoped', 'wide', 'unaudited']) {
        await b.sql.run("INSERT INTO tokens (id, email, role, label, hash, created_at) VALUES (?, 'counsel@lawfirm.example', 'responder', NULL, ?, '2026-01-01T00:00:00.000Z')", [id, `h-${id}`]);
      }
      const events: [string, string | null][] = [
        ['{"email":"counsel@lawfirm.example","forRoster":true,"id":"scoped","role":"responder"}', 'i1'],
        ['{"email":"counsel@lawfirm.example","id":"wide","role":"responder"}', null],
        ['{"id":"unaudited"}', 'i1'],
      ];
      for (const [i, [data, incident]] of events.entries()) {
        const type = i === 2 ? 'token.revoked' : 'token.created';
        await b.sql.run("INSERT INTO audit_events (seq, at, type, actor, incident_id, outcome, data, prev_hash, hash) VALUES (?, 't', ?, 'ic@corp.example', ?, 'ok', ?, 'p', 'h')", [i + 1, type, incident, data]);
      }
    } finally {
      await b.close();
    }
    const store = await openStore(url !== undefined ? { url } : { file: file! }, { now: () => new Date() });
    stores.push(store);
    expect((await store.tokens.get('scoped'))?.incidentId).toBe('i1');
    expect((await store.tokens.get('wide'))?.incidentId).toBeNull();
    expect((await store.tokens.get('unaudited'))?.incidentId).toBeNull();
  });
});
