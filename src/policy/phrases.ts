/**
 * Forbidden phrases for announcements (rule `statement`): a small pattern
 * language over words, compiled once and matched in linear time.
 *
 * Not regular expressions on purpose: the list is configuration, and a regex
 * written there could backtrack catastrophically on a hostile body. A pattern
 * is words separated by spaces:
 *
 *   `word`          that word
 *   `secur*`        a word starting with "secur" (at least 3 letters before *)
 *   `take|takes`    any of these words (each may end in *)
 *   `~4`            up to 4 other words in between (1..10)
 *
 * Matching is on folded text (src/policy/normalise.ts), word by word, and never
 * across the end of a sentence or clause (. ! ? ; :).
 */
import type { Sentence } from './normalise.js';

/** One entry of the phrase list, as templates/statement-phrases.json holds it. */
export interface PhraseEntry {
  /** Short stable name, reported in findings: lowercase letters, digits, hyphens. */
  id: string;
  pattern: string;
  /** Why it is refused, shown to the author. */
  reason: string;
}

interface Step {
  readonly words: ReadonlySet<string>;
  readonly prefixes: readonly string[];
  /** Other words allowed between the previous step and this one. */
  readonly gapBefore: number;
}

/** A phrase ready to match. */
export interface CompiledPhrase {
  readonly id: string;
  readonly reason: string;
  readonly steps: readonly Step[];
}

const MAX_STEPS = 12;
const MAX_ALTERNATIVES = 20;
const MAX_GAP = 10;
const MAX_ENTRIES = 100;
const WORD = /^[a-z0-9']{1,40}$/;
const PREFIX = /^[a-z0-9']{3,40}\*$/;
const GAP = /^~([0-9]{1,2})$/;
const ID = /^[a-z0-9][a-z0-9-]{0,59}$/;

/** Compiles one pattern; throws an Error saying what is wrong with it. */
export function compilePattern(pattern: string): Step[] {
  const parts = pattern.split(' ');
  if (pattern.trim() !== pattern || parts.some((p) => p === '')) throw new Error('separate words and gaps by single spaces, with none at either end');
  const steps: Step[] = [];
  let gap: number | undefined;
  for (const part of parts) {
    const g = GAP.exec(part);
    if (g !== null) {
      const n = Number(g[1]);
      if (steps.length === 0) throw new Error(`"${part}" cannot come first: a pattern starts with a word`);
      if (gap !== undefined) throw new Error(`two gaps in a row ("~${gap} ${part}"); write one`);
      if (n < 1 || n > MAX_GAP) throw new Error(`"${part}": a gap is ~1 to ~${MAX_GAP} words`);
      gap = n;
      continue;
    }
    const alternatives = part.split('|');
    if (alternatives.length > MAX_ALTERNATIVES) throw new Error(`"${part}" has more than ${MAX_ALTERNATIVES} alternatives`);
    const words = new Set<string>();
    const prefixes: string[] = [];
    for (const alt of alternatives) {
      if (PREFIX.test(alt)) prefixes.push(alt.slice(0, -1));
      else if (WORD.test(alt)) words.add(alt);
      else throw new Error(`"${alt}" is not a word: use lowercase a-z, 0-9 and ', optionally ending in * after at least 3 of them`);
    }
    steps.push({ words, prefixes, gapBefore: gap ?? 0 });
    gap = undefined;
    if (steps.length > MAX_STEPS) throw new Error(`more than ${MAX_STEPS} words`);
  }
  if (gap !== undefined) throw new Error('a pattern ends with a word, not a gap');
  if (steps.length === 0) throw new Error('the pattern is empty');
  return steps;
}

function stepMatches(step: Step, word: string): boolean {
  if (step.words.has(word)) return true;
  for (const p of step.prefixes) if (word.startsWith(p)) return true;
  return false;
}

/**
 * True when the phrase occurs in one sentence. A simulation of all partial
 * matches at once (one slot per step, holding the most gap left), so the cost
 * is words × steps whatever the input: no backtracking.
 */
function occursIn(steps: readonly Step[], sentence: Sentence): boolean {
  const n = steps.length;
  let alive = new Int8Array(n).fill(-1);
  let next = new Int8Array(n);
  for (const word of sentence) {
    next.fill(-1);
    alive[0] = 0; // a match may start at any word
    for (let k = 0; k < n; k++) {
      const budget = alive[k]!;
      if (budget < 0) continue;
      if (stepMatches(steps[k]!, word)) {
        if (k + 1 === n) return true;
        next[k + 1] = Math.max(next[k + 1]!, steps[k + 1]!.gapBefore);
      }
      // This word may also be one of the words in the gap before step k.
      if (k > 0 && budget > 0) next[k] = Math.max(next[k]!, budget - 1);
    }
    [alive, next] = [next, alive];
  }
  return false;
}

/** The phrases that occur in any of `text`'s sentences, in list order. */
export function findPhrases(text: readonly Sentence[], phrases: readonly CompiledPhrase[]): CompiledPhrase[] {
  return phrases.filter((phrase) => text.some((sentence) => occursIn(phrase.steps, sentence)));
}

/**
 * Parses and compiles the phrase list (the JSON of templates/statement-phrases.json).
 * Throws an Error naming `source`, the entry and the problem, so a broken list
 * stops the relay's start instead of checking nothing.
 */
export function parsePhraseList(json: string, source: string): CompiledPhrase[] {
  const problem = (what: string): Error => new Error(`${source}: ${what}`);
  let doc: unknown;
  try {
    doc = JSON.parse(json);
  } catch (err) {
    throw problem(`not valid JSON (${err instanceof Error ? err.message : String(err)})`);
  }
  if (typeof doc !== 'object' || doc === null || Array.isArray(doc)) throw problem('expected an object {"phrases": [...]}');
  const keys = Object.keys(doc);
  if (keys.some((k) => k !== 'phrases' && k !== 'about')) throw problem(`unknown key(s) ${keys.filter((k) => k !== 'phrases' && k !== 'about').join(', ')}; expected "phrases" (and an optional "about")`);
  const list = (doc as { phrases?: unknown }).phrases;
  if (!Array.isArray(list) || list.length === 0) throw problem('"phrases" must be a non-empty list');
  if (list.length > MAX_ENTRIES) throw problem(`at most ${MAX_ENTRIES} phrases`);
  const seen = new Set<string>();
  return list.map((entry: unknown, i): CompiledPhrase => {
    const at = `phrases[${i}]`;
    if (typeof entry !== 'object' || entry === null || Array.isArray(entry)) throw problem(`${at} must be an object {"id", "pattern", "reason"}`);
    const extra = Object.keys(entry).filter((k) => k !== 'id' && k !== 'pattern' && k !== 'reason');
    if (extra.length > 0) throw problem(`${at} has unknown key(s) ${extra.join(', ')}`);
    const { id, pattern, reason } = entry as Record<string, unknown>;
    if (typeof id !== 'string' || !ID.test(id)) throw problem(`${at}.id must be lowercase letters, digits and hyphens, e.g. "take-security-seriously"`);
    if (seen.has(id)) throw problem(`${at}.id "${id}" is used twice`);
    seen.add(id);
    if (typeof reason !== 'string' || reason.trim() === '' || reason.length > 300 || /[\x00-\x1f\x7f]/.test(reason)) {
      throw problem(`phrase "${id}": "reason" must be one line of 1-300 characters telling the author why`);
    }
    if (typeof pattern !== 'string') throw problem(`phrase "${id}": "pattern" must be a string`);
    try {
      return { id, reason, steps: compilePattern(pattern) };
    } catch (err) {
      throw problem(`phrase "${id}": pattern ${JSON.stringify(pattern)}: ${err instanceof Error ? err.message : String(err)}`);
    }
  });
}
