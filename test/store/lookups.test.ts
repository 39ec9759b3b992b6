/**
 * The joined lookups the accept path leans on, on both backends: an incident
 * with the caller's active roster entry in one query, and the keys of many
 * addresses in two per slice (the incident's own key before the relay-wide one),
 * for an audience longer than one IN list may bind.
 */
import { afterEach, describe, expect, it } from 'vitest';
import type { Store } from '../../src/store/index.js';
import type { StoredKey } from '../../src/store/keys.js';
import { BACKENDS, openTestStore } from '../helpers/relay.js';

const T0 = new Date('2026-11-28T10:00:00Z');
const opened: Store[] = [];

afterEach(async () => {
  await Promise.all(opened.splice(0).map((s) => s.close()));
});

const key = (email: string, fingerprint: string, incidentId: string | null): StoredKey => ({
  email, fingerprint, algorithm: 'ed25519', expiresAt: null, armored: `armored ${fingerprint}`, source: 'api', incidentId, updatedAt: T0.toISOString(),
});

describe.each(BACKENDS)('store lookups on %s', (backend) => {
  async function store(): Promise<Store> {
    const s = await openTestStore(backend, () => T0);
    opened.push(s);
    await s.incidents.create({ id: 'inc-1', codename: 'amber-otter', createdBy: 'ic@corp.example', at: T0, label: 'Payroll' });
    await s.incidents.upsertMember('inc-1', { email: 'ic@corp.example', name: 'Ida', role: 'commander', phone: '+15550100' }, T0);
    await s.incidents.upsertMember('inc-1', { email: 'gone@corp.example', name: 'Gus', role: 'service-owner' }, T0);
    await s.incidents.removeMember('inc-1', 'gone@corp.example', T0);
    return s;
  }

  it('finds the incident with the caller\'s active roster entry', async () => {
    const s = await store();
    expect(await s.incidents.withActiveMember('amber-otter', 'ic@corp.example')).toEqual({
      incident: await s.incidents.byId('inc-1'),
      member: await s.incidents.activeMember('inc-1', 'ic@corp.example'),
    });
    const found = await s.incidents.withActiveMember('amber-otter', 'ic@corp.example');
    expect(found?.member).toMatchObject({ email: 'ic@corp.example', name: 'Ida', role: 'commander', phone: '+15550100', status: 'active' });
    expect(found?.incident).toMatchObject({ id: 'inc-1', codename: 'amber-otter', status: 'open', label: 'Payroll' });
  });

  it('gives the incident without a member for a removed or unknown address, and nothing for an unknown codename', async () => {
    const s = await store();
    expect(await s.incidents.withActiveMember('amber-otter', 'gone@corp.example')).toEqual({ incident: await s.incidents.byId('inc-1'), member: undefined });
    expect(await s.incidents.withActiveMember('amber-otter', 'nobody@corp.example')).toEqual({ incident: await s.incidents.byId('inc-1'), member: undefined });
    expect(await s.incidents.withActiveMember('other-otter', 'ic@corp.example')).toBeUndefined();
  });

  it('finds many keys at once, the incident\'s own before the relay-wide one', async () => {
    const s = await store();
    await s.keys.put(key('a@corp.example', 'AAAA', null));
    await s.keys.put(key('a@corp.example', 'A1A1', 'inc-1'));
    await s.keys.put(key('b@corp.example', 'BBBB', null));
    await s.keys.put(key('c@corp.example', 'C1C1', 'inc-1'));
    const found = await s.keys.getForMany(['a@corp.example', 'b@corp.example', 'c@corp.example', 'd@corp.example'], 'inc-1');
    expect(Object.fromEntries([...found].map(([e, k]) => [e, k.fingerprint]))).toEqual({ 'a@corp.example': 'A1A1', 'b@corp.example': 'BBBB', 'c@corp.example': 'C1C1' });
    const relayWide = await s.keys.getForMany(['a@corp.example', 'c@corp.example'], null);
    expect(Object.fromEntries([...relayWide].map(([e, k]) => [e, k.fingerprint]))).toEqual({ 'a@corp.example': 'AAAA' });
    expect((await s.keys.getForMany([], 'inc-1')).size).toBe(0);
  });

  it('finds the keys of 70,000 addresses (an announcement audience), more than one IN list may bind on either backend', async () => {
    const s = await store();
    // SQLite binds at most 32,766 variables, PostgreSQL 65,535 parameters: 70,000 is over both.
    const audience = Array.from({ length: 70_000 }, (_, i) => `reader${i}@client.example`);
    await s.keys.put(key('reader0@client.example', 'F000', null));
    await s.keys.put(key('reader69999@client.example', 'F999', null));
    await s.keys.put(key('reader69999@client.example', 'I999', 'inc-1'));
    await s.keys.put(key('reader35000@client.example', 'I200', 'inc-1'));
    const found = await s.keys.getForMany(audience, 'inc-1');
    expect(Object.fromEntries([...found].map(([e, k]) => [e, k.fingerprint]))).toEqual({
      'reader0@client.example': 'F000',
      'reader35000@client.example': 'I200',
      'reader69999@client.example': 'I999',
    });
    const relayWide = await s.keys.getForMany([...audience, ...audience.slice(0, 10_000)], null);
    expect(Object.fromEntries([...relayWide].map(([e, k]) => [e, k.fingerprint]))).toEqual({ 'reader0@client.example': 'F000', 'reader69999@client.example': 'F999' });
  });
});
