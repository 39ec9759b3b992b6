/**
 * Property tests of the email policy (issue 7), in two layers:
 *
 * (a) decideEmail alone, against an independent oracle written from SPEC §2:
 *     random recipient mixes, rosters, key states, spoofed senders, closed
 *     incidents and reply chains, thousands of cases in well under a second.
 * (b) End to end: the real HTTP app, the DeliveryWorker, a real smtp-server
 *     upstream and the real gpg binary. Every delivered byte is checked, so a
 *     rule that failed open anywhere in listener → policy → compose → queue →
 *     channel would show up here, not only one that fails in the pure core.
 *
 * Reproduce a failure with the seed fast-check prints: FC_SEED=<seed> npx vitest run test/property.
 */
import { simpleParser } from 'mailparser';
import fc from 'fast-check';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { createSmtpChannel } from '../../src/channels/email/smtp.js';
import { createDomainMatcher } from '../../src/policy/domains.js';
import { decideEmail, type EmailPolicyInput, type KeyState } from '../../src/policy/email.js';
import { RateLimiter } from '../../src/services/rate-limit.js';
import type { RuleId } from '../../src/errors.js';
import { DeliveryWorker } from '../../src/workers/delivery.js';
import { createGpgHome, type GeneratedKey, type GpgHome } from '../helpers/gpg.js';
import { createTestRelay, type TestRelay } from '../helpers/relay.js';
import { startUpstream, type ReceivedMail, type Upstream } from '../helpers/upstream.js';

const FIXED_SUBJECT = 'Attorney Work Project';
const seed = process.env['FC_SEED'] === undefined ? undefined : Number(process.env['FC_SEED']);

// The oracle's own reading of "internal" (SPEC §2): exact domain, or any
// subdomain for a `*.` entry, case-insensitive. Deliberately not the matcher under test.
function oracleInternal(address: string): boolean {
  const domain = address.slice(address.lastIndexOf('@') + 1).toLowerCase();
  return domain === 'corp.example' || domain.endsWith('.corp.example');
}

const unique = <T>(items: readonly T[]): T[] => [...new Set(items)];

// ---------------------------------------------------------------- (a) pure

// Internal, external, and look-alikes that must count as external.
const POOL = [
  'ic@corp.example',
  'sec@corp.example',
  'exec@corp.example',
  'ops@eu.corp.example',
  'counsel@lawfirm.example',
  'dfir@forensics.example',
  'spoof@corp.example.evil.example',
  'x@notcorp.example',
] as const;

const keyState = fc.constantFrom<KeyState>({ state: 'usable' }, { state: 'usable' }, { state: 'missing' }, { state: 'unusable', reason: 'expired' }, { state: 'unusable', reason: 'revoked' });

/** A random policy input over POOL; rosters lean full so that accepts are common too. */
const policyInput: fc.Arbitrary<EmailPolicyInput> = fc
  .record({
    notOnRoster: fc.subarray([...POOL], { maxLength: 2 }),
    keys: fc.tuple(...POOL.map(() => fc.option(keyState, { nil: undefined, freq: 4 }))),
    sender: fc.constantFrom(...POOL),
    to: fc.array(fc.constantFrom(...POOL), { minLength: 1, maxLength: 4 }),
    cc: fc.array(fc.constantFrom(...POOL), { maxLength: 3 }),
    bcc: fc.array(fc.constantFrom(...POOL), { maxLength: 3 }),
    claim: fc.constantFrom('none', 'self', 'self-upper', 'other'),
    other: fc.constantFrom(...POOL),
    // Mostly open, so the other rules get exercised; shrinks towards open.
    closed: fc.constantFrom(false, false, false, true),
    hasSubject: fc.boolean(),
    chainExternal: fc.boolean(),
    always: fc.boolean(),
    // Mostly one or more, so the other rules get exercised; sometimes none (rule security-team).
    securityMembers: fc.constantFrom(1, 1, 2, 0),
  })
  .map((r): EmailPolicyInput => {
    const keys = new Map<string, KeyState>();
    POOL.forEach((address, i) => {
      const state = r.keys[i];
      if (state !== undefined) keys.set(address, state);
    });
    const claimedSenders = r.claim === 'none' ? [] : r.claim === 'self' ? [r.sender] : r.claim === 'self-upper' ? [r.sender.toUpperCase()] : [r.other];
    return {
      sender: r.sender,
      claimedSenders,
      incidentStatus: r.closed ? 'closed' : 'open',
      roster: new Set(POOL.filter((a) => !r.notOnRoster.includes(a))),
      securityMembers: r.securityMembers,
      to: r.to,
      cc: r.cc,
      bcc: r.bcc,
      hasSubject: r.hasSubject,
      chainExternal: r.chainExternal,
      isInternal: createDomainMatcher(['corp.example', '*.corp.example']),
      encryptMode: r.always ? 'always' : 'external',
      keys,
    };
  });

/** What SPEC §2 says about one input, computed without the code under test. */
function oracle(input: EmailPolicyInput) {
  const everyone = unique([...input.to, ...input.cc, ...input.bcc]);
  const closed = input.incidentStatus === 'closed';
  const spoof = input.claimedSenders.some((c) => c.toLowerCase() !== input.sender);
  const senderOff = !input.roster.has(input.sender);
  const offRoster = everyone.filter((a) => !input.roster.has(a));
  const external = everyone.some((a) => !oracleInternal(a));
  const encrypt = external || input.chainExternal || input.encryptMode === 'always';
  const keyless = encrypt ? everyone.filter((a) => input.keys.get(a)?.state !== 'usable') : [];
  const noSecurity = input.securityMembers === 0;
  const refuse = closed || spoof || senderOff || offRoster.length > 0 || noSecurity || keyless.length > 0;
  return { everyone, closed, spoof, senderOff, offRoster, noSecurity, external, encrypt, keyless, refuse };
}

const RULES: RuleId[] = ['subject', 'codename', 'incident-open', 'sender', 'roster', 'security-team', 'encryption', 'bcc'];

describe('decideEmail properties (pure)', () => {
  it('refuses exactly when a rule is broken, lists every rule once, and names the right failures', () => {
    fc.assert(
      fc.property(policyInput, (input) => {
        const o = oracle(input);
        const d = decideEmail(input);
        expect(d.outcome).toBe(o.refuse ? 'refuse' : 'accept');
        expect(d.rules.map((r) => r.rule).sort()).toEqual([...RULES].sort());
        const result = Object.fromEntries(d.rules.map((r) => [r.rule, r.result]));
        expect(result['subject']).toBe('pass');
        expect(result['codename']).toBe('skip'); // these inputs carry no header exposure: skipped, not a pass it did not check
        expect(result['incident-open']).toBe(o.closed ? 'fail' : 'pass');
        expect(result['sender']).toBe(o.spoof ? 'fail' : 'pass');
        expect(result['roster']).toBe(o.senderOff || o.offRoster.length > 0 ? 'fail' : 'pass');
        expect(result['security-team']).toBe(o.noSecurity ? 'fail' : 'pass');
        expect(result['encryption']).toBe(!o.encrypt ? 'skip' : o.keyless.length > 0 ? 'fail' : 'pass');
        if (d.outcome === 'refuse') {
          // The refusal is the first failure in rule order, and names who is at fault.
          const expected = o.closed
            ? 'incident_closed'
            : o.spoof
              ? 'sender_mismatch'
              : o.senderOff
                ? 'forbidden'
                : o.offRoster.length > 0
                  ? 'recipient_not_on_roster'
                  : o.noSecurity
                    ? 'security_team_missing'
                    : o.keyless.some((a) => input.keys.get(a) === undefined || input.keys.get(a)?.state === 'missing')
                    ? 'missing_public_key'
                    : 'unusable_public_key';
          expect(d.error.code).toBe(expected);
          if (expected === 'recipient_not_on_roster') expect([...(d.error.details?.['recipients'] as string[])].sort()).toEqual([...o.offRoster].sort());
        }
      }),
      { numRuns: 2000, seed },
    );
  });

  it('accepted plans: encrypt iff external/chain/always; To, Cc, Bcc disjoint and complete; Bcc never a visible key holder', () => {
    fc.assert(
      fc.property(policyInput, (input) => {
        const d = decideEmail(input);
        if (d.outcome !== 'accept') return;
        const o = oracle(input);
        const { plan } = d;
        expect(plan.encrypt).toBe(o.encrypt);
        expect(plan.encryptReason).toBe(o.external ? 'external-recipient' : input.chainExternal ? 'external-chain' : input.encryptMode === 'always' ? 'always' : null);
        expect(plan.chainExternal).toBe(o.external || input.chainExternal);
        // Disjoint and together exactly the recipients asked for: nobody dropped, nobody added.
        const all = [...plan.to, ...plan.cc, ...plan.bcc];
        expect(new Set(all).size).toBe(all.length);
        expect([...all].sort()).toEqual([...o.everyone].sort());
        expect(plan.to).toEqual(unique(input.to));
        for (const b of plan.bcc) {
          expect(plan.to).not.toContain(b);
          expect(plan.cc).not.toContain(b);
        }
        if (!plan.encrypt) expect(plan.visibleKeyHolders).toEqual([]);
        else {
          const senderKey = input.keys.get(input.sender)?.state === 'usable';
          expect([...plan.visibleKeyHolders].sort()).toEqual(unique([...plan.to, ...plan.cc, ...(senderKey ? [input.sender] : [])]).sort());
          // Every key the visible copy is encrypted to is usable.
          for (const holder of plan.visibleKeyHolders) expect(input.keys.get(holder)?.state).toBe('usable');
          // A Bcc recipient's key on the visible copy would reveal them to everyone
          // who can list its recipients. The sender is the one exception: their
          // key is on every visible copy whether or not they Bcc themselves.
          for (const holder of plan.visibleKeyHolders) if (holder !== input.sender) expect(plan.bcc).not.toContain(holder);
        }
        const bccRule = d.rules.find((r) => r.rule === 'bcc')!;
        expect(bccRule.result).toBe(plan.bcc.length > 0 ? 'pass' : 'skip');
      }),
      { numRuns: 2000, seed },
    );
  });

  it('fails closed: adding an off-roster recipient, or dropping a needed key, turns any accept into a refusal', () => {
    fc.assert(
      fc.property(policyInput, fc.constantFrom('to', 'cc', 'bcc'), fc.nat(), (input, field, pick) => {
        const d = decideEmail(input);
        if (d.outcome !== 'accept') return;
        const withOutsider = { ...input, [field]: [...input[field], 'outsider@nowhere.example'] };
        const refused = decideEmail(withOutsider);
        expect(refused.outcome).toBe('refuse');
        if (refused.outcome === 'refuse') expect(refused.error.code).toBe('recipient_not_on_roster');
        if (d.plan.encrypt) {
          const recipients = [...d.plan.to, ...d.plan.cc, ...d.plan.bcc];
          const victim = recipients[pick % recipients.length]!;
          const keys = new Map(input.keys);
          keys.delete(victim);
          const keyless = decideEmail({ ...input, keys });
          expect(keyless.outcome).toBe('refuse');
          if (keyless.outcome === 'refuse') expect(keyless.error.code).toBe('missing_public_key');
        }
      }),
      { numRuns: 1000, seed },
    );
  });

  it('is blind to order and repetition of recipients', () => {
    fc.assert(
      fc.property(policyInput, fc.func(fc.integer()), (input, noise) => {
        const shuffle = (list: readonly string[]) => [...list, ...list].sort((a, b) => noise(a) - noise(b) || a.localeCompare(b));
        const a = decideEmail(input);
        const b = decideEmail({ ...input, to: shuffle(input.to), cc: shuffle(input.cc), bcc: shuffle(input.bcc) });
        expect(b.outcome).toBe(a.outcome);
        if (a.outcome === 'accept' && b.outcome === 'accept') {
          expect(b.plan.encrypt).toBe(a.plan.encrypt);
          expect([...b.plan.bcc].sort()).toEqual([...a.plan.bcc].sort());
          expect([...b.plan.to, ...b.plan.cc].sort()).toEqual([...a.plan.to, ...a.plan.cc].sort());
        }
        if (a.outcome === 'refuse' && b.outcome === 'refuse') expect(b.error.code).toBe(a.error.code);
      }),
      { numRuns: 500, seed },
    );
  });
});

// ---------------------------------------------------------------- (b) end to end

/** People with a gpg key: each gets a home holding only their own secret key. */
const KEYED = ['ic@corp.example', 'sec@corp.example', 'counsel@lawfirm.example', 'dfir@forensics.example'] as const;
/** On the roster when the run says so, but without a key. */
const KEYLESS = ['exec@corp.example', 'ins@insurer.example'] as const;
/** Never on any roster. */
const OUTSIDERS = ['nosy@corp.example', 'stranger@evil.example'] as const;
/** Holds a key but is never on a roster: must never be able to read anything. */
const BYSTANDER = 'bystander@lawfirm.example';
const SENDER = 'ic@corp.example';

// Values that must never reach a header: if one is refused at the door, so much the better.
const NOT_ONE_LINE = /[\x00-\x08\x0a-\x1f\x7f\u0085\u2028\u2029]/;

const encodedWord = fc.string({ unit: 'grapheme', maxLength: 20 }).map((s) => `=?utf-8?b?${Buffer.from(s).toString('base64')}?=`);
const injection = fc.constantFrom('\r\nBcc: stranger@evil.example', '\nSubject: hijacked', '\r\n\r\nbody', '\u2028Bcc: stranger@evil.example', '\u0085x', '\0', '\x1b[31m');

/** Subjects: unicode, encoded words, the longest allowed, one too long, and header injections. */
const subject = fc.option(
  fc.oneof(
    { arbitrary: fc.string({ unit: 'grapheme', maxLength: 60 }), weight: 4 },
    { arbitrary: encodedWord, weight: 2 },
    { arbitrary: fc.constant('=?utf-8?b?U3ViamVjdDogaGlqYWNrZWQ=?= Bcc: stranger@evil.example'), weight: 1 },
    { arbitrary: fc.constantFrom('x'.repeat(998), 'y'.repeat(999), 'ü'.repeat(998)), weight: 1 },
    { arbitrary: fc.tuple(fc.string({ maxLength: 10 }), injection).map(([a, b]) => a + b), weight: 1 },
  ),
  { nil: undefined, freq: 3 },
);

/** Bodies: unicode, bare CR and LF, SMTP end-of-data look-alikes, header look-alikes, long lines. */
const bodyChunk = fc.oneof(
  fc.string({ unit: 'binary', maxLength: 80 }),
  fc.string({ unit: 'grapheme', maxLength: 80 }),
  fc.constantFrom('\r\n.\r\n', '\n.\n', '\r', '\n', '\r\n', '.', '..\r\n', 'From nobody\n', '\r\nSubject: hijacked\r\nBcc: stranger@evil.example\r\n\r\n', '--=_ir_boundary--\r\n'),
  encodedWord,
  // Longer than SMTP's 998-character line limit (RFC 5321 §4.5.3.1.6).
  fc.integer({ min: 999, max: 1200 }).map((n) => 'L'.repeat(n)),
);
const body = fc.array(bodyChunk, { maxLength: 6 }).map((chunks) => chunks.join(''));

const attachment = fc.record({
  filename: fc
    .oneof(fc.string({ unit: 'grapheme', minLength: 1, maxLength: 40 }), encodedWord.map((w) => `${w}.txt`), fc.constant('Bericht über den Vorfall (final).pdf'))
    .map((s) => s.replace(/[/\\\x00-\x1f\x7f\u0085\u2028\u2029]/g, '_'))
    .filter((s) => s.trim() !== '' && !s.startsWith('.') && s.length <= 255),
  contentType: fc.constantFrom('application/pdf', 'text/plain', 'image/png', 'multipart/mixed', 'message/rfc822'),
  content: fc.uint8Array({ maxLength: 2048 }).map((b) => Buffer.from(b).toString('base64')),
});

// Weighted so that about half the messages are accepted: a property that
// only ever saw refusals would prove little about what is delivered.
const candidate = fc.oneof(
  { arbitrary: fc.constantFrom<string>(...KEYED), weight: 16 },
  { arbitrary: fc.constantFrom<string>(...KEYLESS), weight: 2 },
  { arbitrary: fc.constantFrom<string>(...OUTSIDERS), weight: 1 },
);

// Internal-only mixes: plain mail, unless a reply chain or RELAY_ENCRYPT=always makes it encrypted.
const internalCandidate = fc.constantFrom<string>('sec@corp.example', 'ic@corp.example', 'sec@corp.example', 'exec@corp.example', 'sec@corp.example', 'ic@corp.example', 'exec@corp.example', 'nosy@corp.example');

const recipients = fc.oneof(
  fc.record({ to: fc.array(candidate, { minLength: 1, maxLength: 2 }), cc: fc.array(candidate, { maxLength: 2 }), bcc: fc.array(candidate, { maxLength: 2 }) }),
  fc.record({ to: fc.array(internalCandidate, { minLength: 1, maxLength: 2 }), cc: fc.array(internalCandidate, { maxLength: 1 }), bcc: fc.array(internalCandidate, { maxLength: 2 }) }),
);

const messageSpec = fc.record({
  recipients,
  subject,
  text: body,
  html: fc.option(body.map((b) => `<html><body><p>${b}</p></body></html>`), { nil: undefined, freq: 5 }),
  attachments: fc.array(attachment, { maxLength: 1 }),
  // Index of an earlier message of the same run to reply to (taken modulo), or a stranger's id.
  replyTo: fc.option(fc.oneof(fc.nat(), fc.constant(-1)), { nil: undefined, freq: 2 }),
  referencesToo: fc.boolean(),
});

const scenario = fc.record({
  // Who besides the sender is on this run's roster; the rest are off-roster recipients.
  roster: fc.record({
    'sec@corp.example': fc.constantFrom(true, true, true, true, true, false),
    'counsel@lawfirm.example': fc.constantFrom(true, true, true, true, true, false),
    'dfir@forensics.example': fc.constantFrom(true, true, true, true, true, false),
    'exec@corp.example': fc.constantFrom(true, true, false),
    'ins@insurer.example': fc.boolean(),
  }),
  always: fc.constantFrom(false, false, false, true),
  messages: fc.array(messageSpec, { minLength: 1, maxLength: 3 }),
});

type Scenario = typeof scenario extends fc.Arbitrary<infer T> ? T : never;
type MessageSpec = Scenario['messages'][number];

const everyoneOn: Scenario['roster'] = { 'sec@corp.example': true, 'counsel@lawfirm.example': true, 'dfir@forensics.example': true, 'exec@corp.example': true, 'ins@insurer.example': true };
const message = (recipients: MessageSpec['recipients'], more: Partial<MessageSpec> = {}): MessageSpec => ({
  recipients,
  subject: 'Customer data in S3 bucket',
  text: 'Rotate the keys.',
  html: undefined,
  attachments: [],
  replyTo: undefined,
  referencesToo: false,
  ...more,
});

/** Always run first, whatever the seed: each shape the random runs might happen to miss. */
const EXAMPLES: [Scenario][] = [
  // Plain internal mail with a Bcc: one copy, no Bcc header, the Bcc address nowhere in it.
  [{ roster: everyoneOn, always: false, messages: [message({ to: ['sec@corp.example'], cc: [], bcc: ['exec@corp.example'] })] }],
  // Outside counsel with a Bcc, then internal replies in that chain: encrypted, or refused for exec's missing key.
  [
    {
      roster: everyoneOn,
      always: false,
      messages: [
        message({ to: ['counsel@lawfirm.example'], cc: ['sec@corp.example'], bcc: ['dfir@forensics.example'] }, { attachments: [{ filename: 'timeline.txt', contentType: 'text/plain', content: 'MDk6MDAgYWxlcnQK' }] }),
        message({ to: ['sec@corp.example'], cc: [], bcc: [] }, { replyTo: 0 }),
        message({ to: ['exec@corp.example'], cc: [], bcc: [] }, { replyTo: 1, referencesToo: true }),
      ],
    },
  ],
  // One off-roster Bcc among good recipients refuses the whole message; a header injection in the subject too.
  [
    {
      roster: { ...everyoneOn, 'dfir@forensics.example': false },
      always: false,
      messages: [
        message({ to: ['counsel@lawfirm.example'], cc: [], bcc: ['dfir@forensics.example'] }),
        message({ to: ['sec@corp.example'], cc: [], bcc: [] }, { subject: 'hi\r\nBcc: stranger@evil.example' }),
      ],
    },
  ],
];

/** Index of the header/body boundary of a message. */
function headerBlock(raw: Buffer): string {
  const text = raw.toString('latin1');
  const end = text.indexOf('\r\n\r\n');
  return end < 0 ? text : text.slice(0, end);
}

/** Header field names of a header block, unfolded. */
function headerNames(block: string): string[] {
  return block
    .split('\r\n')
    .filter((line) => !/^[ \t]/.test(line))
    .map((line) => line.slice(0, line.indexOf(':')).toLowerCase());
}

// Everything the composer writes at the top level; a client header, or one smuggled in by injection, would not be here.
// `openpgp`: the relay key's fingerprint on encrypted mail (issue 12 §8).
const OUTER_HEADERS = new Set(['from', 'to', 'cc', 'subject', 'message-id', 'date', 'in-reply-to', 'references', 'openpgp', 'mime-version', 'content-type', 'content-transfer-encoding']);

function assertFixedSubjectOnce(block: string, where: string): void {
  const subjects = block.split('\r\n').filter((line) => /^subject[ \t]*:/i.test(line));
  expect(subjects, `${where}: Subject headers`).toEqual([`Subject: ${FIXED_SUBJECT}`]);
  // A folded continuation would extend the Subject; the next line must start a new field.
  const lines = block.split('\r\n');
  const at = lines.findIndex((line) => /^subject[ \t]*:/i.test(line));
  expect(/^[ \t]/.test(lines[at + 1] ?? ''), `${where}: folded Subject`).toBe(false);
  expect(headerNames(block), `${where}: Bcc header`).not.toContain('bcc');
}

describe('email policy end to end (HTTP → worker → smtp-server → gpg)', () => {
  let keyring: GpgHome;
  const keys = new Map<string, GeneratedKey>();
  // One home per key holder with only their secret key: decrypting there proves who can read.
  const homes = new Map<string, GpgHome>();
  let upstream: Upstream;
  let relay: TestRelay;
  let worker: DeliveryWorker;
  let channel: ReturnType<typeof createSmtpChannel>;
  let ic: string;

  beforeAll(async () => {
    keyring = await createGpgHome();
    for (const email of [...KEYED, BYSTANDER]) keys.set(email, await keyring.generateKey(email));
    upstream = await startUpstream();
    relay = await createTestRelay({ smtpUpstream: upstream.url });
    // Many sends from one token in a few seconds: the per-token limit is tested elsewhere.
    relay.ctx.sendLimiter = new RateLimiter({ perMinute: 1_000_000, burst: 1_000_000 });
    channel = createSmtpChannel(upstream.url);
    worker = new DeliveryWorker(relay.ctx, { channels: { email: channel }, baseBackoffMs: 10, random: () => 0 });
    ic = await relay.tokenFor(SENDER);
    for (const email of KEYED) {
      const res = await relay.request.put(`/v1/keys/${email}`).set({ Authorization: `Bearer ${relay.admin}` }).send({ publicKey: keys.get(email)!.armoredPublic });
      expect(res.status).toBe(200);
    }
    await Promise.all(
      [...KEYED, BYSTANDER].map(async (email) => {
        const home = await createGpgHome();
        await home.importKey(await keyring.exportSecret(keys.get(email)!.fingerprint));
        await home.importKey(relay.ctx.relayKey.publicArmored);
        homes.set(email, home);
      }),
    );
  }, 120_000);

  afterAll(async () => {
    await worker?.stop();
    channel?.close();
    await upstream?.stop();
    await Promise.all([keyring, ...homes.values()].filter((h) => h !== undefined).map((h) => h.cleanup()));
  });

  const auth = () => ({ Authorization: `Bearer ${ic}` });
  const subkeyId = (email: string): string => keys.get(email)!.encryptionSubkeyFingerprint!.slice(-16);
  const queuedRows = async (): Promise<number> => (await relay.ctx.store.sql.get<{ n: number }>('SELECT COUNT(*) AS n FROM deliveries'))!.n;

  async function armoredPayload(raw: Buffer): Promise<string> {
    const parsed = await simpleParser(raw);
    const part = parsed.attachments.find((a) => a.filename === 'encrypted.asc');
    expect(part, 'encrypted.asc part').toBeDefined();
    return part!.content.toString('utf8');
  }

  /**
   * Checks one encrypted copy: exact recipient keys, readable by one intended
   * holder, not by others; and no address in `hidden` (the Bcc recipients this
   * copy is not for) anywhere in it, decrypted or not.
   */
  async function checkEncryptedCopy(mail: ReceivedMail, holders: string[], canary: string, subjectText: string | undefined, hidden: readonly string[]): Promise<void> {
    const raw = mail.raw.toString('latin1');
    expect(raw).toMatch(/Content-Type: multipart\/encrypted;\s+protocol="application\/pgp-encrypted"/);
    // Nothing of the content in clear: not the body, not the sender's subject.
    expect(raw).not.toContain(canary);
    // (Only subjects distinctive enough that random armor cannot contain them by chance.)
    if (subjectText !== undefined && /[A-Za-z0-9]{6}/.test(subjectText)) expect(raw).not.toContain(subjectText);
    const armored = await armoredPayload(mail.raw);
    const ids = await keyring.recipientKeyIds(armored);
    expect([...ids].sort(), 'session key encrypted to exactly the intended keys').toEqual(unique(holders.map(subkeyId)).sort());

    const reader = holders[0]!;
    const result = await homes.get(reader)!.decrypt(armored);
    expect(result.goodSignatureFrom).toBe(relay.ctx.relayKey.fingerprint);
    const inner = result.plaintext;
    assertFixedSubjectOnce(headerBlock(inner), 'protected headers');
    expect(inner.toString('latin1')).toContain(canary);
    // The outer bytes are checked by the caller; inside the encryption is where
    // every reader of this copy would see a Bcc address. Bare, not only as <addr>.
    for (const address of hidden) expect(inner.toString('latin1'), `${address} inside a copy not for them`).not.toContain(address);

    // Every other key holder, and one who was never on the roster, is shut out.
    for (const other of [...KEYED, BYSTANDER].filter((e) => !holders.includes(e))) {
      await expect(homes.get(other)!.decrypt(armored), `${other} must not decrypt`).rejects.toThrow(/could not decrypt/);
    }
  }

  it('every delivered byte keeps the rules; refusals deliver nothing', async () => {
    let counter = 0;
    await fc.assert(
      fc.asyncProperty(scenario, async (run) => {
        const created = await relay.request.post('/v1/incidents').set(auth()).send({});
        expect(created.status).toBe(201);
        const codename = created.body.codename as string;
        const roster = new Set<string>([SENDER]);
        for (const [email, on] of Object.entries(run.roster)) {
          if (!on) continue;
          const res = await relay.request.put(`/v1/incidents/${codename}/roster/${email}`).set(auth()).send({ name: `Ünïcode “${email.split('@')[0]}”`, role: oracleInternal(email) ? 'security' : 'external' });
          expect(res.status).toBe(201);
          roster.add(email);
        }
        relay.ctx.config.encrypt = run.always ? 'always' : 'external';
        // The model's memory of this run: Message-ID → whether its chain is external.
        const sent: { messageId: string; chainExternal: boolean }[] = [];

        for (const spec of run.messages) {
          counter += 1;
          const canary = `CANARY${counter}X${Math.floor(Math.random() * 1e9)}`;
          const request = buildRequest(spec, canary, sent);
          const expectation = expect_(spec, roster, run.always, request, sent);

          const before = upstream.received.length;
          const rowsBefore = await queuedRows();
          const res = await relay.request.post(`/v1/incidents/${codename}/emails`).set(auth()).send(request);
          await worker.drain();
          const delivered = upstream.received.slice(before);

          if (expectation.refuse) {
            expect(res.status, `expected a refusal (${expectation.why}), got ${res.status} ${JSON.stringify(res.body)}`).toBeGreaterThanOrEqual(400);
            expect(res.status).toBeLessThan(500);
            expect(delivered, 'a refused message delivered nothing to anyone').toEqual([]);
            expect(await queuedRows()).toBe(rowsBefore);
            continue;
          }
          expect(res.status, JSON.stringify(res.body)).toBe(202);
          expect(res.body.encrypted, 'encrypted iff an external recipient, an external chain or RELAY_ENCRYPT=always').toBe(expectation.encrypt);
          sent.push({ messageId: res.body.messageId as string, chainExternal: expectation.chainExternal });

          // Exactly the recipients, each once, none off the roster, none with a Bcc header.
          const rcpts = delivered.flatMap((m) => m.to);
          expect([...rcpts].sort()).toEqual([...expectation.recipients].sort());
          for (const r of rcpts) expect(roster.has(r), `${r} is on the roster`).toBe(true);
          for (const mail of delivered) {
            expect(mail.from).toBe(SENDER);
            const block = headerBlock(mail.raw);
            assertFixedSubjectOnce(block, 'outer headers');
            for (const name of headerNames(block)) expect(OUTER_HEADERS.has(name), `unexpected header ${name}`).toBe(true);
            expect(block).toContain(`Message-ID: ${res.body.messageId}`);
            // A Bcc address appears nowhere in the bytes (the sender's own is in From).
            // Plain mail is one copy for everyone, so no Bcc address may appear in it;
            // encrypted mail has one copy per Bcc, which is theirs alone.
            for (const hidden of expectation.bcc) {
              if (hidden === SENDER || (expectation.encrypt && mail.to.includes(hidden))) continue;
              expect(mail.raw.toString('latin1')).not.toContain(hidden);
            }
          }

          if (!expectation.encrypt) {
            expect(delivered).toHaveLength(1);
            const raw = delivered[0]!.raw.toString('latin1');
            expect(raw).not.toMatch(/multipart\/encrypted/);
            expect(raw).toContain(canary);
            const parsed = await simpleParser(delivered[0]!.raw);
            expect(parsed.subject).toBe(FIXED_SUBJECT);
            if (request.subject !== undefined && request.subject.trim() !== '') expect(parsed.text?.startsWith(`Topic: ${request.subject}`)).toBe(true);
            continue;
          }
          // Encrypted: the visible copy to To and Cc (plus the sender's key), one copy per Bcc to that key alone.
          const visible = delivered.filter((m) => !expectation.bcc.some((b) => m.to.includes(b)));
          expect(visible).toHaveLength(1);
          // A Bcc address that is also the sender is in From anyway.
          const bccOf = (except: string[]) => expectation.bcc.filter((b) => b !== SENDER && !except.includes(b));
          await checkEncryptedCopy(visible[0]!, unique([...expectation.visible, SENDER]), canary, request.subject, bccOf([]));
          for (const hidden of expectation.bcc) {
            const copies = delivered.filter((m) => m.to.includes(hidden));
            expect(copies).toHaveLength(1);
            expect(copies[0]!.to).toEqual([hidden]);
            await checkEncryptedCopy(copies[0]!, [hidden], canary, request.subject, bccOf([hidden]));
          }
        }
      }),
      // Shrinking a failing end-to-end run can take minutes; the seed and path printed reproduce it.
      { numRuns: Number(process.env['FC_E2E_RUNS'] ?? 40), seed, endOnFailure: true, examples: EXAMPLES },
    );
    expect(upstream.received.length).toBeGreaterThan(0);
  }, 240_000);
});

interface EmailRequest {
  to: string[];
  cc: string[];
  bcc: string[];
  subject?: string;
  text: string;
  html?: string;
  attachments: { filename: string; contentType: string; content: string }[];
  inReplyTo?: string;
  references?: string[];
}

function buildRequest(spec: MessageSpec, canary: string, sent: readonly { messageId: string }[]): EmailRequest {
  const { to, cc, bcc } = spec.recipients;
  const request: EmailRequest = { to, cc, bcc, text: `${canary}\n${spec.text}`, attachments: spec.attachments };
  if (spec.subject !== undefined) request.subject = spec.subject;
  if (spec.html !== undefined) request.html = spec.html;
  if (spec.replyTo !== undefined) {
    const parent = spec.replyTo < 0 || sent.length === 0 ? '<unrelated@elsewhere.example>' : sent[spec.replyTo % sent.length]!.messageId;
    if (spec.referencesToo) request.references = ['<older@elsewhere.example>', parent];
    else request.inReplyTo = parent;
  }
  return request;
}

/** The model's expectation for one send, from SPEC §2 and the run's roster, keys and chain. */
function expect_(spec: MessageSpec, roster: ReadonlySet<string>, always: boolean, request: EmailRequest, sent: readonly { messageId: string; chainExternal: boolean }[]) {
  const to = unique(spec.recipients.to);
  const cc = unique(spec.recipients.cc).filter((a) => !to.includes(a));
  const bcc = unique(spec.recipients.bcc).filter((a) => !to.includes(a) && !cc.includes(a));
  const recipients = [...to, ...cc, ...bcc];
  const references = [...(request.inReplyTo ? [request.inReplyTo] : []), ...(request.references ?? [])];
  // A chain is external when a message of it was (as the model remembers),
  // and, failing closed, when a reference is one the relay never issued and
  // its domain part is not internal: nobody can vouch for that thread.
  const chainExternalIn = references.some((ref) => {
    const known = sent.find((s) => s.messageId === ref);
    return known ? known.chainExternal : !oracleInternal(ref.slice(0, -1));
  });
  const external = recipients.some((a) => !oracleInternal(a));
  const encrypt = external || chainExternalIn || always;
  const keyed = new Set<string>(KEYED);
  const badSubject = request.subject !== undefined && (request.subject.length > 998 || NOT_ONE_LINE.test(request.subject));
  const offRoster = recipients.filter((a) => !roster.has(a));
  const keyless = encrypt ? recipients.filter((a) => !keyed.has(a)) : [];
  // Rule security-team: the run puts internal members on as security, so the incident has one when any is on.
  const noSecurity = ![...roster].some((a) => a !== SENDER && oracleInternal(a));
  const why = badSubject
    ? 'bad subject'
    : offRoster.length > 0
      ? `off roster: ${offRoster.join(', ')}`
      : noSecurity
        ? 'no security member'
        : keyless.length > 0
          ? `no key: ${keyless.join(', ')}`
          : '';
  return {
    refuse: why !== '',
    why,
    encrypt,
    chainExternal: external || chainExternalIn,
    recipients,
    visible: [...to, ...cc],
    bcc,
  };
}
