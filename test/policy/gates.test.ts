/**
 * The release gates of an announcement (rules internal-source and approval),
 * the approve step's refusals, the content hash approvals bind, and the send
 * decision that combines them: table-driven, pure.
 */
import { describe, expect, it } from 'vitest';
import { pass, type Decision } from '../../src/policy/decision.js';
import { announcementHash, approvalRefusal, decideRelease, decideSend, type ApprovalFact, type ReleaseInput, type ReleasePlan } from '../../src/policy/gates.js';
import type { AnnouncementPlan } from '../../src/policy/statement.js';
import type { RosterRole } from '../../src/store/incidents.js';

const HASH = 'a'.repeat(64);
const OLD = 'b'.repeat(64);
const ROSTER = new Map<string, RosterRole>([
  ['ic@corp.example', 'commander'],
  ['legal@corp.example', 'legal'],
  ['comms@corp.example', 'communications'],
  ['exec@corp.example', 'executive'],
  ['sec@corp.example', 'security'],
]);
const RECORD = { at: '2026-11-28T10:00:00.000Z', by: 'ic@corp.example' };
const ok = (approver: string, contentHash = HASH): ApprovalFact => ({ approver, contentHash, voidedAt: null });

function input(overrides: Partial<ReleaseInput> = {}): ReleaseInput {
  return { kind: 'external', author: 'comms@corp.example', contentHash: HASH, approvals: [], roster: ROSTER, internalSource: RECORD, ...overrides };
}

const outcomes = (d: Decision<unknown>) => Object.fromEntries(d.rules.map((r) => [r.rule, r.result]));

describe('decideRelease', () => {
  it.each<[string, Partial<ReleaseInput>, string | null, Record<string, string>, unknown]>([
    ['internal, internal source ruled out', { kind: 'internal' }, null, { 'internal-source': 'pass', approval: 'skip' }, undefined],
    ['internal, no record', { kind: 'internal', internalSource: null }, 'internal_source_not_ruled_out', { 'internal-source': 'fail', approval: 'skip' }, undefined],
    ['external, no approvals', {}, 'approval_required', { 'internal-source': 'pass', approval: 'fail' }, { missing: ['commander', 'legal or communications'], approvedBy: [], voided: 0 }],
    ['external, the commander only', { approvals: [ok('ic@corp.example')] }, 'approval_required', { approval: 'fail' }, { missing: ['legal or communications'], approvedBy: ['ic@corp.example'] }],
    ['external, legal only', { approvals: [ok('legal@corp.example')] }, 'approval_required', { approval: 'fail' }, { missing: ['commander'], approvedBy: ['legal@corp.example'] }],
    ['external, commander and legal', { approvals: [ok('ic@corp.example'), ok('legal@corp.example')] }, null, { 'internal-source': 'pass', approval: 'pass' }, undefined],
    ['external, commander and communications (author legal)', { author: 'legal@corp.example', approvals: [ok('comms@corp.example'), ok('ic@corp.example')] }, null, { approval: 'pass' }, undefined],
    ['external, the author\'s own approval does not count', { author: 'legal@corp.example', approvals: [ok('ic@corp.example'), ok('legal@corp.example')] }, 'approval_required', { approval: 'fail' }, { missing: ['legal or communications'] }],
    ['external, approvals of an earlier content', { approvals: [ok('ic@corp.example', OLD), ok('legal@corp.example', OLD)] }, 'approval_required', { approval: 'fail' }, { missing: ['commander', 'legal or communications'], voided: 2 }],
    ['external, voided approvals', { approvals: [{ ...ok('ic@corp.example'), voidedAt: '2026-11-28T11:00:00Z' }, ok('legal@corp.example')] }, 'approval_required', { approval: 'fail' }, { missing: ['commander'], voided: 1 }],
    ['external, an approver since removed from the roster', { approvals: [ok('ic@corp.example'), ok('gone@corp.example')] }, 'approval_required', { approval: 'fail' }, { missing: ['legal or communications'] }],
    ['external, an approver whose role changed', { approvals: [ok('ic@corp.example'), ok('legal@corp.example')], roster: new Map([...ROSTER, ['legal@corp.example', 'executive']]) }, 'approval_required', { approval: 'fail' }, { missing: ['legal or communications'] }],
    ['external, two counsel but no commander', { approvals: [ok('legal@corp.example'), ok('comms@corp.example')], author: 'exec@corp.example' }, 'approval_required', { approval: 'fail' }, { missing: ['commander'] }],
    ['external, approvals by roles that do not approve', { approvals: [ok('exec@corp.example'), ok('sec@corp.example')] }, 'approval_required', { approval: 'fail' }, { missing: ['commander', 'legal or communications'], approvedBy: [] }],
    ['external, approved but no record', { internalSource: null, approvals: [ok('ic@corp.example'), ok('legal@corp.example')] }, 'internal_source_not_ruled_out', { 'internal-source': 'fail', approval: 'pass' }, undefined],
  ])('%s', (_name, overrides, code, rules, details) => {
    const d = decideRelease(input(overrides));
    expect(d.outcome).toBe(code === null ? 'accept' : 'refuse');
    if (d.outcome === 'refuse') {
      expect(d.error.code).toBe(code);
      expect(d.error.httpStatus).toBe(409);
      if (details !== undefined) expect(d.error.details).toMatchObject(details as Record<string, unknown>);
    }
    expect(outcomes(d)).toEqual({ 'internal-source': expect.any(String), approval: expect.any(String), ...rules });
    // Reasons are computed from the facts, never a constant.
    for (const r of d.rules) expect(r.reason.length).toBeGreaterThan(10);
  });

  it('names who approved, and who recorded the internal source', () => {
    const d = decideRelease(input({ approvals: [ok('legal@corp.example'), ok('ic@corp.example')] }));
    expect(d.outcome === 'accept' && d.plan).toEqual({ approvedBy: [{ approver: 'ic@corp.example', role: 'commander' }, { approver: 'legal@corp.example', role: 'legal' }] });
    expect(d.rules).toEqual([
      { rule: 'internal-source', result: 'pass', reason: 'the commander ic@corp.example recorded the internal source ruled out at 2026-11-28T10:00:00.000Z' },
      { rule: 'approval', result: 'pass', reason: 'approved for this exact content by the commander ic@corp.example and legal legal@corp.example, neither the author' },
    ]);
  });

  it('tells an author who is the only commander that the commander\'s approval cannot come', () => {
    const d = decideRelease(input({ author: 'ic@corp.example', approvals: [ok('legal@corp.example')] }));
    expect(d.outcome === 'refuse' && d.error.message).toContain('The author is the only commander');
    const two = decideRelease(input({ author: 'ic@corp.example', approvals: [ok('legal@corp.example')], roster: new Map([...ROSTER, ['ic2@corp.example', 'commander']]) }));
    expect(two.outcome === 'refuse' && two.error.message).not.toContain('only commander');
  });

  it('the refusal says what to do and records no content', () => {
    const d = decideRelease(input({ internalSource: null }));
    expect(d.outcome === 'refuse' && d.error.toJSON()).toEqual({
      error: {
        code: 'internal_source_not_ruled_out',
        rule: 'internal-source',
        message:
          'Nothing about this incident leaves the response team until the commander records that forensic analysis ruled out an internal source (the attack could be happening internally). Nothing was sent; once forensics shows it, the commander records it with POST /v1/incidents/:codename/internal-source {"ruledOut": true, "note": "…"}.',
      },
    });
  });
});

describe('approvalRefusal', () => {
  it.each<[string, { approver: string; role: RosterRole | undefined; alreadyApproved?: boolean }, string | null, string | null]>([
    ['the commander', { approver: 'ic@corp.example', role: 'commander' }, null, null],
    ['legal', { approver: 'legal@corp.example', role: 'legal' }, null, null],
    ['communications', { approver: 'comms2@corp.example', role: 'communications' }, null, null],
    ['the author', { approver: 'comms@corp.example', role: 'communications' }, 'approval_not_allowed', 'author'],
    ['the author, even as commander', { approver: 'comms@corp.example', role: 'commander' }, 'approval_not_allowed', 'author'],
    ['someone off the roster', { approver: 'nosy@corp.example', role: undefined }, 'approval_not_allowed', 'not_on_roster'],
    ['an executive', { approver: 'exec@corp.example', role: 'executive' }, 'approval_not_allowed', 'role'],
    ['a deputy', { approver: 'dep@corp.example', role: 'deputy' }, 'approval_not_allowed', 'role'],
    ['security', { approver: 'sec@corp.example', role: 'security' }, 'approval_not_allowed', 'role'],
    ['external counsel', { approver: 'counsel@lawfirm.example', role: 'external' }, 'approval_not_allowed', 'role'],
    ['twice by the same person', { approver: 'ic@corp.example', role: 'commander', alreadyApproved: true }, 'already_approved', 'already_approved'],
  ])('%s', (_name, who, code, reason) => {
    const refusal = approvalRefusal({ author: 'comms@corp.example', alreadyApproved: false, ...who });
    expect(refusal?.code ?? null).toBe(code);
    expect((refusal?.details?.['reason'] as string | undefined) ?? null).toBe(reason);
    if (refusal) expect(refusal.rule).toBe('approval');
  });
});

describe('announcementHash', () => {
  const base = { kind: 'external' as const, title: 'Notice, 2026-11-28', text: 'We found…\nDetails.', audience: ['b@client.example', 'a@client.example'] };

  it('does not depend on the audience order, case or repeats', () => {
    const h = announcementHash(base);
    expect(h).toMatch(/^[0-9a-f]{64}$/);
    expect(announcementHash({ ...base, audience: ['A@client.example', 'b@client.example', 'a@client.example'] })).toBe(h);
  });

  it.each<[string, Partial<typeof base>]>([
    ['kind', { kind: 'internal' as never }],
    ['title', { title: 'Notice, 2026-11-29' }],
    ['title by one space', { title: 'Notice,  2026-11-28' }],
    ['text', { text: 'We found…\nDetails!' }],
    ['text line end', { text: 'We found…\r\nDetails.' }],
    ['an added reader', { audience: [...base.audience, 'c@client.example'] }],
    ['a removed reader', { audience: ['a@client.example'] }],
  ])('changes with the %s', (_what, change) => {
    expect(announcementHash({ ...base, ...change })).not.toBe(announcementHash(base));
  });

  it('cannot be made equal by moving text between fields', () => {
    expect(announcementHash({ ...base, title: 'ab', text: 'c' })).not.toBe(announcementHash({ ...base, title: 'a', text: 'bc' }));
  });
});

describe('decideSend', () => {
  const content: Decision<AnnouncementPlan> = { outcome: 'accept', rules: [pass('statement', 's'), pass('codename', 'c'), pass('audience', 'a')], plan: { kind: 'external', recipients: ['a@client.example'], titleDate: '2026-11-28' } };
  const release: Decision<ReleasePlan> = decideRelease(input({ approvals: [ok('ic@corp.example'), ok('legal@corp.example')] }));

  it('lists every rule in order and accepts when all hold', () => {
    const d = decideSend({ incidentStatus: 'open', securityMembers: 1, content, release });
    expect(d.outcome).toBe('accept');
    expect(d.rules.map((r) => `${r.rule}:${r.result}`)).toEqual(['incident-open:pass', 'security-team:pass', 'statement:pass', 'codename:pass', 'audience:pass', 'internal-source:pass', 'approval:pass']);
  });

  it.each<[string, Parameters<typeof decideSend>[0], string]>([
    ['a closed incident first', { incidentStatus: 'closed', securityMembers: 0, content, release: decideRelease(input()) }, 'incident_closed'],
    ['then the security team', { incidentStatus: 'open', securityMembers: 0, content, release: decideRelease(input()) }, 'security_team_missing'],
    ['then the content', { incidentStatus: 'open', securityMembers: 1, content: { outcome: 'refuse', rules: [], error: approvalRefusal({ approver: 'x', author: 'x', role: 'legal', alreadyApproved: false })! }, release: decideRelease(input()) }, 'approval_not_allowed'],
    ['then the gates', { incidentStatus: 'open', securityMembers: 1, content, release: decideRelease(input()) }, 'approval_required'],
  ])('refuses %s', (_name, send, code) => {
    const d = decideSend(send);
    expect(d.outcome === 'refuse' && d.error.code).toBe(code);
  });
});
