/**
 * The shapes the CLI reads from the relay (README "HTTP API" and the
 * second-wave additions). Fields added by newer relays are optional, so the
 * CLI prints what an older relay sends and never crashes on what it lacks.
 */

/** GET /v1/incidents/:codename. */
export interface IncidentView {
  id: string;
  codename: string;
  status: 'open' | 'closed';
  commander: string | null;
  label?: string | null;
  createdAt: string;
  closedAt: string | null;
  slack: { state: string; channelId: string | null; name: string | null; reason: string | null } | null;
  internalSourceRuledOut?: { at: string; by: string; note: string } | null;
}

/** A member's key as the roster shows it. */
export interface MemberKey {
  fingerprint: string;
  algorithm: string;
  expiresAt: string | null;
  status?: 'usable' | 'expired' | 'revoked' | 'unusable' | 'missing';
  reason?: string;
}

/** One roster entry. */
export interface MemberView {
  email: string;
  name: string;
  role: string;
  phone: string | null;
  slackUserId: string | null;
  slackStatus: string | null;
  status: string;
  addedAt: string;
  updatedAt: string;
  removedAt: string | null;
  key: MemberKey | null;
}

/** GET /v1/keys/:email. */
export interface KeyView {
  email: string;
  fingerprint: string;
  algorithm: string;
  expiresAt: string | null;
  scope?: 'incident' | 'relay';
  status?: string;
  reason?: string;
}

/** The 202 of POST …/emails. */
export interface EmailAccepted {
  id: string;
  messageId: string;
  status: string;
  encrypted: boolean;
  recipients: string[];
}

/** EmailSummary / GET …/emails/:id (older relays send only id, status, attempts, lastError). */
export interface EmailView {
  id: string;
  messageId?: string;
  sender?: string;
  createdAt?: string;
  encrypted?: boolean;
  recipients?: string[];
  status: string;
  attempts: number;
  lastError?: string;
  deliveries?: { recipients: string[]; status: string; attempts: number; lastError?: string }[];
}

/** GET /v1/tokens entries. */
export interface TokenView {
  id: string;
  email: string;
  role: string;
  label: string | null;
  createdAt: string;
  createdBy: string | null;
  lastUsedAt: string | null;
  revokedAt: string | null;
  /** The incident (codename) the token is held to; null: relay-wide. */
  incident: string | null;
}

/** The 201 of POST /v1/tokens: the secret, shown once. */
export interface TokenCreated {
  id: string;
  token: string;
  email: string;
  role: string;
  label: string | null;
  createdAt: string;
}

/** One audit event. */
export interface AuditEventView {
  seq: number;
  at: string;
  type: string;
  actor: string | null;
  incidentId: string | null;
  outcome: string;
  data: Record<string, unknown>;
  prevHash: string;
  hash: string;
}

/** GET /v1/audit/verify. */
export interface AuditVerification {
  ok: boolean;
  events: number;
  head: string;
  brokenAt?: number;
  /** Events up to this seq were not recomputed (0: from genesis). */
  from?: number;
  checkpoints?: {
    signed: number;
    verified: number;
    latest?: { seq: number; hash: string; at: string };
    failures?: number;
    failed?: Array<{ seq: number; reason: string; event?: number }>;
  };
  lastFullVerification?: { at: string; ok: boolean; events: number; brokenAt?: number; failures?: number };
}

/** One signed checkpoint of the audit chain (GET /v1/audit/heads). */
export interface AuditCheckpointView {
  seq: number;
  hash: string;
  at: string;
  fingerprint: string;
  signature: string;
}

/** POST …/sms. */
export interface NudgeAnswer {
  results: { email: string; status: string; reason?: string }[];
}

/** One rule's outcome, as decisions list them. */
export interface RuleOutcomeView {
  rule: string;
  result: 'pass' | 'fail' | 'skip';
  reason: string;
}

/** An announcement (issue 14): GET …/announcements/:id and the answers of draft, edit, check and approve. */
export interface AnnouncementView {
  id: string;
  codename: string;
  kind: 'internal' | 'external';
  title: string;
  text: string;
  audience: { addresses: string[]; list: string | null; count: number };
  state: 'draft' | 'checked' | 'approved' | 'sent';
  author: string;
  createdAt: string;
  updatedAt: string;
  contentHash: string;
  checked: boolean;
  approvals: { approver: string; role: string; approvedAt: string; current: boolean; voidedAt: string | null; voidedBy: string | null; voidReason: string | null }[];
  release: { ready: boolean; rules: RuleOutcomeView[] };
  sent: { at: string; by: string; emailId: string; messageId: string | null } | null;
}

/** GET …/announcements entries: no text, and the audience as its list's name (when there is one) and count, never its addresses. */
export type AnnouncementListItem = Omit<AnnouncementView, 'text' | 'audience'> & { audience: { list?: string; count: number } };

/** The 202 of POST …/announcements/:id/send. */
export interface AnnouncementSent {
  id: string;
  state: 'sent';
  emailId: string;
  messageId: string;
  status: string;
  copies: number;
  encrypted: number;
}

/** GET /v1/audiences entries (addresses only for one list, to admins). */
export interface AudienceView {
  name: string;
  count: number;
  addresses?: string[];
  updatedBy: string;
  updatedAt: string;
}
