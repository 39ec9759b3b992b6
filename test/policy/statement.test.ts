/**
 * The announcement checks of issue 14, table by table: dates in the title,
 * the forbidden phrase and its disguises, private terms, the audience, and
 * hostile input. Each table names the rule it proves; see the mutation notes
 * in README ("Announcement checks") for how each was seen to fail.
 */
import { describe, expect, it } from 'vitest';
import { createDomainMatcher } from '../../src/policy/domains.js';
import { checkAnnouncement, type AnnouncementInput, type Finding } from '../../src/policy/statement.js';
import { loadStatementPhrases } from '../../src/templates.js';

const NOW = new Date('2026-11-28T12:00:00Z');
const phrases = loadStatementPhrases();

function input(overrides: Partial<AnnouncementInput> = {}): AnnouncementInput {
  return {
    kind: 'external',
    title: 'Security update, 2026-11-28',
    text: 'On November 20 an attacker used a stolen support credential to read order records. Here is what happened and what we changed.',
    audience: ['alice@customer.example', 'bob@partner.example'],
    incident: { codename: 'sapphire-unicorn', label: 'Customer DB exfiltration via VPN', rosterAddresses: ['ic@corp.example', 'sec.lead@corp.example', 'counsel@lawfirm.example'] },
    isInternal: createDomainMatcher(['corp.example']),
    phrases,
    maxAudience: 1000,
    now: NOW,
    ...overrides,
  };
}

function findingsOf(overrides: Partial<AnnouncementInput>): Finding[] {
  const d = checkAnnouncement(input(overrides));
  return d.outcome === 'refuse' ? ((d.error.details?.['findings'] as Finding[] | undefined) ?? []) : [];
}

function results(overrides: Partial<AnnouncementInput>): Record<string, string> {
  return Object.fromEntries(checkAnnouncement(input(overrides)).rules.map((r) => [r.rule, r.result]));
}

describe('checkAnnouncement: a clean announcement', () => {
  it('is accepted with every rule computed and listed', () => {
    const d = checkAnnouncement(input());
    expect(d.outcome).toBe('accept');
    expect(d.rules).toEqual([
      { rule: 'statement', result: 'pass', reason: 'title dated 2026-11-28; none of 4 forbidden phrase(s) in title or text' },
      { rule: 'codename', result: 'pass', reason: 'title and text name neither the codename, the private label, nor any of 2 internal responder address(es)' },
      { rule: 'audience', result: 'pass', reason: 'external announcement to 2 address(es), all outside the company, within the limit of 1000' },
    ]);
    if (d.outcome === 'accept') expect(d.plan).toEqual({ kind: 'external', recipients: ['alice@customer.example', 'bob@partner.example'], titleDate: '2026-11-28' });
  });
});

describe('rule statement: the title carries a date', () => {
  it.each<[string, string]>([
    ['Security update, 2026-11-28', '2026-11-28'],
    ['2026-11-28: security update', '2026-11-28'],
    ['Security update, November 28, 2026', '2026-11-28'],
    ['Security update, Nov 28, 2026', '2026-11-28'],
    ['Security update, Nov. 28th, 2026', '2026-11-28'],
    ['Security update, November 28 2026', '2026-11-28'],
    ['Security update, Saturday, November 28, 2026', '2026-11-28'],
    ['Security update, 28 November 2026', '2026-11-28'],
    ['Security update, 28 Nov 2026', '2026-11-28'],
    ['Security update, 28th of November, 2026', '2026-11-28'],
    ['SECURITY UPDATE — NOVEMBER 28, 2026', '2026-11-28'],
    ['Security update, Sept 3, 2026', '2026-09-03'],
    ['Security update, 3 September 2026', '2026-09-03'],
    ['Security update (28\u00a0November\u00a02026)', '2026-11-28'],
    ['Security update:  November  28,  2026', '2026-11-28'], // doubled spaces (a tab is refused: see hostile input)
    ['Security update, 2026\u201111\u201128', '2026-11-28'], // non-breaking hyphens, as word processors paste them
    ['Security update, \uff12\uff10\uff12\uff16-\uff11\uff11-\uff12\uff18', '2026-11-28'], // full-width digits
    ['Update on the 2024-02-29 incident', '2024-02-29'], // a leap day
    ['Follow-up to our 2019-06-01 notice, 2026-11-28', '2026-11-28'],
    ['Scheduled maintenance 2027-06-30', '2027-06-30'], // within a year ahead
  ])('accepts %j as dated %s', (title, date) => {
    const d = checkAnnouncement(input({ title }));
    expect(d.outcome === 'refuse' ? d.error.details : undefined).toBeUndefined();
    if (d.outcome === 'accept') expect(d.plan.titleDate).toBe(date);
  });

  it.each<[string, Finding['kind'], string | undefined]>([
    ['Security update', 'no_date', undefined],
    ['Security update for November', 'no_date', undefined],
    ['Security update, 28 November', 'no_date', undefined],
    ['Security update, November 2026', 'no_date', undefined],
    ['Security update 2026', 'no_date', undefined],
    ['Security update 20261128', 'no_date', undefined],
    ['Security update 12026-11-28', 'no_date', undefined],
    ['Security update 11/28/2026', 'ambiguous_date', '11/28/2026'],
    ['Security update 03/04/2026', 'ambiguous_date', '03/04/2026'],
    ['Security update 28.11.2026', 'ambiguous_date', '28.11.2026'],
    ['Security update 2026/11/28', 'ambiguous_date', '2026/11/28'],
    ['Security update 28-11-2026', 'ambiguous_date', '28-11-2026'],
    ['Security update 2026-02-30', 'impossible_date', '2026-02-30'],
    ['Security update 2025-02-29', 'impossible_date', '2025-02-29'],
    ['Security update 2100-02-29', 'impossible_date', '2100-02-29'], // a century is a leap year only every 400 years
    ['Security update 2026-13-01', 'impossible_date', '2026-13-01'],
    ['Security update 2026-11-00', 'impossible_date', '2026-11-00'],
    ['Security update February 30, 2026', 'impossible_date', 'february 30, 2026'],
    ['Security update 31 April 2026', 'impossible_date', '31 april 2026'],
    ['Update 2026-11-28, correcting the 2026-02-30 notice', 'impossible_date', '2026-02-30'],
    ['Security update 2062-11-28', 'implausible_date', '2062-11-28'],
    ['Security update 1999-11-28', 'implausible_date', '1999-11-28'],
  ])('refuses %j: %s', (title, kind, date) => {
    const d = checkAnnouncement(input({ title }));
    expect(d.outcome).toBe('refuse');
    if (d.outcome !== 'refuse') return;
    expect(d.error.code).toBe('statement_rejected');
    expect(d.error.httpStatus).toBe(422);
    expect(d.error.rule).toBe('statement');
    expect(d.rules.find((r) => r.rule === 'statement')).toEqual({ rule: 'statement', result: 'fail', reason: `title: ${kind}` });
    const findings = d.error.details?.['findings'] as Finding[];
    expect(findings.map((f) => [f.rule, f.field, f.kind, f.date])).toEqual([['statement', 'title', kind, date]]);
  });

  it('says what to write, with the clock\'s date as the example', () => {
    const d = checkAnnouncement(input({ title: 'Security update' }));
    expect(d.outcome === 'refuse' && d.error.message).toBe(
      'The announcement cannot go out as written: The title has no date; put the announcement\'s date in it (e.g. 2026-11-28 or November 28, 2026) so readers never take it for news of a new breach. Nothing was sent; edit it and check again.',
    );
    const impossible = checkAnnouncement(input({ title: 'Security update 2026-02-30' }));
    expect(impossible.outcome === 'refuse' && impossible.error.message).toBe(
      'The announcement cannot go out as written: The title\'s date "2026-02-30" is not a real day; correct it. Nothing was sent; edit it and check again.',
    );
    const ambiguous = checkAnnouncement(input({ title: 'Security update 11/28/2026' }));
    expect(ambiguous.outcome === 'refuse' && ambiguous.error.message).toContain('write it as YYYY-MM-DD or with the month\'s name (e.g. 2026-11-28 or November 28, 2026)');
  });

  it('does not require the date in the text', () => {
    expect(checkAnnouncement(input({ text: 'No date here at all.' })).outcome).toBe('accept');
  });
});

describe('rule statement: never "We take security very seriously"', () => {
  // Ten and more disguises of the playbook's sentence, each caught in the text and in the title.
  it.each<[string, string, string]>([
    ['as the playbook writes it', 'We take security very seriously.', 'we-take-security-seriously'],
    ['in capitals', 'WE TAKE SECURITY VERY SERIOUSLY!', 'we-take-security-seriously'],
    ['with curly quotes and apostrophe', 'We\u2019re taking \u201csecurity\u201d very seriously.', 'we-take-security-seriously'],
    ['with extra spaces, tabs and newlines', 'We   take\n\nsecurity \t very\r\n   seriously.', 'we-take-security-seriously'],
    ['with no-break spaces', 'We\u00a0take\u00a0security\u202fvery\u00a0seriously.', 'we-take-security-seriously'],
    ['with a zero-width space inside a word', 'We take secu\u200brity very serious\u200bly.', 'we-take-security-seriously'],
    ['with soft hyphens and a zero-width joiner', 'We take se\u00adcu\u00adrity very se\u200drious\u00adly.', 'we-take-security-seriously'],
    ['with words in between', 'We take the security of your data very seriously.', 'we-take-security-seriously'],
    ['turned around', 'Security is something we take very seriously.', 'security-is-something-we-take-seriously'],
    ['in the third person', 'Acme takes the security of its customers seriously.', 'company-takes-security-seriously'],
    ['in the passive', 'Your security is always taken extremely seriously.', 'security-is-taken-seriously'],
    ['with privacy beside security', 'We take your privacy and security extremely seriously.', 'we-take-security-seriously'],
    ['as HTML entities', 'We take s&#101;curity very&nbsp;serious&#x6c;y.', 'we-take-security-seriously'],
    ['inside HTML tags', '<p>We take <b>security</b></p><p>very <i>serious</i>ly.</p>', 'we-take-security-seriously'],
    ['with Cyrillic look-alike letters', 'We t\u0430ke s\u0435curity very seri\u043eusly.', 'we-take-security-seriously'],
    ['with a Greek omicron', 'We take security very seri\u03bfusly.', 'we-take-security-seriously'],
    ['in full-width letters', '\uff37\uff45 \uff54\uff41\uff4b\uff45 \uff53\uff45\uff43\uff55\uff52\uff49\uff54\uff59 \uff53\uff45\uff52\uff49\uff4f\uff55\uff53\uff4c\uff59', 'we-take-security-seriously'],
    ['in mathematical bold', 'We take \u{1d42c}\u{1d41e}\u{1d41c}\u{1d42e}\u{1d42b}\u{1d422}\u{1d42d}\u{1d432} very seriously.', 'we-take-security-seriously'],
    ['with accents', 'We take s\u00e9curity very s\u00e9riously.', 'we-take-security-seriously'],
    ['with combining marks', 'We take se\u0301curity very seriously\u0332.', 'we-take-security-seriously'],
    ['treated, not taken', 'We have always treated the protection of your data seriously.', 'we-take-security-seriously'],
    ['as a noun', 'We take cybersecurity with the utmost seriousness.', 'we-take-security-seriously'],
  ])('finds it %s', (_how, sentence, id) => {
    for (const field of ['text', 'title'] as const) {
      const overrides = field === 'text' ? { text: `Here is what happened. ${sentence} We changed the support login.` } : { title: `2026-11-28: ${sentence}`.slice(0, 200) };
      if (field === 'title' && /[\r\n]/.test(sentence)) {
        // A line break cannot reach a title at all: refused as bad input before any content check.
        expect(findingsOf(overrides).map((f) => f.kind)).toEqual(['title_not_one_line']);
        continue;
      }
      const findings = findingsOf(overrides);
      expect(findings.filter((f) => f.kind === 'phrase').map((f) => [f.rule, f.field, f.phrase]), field).toEqual([['statement', field, id]]);
      const d = checkAnnouncement(input(overrides));
      expect(d.outcome === 'refuse' && d.error.code).toBe('statement_rejected');
    }
  });

  it.each([
    'We took the outage seriously.',
    'Security teams worked overnight to contain the intrusion.',
    'Take care; we will update you on 2026-11-28.',
    'Please take these security steps seriously: reset your password today.',
    'Our security team takes every report; seriously, tell us what you saw.',
    'We took steps to secure your account and are seriously sorry for the delay.',
    'We take responsibility, and our security review found the cause; we treated it seriously.',
    'The attacker took security tokens from a laptop. Seriously affected customers will hear from us first.',
  ])('lets an innocent sentence through: %j', (sentence) => {
    const d = checkAnnouncement(input({ text: sentence }));
    expect(d.outcome === 'refuse' ? d.error.details : undefined).toBeUndefined();
    expect(results({ text: sentence })['statement']).toBe('pass');
  });

  it('names the phrase and the playbook\'s reason in the message', () => {
    const d = checkAnnouncement(input({ text: 'We take security very seriously.' }));
    expect(d.outcome === 'refuse' && d.error.message).toBe(
      'The announcement cannot go out as written: The text says something like "We take security very seriously" (we-take-security-seriously): The playbook forbids "We take security very seriously" in any form: it makes readers cringe. Say what you did and will do instead. Nothing was sent; edit it and check again.',
    );
  });

  it('lists every statement finding at once: a missing date and the phrase', () => {
    expect(findingsOf({ title: 'Security update', text: 'We take security very seriously.' }).map((f) => [f.field, f.kind])).toEqual([
      ['title', 'no_date'],
      ['text', 'phrase'],
    ]);
  });

  it('keeps the text out of rule reasons and findings (they are audited)', () => {
    const d = checkAnnouncement(input({ title: 'Secret title words', text: 'We take security very seriously. Hidden body words.', audience: ['x@corp.example'] }));
    const recorded = JSON.stringify([d.rules, d.outcome === 'refuse' ? d.error.details : null]);
    for (const secret of ['Secret', 'secret', 'Hidden', 'hidden']) expect(recorded).not.toContain(secret);
  });
});

describe('rule codename: nothing that stays inside the response team', () => {
  it.each<[string, Partial<AnnouncementInput>, Array<[string, string]>]>([
    ['the codename in the title', { title: 'sapphire-unicorn update, 2026-11-28' }, [['title', 'codename']]],
    ['the codename in words', { text: 'Team Sapphire Unicorn has finished.' }, [['text', 'codename']]],
    ['the codename run together', { text: 'See #SapphireUnicorn.' }, [['text', 'codename']]],
    ['the codename with underscores', { text: 'ref sapphire_unicorn' }, [['text', 'codename']]],
    ['the codename in Cyrillic disguise', { text: 's\u0430pphire-unic\u043ern' }, [['text', 'codename']]],
    ['a suffixed codename without its number', { incident: { codename: 'amber-otter-2', label: null, rosterAddresses: [] }, text: 'Amber Otter is closed.' }, [['text', 'codename']]],
    ['the label', { text: 'This was a customer DB exfiltration via VPN.' }, [['text', 'label']]],
    ['the label, other case and punctuation', { title: '2026-11-28: CUSTOMER-DB EXFILTRATION, VIA VPN' }, [['title', 'label']]],
    ['an internal responder\'s address', { text: 'Questions to ic@corp.example please.' }, [['text', 'responder_address']]],
    ['an internal responder\'s address in capitals', { text: 'Write to SEC.LEAD@CORP.EXAMPLE.' }, [['text', 'responder_address']]],
    ['all of them, in both fields', { title: 'sapphire-unicorn 2026-11-28', text: 'customer db exfiltration via vpn, ask ic@corp.example' }, [['title', 'codename'], ['text', 'label'], ['text', 'responder_address']]],
  ])('refuses %s', (_name, overrides, expected) => {
    const d = checkAnnouncement(input(overrides));
    expect(d.outcome).toBe('refuse');
    if (d.outcome !== 'refuse') return;
    expect(d.error.code).toBe('incident_details_exposed');
    expect(d.error.httpStatus).toBe(422);
    expect(d.error.rule).toBe('codename');
    expect((d.error.details?.['findings'] as Finding[]).map((f) => [f.field, f.kind])).toEqual(expected);
    expect(d.rules.find((r) => r.rule === 'codename')?.result).toBe('fail');
  });

  it.each<[string, Partial<AnnouncementInput>]>([
    ['words that merely contain the codename\'s', { text: 'The chamber otters and sapphires are fine; a unicorn startup.' }],
    ['part of the label', { text: 'Customer data was read through the VPN.' }],
    ['an external roster member\'s address', { text: 'Our counsel is counsel@lawfirm.example.' }],
    ['no label set', { incident: { codename: 'sapphire-unicorn', label: null, rosterAddresses: [] } }],
    ['a support address that is not on the roster', { text: 'Write to support@corp.example.' }],
  ])('lets through %s', (_name, overrides) => {
    expect(results(overrides)['codename']).toBe('pass');
    expect(checkAnnouncement(input(overrides)).outcome).toBe('accept');
  });

  it('names the addresses it found, never the label', () => {
    const d = checkAnnouncement(input({ text: 'customer db exfiltration via vpn; ic@corp.example' }));
    expect(d.outcome === 'refuse' && d.error.message).toBe(
      "The announcement gives away what stays inside the response team: The text contains the incident's private label; describe what happened in words written for readers instead. The text names the internal address(es) of responders (ic@corp.example); give a team or support address instead. Nothing was sent; edit it and check again.",
    );
  });
});

describe('rule audience: inside or outside by kind, valid, within the limit', () => {
  it.each<[string, Partial<AnnouncementInput>, string, Array<[string, string[] | undefined]>]>([
    ['an external announcement to an insider', { audience: ['alice@customer.example', 'staff@corp.example'] }, 'audience_invalid', [['internal_address', ['staff@corp.example']]]],
    ['an external announcement to a subdomain of the company', { audience: ['ops@eu.corp.example'], isInternal: createDomainMatcher(['corp.example', '*.corp.example']) }, 'audience_invalid', [['internal_address', ['ops@eu.corp.example']]]],
    ['an internal announcement to an outsider', { kind: 'internal', audience: ['staff@corp.example', 'alice@customer.example'] }, 'audience_invalid', [['external_address', ['alice@customer.example']]]],
    ['an empty audience', { audience: [] }, 'audience_invalid', [['empty_audience', undefined]]],
    ['an entry that is not an address', { audience: ['alice@customer.example', 'not-an-address', '+15555550100'] }, 'audience_invalid', [['bad_address', ['not-an-address', '+15555550100']]]],
    ['an address with a line break', { audience: ['alice@customer.example\r\nBcc: x@evil.example'] }, 'audience_invalid', [['bad_address', ['alice@customer.example??Bcc: x@evil.example']]]],
  ])('refuses %s', (_name, overrides, code, expected) => {
    const d = checkAnnouncement(input(overrides));
    expect(d.outcome).toBe('refuse');
    if (d.outcome !== 'refuse') return;
    expect(d.error.code).toBe(code);
    expect(d.error.rule).toBe('audience');
    expect((d.error.details?.['findings'] as Finding[]).map((f) => [f.kind, f.addresses])).toEqual(expected);
    expect(results(overrides)['audience']).toBe('fail');
  });

  it('an internal announcement to insiders passes', () => {
    const d = checkAnnouncement(input({ kind: 'internal', audience: ['staff@corp.example', 'all@corp.example'] }));
    expect(d.outcome).toBe('accept');
    expect(d.rules.find((r) => r.rule === 'audience')?.reason).toBe('internal announcement to 2 address(es), all inside the company, within the limit of 1000');
  });

  it('lowercases and counts each address once', () => {
    const d = checkAnnouncement(input({ audience: ['Alice@Customer.example', 'alice@customer.example', 'bob@partner.example'] }));
    expect(d.outcome === 'accept' && d.plan.recipients).toEqual(['alice@customer.example', 'bob@partner.example']);
  });

  it('refuses 10,000 addresses over a limit of 1,000 with its own code, before reading them', () => {
    const audience = Array.from({ length: 10_000 }, (_, i) => (i % 2 ? `user${i}@customer.example` : 'not an address'));
    const started = performance.now();
    const d = checkAnnouncement(input({ audience }));
    expect(performance.now() - started).toBeLessThan(1000);
    expect(d.outcome).toBe('refuse');
    if (d.outcome !== 'refuse') return;
    expect(d.error.code).toBe('audience_too_large');
    expect(d.error.httpStatus).toBe(422);
    expect(d.error.message).toBe('The audience has 10000 addresses; this relay sends an announcement to at most 1000. Split it, or ask an admin about the limit. Nothing was sent.');
    expect(d.error.details?.['count']).toBe(10_000);
    expect(d.error.details?.['max']).toBe(1000);
    expect((d.error.details?.['findings'] as Finding[]).map((f) => f.kind)).toEqual(['too_many']);
  });

  it('takes exactly the limit', () => {
    const audience = Array.from({ length: 1000 }, (_, i) => `user${i}@customer.example`);
    const d = checkAnnouncement(input({ audience }));
    expect(d.outcome === 'accept' && d.plan.recipients.length).toBe(1000);
  });
});

describe('hostile input: each a clear refusal with its code', () => {
  it.each([
    ['CR LF', 'Update 2026-11-28\r\nBcc: everyone@corp.example'],
    ['LF', 'Update 2026-11-28\nX-Injected: 1'],
    ['CR', 'Update 2026-11-28\rX'],
    ['NUL', 'Update 2026-11-28\0'],
    ['NEL', 'Update 2026-11-28\u0085X'],
    ['U+2028', 'Update 2026-11-28\u2028X'],
    ['U+2029', 'Update 2026-11-28\u2029X'],
    ['ESC', 'Update 2026-11-28\u001b[31m'],
    // The composer writes no control character in the Subject, tab included: refused here, not at send after approval.
    ['a tab', 'Update:\tNovember 28, 2026'],
  ])('a title with %s is invalid_request: it would become a header', (_name, title) => {
    const d = checkAnnouncement(input({ title }));
    expect(d.outcome).toBe('refuse');
    if (d.outcome !== 'refuse') return;
    expect(d.error.code).toBe('invalid_request');
    expect(d.error.httpStatus).toBe(400);
    expect(d.error.message).toBe('The title must be one line without control characters: no tab, CR, LF, NUL or Unicode line separators. Nothing was sent.');
    expect(d.error.details?.['field']).toBe('title');
    expect(d.rules.find((r) => r.rule === 'statement')).toEqual({ rule: 'statement', result: 'fail', reason: 'title: title_not_one_line' });
  });

  it('line breaks in the text are fine: it is the body', () => {
    expect(checkAnnouncement(input({ text: 'Line one.\r\nLine two.\n\nLine three.' })).outcome).toBe('accept');
  });

  it.each<[string, Partial<AnnouncementInput>, string]>([
    ['an empty title', { title: '' }, 'The title is empty; give the announcement a title with its date. Nothing was sent.'],
    ['a blank title', { title: ' \t ' }, 'The title is empty; give the announcement a title with its date. Nothing was sent.'],
    ['a title over 200 characters', { title: `2026-11-28 ${'x'.repeat(190)}` }, 'The title has 201 characters; keep it to 200. Nothing was sent.'],
    ['an empty text', { text: '' }, 'The text is empty; write the announcement. Nothing was sent.'],
    ['a text over 100,000 characters', { text: 'a'.repeat(100_001) }, 'The text has 100001 characters; an announcement has at most 100000. Shorten it, or link to the details. Nothing was sent.'],
  ])('%s is invalid_request', (_name, overrides, message) => {
    const d = checkAnnouncement(input(overrides));
    expect(d.outcome === 'refuse' && [d.error.code, d.error.message]).toEqual(['invalid_request', message]);
  });

  it('a malformed title and text leave the codename rule nothing to check: skip, not pass', () => {
    expect(results({ title: 'a\nb', text: '' })).toEqual({ statement: 'fail', codename: 'skip', audience: 'pass' });
  });
});
