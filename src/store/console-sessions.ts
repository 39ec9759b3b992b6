/**
 * Sessions of the web console (issue 13). A row is keyed by the SHA-256 of
 * the random session id the cookie carries, never the id itself: whoever
 * reads the database (a backup, a replica's operator) cannot sign in with
 * what they find. Times are ISO 8601 strings, as elsewhere in the store;
 * they compare correctly as text.
 */
import type { SqlExecutor } from './sql.js';

/** One console session. */
export interface ConsoleSession {
  /** SHA-256 (hex) of the cookie's session id. */
  idHash: string;
  /** The relay token the session was opened with; its revocation ends the session. */
  tokenId: string;
  email: string;
  createdAt: string;
  lastSeenAt: string;
  /** The absolute cap: the session ends then, however active. */
  expiresAt: string;
  /** The one-shot result of the last POST (JSON), shown by the next page; null when none. */
  flash: string | null;
}

interface Row {
  id_hash: string;
  token_id: string;
  email: string;
  created_at: string;
  last_seen_at: string;
  expires_at: string;
  flash: string | null;
}

function toSession(row: Row): ConsoleSession {
  return {
    idHash: row.id_hash,
    tokenId: row.token_id,
    email: row.email,
    createdAt: row.created_at,
    lastSeenAt: row.last_seen_at,
    expiresAt: row.expires_at,
    flash: row.flash,
  };
}

/** The console_sessions table. */
export class ConsoleSessionStore {
  constructor(private readonly sql: SqlExecutor) {}

  /** Records a new session. */
  async create(session: Omit<ConsoleSession, 'flash'>): Promise<void> {
    await this.sql.run('INSERT INTO console_sessions (id_hash, token_id, email, created_at, last_seen_at, expires_at, flash) VALUES (?, ?, ?, ?, ?, ?, NULL)', [
      session.idHash,
      session.tokenId,
      session.email,
      session.createdAt,
      session.lastSeenAt,
      session.expiresAt,
    ]);
  }

  /** The session with this id hash, if it exists (expired or not: the caller decides). */
  async get(idHash: string): Promise<ConsoleSession | undefined> {
    const row = await this.sql.get<Row>('SELECT * FROM console_sessions WHERE id_hash = ?', [idHash]);
    return row ? toSession(row) : undefined;
  }

  /** Moves last_seen_at forward (never back: two replicas may touch the same session at once). */
  async touch(idHash: string, at: string): Promise<void> {
    await this.sql.run('UPDATE console_sessions SET last_seen_at = ? WHERE id_hash = ? AND last_seen_at < ?', [at, idHash, at]);
  }

  /** Sets (or with null clears) the one-shot result shown by the next page. */
  async setFlash(idHash: string, flash: string | null): Promise<void> {
    await this.sql.run('UPDATE console_sessions SET flash = ? WHERE id_hash = ?', [flash, idHash]);
  }

  /** Deletes the session; false when there was none. */
  async delete(idHash: string): Promise<boolean> {
    return (await this.sql.run('DELETE FROM console_sessions WHERE id_hash = ?', [idHash])) === 1;
  }

  /** Deletes sessions past their absolute cap or idle since before `idleBefore`; returns how many. */
  async purgeExpired(now: string, idleBefore: string): Promise<number> {
    return this.sql.run('DELETE FROM console_sessions WHERE expires_at <= ? OR last_seen_at < ?', [now, idleBefore]);
  }

  /** How many sessions the token has open (tests, and the sign-out of a revoked token). */
  async countForToken(tokenId: string): Promise<number> {
    // A number on both backends: postgres.ts parses int8 (COUNT(*)) as one.
    return (await this.sql.get<{ n: number }>('SELECT COUNT(*) AS n FROM console_sessions WHERE token_id = ?', [tokenId]))?.n ?? 0;
  }
}
