/**
 * Public keys, filed by email address: relay-wide keys (uploaded by the owner
 * or an admin, or loaded from RELAY_KEYS_DIR) and incident keys (given with a
 * roster entry, valid in that incident only).
 */
import { prepared, type Db, type Prepared } from './db.js';

export type KeySource = 'api' | 'roster' | 'keys-dir';

export interface StoredKey {
  email: string;
  fingerprint: string;
  algorithm: string;
  expiresAt: string | null;
  armored: string;
  source: KeySource;
  /** Set for a key that holds in one incident only. */
  incidentId: string | null;
  updatedAt: string;
}

interface Row {
  email: string;
  fingerprint: string;
  algorithm: string;
  expires_at: string | null;
  armored: string;
  source?: KeySource;
  incident_id?: string;
  updated_at: string;
}

function toStored(row: Row): StoredKey {
  return {
    email: row.email,
    fingerprint: row.fingerprint,
    algorithm: row.algorithm,
    expiresAt: row.expires_at,
    armored: row.armored,
    source: row.source ?? 'roster',
    incidentId: row.incident_id ?? null,
    updatedAt: row.updated_at,
  };
}

/** Public key storage; validation happens before anything reaches here. */
export class KeyStore {
  private readonly sql: Prepared;

  constructor(db: Db) {
    this.sql = prepared(db);
  }

  /** Files a relay-wide key (incidentId null) or an incident key. */
  put(key: StoredKey): void {
    if (key.incidentId !== null) {
      this.sql(
          `INSERT INTO incident_keys (incident_id, email, fingerprint, algorithm, expires_at, armored, updated_at) VALUES (?, ?, ?, ?, ?, ?, ?)
           ON CONFLICT (incident_id, email) DO UPDATE SET fingerprint = excluded.fingerprint, algorithm = excluded.algorithm,
             expires_at = excluded.expires_at, armored = excluded.armored, updated_at = excluded.updated_at`,
        )
        .run(key.incidentId, key.email, key.fingerprint, key.algorithm, key.expiresAt, key.armored, key.updatedAt);
      return;
    }
    this.sql(
        `INSERT INTO public_keys (email, fingerprint, algorithm, expires_at, armored, source, updated_at) VALUES (?, ?, ?, ?, ?, ?, ?)
         ON CONFLICT (email) DO UPDATE SET fingerprint = excluded.fingerprint, algorithm = excluded.algorithm,
           expires_at = excluded.expires_at, armored = excluded.armored, source = excluded.source, updated_at = excluded.updated_at`,
      )
      .run(key.email, key.fingerprint, key.algorithm, key.expiresAt, key.armored, key.source, key.updatedAt);
  }

  /** The relay-wide key of `email`. */
  get(email: string): StoredKey | undefined {
    const row = this.sql('SELECT * FROM public_keys WHERE email = ?').get(email) as Row | undefined;
    return row ? toStored(row) : undefined;
  }

  /** The key that holds for `email` in an incident: the incident's own key, else the relay-wide one. */
  getFor(email: string, incidentId: string | null): StoredKey | undefined {
    if (incidentId !== null) {
      const row = this.sql('SELECT * FROM incident_keys WHERE incident_id = ? AND email = ?').get(incidentId, email) as Row | undefined;
      if (row) return toStored(row);
    }
    return this.get(email);
  }
}
