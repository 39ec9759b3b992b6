/**
 * Outbox.due(): the delivery worker's look for work leaves out what is
 * already in flight in the query itself, so the limit counts only rows it
 * can start, oldest first, and nothing not yet due.
 */
import { afterEach, beforeEach, describe, expect, it } from 'vitest';
import { createStore, type Store } from '../../src/store/index.js';

const T0 = new Date('2026-01-01T00:00:00Z');
let store: Store;

beforeEach(() => {
  store = createStore(':memory:', () => T0);
  const at = (i: number): Date => new Date(T0.getTime() + i);
  for (let i = 0; i < 6; i++) {
    store.outbox.enqueue([{ id: `d${i}`, channel: 'email', incidentId: null, envelope: { kind: 'email', from: 'relay@corp.example', to: ['a@corp.example'] }, body: Buffer.from(`m${i}`) }], at(i));
  }
  // d5 is scheduled later than the look below.
  store.outbox.markRetry('d5', 'later', new Date(T0.getTime() + 60_000));
});

afterEach(() => store.close());

describe('Outbox.due', () => {
  const now = new Date(T0.getTime() + 1_000);

  it('returns due rows oldest first, up to the limit', () => {
    expect(store.outbox.due(now, 3, new Set()).map((d) => d.id)).toEqual(['d0', 'd1', 'd2']);
  });

  it('leaves out in-flight rows without letting them use up the limit', () => {
    const due = store.outbox.due(now, 2, new Set(['d0', 'd2']));
    expect(due.map((d) => d.id)).toEqual(['d1', 'd3']);
    expect(due.map((d) => d.body?.toString())).toEqual(['m1', 'm3']);
  });

  it('returns nothing when everything due is in flight, and never what is not yet due', () => {
    expect(store.outbox.due(now, 8, new Set(['d0', 'd1', 'd2', 'd3', 'd4']))).toEqual([]);
    expect(store.outbox.due(now, 8, new Set()).map((d) => d.id)).not.toContain('d5');
  });
});
