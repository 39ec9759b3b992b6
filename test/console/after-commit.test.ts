/**
 * A console action that has committed is reported as done, even when the
 * store then refuses to keep its one-shot result for the next page (a disk
 * that fills up between the two writes, a database that fails over): the
 * email, the nudge and the announcement were sent, and a page that said
 * "accepted nothing; try again" (or "Internal error; nothing more was done")
 * would invite a second send with a fresh idempotency key. On both
 * backends, with the store's refusal made by a trigger on the flash column.
 */
import { Writable } from 'node:stream';
import type { Response } from 'supertest';
import * as openpgp from 'openpgp';
import { pino } from 'pino';
import { afterAll, beforeAll, beforeEach, describe, expect, it } from 'vitest';
import type { Store } from '../../src/store/index.js';
import { BACKENDS, createTestRelay, type TestRelay } from '../helpers/relay.js';

const HOST = 'relay.test:8080';
const ORIGIN = `http://${HOST}`;
const auth = (token: string) => ({ Authorization: `Bearer ${token}` });
const today = new Date().toISOString().slice(0, 10);

/** Makes the store refuse every write of a console result, as a full disk or a read-only failover would; other writes go through. */
async function refuseFlashWrites(store: Store): Promise<void> {
  if (store.dialect === 'postgres') {
    // 25006 read_only_sql_transaction: what a failed-over, read-only primary answers (the relay calls it `unavailable`).
    await store.sql.exec(`CREATE FUNCTION test_refuse_flash() RETURNS trigger LANGUAGE plpgsql AS $$ BEGIN RAISE EXCEPTION 'read-only' USING ERRCODE = '25006'; END $$;
      CREATE TRIGGER test_refuse_flash BEFORE UPDATE OF flash ON console_sessions FOR EACH ROW WHEN (NEW.flash IS NOT NULL) EXECUTE FUNCTION test_refuse_flash();`);
  } else {
    await store.sql.exec("CREATE TRIGGER test_refuse_flash BEFORE UPDATE OF flash ON console_sessions WHEN NEW.flash IS NOT NULL BEGIN SELECT RAISE(ABORT, 'read-only'); END;");
  }
}

/** What a page must not say about an action that was carried out. */
function expectNoRefusal(res: Response): void {
  expect(res.status, res.text.slice(0, 600)).toBe(200);
  for (const wrong of ['Refused', 'accepted nothing', 'nothing was sent', 'Nothing was sent', 'nothing more was done', 'try again']) expect(res.text).not.toContain(wrong);
  expect(res.text).toContain('<h1>Done</h1>');
}

describe.each(BACKENDS)('a console action whose result the store will not keep, on %s', (backend) => {
  let relay: TestRelay;
  let ic: string;
  let cookie: string;
  let codename: string;
  const logged: Array<Record<string, unknown>> = [];

  const post = (p: string) => relay.request.post(p).set('Host', HOST).set('Origin', ORIGIN).set('Cookie', cookie);
  const count = async (sql: string): Promise<number> => Number((await relay.ctx.store.sql.get<{ n: number | string }>(sql))!.n);

  beforeAll(async () => {
    relay = await createTestRelay({}, { backend });
    // The relay's own logger, writing where the test can read it.
    relay.ctx.logger = pino(
      { level: 'info' },
      new Writable({
        write(chunk: Buffer, _encoding, done) {
          logged.push(JSON.parse(chunk.toString('utf8')) as Record<string, unknown>);
          done();
        },
      }),
    );
    ic = await relay.tokenFor('ic@corp.example');
    const signedIn = await relay.request.post('/console/sign-in').set('Host', HOST).set('Origin', ORIGIN).type('form').send({ token: ic });
    cookie = ([] as string[]).concat(signedIn.headers['set-cookie'] ?? []).find((c) => c.startsWith('relay_console='))!.split(';')[0]!;
    codename = (await relay.request.post('/v1/incidents').set(auth(ic)).send({})).body.codename as string;
    expect((await relay.request.put(`/v1/incidents/${codename}/roster/sec@corp.example`).set(auth(ic)).send({ name: 'Sec', role: 'security', phone: '+15555550100' })).status).toBe(201);
    await refuseFlashWrites(relay.ctx.store);
  }, 60_000);
  afterAll(async () => {
    await relay.ctx.store.close();
  });
  beforeEach(() => {
    logged.length = 0;
  });

  /** The log says a result was not kept, by its kind, and holds none of what it said. */
  function expectLogged(kind: string, secrets: string[]): void {
    const lines = logged.filter((l) => l['msg'] === 'could not keep a console result for the next page; shown at once instead');
    expect(lines).toHaveLength(1);
    expect(lines[0]).toMatchObject({ flash: kind });
    for (const secret of secrets) expect(JSON.stringify(logged)).not.toContain(secret);
  }

  it('an email that was queued is shown as queued, and the same form again sends nothing more', async () => {
    const send = () => post(`/console/incidents/${codename}/emails`).field('idempotencyKey', 'compose-after-commit').field('to', 'sec@corp.example').field('subject', 'Rotate keys').field('text', 'Rotate now.');
    const res = await send();
    expectNoRefusal(res);
    expect(res.text).toContain('<h2 id="flash-title">Email queued, not encrypted (all recipients are inside the company)</h2>');
    expect(res.text).toContain('<p>To sec@corp.example. Message-ID <code>');
    expect(res.text).toContain(`href="/console/incidents/${codename}/emails?messageId=`);
    expect(await count("SELECT COUNT(*) AS n FROM emails WHERE sender = 'ic@corp.example'")).toBe(1);
    expectLogged('email', ['sec@corp.example', 'Rotate']);
    // What a reload posts: the same idempotency key, answered from the relay's record.
    expectNoRefusal(await send());
    expect(await count("SELECT COUNT(*) AS n FROM emails WHERE sender = 'ic@corp.example'")).toBe(1);
  });

  it('a nudge that was queued is shown with who got it', async () => {
    const res = await post(`/console/incidents/${codename}/sms`).type('form').send({ scope: 'roster', idempotencyKey: 'nudge-after-commit' });
    expectNoRefusal(res);
    expect(res.text).toContain('<h2 id="flash-title">SMS nudge: 1 queued, 1 skipped</h2>');
    expect(await count("SELECT COUNT(*) AS n FROM deliveries WHERE channel = 'sms'")).toBe(1);
    expectLogged('nudge', ['sec@corp.example', '+15555550100']);
  });

  it('an announcement that was sent is shown as sent', async () => {
    const created = await relay.request
      .post(`/v1/incidents/${codename}/announcements`)
      .set(auth(ic))
      .send({ kind: 'internal', title: `Update for all staff, ${today}`, text: 'Please reset your password today.', audience: { addresses: ['staff@corp.example'] } });
    expect(created.status).toBe(201);
    const id = created.body.id as string;
    expect((await relay.request.post(`/v1/incidents/${codename}/announcements/${id}/check`).set(auth(ic)).send()).status).toBe(200);
    expect((await relay.request.post(`/v1/incidents/${codename}/internal-source`).set(auth(ic)).send({ ruledOut: true, note: 'Forensics report FR-7.' })).status).toBe(200);
    const res = await post(`/console/incidents/${codename}/announcements/${id}/send`).type('form').send({ idempotencyKey: 'announce-after-commit' });
    expectNoRefusal(res);
    expect(res.text).toMatch(/<p>Sent: 1 copies queued \(0 encrypted\), Message-ID &lt;[^&]+@corp\.example&gt;\.<\/p>/);
    expect((await relay.request.get(`/v1/incidents/${codename}/announcements/${id}`).set(auth(ic))).body.state).toBe('sent');
    expectLogged('notice', ['staff@corp.example']);
  });

  it('a key that was withdrawn is reported withdrawn when the key cannot be read back afterwards', async () => {
    const { publicKey } = await openpgp.generateKey({ userIDs: [{ email: 'counsel@lawfirm.example' }], date: new Date(relay.clock.now().getTime() - 60_000), format: 'armored' });
    expect((await relay.request.put(`/v1/incidents/${codename}/roster/counsel@lawfirm.example`).set(auth(ic)).send({ name: 'Counsel', role: 'external', publicKey })).status).toBe(201);
    // The read after the change fails, as a store failing over between the two would.
    const keys = relay.ctx.keys;
    const view = keys.view.bind(keys);
    keys.view = () => Promise.reject(new Error('connection terminated'));
    try {
      const res = await post(`/console/incidents/${codename}/roster/counsel%40lawfirm.example/key/withdraw`);
      expectNoRefusal(res);
      expect(res.text).toContain('Withdrew the key given for counsel@lawfirm.example in this incident.');
    } finally {
      keys.view = view;
    }
    // Withdrawn: no key holds for counsel in this incident any more.
    expect(await keys.view('counsel@lawfirm.example', (await relay.ctx.store.incidents.byCodename(codename))!.id)).toBeUndefined();
  });
});
