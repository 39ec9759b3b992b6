/**
 * The email policy (SPEC §2): values in, a decision out. No I/O: the caller
 * looks up the roster, the key states and the reply chain, and passes the clock.
 */
import { RelayError } from '../errors.js';
import { fail, pass, skip, type Decision, type RuleOutcome } from './decision.js';
import { checkSecurityTeam } from './security-team.js';
import { foldForMatching, words } from './normalise.js';
import { findTerms, termOf, type Term } from './terms.js';

/** What the key lookup found for an address, checked at the decision's time. */
export type KeyState = { state: 'usable' } | { state: 'missing' } | { state: 'unusable'; reason: string };

/** A value the composer will write where mail servers can read it, and the request field it came from. */
export interface HeaderValue {
  /** e.g. `to[0].name`, `attachments[1].filename`, `subject`. */
  field: string;
  value: string;
}

/** What rule `codename` looks at: where each value ends up, and what must not be in any. */
export interface HeaderExposure {
  /** Values readable on the way even when the message is encrypted (the outer headers carry bare addresses, so the pipeline passes none today). */
  always: readonly HeaderValue[];
  /** Display names, the topic (subject) and attachment file names: readable on the way only when the message goes plain. */
  whenPlain: readonly HeaderValue[];
  /** The incident's private terms: its label (issue 12). */
  forbiddenTerms: readonly string[];
}

export interface EmailPolicyInput {
  /** The authenticated responder. */
  sender: string;
  /** SMTP only: the MAIL FROM address and the From: header address, which must be the sender. */
  claimedSenders: readonly string[];
  incidentStatus: 'open' | 'closed';
  /** Active roster addresses, lowercased. */
  roster: ReadonlySet<string>;
  /** Rule `security-team`: how many active members of the roster have role `security`. */
  securityMembers: number;
  to: readonly string[];
  cc: readonly string[];
  bcc: readonly string[];
  /** True when the sender supplied a subject (it becomes the Topic line). */
  hasSubject: boolean;
  /** True when In-Reply-To/References reach a relay message whose chain had an external recipient. */
  chainExternal: boolean;
  isInternal: (address: string) => boolean;
  encryptMode: 'external' | 'always';
  /** Key states for every recipient and the sender, checked by the caller at the decision's time. Absent means missing. */
  keys: ReadonlyMap<string, KeyState>;
  /**
   * Rule `codename`. Absent until the pipeline supplies it: the rule is then
   * `skip`, never a `pass` it did not check.
   */
  exposure?: HeaderExposure;
}

export interface EmailPlan {
  encrypt: boolean;
  /** Why: 'external-recipient', 'external-chain', 'always', or null for plain. */
  encryptReason: 'external-recipient' | 'external-chain' | 'always' | null;
  /** To and Cc, deduplicated; these appear in headers. */
  to: string[];
  cc: string[];
  /** Bcc recipients not already visible; never in any header. */
  bcc: string[];
  /** Keys for the visible copy: every visible recipient, plus the sender when their key is usable. */
  visibleKeyHolders: string[];
  /** True when this message makes or keeps its chain external. */
  chainExternal: boolean;
}

function unique(addresses: readonly string[], except: ReadonlySet<string> = new Set()): string[] {
  const seen = new Set<string>();
  for (const a of addresses) if (!except.has(a)) seen.add(a);
  return [...seen];
}

/**
 * What the policy finds in a draft, every problem at once (not only the one
 * that refuses it first): the policy preview shows these, and decideEmail
 * decides from exactly these. Pure.
 */
export interface EmailFindings {
  /** To and Cc deduplicated, Bcc without the visible ones: as the plan has them. */
  to: string[];
  cc: string[];
  bcc: string[];
  /** Recipients outside the internal domains. */
  externalRecipients: string[];
  /** Why the message must be encrypted; null when it may go plain. */
  encryptReason: EmailPlan['encryptReason'];
  /** Recipients not on the roster (the sender's own standing is rule `roster` too, see decideEmail). */
  offRoster: string[];
  /** When encrypting: recipients without a key on file. */
  missingKeys: string[];
  /** When encrypting: recipients whose key cannot be used, and why. */
  unusableKeys: { address: string; reason: string }[];
}

/** The findings of one draft; see EmailFindings. */
export function emailFindings(input: EmailPolicyInput): EmailFindings {
  const to = unique(input.to);
  const cc = unique(input.cc, new Set(to));
  const bcc = unique(input.bcc, new Set([...to, ...cc]));
  const everyone = [...to, ...cc, ...bcc];
  const externalRecipients = everyone.filter((a) => !input.isInternal(a));
  const encryptReason: EmailPlan['encryptReason'] =
    externalRecipients.length > 0 ? 'external-recipient' : input.chainExternal ? 'external-chain' : input.encryptMode === 'always' ? 'always' : null;
  const encrypt = encryptReason !== null;
  return {
    to,
    cc,
    bcc,
    externalRecipients,
    encryptReason,
    offRoster: everyone.filter((a) => !input.roster.has(a)),
    missingKeys: encrypt ? everyone.filter((a) => (input.keys.get(a)?.state ?? 'missing') === 'missing') : [],
    unusableKeys: encrypt
      ? everyone.flatMap((a) => {
          const key = input.keys.get(a);
          return key?.state === 'unusable' ? [{ address: a, reason: key.reason }] : [];
        })
      : [],
  };
}

/** Decides one email (`findings`: emailFindings of the same input, when the caller has them). Every rule is listed; the first failure's error is the refusal. */
export function decideEmail(input: EmailPolicyInput, findings: EmailFindings = emailFindings(input)): Decision<EmailPlan> {
  const rules: RuleOutcome[] = [];
  const { to, cc, bcc } = findings;
  const everyone = [...to, ...cc, ...bcc];
  let error: RelayError | undefined;
  const refuse = (e: RelayError): void => {
    error ??= e;
  };

  rules.push(pass('subject', input.hasSubject ? 'Subject fixed to Attorney Work Project; the sender\'s subject moved to the Topic line' : 'Subject fixed to Attorney Work Project'));
  const externalRecipient = findings.externalRecipients.length > 0;
  const encryptReason = findings.encryptReason;
  const encrypt = encryptReason !== null;

  const codename = checkExposure(input.exposure, encrypt);
  rules.push(codename.outcome);

  if (input.incidentStatus === 'open') rules.push(pass('incident-open', 'incident is open'));
  else {
    rules.push(fail('incident-open', 'incident is closed'));
    refuse(new RelayError('incident_closed', 'This incident is closed and accepts no new messages; ask the commander to declare a new one.', { rule: 'incident-open' }));
  }

  const impostors = unique(input.claimedSenders.map((a) => a.toLowerCase())).filter((a) => a !== input.sender);
  if (impostors.length === 0) rules.push(pass('sender', `From is the authenticated responder ${input.sender}`));
  else {
    rules.push(fail('sender', `claimed sender ${impostors.join(', ')} is not the authenticated responder`));
    refuse(new RelayError('sender_mismatch', `You are authenticated as ${input.sender}; you cannot send as ${impostors.join(', ')}.`, { rule: 'sender', details: { claimed: impostors } }));
  }

  const outsiders = findings.offRoster;
  const senderOnRoster = input.roster.has(input.sender);
  if (outsiders.length === 0 && senderOnRoster) rules.push(pass('roster', `sender and ${everyone.length} recipient(s) are on the roster`));
  else if (!senderOnRoster) {
    rules.push(fail('roster', 'sender is not on the roster'));
    refuse(new RelayError('forbidden', 'You are not on this incident\'s roster, so you cannot send for it.', { rule: 'roster' }));
  } else {
    rules.push(fail('roster', `${outsiders.length} recipient(s) not on the roster`));
    refuse(
      new RelayError(
        'recipient_not_on_roster',
        `Not on the response roster: ${outsiders.join(', ')}. Nothing was sent to anyone; ask the commander to add them, or remove them. To tell people outside the response team, write an announcement (POST /v1/incidents/:codename/announcements): it goes out once approved.`,
        {
          rule: 'roster',
          details: { recipients: outsiders },
        },
      ),
    );
  }

  const security = checkSecurityTeam(input.securityMembers, 'email');
  rules.push(security.outcome);
  if (security.error) refuse(security.error);

  if (!encrypt) rules.push(skip('encryption', 'all recipients internal, chain internal, RELAY_ENCRYPT=external'));
  else {
    const missing = findings.missingKeys;
    const unusable = findings.unusableKeys;
    if (missing.length > 0) {
      rules.push(fail('encryption', `${encryptReason}: no public key for ${missing.length} recipient(s)`));
      refuse(
        new RelayError('missing_public_key', `This message must be encrypted (${encryptReason}) but there is no public key for ${missing.join(', ')}. Nothing was sent.`, {
          rule: 'encryption',
          details: { recipients: missing },
        }),
      );
    } else if (unusable.length > 0) {
      rules.push(fail('encryption', `${encryptReason}: unusable key for ${unusable.length} recipient(s)`));
      refuse(
        new RelayError('unusable_public_key', `This message must be encrypted but these keys cannot be used: ${unusable.map((u) => `${u.address} (${u.reason})`).join(', ')}. Nothing was sent.`, {
          rule: 'encryption',
          details: { recipients: unusable.map((u) => u.address), reasons: Object.fromEntries(unusable.map((u) => [u.address, u.reason])) },
        }),
      );
    } else {
      rules.push(pass('encryption', `${encryptReason}: signed and encrypted to every recipient's usable key`));
    }
  }

  // After the others: a closed incident, an outsider or a missing key is what to fix first.
  if (codename.error) refuse(codename.error);

  rules.push(bcc.length > 0 ? pass('bcc', `${bcc.length} Bcc recipient(s): no header, ${encrypt ? 'one copy each, encrypted to their key only' : 'envelope only'}`) : skip('bcc', 'no Bcc recipients'));

  if (error) return { outcome: 'refuse', rules, error };
  const senderKeyUsable = input.keys.get(input.sender)?.state === 'usable';
  return {
    outcome: 'accept',
    rules,
    plan: {
      encrypt,
      encryptReason,
      to,
      cc,
      bcc,
      visibleKeyHolders: encrypt ? unique([...to, ...cc, ...(senderKeyUsable ? [input.sender] : [])]) : [],
      chainExternal: externalRecipient || input.chainExternal,
    },
  };
}

/**
 * Rule `codename` for one email: the subject is fixed and addresses and
 * Message-IDs are validated, so what could carry the incident's nature into a
 * header is free text: display names (in every copy's headers, outer ones
 * included), and, when the message goes plain, the topic and file names.
 */
function checkExposure(exposure: HeaderExposure | undefined, encrypt: boolean): { outcome: RuleOutcome; error?: RelayError } {
  if (exposure === undefined) return { outcome: skip('codename', 'header-bound values not supplied to the policy') };
  const exposed = encrypt ? exposure.always : [...exposure.always, ...exposure.whenPlain];
  const terms = exposure.forbiddenTerms.flatMap((t): Term[] => {
    const term = termOf('private', t);
    return term ? [term] : [];
  });
  if (terms.length === 0) return { outcome: pass('codename', `no private label set: nothing to look for in ${exposed.length} header-bound value(s)`) };
  const fields = exposed.filter((v) => findTerms(words(foldForMatching(v.value)), terms).length > 0).map((v) => v.field);
  const where = `${exposed.length} header-bound value(s)${encrypt ? ' (topic and file names are inside the encryption)' : ''}`;
  if (fields.length === 0) return { outcome: pass('codename', `the private label appears in none of ${where}`) };
  return {
    outcome: fail('codename', `the private label appears in ${fields.length} of ${where}: ${fields.join(', ')}`),
    error: new RelayError(
      'incident_details_exposed',
      `The incident's private label appears in ${fields.join(', ')}, which every mail server on the way can read${encrypt ? ' even though the message is encrypted' : ''}. Nothing was sent; reword ${fields.length === 1 ? 'it' : 'them'} so only the codename names the incident.`,
      { rule: 'codename', details: { fields } },
    ),
  };
}
