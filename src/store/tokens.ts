/**
 * Access tokens: random, shown once, stored as a SHA-256 hash and compared in
 * constant time. A token reads `ir_<id>_<secret>`; the id finds the row, the
 * hash of the whole token must match it.
 */
import { createHash, randomBytes, timingSafeEqual } from 'node:crypto';
import type { SqlExecutor } from './sql.js';

export type TokenRole = 'admin' | 'responder';

export interface TokenRecord {
  id: string;
  email: string;
  role: TokenRole;
  label: string | null;
  createdAt: string;
  /** Who issued it (an admin, or the commander who issued it for their roster); null for the bootstrap token and tokens older than migration 8. */
  createdBy: string | null;
  /** When it last authenticated a request, to the minute (see TokenStore.markUsed); null if never. */
  lastUsedAt: string | null;
  revokedAt: string | null;
  /** The one incident this token may act in (a token a commander issued); null: no scope. */
  incidentId: string | null;
}

/** The id under which the bootstrap admin token (RELAY_ADMIN_TOKEN or generated) is kept. */
export const BOOTSTRAP_TOKEN_ID = 'admin';

const TOKEN_FORMAT = /^ir_([a-z0-9]{16})_[A-Za-z0-9_-]{43}$/;

function hashToken(token: string): Buffer {
  return createHash('sha256').update(token, 'utf8').digest();
}

interface Row {
  id: string;
  email: string;
  role: TokenRole;
  label: string | null;
  hash: string;
  created_at: string;
  created_by: string | null;
  last_used_at: string | null;
  revoked_at: string | null;
  incident_id: string | null;
}

function toRecord(row: Row): TokenRecord {
  return {
    id: row.id,
    email: row.email,
    role: row.role,
    label: row.label,
    createdAt: row.created_at,
    createdBy: row.created_by,
    lastUsedAt: row.last_used_at,
    revokedAt: row.revoked_at,
    incidentId: row.incident_id ?? null,
  };
}

/** Token storage and verification. */
export class TokenStore {
  constructor(private readonly sql: SqlExecutor) {}

  /** Creates a token; the returned secret is the only copy. 256 bits of randomness. */
  async create(input: { email: string; role: TokenRole; label?: string | null; createdBy?: string | null; incidentId?: string | null; at: Date }): Promise<{ record: TokenRecord; token: string }> {
    const id = randomBytes(8).toString('hex');
    const token = `ir_${id}_${randomBytes(32).toString('base64url')}`;
    await this.insert(id, token, input);
    return { record: (await this.get(id))!, token };
  }

  /** Files RELAY_ADMIN_TOKEN's hash as the bootstrap admin token; says what changed. */
  async setBootstrap(token: string, email: string, at: Date): Promise<'created' | 'replaced' | 'unchanged' | 'revoked'> {
    const row = await this.sql.get<Pick<Row, 'hash' | 'revoked_at'>>('SELECT hash, revoked_at FROM tokens WHERE id = ?', [BOOTSTRAP_TOKEN_ID]);
    // The same token again: keep its row, and above all keep a revocation;
    // restarting must not bring a revoked admin token back to life.
    if (row && row.hash === hashToken(token).toString('hex')) return row.revoked_at === null ? 'unchanged' : 'revoked';
    await this.sql.run('DELETE FROM tokens WHERE id = ?', [BOOTSTRAP_TOKEN_ID]);
    await this.insert(BOOTSTRAP_TOKEN_ID, token, { email, role: 'admin', label: 'bootstrap', at });
    return row ? 'replaced' : 'created';
  }

  private async insert(id: string, token: string, input: { email: string; role: TokenRole; label?: string | null; createdBy?: string | null; incidentId?: string | null; at: Date }): Promise<void> {
    await this.sql.run('INSERT INTO tokens (id, email, role, label, hash, created_at, created_by, incident_id) VALUES (?, ?, ?, ?, ?, ?, ?, ?)', [
      id,
      input.email,
      input.role,
      input.label ?? null,
      hashToken(token).toString('hex'),
      input.at.toISOString(),
      input.createdBy ?? null,
      input.incidentId ?? null,
    ]);
  }

  /** The token's record when it is known and not revoked; undefined otherwise. */
  async verify(token: string): Promise<TokenRecord | undefined> {
    const id = TOKEN_FORMAT.exec(token)?.[1] ?? BOOTSTRAP_TOKEN_ID;
    const row = await this.sql.get<Row>('SELECT * FROM tokens WHERE id = ?', [id]);
    // Hash first either way so a miss and a hit take the same time.
    const presented = hashToken(token);
    if (!row) return undefined;
    const stored = Buffer.from(row.hash, 'hex');
    if (stored.length !== presented.length || !timingSafeEqual(stored, presented)) return undefined;
    if (row.revoked_at !== null) return undefined;
    return toRecord(row);
  }

  async get(id: string): Promise<TokenRecord | undefined> {
    const row = await this.sql.get<Row>('SELECT * FROM tokens WHERE id = ?', [id]);
    return row ? toRecord(row) : undefined;
  }

  /** Every token (admins), or those issued for `email`; oldest first. Metadata only: the hash never leaves this file. */
  async list(email?: string): Promise<TokenRecord[]> {
    const rows =
      email === undefined
        ? await this.sql.all<Row>('SELECT * FROM tokens ORDER BY created_at, id')
        : await this.sql.all<Row>('SELECT * FROM tokens WHERE email = ? ORDER BY created_at, id', [email]);
    return rows.map(toRecord);
  }

  /**
   * Records that the token was used at `at`, unless it was already recorded
   * as used within the last `resolutionMs`: a conditional write, so a busy
   * token costs one UPDATE a minute, not one per request. True when it wrote.
   */
  async markUsed(id: string, at: Date, resolutionMs: number): Promise<boolean> {
    const since = new Date(at.getTime() - resolutionMs).toISOString();
    const changes = await this.sql.run('UPDATE tokens SET last_used_at = ? WHERE id = ? AND (last_used_at IS NULL OR last_used_at <= ?)', [at.toISOString(), id, since]);
    return changes === 1;
  }

  /** Marks the token revoked; false when there is no such live token. */
  async revoke(id: string, at: Date): Promise<boolean> {
    return (await this.sql.run('UPDATE tokens SET revoked_at = ? WHERE id = ? AND revoked_at IS NULL', [at.toISOString(), id])) === 1;
  }
}
