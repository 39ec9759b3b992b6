import Database from 'better-sqlite3';
import { describe, expect, it } from 'vitest';
import { migrate } from '../../src/store/db.js';
import { MIGRATIONS } from '../../src/store/migrations.js';

describe('migration 5 (incident-scoped roster keys)', () => {
  it('drops relay-wide keys a roster entry filed before it, and keeps keys from owners, admins and the keys directory', () => {
    const db = new Database(':memory:');
    for (const m of MIGRATIONS.filter((m) => m.version <= 4)) db.exec(m.sql);
    db.pragma('user_version = 4');
    const insert = db.prepare("INSERT INTO public_keys (email, fingerprint, algorithm, expires_at, armored, source, updated_at) VALUES (?, 'F', 'a', NULL, 'k', ?, 't')");
    insert.run('counsel@lawfirm.example', 'roster');
    insert.run('owner@lawfirm.example', 'api');
    insert.run('dir@lawfirm.example', 'keys-dir');
    expect(migrate(db)).toBe(MIGRATIONS.at(-1)!.version);
    expect(db.prepare('SELECT email, source FROM public_keys ORDER BY email').all()).toEqual([
      { email: 'dir@lawfirm.example', source: 'keys-dir' },
      { email: 'owner@lawfirm.example', source: 'api' },
    ]);
  });
});
