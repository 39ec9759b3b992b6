/**
 * Finding private terms (a codename, the incident's label, an address) in
 * text, word by word on folded text, so "Sapphire Unicorn", "sapphire_unicorn"
 * and "SAPPHIRE-UNICORN" all count as the codename sapphire-unicorn while
 * "chamber otters" does not count as amber-otter. Pure; one pass over the text.
 */
import { foldForMatching, words } from './normalise.js';

/** A term to look for, as its folded words. */
export interface Term<K extends string = string> {
  kind: K;
  /** Folded words that must appear one after the other. */
  words: readonly string[];
}

/** The term for `value` (a codename, label or address): its folded words; null when it has none. */
export function termOf<K extends string>(kind: K, value: string): Term<K> | null {
  const w = words(foldForMatching(value));
  return w.length === 0 ? null : { kind, words: w };
}

/** The terms of `terms` that occur in `text` (already cut into folded words), each once, in the order given. */
export function findTerms<T extends Term>(text: readonly string[], terms: readonly T[]): T[] {
  // Index by first word, so each word of the text is compared only with the
  // terms that can start there, however many terms there are.
  const byFirst = new Map<string, number[]>();
  terms.forEach((t, i) => {
    const first = t.words[0]!;
    const list = byFirst.get(first);
    if (list) list.push(i);
    else byFirst.set(first, [i]);
  });
  const found = new Set<number>();
  for (let at = 0; at < text.length && found.size < terms.length; at++) {
    const candidates = byFirst.get(text[at]!);
    if (candidates === undefined) continue;
    for (const i of candidates) {
      if (found.has(i)) continue;
      const w = terms[i]!.words;
      let k = 1;
      while (k < w.length && text[at + k] === w[k]) k++;
      if (k === w.length) found.add(i);
    }
  }
  return terms.filter((_, i) => found.has(i));
}
