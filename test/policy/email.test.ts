import { describe, expect, it } from 'vitest';
import { createDomainMatcher } from '../../src/policy/domains.js';
import { decideEmail, type EmailPolicyInput, type HeaderExposure, type KeyState } from '../../src/policy/email.js';

const usable: KeyState = { state: 'usable' };
const ROSTER = ['ic@corp.example', 'sec@corp.example', 'exec@corp.example', 'counsel@lawfirm.example', 'dfir@forensics.example'];

function input(overrides: Partial<EmailPolicyInput> = {}): EmailPolicyInput {
  return {
    sender: 'ic@corp.example',
    claimedSenders: [],
    incidentStatus: 'open',
    roster: new Set(ROSTER),
    securityMembers: 1,
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
    ['internal mail is plain', {}, null, { subject: 'pass', roster: 'pass', encryption: 'skip', bcc: 'skip', sender: 'pass', 'incident-open': 'pass', codename: 'skip' }],
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
    ['no security member on the roster', { securityMembers: 0 }, 'security_team_missing', { 'security-team': 'fail' }],
    ['two security members', { securityMembers: 2 }, null, { 'security-team': 'pass' }],
  ])('%s', (_name, overrides, code, expected) => {
    const decision = decideEmail(input(overrides));
    if (code === null) expect(decision.outcome).toBe('accept');
    else {
      expect(decision.outcome).toBe('refuse');
      if (decision.outcome === 'refuse') expect(decision.error.code).toBe(code);
    }
    expect(outcomes(input(overrides))).toMatchObject(expected);
    // Every rule is always listed.
    expect(decision.rules.map((r) => r.rule).sort()).toEqual(['bcc', 'codename', 'encryption', 'incident-open', 'roster', 'security-team', 'sender', 'subject']);
  });
});

describe('decideEmail: rule security-team', () => {
  it('refuses with 409 and says how to add a security member; the reason is computed', () => {
    const d = decideEmail(input({ securityMembers: 0, to: ['counsel@lawfirm.example'] }));
    expect(d.outcome).toBe('refuse');
    if (d.outcome !== 'refuse') return;
    expect(d.error.httpStatus).toBe(409);
    expect(d.error.toJSON()).toEqual({
      error: {
        code: 'security_team_missing',
        rule: 'security-team',
        message:
          'No email is sent for this incident until a member with role security is on its roster: the security team is always included. Nothing was sent; a commander or deputy adds one with PUT /v1/incidents/:codename/roster/:email {"name": "…", "role": "security"}, or an admin sets RELAY_SECURITY_TEAM so every new incident starts with them.',
      },
    });
    expect(d.rules.find((r) => r.rule === 'security-team')).toEqual({ rule: 'security-team', result: 'fail', reason: 'no active member with role security on the roster' });
    expect(decideEmail(input({ securityMembers: 3 })).rules.find((r) => r.rule === 'security-team')).toEqual({ rule: 'security-team', result: 'pass', reason: '3 active security member(s) on the roster' });
  });

  it('an outsider is named before the missing security member', () => {
    const d = decideEmail(input({ securityMembers: 0, to: ['nosy@corp.example'] }));
    expect(d.outcome === 'refuse' && d.error.code).toBe('recipient_not_on_roster');
  });
});

describe('decideEmail: the roster refusal names announcements as the way out', () => {
  it('says nothing was sent, how to add them, and that announcements reach people off the roster', () => {
    const d = decideEmail(input({ to: ['press@news.example'] }));
    expect(d.outcome === 'refuse' && d.error.toJSON()).toEqual({
      error: {
        code: 'recipient_not_on_roster',
        rule: 'roster',
        message:
          'Not on the response roster: press@news.example. Nothing was sent to anyone; ask the commander to add them, or remove them. To tell people outside the response team, write an announcement (POST /v1/incidents/:codename/announcements): it goes out once approved.',
        details: { recipients: ['press@news.example'] },
      },
    });
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

describe('decideEmail: rule codename is computed over header-bound values', () => {
  const LABEL = 'Customer DB exfiltration';
  const exposure = (over: Partial<HeaderExposure> = {}): HeaderExposure => ({
    always: [
      { field: 'from.name', value: 'Incident Commander' },
      { field: 'to[0].name', value: 'Security Lead' },
    ],
    whenPlain: [
      { field: 'subject', value: 'Status at 3pm' },
      { field: 'attachments[0].filename', value: 'timeline.pdf' },
    ],
    forbiddenTerms: [LABEL],
    ...over,
  });
  const external = { to: ['counsel@lawfirm.example'] };

  it.each<[string, Partial<EmailPolicyInput>, string | null, string]>([
    ['not supplied: skipped, never a pass it did not check', {}, null, 'skip'],
    ['no label set', { exposure: exposure({ forbiddenTerms: [] }) }, null, 'pass'],
    ['a label that folds to nothing', { exposure: exposure({ forbiddenTerms: ['—'] }) }, null, 'pass'],
    ['clean values, plain', { exposure: exposure() }, null, 'pass'],
    ['clean values, encrypted', { ...external, exposure: exposure() }, null, 'pass'],
    ['the label in a display name, plain', { exposure: exposure({ always: [{ field: 'to[0].name', value: 'Customer DB Exfiltration team' }] }) }, 'incident_details_exposed', 'fail'],
    ['the label in a display name, encrypted: outer headers carry names too', { ...external, exposure: exposure({ always: [{ field: 'to[0].name', value: 'customer-db exfiltration' }] }) }, 'incident_details_exposed', 'fail'],
    ['the label disguised in a display name', { exposure: exposure({ always: [{ field: 'from.name', value: 'Cust\u043emer\u00a0DB\u200b Exfiltration' }] }) }, 'incident_details_exposed', 'fail'],
    ['the label in the topic of plain mail', { exposure: exposure({ whenPlain: [{ field: 'subject', value: 'Re: customer DB exfiltration' }] }) }, 'incident_details_exposed', 'fail'],
    ['the label in a file name of plain mail', { exposure: exposure({ whenPlain: [{ field: 'attachments[0].filename', value: 'customer_db_exfiltration.pdf' }] }) }, 'incident_details_exposed', 'fail'],
    ['the label in the topic of encrypted mail: inside the encryption', { ...external, exposure: exposure({ whenPlain: [{ field: 'subject', value: 'customer DB exfiltration' }] }) }, null, 'pass'],
    ['the label in a file name, RELAY_ENCRYPT=always', { encryptMode: 'always', exposure: exposure({ whenPlain: [{ field: 'attachments[0].filename', value: 'customer db exfiltration.txt' }] }) }, null, 'pass'],
    ['words of the label, not the label', { exposure: exposure({ always: [{ field: 'to[0].name', value: 'Customer DB team' }] }) }, null, 'pass'],
  ])('%s', (_name, overrides, code, result) => {
    const d = decideEmail(input(overrides));
    expect(d.outcome === 'refuse' ? d.error.code : null).toBe(code);
    expect(d.rules.find((r) => r.rule === 'codename')?.result).toBe(result);
  });

  it('names the fields, never the label, and says nothing was sent', () => {
    const d = decideEmail(
      input({
        exposure: exposure({
          always: [{ field: 'to[0].name', value: 'Customer DB exfiltration' }],
          whenPlain: [{ field: 'attachments[1].filename', value: 'customer-db-exfiltration.csv' }],
        }),
      }),
    );
    expect(d.outcome).toBe('refuse');
    if (d.outcome !== 'refuse') return;
    expect(d.error.rule).toBe('codename');
    expect(d.error.httpStatus).toBe(422);
    expect(d.error.details).toEqual({ fields: ['to[0].name', 'attachments[1].filename'] });
    expect(d.error.message).toBe("The incident's private label appears in to[0].name, attachments[1].filename, which every mail server on the way can read. Nothing was sent; reword them so only the codename names the incident.");
    expect(d.rules.find((r) => r.rule === 'codename')).toEqual({ rule: 'codename', result: 'fail', reason: 'the private label appears in 2 of 2 header-bound value(s): to[0].name, attachments[1].filename' });
    expect(JSON.stringify([d.rules, d.error.message, d.error.details]).toLowerCase()).not.toContain('exfiltration');
  });

  it('a closed incident, an outsider or a missing key is refused first', () => {
    const leak = exposure({ always: [{ field: 'to[0].name', value: LABEL }] });
    for (const [over, code] of [
      [{ incidentStatus: 'closed' as const }, 'incident_closed'],
      [{ to: ['nosy@corp.example'] }, 'recipient_not_on_roster'],
      [{ to: ['counsel@lawfirm.example'], keys: new Map<string, KeyState>() }, 'missing_public_key'],
    ] as const) {
      const d = decideEmail(input({ ...over, exposure: leak }));
      expect(d.outcome === 'refuse' && d.error.code).toBe(code);
      expect(d.rules.find((r) => r.rule === 'codename')?.result).toBe('fail');
    }
  });
});
