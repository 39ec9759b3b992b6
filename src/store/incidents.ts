/** Incidents and their rosters. */
import { prepared, type Db, type Prepared } from './db.js';

export type IncidentStatus = 'open' | 'closed';

export const ROSTER_ROLES = ['commander', 'deputy', 'scribe', 'security', 'service-owner', 'executive', 'legal', 'communications', 'external'] as const;
export type RosterRole = (typeof ROSTER_ROLES)[number];

export interface Incident {
  id: string;
  codename: string;
  status: IncidentStatus;
  createdBy: string;
  createdAt: string;
  closedAt: string | null;
}

export interface RosterMember {
  email: string;
  name: string;
  role: RosterRole;
  phone: string | null;
  slackUserId: string | null;
  slackStatus: string | null;
  status: 'active' | 'removed';
  addedAt: string;
  updatedAt: string;
  removedAt: string | null;
}

export interface MemberInput {
  email: string;
  name: string;
  role: RosterRole;
  phone?: string | null | undefined;
  slackUserId?: string | null | undefined;
}

interface IncidentRow {
  id: string;
  codename: string;
  status: IncidentStatus;
  created_by: string;
  created_at: string;
  closed_at: string | null;
}

interface MemberRow {
  incident_id: string;
  email: string;
  name: string;
  role: RosterRole;
  phone: string | null;
  slack_user_id: string | null;
  slack_status: string | null;
  status: 'active' | 'removed';
  added_at: string;
  updated_at: string;
  removed_at: string | null;
}

function toIncident(row: IncidentRow): Incident {
  return { id: row.id, codename: row.codename, status: row.status, createdBy: row.created_by, createdAt: row.created_at, closedAt: row.closed_at };
}

function toMember(row: MemberRow): RosterMember {
  return {
    email: row.email,
    name: row.name,
    role: row.role,
    phone: row.phone,
    slackUserId: row.slack_user_id,
    slackStatus: row.slack_status,
    status: row.status,
    addedAt: row.added_at,
    updatedAt: row.updated_at,
    removedAt: row.removed_at,
  };
}

/** Incident and roster storage. */
export class IncidentStore {
  private readonly sql: Prepared;

  constructor(db: Db) {
    this.sql = prepared(db);
  }

  create(incident: { id: string; codename: string; createdBy: string; at: Date }): Incident {
    this.sql("INSERT INTO incidents (id, codename, status, created_by, created_at) VALUES (?, ?, 'open', ?, ?)")
      .run(incident.id, incident.codename, incident.createdBy, incident.at.toISOString());
    return this.byId(incident.id)!;
  }

  codenameTaken(codename: string): boolean {
    return this.sql('SELECT 1 FROM incidents WHERE codename = ?').get(codename) !== undefined;
  }

  byCodename(codename: string): Incident | undefined {
    const row = this.sql('SELECT * FROM incidents WHERE codename = ?').get(codename) as IncidentRow | undefined;
    return row ? toIncident(row) : undefined;
  }

  byId(id: string): Incident | undefined {
    const row = this.sql('SELECT * FROM incidents WHERE id = ?').get(id) as IncidentRow | undefined;
    return row ? toIncident(row) : undefined;
  }

  /** All incidents, or those whose active roster holds `email`. Newest first. */
  list(memberEmail?: string): Incident[] {
    const rows = memberEmail
      ? this.sql("SELECT i.* FROM incidents i JOIN roster r ON r.incident_id = i.id WHERE r.email = ? AND r.status = 'active' ORDER BY i.created_at DESC, i.codename")
          .all(memberEmail)
      : this.sql('SELECT * FROM incidents ORDER BY created_at DESC, codename').all();
    return (rows as IncidentRow[]).map(toIncident);
  }

  /** Open incidents whose active roster holds `email`. */
  openFor(email: string): Incident[] {
    return this.list(email).filter((i) => i.status === 'open');
  }

  openIncidents(): Incident[] {
    return (this.sql("SELECT * FROM incidents WHERE status = 'open'").all() as IncidentRow[]).map(toIncident);
  }

  close(id: string, at: Date): boolean {
    return this.sql("UPDATE incidents SET status = 'closed', closed_at = ? WHERE id = ? AND status = 'open'").run(at.toISOString(), id).changes === 1;
  }

  member(incidentId: string, email: string): RosterMember | undefined {
    const row = this.sql('SELECT * FROM roster WHERE incident_id = ? AND email = ?').get(incidentId, email) as MemberRow | undefined;
    return row ? toMember(row) : undefined;
  }

  activeMember(incidentId: string, email: string): RosterMember | undefined {
    const member = this.member(incidentId, email);
    return member?.status === 'active' ? member : undefined;
  }

  /** Active members, sorted by email. */
  roster(incidentId: string): RosterMember[] {
    const rows = this.sql("SELECT * FROM roster WHERE incident_id = ? AND status = 'active' ORDER BY email").all(incidentId) as MemberRow[];
    return rows.map(toMember);
  }

  /** Adds or re-activates/updates a member; `created` is true when the member was not active before. */
  upsertMember(incidentId: string, input: MemberInput, at: Date): { member: RosterMember; created: boolean } {
    const before = this.member(incidentId, input.email);
    const now = at.toISOString();
    if (!before) {
      this.sql("INSERT INTO roster (incident_id, email, name, role, phone, slack_user_id, status, added_at, updated_at) VALUES (?, ?, ?, ?, ?, ?, 'active', ?, ?)")
        .run(incidentId, input.email, input.name, input.role, input.phone ?? null, input.slackUserId ?? null, now, now);
    } else {
      this.sql(
          `UPDATE roster SET name = ?, role = ?, phone = ?, slack_user_id = ?, status = 'active', updated_at = ?,
             added_at = CASE WHEN status = 'removed' THEN ? ELSE added_at END, removed_at = NULL
           WHERE incident_id = ? AND email = ?`,
        )
        .run(input.name, input.role, input.phone ?? null, input.slackUserId ?? null, now, now, incidentId, input.email);
    }
    return { member: this.member(incidentId, input.email)!, created: before?.status !== 'active' };
  }

  /** Marks a member removed; the row (history) stays. */
  removeMember(incidentId: string, email: string, at: Date): boolean {
    return (
      this.sql("UPDATE roster SET status = 'removed', removed_at = ?, updated_at = ? WHERE incident_id = ? AND email = ? AND status = 'active'")
        .run(at.toISOString(), at.toISOString(), incidentId, email).changes === 1
    );
  }

  setSlackStatus(incidentId: string, email: string, status: string | null, slackUserId?: string): void {
    this.sql('UPDATE roster SET slack_status = ?, slack_user_id = COALESCE(?, slack_user_id) WHERE incident_id = ? AND email = ?')
      .run(status, slackUserId ?? null, incidentId, email);
  }
}
