import { describe, expect, it } from 'vitest';
import { RelayError } from '../../src/errors.js';
import { generateCodename, isListedCodename, isValidCodename } from '../../src/codename/generate.js';
import { ADJECTIVES, NOUNS } from '../../src/codename/words.js';

// Words that must never appear as a codename word: alarming, incident-like, or
// threat-actor naming (vendors pair adjectives with these animals and weathers).
const DENY_EXACT = [
  'war', 'rat', 'bug', 'mole', 'spy', 'imp', 'tin', 'hail', 'rain', 'dust', 'flood', 'iron', 'gold', 'golden', 'silver',
  'bronze', 'copper', 'cobalt', 'nickel', 'platinum', 'zinc', 'typhoon', 'blizzard', 'sleet', 'tempest', 'sandstorm',
  'cyclone', 'tsunami', 'hurricane', 'tornado', 'lightning', 'thunder', 'bear', 'panda', 'kitten', 'spider', 'chollima',
  'tiger', 'jackal', 'leopard', 'buffalo', 'crane', 'lynx', 'ocelot', 'saiga', 'wolf', 'canary', 'whale', 'mule',
  'falcon', 'llama', 'shark', 'crimson', 'midnight', 'shadow', 'black', 'dark', 'kraken', 'hydra', 'cerberus',
  'chimera', 'basilisk', 'dragon', 'phoenix', 'siren', 'goblin', 'troll', 'ogre', 'gremlin', 'raven', 'vulture',
];
const DENY_SUBSTRING = [
  'breach', 'attack', 'hack', 'fire', 'storm', 'death', 'dead', 'kill', 'virus', 'worm', 'trojan', 'phantom', 'ghost',
  'bomb', 'blood', 'malware', 'ransom', 'exploit', 'threat', 'leak', 'crash', 'danger', 'panic', 'doom', 'toxic',
  'poison', 'plague', 'venom', 'thief', 'steal', 'fraud', 'zombie', 'demon', 'devil', 'skull', 'snake', 'python',
  'viper', 'cobra', 'scorpion', 'burn', 'smoke', 'ash',
];

describe('word lists', () => {
  for (const [label, list] of [['ADJECTIVES', ADJECTIVES], ['NOUNS', NOUNS]] as const) {
    it(`${label} has at least 100 unique lowercase a-z words`, () => {
      expect(list.length).toBeGreaterThanOrEqual(100);
      expect(new Set(list).size).toBe(list.length);
      for (const w of list) expect(w).toMatch(/^[a-z]+$/);
    });

    it(`${label} holds nothing alarming`, () => {
      for (const w of list) {
        expect(DENY_EXACT).not.toContain(w);
        for (const bad of DENY_SUBSTRING) expect(w.includes(bad), `${w} contains ${bad}`).toBe(false);
      }
    });
  }

  it('shares no word between the lists, so no codename repeats itself', () => {
    const adjectives = new Set(ADJECTIVES);
    expect(NOUNS.filter((n) => adjectives.has(n))).toEqual([]);
  });
});

describe('generateCodename', () => {
  it('returns adjective-noun from the lists, a valid channel name', () => {
    for (let i = 0; i < 200; i++) {
      const c = generateCodename(() => false);
      const match = /^([a-z]+)-([a-z]+)$/.exec(c);
      expect(match).not.toBeNull();
      expect(ADJECTIVES).toContain(match?.[1]);
      expect(NOUNS).toContain(match?.[2]);
      expect(isValidCodename(c)).toBe(true);
    }
  });

  it('is random by default, not derived from anything', () => {
    const seen = new Set(Array.from({ length: 200 }, () => generateCodename(() => false)));
    expect(seen.size).toBeGreaterThan(150);
  });

  it('uses the random source it is given', () => {
    expect(generateCodename(() => false, () => 0)).toBe(`${ADJECTIVES[0]}-${NOUNS[0]}`);
  });

  it('retries with a fresh pair on collision', () => {
    const taken = new Set([`${ADJECTIVES[0]}-${NOUNS[0]}`]);
    let n = 0;
    const sequence = [0, 0, 1, 1];
    const asked: string[] = [];
    const c = generateCodename(
      (x) => {
        asked.push(x);
        return taken.has(x);
      },
      () => sequence[n++] ?? 0,
    );
    expect(c).toBe(`${ADJECTIVES[1]}-${NOUNS[1]}`);
    expect(asked).toEqual([`${ADJECTIVES[0]}-${NOUNS[0]}`, c]);
  });

  it('appends -2, -3... after many collisions', () => {
    const base = `${ADJECTIVES[0]}-${NOUNS[0]}`;
    const taken = new Set([base, `${base}-2`]);
    const c = generateCodename((x) => taken.has(x), () => 0);
    expect(c).toBe(`${base}-3`);
    expect(isValidCodename(c)).toBe(true);
  });

  it('gives up with a RelayError when every candidate is taken', () => {
    expect(() => generateCodename(() => true, () => 0)).toThrow(RelayError);
  });

  it('refuses a random source that returns an out-of-range index', () => {
    expect(() => generateCodename(() => false, (n) => n)).toThrow(RelayError);
    expect(() => generateCodename(() => false, () => 0.5)).toThrow(RelayError);
  });
});

describe('isValidCodename', () => {
  const cases: Array<[string, boolean]> = [
    ['sapphire-unicorn', true],
    ['abc', true],
    ['a1-b2', true],
    ['amber-otter-2', true],
    ['9lives', true],
    ['a'.repeat(80), true],
    ['a'.repeat(81), false],
    ['ab', false],
    ['', false],
    ['-abc', false],
    ['Sapphire-unicorn', false],
    ['sapphire_unicorn', false],
    ['sapphire unicorn', false],
    ['sapphire.unicorn', false],
    ['sapphire-unicorn\n', false],
    ['säpphire', false],
    ['#general', false],
  ];
  for (const [input, valid] of cases) {
    it(`${JSON.stringify(input)} is ${valid ? 'valid' : 'invalid'}`, () => {
      expect(isValidCodename(input)).toBe(valid);
    });
  }
});

describe('isListedCodename', () => {
  const adjective = ADJECTIVES[0]!;
  const noun = NOUNS[0]!;
  const cases: Array<[string, boolean]> = [
    ['sapphire-unicorn', true],
    ['amber-otter', true],
    [`${adjective}-${noun}`, true],
    ['amber-otter-2', true],
    ['amber-otter-10000', true],
    ['amber-otter-9999', true],
    // Descriptive names match the Slack character rules but come from no list (issue 10 item 4).
    ['customer-db-breach', false],
    ['prod-db-leak', false],
    ['ransomware', false],
    ['acme-breach', false],
    // Each word must come from its own list, in order.
    ['otter-amber', false],
    ['amber-sapphire', false],
    ['unicorn-otter', false],
    ['amber-breach', false],
    ['breach-otter', false],
    // The suffix is the generator's: 2..10000, plain decimal.
    ['amber-otter-1', false],
    ['amber-otter-0', false],
    ['amber-otter-10001', false],
    ['amber-otter-02', false],
    ['amber-otter-2a', false],
    ['amber-otter-', false],
    ['amber-otter-2-3', false],
    ['amber-otter-db', false],
    // Shape.
    ['amber', false],
    ['amber-', false],
    ['-otter', false],
    ['amber--otter', false],
    ['Amber-otter', false],
    ['amber_otter', false],
    ['amber-otter\n', false],
    ['amber-otter ', false],
    ['', false],
    ['__proto__-otter', false],
    ['constructor-toString', false],
  ];
  for (const [input, listed] of cases) {
    it(`${JSON.stringify(input)} is ${listed ? 'listed' : 'not listed'}`, () => {
      expect(isListedCodename(input)).toBe(listed);
    });
  }

  it('accepts everything the generator makes, suffixed or not', () => {
    for (let i = 0; i < 500; i++) expect(isListedCodename(generateCodename(() => false))).toBe(true);
    const base = `${adjective}-${noun}`;
    const taken = new Set([base, `${base}-2`]);
    expect(isListedCodename(generateCodename((x) => taken.has(x), () => 0))).toBe(true);
  });

  it('every listed codename is also a valid Slack channel name', () => {
    const longest = `${[...ADJECTIVES].sort((a, b) => b.length - a.length)[0]}-${[...NOUNS].sort((a, b) => b.length - a.length)[0]}-10000`;
    expect(isListedCodename(longest)).toBe(true);
    expect(isValidCodename(longest)).toBe(true);
  });
});
