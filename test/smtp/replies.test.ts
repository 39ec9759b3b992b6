/** The one RelayError → SMTP reply mapping: every registry code, the AUTH exceptions, and single-line text. */
import { describe, expect, it } from 'vitest';
import { ERROR_CODES, RelayError, type ErrorCode } from '../../src/errors.js';
import { acceptedText, closingError, singleLine, smtpError, smtpReply } from '../../src/smtp/replies.js';

describe('smtpReply', () => {
  it.each(Object.keys(ERROR_CODES) as ErrorCode[])('answers %s with its registry reply and the code in the text', (code) => {
    // unauthenticated is a reply to AUTH (535); after AUTH it is 530, tested below.
    const reply = smtpReply(new RelayError(code, 'What to do about it.'), code === 'unauthenticated' ? 'auth' : 'data');
    const [smtp, enhanced] = ERROR_CODES[code].smtp.split(' ');
    expect(reply).toEqual({ code: Number(smtp), text: `${enhanced} ${code}: What to do about it.` });
  });

  it.each<[string, unknown, string, number, string]>([
    ['a policy refusal', new RelayError('recipient_not_on_roster', 'Not on the roster: x@corp.example.'), 'rcpt', 550, '5.7.1 recipient_not_on_roster: Not on the roster: x@corp.example.'],
    ['oversize', new RelayError('payload_too_large', 'Too big.'), 'data', 552, '5.3.4 payload_too_large: Too big.'],
    ['wrong credentials', new RelayError('unauthenticated', 'No.'), 'auth', 535, '5.7.8 unauthenticated: No.'],
    ['throttled AUTH (RFC 4954 454)', new RelayError('rate_limited', 'Wait.', { retryAfter: 4 }), 'auth', 454, '4.7.0 rate_limited: Wait.'],
    ['throttled sending (SPEC §5: transient refusals are 451 4.3.0)', new RelayError('rate_limited', 'Wait.', { retryAfter: 4 }), 'data', 451, '4.3.0 rate_limited: Wait.'],
    ['a token revoked after AUTH, at MAIL (RFC 4954 530)', new RelayError('unauthenticated', 'Revoked.'), 'mail', 530, '5.7.0 unauthenticated: Revoked.'],
    ['a token revoked after AUTH, at RCPT', new RelayError('unauthenticated', 'Revoked.'), 'rcpt', 530, '5.7.0 unauthenticated: Revoked.'],
    ['a token revoked after AUTH, at DATA', new RelayError('unauthenticated', 'Revoked.'), 'data', 530, '5.7.0 unauthenticated: Revoked.'],
    ['a store failure', new Error('SQLITE_FULL: database or disk is full at /var/lib/relay/relay.db'), 'data', 451, '4.3.0 internal: Internal error; the message was not accepted. Try again later, and tell an admin if it persists.'],
    ['a store that cannot write (SqliteError code)', Object.assign(new Error('database or disk is full'), { code: 'SQLITE_FULL' }), 'data', 451, '4.3.0 unavailable: The relay cannot store messages right now, so it accepted nothing; try again shortly.'],
    ['an internal fault during AUTH', new TypeError('x is undefined'), 'auth', 454, '4.7.0 internal: Temporary authentication failure; try again later.'],
    ['a thrown string', 'boom', 'mail', 451, '4.3.0 internal: Internal error; the message was not accepted. Try again later, and tell an admin if it persists.'],
  ])('%s', (_name, err, stage, code, text) => {
    expect(smtpReply(err, stage as 'auth' | 'mail' | 'rcpt' | 'data')).toEqual({ code, text });
  });

  it('never lets a message split the reply or run past one line', () => {
    const reply = smtpReply(new RelayError('invalid_request', 'line one\r\n250 injected\u2028more\0' + 'x'.repeat(2_000)), 'data');
    expect(reply.text).not.toMatch(/[\r\n\0\u2028]/);
    expect(reply.text.startsWith('5.7.1 invalid_request: line one 250 injected more')).toBe(true);
    expect(reply.text.length).toBeLessThanOrEqual(480);
  });

  it('builds smtp-server errors with responseCode, and 421 for closing', () => {
    expect(smtpError(new RelayError('not_found', 'No.'), 'data')).toMatchObject({ responseCode: 550, message: '5.7.1 not_found: No.' });
    expect(closingError('Too many.')).toMatchObject({ responseCode: 421, message: '4.7.0 Too many.' });
    expect(singleLine('  a \t b  ')).toBe('a b');
  });

  it('says where the accepted message went, without content', () => {
    expect(acceptedText({ id: 'i', messageId: '<u@corp.example>', status: 'queued', encrypted: true, recipients: ['a@corp.example', 'b@x.example'] })).toBe(
      '2.0.0 Ok: queued as <u@corp.example>, encrypted, 2 recipient(s)',
    );
  });
});
