/**
 * Announcements (issue 14): drafts, their approvals, the admin-kept audience
 * lists, and the commander's "internal source ruled out" record on the
 * incident. Call the writes inside a store transaction with their audit event.
 */
import type { SqlExecutor } from './sql.js';

export type AnnouncementKind = 'internal' | 'external';
/** draft → checked (the checks passed for this content) → approved (the approvals it needs hold) → sent (queued). */
export type AnnouncementState = 'draft' | 'checked' | 'approved' | 'sent';

/** One announcement as stored. */
export interface Announcement {
  id: string;
  incidentId: string;
  kind: AnnouncementKind;
  title: string;
  text: string;
  /** The audience addresses, lowercased, each once (a named list is read into it when the draft is written). */
  audience: string[];
  /** The named list the audience was read from, if any. */
  audienceList: string | null;
  /** sha256 of the canonical (kind, title, text, sorted audience): what approvals bind. */
  contentHash: string;
  /** The content hash the checks last passed for; null when never, or not since the last edit. */
  checkedHash: string | null;
  state: AnnouncementState;
  author: string;
  createdAt: string;
  updatedAt: string;
  sentAt: string | null;
  sentBy: string | null;
  /** The content hash that was sent: the delivery worker sends only while it is still the announcement's. */
  sentHash: string | null;
  /** The email whose deliveries carry the copies. */
  emailId: string | null;
}

/** One approval; `voidedAt` set once an edit (or a withdrawal of the record it relied on) voided it. */
export interface Approval {
  id: string;
  announcementId: string;
  approver: string;
  /** The approver's roster role when they approved. */
  role: string;
  contentHash: string;
  approvedAt: string;
  voidedAt: string | null;
  voidedBy: string | null;
  voidReason: string | null;
}

/** The commander's record that forensics ruled out an internal source; null when not (or no longer) recorded. */
export interface InternalSource {
  at: string;
  by: string;
  note: string;
}

/** An admin-kept audience list. */
export interface AudienceList {
  name: string;
  addresses: string[];
  updatedBy: string;
  updatedAt: string;
}

/** An audience list without its addresses: its size. */
export type AudienceSummary = Omit<AudienceList, 'addresses'> & { count: number };

interface AnnouncementRow {
  id: string;
  incident_id: string;
  kind: AnnouncementKind;
  title: string;
  text: string;
  audience: string;
  audience_list: string | null;
  content_hash: string;
  checked_hash: string | null;
  state: AnnouncementState;
  author: string;
  created_at: string;
  updated_at: string;
  sent_at: string | null;
  sent_by: string | null;
  sent_hash: string | null;
  email_id: string | null;
}

interface ApprovalRow {
  id: string;
  announcement_id: string;
  approver: string;
  role: string;
  content_hash: string;
  approved_at: string;
  voided_at: string | null;
  voided_by: string | null;
  void_reason: string | null;
}

function toAnnouncement(row: AnnouncementRow): Announcement {
  return {
    id: row.id,
    incidentId: row.incident_id,
    kind: row.kind,
    title: row.title,
    text: row.text,
    audience: JSON.parse(row.audience) as string[],
    audienceList: row.audience_list,
    contentHash: row.content_hash,
    checkedHash: row.checked_hash,
    state: row.state,
    author: row.author,
    createdAt: row.created_at,
    updatedAt: row.updated_at,
    sentAt: row.sent_at,
    sentBy: row.sent_by,
    sentHash: row.sent_hash,
    emailId: row.email_id,
  };
}

function toApproval(row: ApprovalRow): Approval {
  return {
    id: row.id,
    announcementId: row.announcement_id,
    approver: row.approver,
    role: row.role,
    contentHash: row.content_hash,
    approvedAt: row.approved_at,
    voidedAt: row.voided_at,
    voidedBy: row.voided_by,
    voidReason: row.void_reason,
  };
}

/** What a new draft, or an edit, writes. */
export interface AnnouncementContent {
  kind: AnnouncementKind;
  title: string;
  text: string;
  audience: readonly string[];
  audienceList: string | null;
  contentHash: string;
}

/** Announcement, approval, audience-list and internal-source storage. */
export class AnnouncementStore {
  constructor(private readonly sql: SqlExecutor) {}

  /** Stores a new draft. */
  async create(a: AnnouncementContent & { id: string; incidentId: string; author: string; at: Date }): Promise<Announcement> {
    const at = a.at.toISOString();
    await this.sql.run(
      `INSERT INTO announcements (id, incident_id, kind, title, text, audience, audience_list, content_hash, state, author, created_at, updated_at)
       VALUES (?, ?, ?, ?, ?, ?, ?, ?, 'draft', ?, ?, ?)`,
      [a.id, a.incidentId, a.kind, a.title, a.text, JSON.stringify(a.audience), a.audienceList, a.contentHash, a.author, at, at],
    );
    return (await this.get(a.incidentId, a.id))!;
  }

  /** The announcement, within its incident (an id from another incident is not found). */
  async get(incidentId: string, id: string): Promise<Announcement | undefined> {
    const row = await this.sql.get<AnnouncementRow>('SELECT * FROM announcements WHERE incident_id = ? AND id = ?', [incidentId, id]);
    return row ? toAnnouncement(row) : undefined;
  }

  /**
   * The announcement row locked for the rest of the caller's transaction
   * (PostgreSQL: FOR UPDATE; SQLite has one writer), so two approvals or an
   * approval and an edit cannot interleave.
   */
  async lock(incidentId: string, id: string): Promise<Announcement | undefined> {
    const lock = this.sql.dialect === 'postgres' ? ' FOR UPDATE' : '';
    const row = await this.sql.get<AnnouncementRow>(`SELECT * FROM announcements WHERE incident_id = ? AND id = ?${lock}`, [incidentId, id]);
    return row ? toAnnouncement(row) : undefined;
  }

  /** The incident's announcements, newest first. */
  async list(incidentId: string): Promise<Announcement[]> {
    const rows = await this.sql.all<AnnouncementRow>('SELECT * FROM announcements WHERE incident_id = ? ORDER BY created_at DESC, id', [incidentId]);
    return rows.map(toAnnouncement);
  }

  /** The announcement whose copies email `emailId` carries, if it carries one. */
  async byEmail(emailId: string): Promise<Announcement | undefined> {
    const row = await this.sql.get<AnnouncementRow>('SELECT * FROM announcements WHERE email_id = ?', [emailId]);
    return row ? toAnnouncement(row) : undefined;
  }

  /** Replaces the content of an unsent announcement: back to draft, not checked. False when it was sent meanwhile. */
  async edit(id: string, content: AnnouncementContent, at: Date): Promise<boolean> {
    const changes = await this.sql.run(
      `UPDATE announcements SET kind = ?, title = ?, text = ?, audience = ?, audience_list = ?, content_hash = ?, checked_hash = NULL, state = 'draft', updated_at = ?
       WHERE id = ? AND state <> 'sent'`,
      [content.kind, content.title, content.text, JSON.stringify(content.audience), content.audienceList, content.contentHash, at.toISOString(), id],
    );
    return changes === 1;
  }

  /** The content no longer passes its checks: back to draft (its approvals stay bound to the hash). */
  async markUnchecked(id: string, at: Date): Promise<void> {
    await this.sql.run("UPDATE announcements SET checked_hash = NULL, state = 'draft', updated_at = ? WHERE id = ? AND state <> 'sent'", [at.toISOString(), id]);
  }

  /** Records that the checks passed for `contentHash`, and the state that follows. False when the content changed meanwhile. */
  async markChecked(id: string, contentHash: string, state: 'checked' | 'approved', at: Date): Promise<boolean> {
    const changes = await this.sql.run("UPDATE announcements SET checked_hash = ?, state = ?, updated_at = ? WHERE id = ? AND content_hash = ? AND state <> 'sent'", [
      contentHash,
      state,
      at.toISOString(),
      id,
      contentHash,
    ]);
    return changes === 1;
  }

  /** Sets the state of an unsent announcement (checked ⇄ approved as approvals come and go). */
  async setState(id: string, state: 'checked' | 'approved', at: Date): Promise<void> {
    await this.sql.run("UPDATE announcements SET state = ?, updated_at = ? WHERE id = ? AND state <> 'sent'", [state, at.toISOString(), id]);
  }

  /** Marks it sent: which content went, by whom, in which email. False when it was not unsent with that content. */
  async markSent(id: string, sent: { contentHash: string; by: string; emailId: string; at: Date }): Promise<boolean> {
    const changes = await this.sql.run(
      "UPDATE announcements SET state = 'sent', sent_at = ?, sent_by = ?, sent_hash = ?, email_id = ?, updated_at = ? WHERE id = ? AND content_hash = ? AND state <> 'sent'",
      [sent.at.toISOString(), sent.by, sent.contentHash, sent.emailId, sent.at.toISOString(), id, sent.contentHash],
    );
    return changes === 1;
  }

  /** Every approval of the announcement, live and voided, oldest first. */
  async approvals(announcementId: string): Promise<Approval[]> {
    const rows = await this.sql.all<ApprovalRow>('SELECT * FROM announcement_approvals WHERE announcement_id = ? ORDER BY ordinal', [announcementId]);
    return rows.map(toApproval);
  }

  /** Records an approval of `contentHash`; false when `approver` already has a live one (the unique index decides, across relays too). */
  async approve(a: { id: string; announcementId: string; approver: string; role: string; contentHash: string; at: Date }): Promise<boolean> {
    // The ordinal keeps approvals in the order given, whatever the clock says (call it with the announcement locked).
    const changes = await this.sql.run(
      `INSERT INTO announcement_approvals (id, announcement_id, ordinal, approver, role, content_hash, approved_at)
       SELECT ?, ?, COALESCE(MAX(ordinal), 0) + 1, ?, ?, ?, ? FROM announcement_approvals WHERE announcement_id = ?
       ON CONFLICT (announcement_id, approver) WHERE voided_at IS NULL DO NOTHING`,
      [a.id, a.announcementId, a.approver, a.role, a.contentHash, a.at.toISOString(), a.announcementId],
    );
    return changes === 1;
  }

  /** Voids every live approval of the announcement; returns the ones voided. */
  async voidApprovals(announcementId: string, by: string | null, reason: string, at: Date): Promise<Approval[]> {
    const live = (await this.approvals(announcementId)).filter((a) => a.voidedAt === null);
    if (live.length === 0) return [];
    await this.sql.run('UPDATE announcement_approvals SET voided_at = ?, voided_by = ?, void_reason = ? WHERE announcement_id = ? AND voided_at IS NULL', [
      at.toISOString(),
      by,
      reason,
      announcementId,
    ]);
    return live;
  }

  /** The incident's internal-source record, or null. */
  async internalSource(incidentId: string): Promise<InternalSource | null> {
    const row = await this.sql.get<{ internal_source_at: string | null; internal_source_by: string | null; internal_source_note: string | null }>(
      'SELECT internal_source_at, internal_source_by, internal_source_note FROM incidents WHERE id = ?',
      [incidentId],
    );
    if (!row || row.internal_source_at === null) return null;
    return { at: row.internal_source_at, by: row.internal_source_by ?? '', note: row.internal_source_note ?? '' };
  }

  /** Records (or, with null, withdraws) the internal-source record. */
  async setInternalSource(incidentId: string, record: InternalSource | null): Promise<void> {
    await this.sql.run('UPDATE incidents SET internal_source_at = ?, internal_source_by = ?, internal_source_note = ? WHERE id = ?', [
      record?.at ?? null,
      record?.by ?? null,
      record?.note ?? null,
      incidentId,
    ]);
  }

  /** The incident's sent announcements (their copies may still be queued). */
  async sent(incidentId: string): Promise<Announcement[]> {
    const rows = await this.sql.all<AnnouncementRow>("SELECT * FROM announcements WHERE incident_id = ? AND state = 'sent' AND email_id IS NOT NULL", [incidentId]);
    return rows.map(toAnnouncement);
  }

  /** The audience lists, by name, with their sizes (the database counts; the addresses, up to 100,000 a list, are not read). */
  async audiences(): Promise<AudienceSummary[]> {
    const addresses = this.sql.dialect === 'postgres' ? 'addresses::json' : 'addresses';
    const rows = await this.sql.all<{ name: string; n: number | string; updated_by: string; updated_at: string }>(
      `SELECT name, json_array_length(${addresses}) AS n, updated_by, updated_at FROM audiences ORDER BY name`,
    );
    return rows.map((r) => ({ name: r.name, count: Number(r.n), updatedBy: r.updated_by, updatedAt: r.updated_at }));
  }

  async audience(name: string): Promise<AudienceList | undefined> {
    const r = await this.sql.get<{ name: string; addresses: string; updated_by: string; updated_at: string }>('SELECT * FROM audiences WHERE name = ?', [name]);
    return r ? { name: r.name, addresses: JSON.parse(r.addresses) as string[], updatedBy: r.updated_by, updatedAt: r.updated_at } : undefined;
  }

  /** Creates or replaces a list; true when it is new. */
  async putAudience(list: { name: string; addresses: readonly string[]; by: string; at: Date }): Promise<boolean> {
    const existed = (await this.sql.get('SELECT 1 AS found FROM audiences WHERE name = ?', [list.name])) !== undefined;
    await this.sql.run(
      `INSERT INTO audiences (name, addresses, updated_by, updated_at) VALUES (?, ?, ?, ?)
       ON CONFLICT (name) DO UPDATE SET addresses = excluded.addresses, updated_by = excluded.updated_by, updated_at = excluded.updated_at`,
      [list.name, JSON.stringify(list.addresses), list.by, list.at.toISOString()],
    );
    return !existed;
  }

  async deleteAudience(name: string): Promise<boolean> {
    return (await this.sql.run('DELETE FROM audiences WHERE name = ?', [name])) === 1;
  }
}
