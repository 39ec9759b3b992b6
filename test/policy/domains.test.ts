import { describe, expect, it } from 'vitest';
import { createDomainMatcher } from '../../src/policy/domains.js';

describe('createDomainMatcher', () => {
  const internal = createDomainMatcher(['corp.example', '*.eng.example']);
  it.each([
    ['a@corp.example', true],
    ['a@CORP.Example', true],
    ['a@sub.corp.example', false],
    ['a@eng.example', false],
    ['a@x.eng.example', true],
    ['a@deep.x.eng.example', true],
    ['a@evil-eng.example', false],
    ['a@corp.example.evil.example', false],
    ['a@lawfirm.example', false],
    ['not-an-address', false],
  ])('%s internal=%s', (address, expected) => {
    expect(internal(address)).toBe(expected);
  });
});
