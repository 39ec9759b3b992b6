/**
 * The one-time rewrite, at start, of addresses stored before every entry point
 * normalised them (lowercase, A-label domain: normalisedEmail). SQL cannot
 * punycode, so this runs after the SQL migrations, in TypeScript, in one
 * transaction with its audit events. Rows still in the old form would
 * otherwise split one person in two: a RELAY_SECURITY_TEAM member stored as
 * `secops@bücher.example` counts for the security-team rule but mail to
 * `secops@xn--bcher-kva.example` is refused as off-roster, and the roster
 * route (which normalises its path parameter) cannot remove the row.
 *
 * Only rows holding a non-ASCII character are read (a normalised address is
 * ASCII), so a second start finds nothing to change and appends nothing.
 * Where the normalised form is already stored under a unique key, the
 * normalised row is kept and the old one dropped (it was unreachable anyway).
 *
 * Queued deliveries (their envelopes) and the SMS records are rewritten too:
 * the worker checks each envelope against the roster, now normalised, and a
 * delivery queued in the old spelling would be cancelled as "not on the
 * roster" for someone who still is.
 *
 * Left alone on purpose: the audit log (append-only, a record of what was
 * said at the time), emails and finished deliveries (records of what was
 * accepted and done), and a sent announcement with its queued copies (the
 * worker sends a copy only to the announcement's audience, under the content
 * hash that was sent: both keep the spelling they were sent with).
 */
import type { AuditLog } from './audit.js';
import type { SqlExecutor } from './sql.js';

/** What the rewrite needs besides the transaction: the one normaliser and the announcements' content hash. */
export interface AddressNormalisation {
  /** normalisedEmail (src/validation.ts): the normalised form, or undefined for a value that is no address. */
  normalise: (value: string) => string | undefined;
  /** announcementHash (src/policy/gates.ts), the hash approvals bind. */
  announcementHash: (content: { kind: 'internal' | 'external'; title: string; text: string; audience: readonly string[] }) => string;
  now: Date;
}

/** How many values the rewrite changed, per table and column; what `store.addresses_normalised` records. */
export interface NormalisationCounts {
  /** Values rewritten to their normalised form, by `table.column`. */
  rewritten: Record<string, number>;
  /** Old-form rows dropped (or, for approvals, voided) because the normalised form was already stored, by table. */
  merged: Record<string, number>;
  /** Stored values with a non-ASCII character that are no address the relay accepts: left as they are. */
  unreadable: number;
  /** Unsent announcements whose audience changed: content hash recomputed, back to draft, approvals voided. */
  announcementsVoided: number;
}

// An arbitrary constant: relays starting at once on one PostgreSQL database rewrite one after the other.
// Its own key (the migrations' is 7_263_401, the audit chain's 7_263_402): it must not hold the chain's lock while it scans.
const NORMALISE_LOCK = 7_263_403;

/** A condition true when `column` holds a character outside printable ASCII. */
function nonAscii(sql: SqlExecutor, column: string): string {
  return sql.dialect === 'sqlite' ? `${column} GLOB '*[^ -~]*'` : `${column} ~ '[^\\x01-\\x7F]'`;
}

/**
 * Rewrites every stored address with a non-ASCII character to its normalised
 * form (call inside one transaction; `audit` bound to it). Appends
 * `store.addresses_normalised` with the counts, and one
 * `announcement.audience_normalised` per announcement whose approvals it
 * voided, when anything changed. Returns the counts, or null when nothing did.
 */
export async function normaliseStoredAddresses(sql: SqlExecutor, audit: AuditLog, n: AddressNormalisation): Promise<NormalisationCounts | null> {
  if (sql.dialect === 'postgres') await sql.get('SELECT pg_advisory_xact_lock(?)', [NORMALISE_LOCK]);
  const counts: NormalisationCounts = { rewritten: {}, merged: {}, unreadable: 0, announcementsVoided: 0 };
  const add = (into: Record<string, number>, key: string, by = 1) => {
    into[key] = (into[key] ?? 0) + by;
  };
  const at = n.now.toISOString();
  const events: Parameters<AuditLog['append']>[0][] = [];

  // Tables where the address is (part of) a unique key: keep the normalised row on a clash.
  const keyed: Array<{ table: string; scope: string[] }> = [
    { table: 'roster', scope: ['incident_id'] },
    { table: 'public_keys', scope: [] },
    { table: 'incident_keys', scope: ['incident_id'] },
  ];
  for (const { table, scope } of keyed) {
    const columns = [...scope, 'email'].join(', ');
    const rows = await sql.all<Record<string, string>>(`SELECT ${columns} FROM ${table} WHERE ${nonAscii(sql, 'email')}`);
    for (const row of rows) {
      const old = row['email']!;
      const normalised = n.normalise(old);
      if (normalised === undefined) {
        counts.unreadable += 1;
        continue;
      }
      if (normalised === old) continue;
      const where = [...scope, 'email'].map((c) => `${c} = ?`).join(' AND ');
      const scopeValues = scope.map((c) => row[c]!);
      const clash = await sql.get(`SELECT 1 AS found FROM ${table} WHERE ${where}`, [...scopeValues, normalised]);
      if (clash) {
        await sql.run(`DELETE FROM ${table} WHERE ${where}`, [...scopeValues, old]);
        add(counts.merged, table);
      } else {
        await sql.run(`UPDATE ${table} SET email = ? WHERE ${where}`, [normalised, ...scopeValues, old]);
        add(counts.rewritten, `${table}.email`);
      }
    }
  }

  // Columns that name a person without a unique key: rewrite each distinct value.
  const plain: Array<[table: string, column: string]> = [
    ['tokens', 'email'],
    ['tokens', 'created_by'],
    ['incidents', 'created_by'],
    ['incidents', 'internal_source_by'],
    ['announcements', 'author'],
    ['announcements', 'sent_by'],
    ['audiences', 'updated_by'],
    ['console_sessions', 'email'],
    ['announcement_approvals', 'voided_by'],
    ['sms_messages', 'email'],
  ];
  for (const [table, column] of plain) {
    const values = await sql.all<{ value: string }>(`SELECT DISTINCT ${column} AS value FROM ${table} WHERE ${nonAscii(sql, column)}`);
    for (const { value } of values) {
      const normalised = n.normalise(value);
      if (normalised === undefined) {
        counts.unreadable += 1;
        continue;
      }
      if (normalised === value) continue;
      add(counts.rewritten, `${table}.${column}`, await sql.run(`UPDATE ${table} SET ${column} = ? WHERE ${column} = ?`, [normalised, value]));
    }
  }

  // Approvals: at most one live approval per person and announcement; a live
  // old-form approval beside a live normalised one is the same person twice.
  const approvals = await sql.all<{ id: string; announcement_id: string; approver: string; voided_at: string | null }>(
    `SELECT id, announcement_id, approver, voided_at FROM announcement_approvals WHERE ${nonAscii(sql, 'approver')}`,
  );
  for (const p of approvals) {
    const normalised = n.normalise(p.approver);
    if (normalised === undefined) {
      counts.unreadable += 1;
      continue;
    }
    if (normalised === p.approver) continue;
    const twin =
      p.voided_at === null &&
      (await sql.get('SELECT 1 AS found FROM announcement_approvals WHERE announcement_id = ? AND approver = ? AND voided_at IS NULL', [p.announcement_id, normalised]));
    if (twin) {
      await sql.run("UPDATE announcement_approvals SET approver = ?, voided_at = ?, voided_by = NULL, void_reason = 'duplicate_address' WHERE id = ?", [normalised, at, p.id]);
      add(counts.merged, 'announcement_approvals');
    } else {
      await sql.run('UPDATE announcement_approvals SET approver = ? WHERE id = ?', [normalised, p.id]);
      add(counts.rewritten, 'announcement_approvals.approver');
    }
  }

  // Queued deliveries, except copies of a sent announcement: the envelope's sender and recipients.
  const queued = await sql.all<{ id: string; envelope: string }>(
    `SELECT id, envelope FROM deliveries WHERE status = 'queued' AND ${nonAscii(sql, 'envelope')}
       AND (email_id IS NULL OR email_id NOT IN (SELECT email_id FROM announcements WHERE email_id IS NOT NULL))`,
  );
  for (const row of queued) {
    const envelope = JSON.parse(row.envelope) as { kind: string; from?: string; to?: string[] };
    if (envelope.kind !== 'email' || envelope.from === undefined || envelope.to === undefined) continue;
    const from = n.normalise(envelope.from) ?? envelope.from;
    const { audience: to, rewritten, unreadable } = normaliseAudience(envelope.to, n.normalise);
    counts.unreadable += unreadable;
    const changed = rewritten + (from !== envelope.from ? 1 : 0);
    if (changed === 0) continue;
    await sql.run("UPDATE deliveries SET envelope = ? WHERE id = ? AND status = 'queued'", [JSON.stringify({ ...envelope, from, to }), row.id]);
    add(counts.rewritten, 'deliveries.envelope', changed);
  }

  // Audience lists: each address normalised, each once.
  const lists = await sql.all<{ name: string; addresses: string }>(`SELECT name, addresses FROM audiences WHERE ${nonAscii(sql, 'addresses')}`);
  for (const list of lists) {
    const { audience, rewritten, unreadable } = normaliseAudience(JSON.parse(list.addresses) as string[], n.normalise);
    counts.unreadable += unreadable;
    if (rewritten === 0) continue;
    await sql.run('UPDATE audiences SET addresses = ? WHERE name = ?', [JSON.stringify(audience), list.name]);
    add(counts.rewritten, 'audiences.addresses', rewritten);
  }

  // Unsent announcements: a changed audience is changed content, so the hash
  // is computed again and every approval of the old content is voided, as an
  // edit would (they approved a To: line that will not be written).
  const drafts = await sql.all<{ id: string; incident_id: string; kind: 'internal' | 'external'; title: string; text: string; audience: string; content_hash: string }>(
    `SELECT id, incident_id, kind, title, text, audience, content_hash FROM announcements WHERE state <> 'sent' AND ${nonAscii(sql, 'audience')}`,
  );
  for (const a of drafts) {
    const { audience, rewritten, unreadable } = normaliseAudience(JSON.parse(a.audience) as string[], n.normalise);
    counts.unreadable += unreadable;
    if (rewritten === 0) continue;
    const contentHash = n.announcementHash({ kind: a.kind, title: a.title, text: a.text, audience });
    const updated = await sql.run("UPDATE announcements SET audience = ?, content_hash = ?, checked_hash = NULL, state = 'draft', updated_at = ? WHERE id = ? AND state <> 'sent'", [
      JSON.stringify(audience),
      contentHash,
      at,
      a.id,
    ]);
    // Sent meanwhile by a relay already running: its audience stays as sent, and so do its approvals.
    if (updated === 0) continue;
    add(counts.rewritten, 'announcements.audience', rewritten);
    const voided = await sql.run("UPDATE announcement_approvals SET voided_at = ?, voided_by = NULL, void_reason = 'address_normalised' WHERE announcement_id = ? AND voided_at IS NULL", [at, a.id]);
    counts.announcementsVoided += 1;
    events.push({
      type: 'announcement.audience_normalised',
      actor: null,
      incidentId: a.incident_id,
      outcome: 'ok',
      data: { announcementId: a.id, previousHash: a.content_hash, contentHash, audienceCount: audience.length, addressesRewritten: rewritten, voidedApprovals: voided },
    });
  }

  const changed = [...Object.values(counts.rewritten), ...Object.values(counts.merged)].some((c) => c > 0);
  if (!changed) return null;
  // Appended last: the audit chain's lock is taken once the rows are written, not held while they are.
  for (const event of events) await audit.append(event);
  await audit.append({ type: 'store.addresses_normalised', actor: null, outcome: 'ok', data: { ...counts } });
  return counts;
}

/** The audience with each address normalised and each once (order kept); how many entries changed and how many are no address. */
function normaliseAudience(addresses: readonly string[], normalise: AddressNormalisation['normalise']): { audience: string[]; rewritten: number; unreadable: number } {
  let rewritten = 0;
  let unreadable = 0;
  const out = addresses.map((a) => {
    const normalised = normalise(a);
    if (normalised === undefined) unreadable += 1;
    else if (normalised !== a) rewritten += 1;
    return normalised ?? a;
  });
  return { audience: [...new Set(out)], rewritten, unreadable };
}
