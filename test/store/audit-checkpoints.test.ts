/**
 * Signed checkpoints of the audit chain (issue 10 §16-17), on both backends.
 * The attack of the issue, done as an attacker with the database would: drop
 * the append-only triggers, erase a Bcc recipient from an email.decision,
 * re-hash every later event so the chain itself is consistent, restore the
 * triggers. The chain alone still verifies; the signed checkpoint does not.
 */
import * as openpgp from 'openpgp';
import { afterEach, describe, expect, it } from 'vitest';
import { AuditVerifier, FULL_VERIFY_INTERVAL_MS, fullVerificationIfDue, checkpointText, createCheckpoint, signCheckpoint, type AuditReport, type CheckpointDeps } from '../../src/services/audit-checkpoints.js';
import { eventHash, type AuditRow } from '../../src/store/audit.js';
import type { AuditCheckpoint } from '../../src/store/checkpoints.js';
import type { Store } from '../../src/store/index.js';
import { BACKENDS, createTestRelay, type TestRelay } from '../helpers/relay.js';

const auth = (token: string) => ({ Authorization: `Bearer ${token}` });

let relay: TestRelay | undefined;
afterEach(async () => {
  await relay?.ctx.store.close();
  relay = undefined;
});

function depsOf(r: TestRelay): CheckpointDeps {
  return { store: r.ctx.store, relayKey: r.ctx.relayKey, now: r.clock.now, logger: r.ctx.logger };
}

/** A relay with an incident whose commander sent one message with a Bcc recipient; returns the email.decision's seq. */
async function withBccMessage(backend: (typeof BACKENDS)[number]): Promise<{ r: TestRelay; decisionSeq: number; codename: string; ic: string }> {
  relay = await createTestRelay({}, { backend });
  const r = relay;
  const ic = await r.tokenFor('ic@corp.example');
  const { body } = await r.request.post('/v1/incidents').set(auth(ic)).send({});
  const codename = body.codename as string;
  for (const who of ['sec', 'legal']) expect((await r.request.put(`/v1/incidents/${codename}/roster/${who}@corp.example`).set(auth(ic)).send({ name: who, role: 'security' })).status).toBe(201);
  const sent = await r.request.post(`/v1/incidents/${codename}/emails`).set(auth(ic)).send({ to: ['sec@corp.example'], bcc: ['legal@corp.example'], text: 'Rotate the keys.' });
  expect(sent.status).toBe(202);
  const decision = await r.ctx.store.sql.get<{ seq: number; data: string }>("SELECT seq, data FROM audit_events WHERE type = 'email.decision'");
  expect(JSON.parse(decision!.data)).toMatchObject({ recipients: { to: ['sec@corp.example'], bcc: ['legal@corp.example'] } });
  return { r, decisionSeq: decision!.seq, codename, ic };
}

const TRIGGERS: Record<'audit_events' | 'audit_checkpoints', string[]> = {
  audit_events: [
    "CREATE TRIGGER audit_events_no_update BEFORE UPDATE ON audit_events BEGIN SELECT RAISE(ABORT, 'audit_events is append-only'); END",
    "CREATE TRIGGER audit_events_no_delete BEFORE DELETE ON audit_events BEGIN SELECT RAISE(ABORT, 'audit_events is append-only'); END",
  ],
  audit_checkpoints: [
    "CREATE TRIGGER audit_checkpoints_no_update BEFORE UPDATE ON audit_checkpoints BEGIN SELECT RAISE(ABORT, 'audit_checkpoints is append-only'); END",
    "CREATE TRIGGER audit_checkpoints_no_delete BEFORE DELETE ON audit_checkpoints BEGIN SELECT RAISE(ABORT, 'audit_checkpoints is append-only'); END",
  ],
};

/** As an attacker with write access to the database: run `work` with the table's append-only triggers gone, then put them back. */
async function behindTheTriggers(store: Store, table: keyof typeof TRIGGERS, work: () => Promise<void>): Promise<void> {
  const { sql } = store;
  if (sql.dialect === 'postgres') {
    await sql.exec(`ALTER TABLE ${table} DISABLE TRIGGER USER`);
    await work();
    await sql.exec(`ALTER TABLE ${table} ENABLE TRIGGER USER`);
  } else {
    await sql.exec(`DROP TRIGGER ${table}_no_update; DROP TRIGGER ${table}_no_delete;`);
    await work();
    for (const create of TRIGGERS[table]) await sql.exec(create);
  }
  // Restored: the table refuses edits again, as if nothing had happened.
  await expect(sql.run(`DELETE FROM ${table} WHERE seq = (SELECT MAX(seq) FROM ${table})`)).rejects.toThrow(/append-only/);
}

/**
 * Edits event `seq`'s data with `edit` and re-hashes it and every later event, so the chain links again.
 * With `records`, the chain's own records of checkpoints (`audit.checkpoint` events) are rewritten to the new hashes too.
 * Returns the new hashes by seq.
 */
async function rewriteChain(store: Store, seq: number, edit: (data: Record<string, unknown>) => void, records = false): Promise<Map<number, string>> {
  const hashes = new Map<number, string>();
  await behindTheTriggers(store, 'audit_events', async () => {
    const rows = await store.sql.all<AuditRow>('SELECT * FROM audit_events WHERE seq >= ? ORDER BY seq', [seq]);
    let prev = rows[0]!.prev_hash;
    for (const row of rows) {
      const data = JSON.parse(row.data) as Record<string, unknown>;
      if (row.seq === seq) edit(data);
      if (records && row.type === 'audit.checkpoint' && hashes.has(data['seq'] as number)) data['hash'] = hashes.get(data['seq'] as number);
      const rewritten = { ...row, data: JSON.stringify(data) };
      const hash = eventHash(prev, rewritten);
      await store.sql.run('UPDATE audit_events SET data = ?, prev_hash = ?, hash = ? WHERE seq = ?', [rewritten.data, prev, hash, row.seq]);
      hashes.set(row.seq, hash);
      prev = hash;
    }
  });
  return hashes;
}

async function verifyOverHttp(r: TestRelay, query = ''): Promise<AuditReport> {
  const res = await r.request.get(`/v1/audit/verify${query}`).set(auth(r.admin));
  expect(res.status).toBe(200);
  return res.body as AuditReport;
}

async function signNow(r: TestRelay): Promise<AuditCheckpoint> {
  const outcome = await createCheckpoint(depsOf(r), new AuditVerifier(r.ctx));
  if (!('signed' in outcome)) throw new Error(`no checkpoint: ${JSON.stringify(outcome)}`);
  return outcome.signed;
}

describe.each(BACKENDS)('signed audit checkpoints (%s)', (backend) => {
  it('signs when due (5 minutes or 10,000 events), never an empty or idle chain, and records each checkpoint in the chain', async () => {
    relay = await createTestRelay({}, { backend });
    const r = relay;
    const deps = depsOf(r);
    const verifier = new AuditVerifier(r.ctx);
    expect(await createCheckpoint(deps, verifier)).toEqual({ skipped: 'empty' });

    const one = await r.ctx.store.audit.append({ type: 'test.event', actor: null, outcome: 'ok', data: { n: 1 } });
    const first = await createCheckpoint(deps, verifier);
    expect(first).toEqual({ signed: { seq: 1, hash: one.hash, at: r.clock.now().toISOString(), fingerprint: r.ctx.relayKey.fingerprint, signature: expect.stringMatching(/^-----BEGIN PGP SIGNATURE-----\n/) } });
    // The checkpoint is itself an audit event, in the same transaction.
    const head = await r.ctx.store.audit.head();
    expect(head).toMatchObject({ seq: 2, type: 'audit.checkpoint' });
    expect(JSON.parse((await r.ctx.store.sql.get<{ data: string }>('SELECT data FROM audit_events WHERE seq = 2'))!.data)).toEqual({ seq: 1, hash: (first as { signed: AuditCheckpoint }).signed.hash, fingerprint: r.ctx.relayKey.fingerprint });

    // Idle: nothing but the checkpoint's own record since, however long it has been.
    r.clock.advance(60 * 60_000);
    expect(await createCheckpoint(deps, verifier)).toEqual({ skipped: 'nothing_new' });

    await r.ctx.store.audit.append({ type: 'test.event', actor: null, outcome: 'ok', data: { n: 2 } });
    expect((await createCheckpoint(deps, verifier)) as object).toHaveProperty('signed.seq', 3);
    await r.ctx.store.audit.append({ type: 'test.event', actor: null, outcome: 'ok', data: { n: 3 } });
    r.clock.advance(5 * 60_000 - 1);
    expect(await createCheckpoint(deps, verifier)).toEqual({ skipped: 'not_due' });
    r.clock.advance(1);
    expect((await createCheckpoint(deps, verifier)) as object).toHaveProperty('signed.seq', 5);
    // By count: 4 events since the last checkpoint, its own record included (a small policy here,
    // 10,000 by default), make it due before the 5 minutes.
    for (let n = 0; n < 2; n++) await r.ctx.store.audit.append({ type: 'test.event', actor: null, outcome: 'ok', data: { n } });
    const byCount = { maxAgeMs: 5 * 60_000, maxEvents: 4 };
    expect(await createCheckpoint(deps, verifier, byCount)).toEqual({ skipped: 'not_due' });
    await r.ctx.store.audit.append({ type: 'test.event', actor: null, outcome: 'ok', data: { n: 3 } });
    expect((await createCheckpoint(deps, verifier, byCount)) as object).toHaveProperty('signed.seq', 9);

    const report = await verifyOverHttp(r);
    expect(report).toEqual({
      ok: true,
      events: 10,
      head: (await r.ctx.store.audit.head()).hash,
      from: 9,
      checkpoints: { signed: 4, verified: 4, latest: { seq: 9, hash: expect.stringMatching(/^[0-9a-f]{64}$/), at: r.clock.now().toISOString() } },
    });
    // A full pass records its outcome, which later answers carry.
    expect(await verifyOverHttp(r, '?full=true')).toEqual({ ...report, from: 0, lastFullVerification: { at: r.clock.now().toISOString(), ok: true, events: report.events } });
  });

  it('catches the rewrite of the issue: a Bcc recipient erased and the chain re-hashed, with the triggers restored', async () => {
    const { r, decisionSeq, codename, ic } = await withBccMessage(backend);
    const checkpoint = await signNow(r);
    expect(checkpoint.seq).toBeGreaterThanOrEqual(decisionSeq);
    // More happens after the checkpoint.
    expect((await r.request.put(`/v1/incidents/${codename}/roster/ops@corp.example`).set(auth(ic)).send({ name: 'ops', role: 'security' })).status).toBe(201);
    expect(await verifyOverHttp(r)).toMatchObject({ ok: true, from: checkpoint.seq, checkpoints: { signed: 1, verified: 1 } });

    await rewriteChain(r.ctx.store, decisionSeq, (data) => {
      (data['recipients'] as { bcc: string[] }).bcc = [];
    });
    const decision = await r.ctx.store.sql.get<{ data: string }>('SELECT data FROM audit_events WHERE seq = ?', [decisionSeq]);
    expect(JSON.parse(decision!.data)).toMatchObject({ recipients: { bcc: [] } });
    // The chain alone is fooled: it links from genesis to the head.
    expect(await r.ctx.store.audit.verify()).toMatchObject({ ok: true });

    for (const query of ['', '?full=true']) {
      const report = await verifyOverHttp(r, query);
      expect(report).toMatchObject({ ok: false, checkpoints: { signed: 1, verified: 0, failures: 1, failed: [{ seq: checkpoint.seq, reason: 'hash' }] } });
      expect(report.brokenAt).toBeUndefined();
      expect(report.checkpoints.latest).toBeUndefined();
    }
    // And the relay signs nothing more over a chain that does not verify.
    r.clock.advance(5 * 60_000);
    expect(await createCheckpoint(depsOf(r), new AuditVerifier(r.ctx))).toMatchObject({ refused: { ok: false } });
    expect(await r.ctx.store.checkpoints.list(0, 10)).toHaveLength(1);
  });

  it('rejects a forged checkpoint: the rewrite re-hashed and re-"signed" with another key', async () => {
    const { r, decisionSeq } = await withBccMessage(backend);
    const checkpoint = await signNow(r);
    // A careful attacker: the chain's record of the checkpoint is rewritten to match the forgery too.
    const hashes = await rewriteChain(
      r.ctx.store,
      decisionSeq,
      (data) => {
        (data['recipients'] as { bcc: string[] }).bcc = [];
      },
      true,
    );
    const { privateKey: otherKey } = await openpgp.generateKey({ type: 'ecc', curve: 'curve25519Legacy', userIDs: [{ name: 'incident-relay', email: 'relay@corp.example' }], date: new Date(Date.now() - 86_400_000), format: 'object' });
    const otherFingerprint = otherKey.getFingerprint().toUpperCase();
    for (const fingerprint of [r.ctx.relayKey.fingerprint, otherFingerprint]) {
      const forged = { seq: checkpoint.seq, hash: hashes.get(checkpoint.seq)!, at: checkpoint.at, fingerprint };
      const signature = await signCheckpoint(otherKey, forged);
      await behindTheTriggers(r.ctx.store, 'audit_checkpoints', async () => {
        expect(await r.ctx.store.sql.run('UPDATE audit_checkpoints SET hash = ?, fingerprint = ?, signature = ? WHERE seq = ?', [forged.hash, fingerprint, signature, forged.seq])).toBe(1);
      });
      // The forgery is consistent with the rewritten chain: only the signature gives it away.
      expect((await r.ctx.store.checkpoints.listAgainstChain(0, 10))[0]).toMatchObject({ hash: forged.hash, chainHash: forged.hash });
      for (const query of ['', '?full=true']) {
        expect(await verifyOverHttp(r, query)).toMatchObject({ ok: false, checkpoints: { signed: 1, verified: 0, failed: [{ seq: checkpoint.seq, reason: 'signature' }] } });
      }
    }
  });

  it('notices events cut off below a checkpoint, and a deleted checkpoint that the chain records', async () => {
    relay = await createTestRelay({}, { backend });
    const r = relay;
    for (let n = 0; n < 3; n++) await r.ctx.store.audit.append({ type: 'test.event', actor: null, outcome: 'ok', data: { n } });
    const early = await signNow(r); // seq 3, recorded at 4
    await r.ctx.store.audit.append({ type: 'test.event', actor: null, outcome: 'ok', data: { n: 4 } });
    r.clock.advance(5 * 60_000);
    const late = await signNow(r); // seq 5, recorded at 6
    expect([early.seq, late.seq]).toEqual([3, 5]);

    // The newest checkpoint deleted: the chain's own record of it (in the recomputed tail) still names it.
    await behindTheTriggers(r.ctx.store, 'audit_checkpoints', async () => {
      await r.ctx.store.sql.run('DELETE FROM audit_checkpoints WHERE seq = ?', [late.seq]);
    });
    expect(await verifyOverHttp(r)).toMatchObject({ ok: false, from: 3, checkpoints: { signed: 1, verified: 1, failed: [{ seq: 5, reason: 'not_stored', event: 6 }] } });

    // The chain cut back below the remaining checkpoint: its event is gone.
    await behindTheTriggers(r.ctx.store, 'audit_events', async () => {
      await r.ctx.store.sql.run('DELETE FROM audit_events WHERE seq >= 3');
    });
    expect(await verifyOverHttp(r)).toMatchObject({ ok: false, events: 2, checkpoints: { signed: 1, verified: 0, failed: [{ seq: 3, reason: 'missing_event' }] } });
  });

  it('finds an edit before the newest checkpoint that leaves the hashes alone with ?full=true; the default recomputes only the tail', async () => {
    const { r, decisionSeq } = await withBccMessage(backend);
    const checkpoint = await signNow(r);
    await behindTheTriggers(r.ctx.store, 'audit_events', async () => {
      const row = await r.ctx.store.sql.get<{ data: string }>('SELECT data FROM audit_events WHERE seq = ?', [decisionSeq]);
      const data = JSON.parse(row!.data) as { recipients: { bcc: string[] } };
      data.recipients.bcc = [];
      await r.ctx.store.sql.run('UPDATE audit_events SET data = ? WHERE seq = ?', [JSON.stringify(data), decisionSeq]);
    });
    // The documented limit of the default (SECURITY.md): events before the checkpoint are not recomputed.
    expect(await verifyOverHttp(r)).toMatchObject({ ok: true, from: checkpoint.seq });
    expect(await verifyOverHttp(r, '?full=true')).toMatchObject({ ok: false, brokenAt: decisionSeq, from: 0, checkpoints: { signed: 1, verified: 1 } });
    // From then on the default answer carries that finding and fails closed.
    expect(await verifyOverHttp(r)).toMatchObject({ ok: false, from: checkpoint.seq, lastFullVerification: { ok: false, brokenAt: decisionSeq } });
  });

  it('the checkpoint job recomputes the whole chain once a day, and the default verify reports what it found', async () => {
    const { r, decisionSeq } = await withBccMessage(backend);
    const verifier = new AuditVerifier(r.ctx);
    await signNow(r);
    // A clean first pass, stored; not due again within the day.
    expect(await fullVerificationIfDue(depsOf(r), verifier)).toMatchObject({ ok: true });
    expect(await fullVerificationIfDue(depsOf(r), verifier)).toBeUndefined();
    await behindTheTriggers(r.ctx.store, 'audit_events', async () => {
      const row = await r.ctx.store.sql.get<{ data: string }>('SELECT data FROM audit_events WHERE seq = ?', [decisionSeq]);
      const data = JSON.parse(row!.data) as { recipients: { bcc: string[] } };
      data.recipients.bcc = [];
      await r.ctx.store.sql.run('UPDATE audit_events SET data = ? WHERE seq = ?', [JSON.stringify(data), decisionSeq]);
    });
    expect(await verifyOverHttp(r)).toMatchObject({ ok: true, lastFullVerification: { ok: true } });
    r.clock.advance(FULL_VERIFY_INTERVAL_MS + 1);
    expect(await fullVerificationIfDue(depsOf(r), verifier)).toMatchObject({ ok: false, brokenAt: decisionSeq });
    expect(await verifyOverHttp(r)).toMatchObject({ ok: false, lastFullVerification: { ok: false, brokenAt: decisionSeq } });
  });

  it('runs the full pass whatever the stored outcome says: a time in the future, a row that is not the relay\'s, or one kept fresh by someone else', async () => {
    const { r, decisionSeq } = await withBccMessage(backend);
    const verifier = new AuditVerifier(r.ctx);
    await signNow(r);
    expect(await fullVerificationIfDue(depsOf(r), verifier)).toMatchObject({ ok: true });
    await behindTheTriggers(r.ctx.store, 'audit_events', async () => {
      await r.ctx.store.sql.run("UPDATE audit_events SET data = '{}' WHERE seq = ?", [decisionSeq]);
    });
    // Dated far ahead, a clean outcome would otherwise never be due again.
    await r.ctx.store.settings.put('audit_full_verification', JSON.stringify({ at: '2999-01-01T00:00:00.000Z', ok: true, events: 1 }));
    expect(await fullVerificationIfDue(depsOf(r), verifier)).toMatchObject({ ok: false, brokenAt: decisionSeq });
    // Not JSON, or not its shape: reported as a failed pass, and the next pass is due at once.
    for (const row of ['not json', '{"ok":true}', '{"at":"2999-01-01T00:00:00.000Z","ok":true,"events":1}', '{"at":"yesterday","ok":true,"events":1}']) {
      await r.ctx.store.settings.put('audit_full_verification', row);
      expect((await verifyOverHttp(r)).lastFullVerification).toEqual({ at: '1970-01-01T00:00:00.000Z', ok: false, events: 0 });
    }
    expect(await fullVerificationIfDue(depsOf(r), verifier)).toMatchObject({ ok: false, brokenAt: decisionSeq });
    // Rewritten as clean "just now" every time it is looked at: this process still runs its own pass once a day.
    const keepFresh = () => r.ctx.store.settings.put('audit_full_verification', JSON.stringify({ at: r.clock.now().toISOString(), ok: true, events: 1 }));
    await keepFresh();
    expect(await fullVerificationIfDue(depsOf(r), verifier)).toBeUndefined();
    r.clock.advance(FULL_VERIFY_INTERVAL_MS - 1);
    await keepFresh();
    expect(await fullVerificationIfDue(depsOf(r), verifier)).toBeUndefined();
    r.clock.advance(1);
    await keepFresh();
    expect(await fullVerificationIfDue(depsOf(r), verifier)).toMatchObject({ ok: false, brokenAt: decisionSeq });
  });

  it('holds a checkpoint signed by a relay whose clock runs ahead of this one', async () => {
    const { r } = await withBccMessage(backend);
    const ahead = { ...depsOf(r), now: () => new Date(r.clock.now().getTime() + 10 * 60_000) };
    const outcome = await createCheckpoint(ahead, new AuditVerifier({ ...r.ctx, now: ahead.now }));
    expect(outcome).toHaveProperty('signed');
    expect(await new AuditVerifier(r.ctx).verify()).toMatchObject({ ok: true, checkpoints: { signed: 1, verified: 1 } });
  });

  it('refuses malformed fields before any signature is checked, so no field can move text between lines', async () => {
    relay = await createTestRelay({}, { backend });
    const r = relay;
    await r.ctx.store.audit.append({ type: 'test.event', actor: null, outcome: 'ok', data: {} });
    const checkpoint = await signNow(r);
    await behindTheTriggers(r.ctx.store, 'audit_checkpoints', async () => {
      await r.ctx.store.sql.run('UPDATE audit_checkpoints SET at = ? WHERE seq = ?', [`${checkpoint.at}\nseq: 99`, checkpoint.seq]);
    });
    expect(await verifyOverHttp(r)).toMatchObject({ ok: false, checkpoints: { failed: [{ seq: checkpoint.seq, reason: 'malformed' }] } });
  });
});

describe('the verify route', () => {
  it('is for admins, and refuses an unknown query', async () => {
    relay = await createTestRelay();
    const r = relay;
    const ic = await r.tokenFor('ic@corp.example');
    expect((await r.request.get('/v1/audit/verify').set(auth(ic))).status).toBe(403);
    const bad = await r.request.get('/v1/audit/verify?full=yes').set(auth(r.admin));
    expect(bad.status).toBe(400);
    expect(bad.body.error.code).toBe('invalid_request');
  });

  it('signs exactly the text it says', () => {
    expect(checkpointText({ seq: 12, hash: 'a'.repeat(64), at: '2026-01-02T03:04:05.678Z', fingerprint: 'B'.repeat(40) })).toBe(
      `incident-relay audit checkpoint\nrelay-key: ${'B'.repeat(40)}\nseq: 12\nhash: ${'a'.repeat(64)}\nat: 2026-01-02T03:04:05.678Z`,
    );
  });
});
