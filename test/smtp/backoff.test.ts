/** AUTH back-off: free failures, doubling refusal windows with a cap, forgetting, and IP keys. */
import { describe, expect, it } from 'vitest';
import { Backoff, ipKey } from '../../src/smtp/backoff.js';

const policy = { freeFailures: 3, baseDelayMs: 1_000, maxDelayMs: 8_000, forgetAfterMs: 60_000 };
const at = (ms: number) => new Date(1_700_000_000_000 + ms);

describe('Backoff', () => {
  it('allows the free failures, then refuses for a doubling window up to the cap', () => {
    const b = new Backoff(policy);
    expect([1, 2, 3].map(() => b.fail('k', at(0)))).toEqual([0, 0, 0]);
    expect(b.blockedFor('k', at(0))).toBe(0);
    expect(b.fail('k', at(0))).toBe(1_000);
    expect(b.blockedFor('k', at(400))).toBe(600);
    expect(b.blockedFor('k', at(1_000))).toBe(0);
    expect([b.fail('k', at(1_000)), b.fail('k', at(1_000)), b.fail('k', at(1_000)), b.fail('k', at(1_000)), b.fail('k', at(1_000))]).toEqual([2_000, 4_000, 8_000, 8_000, 8_000]);
  });

  it('keeps keys apart, forgets after a quiet period, and resets on success', () => {
    const b = new Backoff(policy);
    for (let i = 0; i < 4; i++) b.fail('a', at(0));
    expect(b.blockedFor('a', at(0))).toBe(1_000);
    expect(b.blockedFor('b', at(0))).toBe(0);
    // Long after the last failure the count starts again from zero.
    expect(b.fail('a', at(61_001))).toBe(0);
    for (let i = 0; i < 4; i++) b.fail('c', at(0));
    b.succeed('c');
    expect(b.blockedFor('c', at(0))).toBe(0);
    expect(b.fail('c', at(0))).toBe(0);
  });
});

describe('ipKey', () => {
  it.each([
    ['127.0.0.1', '127.0.0.1'],
    ['::ffff:192.0.2.7', '192.0.2.7'],
    ['2001:db8:1:2:3:4:5:6', '2001:db8:1:2::/64'],
    ['2001:DB8:0001:0002::9', '2001:db8:1:2::/64'],
    ['2001:db8::1', '2001:db8:0:0::/64'],
    ['::1', '0:0:0:0::/64'],
  ])('%s → %s', (address, key) => {
    expect(ipKey(address)).toBe(key);
  });
});
