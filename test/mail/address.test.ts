/**
 * The one address grammar (src/mail/address.ts) and every place that uses it:
 * field validation, the composer and the internal-domain matcher. A routed
 * address (issue 10 item 1) is refused everywhere with a hint, never taken as
 * "the domain after the last @".
 */
import { describe, expect, it } from 'vitest';
import { RelayError } from '../../src/errors.js';
import { checkAddress, normaliseAddress, type AddressFault } from '../../src/mail/address.js';
import { composePlain, type MessageContent } from '../../src/mime/compose.js';
import { createDomainMatcher } from '../../src/policy/domains.js';
import { emailAddress, emailParam, isEmailAddress, parseInput } from '../../src/validation.js';

describe('accepted addresses, normalised', () => {
  it.each([
    ['ic@corp.example', 'ic@corp.example'],
    ['IC@Corp.Example', 'ic@corp.example'],
    ['first.last+tag@sub.corp.example', 'first.last+tag@sub.corp.example'],
    ["o'brien@corp.example", "o'brien@corp.example"],
    ['a#$&*/=?^_`{|}~-b@corp.example', 'a#$&*/=?^_`{|}~-b@corp.example'],
    ['x@a-b.example', 'x@a-b.example'],
    ['x@xn--p1ai.xn--p1ai', 'x@xn--p1ai.xn--p1ai'],
    ['x@1.2.3.example', 'x@1.2.3.example'],
    // smtp-server and mailparser hand xn-- domains over decoded; they come back as A-labels.
    ['counsel@bücher.example', 'counsel@xn--bcher-kva.example'],
    [`${'l'.repeat(64)}@corp.example`, `${'l'.repeat(64)}@corp.example`],
    [`a@${'d'.repeat(63)}.example`, `a@${'d'.repeat(63)}.example`],
    // 254 characters in all: 64 + '@' + 189.
    [`${'l'.repeat(64)}@${`${'d'.repeat(61)}.`.repeat(3)}abc`, `${'l'.repeat(64)}@${`${'d'.repeat(61)}.`.repeat(3)}abc`],
  ])('%s → %s', (input, normalised) => {
    const checked = checkAddress(input);
    expect(checked).toEqual({ ok: true, address: normalised, local: normalised.split('@')[0], domain: normalised.split('@')[1] });
    expect(isEmailAddress(input)).toBe(true);
  });
});

describe('refused addresses, each with the hint for its fault', () => {
  it.each<[string, string, AddressFault, string]>([
    ['the percent hack', 'counsel%lawfirm.example@corp.test', 'percent_route', 'source routing (%) is not allowed; address the recipient directly as name@their-domain'],
    ['a UUCP bang path', 'lawfirm.example!counsel@corp.test', 'bang_path', 'bang paths (!) are not allowed; address the recipient directly as name@their-domain'],
    ['an RFC 5321 source route', '@lawfirm.example:counsel@corp.test', 'source_route', 'source routes (@host:...) are not allowed; address the recipient directly as name@their-domain'],
    ['a source route with two hops', '@a.example,@b.example:counsel@corp.test', 'source_route', 'source routes'],
    ['two @', 'counsel@lawfirm.example@corp.test', 'several_at', 'has more than one @; address the recipient directly'],
    ['a quoted local part', '"counsel@lawfirm.example"@corp.test', 'quoted', 'quoted local parts'],
    ['a quoted local part without @ inside', '"counsel"@corp.test', 'quoted', 'quoted local parts'],
    ['a backslash', 'coun\\sel@corp.test', 'quoted', 'quoted local parts'],
    ['an IPv4 literal', 'counsel@[192.0.2.1]', 'address_literal', 'address literal'],
    ['an IPv6 literal', 'counsel@[IPv6:2001:db8::1]', 'address_literal', 'address literal'],
    ['an all-digit last label', 'counsel@192.0.2.1', 'domain_numeric_tld', 'last label is all digits'],
    ['a dotless domain', 'counsel@localhost', 'domain_single_label', 'needs a full domain name'],
    ['a trailing dot', 'counsel@corp.example.', 'domain_label', 'labels'],
    ['an empty label', 'counsel@corp..example', 'domain_label', 'labels'],
    ['a leading hyphen', 'counsel@-corp.example', 'domain_label', 'labels'],
    ['an underscore in the domain', 'counsel@my_host.corp.example', 'domain_label', 'labels'],
    ['a 64-character label', `counsel@${'d'.repeat(64)}.example`, 'domain_label', 'labels'],
    ['a colon in the local part', 'a:b@corp.example', 'local_character', "use letters, digits, dots and # $ & ' * + - / = ? ^ _ ` { | } ~"],
    ['a comma', 'a,b@corp.example', 'local_character', 'before the @'],
    ['a leading dot', '.ic@corp.example', 'local_dots', 'starts or ends with a dot'],
    ['a trailing dot', 'ic.@corp.example', 'local_dots', 'starts or ends with a dot'],
    ['two dots', 'i..c@corp.example', 'local_dots', 'two dots in a row'],
    ['a non-ASCII local part', 'jürgen@corp.example', 'local_not_ascii', 'SMTPUTF8'],
    ['a 65-character local part', `${'l'.repeat(65)}@corp.example`, 'local_too_long', '64 characters'],
    ['255 characters', `${'l'.repeat(64)}@${`${'d'.repeat(61)}.`.repeat(3)}abcd`, 'too_long', '254 characters'],
    ['a name-addr', 'IC <ic@corp.example>', 'space_or_control', 'spaces'],
    ['a space', 'ic @corp.example', 'space_or_control', 'spaces'],
    ['CR LF', 'ic@corp.example\r\nBcc: x@corp.example', 'space_or_control', 'control characters'],
    ['NUL', 'ic@corp.example\0', 'space_or_control', 'control characters'],
    ['U+2028', 'ic@corp.example\u2028', 'space_or_control', 'control characters'],
    ['no @', 'ic.corp.example', 'no_at', 'has no @'],
    ['nothing before the @', '@corp.example', 'source_route', 'source routes'],
    ['empty', '', 'empty', 'is empty'],
  ])('%s: %s', (_name, input, fault, hint) => {
    const checked = checkAddress(input);
    expect(checked.ok).toBe(false);
    if (checked.ok) return;
    expect(checked.fault).toBe(fault);
    expect(checked.hint).toContain(hint);
    expect(isEmailAddress(input)).toBe(false);
  });

  it('names what it was checking, quotes the value (controls shown as ?) and gives the hint', () => {
    const err = (() => {
      try {
        normaliseAddress('counsel%lawfirm.example@corp.test', 'RCPT TO');
      } catch (e) {
        return e as RelayError;
      }
      throw new Error('expected a refusal');
    })();
    expect(err).toBeInstanceOf(RelayError);
    expect(err.code).toBe('invalid_request');
    expect(err.message).toBe(
      'RCPT TO "counsel%lawfirm.example@corp.test" source routing (%) is not allowed; address the recipient directly as name@their-domain.',
    );
    expect(err.details).toEqual({ field: 'RCPT TO', reason: 'percent_route' });
  });
});

describe('every user of the grammar', () => {
  it('HTTP fields: the refusal lists the field and the hint', () => {
    let caught: unknown;
    try {
      parseInput(emailAddress.array(), ['sec@corp.example', 'counsel%lawfirm.example@corp.test']);
    } catch (err) {
      caught = err;
    }
    expect(caught).toBeInstanceOf(RelayError);
    expect((caught as RelayError).message).toBe(
      'Invalid request body: 1 "counsel%lawfirm.example@corp.test" source routing (%) is not allowed; address the recipient directly as name@their-domain',
    );
    expect(parseInput(emailAddress, 'IC@Corp.Example')).toBe('ic@corp.example');
  });

  it('path parameters', () => {
    expect(() => emailParam('lawfirm.example!counsel@corp.test')).toThrow(/bang paths \(!\) are not allowed/);
    expect(emailParam('Counsel@Bücher.Example')).toBe('counsel@xn--bcher-kva.example');
  });

  it('the composer refuses a routed address even when the caller skipped validation', () => {
    const m: MessageContent = {
      messageId: '<id@corp.example>',
      date: new Date(0),
      from: { address: 'ic@corp.example' },
      to: [{ address: 'counsel%lawfirm.example@corp.test' }],
      cc: [],
      text: 'x',
      attachments: [],
    };
    expect(() => composePlain(m)).toThrow(/to\[0\]\.address source routing \(%\) is not allowed/);
    expect(() => composePlain({ ...m, to: [{ address: 'lawfirm.example!counsel@corp.test' }] })).toThrow(/bang paths/);
    expect(composePlain({ ...m, to: [{ address: 'counsel@bücher.example' }] }).toString('latin1')).toContain('To: counsel@xn--bcher-kva.example\r\n');
  });

  it('the internal-domain matcher: a routed address is never internal, whatever follows its last @', () => {
    const internal = createDomainMatcher(['corp.test', '*.corp.test']);
    expect(internal('sec@corp.test')).toBe(true);
    expect(internal('sec@eu.corp.test')).toBe(true);
    for (const routed of ['counsel%lawfirm.example@corp.test', 'lawfirm.example!counsel@corp.test', '@lawfirm.example:counsel@corp.test', 'counsel@lawfirm.example@corp.test', '"counsel@lawfirm.example"@corp.test']) {
      expect(internal(routed), routed).toBe(false);
    }
  });
});
