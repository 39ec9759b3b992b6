/**
 * SMS nudge records (table sms_messages): one row per nudge the relay sent or
 * queued, so the per-recipient spacing of RELAY_SMS_NUDGE_INTERVAL holds
 * across restarts. No text is stored: the only text there is, is the template.
 */
import type { SqlExecutor } from './sql.js';

/** A roster entry that carries a given phone number, with its incident's state. */
export interface PhoneHolder {
  incidentId: string;
  email: string;
  incidentStatus: 'open' | 'closed';
}

/** sms_messages storage. Call insert inside a store transaction with its audit event. */
export class SmsStore {
  constructor(private readonly sql: SqlExecutor) {}

  /** When this person was last nudged, by their address or their phone (any incident): ms since the epoch. */
  async lastNudgeMs(email: string, phone: string | null): Promise<number | undefined> {
    const row = await this.sql.get<{ last: number | null }>('SELECT MAX(created_ms) AS last FROM sms_messages WHERE email = ? OR phone = ?', [email, phone ?? '']);
    return row?.last ?? undefined;
  }

  /**
   * Serialises nudge decisions for these people across relays, in the
   * caller's transaction: the "one nudge per interval" check reads the last
   * nudge and then records a new one, which two relays must not interleave.
   * SQLite's single writer already does; PostgreSQL takes a transaction-scoped
   * advisory lock per address and per phone (sorted, so two requests cannot
   * deadlock): the spacing is per person and per phone.
   */
  async lockNudgeTargets(targets: ReadonlyArray<{ email: string; phone: string | null }>): Promise<void> {
    if (this.sql.dialect !== 'postgres') return;
    const keys = new Set(targets.flatMap((t) => [`email:${t.email}`, ...(t.phone ? [`phone:${t.phone}`] : [])]));
    for (const key of [...keys].sort()) {
      await this.sql.get("SELECT pg_advisory_xact_lock(hashtext('sms-nudge:' || ?))", [key]);
    }
  }

  /** Records one nudge. */
  async insert(nudge: { id: string; incidentId: string; email: string; phone: string; at: Date }): Promise<void> {
    await this.sql.run('INSERT INTO sms_messages (id, incident_id, email, phone, created_at, created_ms) VALUES (?, ?, ?, ?, ?, ?)', [
      nudge.id,
      nudge.incidentId,
      nudge.email,
      nudge.phone,
      nudge.at.toISOString(),
      nudge.at.getTime(),
    ]);
  }

  /** Active roster entries with this phone number, newest incident first (inbound SMS). */
  async holdersOf(phone: string): Promise<PhoneHolder[]> {
    // Lower-case aliases are quoted: PostgreSQL folds unquoted ones to lower case.
    return this.sql.all<PhoneHolder>(
      `SELECT r.incident_id AS "incidentId", r.email AS email, i.status AS "incidentStatus"
         FROM roster r JOIN incidents i ON i.id = r.incident_id
        WHERE r.phone = ? AND r.status = 'active'
        ORDER BY i.created_at DESC, r.email`,
      [phone],
    );
  }
}
