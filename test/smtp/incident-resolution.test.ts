/** Incident resolution (SPEC §5) and the RCPT-time roster check, over a real store. */
import { beforeEach, describe, expect, it } from 'vitest';
import { RelayError } from '../../src/errors.js';
import { closeIncident, createIncident, putMember, type Caller } from '../../src/services/incidents.js';
import { recipientRefusal, resolveIncident, subjectTokens } from '../../src/smtp/incident-resolution.js';
import { createTestRelay, type TestRelay } from '../helpers/relay.js';

let relay: TestRelay;
const ic: Caller = { tokenId: 't-ic', email: 'ic@corp.example', role: 'responder', incidentScope: null };
const other: Caller = { tokenId: 't-other', email: 'other@corp.example', role: 'responder', incidentScope: null };

async function incident(codename: string, commander: Caller, members: string[] = []): Promise<void> {
  const created = await createIncident(relay.ctx, commander, { codename });
  for (const email of members) await putMember(relay.ctx, commander, created, { email, name: email.split('@')[0]!, role: 'security' });
}

async function outcome(fn: () => Promise<{ codename: string } | undefined>): Promise<string> {
  try {
    return (await fn())?.codename ?? 'none';
  } catch (err) {
    if (err instanceof RelayError) return `${err.code}: ${err.message}`;
    throw err;
  }
}

beforeEach(async () => {
  relay = await createTestRelay();
});

describe('resolveIncident', () => {
  it('uses the only open incident when nothing names one', async () => {
    await incident('amber-otter', ic);
    expect(await outcome(() => resolveIncident(relay.ctx, ic, { xIncident: [], subject: 'hello' }))).toBe('amber-otter');
  });

  describe('with two open incidents and one of someone else', () => {
    beforeEach(async () => {
      await incident('amber-otter', ic);
      await incident('misty-heron', ic);
      await incident('sunny-walrus', other);
    });

    it.each<[string, string[], string | undefined, RegExp | string]>([
      ['X-Incident', ['misty-heron'], undefined, 'misty-heron'],
      ['X-Incident, case and spaces folded', [' Misty-Heron '], 'about amber-otter', 'misty-heron'],
      ['X-Incident repeated with one value', ['amber-otter', 'amber-otter'], undefined, 'amber-otter'],
      ['two X-Incident values', ['amber-otter', 'misty-heron'], undefined, /^ambiguous_incident: The message names 2 incidents in X-Incident headers/],
      ['X-Incident of someone else\'s incident', ['sunny-walrus'], undefined, 'not_found: No incident "sunny-walrus" that you are on the roster of.'],
      ['X-Incident unknown', ['no-such-thing'], undefined, 'not_found: No incident "no-such-thing" that you are on the roster of.'],
      ['X-Incident not a codename', ['<script>'], undefined, 'not_found: No incident "<script>" that you are on the roster of.'],
      ['codename in the subject', [], 'Re: [Misty-Heron] status', 'misty-heron'],
      ['someone else\'s codename in the subject', [], 'sunny-walrus update', /^ambiguous_incident: You are on 2 open incidents/],
      ['two codenames in the subject', [], 'amber-otter vs misty-heron', /^ambiguous_incident: The subject names 2 of your incidents/],
      ['nothing', [], 'status', /^ambiguous_incident: You are on 2 open incidents \((amber-otter, misty-heron|misty-heron, amber-otter)\); .* Name it in an X-Incident: <codename> header, or put its codename in the subject\.$/],
    ])('%s', async (_name, xIncident, subject, expected) => {
      const got = await outcome(() => resolveIncident(relay.ctx, ic, { xIncident, subject }));
      if (typeof expected === 'string') expect(got).toBe(expected);
      else expect(got).toMatch(expected);
    });
  });

  it('resolves a closed incident named in the subject (the pipeline then refuses it as closed)', async () => {
    await incident('amber-otter', ic);
    await incident('misty-heron', ic);
    expect((await closeIncident(relay.ctx, ic, (await relay.ctx.store.incidents.byCodename('amber-otter'))!)).status).toBe('closed');
    expect(await outcome(() => resolveIncident(relay.ctx, ic, { xIncident: [], subject: 'amber-otter wrap-up' }))).toBe('amber-otter');
    expect(await outcome(() => resolveIncident(relay.ctx, ic, { xIncident: [] }))).toBe('misty-heron');
  });

  it('is ambiguous when the sender is on no open incident', async () => {
    expect(await outcome(() => resolveIncident(relay.ctx, ic, { xIncident: [] }))).toMatch(/^ambiguous_incident: You are on no open incident's roster/);
  });

  it('splits subjects into codename-shaped words', () => {
    expect(subjectTokens('Re: [Amber-Otter] -- status/misty-heron-2, ok')).toEqual(['amber-otter', 'status', 'misty-heron-2']);
  });
});

describe('recipientRefusal at RCPT', () => {
  it('refuses a recipient on none of the sender\'s open rosters, and defers otherwise', async () => {
    expect(await recipientRefusal(relay.ctx, ic, 'nosy@corp.example')).toBeUndefined(); // no open incident: DATA says why
    await incident('amber-otter', ic, ['sec@corp.example']);
    expect(await recipientRefusal(relay.ctx, ic, 'sec@corp.example')).toBeUndefined();
    expect(await recipientRefusal(relay.ctx, ic, 'nosy@corp.example')).toMatchObject({
      code: 'recipient_not_on_roster',
      rule: 'roster',
      details: { recipients: ['nosy@corp.example'] },
      message: expect.stringMatching(/^nosy@corp\.example is not on the response roster of amber-otter\./),
    });
    await incident('misty-heron', ic, ['legal@corp.example']);
    expect(await recipientRefusal(relay.ctx, ic, 'legal@corp.example')).toBeUndefined();
    expect((await recipientRefusal(relay.ctx, ic, 'nosy@corp.example'))?.message).toMatch(/^nosy@corp\.example is not on the roster of any open incident you are on\./);
    // Someone else's incident does not count, even if the recipient is on it.
    await incident('sunny-walrus', other, ['spy@corp.example']);
    expect((await recipientRefusal(relay.ctx, ic, 'spy@corp.example'))?.code).toBe('recipient_not_on_roster');
  });
});
