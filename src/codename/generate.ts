/**
 * Incident codenames: a random `adjective-noun` that says nothing about the
 * incident (SPEC §2, rule `codename`) and is a valid Slack channel name.
 */

import { randomInt } from 'node:crypto';
import { RelayError } from '../errors.js';
import { ADJECTIVES, NOUNS } from './words.js';

// Fresh random pairs tried before a numeric suffix; with ~10,000 pairs a clash
// this many times in a row means the space is nearly used up.
const RANDOM_ATTEMPTS = 50;
const MAX_SUFFIX = 10_000;

/** Slack channel-name rules: 3–80 lowercase letters, digits and hyphens, not starting with a hyphen. */
export function isValidCodename(s: string): boolean {
  return typeof s === 'string' && /^[a-z0-9][a-z0-9-]{2,79}$/.test(s);
}

const ADJECTIVE_SET: ReadonlySet<string> = new Set(ADJECTIVES);
const NOUN_SET: ReadonlySet<string> = new Set(NOUNS);
// The suffix generateCodename appends: 2..MAX_SUFFIX in plain decimal, no leading zero.
const SUFFIX = /^[1-9][0-9]{0,4}$/;

/**
 * True only for a codename the generator could have made: `adjective-noun` or
 * `adjective-noun-N` (N from 2 to 10000) with both words from the relay's lists.
 * A chosen codename must pass this, so nobody can name an incident (and its
 * Slack channel) `customer-db-breach` (rule `codename`).
 */
export function isListedCodename(c: string): boolean {
  if (typeof c !== 'string' || c.length > 80) return false;
  const parts = c.split('-');
  if (parts.length !== 2 && parts.length !== 3) return false;
  const [adjective, noun, suffix] = parts as [string, string, string | undefined];
  if (!ADJECTIVE_SET.has(adjective) || !NOUN_SET.has(noun)) return false;
  if (suffix === undefined) return true;
  return SUFFIX.test(suffix) && Number(suffix) >= 2 && Number(suffix) <= MAX_SUFFIX;
}

/** A crypto-random `adjective-noun` not yet taken, suffixed `-2`, `-3`… once random picks keep colliding. */
export function generateCodename(isTaken: (c: string) => boolean, random: (n: number) => number = randomInt): string {
  const pick = (words: readonly string[]): string => {
    const i = random(words.length);
    const word = words[i];
    if (word === undefined) throw new RelayError('internal', `Codename random source returned ${i} outside [0, ${words.length}).`);
    return word;
  };
  const pair = (): string => `${pick(ADJECTIVES)}-${pick(NOUNS)}`;

  for (let attempt = 0; attempt < RANDOM_ATTEMPTS; attempt++) {
    const candidate = pair();
    if (!isTaken(candidate)) return candidate;
  }
  const base = pair();
  for (let n = 2; n <= MAX_SUFFIX; n++) {
    const candidate = `${base}-${n}`;
    if (!isTaken(candidate)) return candidate;
  }
  throw new RelayError('unavailable', 'No free codename found; pass an explicit codename or archive old incidents.');
}
