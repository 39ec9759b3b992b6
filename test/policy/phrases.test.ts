/**
 * The phrase list of rule `statement`: the folding it matches on, its pattern
 * language, and the loader that refuses a broken list at start.
 */
import { readFileSync } from 'node:fs';
import { describe, expect, it } from 'vitest';
import { foldForMatching, sentences, words } from '../../src/policy/normalise.js';
import { compilePattern, findPhrases, parsePhraseList } from '../../src/policy/phrases.js';
import { loadStatementPhrases } from '../../src/templates.js';

describe('foldForMatching', () => {
  it.each<[string, string, string]>([
    ['lowercases', 'We TAKE Security', 'we take security'],
    ['collapses every kind of whitespace', ' a \t b\r\n\nc\u00a0d\u2003e\u202ff\u3000g ', 'a b c d e f g'],
    ['removes zero-width and format characters', 'se\u200bcu\u200crity\u200d \u2060x\ufeff \u00adz \u202eq', 'security x z q'],
    ['straightens quotes and apostrophes', '\u2018a\u2019 \u201cb\u201d we\u2019re \u00abc\u00bb', '\'a\' "b" we\'re "c"'],
    ['makes dashes ASCII', '2026\u201111\u201328 \u2014 x\u2212y', '2026-11-28 - x-y'],
    ['takes full-width and mathematical letters to ASCII', '\uff33\uff45\uff43 \u{1d42c}\u{1d41e}\u{1d41c} \u2460', 'sec sec 1'],
    ['drops accents and combining marks', 's\u00e9curit\u00e9 \u00fcber s\u0332e\u0301', 'securite uber se'],
    ['maps Cyrillic and Greek look-alikes', '\u0430\u0435\u043e\u0440\u0441\u0443\u0445 \u0410\u0412\u0415\u041a\u041c\u041d \u03bf\u03b1\u03c1 \u039f\u039a', 'aeopcyx abekmh oap ok'],
    ['decodes HTML entities once', 's&#101;c&#x75;r&amp;&nbsp;x &amp;nbsp; &bogus; &#0; &#xD800;', 'secur& x &nbsp; &bogus; &#0; &#xd800;'],
    ['takes out editor tags: inline ones join, block ones separate', 'a<b>b</b>c<p>d</p>e<br/>f <span class="x">g</span>', 'abc d e f g'],
    ['leaves other angle brackets alone', 'a <security> b < c > d', 'a <security> b < c > d'],
    ['does not undo leetspeak: digits stay digits', 's3cur1ty 2026', 's3cur1ty 2026'],
  ])('%s', (_name, input, folded) => {
    expect(foldForMatching(input)).toBe(folded);
  });
});

describe('sentences and words', () => {
  it('cuts at . ! ? ; : and keeps apostrophes inside words only', () => {
    expect(sentences("we're 'here', now. really?! yes; no: 'quoted' end")).toEqual([["we're", 'here', 'now'], ['really'], ['yes'], ['no'], ['quoted', 'end']]);
  });

  it('words are alphanumeric runs', () => {
    expect(words("ic@corp.example we're sapphire_unicorn-2")).toEqual(['ic', 'corp', 'example', 'we', 're', 'sapphire', 'unicorn', '2']);
  });
});

describe('the pattern language', () => {
  const matches = (pattern: string, text: string): boolean =>
    findPhrases(sentences(foldForMatching(text)), [{ id: 'p', reason: 'r', steps: compilePattern(pattern) }]).length === 1;

  it.each<[string, string, boolean]>([
    ['take security', 'we take security', true],
    ['take security', 'we take the security', false],
    ['take ~1 security', 'we take the security', true],
    ['take ~1 security', 'we take all the security', false],
    ['take ~2 security', 'take security', true], // a gap may be empty
    ['take|took security', 'we took security', true],
    ['secur* x', 'securities x', true],
    ['secur* x', 'secu x', false],
    ['take ~3 seriously', 'take it. seriously', false], // never across a sentence end
    ['take ~3 seriously', 'take it; seriously', false],
    ['take ~3 seriously', 'take it, seriously', true], // commas are not sentence ends
    ['a ~2 b ~2 c', 'a x b x x x c a y b y c', true], // a later start completes
    ['a ~1 a ~1 b', 'a a x b', true], // the same word may fill a step or the gap
    ['a b', 'b a', false],
  ])('%j in %j: %s', (pattern, text, expected) => {
    expect(matches(pattern, text)).toBe(expected);
  });

  it.each<[string, string]>([
    ['', 'separate words and gaps by single spaces'],
    [' take', 'separate words and gaps by single spaces'],
    ['take  security', 'separate words and gaps by single spaces'],
    ['~2 take', 'cannot come first'],
    ['take ~2', 'ends with a word'],
    ['take ~2 ~3 x', 'two gaps in a row'],
    ['take ~0 x', 'a gap is ~1 to ~10 words'],
    ['take ~11 x', 'a gap is ~1 to ~10 words'],
    ['Take', 'is not a word'],
    ['ta.ke', 'is not a word'],
    ['(take)+', 'is not a word'],
    ['se*', 'is not a word'],
    ['take|', 'is not a word'],
    ['a b c d e f g h i j k l m', 'more than 12 words'],
    [Array.from({ length: 21 }, (_, i) => `w${i}`).join('|'), 'more than 20 alternatives'],
  ])('refuses %j: %s', (pattern, problem) => {
    expect(() => compilePattern(pattern)).toThrow(problem);
  });
});

describe('parsePhraseList', () => {
  const entry = { id: 'x', pattern: 'take security', reason: 'because' };
  const list = (phrases: unknown, extra: Record<string, unknown> = {}): string => JSON.stringify({ phrases, ...extra });

  it('compiles a good list', () => {
    expect(parsePhraseList(list([entry]), 'f.json').map((p) => [p.id, p.reason, p.steps.length])).toEqual([['x', 'because', 2]]);
  });

  it.each<[string, string, string]>([
    ['not JSON', '{phrases:', 'f.json: not valid JSON'],
    ['a list at the top', '[]', 'f.json: expected an object {"phrases": [...]}'],
    ['an unknown key', list([entry], { extra: 1 }), 'f.json: unknown key(s) extra'],
    ['no phrases', list([]), 'f.json: "phrases" must be a non-empty list'],
    ['an entry that is not an object', list(['take security']), 'f.json: phrases[0] must be an object'],
    ['an unknown entry key', list([{ ...entry, regex: '.*' }]), 'f.json: phrases[0] has unknown key(s) regex'],
    ['a bad id', list([{ ...entry, id: 'Bad Id' }]), 'f.json: phrases[0].id must be lowercase letters'],
    ['a duplicate id', list([entry, entry]), 'f.json: phrases[1].id "x" is used twice'],
    ['an empty reason', list([{ ...entry, reason: ' ' }]), 'f.json: phrase "x": "reason" must be one line'],
    ['a reason with a line break', list([{ ...entry, reason: 'a\nb' }]), 'f.json: phrase "x": "reason" must be one line'],
    ['a pattern that is not a string', list([{ ...entry, pattern: 3 }]), 'f.json: phrase "x": "pattern" must be a string'],
    ['a broken pattern', list([{ ...entry, pattern: 'take ~99 security' }]), 'f.json: phrase "x": pattern "take ~99 security": "~99": a gap is ~1 to ~10 words'],
    ['a regex for a pattern', list([{ ...entry, pattern: '(a+)+$' }]), 'f.json: phrase "x": pattern "(a+)+$": "(a+)+$" is not a word'],
  ])('refuses %s, naming the file, the entry and the problem', (_name, json, message) => {
    expect(() => parsePhraseList(json, 'f.json')).toThrow(message);
  });
});

describe('loadStatementPhrases', () => {
  it('loads the shipped list: the playbook sentence and its close variants', () => {
    const loaded = loadStatementPhrases();
    expect(loaded.map((p) => p.id)).toEqual(['we-take-security-seriously', 'company-takes-security-seriously', 'security-is-something-we-take-seriously', 'security-is-taken-seriously']);
    const file = JSON.parse(readFileSync(new URL('../../templates/statement-phrases.json', import.meta.url), 'utf8')) as { about: string };
    expect(file.about).toContain("Don't say 'We take security very seriously'");
  });

  it('reads once', () => {
    expect(loadStatementPhrases()).toBe(loadStatementPhrases());
  });
});
