/**
 * The content and audience checks of an announcement (issue 14; rules
 * `statement`, `codename`, `audience`): values in, a decision out, every rule
 * listed. Approval and the internal-source gate are decided elsewhere.
 *
 * From the playbook ("Communicating During an Incident"): the title of any
 * announcement carries its date, so it is never taken for news of a new breach;
 * the statement never says "We take security very seriously"; and until the
 * attack is known not to come from inside, the incident stays within the
 * response team, so an external announcement is no side door to insiders.
 *
 * Nothing here puts the title or text into a rule's reason or a finding: the
 * decision is audited, and the audit log holds no content. Findings name the
 * field, the kind of problem, the phrase's id, a date or an address.
 */
import { RelayError, type ErrorCode, type RuleId } from '../errors.js';
import { isEmailAddress, isTitleText } from '../validation.js';
import { findTitleDates, type TitleDate } from './dates.js';
import { fail, pass, skip, type Decision, type RuleOutcome } from './decision.js';
import { foldForMatching, sentences, words } from './normalise.js';
import { findPhrases, type CompiledPhrase } from './phrases.js';
import { findTerms, termOf, type Term } from './terms.js';

/** The longest title: it becomes a header line (Subject), where RFC 5322 allows 998 octets; 200 reads as a title. */
export const MAX_TITLE_LENGTH = 200;
/**
 * The longest text, in UTF-16 code units: a public statement is a few pages.
 * It bounds the checks' work (linear, about 50 ms at this size).
 */
export const MAX_TEXT_LENGTH = 100_000;
// How far from today a title's date may lie before it is taken for a typo in the year.
const MAX_YEARS_BACK = 10;
const MAX_DAYS_AHEAD = 366;
// Addresses listed in one finding; the count says how many there were.
const LISTED = 20;

/** One announcement and what it is checked against. */
export interface AnnouncementInput {
  kind: 'internal' | 'external';
  title: string;
  text: string;
  /** The audience, a named list already expanded by the caller. */
  audience: readonly string[];
  /** The incident: its codename, its private label (null when none) and every roster address. */
  incident: { codename: string; label: string | null; rosterAddresses: readonly string[] };
  isInternal: (address: string) => boolean;
  /** The forbidden phrases, from loadStatementPhrases(). */
  phrases: readonly CompiledPhrase[];
  /** The configured maximum number of audience addresses. */
  maxAudience: number;
  now: Date;
}

/** What the sending stage needs once the checks pass. */
export interface AnnouncementPlan {
  kind: 'internal' | 'external';
  /** The audience, lowercased, each address once, in the order given. */
  recipients: string[];
  /** The title's date as ISO 8601 (the latest accepted one). */
  titleDate: string;
}

/** What a finding is about. */
export type FindingKind =
  | 'title_not_one_line'
  | 'title_too_long'
  | 'text_too_long'
  | 'empty'
  | 'no_date'
  | 'impossible_date'
  | 'ambiguous_date'
  | 'implausible_date'
  | 'phrase'
  | 'codename'
  | 'label'
  | 'responder_address'
  | 'empty_audience'
  | 'too_many'
  | 'bad_address'
  | 'internal_address'
  | 'external_address';

/** One problem, as `details.findings` lists them. */
export interface Finding {
  rule: Extract<RuleId, 'statement' | 'codename' | 'audience'>;
  field: 'title' | 'text' | 'audience';
  kind: FindingKind;
  /** What to do about it. */
  message: string;
  /** The phrase entry's id, for kind `phrase`. */
  phrase?: string;
  /** The date as written (folded), for the date kinds. */
  date?: string;
  /** Addresses concerned (at most 20), and how many there were. */
  addresses?: string[];
  count?: number;
}

const iso = (d: { year: number; month: number; day: number }): string =>
  `${String(d.year).padStart(4, '0')}-${String(d.month).padStart(2, '0')}-${String(d.day).padStart(2, '0')}`;

function utcDay(d: { year: number; month: number; day: number }): number {
  const t = new Date(0);
  t.setUTCFullYear(d.year, d.month - 1, d.day); // not Date.UTC: it reads years 0-99 as 19xx
  return t.getTime() / 86_400_000;
}

// ------------------------------------------------------------ rule `statement`

function shapeFindings(input: AnnouncementInput): Finding[] {
  const out: Finding[] = [];
  if (typeof input.title !== 'string' || input.title.trim() === '') {
    out.push({ rule: 'statement', field: 'title', kind: 'empty', message: 'The title is empty; give the announcement a title with its date.' });
  } else if (input.title.length > MAX_TITLE_LENGTH) {
    out.push({ rule: 'statement', field: 'title', kind: 'title_too_long', message: `The title has ${input.title.length} characters; keep it to ${MAX_TITLE_LENGTH}.` });
  } else if (!isTitleText(input.title)) {
    // The title becomes a header of every copy: a line break there would start a header of its own.
    out.push({ rule: 'statement', field: 'title', kind: 'title_not_one_line', message: 'The title must be one line without control characters: no tab, CR, LF, NUL or Unicode line separators.' });
  }
  if (typeof input.text !== 'string' || input.text.trim() === '') {
    out.push({ rule: 'statement', field: 'text', kind: 'empty', message: 'The text is empty; write the announcement.' });
  } else if (input.text.length > MAX_TEXT_LENGTH) {
    out.push({ rule: 'statement', field: 'text', kind: 'text_too_long', message: `The text has ${input.text.length} characters; an announcement has at most ${MAX_TEXT_LENGTH}. Shorten it, or link to the details.` });
  }
  return out;
}

function dateFindings(foldedTitle: string, now: Date): { findings: Finding[]; date?: TitleDate } {
  const found = findTitleDates(foldedTitle);
  const today = { year: now.getUTCFullYear(), month: now.getUTCMonth() + 1, day: now.getUTCDate() };
  const example = `e.g. ${iso(today)} or ${now.toLocaleDateString('en-US', { timeZone: 'UTC', month: 'long', day: 'numeric', year: 'numeric' })}`;
  const findings: Finding[] = found.impossible.map((date) => ({
    rule: 'statement' as const,
    field: 'title' as const,
    kind: 'impossible_date' as const,
    date,
    message: `The title's date "${date}" is not a real day; correct it.`,
  }));
  const todayDay = utcDay(today);
  const plausible = found.valid.filter((d) => {
    const day = utcDay(d);
    return day <= todayDay + MAX_DAYS_AHEAD && d.year >= today.year - MAX_YEARS_BACK;
  });
  if (findings.length > 0) return { findings };
  // The latest date stands for the announcement: "Follow-up to our 2019-06-01 notice, 2026-11-28".
  const latest = plausible.reduce<TitleDate | undefined>((a, d) => (a === undefined || utcDay(d) > utcDay(a) ? d : a), undefined);
  if (latest !== undefined) return { findings, date: latest };
  if (found.valid[0] !== undefined) {
    const date = found.valid[0].text;
    findings.push({
      rule: 'statement',
      field: 'title',
      kind: 'implausible_date',
      date,
      message: `The title's date "${date}" is more than ${MAX_YEARS_BACK} years before or a year after today (${iso(today)}); check the year, or add the announcement's own date (${example}).`,
    });
  } else if (found.numeric[0] !== undefined) {
    const date = found.numeric[0];
    findings.push({
      rule: 'statement',
      field: 'title',
      kind: 'ambiguous_date',
      date,
      message: `The title's date "${date}" is all numbers, which readers in different countries read differently; write it as YYYY-MM-DD or with the month's name (${example}).`,
    });
  } else {
    findings.push({
      rule: 'statement',
      field: 'title',
      kind: 'no_date',
      message: `The title has no date; put the announcement's date in it (${example}) so readers never take it for news of a new breach.`,
    });
  }
  return { findings };
}

function phraseFindings(field: 'title' | 'text', folded: string, phrases: readonly CompiledPhrase[]): Finding[] {
  return findPhrases(sentences(folded), phrases).map((p) => ({
    rule: 'statement' as const,
    field,
    kind: 'phrase' as const,
    phrase: p.id,
    message: `The ${field} says something like "We take security very seriously" (${p.id}): ${p.reason}`,
  }));
}

// ------------------------------------------------------------- rule `codename`

type TermKind = 'codename' | 'label' | 'responder_address';

function privateTerms(input: AnnouncementInput): Array<Term<TermKind> & { address?: string }> {
  const terms: Array<Term<TermKind> & { address?: string }> = [];
  const codename = termOf('codename', input.incident.codename);
  if (codename) {
    terms.push(codename, { kind: 'codename', words: [codename.words.join('')] });
    // amber-otter-2 leaks as "Amber Otter" just as well.
    const last = codename.words.at(-1)!;
    if (codename.words.length > 2 && /^[0-9]+$/.test(last)) {
      const base = codename.words.slice(0, -1);
      terms.push({ kind: 'codename', words: base }, { kind: 'codename', words: [base.join('')] });
    }
  }
  const label = input.incident.label === null ? null : termOf('label', input.incident.label);
  if (label) terms.push(label);
  for (const address of new Set(input.incident.rosterAddresses.map((a) => a.toLowerCase()))) {
    if (!input.isInternal(address)) continue;
    const term = termOf('responder_address', address);
    if (term) terms.push({ ...term, address });
  }
  return terms;
}

function termFindings(field: 'title' | 'text', folded: string, terms: ReturnType<typeof privateTerms>): Finding[] {
  const found = findTerms(words(folded), terms);
  const out: Finding[] = [];
  if (found.some((t) => t.kind === 'codename')) {
    out.push({ rule: 'codename', field, kind: 'codename', message: `The ${field} names the incident's codename, which stays inside the response team; remove it.` });
  }
  if (found.some((t) => t.kind === 'label')) {
    out.push({ rule: 'codename', field, kind: 'label', message: `The ${field} contains the incident's private label; describe what happened in words written for readers instead.` });
  }
  const addresses = found.flatMap((t) => (t.kind === 'responder_address' && t.address !== undefined ? [t.address] : []));
  if (addresses.length > 0) {
    out.push({
      rule: 'codename',
      field,
      kind: 'responder_address',
      addresses: addresses.slice(0, LISTED),
      count: addresses.length,
      message: `The ${field} names the internal address(es) of responders (${addresses.slice(0, LISTED).join(', ')}); give a team or support address instead.`,
    });
  }
  return out;
}

// ------------------------------------------------------------- rule `audience`

function audienceFindings(input: AnnouncementInput): { findings: Finding[]; recipients: string[] } {
  const given = input.audience;
  if (given.length > input.maxAudience) {
    // Refused before any address is read: the work stays bounded by the limit.
    return {
      findings: [{ rule: 'audience', field: 'audience', kind: 'too_many', count: given.length, message: `The audience has ${given.length} addresses; this relay sends an announcement to at most ${input.maxAudience}. Split it, or ask an admin about the limit.` }],
      recipients: [],
    };
  }
  if (given.length === 0) {
    return { findings: [{ rule: 'audience', field: 'audience', kind: 'empty_audience', message: 'The audience is empty; name the addresses (or the list) the announcement is for.' }], recipients: [] };
  }
  const findings: Finding[] = [];
  const bad = given.filter((a) => typeof a !== 'string' || !isEmailAddress(a));
  if (bad.length > 0) {
    const shown = bad.slice(0, LISTED).map((a) => (typeof a === 'string' ? a.slice(0, 254).replace(/[\x00-\x1f\x7f]/g, '?') : String(a)));
    findings.push({ rule: 'audience', field: 'audience', kind: 'bad_address', addresses: shown, count: bad.length, message: `${bad.length} audience entr${bad.length === 1 ? 'y is' : 'ies are'} not an email address (${shown.join(', ')}); correct or remove them.` });
  }
  const recipients = [...new Set(given.filter((a) => typeof a === 'string' && isEmailAddress(a)).map((a) => a.toLowerCase()))];
  if (input.kind === 'external') {
    const inside = recipients.filter((a) => input.isInternal(a));
    if (inside.length > 0) {
      findings.push({
        rule: 'audience',
        field: 'audience',
        kind: 'internal_address',
        addresses: inside.slice(0, LISTED),
        count: inside.length,
        message: `An external announcement goes only to addresses outside the company, and ${inside.length === 1 ? 'this one is' : `these ${inside.length} are`} inside: ${inside.slice(0, LISTED).join(', ')}. Tell insiders with an internal announcement, once the internal source is ruled out.`,
      });
    }
  } else {
    const outside = recipients.filter((a) => !input.isInternal(a));
    if (outside.length > 0) {
      findings.push({
        rule: 'audience',
        field: 'audience',
        kind: 'external_address',
        addresses: outside.slice(0, LISTED),
        count: outside.length,
        message: `An internal announcement goes only to addresses inside the company, and ${outside.length === 1 ? 'this one is' : `these ${outside.length} are`} outside: ${outside.slice(0, LISTED).join(', ')}. Use an external announcement for them.`,
      });
    }
  }
  return { findings, recipients };
}

// ------------------------------------------------------------------ decision

function outcome(rule: Finding['rule'], findings: readonly Finding[], passReason: string): RuleOutcome {
  const mine = findings.filter((f) => f.rule === rule);
  if (mine.length === 0) return pass(rule, passReason);
  return fail(rule, mine.map((f) => `${f.field}: ${f.kind}${f.phrase ? ` (${f.phrase})` : ''}`).join('; '));
}

const ERRORS: Record<Finding['rule'], { code: ErrorCode; lead: string }> = {
  statement: { code: 'statement_rejected', lead: 'The announcement cannot go out as written' },
  codename: { code: 'incident_details_exposed', lead: 'The announcement gives away what stays inside the response team' },
  audience: { code: 'audience_invalid', lead: 'The announcement cannot go to this audience' },
};

/**
 * Checks one announcement: the title is one line and carries a real date, no
 * forbidden phrase in title or text (rule `statement`); neither names the
 * codename, the private label or an internal responder's address (`codename`);
 * the audience is valid, within the limit, and outside the company for an
 * external announcement, inside for an internal one (`audience`). Every rule is
 * listed; the refusal is the first failed rule's, its details list every finding.
 */
export function checkAnnouncement(input: AnnouncementInput): Decision<AnnouncementPlan> {
  const shape = shapeFindings(input);
  const audience = audienceFindings(input);
  const findings: Finding[] = [...shape];
  let titleDate: TitleDate | undefined;
  // Content is read only when it is well-formed, so a malformed field is
  // reported once, as what it is, and not also as a missing date.
  const titleOk = !shape.some((f) => f.field === 'title');
  const textOk = !shape.some((f) => f.field === 'text');
  const foldedTitle = titleOk ? foldForMatching(input.title) : '';
  const foldedText = textOk ? foldForMatching(input.text) : '';
  if (titleOk) {
    const dates = dateFindings(foldedTitle, input.now);
    findings.push(...dates.findings);
    titleDate = dates.date;
    findings.push(...phraseFindings('title', foldedTitle, input.phrases));
  }
  if (textOk) findings.push(...phraseFindings('text', foldedText, input.phrases));
  const terms = privateTerms(input);
  if (titleOk) findings.push(...termFindings('title', foldedTitle, terms));
  if (textOk) findings.push(...termFindings('text', foldedText, terms));
  findings.push(...audience.findings);

  const internalResponders = terms.filter((t) => t.kind === 'responder_address').length;
  const checkedFields = [...(titleOk ? ['title'] : []), ...(textOk ? ['text'] : [])];
  const rules: RuleOutcome[] = [
    outcome('statement', findings, `title dated ${titleDate ? iso(titleDate) : '-'}; none of ${input.phrases.length} forbidden phrase(s) in title or text`),
    checkedFields.length === 0
      ? skip('codename', 'title and text malformed: nothing to look in')
      : outcome('codename', findings, `${checkedFields.join(' and ')} name${checkedFields.length === 1 ? 's' : ''} neither the codename, ${input.incident.label === null ? 'a label (none set)' : 'the private label'}, nor any of ${internalResponders} internal responder address(es)`),
    outcome('audience', findings, `${input.kind} announcement to ${audience.recipients.length} address(es), all ${input.kind === 'external' ? 'outside' : 'inside'} the company, within the limit of ${input.maxAudience}`),
  ];

  if (findings.length === 0 && titleDate !== undefined) {
    return { outcome: 'accept', rules, plan: { kind: input.kind, recipients: audience.recipients, titleDate: iso(titleDate) } };
  }
  return { outcome: 'refuse', rules, error: refusal(findings, input.maxAudience) };
}

function refusal(findings: readonly Finding[], maxAudience: number): RelayError {
  const details = { findings };
  // A malformed title or text is bad input (400, like a line break in any
  // header value), not a judgement of the content.
  const malformed = findings.find((f) => f.kind === 'title_not_one_line' || f.kind === 'title_too_long' || f.kind === 'text_too_long' || (f.kind === 'empty' && f.field !== 'audience'));
  if (malformed) return new RelayError('invalid_request', `${malformed.message} Nothing was sent.`, { rule: 'statement', details: { field: malformed.field, findings } });
  const tooMany = findings.find((f) => f.kind === 'too_many');
  if (tooMany) return new RelayError('audience_too_large', `${tooMany.message} Nothing was sent.`, { rule: 'audience', details: { count: tooMany.count, max: maxAudience, findings } });
  const first = findings[0]!;
  const { code, lead } = ERRORS[first.rule];
  const mine = findings.filter((f) => f.rule === first.rule);
  return new RelayError(code, `${lead}: ${mine.map((f) => f.message).join(' ')} Nothing was sent; edit it and check again.`, { rule: first.rule, details });
}
