/** Incidents and their rosters. */
import type { SqlExecutor } from './sql.js';

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
  /** Private one-line note for the roster and admins (issue 12); never written into anything the relay sends. */
  label: string | null;
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
  label: string | null;
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
  return { id: row.id, codename: row.codename, status: row.status, createdBy: row.created_by, createdAt: row.created_at, closedAt: row.closed_at, label: row.label ?? null };
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
  constructor(private readonly sql: SqlExecutor) {}

  /** Creates the incident; undefined when its codename is taken (another relay may have just taken it). */
  async create(incident: { id: string; codename: string; createdBy: string; at: Date; label?: string | null }): Promise<Incident | undefined> {
    const changes = await this.sql.run(
      "INSERT INTO incidents (id, codename, status, created_by, created_at, label) VALUES (?, ?, 'open', ?, ?, ?) ON CONFLICT (codename) DO NOTHING",
      [incident.id, incident.codename, incident.createdBy, incident.at.toISOString(), incident.label ?? null],
    );
    return changes === 1 ? this.byId(incident.id) : undefined;
  }

  async codenameTaken(codename: string): Promise<boolean> {
    return (await this.sql.get('SELECT 1 AS taken FROM incidents WHERE codename = ?', [codename])) !== undefined;
  }

  /** Every codename ever used (they are never reused). */
  async codenames(): Promise<Set<string>> {
    return new Set((await this.sql.all<{ codename: string }>('SELECT codename FROM incidents')).map((r) => r.codename));
  }

  async byCodename(codename: string): Promise<Incident | undefined> {
    const row = await this.sql.get<IncidentRow>('SELECT * FROM incidents WHERE codename = ?', [codename]);
    return row ? toIncident(row) : undefined;
  }

  /**
   * The incident by codename and `email`'s active roster entry in it, in one
   * query: every request that names an incident asks both.
   */
  async withActiveMember(codename: string, email: string): Promise<{ incident: Incident; member: RosterMember | undefined } | undefined> {
    const row = await this.sql.get<IncidentRow & { m_email: string | null } & { [K in keyof MemberRow as `m_${K}`]: MemberRow[K] | null }>(
      `SELECT i.*, r.email AS m_email, r.name AS m_name, r.role AS m_role, r.phone AS m_phone, r.slack_user_id AS m_slack_user_id,
              r.slack_status AS m_slack_status, r.status AS m_status, r.added_at AS m_added_at, r.updated_at AS m_updated_at, r.removed_at AS m_removed_at
         FROM incidents i LEFT JOIN roster r ON r.incident_id = i.id AND r.email = ? AND r.status = 'active'
        WHERE i.codename = ?`,
      [email, codename],
    );
    if (!row) return undefined;
    const member = row.m_email === null ? undefined : toMember({
      incident_id: row.id, email: row.m_email, name: row.m_name!, role: row.m_role!, phone: row.m_phone, slack_user_id: row.m_slack_user_id,
      slack_status: row.m_slack_status, status: row.m_status!, added_at: row.m_added_at!, updated_at: row.m_updated_at!, removed_at: row.m_removed_at,
    });
    return { incident: toIncident(row), member };
  }

  async byId(id: string): Promise<Incident | undefined> {
    const row = await this.sql.get<IncidentRow>('SELECT * FROM incidents WHERE id = ?', [id]);
    return row ? toIncident(row) : undefined;
  }

  /** All incidents, or those whose active roster holds `email`, optionally only open or only closed ones. Newest first. */
  async list(memberEmail?: string, status?: IncidentStatus): Promise<Incident[]> {
    const where: string[] = [];
    const params: string[] = [];
    if (memberEmail !== undefined) {
      where.push("r.email = ? AND r.status = 'active'");
      params.push(memberEmail);
    }
    if (status !== undefined) {
      where.push('i.status = ?');
      params.push(status);
    }
    const join = memberEmail !== undefined ? ' JOIN roster r ON r.incident_id = i.id' : '';
    const rows = await this.sql.all<IncidentRow>(
      `SELECT i.* FROM incidents i${join}${where.length > 0 ? ` WHERE ${where.join(' AND ')}` : ''} ORDER BY i.created_at DESC, i.codename`,
      params,
    );
    return rows.map(toIncident);
  }

  /** Open incidents whose active roster holds `email`. */
  async openFor(email: string): Promise<Incident[]> {
    return (await this.list(email)).filter((i) => i.status === 'open');
  }

  async openIncidents(): Promise<Incident[]> {
    return (await this.sql.all<IncidentRow>("SELECT * FROM incidents WHERE status = 'open'")).map(toIncident);
  }

  async close(id: string, at: Date): Promise<boolean> {
    return (await this.sql.run("UPDATE incidents SET status = 'closed', closed_at = ? WHERE id = ? AND status = 'open'", [at.toISOString(), id])) === 1;
  }

  /** Opens a closed incident again (a mistaken close); false when it was not closed. */
  async reopen(id: string): Promise<boolean> {
    return (await this.sql.run("UPDATE incidents SET status = 'open', closed_at = NULL WHERE id = ? AND status = 'closed'", [id])) === 1;
  }

  /** Sets or clears the private label. */
  async setLabel(id: string, label: string | null): Promise<void> {
    await this.sql.run('UPDATE incidents SET label = ? WHERE id = ?', [label, id]);
  }

  async member(incidentId: string, email: string): Promise<RosterMember | undefined> {
    const row = await this.sql.get<MemberRow>('SELECT * FROM roster WHERE incident_id = ? AND email = ?', [incidentId, email]);
    return row ? toMember(row) : undefined;
  }

  async activeMember(incidentId: string, email: string): Promise<RosterMember | undefined> {
    const member = await this.member(incidentId, email);
    return member?.status === 'active' ? member : undefined;
  }

  /** Active members, sorted by email. */
  async roster(incidentId: string): Promise<RosterMember[]> {
    const rows = await this.sql.all<MemberRow>("SELECT * FROM roster WHERE incident_id = ? AND status = 'active' ORDER BY email", [incidentId]);
    return rows.map(toMember);
  }

  /** Adds or re-activates/updates a member; `created` is true when the member was not active before. */
  async upsertMember(incidentId: string, input: MemberInput, at: Date): Promise<{ member: RosterMember; created: boolean }> {
    const before = await this.member(incidentId, input.email);
    const now = at.toISOString();
    if (!before) {
      await this.sql.run(
        "INSERT INTO roster (incident_id, email, name, role, phone, slack_user_id, status, added_at, updated_at) VALUES (?, ?, ?, ?, ?, ?, 'active', ?, ?)",
        [incidentId, input.email, input.name, input.role, input.phone ?? null, input.slackUserId ?? null, now, now],
      );
    } else {
      await this.sql.run(
        `UPDATE roster SET name = ?, role = ?, phone = ?, slack_user_id = ?, status = 'active', updated_at = ?,
           added_at = CASE WHEN status = 'removed' THEN ? ELSE added_at END, removed_at = NULL
         WHERE incident_id = ? AND email = ?`,
        [input.name, input.role, input.phone ?? null, input.slackUserId ?? null, now, now, incidentId, input.email],
      );
    }
    return { member: (await this.member(incidentId, input.email))!, created: before?.status !== 'active' };
  }

  /** Marks a member removed; the row (history) stays. */
  async removeMember(incidentId: string, email: string, at: Date): Promise<boolean> {
    const changes = await this.sql.run("UPDATE roster SET status = 'removed', removed_at = ?, updated_at = ? WHERE incident_id = ? AND email = ? AND status = 'active'", [
      at.toISOString(),
      at.toISOString(),
      incidentId,
      email,
    ]);
    return changes === 1;
  }

  async setSlackStatus(incidentId: string, email: string, status: string | null, slackUserId?: string): Promise<void> {
    await this.sql.run('UPDATE roster SET slack_status = ?, slack_user_id = COALESCE(?, slack_user_id) WHERE incident_id = ? AND email = ?', [
      status,
      slackUserId ?? null,
      incidentId,
      email,
    ]);
  }
}
