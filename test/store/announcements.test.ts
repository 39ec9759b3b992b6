/**
 * The announcement repository on both backends: drafts and edits, one live
 * approval per person (enforced by the database, across relays too), voiding,
 * the sent mark that only the approved content can take, the internal-source
 * record on the incident, and audience lists.
 */
import { afterEach, describe, expect, it } from 'vitest';
import type { Store } from '../../src/store/index.js';
import { BACKENDS, openTestStore } from '../helpers/relay.js';
import { freshDatabaseUrl } from '../helpers/postgres.js';
import { openStore } from '../../src/store/index.js';

const T0 = new Date('2026-11-28T10:00:00Z');
const at = (ms: number): Date => new Date(T0.getTime() + ms);
const opened: Store[] = [];

afterEach(async () => {
  await Promise.all(opened.splice(0).map((s) => s.close()));
});

const content = (hash: string, title = 'Notice, 2026-11-28') => ({ kind: 'external' as const, title, text: 'We found…', audience: ['a@client.example', 'b@client.example'], audienceList: null, contentHash: hash });

describe.each(BACKENDS)('announcement store on %s', (backend) => {
  async function store(url?: string): Promise<Store> {
    const s = url ? await openStore({ url }, { now: () => T0 }) : await openTestStore(backend, () => T0);
    opened.push(s);
    return s;
  }

  async function withDraft(s: Store): Promise<{ incidentId: string; id: string }> {
    await s.incidents.create({ id: 'inc-1', codename: 'amber-otter', createdBy: 'ic@corp.example', at: T0 });
    const a = await s.announcements.create({ ...content('h1'), id: 'ann-1', incidentId: 'inc-1', author: 'comms@corp.example', at: T0 });
    return { incidentId: 'inc-1', id: a.id };
  }

  it('stores a draft as given and finds it only within its incident', async () => {
    const s = await store();
    const { id } = await withDraft(s);
    expect(await s.announcements.get('inc-1', id)).toMatchObject({
      id,
      incidentId: 'inc-1',
      kind: 'external',
      title: 'Notice, 2026-11-28',
      text: 'We found…',
      audience: ['a@client.example', 'b@client.example'],
      audienceList: null,
      contentHash: 'h1',
      checkedHash: null,
      state: 'draft',
      author: 'comms@corp.example',
      sentAt: null,
      emailId: null,
    });
    expect(await s.announcements.get('inc-2', id)).toBeUndefined();
    expect((await s.announcements.list('inc-1')).map((a) => a.id)).toEqual([id]);
  });

  it('keeps one live approval per person, in the order given; voiding frees the slot', async () => {
    const s = await store();
    const { id } = await withDraft(s);
    const approve = (approver: string, n: number) => s.transaction((tx) => tx.announcements.approve({ id: `ap-${n}`, announcementId: id, approver, role: 'legal', contentHash: 'h1', at: T0 }));
    expect(await approve('legal@corp.example', 1)).toBe(true);
    expect(await approve('ic@corp.example', 2)).toBe(true);
    expect(await approve('legal@corp.example', 3)).toBe(false);
    expect((await s.announcements.approvals(id)).map((a) => a.approver)).toEqual(['legal@corp.example', 'ic@corp.example']);

    const voided = await s.transaction((tx) => tx.announcements.voidApprovals(id, 'comms@corp.example', 'edited', at(1000)));
    expect(voided.map((a) => a.approver)).toEqual(['legal@corp.example', 'ic@corp.example']);
    expect((await s.announcements.approvals(id)).map((a) => [a.approver, a.voidedAt, a.voidedBy, a.voidReason])).toEqual([
      ['legal@corp.example', at(1000).toISOString(), 'comms@corp.example', 'edited'],
      ['ic@corp.example', at(1000).toISOString(), 'comms@corp.example', 'edited'],
    ]);
    expect(await approve('legal@corp.example', 4)).toBe(true);
    expect((await s.announcements.approvals(id)).map((a) => a.id)).toEqual(['ap-1', 'ap-2', 'ap-4']);
    expect(await s.transaction((tx) => tx.announcements.voidApprovals(id, null, 'x', at(2000)))).toHaveLength(1);
  });

  it('an edit resets the check and the state; a sent announcement is neither edited nor re-marked', async () => {
    const s = await store();
    const { id } = await withDraft(s);
    expect(await s.announcements.markChecked(id, 'h1', 'approved', at(1))).toBe(true);
    expect(await s.announcements.markChecked(id, 'other', 'checked', at(2))).toBe(false);
    expect(await s.announcements.get('inc-1', id)).toMatchObject({ checkedHash: 'h1', state: 'approved' });
    expect(await s.announcements.edit(id, content('h2', 'Notice, 2026-11-29'), at(3))).toBe(true);
    expect(await s.announcements.get('inc-1', id)).toMatchObject({ checkedHash: null, state: 'draft', contentHash: 'h2', title: 'Notice, 2026-11-29' });

    // Only the current content can be marked sent, once.
    await s.sql.run("INSERT INTO emails (id, incident_id, message_id, sender, encrypted, external_chain, recipients, created_at) VALUES ('em-1', 'inc-1', '<m@corp.example>', 'comms@corp.example', 0, 1, '[]', 'x')");
    expect(await s.announcements.markSent(id, { contentHash: 'h1', by: 'comms@corp.example', emailId: 'em-1', at: at(4) })).toBe(false);
    expect(await s.announcements.markSent(id, { contentHash: 'h2', by: 'comms@corp.example', emailId: 'em-1', at: at(4) })).toBe(true);
    expect(await s.announcements.markSent(id, { contentHash: 'h2', by: 'comms@corp.example', emailId: 'em-1', at: at(5) })).toBe(false);
    expect(await s.announcements.edit(id, content('h3'), at(6))).toBe(false);
    await s.announcements.markUnchecked(id, at(7));
    expect(await s.announcements.get('inc-1', id)).toMatchObject({ state: 'sent', sentHash: 'h2', sentBy: 'comms@corp.example', emailId: 'em-1', contentHash: 'h2' });
    expect((await s.announcements.byEmail('em-1'))?.id).toBe(id);
    expect(await s.announcements.byEmail('em-2')).toBeUndefined();
    expect((await s.announcements.sent('inc-1')).map((a) => a.id)).toEqual([id]);
  });

  it('records and withdraws the internal-source record on the incident', async () => {
    const s = await store();
    await withDraft(s);
    expect(await s.announcements.internalSource('inc-1')).toBeNull();
    await s.announcements.setInternalSource('inc-1', { at: T0.toISOString(), by: 'ic@corp.example', note: 'FR-7' });
    expect(await s.announcements.internalSource('inc-1')).toEqual({ at: T0.toISOString(), by: 'ic@corp.example', note: 'FR-7' });
    // The incident row itself reads as before.
    expect(await s.incidents.byId('inc-1')).toMatchObject({ codename: 'amber-otter', status: 'open' });
    await s.announcements.setInternalSource('inc-1', null);
    expect(await s.announcements.internalSource('inc-1')).toBeNull();
  });

  it('keeps audience lists by name: create, replace, delete', async () => {
    const s = await store();
    expect(await s.announcements.putAudience({ name: 'press', addresses: ['a@news.example'], by: 'admin@corp.example', at: T0 })).toBe(true);
    expect(await s.announcements.putAudience({ name: 'press', addresses: ['b@news.example', 'c@news.example'], by: 'admin2@corp.example', at: at(1) })).toBe(false);
    expect(await s.announcements.audience('press')).toEqual({ name: 'press', addresses: ['b@news.example', 'c@news.example'], updatedBy: 'admin2@corp.example', updatedAt: at(1).toISOString() });
    expect((await s.announcements.audiences()).map((l) => l.name)).toEqual(['press']);
    expect(await s.announcements.deleteAudience('press')).toBe(true);
    expect(await s.announcements.deleteAudience('press')).toBe(false);
    expect(await s.announcements.audience('press')).toBeUndefined();
  });

  if (backend === 'postgres') {
    it('two relays approving as the same person at once: one approval, never two', async () => {
      const url = await freshDatabaseUrl();
      const a = await store(url);
      const b = await store(url);
      await withDraft(a);
      const results = await Promise.all(
        [a, b, a, b].map((s, i) => s.transaction((tx) => tx.announcements.approve({ id: `race-${i}`, announcementId: 'ann-1', approver: 'legal@corp.example', role: 'legal', contentHash: 'h1', at: T0 }))),
      );
      expect(results.filter(Boolean)).toHaveLength(1);
      expect((await a.announcements.approvals('ann-1')).map((p) => p.approver)).toEqual(['legal@corp.example']);
    });
  }
});
