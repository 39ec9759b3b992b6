/**
 * Folding text for matching: what the statement checks compare, so a
 * forbidden phrase or a private term is found however it was typed or pasted.
 * Pure and linear: one pass per step over the input, no backtracking regex.
 * The folded text is only ever compared, never sent or stored.
 */

// A few HTML entities that copy-pasted statements carry. Decoded once (no
// second round: `&amp;nbsp;` stays `&nbsp;`), so the output is bounded by the input.
const NAMED_ENTITIES: Readonly<Record<string, string>> = {
  amp: '&', lt: '<', gt: '>', quot: '"', apos: "'", nbsp: '\u00a0', shy: '\u00ad',
  lsquo: '\u2018', rsquo: '\u2019', ldquo: '\u201c', rdquo: '\u201d', sbquo: '\u201a', bdquo: '\u201e',
  ndash: '\u2013', mdash: '\u2014', hellip: '\u2026', zwsp: '\u200b', zwj: '\u200d', zwnj: '\u200c',
  ensp: '\u2002', emsp: '\u2003', thinsp: '\u2009',
};
// Each alternative is bounded (at most 8 letters, 7 digits), so one attempt is O(1).
const ENTITY = /&(?:#([0-9]{1,7})|#[xX]([0-9a-fA-F]{1,6})|([a-zA-Z]{2,8}));/g;

// Tags of the elements a rich-text editor emits. Only these are taken out, so
// "a <security> b" in plain text stays as it is. Block elements end a word
// (replaced by a space); inline ones do not ("secu<b></b>rity" is "security").
const BLOCK_TAGS = new Set(['p', 'br', 'div', 'li', 'ul', 'ol', 'h1', 'h2', 'h3', 'h4', 'h5', 'h6', 'tr', 'td', 'th', 'table', 'blockquote', 'hr', 'section', 'article']);
const INLINE_TAGS = new Set(['a', 'b', 'i', 'u', 's', 'em', 'strong', 'span', 'font', 'small', 'big', 'sup', 'sub', 'mark', 'strike', 'del', 'ins', 'abbr', 'code', 'wbr']);
// `[^<>]*` cannot run past the next '<', and attempts start only at '<', so
// the scans of successive attempts do not overlap: linear overall.
const TAG = /<\/?([a-zA-Z][a-zA-Z0-9]{0,9})(?:[\s/][^<>]*)?>/g;

// Format characters (Unicode Cf) are invisible: zero-width space and joiners,
// word joiner, BOM, soft hyphen, bidi controls. Taken out, not made spaces, so
// "secu\u200Brity" is "security".
const FORMAT = /\p{Cf}/gu;
// Combining marks, after compatibility decomposition: accents, combining
// underlines and overlays, variation selectors. "sécurité" is "securite".
const MARKS = /\p{M}/gu;
// Every whitespace run, NBSP and the Unicode spaces and line separators included.
const SPACES = /\s+/g;

// Letters from other scripts that look like Latin ones, and typographic quotes
// and dashes, to their ASCII twins. Small on purpose: the letters that appear in
// English words, as a homoglyph spoofer or an autocorrecting editor uses them.
const LOOKALIKES: ReadonlyMap<string, string> = new Map(
  Object.entries({
    // Cyrillic
    'а': 'a', 'в': 'b', 'е': 'e', 'к': 'k', 'м': 'm', 'н': 'h', 'о': 'o', 'р': 'p', 'с': 'c', 'т': 't', 'у': 'y', 'х': 'x',
    'ѕ': 's', 'і': 'i', 'ј': 'j', 'ԁ': 'd', 'һ': 'h', 'ӏ': 'l', 'ԛ': 'q', 'ԝ': 'w', 'ү': 'y',
    'А': 'a', 'В': 'b', 'Е': 'e', 'К': 'k', 'М': 'm', 'Н': 'h', 'О': 'o', 'Р': 'p', 'С': 'c', 'Т': 't', 'Х': 'x', 'У': 'y',
    'Ѕ': 's', 'І': 'i', 'Ј': 'j', 'Ԛ': 'q', 'Ԝ': 'w', 'Һ': 'h', 'Ӏ': 'l',
    // Greek
    'α': 'a', 'ι': 'i', 'κ': 'k', 'ν': 'v', 'ο': 'o', 'ρ': 'p', 'τ': 't', 'υ': 'u', 'χ': 'x', 'γ': 'y',
    'Α': 'a', 'Β': 'b', 'Ε': 'e', 'Ζ': 'z', 'Η': 'h', 'Ι': 'i', 'Κ': 'k', 'Μ': 'm', 'Ν': 'n', 'Ο': 'o', 'Ρ': 'p', 'Τ': 't', 'Υ': 'y', 'Χ': 'x',
    // Latin look-alikes outside ASCII that compatibility decomposition keeps
    'ı': 'i', 'ɑ': 'a', 'ɡ': 'g', 'ɩ': 'i', 'ʏ': 'y',
    // quotes, apostrophes, primes
    '\u2018': "'", '\u2019': "'", '\u201a': "'", '\u201b': "'", '\u2032': "'", '\u02bc': "'", '\u00b4': "'", '`': "'",
    '\u201c': '"', '\u201d': '"', '\u201e': '"', '\u201f': '"', '\u2033': '"', '\u00ab': '"', '\u00bb': '"',
    // hyphens and dashes (an ISO date pasted from a word processor often has U+2011)
    '\u2010': '-', '\u2011': '-', '\u2012': '-', '\u2013': '-', '\u2014': '-', '\u2015': '-', '\u2212': '-', '\ufe63': '-',
  }),
);

// One character class of every key above, so mapping is one linear replace
// that leaves ASCII untouched (a per-character loop is 10x slower on MBs).
const LOOKALIKE = new RegExp(`[${[...LOOKALIKES.keys()].map((c) => `\\u${c.charCodeAt(0).toString(16).padStart(4, '0')}`).join('')}]`, 'g');
const lookalike = (c: string): string => LOOKALIKES.get(c) ?? c;

function decodeEntity(whole: string, decimal: string | undefined, hex: string | undefined, name: string | undefined): string {
  if (name !== undefined) return NAMED_ENTITIES[name.toLowerCase()] ?? whole;
  const code = decimal !== undefined ? Number(decimal) : Number.parseInt(hex ?? '', 16);
  // Not a scalar value (a surrogate, past U+10FFFF, NUL): leave it as written.
  if (!Number.isInteger(code) || code === 0 || code > 0x10ffff || (code >= 0xd800 && code <= 0xdfff)) return whole;
  return String.fromCodePoint(code);
}

function stripTag(_whole: string, name: string): string {
  const tag = name.toLowerCase();
  if (BLOCK_TAGS.has(tag)) return ' ';
  if (INLINE_TAGS.has(tag)) return '';
  return _whole;
}

/**
 * `text` folded for matching: HTML entities decoded and editor tags removed,
 * compatibility-decomposed (NFKD: full-width and mathematical letters become
 * ASCII), combining marks and invisible format characters removed, Cyrillic and
 * Greek look-alikes and typographic quotes and dashes mapped to ASCII,
 * lowercased, and every run of whitespace made one space, trimmed.
 * Leetspeak is not undone: digits inside words are left alone, so dates,
 * figures and version numbers in a statement are never rewritten.
 */
export function foldForMatching(text: string): string {
  const decoded = text.replace(ENTITY, decodeEntity).replace(TAG, stripTag);
  const decomposed = decoded.normalize('NFKD').replace(MARKS, '').replace(FORMAT, '');
  return decomposed.replace(LOOKALIKE, lookalike).toLowerCase().normalize('NFC').replace(SPACES, ' ').trim();
}

/** A sentence of folded text as its words: runs of a-z, 0-9 and the apostrophe. */
export type Sentence = readonly string[];

// Punctuation that ends a sentence or clause: a phrase never spans one.
const SENTENCE_END = /[.!?;:]+/;
const WORD = /[a-z0-9']+/g;

// Quotes around a word ('security') are not part of it; an apostrophe inside one (we're) is.
// A loop, not /^'+|'+$/: that regex is quadratic on a long run of apostrophes.
function trimQuotes(word: string): string {
  let start = 0;
  let end = word.length;
  while (start < end && word[start] === "'") start++;
  while (end > start && word[end - 1] === "'") end--;
  return word.slice(start, end);
}

/** Folded text cut into sentences of words; other punctuation separates words and is dropped. */
export function sentences(folded: string): Sentence[] {
  const out: Sentence[] = [];
  for (const piece of folded.split(SENTENCE_END)) {
    const words = piece.match(WORD);
    if (words !== null) out.push(words.map(trimQuotes).filter((w) => w !== ''));
  }
  return out;
}

/** Folded text as its alphanumeric words, punctuation and apostrophes dropped: what private terms are compared on. */
export function words(folded: string): string[] {
  return folded.match(/[a-z0-9]+/g) ?? [];
}
