/**
 * Upstream faults (issue 7): the real app and DeliveryWorker, the real
 * nodemailer channel, and an upstream that fails the way real ones do — a
 * 4xx, a 5xx, a server that never greets, one that drops the connection in
 * the middle of DATA, and ones that take the whole message but never answer.
 * What must hold: transient faults are retried and permanent ones fail (SPEC
 * §6), nothing accepted is lost, and the only duplicates are the ones
 * at-least-once delivery cannot avoid (the upstream took the message but the
 * relay never heard the 250).
 */
import { afterEach, beforeEach, describe, expect, it } from 'vitest';
import { createSmtpChannel } from '../../src/channels/email/smtp.js';
import type { AuditEvent } from '../../src/store/audit.js';
import type { Delivery } from '../../src/store/outbox.js';
import { DeliveryWorker } from '../../src/workers/delivery.js';
import { startFaultySmtp, type FaultySmtp, type SmtpFault } from '../helpers/faulty-smtp.js';
import { createTestRelay, type TestRelay } from '../helpers/relay.js';
import { startUpstream, type Upstream } from '../helpers/upstream.js';

// Short enough to keep the suite fast, long enough that a loaded CI box does not time out a healthy server.
const TIMEOUTS = { connectionTimeout: 1_000, greetingTimeout: 400, socketTimeout: 600 };

let relay: TestRelay;
let ic: string;
let codename: string;
let channel: ReturnType<typeof createSmtpChannel> | undefined;
let worker: DeliveryWorker | undefined;
let upstream: Upstream | undefined;
let faulty: FaultySmtp | undefined;

const auth = () => ({ Authorization: `Bearer ${ic}` });

beforeEach(async () => {
  relay = await createTestRelay();
  ic = await relay.tokenFor('ic@corp.example');
  codename = (await relay.request.post('/v1/incidents').set(auth()).send({})).body.codename as string;
  for (const email of ['sec@corp.example', 'exec@corp.example']) {
    expect((await relay.request.put(`/v1/incidents/${codename}/roster/${email}`).set(auth()).send({ name: email.split('@')[0], role: 'security' })).status).toBe(201);
  }
});

afterEach(async () => {
  await worker?.stop();
  channel?.close();
  await upstream?.stop();
  await faulty?.stop();
  worker = undefined;
  channel = undefined;
  upstream = undefined;
  faulty = undefined;
});

/** Points a channel and a worker at `url`; the backoff is tiny and the clock is the test's. */
function deliverTo(url: string): DeliveryWorker {
  channel = createSmtpChannel(url, { timeouts: TIMEOUTS });
  worker = new DeliveryWorker(relay.ctx, { channels: { email: channel }, baseBackoffMs: 10, random: () => 0 });
  return worker;
}

/** Sends `n` internal messages; returns their Message-IDs and ids. */
async function send(n: number): Promise<{ id: string; messageId: string }[]> {
  const accepted: { id: string; messageId: string }[] = [];
  for (let i = 0; i < n; i++) {
    const res = await relay.request.post(`/v1/incidents/${codename}/emails`).set(auth()).send({ to: ['sec@corp.example'], cc: ['exec@corp.example'], text: `message ${i}` });
    expect(res.status).toBe(202);
    accepted.push({ id: res.body.id as string, messageId: res.body.messageId as string });
  }
  return accepted;
}

/** The email's overall state (the view also lists each copy, which these tests do not look at). */
async function status(id: string): Promise<{ id: string; status: string; attempts: number; lastError?: string }> {
  const { id: emailId, status: state, attempts, lastError } = (await relay.request.get(`/v1/incidents/${codename}/emails/${id}`).set(auth())).body;
  return { id: emailId, status: state, attempts, ...(lastError !== undefined ? { lastError } : {}) };
}

function messageIdOf(raw: Buffer): string {
  return /^Message-ID: (<[^>\r\n]+>)/im.exec(raw.toString('latin1'))?.[1] ?? '';
}

/** Bodies kept by deliveries that will never be sent again (SPEC §6: only metadata stays). */
async function bodiesLeft(): Promise<number> {
  return (await relay.ctx.store.sql.get<{ n: number }>("SELECT COUNT(*) AS n FROM deliveries WHERE body IS NOT NULL AND status <> 'queued'"))!.n;
}

/** The incident's audit events of `type`, in order. */
async function auditOf(type: string): Promise<AuditEvent[]> {
  const incident = await relay.ctx.store.incidents.byCodename(codename);
  expect(incident).toBeDefined();
  return (await relay.ctx.store.audit.listForIncident(incident!.id)).filter((e) => e.type === type);
}

describe('an upstream that refuses', () => {
  it('451: every message stays queued and is retried; each arrives exactly once when the upstream recovers', async () => {
    upstream = await startUpstream();
    const w = deliverTo(upstream.url);
    upstream.failWith = 451;
    const sent = await send(3);
    await w.drain();
    for (const s of sent) expect(await status(s.id)).toMatchObject({ status: 'queued', attempts: 1, lastError: expect.stringContaining('451') });
    // A second refusal: still queued, the attempt counted.
    relay.clock.advance(60_000);
    await w.drain();
    for (const s of sent) expect((await status(s.id)).attempts).toBe(2);
    expect(upstream.received).toHaveLength(0);

    upstream.failWith = undefined;
    relay.clock.advance(60_000);
    await w.drain();
    const mails = await upstream.waitFor(3);
    // Nothing was taken while the upstream said 451, so nothing is duplicated.
    expect(mails.map((m) => messageIdOf(m.raw)).sort()).toEqual(sent.map((s) => s.messageId).sort());
    for (const s of sent) expect(await status(s.id)).toEqual({ id: s.id, status: 'sent', attempts: 3 });
  });

  it('550: the message fails at once, is never retried, and its body is purged', async () => {
    upstream = await startUpstream();
    const w = deliverTo(upstream.url);
    upstream.failWith = 550;
    const [s] = await send(1);
    await w.drain();
    upstream.failWith = undefined;
    relay.clock.advance(24 * 3_600_000);
    await w.drain();
    expect(await status(s!.id)).toMatchObject({ status: 'failed', attempts: 1, lastError: expect.stringContaining('550') });
    expect(upstream.received).toHaveLength(0);
    expect(await bodiesLeft()).toBe(0);
    expect(await auditOf('email.delivery_failed')).toHaveLength(1);
  });
});

describe('an upstream that breaks the dialogue', () => {
  /**
   * Runs `fault` against two messages, then swaps in a healthy server on the
   * same port; returns how often each Message-ID was taken in all (the faulty
   * server's half-taken copies included).
   */
  async function faultThenHeal(fault: SmtpFault): Promise<{ sent: { id: string; messageId: string }[]; seen: Map<string, number>; halfTaken: number }> {
    faulty = await startFaultySmtp(fault);
    const w = deliverTo(faulty.url);
    const sent = await send(2);
    const started = Date.now();
    await w.drain();
    // A fault costs at most one timeout per attempt, not the 30-60 s defaults.
    expect(Date.now() - started).toBeLessThan(10_000);
    expect(faulty.connections).toBeGreaterThan(0);
    for (const s of sent) {
      const st = await status(s.id);
      expect(st.status, `${fault}: still queued for a retry`).toBe('queued');
      expect(st.lastError).toMatch(/^upstream unavailable/);
    }
    const halfTaken = faulty.halfTaken.map((m) => messageIdOf(m.raw));
    const port = faulty.port;
    await faulty.stop();
    faulty = undefined;

    upstream = await startUpstream(port);
    relay.clock.advance(60_000);
    await w.drain();
    const mails = await upstream.waitFor(sent.length, 10_000);
    const seen = new Map<string, number>();
    for (const id of [...halfTaken, ...mails.map((m) => messageIdOf(m.raw))]) seen.set(id, (seen.get(id) ?? 0) + 1);
    for (const s of sent) expect((await status(s.id)).status).toBe('sent');
    expect(await bodiesLeft()).toBe(0);
    return { sent, seen, halfTaken: halfTaken.length };
  }

  it('never greets: the greeting timeout frees the delivery slot; retried and delivered once', async () => {
    const { sent, seen } = await faultThenHeal('silent');
    for (const s of sent) expect(seen.get(s.messageId)).toBe(1);
  });

  it('drops the connection in the middle of DATA: retried, nothing lost, nothing duplicated', async () => {
    const { sent, seen, halfTaken } = await faultThenHeal('drop-mid-data');
    expect(halfTaken).toBe(0);
    for (const s of sent) expect(seen.get(s.messageId)).toBe(1);
  });

  it('hangs up after the final dot, before its reply: sent again, so at least once and never lost', async () => {
    const { sent, seen, halfTaken } = await faultThenHeal('drop-after-data');
    // The upstream did read a whole message the relay never saw acknowledged:
    // the relay cannot know, so it sends again. That duplicate is at-least-once.
    expect(halfTaken).toBeGreaterThan(0);
    for (const s of sent) expect(seen.get(s.messageId)).toBeGreaterThanOrEqual(1);
    expect([...seen.keys()].sort()).toEqual(sent.map((s) => s.messageId).sort());
  });

  it('never answers the final dot: the socket timeout fires; sent again, never lost', async () => {
    const { sent, seen } = await faultThenHeal('hang-after-data');
    for (const s of sent) expect(seen.get(s.messageId)).toBeGreaterThanOrEqual(1);
    expect([...seen.keys()].sort()).toEqual(sent.map((s) => s.messageId).sort());
  });
});

describe('restart', () => {
  it('resumes the queue at once, however far the backoff had pushed the next attempt', async () => {
    upstream = await startUpstream();
    const port = upstream.port;
    await upstream.stop();
    // The relay's defaults: a 2 s base backoff that doubles up to 15 minutes.
    channel = createSmtpChannel(`smtp://127.0.0.1:${port}`, { timeouts: TIMEOUTS });
    const before = new DeliveryWorker(relay.ctx, { channels: { email: channel } });
    const [s] = await send(1);
    const copies = await relay.ctx.store.outbox.deliveriesOf(s!.id);
    expect(copies).toHaveLength(1);
    const delivery = async (): Promise<Delivery> => (await relay.ctx.store.outbox.get(copies[0]!.id))!;
    for (let i = 0; i < 8; i++) {
      // Each retry at its due time, so the backoff grows as it would over a long outage.
      if (i > 0) relay.clock.current = new Date((await delivery()).nextAttemptMs);
      await before.drain();
    }
    await before.stop();
    const row = await delivery();
    expect(row.attempts).toBe(8);
    // The eighth failure scheduled the ninth attempt minutes away.
    expect(row.nextAttemptMs - relay.clock.now().getTime()).toBeGreaterThan(60_000);

    // The operator fixes the upstream and restarts the relay: a new worker over the same store.
    await upstream.start();
    worker = new DeliveryWorker(relay.ctx, { channels: { email: channel } });
    await worker.start();
    // The clock does not move: only the restart can make the delivery due.
    const [mail] = await upstream.waitFor(1, 10_000);
    expect(messageIdOf(mail!.raw)).toBe(s!.messageId);
    await worker.stop();
    expect(await status(s!.id)).toEqual({ id: s!.id, status: 'sent', attempts: 9 });
  });
});

describe('an upstream that refuses some recipients and takes the message for the rest', () => {
  /** Sends one internal message to sec (To) and `cc`; returns its ids. */
  async function sendTo(cc: string[]): Promise<{ id: string; messageId: string }> {
    const res = await relay.request.post(`/v1/incidents/${codename}/emails`).set(auth()).send({ to: ['sec@corp.example'], cc, text: 'partial' });
    expect(res.status).toBe(202);
    return { id: res.body.id as string, messageId: res.body.messageId as string };
  }

  async function partialEvents(): Promise<{ outcome: string; data: { recipients: { recipient: string; code: number | null; error: string }[]; splitDeliveryId: string } }[]> {
    const events = await auditOf('email.delivery_partial');
    return events.map((e) => ({ outcome: e.outcome, data: e.data as { recipients: { recipient: string; code: number | null; error: string }[]; splitDeliveryId: string } }));
  }

  /** How many copies each recipient got, over everything the upstream took. */
  function copiesPerRecipient(): Map<string, number> {
    const copies = new Map<string, number>();
    for (const m of upstream!.received) for (const to of m.to) copies.set(to, (copies.get(to) ?? 0) + 1);
    return copies;
  }

  it('450 for one recipient: the other gets it once now, the refused one after it recovers; the email ends sent', async () => {
    upstream = await startUpstream();
    const w = deliverTo(upstream.url);
    upstream.refuseRecipients.set('exec@corp.example', 450);
    const s = await sendTo(['exec@corp.example']);
    await w.drain();

    // Before the fix this read `sent`, and exec never got the message.
    expect(upstream.received.map((m) => m.to)).toEqual([['sec@corp.example']]);
    expect(await status(s.id)).toMatchObject({ status: 'queued', attempts: 1, lastError: expect.stringMatching(/exec@corp\.example.*450/) });
    const [event] = await partialEvents();
    expect(event).toMatchObject({ outcome: 'retry', data: { recipients: [{ recipient: 'exec@corp.example', code: 450 }] } });
    // The retry copy carries the attempt (so backoff goes on) and waits for it.
    const split = (await relay.ctx.store.outbox.get(event!.data.splitDeliveryId))!;
    expect(split).toMatchObject({ status: 'queued', attempts: 1, envelope: { kind: 'email', to: ['exec@corp.example'] } });
    expect(split.nextAttemptMs).toBeGreaterThan(relay.clock.now().getTime());
    expect(split.body).not.toBeNull();

    // Still busy: refused again, still queued, the attempt counted.
    relay.clock.advance(60_000);
    await w.drain();
    expect(await relay.ctx.store.outbox.get(split.id)).toMatchObject({ status: 'queued', attempts: 2 });
    expect(upstream.received).toHaveLength(1);

    upstream.refuseRecipients.clear();
    relay.clock.advance(60_000);
    await w.drain();
    const mails = await upstream.waitFor(2);
    expect(mails[1]!.to).toEqual(['exec@corp.example']);
    // The same composed bytes, so the same Message-ID: one email, two envelopes.
    expect(mails[1]!.raw.equals(mails[0]!.raw)).toBe(true);
    expect(messageIdOf(mails[1]!.raw)).toBe(s.messageId);
    expect(copiesPerRecipient()).toEqual(new Map([['sec@corp.example', 1], ['exec@corp.example', 1]]));
    expect(await status(s.id)).toEqual({ id: s.id, status: 'sent', attempts: 3 });
    expect(await bodiesLeft()).toBe(0);
    expect(await relay.ctx.store.outbox.queuedCount('email')).toBe(0);
  });

  it('550 for one recipient: the other gets it once, the refused one is recorded failed with the reply, never retried', async () => {
    upstream = await startUpstream();
    const w = deliverTo(upstream.url);
    upstream.refuseRecipients.set('exec@corp.example', 550);
    const s = await sendTo(['exec@corp.example']);
    await w.drain();
    upstream.refuseRecipients.clear();
    relay.clock.advance(24 * 3_600_000);
    await w.drain();

    expect(upstream.received.map((m) => m.to)).toEqual([['sec@corp.example']]);
    expect(await status(s.id)).toMatchObject({ status: 'failed', attempts: 1, lastError: expect.stringMatching(/exec@corp\.example.*550/) });
    const events = await partialEvents();
    expect(events).toHaveLength(1);
    expect(events[0]).toMatchObject({ outcome: 'failed', data: { recipients: [{ recipient: 'exec@corp.example', code: 550 }] } });
    const failed = (await relay.ctx.store.outbox.get(events[0]!.data.splitDeliveryId))!;
    expect(failed).toMatchObject({ status: 'failed', body: null, envelope: { kind: 'email', to: ['exec@corp.example'] } });
    expect(await bodiesLeft()).toBe(0);
    expect((await relay.ctx.store.audit.verify()).ok).toBe(true);
  });

  it('450 and 550 in one envelope: each refused recipient gets its own outcome, the accepted one is not sent twice', async () => {
    expect((await relay.request.put(`/v1/incidents/${codename}/roster/ops@corp.example`).set(auth()).send({ name: 'ops', role: 'security' })).status).toBe(201);
    upstream = await startUpstream();
    const w = deliverTo(upstream.url);
    upstream.refuseRecipients.set('exec@corp.example', 450).set('ops@corp.example', 550);
    const s = await sendTo(['exec@corp.example', 'ops@corp.example']);
    await w.drain();
    expect((await partialEvents()).map((e) => [e.outcome, e.data.recipients.map((r) => r.code)])).toEqual([
      ['retry', [450]],
      ['failed', [550]],
    ]);

    upstream.refuseRecipients.clear();
    relay.clock.advance(60_000);
    await w.drain();
    await upstream.waitFor(2);
    expect(copiesPerRecipient()).toEqual(new Map([['sec@corp.example', 1], ['exec@corp.example', 1]]));
    // One copy failed for good, so the email reports it, with the 550.
    expect(await status(s.id)).toMatchObject({ status: 'failed', lastError: expect.stringMatching(/ops@corp\.example.*550/) });
    expect(await bodiesLeft()).toBe(0);
    expect(await relay.ctx.store.outbox.queuedCount('email')).toBe(0);
  });
});

describe('the running worker', () => {
  let unhandled: unknown[];
  const onUnhandled = (reason: unknown): void => void unhandled.push(reason);

  beforeEach(() => {
    unhandled = [];
    process.on('unhandledRejection', onUnhandled);
  });

  afterEach(() => {
    process.off('unhandledRejection', onUnhandled);
  });

  /** Replaces `outbox[method]` on this relay's instance with a counting wrapper; `fail(n)` decides whether call n rejects. */
  function spyOutbox<K extends 'claim' | 'nextDueMs'>(method: K, fail: (call: number) => boolean = () => false): { calls: () => number } {
    const outbox = relay.ctx.store.outbox;
    const original = outbox[method].bind(outbox) as (...args: unknown[]) => Promise<unknown>;
    let calls = 0;
    (outbox as unknown as Record<string, unknown>)[method] = async (...args: unknown[]) => {
      calls += 1;
      if (fail(calls)) throw Object.assign(new Error('database is locked'), { code: 'SQLITE_BUSY' });
      return original(...args);
    };
    return { calls: () => calls };
  }

  it('survives store errors in its loop (SQLITE_BUSY): logs, keeps polling, delivers later, no unhandled rejection', async () => {
    upstream = await startUpstream();
    channel = createSmtpChannel(upstream.url, { timeouts: TIMEOUTS });
    const errors: unknown[] = [];
    const logError = relay.ctx.logger.error.bind(relay.ctx.logger);
    relay.ctx.logger.error = ((obj: unknown, ...rest: unknown[]) => {
      errors.push(obj);
      return (logError as (...a: unknown[]) => void)(obj, ...rest);
    }) as typeof relay.ctx.logger.error;
    // The first two looks at the queue (claims) fail outright, and so does the first
    // next-due computation after a look that worked.
    const due = spyOutbox('claim', (n) => n <= 2);
    const nextDue = spyOutbox('nextDueMs', (n) => n === 1);
    worker = new DeliveryWorker(relay.ctx, { channels: { email: channel }, pollMs: 25, baseBackoffMs: 10, random: () => 0 });
    await worker.start();
    const [s] = await send(1);

    const [mail] = await upstream.waitFor(1, 5_000);
    expect(messageIdOf(mail!.raw)).toBe(s!.messageId);
    await worker.stop();
    expect(await status(s!.id)).toMatchObject({ status: 'sent' });
    expect(due.calls()).toBeGreaterThan(2);
    expect(nextDue.calls()).toBeGreaterThanOrEqual(1);
    expect(errors.length).toBeGreaterThanOrEqual(2);
    // Let any stray rejection reach the process before looking.
    await new Promise((resolve) => setTimeout(resolve, 50));
    expect(unhandled).toEqual([]);
  });

  it('does not spin while a slow send is in flight', async () => {
    upstream = await startUpstream();
    upstream.replyDelayMs = 1_000;
    // Long enough for the slow reply; the default 16 slots, so one in flight leaves room.
    channel = createSmtpChannel(upstream.url, { timeouts: { ...TIMEOUTS, socketTimeout: 5_000 } });
    const [s] = await send(1);
    const due = spyOutbox('claim');
    const nextDue = spyOutbox('nextDueMs');
    worker = new DeliveryWorker(relay.ctx, { channels: { email: channel }, pollMs: 1_000 });
    await worker.start();
    await new Promise((resolve) => setTimeout(resolve, 900));
    // Before the fix: the in-flight row counted as due now, so ~1,000 looks here.
    expect(upstream.received).toHaveLength(0);
    expect(due.calls()).toBeLessThan(20);
    expect(nextDue.calls()).toBeLessThan(20);
    await upstream.waitFor(1, 5_000);
    await worker.stop();
    expect(await status(s!.id)).toMatchObject({ status: 'sent' });
    expect(unhandled).toEqual([]);
  });

  it('does not spin while every slot is busy and more is due', async () => {
    upstream = await startUpstream();
    upstream.replyDelayMs = 700;
    channel = createSmtpChannel(upstream.url, { timeouts: { ...TIMEOUTS, socketTimeout: 5_000 } });
    const sent = await send(2);
    // With no free slot a look skips claim(), so count every look at the queue.
    const due = spyOutbox('claim');
    const nextDue = spyOutbox('nextDueMs');
    worker = new DeliveryWorker(relay.ctx, { channels: { email: channel }, concurrency: 1, pollMs: 1_000 });
    await worker.start();
    await new Promise((resolve) => setTimeout(resolve, 600));
    expect(upstream.received).toHaveLength(0);
    expect(due.calls() + nextDue.calls()).toBeLessThan(20);
    // The freed slot starts the second at once, without waiting for the poll.
    await upstream.waitFor(2, 5_000);
    await worker.stop();
    for (const s of sent) expect((await status(s.id)).status).toBe('sent');
    expect(unhandled).toEqual([]);
  });
});
