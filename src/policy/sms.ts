/**
 * The SMS policy (SPEC §2, rule `sms`): values in, a decision out. SMS may
 * carry exactly one text, the fixed nudge of templates/sms-nudge.txt, and only
 * to roster members' own phone numbers. No I/O: the caller looks up the roster
 * entries and when each member was last nudged, and passes the clock.
 */
import { createHash } from 'node:crypto';
import { RelayError } from '../errors.js';
import { isEmailAddress } from '../validation.js';
import { fail, pass, skip, type Decision, type RuleOutcome } from './decision.js';
import { checkSecurityTeam } from './security-team.js';

/** Why a named member gets no nudge. */
export type SmsSkipReason = 'no_phone' | 'recently_nudged' | 'removed';

/** One member's line in the 202 answer. */
export interface SmsResult {
  email: string;
  status: 'queued' | 'skipped';
  reason?: SmsSkipReason;
}

/** What the caller found on the roster for one address. */
export interface SmsMemberState {
  status: 'active' | 'removed';
  /** E.164, validated when the roster was written; null when none is on file. */
  phone: string | null;
  /** When this member (by address or phone) was last nudged, ms since the epoch. */
  lastNudgeMs: number | undefined;
}

export interface SmsPolicyInput {
  /** The authenticated responder. */
  sender: string;
  /** True when the sender is an active member of this incident's roster. */
  senderOnRoster: boolean;
  incidentStatus: 'open' | 'closed';
  /** Rule `security-team`: how many active members of the roster have role `security`. */
  securityMembers: number;
  /** The fixed nudge, exactly as templates/sms-nudge.txt holds it. */
  nudge: string;
  /** The body the client sent, if any. Only ever compared and fingerprinted, never kept. */
  body: string | undefined;
  /** "roster", or what the client listed (lowercased); anything that is not an address is refused. */
  to: 'roster' | readonly string[];
  /**
   * Roster entries by address: for "roster" every active member, otherwise each
   * listed address that was ever on this roster. Absent means never a member.
   */
  members: ReadonlyMap<string, SmsMemberState>;
  nowMs: number;
  /** RELAY_SMS_NUDGE_INTERVAL in ms. */
  intervalMs: number;
}

/** What to queue: one nudge per member, to the phone on their roster entry. */
export interface SmsPlan {
  results: SmsResult[];
  send: { email: string; phone: string }[];
}

/** Length (Unicode code points) and SHA-256 (hex, of the UTF-8 bytes) of refused text: what the audit log may hold instead of it. */
export function fingerprint(text: string): { length: number; sha256: string } {
  return { length: [...text].length, sha256: sha256Hex(text) };
}

/** SHA-256 hex of a string that must not be stored (refused text, a refused recipient entry, an unknown number). */
export function sha256Hex(text: string): string {
  return createHash('sha256').update(text, 'utf8').digest('hex');
}

/** True only for a body the relay may send: none at all, or exactly the nudge. */
export function isPermittedSmsBody(body: string | undefined, nudge: string): boolean {
  // Exact code-point equality on purpose: no trimming, no case folding, no
  // Unicode normalisation, so no variant of the nudge can carry a signal.
  return body === undefined || body === nudge;
}

// A template placeholder, as renderTemplate (src/templates.ts) would fill it.
const PLACEHOLDER = /\{[A-Za-z_][A-Za-z0-9_]*\}/;

// Something a client may have meant as a phone number: digits with the usual separators.
const PHONE_LIKE = /^\+?[\d\s().\-/]{5,}$/;

/** Decides one nudge request. Every rule is listed; the first failure's error is the refusal. */
export function decideSms(input: SmsPolicyInput): Decision<SmsPlan> {
  const rules: RuleOutcome[] = [];
  let error: RelayError | undefined;
  const refuse = (e: RelayError): void => {
    error ??= e;
  };

  // Only the nudge is ever sent, and it is sent as the file holds it: nothing
  // from the incident reaches an SMS unless the template asks for it. So the
  // rule checks the template: a placeholder there ({codename}, {label}) is a
  // slot for incident detail, refused before anything is queued.
  const slot = PLACEHOLDER.exec(input.nudge);
  if (slot === null) rules.push(pass('codename', 'the nudge has no placeholder: nothing from the incident is filled in'));
  else {
    rules.push(fail('codename', `the nudge template holds the placeholder ${slot[0]}`));
    refuse(
      new RelayError('incident_details_exposed', `templates/sms-nudge.txt holds the placeholder ${slot[0]}; SMS never carries anything about the incident. Nothing was sent; ask an admin to restore the fixed nudge "Please join Slack ASAP."`, {
        rule: 'codename',
      }),
    );
  }

  if (input.incidentStatus === 'open') rules.push(pass('incident-open', 'incident is open'));
  else {
    rules.push(fail('incident-open', 'incident is closed'));
    refuse(new RelayError('incident_closed', 'This incident is closed and sends no more nudges; ask the commander to declare a new one.', { rule: 'incident-open' }));
  }

  const listed = input.to === 'roster' ? [...input.members.keys()] : [...new Set(input.to)];
  const notAddresses = input.to === 'roster' ? [] : listed.filter((t) => !isEmailAddress(t));
  const outsiders = listed.filter((t) => isEmailAddress(t) && !input.members.has(t));
  if (!input.senderOnRoster) {
    rules.push(fail('roster', 'sender is not on the roster'));
    refuse(new RelayError('forbidden', 'You are not on this incident\'s roster, so you cannot send nudges for it.', { rule: 'roster' }));
  } else if (notAddresses.length > 0) {
    rules.push(fail('roster', `${notAddresses.length} recipient(s) named by something other than a roster address`));
    const phones = notAddresses.some((t) => PHONE_LIKE.test(t));
    refuse(
      new RelayError(
        'invalid_request',
        phones
          ? 'Name recipients by their roster email address, not by phone number: the relay texts only the phone on each member\'s roster entry. Nothing was sent.'
          : 'Every entry in "to" must be a roster member\'s email address, or "to" must be "roster". Nothing was sent.',
        { rule: 'roster', details: { field: 'to', count: notAddresses.length } },
      ),
    );
  } else if (outsiders.length > 0) {
    rules.push(fail('roster', `${outsiders.length} recipient(s) not on the roster`));
    refuse(
      new RelayError('recipient_not_on_roster', `Not on the response roster: ${outsiders.join(', ')}. Nothing was sent to anyone; ask the commander to add them, or remove them.`, {
        rule: 'roster',
        details: { recipients: outsiders },
      }),
    );
  } else {
    rules.push(pass('roster', `sender and ${listed.length} recipient(s) are, or were, on the roster`));
  }

  const security = checkSecurityTeam(input.securityMembers, 'SMS');
  rules.push(security.outcome);
  if (security.error) refuse(security.error);

  const bodyOk = isPermittedSmsBody(input.body, input.nudge);
  if (!bodyOk) {
    rules.push(fail('sms', 'body is not the fixed nudge'));
    refuse(
      new RelayError('sms_content_blocked', `SMS carries only the fixed nudge "${input.nudge}". Leave out "body" (or send exactly that text) and put everything else in Slack or encrypted email. Nothing was sent.`, {
        rule: 'sms',
      }),
    );
  }

  if (error) {
    // Still say the body was fine, so the audited rule list is complete.
    if (bodyOk) rules.push(pass('sms', input.body === undefined ? 'no body: the fixed nudge' : 'body is exactly the fixed nudge'));
    return { outcome: 'refuse', rules, error };
  }

  const results: SmsResult[] = [];
  const send: SmsPlan['send'] = [];
  const phonesThisRequest = new Set<string>();
  for (const email of listed) {
    const member = input.members.get(email)!;
    const recent = member.lastNudgeMs !== undefined && input.nowMs - member.lastNudgeMs < input.intervalMs;
    if (member.status === 'removed') results.push({ email, status: 'skipped', reason: 'removed' });
    else if (member.phone === null) results.push({ email, status: 'skipped', reason: 'no_phone' });
    // Two members sharing one phone (an on-call handset) still get one nudge per interval.
    else if (recent || phonesThisRequest.has(member.phone)) results.push({ email, status: 'skipped', reason: 'recently_nudged' });
    else {
      phonesThisRequest.add(member.phone);
      results.push({ email, status: 'queued' });
      send.push({ email, phone: member.phone });
    }
  }
  const what = input.body === undefined ? 'no body: the fixed nudge' : 'body is exactly the fixed nudge';
  rules.push(send.length > 0 ? pass('sms', `${what}, to ${send.length} roster phone number(s)`) : skip('sms', `${what}, but every named member was skipped`));
  return { outcome: 'accept', rules, plan: { results, send } };
}
