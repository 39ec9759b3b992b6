import { describe, expect, it } from 'vitest';
import { createDomainMatcher } from '../../src/policy/domains.js';
import { decideEmail, type EmailPolicyInput, type KeyState } from '../../src/policy/email.js';

const usable: KeyState = { state: 'usable' };
const ROSTER = ['ic@corp.example', 'sec@corp.example', 'exec@corp.example', 'counsel@lawfirm.example', 'dfir@forensics.example'];

function input(overrides: Partial<EmailPolicyInput> = {}): EmailPolicyInput {
  return {
    sender: 'ic@corp.example',
    claimedSenders: [],
    incidentStatus: 'open',
    roster: new Set(ROSTER),
    to: ['sec@corp.example'],
    cc: [],
    bcc: [],
    hasSubject: false,
    chainExternal: false,
    isInternal: createDomainMatcher(['corp.example']),
    encryptMode: 'external',
    keys: new Map([
      ['counsel@lawfirm.example', usable],
      ['dfir@forensics.example', usable],
      ['sec@corp.example', usable],
    ]),
    ...overrides,
  };
}

function outcomes(i: EmailPolicyInput): Record<string, string> {
  return Object.fromEntries(decideEmail(i).rules.map((r) => [r.rule, r.result]));
}

describe('decideEmail: each rule alone', () => {
  it.each<[string, Partial<EmailPolicyInput>, string | null, Record<string, string>]>([
    ['internal mail is plain', {}, null, { subject: 'pass', roster: 'pass', encryption: 'skip', bcc: 'skip', sender: 'pass', 'incident-open': 'pass', codename: 'pass' }],
    ['a sender subject moves to the Topic line', { hasSubject: true }, null, { subject: 'pass' }],
    ['closed incident', { incidentStatus: 'closed' }, 'incident_closed', { 'incident-open': 'fail' }],
    ['spoofed From', { claimedSenders: ['ceo@corp.example'] }, 'sender_mismatch', { sender: 'fail' }],
    ['own address claimed in any case', { claimedSenders: ['IC@corp.example'] }, null, { sender: 'pass' }],
    ['off-roster To', { to: ['nosy@corp.example'] }, 'recipient_not_on_roster', { roster: 'fail' }],
    ['off-roster Cc', { cc: ['nosy@corp.example'] }, 'recipient_not_on_roster', { roster: 'fail' }],
    ['off-roster Bcc', { bcc: ['nosy@corp.example'] }, 'recipient_not_on_roster', { roster: 'fail' }],
    ['sender off roster', { sender: 'admin@corp.example' }, 'forbidden', { roster: 'fail' }],
    ['external recipient with key', { to: ['counsel@lawfirm.example'] }, null, { encryption: 'pass' }],
    ['external recipient without key', { to: ['counsel@lawfirm.example'], keys: new Map() }, 'missing_public_key', { encryption: 'fail' }],
    ['external recipient with expired key', { to: ['counsel@lawfirm.example'], keys: new Map([['counsel@lawfirm.example', { state: 'unusable', reason: 'expired' } as KeyState]]) }, 'unusable_public_key', { encryption: 'fail' }],
    ['internal reply in an external chain', { chainExternal: true }, null, { encryption: 'pass' }],
    ['external chain, internal recipient without key', { chainExternal: true, to: ['exec@corp.example'] }, 'missing_public_key', { encryption: 'fail' }],
    ['RELAY_ENCRYPT=always', { encryptMode: 'always' }, null, { encryption: 'pass' }],
    ['Bcc recipient', { bcc: ['exec@corp.example'] }, null, { bcc: 'pass' }],
  ])('%s', (_name, overrides, code, expected) => {
    const decision = decideEmail(input(overrides));
    if (code === null) expect(decision.outcome).toBe('accept');
    else {
      expect(decision.outcome).toBe('refuse');
      if (decision.outcome === 'refuse') expect(decision.error.code).toBe(code);
    }
    expect(outcomes(input(overrides))).toMatchObject(expected);
    // Every rule is always listed.
    expect(decision.rules.map((r) => r.rule).sort()).toEqual(['bcc', 'codename', 'encryption', 'incident-open', 'roster', 'sender', 'subject']);
  });
});

describe('decideEmail: combinations', () => {
  it('lists every outsider, across To, Cc and Bcc', () => {
    const d = decideEmail(input({ to: ['sec@corp.example', 'a@corp.example'], cc: ['b@x.example'], bcc: ['c@corp.example'] }));
    expect(d.outcome).toBe('refuse');
    if (d.outcome === 'refuse') expect(d.error.details).toEqual({ recipients: ['a@corp.example', 'b@x.example', 'c@corp.example'] });
  });

  it('lists every recipient without a key', () => {
    const d = decideEmail(input({ to: ['counsel@lawfirm.example', 'exec@corp.example'], bcc: ['dfir@forensics.example'], keys: new Map([['counsel@lawfirm.example', usable]]) }));
    expect(d.outcome).toBe('refuse');
    if (d.outcome === 'refuse') expect(d.error.details).toEqual({ recipients: ['exec@corp.example', 'dfir@forensics.example'] });
  });

  it('refuses for the closed incident first even when other rules also fail', () => {
    const d = decideEmail(input({ incidentStatus: 'closed', to: ['nosy@corp.example'] }));
    expect(d.outcome === 'refuse' && d.error.code).toBe('incident_closed');
    expect(d.rules.find((r) => r.rule === 'roster')?.result).toBe('fail');
  });

  it('plans the visible copy for To, Cc and the sender key, and a copy per Bcc', () => {
    const keys = new Map<string, KeyState>([
      ['counsel@lawfirm.example', usable],
      ['dfir@forensics.example', usable],
      ['sec@corp.example', usable],
      ['ic@corp.example', usable],
    ]);
    const d = decideEmail(input({ to: ['counsel@lawfirm.example', 'counsel@lawfirm.example'], cc: ['sec@corp.example'], bcc: ['dfir@forensics.example', 'sec@corp.example'], keys }));
    expect(d.outcome).toBe('accept');
    if (d.outcome !== 'accept') return;
    expect(d.plan).toEqual({
      encrypt: true,
      encryptReason: 'external-recipient',
      to: ['counsel@lawfirm.example'],
      cc: ['sec@corp.example'],
      bcc: ['dfir@forensics.example'],
      visibleKeyHolders: ['counsel@lawfirm.example', 'sec@corp.example', 'ic@corp.example'],
      chainExternal: true,
    });
  });

  it('leaves the sender out of the visible keys when the sender key is not usable', () => {
    const d = decideEmail(input({ to: ['counsel@lawfirm.example'], keys: new Map<string, KeyState>([['counsel@lawfirm.example', usable], ['ic@corp.example', { state: 'unusable', reason: 'expired' }]]) }));
    expect(d.outcome === 'accept' && d.plan.visibleKeyHolders).toEqual(['counsel@lawfirm.example']);
  });

  it('a Bcc to an external recipient encrypts the whole message', () => {
    const d = decideEmail(input({ bcc: ['counsel@lawfirm.example'] }));
    expect(d.outcome === 'accept' && d.plan.encrypt).toBe(true);
  });

  it('plain internal mail keeps the chain internal', () => {
    const d = decideEmail(input());
    expect(d.outcome === 'accept' && d.plan).toMatchObject({ encrypt: false, encryptReason: null, chainExternal: false, visibleKeyHolders: [] });
  });
});
