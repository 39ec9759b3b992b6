/** isLoopbackHost: the only hosts a weakening switch may apply to. */
import { describe, expect, it } from 'vitest';
import { isLoopbackHost } from '../src/loopback.js';

describe('isLoopbackHost', () => {
  it.each([
    ['127.0.0.1', true],
    ['127.255.255.254', true],
    ['::1', true],
    ['[::1]', true],
    ['0:0:0:0:0:0:0:1', true],
    ['::ffff:127.0.0.1', true],
    ['localhost', true],
    ['LOCALHOST', true],
    ['localhost.', true],
    ['128.0.0.1', false],
    ['10.0.0.1', false],
    ['192.0.2.2', false],
    ['0.0.0.0', false],
    ['::', false],
    ['::ffff:10.0.0.1', false],
    ['fd00::2', false],
    ['localhost.corp.example', false],
    ['127.0.0.1.nip.io', false],
    ['127.1', false],
    ['', false],
  ])('%j → %s', (host, expected) => {
    expect(isLoopbackHost(host)).toBe(expected);
  });
});
