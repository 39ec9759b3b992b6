/** Responders' public keys, filed by email address. */
import type { Db } from './db.js';

export interface StoredKey {
  email: string;
  fingerprint: string;
  algorithm: string;
  expiresAt: string | null;
  armored: string;
  source: 'api' | 'roster' | 'keys-dir';
  updatedAt: string;
}

interface Row {
  email: string;
  fingerprint: string;
  algorithm: string;
  expires_at: string | null;
  armored: string;
  source: StoredKey['source'];
  updated_at: string;
}

/** Public key storage; validation happens before anything reaches here. */
export class KeyStore {
  constructor(private readonly db: Db) {}

  put(key: StoredKey): void {
    this.db
      .prepare(
        `INSERT INTO public_keys (email, fingerprint, algorithm, expires_at, armored, source, updated_at) VALUES (?, ?, ?, ?, ?, ?, ?)
         ON CONFLICT (email) DO UPDATE SET fingerprint = excluded.fingerprint, algorithm = excluded.algorithm,
           expires_at = excluded.expires_at, armored = excluded.armored, source = excluded.source, updated_at = excluded.updated_at`,
      )
      .run(key.email, key.fingerprint, key.algorithm, key.expiresAt, key.armored, key.source, key.updatedAt);
  }

  get(email: string): StoredKey | undefined {
    const row = this.db.prepare('SELECT * FROM public_keys WHERE email = ?').get(email) as Row | undefined;
    return row
      ? { email: row.email, fingerprint: row.fingerprint, algorithm: row.algorithm, expiresAt: row.expires_at, armored: row.armored, source: row.source, updatedAt: row.updated_at }
      : undefined;
  }
}
