/**
 * Public keys, filed by email address: relay-wide keys (uploaded by the owner
 * or an admin, or loaded from RELAY_KEYS_DIR) and incident keys (given with a
 * roster entry, valid in that incident only).
 */
import { lookupSlices, placeholders, type SqlExecutor } from './sql.js';

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
  constructor(private readonly sql: SqlExecutor) {}

  /** Files a relay-wide key (incidentId null) or an incident key. */
  async put(key: StoredKey): Promise<void> {
    if (key.incidentId !== null) {
      await this.sql.run(
        `INSERT INTO incident_keys (incident_id, email, fingerprint, algorithm, expires_at, armored, updated_at) VALUES (?, ?, ?, ?, ?, ?, ?)
         ON CONFLICT (incident_id, email) DO UPDATE SET fingerprint = excluded.fingerprint, algorithm = excluded.algorithm,
           expires_at = excluded.expires_at, armored = excluded.armored, updated_at = excluded.updated_at`,
        [key.incidentId, key.email, key.fingerprint, key.algorithm, key.expiresAt, key.armored, key.updatedAt],
      );
      return;
    }
    await this.sql.run(
      `INSERT INTO public_keys (email, fingerprint, algorithm, expires_at, armored, source, updated_at) VALUES (?, ?, ?, ?, ?, ?, ?)
       ON CONFLICT (email) DO UPDATE SET fingerprint = excluded.fingerprint, algorithm = excluded.algorithm,
         expires_at = excluded.expires_at, armored = excluded.armored, source = excluded.source, updated_at = excluded.updated_at`,
      [key.email, key.fingerprint, key.algorithm, key.expiresAt, key.armored, key.source, key.updatedAt],
    );
  }

  /** The relay-wide key of `email`. */
  async get(email: string): Promise<StoredKey | undefined> {
    const row = await this.sql.get<Row>('SELECT * FROM public_keys WHERE email = ?', [email]);
    return row ? toStored(row) : undefined;
  }

  /** The key that holds for `email` in an incident: the incident's own key, else the relay-wide one. */
  async getFor(email: string, incidentId: string | null): Promise<StoredKey | undefined> {
    if (incidentId !== null) {
      const row = await this.sql.get<Row>('SELECT * FROM incident_keys WHERE incident_id = ? AND email = ?', [incidentId, email]);
      if (row) return toStored(row);
    }
    return this.get(email);
  }

  /** getFor for many addresses at once: two queries per LOOKUP_SLICE addresses. Addresses without a key are absent. */
  async getForMany(emails: readonly string[], incidentId: string | null): Promise<Map<string, StoredKey>> {
    const found = new Map<string, StoredKey>();
    const wanted = [...new Set(emails)];
    if (incidentId !== null) {
      for (const slice of lookupSlices(wanted)) {
        for (const row of await this.sql.all<Row>(`SELECT * FROM incident_keys WHERE incident_id = ? AND email IN (${placeholders(slice.length)})`, [incidentId, ...slice])) {
          found.set(row.email, toStored(row));
        }
      }
    }
    // The relay-wide key for the rest: an incident's own key wins.
    for (const slice of lookupSlices(wanted.filter((e) => !found.has(e)))) {
      for (const row of await this.sql.all<Row>(`SELECT * FROM public_keys WHERE email IN (${placeholders(slice.length)})`, slice)) {
        found.set(row.email, toStored(row));
      }
    }
    return found;
  }

  /** Every key on file for `email`: the relay-wide one first, then one per incident. */
  async allFor(email: string): Promise<StoredKey[]> {
    const relayWide = await this.sql.all<Row>('SELECT * FROM public_keys WHERE email = ?', [email]);
    const incident = await this.sql.all<Row>('SELECT * FROM incident_keys WHERE email = ? ORDER BY incident_id', [email]);
    return [...relayWide, ...incident].map(toStored);
  }

  /** Every stored copy of the key with this fingerprint: relay-wide and per incident, under any address. */
  async byFingerprint(fingerprint: string): Promise<StoredKey[]> {
    const relayWide = await this.sql.all<Row>('SELECT * FROM public_keys WHERE fingerprint = ? ORDER BY email', [fingerprint]);
    const incident = await this.sql.all<Row>('SELECT * FROM incident_keys WHERE fingerprint = ? ORDER BY incident_id, email', [fingerprint]);
    return [...relayWide, ...incident].map(toStored);
  }

  /** Withdraws the relay-wide key of `email` (incidentId null) or its key in one incident; false when there was none. */
  async remove(email: string, incidentId: string | null): Promise<boolean> {
    const changes =
      incidentId === null
        ? await this.sql.run('DELETE FROM public_keys WHERE email = ?', [email])
        : await this.sql.run('DELETE FROM incident_keys WHERE incident_id = ? AND email = ?', [incidentId, email]);
    return changes > 0;
  }
}
