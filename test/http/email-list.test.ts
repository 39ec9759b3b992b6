/**
 * GET /v1/incidents/:codename/emails (issue 12 §2): the incident's emails,
 * newest first, paged by an opaque cursor, with each one's delivery status;
 * the sender sees theirs, the commander and admins all; `messageId` finds an
 * email by the relay's Message-ID or a client's own. On both store backends.
 */
import { beforeEach, describe, expect, it } from 'vitest';
import { BACKENDS, createTestRelay, type TestRelay } from '../helpers/relay.js';

const auth = (token: string) => ({ Authorization: `Bearer ${token}` });

describe.each(BACKENDS)('the email list (%s)', (backend) => {
  let relay: TestRelay;
  let ic: string;
  let sec: string;
  let deputy: string;
  let codename: string;

  const send = async (token: string, body: Record<string, unknown>): Promise<{ id: string; messageId: string }> => {
    const res = await relay.request.post(`/v1/incidents/${codename}/emails`).set(auth(token)).send(body);
    expect(res.status).toBe(202);
    relay.clock.advance(1000);
    return res.body;
  };
  const list = (token: string, query = '') => relay.request.get(`/v1/incidents/${codename}/emails${query}`).set(auth(token));

  beforeEach(async () => {
    relay = await createTestRelay({}, { backend });
    ic = await relay.tokenFor('ic@corp.example');
    sec = await relay.tokenFor('sec@corp.example');
    deputy = await relay.tokenFor('deputy@corp.example');
    codename = (await relay.request.post('/v1/incidents').set(auth(ic)).send({})).body.codename;
    for (const [email, role] of [
      ['sec@corp.example', 'security'],
      ['deputy@corp.example', 'deputy'],
      ['exec@corp.example', 'executive'],
    ]) {
      expect((await relay.request.put(`/v1/incidents/${codename}/roster/${email}`).set(auth(ic)).send({ name: email!.split('@')[0], role })).status).toBe(201);
    }
  });

  it('pages newest first by cursor, each email with its status and deliveries', async () => {
    const sent = [];
    for (let i = 0; i < 5; i++) sent.push(await send(ic, { to: ['sec@corp.example'], bcc: ['exec@corp.example'], text: `m${i}` }));
    const first = await list(ic, '?limit=2');
    expect(first.status).toBe(200);
    expect(first.body.emails.map((e: { id: string }) => e.id)).toEqual([sent[4]!.id, sent[3]!.id]);
    expect(first.body.emails[0]).toEqual({
      id: sent[4]!.id,
      messageId: sent[4]!.messageId,
      sender: 'ic@corp.example',
      createdAt: expect.any(String),
      encrypted: false,
      recipients: ['sec@corp.example', 'exec@corp.example'],
      status: 'queued',
      attempts: 0,
      deliveries: [{ recipients: ['sec@corp.example', 'exec@corp.example'], status: 'queued', attempts: 0 }],
    });
    expect(typeof first.body.next).toBe('string');
    const second = await list(ic, `?limit=2&cursor=${encodeURIComponent(first.body.next)}`);
    expect(second.body.emails.map((e: { id: string }) => e.id)).toEqual([sent[2]!.id, sent[1]!.id]);
    const third = await list(ic, `?limit=2&cursor=${encodeURIComponent(second.body.next)}`);
    expect(third.body.emails.map((e: { id: string }) => e.id)).toEqual([sent[0]!.id]);
    expect(third.body).not.toHaveProperty('next');
    // Default limit: all five, no next.
    const all = await list(ic);
    expect(all.body.emails).toHaveLength(5);
    expect(all.body).not.toHaveProperty('next');
  });

  it('keeps order within one millisecond by id, and never repeats or skips across pages', async () => {
    const ids = [];
    for (let i = 0; i < 4; i++) {
      const res = await relay.request.post(`/v1/incidents/${codename}/emails`).set(auth(ic)).send({ to: ['sec@corp.example'], text: 'same time' });
      ids.push(res.body.id as string);
    }
    const seen: string[] = [];
    let cursor: string | undefined;
    do {
      const page = await list(ic, `?limit=1${cursor ? `&cursor=${encodeURIComponent(cursor)}` : ''}`);
      seen.push(...page.body.emails.map((e: { id: string }) => e.id));
      cursor = page.body.next;
    } while (cursor !== undefined && seen.length < 10);
    expect(seen).toEqual([...ids].sort().reverse());
  });

  it('shows the sender their own emails, the commander and admins all; a deputy is a sender like any other', async () => {
    const fromIc = await send(ic, { to: ['sec@corp.example'], text: 'a' });
    const fromSec = await send(sec, { to: ['exec@corp.example'], text: 'b' });
    const ids = async (token: string) => (await list(token)).body.emails.map((e: { id: string }) => e.id);
    expect(await ids(ic)).toEqual([fromSec.id, fromIc.id]);
    expect(await ids(relay.admin)).toEqual([fromSec.id, fromIc.id]);
    expect(await ids(sec)).toEqual([fromSec.id]);
    expect(await ids(deputy)).toEqual([]);
    // The same for one email by id.
    expect((await relay.request.get(`/v1/incidents/${codename}/emails/${fromIc.id}`).set(auth(sec))).status).toBe(404);
    expect((await relay.request.get(`/v1/incidents/${codename}/emails/${fromIc.id}`).set(auth(deputy))).status).toBe(404);
    expect((await relay.request.get(`/v1/incidents/${codename}/emails/${fromSec.id}`).set(auth(sec))).status).toBe(200);
    // Off the roster: not found, as for the incident itself.
    const outsider = await relay.tokenFor('outsider@corp.example');
    expect((await list(outsider)).status).toBe(404);
  });

  it('finds an email by its Message-ID, in any case of its domain, or by the client Message-ID kept as its alias', async () => {
    const a = await send(ic, { to: ['sec@corp.example'], text: 'a' });
    await send(ic, { to: ['sec@corp.example'], text: 'b' });
    const byId = await list(ic, `?messageId=${encodeURIComponent(a.messageId)}`);
    expect(byId.body.emails.map((e: { id: string }) => e.id)).toEqual([a.id]);
    const upper = a.messageId.replace(/@.*$/, (d) => d.toUpperCase());
    expect((await list(ic, `?messageId=${encodeURIComponent(upper)}`)).body.emails.map((e: { id: string }) => e.id)).toEqual([a.id]);
    // SMTP keeps the client's own Message-ID as an alias of the relay's.
    await relay.ctx.store.transaction((tx) => tx.outbox.addAlias('<from-thunderbird@laptop.corp.example>', a.id));
    expect((await list(ic, `?messageId=${encodeURIComponent('<from-thunderbird@laptop.corp.example>')}`)).body.emails.map((e: { id: string }) => e.id)).toEqual([a.id]);
    expect((await list(ic, `?messageId=${encodeURIComponent('<nope@corp.example>')}`)).body).toEqual({ emails: [] });
    // Someone else's email is not found by its Message-ID either.
    expect((await list(sec, `?messageId=${encodeURIComponent(a.messageId)}`)).body).toEqual({ emails: [] });
  });

  it('refuses a malformed query with 400: limit out of range, a cursor it never gave, a bad Message-ID, an unknown parameter', async () => {
    for (const query of ['?limit=0', '?limit=1001', '?limit=x', '?cursor=bm90LWpzb24', '?cursor=' + Buffer.from('["a"]').toString('base64url'), '?messageId=plain', '?foo=1']) {
      const res = await list(ic, query);
      expect(res.status, query).toBe(400);
      expect(res.body.error.code, query).toBe('invalid_request');
    }
  });

  it('summarises the copies: a cancelled copy and a queued one make the email queued; each copy is listed', async () => {
    const email = await send(ic, { to: ['sec@corp.example'], text: 'x' });
    const row = (await relay.ctx.store.outbox.deliveriesOf(email.id))[0]!;
    await relay.ctx.store.transaction((tx) => tx.outbox.markRetry(row.id, '451 try later', new Date(relay.clock.now().getTime() + 60_000), null));
    const view = (await relay.request.get(`/v1/incidents/${codename}/emails/${email.id}`).set(auth(ic))).body;
    expect(view).toMatchObject({ status: 'queued', attempts: 1, lastError: '451 try later', deliveries: [{ recipients: ['sec@corp.example'], status: 'queued', attempts: 1, lastError: '451 try later' }] });
  });
});
