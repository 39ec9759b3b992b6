/**
 * SMS nudge records (table sms_messages): one row per nudge the relay sent or
 * queued, so the per-recipient spacing of RELAY_SMS_NUDGE_INTERVAL holds
 * across restarts. No text is stored: the only text there is, is the template.
 */
import { prepared, type Db, type Prepared } from './db.js';

/** A roster entry that carries a given phone number, with its incident's state. */
export interface PhoneHolder {
  incidentId: string;
  email: string;
  incidentStatus: 'open' | 'closed';
}

/** sms_messages storage. Call insert inside a store transaction with its audit event. */
export class SmsStore {
  private readonly sql: Prepared;

  constructor(db: Db) {
    this.sql = prepared(db);
  }

  /** When this person was last nudged, by their address or their phone (any incident): ms since the epoch. */
  lastNudgeMs(email: string, phone: string | null): number | undefined {
    const row = this.sql('SELECT MAX(created_ms) AS last FROM sms_messages WHERE email = ? OR phone = ?').get(email, phone ?? '') as { last: number | null };
    return row.last ?? undefined;
  }

  /** Records one nudge. */
  insert(nudge: { id: string; incidentId: string; email: string; phone: string; at: Date }): void {
    this.sql('INSERT INTO sms_messages (id, incident_id, email, phone, created_at, created_ms) VALUES (?, ?, ?, ?, ?, ?)')
      .run(nudge.id, nudge.incidentId, nudge.email, nudge.phone, nudge.at.toISOString(), nudge.at.getTime());
  }

  /** Active roster entries with this phone number, newest incident first (inbound SMS). */
  holdersOf(phone: string): PhoneHolder[] {
    return this.sql(
        `SELECT r.incident_id AS incidentId, r.email AS email, i.status AS incidentStatus
           FROM roster r JOIN incidents i ON i.id = r.incident_id
          WHERE r.phone = ? AND r.status = 'active'
          ORDER BY i.created_at DESC, r.email`,
      )
      .all(phone) as PhoneHolder[];
  }
}
