/**
 * Versioned schema migrations, applied in order at start on either backend.
 * Never edit a migration that has shipped: add the next one. The PostgreSQL
 * text of versions 1-5 was written when PostgreSQL support arrived (version
 * 6); it builds the same schema the SQLite text did.
 */

/** One schema step, written for each dialect (the SQL differs in types, triggers and table rebuilds). */
export interface Migration {
  version: number;
  name: string;
  sqlite: string;
  postgres: string;
}

// Text both dialects share, written once (each migration's SQL is unchanged by this).
const ANNOUNCEMENT_TABLES = `
CREATE TABLE announcements (
  id            TEXT PRIMARY KEY,
  incident_id   TEXT NOT NULL REFERENCES incidents(id),
  kind          TEXT NOT NULL CHECK (kind IN ('internal', 'external')),
  title         TEXT NOT NULL,
  text          TEXT NOT NULL,
  audience      TEXT NOT NULL,
  audience_list TEXT,
  content_hash  TEXT NOT NULL,
  checked_hash  TEXT,
  state         TEXT NOT NULL CHECK (state IN ('draft', 'checked', 'approved', 'sent')),
  author        TEXT NOT NULL,
  created_at    TEXT NOT NULL,
  updated_at    TEXT NOT NULL,
  sent_at       TEXT,
  sent_by       TEXT,
  sent_hash     TEXT,
  email_id      TEXT REFERENCES emails(id)
);
CREATE INDEX announcements_incident ON announcements (incident_id, created_at);
CREATE UNIQUE INDEX announcements_email ON announcements (email_id) WHERE email_id IS NOT NULL;

CREATE TABLE announcement_approvals (
  id              TEXT PRIMARY KEY,
  announcement_id TEXT NOT NULL REFERENCES announcements(id),
  ordinal         INTEGER NOT NULL,
  approver        TEXT NOT NULL,
  role            TEXT NOT NULL,
  content_hash    TEXT NOT NULL,
  approved_at     TEXT NOT NULL,
  voided_at       TEXT,
  voided_by       TEXT,
  void_reason     TEXT
);
CREATE INDEX announcement_approvals_of ON announcement_approvals (announcement_id);
CREATE UNIQUE INDEX announcement_approvals_live ON announcement_approvals (announcement_id, approver) WHERE voided_at IS NULL;

CREATE TABLE audiences (
  name       TEXT PRIMARY KEY,
  addresses  TEXT NOT NULL,
  updated_by TEXT NOT NULL,
  updated_at TEXT NOT NULL
);

`;

const CONSOLE_SESSIONS_TABLE = `
CREATE TABLE console_sessions (
  id_hash      TEXT PRIMARY KEY,
  token_id     TEXT NOT NULL,
  email        TEXT NOT NULL,
  created_at   TEXT NOT NULL,
  last_seen_at TEXT NOT NULL,
  expires_at   TEXT NOT NULL,
  flash        TEXT
);
CREATE INDEX console_sessions_token ON console_sessions (token_id);
CREATE INDEX console_sessions_expires ON console_sessions (expires_at);
`;

/** Migration 12's text; `tokenIdOfEvent` reads the token id from an audit event's JSON data in the dialect at hand. */
function tokenScope(tokenIdOfEvent: string): string {
  return `
ALTER TABLE tokens ADD COLUMN incident_id TEXT REFERENCES incidents(id);
UPDATE tokens SET incident_id = (
  SELECT e.incident_id FROM audit_events e
  WHERE e.type = 'token.created' AND e.incident_id IS NOT NULL AND ${tokenIdOfEvent} = tokens.id
  ORDER BY e.seq LIMIT 1
);
`;
}

export const MIGRATIONS: readonly Migration[] = [
  {
    version: 1,
    name: 'foundation',
    sqlite: `
CREATE TABLE tokens (
  id          TEXT PRIMARY KEY,
  email       TEXT NOT NULL,
  role        TEXT NOT NULL CHECK (role IN ('admin', 'responder')),
  label       TEXT,
  hash        TEXT NOT NULL UNIQUE,
  created_at  TEXT NOT NULL,
  revoked_at  TEXT
);

CREATE TABLE incidents (
  id          TEXT PRIMARY KEY,
  codename    TEXT NOT NULL UNIQUE,
  status      TEXT NOT NULL CHECK (status IN ('open', 'closed')),
  created_by  TEXT NOT NULL,
  created_at  TEXT NOT NULL,
  closed_at   TEXT
);

CREATE TABLE roster (
  incident_id   TEXT NOT NULL REFERENCES incidents(id),
  email         TEXT NOT NULL,
  name          TEXT NOT NULL,
  role          TEXT NOT NULL,
  phone         TEXT,
  slack_user_id TEXT,
  status        TEXT NOT NULL CHECK (status IN ('active', 'removed')),
  added_at      TEXT NOT NULL,
  updated_at    TEXT NOT NULL,
  removed_at    TEXT,
  PRIMARY KEY (incident_id, email)
);

CREATE TABLE public_keys (
  email       TEXT PRIMARY KEY,
  fingerprint TEXT NOT NULL,
  algorithm   TEXT NOT NULL,
  expires_at  TEXT,
  armored     TEXT NOT NULL,
  source      TEXT NOT NULL,
  updated_at  TEXT NOT NULL
);

CREATE TABLE audit_events (
  seq         INTEGER PRIMARY KEY,
  at          TEXT NOT NULL,
  type        TEXT NOT NULL,
  actor       TEXT,
  incident_id TEXT,
  outcome     TEXT NOT NULL,
  data        TEXT NOT NULL,
  prev_hash   TEXT NOT NULL,
  hash        TEXT NOT NULL
);
CREATE INDEX audit_events_incident ON audit_events (incident_id, seq);
CREATE TRIGGER audit_events_no_update BEFORE UPDATE ON audit_events
  BEGIN SELECT RAISE(ABORT, 'audit_events is append-only'); END;
CREATE TRIGGER audit_events_no_delete BEFORE DELETE ON audit_events
  BEGIN SELECT RAISE(ABORT, 'audit_events is append-only'); END;

CREATE TABLE settings (
  name  TEXT PRIMARY KEY,
  value TEXT NOT NULL
);
`,
    postgres: `
CREATE TABLE tokens (
  id          TEXT PRIMARY KEY,
  email       TEXT NOT NULL,
  role        TEXT NOT NULL CHECK (role IN ('admin', 'responder')),
  label       TEXT,
  hash        TEXT NOT NULL UNIQUE,
  created_at  TEXT NOT NULL,
  revoked_at  TEXT
);

CREATE TABLE incidents (
  id          TEXT PRIMARY KEY,
  codename    TEXT NOT NULL UNIQUE,
  status      TEXT NOT NULL CHECK (status IN ('open', 'closed')),
  created_by  TEXT NOT NULL,
  created_at  TEXT NOT NULL,
  closed_at   TEXT
);

CREATE TABLE roster (
  incident_id   TEXT NOT NULL REFERENCES incidents(id),
  email         TEXT NOT NULL,
  name          TEXT NOT NULL,
  role          TEXT NOT NULL,
  phone         TEXT,
  slack_user_id TEXT,
  status        TEXT NOT NULL CHECK (status IN ('active', 'removed')),
  added_at      TEXT NOT NULL,
  updated_at    TEXT NOT NULL,
  removed_at    TEXT,
  PRIMARY KEY (incident_id, email)
);

CREATE TABLE public_keys (
  email       TEXT PRIMARY KEY,
  fingerprint TEXT NOT NULL,
  algorithm   TEXT NOT NULL,
  expires_at  TEXT,
  armored     TEXT NOT NULL,
  source      TEXT NOT NULL,
  updated_at  TEXT NOT NULL
);

CREATE TABLE audit_events (
  seq         BIGINT PRIMARY KEY,
  at          TEXT NOT NULL,
  type        TEXT NOT NULL,
  actor       TEXT,
  incident_id TEXT,
  outcome     TEXT NOT NULL,
  data        TEXT NOT NULL,
  prev_hash   TEXT NOT NULL,
  hash        TEXT NOT NULL
);
CREATE INDEX audit_events_incident ON audit_events (incident_id, seq);
CREATE FUNCTION audit_events_append_only() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
  RAISE EXCEPTION 'audit_events is append-only';
END;
$$;
CREATE TRIGGER audit_events_no_update BEFORE UPDATE ON audit_events
  FOR EACH ROW EXECUTE FUNCTION audit_events_append_only();
CREATE TRIGGER audit_events_no_delete BEFORE DELETE ON audit_events
  FOR EACH ROW EXECUTE FUNCTION audit_events_append_only();
CREATE TRIGGER audit_events_no_truncate BEFORE TRUNCATE ON audit_events
  FOR EACH STATEMENT EXECUTE FUNCTION audit_events_append_only();

CREATE TABLE settings (
  name  TEXT PRIMARY KEY,
  value TEXT NOT NULL
);
`,
  },
  {
    version: 2,
    name: 'outbox',
    sqlite: `
CREATE TABLE emails (
  id             TEXT PRIMARY KEY,
  incident_id    TEXT NOT NULL REFERENCES incidents(id),
  message_id     TEXT NOT NULL UNIQUE,
  sender         TEXT NOT NULL,
  encrypted      INTEGER NOT NULL,
  external_chain INTEGER NOT NULL,
  recipients     TEXT NOT NULL,
  created_at     TEXT NOT NULL
);
CREATE INDEX emails_incident ON emails (incident_id);

CREATE TABLE sms_messages (
  id          TEXT PRIMARY KEY,
  incident_id TEXT REFERENCES incidents(id),
  email       TEXT,
  phone       TEXT NOT NULL,
  created_at  TEXT NOT NULL,
  created_ms  INTEGER NOT NULL
);
CREATE INDEX sms_messages_phone ON sms_messages (phone, created_ms);
CREATE INDEX sms_messages_email ON sms_messages (email, created_ms);

-- One row per envelope to deliver. The body is what goes on the wire, already
-- composed and encrypted; it is purged once delivered.
CREATE TABLE deliveries (
  id              TEXT PRIMARY KEY,
  channel         TEXT NOT NULL CHECK (channel IN ('email', 'sms')),
  email_id        TEXT REFERENCES emails(id),
  sms_id          TEXT REFERENCES sms_messages(id),
  incident_id     TEXT,
  envelope        TEXT NOT NULL,
  body            BLOB,
  status          TEXT NOT NULL CHECK (status IN ('queued', 'sent', 'failed')),
  attempts        INTEGER NOT NULL DEFAULT 0,
  created_ms      INTEGER NOT NULL,
  next_attempt_ms INTEGER NOT NULL,
  last_error      TEXT,
  provider_id     TEXT,
  sent_at         TEXT
);
CREATE INDEX deliveries_due ON deliveries (status, next_attempt_ms);
CREATE INDEX deliveries_email ON deliveries (email_id);
CREATE INDEX deliveries_sms ON deliveries (sms_id);

CREATE TABLE idempotency (
  token_id    TEXT NOT NULL,
  key         TEXT NOT NULL,
  route       TEXT NOT NULL,
  status      INTEGER NOT NULL,
  response    TEXT NOT NULL,
  created_at  TEXT NOT NULL,
  PRIMARY KEY (token_id, key)
);
`,
    postgres: `
CREATE TABLE emails (
  id             TEXT PRIMARY KEY,
  incident_id    TEXT NOT NULL REFERENCES incidents(id),
  message_id     TEXT NOT NULL UNIQUE,
  sender         TEXT NOT NULL,
  encrypted      INTEGER NOT NULL,
  external_chain INTEGER NOT NULL,
  recipients     TEXT NOT NULL,
  created_at     TEXT NOT NULL
);
CREATE INDEX emails_incident ON emails (incident_id);

CREATE TABLE sms_messages (
  id          TEXT PRIMARY KEY,
  incident_id TEXT REFERENCES incidents(id),
  email       TEXT,
  phone       TEXT NOT NULL,
  created_at  TEXT NOT NULL,
  created_ms  BIGINT NOT NULL
);
CREATE INDEX sms_messages_phone ON sms_messages (phone, created_ms);
CREATE INDEX sms_messages_email ON sms_messages (email, created_ms);

CREATE TABLE deliveries (
  id              TEXT PRIMARY KEY,
  channel         TEXT NOT NULL CHECK (channel IN ('email', 'sms')),
  email_id        TEXT REFERENCES emails(id),
  sms_id          TEXT REFERENCES sms_messages(id),
  incident_id     TEXT,
  envelope        TEXT NOT NULL,
  body            BYTEA,
  status          TEXT NOT NULL CONSTRAINT deliveries_status_check CHECK (status IN ('queued', 'sent', 'failed')),
  attempts        INTEGER NOT NULL DEFAULT 0,
  created_ms      BIGINT NOT NULL,
  next_attempt_ms BIGINT NOT NULL,
  last_error      TEXT,
  provider_id     TEXT,
  sent_at         TEXT
);
CREATE INDEX deliveries_due ON deliveries (status, next_attempt_ms);
CREATE INDEX deliveries_email ON deliveries (email_id);
CREATE INDEX deliveries_sms ON deliveries (sms_id);

CREATE TABLE idempotency (
  token_id    TEXT NOT NULL,
  key         TEXT NOT NULL,
  route       TEXT NOT NULL,
  status      INTEGER NOT NULL,
  response    TEXT NOT NULL,
  created_at  TEXT NOT NULL,
  PRIMARY KEY (token_id, key)
);
`,
  },
  {
    version: 3,
    name: 'slack',
    sqlite: `
CREATE TABLE slack_channels (
  incident_id TEXT PRIMARY KEY REFERENCES incidents(id),
  channel_id  TEXT,
  name        TEXT,
  state       TEXT NOT NULL CHECK (state IN ('pending', 'ready', 'failed', 'archived')),
  reason      TEXT,
  updated_at  TEXT NOT NULL
);
ALTER TABLE roster ADD COLUMN slack_status TEXT;
`,
    postgres: `
CREATE TABLE slack_channels (
  incident_id TEXT PRIMARY KEY REFERENCES incidents(id),
  channel_id  TEXT,
  name        TEXT,
  state       TEXT NOT NULL CHECK (state IN ('pending', 'ready', 'failed', 'archived')),
  reason      TEXT,
  updated_at  TEXT NOT NULL
);
ALTER TABLE roster ADD COLUMN slack_status TEXT;
`,
  },
  {
    version: 4,
    name: 'slack_welcome',
    // The pinned welcome's message ts: a setup retried after a failure must not
    // post and pin the welcome a second time.
    sqlite: `
ALTER TABLE slack_channels ADD COLUMN welcome_ts TEXT;
`,
    postgres: `
ALTER TABLE slack_channels ADD COLUMN welcome_ts TEXT;
`,
  },
  {
    version: 5,
    name: 'incident_keys',
    // A key given with a roster entry is vouched for by that incident's
    // commander or deputy only: it must not replace the owner's key in every
    // other incident (a responder could otherwise declare an incident of their
    // own and swap outside counsel's key everywhere).
    sqlite: `
CREATE TABLE incident_keys (
  incident_id TEXT NOT NULL REFERENCES incidents(id),
  email       TEXT NOT NULL,
  fingerprint TEXT NOT NULL,
  algorithm   TEXT NOT NULL,
  expires_at  TEXT,
  armored     TEXT NOT NULL,
  updated_at  TEXT NOT NULL,
  PRIMARY KEY (incident_id, email)
);
-- Keys a roster entry filed relay-wide before this migration cannot be told
-- apart from a swapped key; drop them (fail closed: such a recipient is
-- refused with missing_public_key until the owner or an admin uploads a key).
DELETE FROM public_keys WHERE source = 'roster';
`,
    postgres: `
CREATE TABLE incident_keys (
  incident_id TEXT NOT NULL REFERENCES incidents(id),
  email       TEXT NOT NULL,
  fingerprint TEXT NOT NULL,
  algorithm   TEXT NOT NULL,
  expires_at  TEXT,
  armored     TEXT NOT NULL,
  updated_at  TEXT NOT NULL,
  PRIMARY KEY (incident_id, email)
);
DELETE FROM public_keys WHERE source = 'roster';
`,
  },
  {
    version: 6,
    name: 'replicas',
    // Several relays on one database (PostgreSQL): deliveries are leased in
    // the database rather than remembered in a process; 'cancelled' is the
    // status of a delivery whose recipient left the roster before it went;
    // named leases run periodic work on one relay at a time; a client's own
    // Message-ID is kept as an alias of the relay's so replies from a Sent
    // folder stay in their thread; idempotency keys remember a fingerprint of
    // the request and when they were made (they expire); send-limit buckets
    // are shared by every relay on the database.
    sqlite: `
CREATE TABLE deliveries_v6 (
  id              TEXT PRIMARY KEY,
  channel         TEXT NOT NULL CHECK (channel IN ('email', 'sms')),
  email_id        TEXT REFERENCES emails(id),
  sms_id          TEXT REFERENCES sms_messages(id),
  incident_id     TEXT,
  envelope        TEXT NOT NULL,
  body            BLOB,
  status          TEXT NOT NULL CHECK (status IN ('queued', 'sent', 'failed', 'cancelled')),
  attempts        INTEGER NOT NULL DEFAULT 0,
  created_ms      INTEGER NOT NULL,
  next_attempt_ms INTEGER NOT NULL,
  last_error      TEXT,
  provider_id     TEXT,
  sent_at         TEXT,
  lease_owner     TEXT,
  lease_until_ms  INTEGER
);
INSERT INTO deliveries_v6 (id, channel, email_id, sms_id, incident_id, envelope, body, status, attempts, created_ms, next_attempt_ms, last_error, provider_id, sent_at)
  SELECT id, channel, email_id, sms_id, incident_id, envelope, body, status, attempts, created_ms, next_attempt_ms, last_error, provider_id, sent_at FROM deliveries;
DROP TABLE deliveries;
ALTER TABLE deliveries_v6 RENAME TO deliveries;
CREATE INDEX deliveries_due ON deliveries (status, next_attempt_ms);
CREATE INDEX deliveries_email ON deliveries (email_id);
CREATE INDEX deliveries_sms ON deliveries (sms_id);
CREATE INDEX deliveries_incident ON deliveries (incident_id, status);
CREATE INDEX deliveries_lease ON deliveries (lease_owner) WHERE lease_owner IS NOT NULL;

CREATE TABLE leases (
  name     TEXT PRIMARY KEY,
  owner    TEXT NOT NULL,
  until_ms INTEGER NOT NULL
);

CREATE TABLE message_aliases (
  alias    TEXT PRIMARY KEY,
  email_id TEXT NOT NULL REFERENCES emails(id)
);

ALTER TABLE idempotency ADD COLUMN fingerprint TEXT;
ALTER TABLE idempotency ADD COLUMN created_ms INTEGER NOT NULL DEFAULT 0;

CREATE TABLE send_limits (
  key    TEXT PRIMARY KEY,
  tokens REAL NOT NULL,
  at_ms  INTEGER NOT NULL
);
`,
    postgres: `
ALTER TABLE deliveries DROP CONSTRAINT deliveries_status_check;
ALTER TABLE deliveries ADD CONSTRAINT deliveries_status_check CHECK (status IN ('queued', 'sent', 'failed', 'cancelled'));
ALTER TABLE deliveries ADD COLUMN lease_owner TEXT, ADD COLUMN lease_until_ms BIGINT;
CREATE INDEX deliveries_incident ON deliveries (incident_id, status);
CREATE INDEX deliveries_lease ON deliveries (lease_owner) WHERE lease_owner IS NOT NULL;

CREATE TABLE leases (
  name     TEXT PRIMARY KEY,
  owner    TEXT NOT NULL,
  until_ms BIGINT NOT NULL
);

CREATE TABLE message_aliases (
  alias    TEXT PRIMARY KEY,
  email_id TEXT NOT NULL REFERENCES emails(id)
);

ALTER TABLE idempotency ADD COLUMN fingerprint TEXT, ADD COLUMN created_ms BIGINT NOT NULL DEFAULT 0;

CREATE TABLE send_limits (
  key    TEXT PRIMARY KEY,
  tokens DOUBLE PRECISION NOT NULL,
  at_ms  BIGINT NOT NULL
);
`,
  },
  {
    version: 7,
    name: 'sealed_payloads',
    // An encrypted message is signed and encrypted once: its shared encrypted
    // part and the envelope around the armor are stored once per email, and
    // each delivery holds only its copy's session key packets (body_kind
    // 'sealed'); the copy is written out when it is sent. A message with 99
    // Bcc recipients stores its attachment once, not 100 times.
    sqlite: `
CREATE TABLE email_payloads (
  email_id TEXT PRIMARY KEY REFERENCES emails(id),
  head     BLOB NOT NULL,
  tail     BLOB NOT NULL,
  shared   BLOB NOT NULL
);
ALTER TABLE deliveries ADD COLUMN body_kind TEXT NOT NULL DEFAULT 'raw' CHECK (body_kind IN ('raw', 'sealed'));
`,
    postgres: `
CREATE TABLE email_payloads (
  email_id TEXT PRIMARY KEY REFERENCES emails(id),
  head     BYTEA NOT NULL,
  tail     BYTEA NOT NULL,
  shared   BYTEA NOT NULL
);
ALTER TABLE deliveries ADD COLUMN body_kind TEXT NOT NULL DEFAULT 'raw' CHECK (body_kind IN ('raw', 'sealed'));
`,
  },
  {
    version: 8,
    name: 'api_views',
    // Issue 12's API: who issued a token and when it was last used (written at
    // most once a minute per token, not per request); an incident's private
    // label (shown to its roster and admins, never sent anywhere); an email's
    // Bcc recipients apart from the rest, so views that may not show them can
    // take them out (NULL for emails queued before this version: unknown, so
    // such views hide every recipient of their delivery events); and indexes
    // for the paged email list and the audit filters.
    sqlite: `
ALTER TABLE tokens ADD COLUMN created_by TEXT;
ALTER TABLE tokens ADD COLUMN last_used_at TEXT;
ALTER TABLE incidents ADD COLUMN label TEXT;
ALTER TABLE emails ADD COLUMN bcc TEXT;
CREATE INDEX emails_incident_created ON emails (incident_id, created_at, id);
CREATE INDEX audit_events_type ON audit_events (type, seq);
CREATE INDEX audit_events_actor ON audit_events (actor, seq);
CREATE INDEX tokens_email ON tokens (email);
`,
    postgres: `
ALTER TABLE tokens ADD COLUMN created_by TEXT, ADD COLUMN last_used_at TEXT;
ALTER TABLE incidents ADD COLUMN label TEXT;
ALTER TABLE emails ADD COLUMN bcc TEXT;
CREATE INDEX emails_incident_created ON emails (incident_id, created_at, id);
CREATE INDEX audit_events_type ON audit_events (type, seq);
CREATE INDEX audit_events_actor ON audit_events (actor, seq);
CREATE INDEX tokens_email ON tokens (email);
`,
  },
  {
    version: 9,
    name: 'announcements',
    // Issue 14: announcements are the one way anything about an incident
    // reaches people off its roster. A draft's content hash binds its
    // approvals (an edit voids them; at most one live approval per person);
    // email_id marks the email whose deliveries the worker checks against the
    // announcement instead of the roster. Audiences are admin-kept lists. The
    // commander's "internal source ruled out" record lives on the incident.
    sqlite: `${ANNOUNCEMENT_TABLES}ALTER TABLE incidents ADD COLUMN internal_source_at TEXT;
ALTER TABLE incidents ADD COLUMN internal_source_by TEXT;
ALTER TABLE incidents ADD COLUMN internal_source_note TEXT;
`,
    postgres: `${ANNOUNCEMENT_TABLES}ALTER TABLE incidents ADD COLUMN internal_source_at TEXT, ADD COLUMN internal_source_by TEXT, ADD COLUMN internal_source_note TEXT;
`,
  },
  {
    version: 10,
    name: 'audit_checkpoints',
    // Signed checkpoints of the audit chain's head (issue 10 §16-17): the
    // relay key signs (seq, hash, at, fingerprint) so a chain rewritten and
    // re-hashed behind the store no longer matches; verification starts from
    // the newest checkpoint that still holds. Append-only, like the chain.
    sqlite: `
CREATE TABLE audit_checkpoints (
  seq         INTEGER PRIMARY KEY,
  hash        TEXT NOT NULL,
  at          TEXT NOT NULL,
  fingerprint TEXT NOT NULL,
  signature   TEXT NOT NULL
);
CREATE TRIGGER audit_checkpoints_no_update BEFORE UPDATE ON audit_checkpoints
  BEGIN SELECT RAISE(ABORT, 'audit_checkpoints is append-only'); END;
CREATE TRIGGER audit_checkpoints_no_delete BEFORE DELETE ON audit_checkpoints
  BEGIN SELECT RAISE(ABORT, 'audit_checkpoints is append-only'); END;
`,
    postgres: `
CREATE TABLE audit_checkpoints (
  seq         BIGINT PRIMARY KEY,
  hash        TEXT NOT NULL,
  at          TEXT NOT NULL,
  fingerprint TEXT NOT NULL,
  signature   TEXT NOT NULL
);
CREATE FUNCTION audit_checkpoints_append_only() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
  RAISE EXCEPTION 'audit_checkpoints is append-only';
END;
$$;
CREATE TRIGGER audit_checkpoints_no_update BEFORE UPDATE ON audit_checkpoints
  FOR EACH ROW EXECUTE FUNCTION audit_checkpoints_append_only();
CREATE TRIGGER audit_checkpoints_no_delete BEFORE DELETE ON audit_checkpoints
  FOR EACH ROW EXECUTE FUNCTION audit_checkpoints_append_only();
CREATE TRIGGER audit_checkpoints_no_truncate BEFORE TRUNCATE ON audit_checkpoints
  FOR EACH STATEMENT EXECUTE FUNCTION audit_checkpoints_append_only();
`,
  },
  {
    version: 11,
    name: 'console_sessions',
    // Sessions of the web console (issue 13), in the database so that every
    // replica behind a load balancer knows them. The cookie holds a random id;
    // only its SHA-256 is stored, so a copy of the database signs nobody in.
    // The token id lets a revoked token end its sessions at the next request;
    // `flash` is the one-shot result shown after a POST-redirect-GET
    // (addresses and statuses, never message content).
    sqlite: CONSOLE_SESSIONS_TABLE,
    postgres: CONSOLE_SESSIONS_TABLE,
  },
  {
    version: 12,
    name: 'token_scope',
    // A token a commander issues holds for that one incident (its scope):
    // otherwise a commander who adds an address to their roster and issues
    // it a token could act as that person everywhere, in other incidents and
    // as a second approver of their own announcement. NULL: no scope (tokens
    // an admin issues without an incident, and the bootstrap token). Tokens
    // issued for an incident before this version take the incident their
    // token.created event recorded, so the rule holds for them too.
    sqlite: tokenScope("json_extract(e.data, '$.id')"),
    postgres: tokenScope("(e.data::jsonb ->> 'id')"),
  },
];
