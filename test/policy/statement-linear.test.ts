/**
 * Worst-case timing of everything the announcement checks run over user text
 * (STYLE: linear on hostile input). Each matcher gets 2 MB built to make a
 * backtracking regex or a naive search blow up: long runs that almost match,
 * thousands of partial phrase matches, unclosed tags and entities. A linear
 * pass takes well under a second here; a quadratic one would take hours, so
 * the bound is loose enough for a loaded two-core machine and still decisive.
 */
import { describe, expect, it } from 'vitest';
import { findTitleDates } from '../../src/policy/dates.js';
import { createDomainMatcher } from '../../src/policy/domains.js';
import { foldForMatching, sentences, words } from '../../src/policy/normalise.js';
import { findPhrases } from '../../src/policy/phrases.js';
import { checkAnnouncement, MAX_TEXT_LENGTH } from '../../src/policy/statement.js';
import { findTerms, termOf } from '../../src/policy/terms.js';
import { loadStatementPhrases } from '../../src/templates.js';

const SIZE = 2 * 1024 * 1024;
const BOUND_MS = 6000;
const fill = (unit: string, size = SIZE): string => unit.repeat(Math.ceil(size / unit.length)).slice(0, size);
const phrases = loadStatementPhrases();

function timed(run: () => void): number {
  const started = performance.now();
  run();
  return performance.now() - started;
}

// Sizes grow fourfold up to 2 MB, each with a bound proportional to its size
// (never under 250 ms). Synchronous code cannot be interrupted, so a quadratic
// matcher must be caught while its input is still small: at 64 KB it already
// takes seconds against a 250 ms bound, and the test fails instead of hanging.
const SIZES = [16 * 1024, 64 * 1024, 256 * 1024, 1024 * 1024, SIZE];
const boundFor = (size: number): number => Math.max(250, (BOUND_MS * size) / SIZE);

function expectLinear(text: string, run: (text: string) => void): void {
  for (const size of SIZES) {
    const part = text.slice(0, size - 1) + text.slice(-1); // keep the last character: some cases end differently
    expect(timed(() => run(part)), `${size} bytes`).toBeLessThan(boundFor(size));
  }
}

const HOSTILE: Array<[string, string]> = [
  ['a phrase that never completes', fill('we take security very ')],
  ['the phrase turned around, never completing', fill('security is something we take very ')],
  ['the first word of every phrase', fill('we ')],
  ['an apostrophe run', fill("'")],
  ['an apostrophe run inside a word', `a${fill("'")}a`],
  ['entities that never close', fill('&#1111111')],
  ['nested-looking entities', fill('&amp;nbsp')],
  ['tags that never close', fill('<a ')],
  ['one tag that never closes', `<span ${fill('x')}`],
  ['a tag that closes only at the very end', `<span ${fill('x')}>`],
  ['zero-width characters', fill('\u200b')],
  ['a letter under a million accents', `e${fill('\u0301')}`],
  ['Cyrillic look-alikes', fill('\u0430\u0435\u043e')],
  ['Unicode spaces', fill(' \u00a0\u2003\t\n')],
  ['sentence ends', fill('. ')],
  ['the start of a private term', fill('ic corp ')],
];

describe('linear on hostile text (2 MB each)', () => {
  const terms = [termOf('label', 'ic corp ic corp x')!, termOf('address', 'ic@corp.example')!, ...Array.from({ length: 100 }, (_, i) => termOf('address', `ic${i}@corp.example`)!)];
  it.each(HOSTILE)('folds, cuts and matches %s within the bound', (_name, text) => {
    expectLinear(text, (t) => {
      const folded = foldForMatching(t);
      findPhrases(sentences(folded), phrases);
      findTerms(words(folded), terms);
    });
  });

  it.each<[string, string]>([
    ['month names without a year', fill('november 1 ')],
    ['ordinals without a month', fill('1st of ')],
    ['ISO prefixes', fill('2026-11-')],
    ['numeric separators', fill('1/')],
    ['month look-alikes', fill('may mar jun ')],
  ])('finds dates in %s within the bound', (_name, text) => {
    expectLinear(text, (t) => findTitleDates(t));
  });

  it('checks a text of the maximum length, of the worst kind, in well under a second', () => {
    const input = {
      kind: 'external' as const,
      title: `2026-11-28 ${fill('we take ', 180)}`,
      audience: Array.from({ length: 1000 }, (_, i) => `user${i}@customer.example`),
      incident: { codename: 'amber-otter-2', label: 'we take security', rosterAddresses: Array.from({ length: 200 }, (_, i) => `we${i}@corp.example`) },
      isInternal: createDomainMatcher(['corp.example']),
      phrases,
      maxAudience: 1000,
      now: new Date('2026-11-28T12:00:00Z'),
    };
    for (const [, text] of HOSTILE) {
      expect(timed(() => checkAnnouncement({ ...input, text: text.slice(0, MAX_TEXT_LENGTH) }))).toBeLessThan(1000);
    }
  });
});
