/**
 * Dates in an announcement title (rule `statement`). The playbook: include the
 * date in the title of any announcement, so it is never taken for news of a
 * new breach. Pure; every regex here is linear (each attempt reads a bounded
 * number of characters, no nested quantifiers).
 *
 * Accepted forms, on folded text (src/policy/normalise.ts: lowercased, dashes
 * made ASCII, spaces collapsed):
 *   2026-11-28                      ISO 8601, what the relay suggests
 *   November 28, 2026  Nov 28 2026  Nov. 28th, 2026
 *   28 November 2026   28 Nov 2026  28th of November, 2026
 * Not accepted: all-numeric forms other than ISO (11/28/2026, 28.11.2026,
 * 2026/11/28). 03/04/2026 is March 4 to some readers and 3 April to others, and
 * a title must not leave its date to the reader's locale.
 */

/** A calendar date found in a title. */
export interface TitleDate {
  year: number;
  month: number;
  day: number;
  /** The date as written, folded (lowercase). */
  text: string;
}

/** What the title's dates amount to. */
export interface TitleDates {
  /** Real calendar dates in an accepted form. */
  valid: TitleDate[];
  /** Accepted forms naming no real day (2026-02-30, November 31, 2026). */
  impossible: string[];
  /** All-numeric forms other than ISO. */
  numeric: string[];
}

const MONTHS: Readonly<Record<string, number>> = {
  january: 1, february: 2, march: 3, april: 4, may: 5, june: 6, july: 7, august: 8, september: 9, october: 10, november: 11, december: 12,
  jan: 1, feb: 2, mar: 3, apr: 4, jun: 6, jul: 7, aug: 8, sep: 9, sept: 9, oct: 10, nov: 11, dec: 12,
};
// Longest names first, so "september" is not read as "sep" + "tember".
const MONTH = Object.keys(MONTHS).sort((a, b) => b.length - a.length).join('|');
const ORDINAL = '(?:st|nd|rd|th)?';

const ISO = /(?<![0-9])([0-9]{4})-([0-9]{2})-([0-9]{2})(?![0-9])/g;
// November 28, 2026 / Nov. 28th 2026
const MONTH_DAY_YEAR = new RegExp(`(?<![a-z])(${MONTH})\\.? ([0-9]{1,2})${ORDINAL},? ([0-9]{4})(?![0-9])`, 'g');
// 28 November 2026 / 28th of Nov, 2026
const DAY_MONTH_YEAR = new RegExp(`(?<![0-9])([0-9]{1,2})${ORDINAL} (?:of )?(${MONTH})\\.?,? ([0-9]{4})(?![0-9])`, 'g');
// Any other all-numeric date: 11/28/2026, 28.11.2026, 2026/11/28, 28-11-2026.
const NUMERIC = /(?<![0-9])[0-9]{1,4}[-/.][0-9]{1,2}[-/.][0-9]{1,4}(?![0-9])/g;

function isRealDate(year: number, month: number, day: number): boolean {
  if (month < 1 || month > 12 || day < 1) return false;
  // Day 0 of the next month is the last day of this one (proleptic Gregorian,
  // leap years included). setUTCFullYear, not Date.UTC, which reads 0-99 as 19xx.
  const last = new Date(0);
  last.setUTCFullYear(year, month, 0);
  return day <= last.getUTCDate();
}

/** Every date in a folded title, sorted into valid, impossible and numeric-only. */
export function findTitleDates(folded: string): TitleDates {
  const out: TitleDates = { valid: [], impossible: [], numeric: [] };
  const isoSpans = new Set<number>();
  const take = (text: string, year: number, month: number, day: number): void => {
    if (isRealDate(year, month, day)) out.valid.push({ year, month, day, text });
    else out.impossible.push(text);
  };
  for (const m of folded.matchAll(ISO)) {
    isoSpans.add(m.index);
    take(m[0], Number(m[1]), Number(m[2]), Number(m[3]));
  }
  for (const m of folded.matchAll(MONTH_DAY_YEAR)) take(m[0], Number(m[3]), MONTHS[m[1]!]!, Number(m[2]));
  for (const m of folded.matchAll(DAY_MONTH_YEAR)) take(m[0], Number(m[3]), MONTHS[m[2]!]!, Number(m[1]));
  for (const m of folded.matchAll(NUMERIC)) if (!isoSpans.has(m.index)) out.numeric.push(m[0]);
  return out;
}
