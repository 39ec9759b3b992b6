/**
 * The store's repositories on both backends (the same tests, parameterised):
 * delivery claims under leases, lease expiry and renewal, cancellation of a
 * recipient who left the roster, reply-chain lookups by Message-ID and alias,
 * named leases, idempotency expiry, and an audit chain that never forks when
 * two stores (two relays) append at once.
 */
import { afterEach, describe, expect, it } from 'vitest';
import type { Store } from '../../src/store/index.js';
import type { NewDelivery } from '../../src/store/outbox.js';
import { BACKENDS, openTestStore } from '../helpers/relay.js';
import { freshDatabaseUrl } from '../helpers/postgres.js';
import { openStore } from '../../src/store/index.js';

const T0 = new Date('2026-01-01T00:00:00Z');
const at = (ms: number): Date => new Date(T0.getTime() + ms);
const opened: Store[] = [];

afterEach(async () => {
  await Promise.all(opened.splice(0).map((s) => s.close()));
});

function mail(id: string, to: string[], from = 'ic@corp.example', incidentId: string | null = null): NewDelivery {
  return { id, channel: 'email', incidentId, envelope: { kind: 'email', from, to }, body: Buffer.from(`body of ${id}`) };
}

describe.each(BACKENDS)('store on %s', (backend) => {
  async function store(now: () => Date = () => T0): Promise<Store> {
    const s = await openTestStore(backend, now);
    opened.push(s);
    return s;
  }

  async function queueSix(s: Store): Promise<void> {
    for (let i = 0; i < 6; i++) await s.outbox.enqueue([mail(`d${i}`, ['a@corp.example'])], at(i));
    // d5 is scheduled later than the looks below.
    await s.outbox.markRetry('d5', 'later', at(60_000), null);
  }

  it('claims due deliveries oldest first, up to the limit, with their bodies, and never one not yet due', async () => {
    const s = await store();
    await queueSix(s);
    const claimed = await s.outbox.claim('relay-a', at(1_000), 3, 30_000);
    expect(claimed.map((d) => d.id)).toEqual(['d0', 'd1', 'd2']);
    expect(claimed.map((d) => d.body?.toString())).toEqual(['body of d0', 'body of d1', 'body of d2']);
    expect((await s.outbox.claim('relay-a', at(1_000), 10, 30_000)).map((d) => d.id)).toEqual(['d3', 'd4']);
  });

  it('never hands a leased delivery to another relay until the lease expires; then it is taken over', async () => {
    const s = await store();
    await queueSix(s);
    await s.outbox.claim('relay-a', at(1_000), 2, 30_000);
    expect((await s.outbox.claim('relay-b', at(1_000), 10, 30_000)).map((d) => d.id)).toEqual(['d2', 'd3', 'd4']);
    // relay-a dies; its leases run out at 31 s.
    expect(await s.outbox.claim('relay-b', at(30_000), 10, 30_000)).toEqual([]);
    expect((await s.outbox.claim('relay-b', at(31_001), 10, 30_000)).map((d) => d.id)).toEqual(['d0', 'd1', 'd2', 'd3', 'd4']);
  });

  it('renewing keeps a lease alive past its first expiry; an outcome gives it back', async () => {
    const s = await store();
    await queueSix(s);
    await s.outbox.claim('relay-a', at(1_000), 1, 30_000);
    expect(await s.outbox.renewLeases('relay-a', ['d0'], at(90_000))).toBe(1);
    expect(await s.outbox.claim('relay-b', at(60_000), 1, 30_000)).toMatchObject([{ id: 'd1' }]);
    expect(await s.outbox.leasedBy('relay-a')).toBe(1);
    expect(await s.outbox.markRetry('d0', 'try later', at(61_000), 'relay-a')).toBe(true);
    expect(await s.outbox.leasedBy('relay-a')).toBe(0);
    const next = await s.outbox.claim('relay-b', at(61_000), 10, 30_000);
    expect(next.find((d) => d.id === 'd0')).toMatchObject({ attempts: 1, lastError: 'try later' });
  });

  it('two relays claiming at the same moment never get the same delivery', async () => {
    const s = await store();
    const other = await store();
    // On PostgreSQL the second store must be the same database: reopen it by URL.
    const peer = backend === 'postgres' ? await openPeer(s) : s;
    for (let i = 0; i < 60; i++) await s.outbox.enqueue([mail(`m${i}`, ['a@corp.example'])], at(i));
    void other;
    const rounds = await Promise.all(Array.from({ length: 12 }, (_, i) => (i % 2 === 0 ? s : peer).outbox.claim(`relay-${i % 2}-${i}`, at(100), 7, 30_000)));
    const ids = rounds.flatMap((r) => r.map((d) => d.id));
    expect(ids.length).toBe(60);
    expect(new Set(ids).size).toBe(60);
  });

  it('records an outcome only on a queued delivery, and purges the body when sent', async () => {
    const s = await store();
    await queueSix(s);
    expect(await s.outbox.markSent('d0', 'queue-id-1', at(2_000))).toBe(true);
    expect(await s.outbox.markSent('d0', 'queue-id-2', at(3_000))).toBe(false);
    expect(await s.outbox.markFailed('d0', 'late', null)).toBe(false);
    expect(await s.outbox.get('d0')).toMatchObject({ status: 'sent', body: null, attempts: 1 });
  });

  it('the next look is when something unleased is due or another relay\'s lease expires', async () => {
    const s = await store();
    await s.outbox.enqueue([mail('x', ['a@corp.example'])], at(0));
    await s.outbox.markRetry('x', 'later', at(5_000), null);
    expect(await s.outbox.nextDueMs('relay-a')).toBe(at(5_000).getTime());
    await s.outbox.claim('relay-b', at(5_000), 1, 30_000);
    expect(await s.outbox.nextDueMs('relay-a')).toBe(at(35_000).getTime());
    expect(await s.outbox.nextDueMs('relay-b')).toBeUndefined();
  });

  it('cancels one recipient of a shared copy into a row of their own, and the whole copy when the sender left', async () => {
    const s = await store();
    await s.transaction(async (tx) => {
      await tx.incidents.create({ id: 'i1', codename: 'amber-otter', createdBy: 'ic@corp.example', at: T0 });
      await tx.outbox.insertEmail({ id: 'e1', incidentId: 'i1', messageId: '<e1@corp.example>', sender: 'ic@corp.example', encrypted: false, chainExternal: false, recipients: ['a@corp.example', 'b@corp.example'], createdAt: T0.toISOString() });
      await tx.outbox.enqueue([{ ...mail('d1', ['a@corp.example', 'b@corp.example'], 'ic@corp.example', 'i1'), emailId: 'e1' }], T0);
      await tx.outbox.insertEmail({ id: 'e2', incidentId: 'i1', messageId: '<e2@corp.example>', sender: 'b@corp.example', encrypted: false, chainExternal: false, recipients: ['a@corp.example'], createdAt: T0.toISOString() });
      await tx.outbox.enqueue([{ ...mail('d2', ['a@corp.example'], 'b@corp.example', 'i1'), emailId: 'e2' }], T0);
    });
    let n = 0;
    const cancelled = await s.transaction((tx) => tx.outbox.cancelForMember('i1', 'b@corp.example', 'cancelled: left', () => `c${++n}`));
    expect(cancelled).toEqual([
      { deliveryId: 'd1', channel: 'email', emailId: 'e1', smsId: null, recipients: ['b@corp.example'], cancelledDeliveryId: 'c1' },
      { deliveryId: 'd2', channel: 'email', emailId: 'e2', smsId: null, recipients: ['a@corp.example'] },
    ]);
    expect((await s.outbox.get('d1'))!.envelope).toEqual({ kind: 'email', from: 'ic@corp.example', to: ['a@corp.example'] });
    const copies = (await s.outbox.deliveriesOf('e1')).sort((a, b) => a.status.localeCompare(b.status));
    expect(copies).toMatchObject([
      { id: 'c1', recipients: ['b@corp.example'], status: 'cancelled', lastError: 'cancelled: left' },
      { id: 'd1', recipients: ['a@corp.example'], status: 'queued' },
    ]);
    expect(await s.outbox.emailDeliveryState('e1')).toMatchObject({ status: 'queued' });
    expect(await s.outbox.emailDeliveryState('e2')).toMatchObject({ status: 'cancelled' });
    expect(await s.outbox.get('d2')).toMatchObject({ status: 'cancelled', body: null });
    // Nothing left to cancel the second time.
    expect(await s.transaction((tx) => tx.outbox.cancelForMember('i1', 'b@corp.example', 'again', () => 'c9'))).toEqual([]);
  });

  it('renews only the leases it is asked to, and a lease given back with a backoff is not due before it', async () => {
    const s = await store();
    await queueSix(s);
    await s.outbox.claim('relay-a', at(1_000), 3, 30_000);
    // d0 is in flight; d1's attempt threw and was forgotten; d2 is relay-a's too.
    expect(await s.outbox.renewLeases('relay-a', ['d0', 'd5', 'nope'], at(90_000))).toBe(1);
    // Only d0 kept its lease: d1 and d2 are taken over once theirs run out (31 s).
    expect((await s.outbox.claim('relay-b', at(31_001), 10, 30_000)).map((d) => d.id)).toEqual(['d1', 'd2', 'd3', 'd4']);
    // Given back with a backoff: nobody's, and not due before it.
    expect(await s.outbox.release('d1', 'relay-a', at(50_000))).toBe(false);
    expect(await s.outbox.release('d1', 'relay-b', at(50_000))).toBe(true);
    expect(await s.outbox.get('d1')).toMatchObject({ status: 'queued', attempts: 0 });
    expect(await s.outbox.claim('relay-c', at(49_999), 10, 30_000)).toEqual([]);
    expect((await s.outbox.claim('relay-c', at(50_000), 10, 30_000)).map((d) => d.id)).toEqual(['d1']);
  });

  it('a retry or failure is recorded only by the lease holder; a send is recorded whoever holds it', async () => {
    const s = await store();
    await queueSix(s);
    await s.outbox.claim('relay-a', at(1_000), 3, 30_000);
    // relay-a stalled; its leases ran out, relay-b took d0..d2 over.
    expect((await s.outbox.claim('relay-b', at(31_001), 3, 30_000)).map((d) => d.id)).toEqual(['d0', 'd1', 'd2']);
    // relay-a wakes up: its retry and failure must not clear relay-b's lease.
    expect(await s.outbox.markRetry('d0', 'timeout', at(40_000), 'relay-a')).toBe(false);
    expect(await s.outbox.markFailed('d1', '550 no', 'relay-a')).toBe(false);
    expect(await s.outbox.markRetry('d1', 'timeout', at(40_000), null)).toBe(false);
    expect(await s.outbox.leasedBy('relay-b')).toBe(3);
    expect(await s.outbox.claim('relay-c', at(32_000), 10, 30_000)).toMatchObject([{ id: 'd3' }, { id: 'd4' }]);
    expect(await s.outbox.get('d0')).toMatchObject({ status: 'queued', attempts: 0, lastError: null });
    // But the upstream took d2 from relay-a: that is recorded, and clears relay-b's lease.
    expect(await s.outbox.markSent('d2', 'queue-id-a', at(32_000))).toBe(true);
    expect(await s.sql.get('SELECT status, provider_id AS "providerId" FROM deliveries WHERE id = ?', ['d2'])).toEqual({ status: 'sent', providerId: 'queue-id-a' });
    expect(await s.outbox.state('d2')).toEqual({ status: 'sent', envelope: { kind: 'email', from: 'ic@corp.example', to: ['a@corp.example'] }, leaseOwner: null, providerId: 'queue-id-a', sentAt: at(32_000).toISOString() });
    // The holder records its own outcomes.
    expect(await s.outbox.markRetry('d0', 'timeout', at(40_000), 'relay-b')).toBe(true);
    expect(await s.outbox.markFailed('d1', '550 no', 'relay-b')).toBe(true);
  });

  it('two removals at once on two relays both hold: neither writes back a recipient the other took out', async () => {
    const s = await store();
    const peer = backend === 'postgres' ? await openPeer(s) : s;
    await s.transaction(async (tx) => {
      await tx.incidents.create({ id: 'i1', codename: 'amber-otter', createdBy: 'ic@corp.example', at: T0 });
      await tx.outbox.insertEmail({ id: 'e1', incidentId: 'i1', messageId: '<e1@corp.example>', sender: 'ic@corp.example', encrypted: false, chainExternal: false, recipients: ['a@corp.example', 'b@corp.example', 'c@corp.example'], createdAt: T0.toISOString() });
      await tx.outbox.enqueue([{ ...mail('d1', ['a@corp.example', 'b@corp.example', 'c@corp.example'], 'ic@corp.example', 'i1'), emailId: 'e1' }], T0);
    });
    // The first removal has written its change but not committed yet when the second starts.
    let commitFirst!: () => void;
    const held = new Promise<void>((resolve) => (commitFirst = resolve));
    let wrote!: () => void;
    const written = new Promise<void>((resolve) => (wrote = resolve));
    const first = s.transaction(async (tx) => {
      const done = await tx.outbox.cancelRecipients('d1', ['a@corp.example'], 'cancelled: a left', () => 'ca');
      wrote();
      await held;
      return done;
    });
    await written;
    const second = peer.transaction((tx) => tx.outbox.cancelRecipients('d1', ['b@corp.example'], 'cancelled: b left', () => 'cb'));
    await new Promise((resolve) => setTimeout(resolve, 300));
    commitFirst();
    expect(await first).toMatchObject({ recipients: ['a@corp.example'], cancelledDeliveryId: 'ca' });
    expect(await second).toMatchObject({ recipients: ['b@corp.example'], cancelledDeliveryId: 'cb' });
    expect((await s.outbox.get('d1'))!.envelope).toEqual({ kind: 'email', from: 'ic@corp.example', to: ['c@corp.example'] });
    const rows = (await s.outbox.deliveriesOf('e1')).map((d) => [d.id, d.status, d.recipients]).sort();
    expect(rows).toEqual([
      ['ca', 'cancelled', ['a@corp.example']],
      ['cb', 'cancelled', ['b@corp.example']],
      ['d1', 'queued', ['c@corp.example']],
    ]);
  });

  it('a removal and a send being recorded on two relays do not deadlock: the removal locks its rows before any payload', async () => {
    const s = await store();
    const peer = backend === 'postgres' ? await openPeer(s) : s;
    const sealed = (id: string, to: string): NewDelivery => ({ ...mail(id, [to], 'ic@corp.example', 'i1'), emailId: 'e1', bodyKind: 'sealed' });
    await s.transaction(async (tx) => {
      await tx.incidents.create({ id: 'i1', codename: 'amber-otter', createdBy: 'ic@corp.example', at: T0 });
      await tx.outbox.insertEmail({ id: 'e1', incidentId: 'i1', messageId: '<e1@corp.example>', sender: 'ic@corp.example', encrypted: true, chainExternal: false, recipients: ['a@corp.example', 'b@corp.example'], createdAt: T0.toISOString() });
      await tx.outbox.insertPayload('e1', { head: Buffer.from('head'), tail: Buffer.from('tail'), shared: Buffer.from('shared') });
      // Two sealed copies of one email (the visible recipients' and a Bcc one): d1 sorts first.
      await tx.outbox.enqueue([sealed('d1', 'a@corp.example'), sealed('d2', 'b@corp.example')], T0);
    });
    // A worker is recording d2 sent: it holds d2's row, and will need the email's payload row (markSent purges it).
    let record!: () => void;
    const go = new Promise<void>((resolve) => (record = resolve));
    let locked!: () => void;
    const holding = new Promise<void>((resolve) => (locked = resolve));
    const worker = s.transaction(async (tx) => {
      await tx.outbox.state('d2', true);
      locked();
      await go;
      return tx.outbox.markSent('d2', 'queue-2', at(5_000));
    });
    await holding;
    // Meanwhile the sender leaves, on another relay: both copies are to be cancelled whole.
    const removal = peer.transaction((tx) => tx.outbox.cancelForMember('i1', 'ic@corp.example', 'cancelled: ic left', () => 'x'));
    await new Promise((resolve) => setTimeout(resolve, 300));
    record();
    const [sent, cancelled] = await Promise.all([worker, removal]);
    expect(sent).toBe(true);
    expect(cancelled).toEqual([{ deliveryId: 'd1', channel: 'email', emailId: 'e1', smsId: null, recipients: ['a@corp.example'] }]);
    expect((await s.outbox.deliveriesOf('e1')).map((d) => [d.id, d.status])).toEqual([
      ['d1', 'cancelled'],
      ['d2', 'sent'],
    ]);
    // The payload went with the last queued copy.
    expect(await s.outbox.payload('e1')).toBeUndefined();
  });

  it('a cancelled copy the upstream took anyway is recorded sent; whoever did not get it stays cancelled', async () => {
    const s = await store();
    await s.transaction(async (tx) => {
      await tx.incidents.create({ id: 'i1', codename: 'amber-otter', createdBy: 'ic@corp.example', at: T0 });
      await tx.outbox.insertEmail({ id: 'e1', incidentId: 'i1', messageId: '<e1@corp.example>', sender: 'ic@corp.example', encrypted: false, chainExternal: false, recipients: ['a@corp.example', 'b@corp.example', 'c@corp.example'], createdAt: T0.toISOString() });
      await tx.outbox.enqueue([{ ...mail('d1', ['a@corp.example', 'b@corp.example', 'c@corp.example'], 'ic@corp.example', 'i1'), emailId: 'e1' }], T0);
      await tx.outbox.cancelRecipients('d1', ['a@corp.example', 'b@corp.example'], 'cancelled: left', () => 'cab');
    });
    // The send to a, b and c was under way; the upstream took it for a and c only (b was refused, say).
    let n = 0;
    const corrected = await s.transaction((tx) => tx.outbox.sentDespiteCancel('d1', ['a@corp.example', 'c@corp.example'], 'queue-1', at(5_000), () => `s${++n}`));
    expect(corrected).toEqual(['a@corp.example']);
    const rows = (await s.outbox.deliveriesOf('e1')).map((d) => [d.id, d.status, d.recipients]).sort();
    expect(rows).toEqual([
      ['cab', 'cancelled', ['b@corp.example']],
      ['d1', 'queued', ['c@corp.example']],
      ['s1', 'sent', ['a@corp.example']],
    ]);
    expect(await s.sql.get('SELECT provider_id AS "providerId", sent_at AS "sentAt", body FROM deliveries WHERE id = ?', ['s1'])).toEqual({ providerId: 'queue-1', sentAt: at(5_000).toISOString(), body: null });
  });

  it('finds a chain\'s messages by the relay\'s Message-ID or a client\'s alias, the domain part without case', async () => {
    const s = await store();
    await s.transaction(async (tx) => {
      await tx.incidents.create({ id: 'i1', codename: 'amber-otter', createdBy: 'ic@corp.example', at: T0 });
      await tx.outbox.insertEmail({ id: 'e1', incidentId: 'i1', messageId: '<Abc@corp.example>', sender: 'counsel@lawfirm.example', encrypted: true, chainExternal: true, recipients: ['ic@corp.example'], createdAt: T0.toISOString() });
      await tx.outbox.addAlias('<Client-1@Laptop.Corp.Example>', 'e1');
    });
    const found = await s.outbox.chainMessages(['<Abc@CORP.EXAMPLE>', '<Client-1@laptop.corp.example>', '<abc@corp.example>', '<nobody@x.example>']);
    expect(found.map((m) => [m.reference, m.emailId, m.chainExternal, m.sender]).sort()).toEqual([
      ['<Abc@corp.example>', 'e1', true, 'counsel@lawfirm.example'],
      ['<Client-1@laptop.corp.example>', 'e1', true, 'counsel@lawfirm.example'],
    ]);
  });

  it('a named lease has one holder at a time until it expires or is given up', async () => {
    const s = await store();
    expect(await s.leases.acquire('slack-watchdog', 'relay-a', at(0), 10_000)).toBe(true);
    expect(await s.leases.acquire('slack-watchdog', 'relay-b', at(5_000), 10_000)).toBe(false);
    expect(await s.leases.acquire('slack-watchdog', 'relay-a', at(9_000), 10_000)).toBe(true);
    expect(await s.leases.acquire('slack-watchdog', 'relay-b', at(18_000), 10_000)).toBe(false);
    expect(await s.leases.acquire('slack-watchdog', 'relay-b', at(19_001), 10_000)).toBe(true);
    expect(await s.leases.holder('slack-watchdog', at(20_000))).toBe('relay-b');
    await s.leases.release('slack-watchdog', 'relay-b');
    expect(await s.leases.acquire('slack-watchdog', 'relay-a', at(20_000), 10_000)).toBe(true);
  });

  it('idempotency keys remember a fingerprint and expire', async () => {
    const s = await store();
    const answer = { route: 'email:i1', fingerprint: 'f1', status: 202, response: { id: 'x' } };
    expect(await s.idempotency.put('t1', 'k', answer, at(0), at(0).getTime() - 1000)).toBe(true);
    expect(await s.idempotency.put('t1', 'k', { ...answer, fingerprint: 'f2' }, at(1), at(1).getTime() - 1000)).toBe(false);
    expect(await s.idempotency.get('t1', 'k', at(0).getTime())).toMatchObject({ fingerprint: 'f1', response: { id: 'x' } });
    // Expired: not found, and may be replaced.
    expect(await s.idempotency.get('t1', 'k', at(1).getTime())).toBeUndefined();
    expect(await s.idempotency.put('t1', 'k', { ...answer, fingerprint: 'f3' }, at(5000), at(1).getTime())).toBe(true);
    expect(await s.idempotency.purgeExpired(at(6000).getTime())).toBe(1);
  });

  it('send-limit buckets are shared: two relays together never give a token more than its burst', async () => {
    const s = await store();
    const peer = backend === 'postgres' ? await openPeer(s) : s;
    const rate = 60 / 60_000; // one per second
    const results = await Promise.all(Array.from({ length: 20 }, (_, i) => (i % 2 === 0 ? s : peer).sendLimits.take('token-1', at(0).getTime(), rate, 5)));
    expect(results.filter((r) => r.ok).length).toBe(5);
    expect(results.find((r) => !r.ok)).toMatchObject({ ok: false, retryAfterMs: 1000 });
    // One more a second later, and another caller has its own bucket.
    expect(await s.sendLimits.take('token-1', at(1000).getTime(), rate, 5)).toEqual({ ok: true });
    expect(await s.sendLimits.take('token-1', at(1000).getTime(), rate, 5)).toMatchObject({ ok: false });
    expect(await s.sendLimits.take('token-2', at(1000).getTime(), rate, 5)).toEqual({ ok: true });
  });

  it('keeps one audit chain when two relays append at the same time', async () => {
    const s = await store();
    const peer = backend === 'postgres' ? await openPeer(s) : s;
    await Promise.all(Array.from({ length: 80 }, (_, i) => (i % 2 === 0 ? s : peer).audit.append({ type: 'race', actor: null, outcome: 'ok', data: { i } })));
    expect(await s.audit.verify()).toMatchObject({ ok: true, events: 80 });
  });

  async function openPeer(s: Store): Promise<Store> {
    // The URL of the database `s` is on, for a second pool: a second relay.
    const url = (await s.sql.get<{ url: string }>("SELECT current_database() AS url"))!.url;
    const base = new URL(await freshDatabaseUrl());
    base.pathname = `/${url}`;
    const peer = await openStore({ url: base.toString() }, { now: () => T0 });
    opened.push(peer);
    return peer;
  }
});
