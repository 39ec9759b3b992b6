import { createHash } from 'node:crypto';
import { describe, expect, it } from 'vitest';
import { decideSms, fingerprint, isPermittedSmsBody, type SmsMemberState, type SmsPolicyInput } from '../../src/policy/sms.js';
import { loadTemplate } from '../../src/templates.js';

const NUDGE = 'Please join Slack ASAP.';
const NOW = Date.parse('2026-11-22T09:00:00Z');
const INTERVAL = 5 * 60_000;

const member = (phone: string | null, extra: Partial<SmsMemberState> = {}): SmsMemberState => ({ status: 'active', phone, lastNudgeMs: undefined, ...extra });

const MEMBERS = new Map<string, SmsMemberState>([
  ['ic@corp.example', member('+15555550100')],
  ['sec@corp.example', member('+15555550101')],
  ['exec@corp.example', member(null)],
  ['old@corp.example', member('+15555550103', { status: 'removed' })],
  ['recent@corp.example', member('+15555550104', { lastNudgeMs: NOW - INTERVAL + 1 })],
  ['due@corp.example', member('+15555550105', { lastNudgeMs: NOW - INTERVAL })],
  ['shared@corp.example', member('+15555550101')],
]);

function input(overrides: Partial<SmsPolicyInput> = {}): SmsPolicyInput {
  return {
    sender: 'ic@corp.example',
    senderOnRoster: true,
    incidentStatus: 'open',
    securityMembers: 1,
    nudge: NUDGE,
    body: undefined,
    to: ['sec@corp.example'],
    members: MEMBERS,
    nowMs: NOW,
    intervalMs: INTERVAL,
    ...overrides,
  };
}

describe('the nudge template', () => {
  it('is exactly the fixed text, no newline, no placeholder', () => {
    expect(loadTemplate('sms-nudge')).toBe(NUDGE);
  });
});

describe('rule sms: the body', () => {
  it.each<[string, string | undefined, boolean]>([
    ['no body', undefined, true],
    ['exactly the nudge', NUDGE, true],
    ['empty string', '', false],
    ['nudge with text added', `${NUDGE} The DB at prod-db-3 is breached.`, false],
    ['text before the nudge', `URGENT ${NUDGE}`, false],
    ['trailing newline', `${NUDGE}\n`, false],
    ['trailing CRLF', `${NUDGE}\r\n`, false],
    ['leading space', ` ${NUDGE}`, false],
    ['trailing space', `${NUDGE} `, false],
    ['double space inside', 'Please join  Slack ASAP.', false],
    ['non-breaking space', 'Please\u00a0join Slack ASAP.', false],
    ['zero-width space', 'Please join\u200b Slack ASAP.', false],
    ['zero-width joiner at the end', `${NUDGE}\u200d`, false],
    ['BOM in front', `\ufeff${NUDGE}`, false],
    ['lower case', NUDGE.toLowerCase(), false],
    ['upper case', NUDGE.toUpperCase(), false],
    ['no full stop', 'Please join Slack ASAP', false],
    ['Cyrillic a (lookalike)', 'Please join Sl\u0430ck ASAP.', false],
    ['Greek capital alpha (lookalike)', 'Please join Slack \u0391SAP.', false],
    ['fullwidth full stop', 'Please join Slack ASAP\uff0e', false],
    ['decomposed accent appended', `${NUDGE}\u0301`, false],
    ['right-to-left override', `\u202e${NUDGE}`, false],
    ['the template name', 'sms-nudge', false],
  ])('%s', (_name, body, allowed) => {
    expect(isPermittedSmsBody(body, NUDGE)).toBe(allowed);
    const decision = decideSms(input({ body }));
    if (allowed) {
      expect(decision.outcome).toBe('accept');
      expect(decision.rules.find((r) => r.rule === 'sms')).toMatchObject({ result: 'pass' });
    } else {
      expect(decision.outcome).toBe('refuse');
      if (decision.outcome !== 'refuse') return;
      expect(decision.error.code).toBe('sms_content_blocked');
      expect(decision.error.httpStatus).toBe(422);
      expect(decision.error.rule).toBe('sms');
      expect(decision.rules.find((r) => r.rule === 'sms')).toMatchObject({ result: 'fail' });
      // Neither the refusal nor the rule list carries the text.
      const wire = JSON.stringify({ error: decision.error.toJSON(), rules: decision.rules });
      if (body !== undefined && body.length > NUDGE.length) expect(wire).not.toContain(body);
      expect(wire).not.toContain('prod-db-3');
    }
  });

  it('fingerprints refused text by length and SHA-256 only', () => {
    const text = 'Please join Slack ASAP. Breach at prod-db-3 — 🚨';
    expect(fingerprint(text)).toEqual({ length: [...text].length, sha256: createHash('sha256').update(text, 'utf8').digest('hex') });
    expect(fingerprint(text).length).toBe(47);
  });
});

describe('decideSms: recipients and refusals', () => {
  it.each<[string, Partial<SmsPolicyInput>, string | null, Record<string, unknown>]>([
    ['one member', {}, null, { results: [{ email: 'sec@corp.example', status: 'queued' }] }],
    ['closed incident', { incidentStatus: 'closed' }, 'incident_closed', {}],
    ['sender off the roster', { senderOnRoster: false }, 'forbidden', {}],
    ['no security member on the roster', { securityMembers: 0 }, 'security_team_missing', {}],
    ['a raw phone number', { to: ['+15555550101'] }, 'invalid_request', {}],
    ['a phone number with separators', { to: ['(555) 555-0101'] }, 'invalid_request', {}],
    ['a phone number beside a member', { to: ['sec@corp.example', '+15555559999'] }, 'invalid_request', {}],
    ['free text as a recipient', { to: ['the db is breached'] }, 'invalid_request', {}],
    ['an off-roster address', { to: ['sec@corp.example', 'nosy@corp.example'] }, 'recipient_not_on_roster', { recipients: ['nosy@corp.example'] }],
    ['a removed member', { to: ['old@corp.example'] }, null, { results: [{ email: 'old@corp.example', status: 'skipped', reason: 'removed' }] }],
    ['no phone on file', { to: ['exec@corp.example'] }, null, { results: [{ email: 'exec@corp.example', status: 'skipped', reason: 'no_phone' }] }],
    ['nudged inside the interval', { to: ['recent@corp.example'] }, null, { results: [{ email: 'recent@corp.example', status: 'skipped', reason: 'recently_nudged' }] }],
    ['nudged exactly one interval ago', { to: ['due@corp.example'] }, null, { results: [{ email: 'due@corp.example', status: 'queued' }] }],
    ['interval 0 never skips', { to: ['recent@corp.example'], intervalMs: 0 }, null, { results: [{ email: 'recent@corp.example', status: 'queued' }] }],
    ['a repeated address counts once', { to: ['sec@corp.example', 'sec@corp.example'] }, null, { results: [{ email: 'sec@corp.example', status: 'queued' }] }],
    [
      'two members sharing one phone get one nudge',
      { to: ['sec@corp.example', 'shared@corp.example'] },
      null,
      { results: [{ email: 'sec@corp.example', status: 'queued' }, { email: 'shared@corp.example', status: 'skipped', reason: 'recently_nudged' }] },
    ],
  ])('%s', (_name, overrides, code, expected) => {
    const decision = decideSms(input(overrides));
    if (code === null) {
      expect(decision.outcome).toBe('accept');
      if (decision.outcome !== 'accept') return;
      expect(decision.plan.results).toEqual(expected['results']);
      expect(decision.plan.send.map((s) => s.email)).toEqual((expected['results'] as { email: string; status: string }[]).filter((r) => r.status === 'queued').map((r) => r.email));
    } else {
      expect(decision.outcome).toBe('refuse');
      if (decision.outcome !== 'refuse') return;
      expect(decision.error.code).toBe(code);
      if (expected['recipients']) expect(decision.error.details).toMatchObject({ recipients: expected['recipients'] });
    }
  });

  it('"roster" nudges each member the caller passes, with the phone on their entry', () => {
    const decision = decideSms(input({ to: 'roster' }));
    expect(decision.outcome).toBe('accept');
    if (decision.outcome !== 'accept') return;
    expect(decision.plan.send).toEqual([
      { email: 'ic@corp.example', phone: '+15555550100' },
      { email: 'sec@corp.example', phone: '+15555550101' },
      { email: 'due@corp.example', phone: '+15555550105' },
    ]);
    expect(decision.plan.results.filter((r) => r.status === 'skipped').map((r) => r.reason)).toEqual(['no_phone', 'removed', 'recently_nudged', 'recently_nudged']);
  });

  it('lists every rule, and a refusal names the first failed one', () => {
    const decision = decideSms(input({ incidentStatus: 'closed', body: 'x', to: ['nosy@corp.example'] }));
    expect(decision.outcome).toBe('refuse');
    if (decision.outcome !== 'refuse') return;
    expect(decision.error.code).toBe('incident_closed');
    expect(Object.fromEntries(decision.rules.map((r) => [r.rule, r.result]))).toEqual({ codename: 'pass', 'incident-open': 'fail', roster: 'fail', 'security-team': 'pass', sms: 'fail' });
  });

  it('refuses blocked text even when every recipient is fine', () => {
    const decision = decideSms(input({ to: 'roster', body: `${NUDGE}!` }));
    expect(decision.outcome).toBe('refuse');
  });
});

describe('decideSms: rule security-team', () => {
  it.each<[number, string | null, string, string]>([
    [0, 'security_team_missing', 'fail', 'no active member with role security on the roster'],
    [1, null, 'pass', '1 active security member(s) on the roster'],
    [3, null, 'pass', '3 active security member(s) on the roster'],
  ])('%i security member(s)', (securityMembers, code, result, reason) => {
    const decision = decideSms(input({ securityMembers }));
    expect(decision.outcome === 'refuse' ? decision.error.code : null).toBe(code);
    expect(decision.rules.find((r) => r.rule === 'security-team')).toEqual({ rule: 'security-team', result, reason });
  });

  it('refuses with 409, nothing queued, and says how to add one', () => {
    const decision = decideSms(input({ securityMembers: 0, to: 'roster' }));
    expect(decision.outcome).toBe('refuse');
    if (decision.outcome !== 'refuse') return;
    expect(decision.error.httpStatus).toBe(409);
    expect(decision.error.toJSON()).toEqual({
      error: {
        code: 'security_team_missing',
        rule: 'security-team',
        message:
          'No SMS is sent for this incident until a member with role security is on its roster: the security team is always included. Nothing was sent; a commander or deputy adds one with PUT /v1/incidents/:codename/roster/:email {"name": "…", "role": "security"}, or an admin sets RELAY_SECURITY_TEAM so every new incident starts with them.',
      },
    });
    // The other rules are still computed and listed.
    expect(Object.fromEntries(decision.rules.map((r) => [r.rule, r.result]))).toEqual({ codename: 'pass', 'incident-open': 'pass', roster: 'pass', 'security-team': 'fail', sms: 'pass' });
  });
});

describe('decideSms: rule codename is computed over the template', () => {
  it.each<[string, string | null, string]>([
    [NUDGE, null, 'pass'],
    ['Join #{codename} on Slack ASAP.', 'incident_details_exposed', 'fail'],
    ['Please join Slack ASAP. {label}', 'incident_details_exposed', 'fail'],
    ['Please join Slack ASAP {now}', 'incident_details_exposed', 'fail'],
    ['Please join Slack ASAP. {}', null, 'pass'], // braces alone fill nothing in
  ])('nudge %j', (nudge, code, result) => {
    const decision = decideSms(input({ nudge }));
    expect(decision.outcome === 'refuse' ? decision.error.code : null).toBe(code);
    expect(decision.rules.find((r) => r.rule === 'codename')?.result).toBe(result);
  });

  it('says which placeholder and what to do', () => {
    const decision = decideSms(input({ nudge: 'Join #{codename} now' }));
    expect(decision.outcome === 'refuse' && [decision.error.rule, decision.error.message]).toEqual([
      'codename',
      'templates/sms-nudge.txt holds the placeholder {codename}; SMS never carries anything about the incident. Nothing was sent; ask an admin to restore the fixed nudge "Please join Slack ASAP."',
    ]);
  });
});
