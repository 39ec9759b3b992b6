/**
 * The release gates of an announcement (issue 14; rules `internal-source` and
 * `approval`): values in, a decision out, every rule listed. The content
 * checks are src/policy/statement.ts; this decides whether checked content
 * may leave the response team.
 *
 * From the playbook ("Communicating During an Incident"): communicate
 * internally only once forensic analysis shows the attack was not sourced
 * internally, and disseminate nothing outside the response team without
 * approval. So every announcement needs the commander's record that the
 * internal source is ruled out, and an external one also needs two approvals
 * of its exact content by people other than its author: the commander, and a
 * member with role `legal` or `communications`.
 */
import { createHash } from 'node:crypto';
import { RelayError } from '../errors.js';
import type { RosterRole } from '../store/incidents.js';
import { fail, pass, skip, type Decision, type RuleOutcome } from './decision.js';
import { checkSecurityTeam } from './security-team.js';
import type { AnnouncementPlan } from './statement.js';

/** Roles whose approval fills the second slot of an external announcement. */
export const COUNSEL_ROLES: readonly RosterRole[] = ['legal', 'communications'];
/** Roles that may approve at all. */
export const APPROVER_ROLES: readonly RosterRole[] = ['commander', ...COUNSEL_ROLES];

/** What an approval binds. */
export interface AnnouncementContentFields {
  kind: 'internal' | 'external';
  title: string;
  text: string;
  audience: readonly string[];
}

/**
 * sha256 (hex) over the canonical form of (kind, title, text, audience): the
 * audience lowercased, each address once, sorted, so the order it was given in
 * does not matter and nothing else can change without changing the hash.
 */
export function announcementHash(content: AnnouncementContentFields): string {
  const audience = [...new Set(content.audience.map((a) => a.toLowerCase()))].sort();
  // A JSON array is canonical by construction; the tag names the format.
  const canonical = JSON.stringify(['incident-relay announcement v1', content.kind, content.title, content.text, audience]);
  return createHash('sha256').update(canonical, 'utf8').digest('hex');
}

/** One recorded approval, as the gate reads it. */
export interface ApprovalFact {
  approver: string;
  contentHash: string;
  voidedAt: string | null;
}

/** The incident's internal-source record. */
export interface InternalSourceFact {
  at: string;
  by: string;
}

export interface ReleaseInput {
  kind: 'internal' | 'external';
  author: string;
  /** The content hash being released now. */
  contentHash: string;
  approvals: readonly ApprovalFact[];
  /** Active roster members' roles, by address (lowercased), now. */
  roster: ReadonlyMap<string, RosterRole>;
  internalSource: InternalSourceFact | null;
}

/** Who released it. */
export interface ReleasePlan {
  /** For an external announcement, the commander and the legal/communications member whose approvals count; empty for internal. */
  approvedBy: { approver: string; role: RosterRole }[];
}

/** The approvals that count for `contentHash` now, and what each one stands for. */
function countingApprovals(input: ReleaseInput): { approver: string; role: RosterRole }[] {
  const out: { approver: string; role: RosterRole }[] = [];
  const seen = new Set<string>();
  for (const a of input.approvals) {
    // An approval counts for the exact content it saw, from someone who is not
    // the author and still holds an approving role on the roster.
    if (a.voidedAt !== null || a.contentHash !== input.contentHash || a.approver === input.author || seen.has(a.approver)) continue;
    const role = input.roster.get(a.approver);
    if (role === undefined || !APPROVER_ROLES.includes(role)) continue;
    seen.add(a.approver);
    out.push({ approver: a.approver, role });
  }
  return out;
}

/** Decides whether the announcement may go out now. Every rule is listed; the first failure's error is the refusal. */
export function decideRelease(input: ReleaseInput): Decision<ReleasePlan> {
  const rules: RuleOutcome[] = [];
  let error: RelayError | undefined;

  if (input.internalSource !== null) {
    rules.push(pass('internal-source', `the commander ${input.internalSource.by} recorded the internal source ruled out at ${input.internalSource.at}`));
  } else {
    rules.push(fail('internal-source', 'no record that forensics ruled out an internal source'));
    error ??= new RelayError(
      'internal_source_not_ruled_out',
      'Nothing about this incident leaves the response team until the commander records that forensic analysis ruled out an internal source (the attack could be happening internally). Nothing was sent; once forensics shows it, the commander records it with POST /v1/incidents/:codename/internal-source {"ruledOut": true, "note": "…"}.',
      { rule: 'internal-source' },
    );
  }

  let approvedBy: ReleasePlan['approvedBy'] = [];
  if (input.kind === 'internal') {
    rules.push(skip('approval', 'internal announcement: released by the commander\'s internal-source record; no approvals needed'));
  } else {
    const counting = countingApprovals(input);
    const commander = counting.find((c) => c.role === 'commander');
    const counsel = counting.find((c) => COUNSEL_ROLES.includes(c.role));
    const stale = input.approvals.filter((a) => a.voidedAt !== null || a.contentHash !== input.contentHash).length;
    if (commander && counsel) {
      approvedBy = [commander, counsel];
      rules.push(pass('approval', `approved for this exact content by the commander ${commander.approver} and ${counsel.role} ${counsel.approver}, neither the author`));
    } else {
      const missing = [...(commander ? [] : ['commander']), ...(counsel ? [] : ['legal or communications'])];
      rules.push(fail('approval', `missing approval by: ${missing.join(', ')}${stale > 0 ? `; ${stale} approval(s) voided by an edit` : ''}`));
      const authorIsOnlyCommander = !commander && input.roster.get(input.author) === 'commander' && ![...input.roster].some(([email, role]) => role === 'commander' && email !== input.author);
      error ??= new RelayError(
        'approval_required',
        `An external announcement goes out only once the commander and a member with role legal or communications, neither of them its author, have approved exactly this content. Still missing: ${missing.join(' and ')}${stale > 0 ? ` (${stale} earlier approval(s) were voided by an edit and must be given again)` : ''}.${authorIsOnlyCommander ? ' The author is the only commander, so the commander\'s approval cannot be given: have legal or communications write the announcement, or name a second commander.' : ''} Nothing was sent; ask them to approve with POST /v1/incidents/:codename/announcements/:id/approve.`,
        { rule: 'approval', details: { missing, approvedBy: counting.map((c) => c.approver), voided: stale } },
      );
    }
  }

  if (error) return { outcome: 'refuse', rules, error };
  return { outcome: 'accept', rules, plan: { approvedBy } };
}

/** What the approve step knows about the would-be approver. */
export interface ApproverInput {
  approver: string;
  author: string;
  /** The approver's active roster role; undefined when they are not on the roster. */
  role: RosterRole | undefined;
  /** True when they already hold a live approval of this content. */
  alreadyApproved: boolean;
}

/** Why `approver` may not approve, or undefined when they may. */
export function approvalRefusal(input: ApproverInput): RelayError | undefined {
  if (input.approver === input.author) {
    return new RelayError('approval_not_allowed', 'You wrote this announcement, so your approval does not count: approval is a second pair of eyes. Ask the commander and a member with role legal or communications to approve it.', {
      rule: 'approval',
      details: { reason: 'author' },
    });
  }
  if (input.role === undefined) {
    return new RelayError('approval_not_allowed', 'Only members of this incident\'s roster may approve its announcements: the commander, or a member with role legal or communications.', {
      rule: 'approval',
      details: { reason: 'not_on_roster' },
    });
  }
  if (!APPROVER_ROLES.includes(input.role)) {
    return new RelayError('approval_not_allowed', `Your roster role (${input.role}) does not approve announcements: the commander and members with role legal or communications do.`, {
      rule: 'approval',
      details: { reason: 'role', role: input.role },
    });
  }
  if (input.alreadyApproved) {
    return new RelayError('already_approved', 'You have already approved this content; one approval per person counts. The second approval must come from someone else.', {
      rule: 'approval',
      details: { reason: 'already_approved' },
    });
  }
  return undefined;
}

/** Everything the send step decides on, each part already decided. */
export interface SendInput {
  incidentStatus: 'open' | 'closed';
  /** Rule `security-team`: active members with role security. */
  securityMembers: number;
  /** The content checks (checkAnnouncement) at the time of sending. */
  content: Decision<AnnouncementPlan>;
  /** The release gates (decideRelease) at the time of sending. */
  release: Decision<ReleasePlan>;
}

/**
 * Whether an announcement goes out now: the incident is open, it has a
 * security member (rule `security-team`, as for all mail of the incident),
 * the content still passes its checks (dates and the roster move on), and the
 * release gates hold. Every rule is listed; the refusal is the first failure's,
 * in that order.
 */
export function decideSend(input: SendInput): Decision<{ content: AnnouncementPlan; release: ReleasePlan }> {
  const rules: RuleOutcome[] = [];
  let error: RelayError | undefined;
  if (input.incidentStatus === 'open') rules.push(pass('incident-open', 'incident is open'));
  else {
    rules.push(fail('incident-open', 'incident is closed'));
    error ??= new RelayError('incident_closed', 'This incident is closed and sends nothing more; the commander reopens it first. Nothing was sent.', { rule: 'incident-open' });
  }
  const security = checkSecurityTeam(input.securityMembers, 'email');
  rules.push(security.outcome);
  if (security.error) error ??= security.error;
  rules.push(...input.content.rules, ...input.release.rules);
  if (input.content.outcome === 'refuse') error ??= input.content.error;
  if (input.release.outcome === 'refuse') error ??= input.release.error;
  if (error || input.content.outcome === 'refuse' || input.release.outcome === 'refuse') {
    return { outcome: 'refuse', rules, error: error! };
  }
  return { outcome: 'accept', rules, plan: { content: input.content.plan, release: input.release.plan } };
}
