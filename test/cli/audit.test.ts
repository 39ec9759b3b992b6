/**
 * `incident-relay audit verify` and `audit heads` against a real relay
 * (subprocess, real HTTP, real SQLite, real gpg): the signed heads export as
 * JSON and as clearsigned texts gpg verifies with the relay key, and a chain
 * rewritten behind the relay's back makes `verify` name the checkpoint that no
 * longer holds and exit 1.
 */
import fs from 'node:fs';
import path from 'node:path';
import { pino } from 'pino';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { AuditVerifier, createCheckpoint } from '../../src/services/audit-checkpoints.js';
import { createGpgHome, type GpgHome } from '../helpers/gpg.js';
import { ADMIN_TOKEN, buildCli, runCli, startCliRelay, tempHome, type CliRelay } from './harness.js';

let cli: CliRelay;
let home: string;
let gpg: GpgHome;

beforeAll(async () => {
  buildCli();
  cli = await startCliRelay();
  home = tempHome();
  gpg = await createGpgHome();
}, 240_000);

afterAll(async () => {
  await cli?.stop();
  await gpg?.cleanup();
  fs.rmSync(home, { recursive: true, force: true });
});

const admin = (args: string[]) => runCli(['--relay', cli.url, ...args], { home, env: { INCIDENT_RELAY_TOKEN: ADMIN_TOKEN } });

async function signCheckpoint(): Promise<number> {
  const { ctx } = cli.relay;
  const deps = { store: ctx.store, relayKey: ctx.relayKey, now: ctx.now, logger: pino({ level: 'silent' }) };
  const outcome = await createCheckpoint(deps, new AuditVerifier(deps), { maxAgeMs: 0, maxEvents: 1 });
  if (!('signed' in outcome)) throw new Error(`no checkpoint: ${JSON.stringify(outcome)}`);
  return outcome.signed.seq;
}

describe('audit heads and verify', () => {
  it('exports the signed heads as JSON and as texts gpg verifies; verify names a checkpoint that no longer holds and exits 1', async () => {
    expect((await admin(['incidents'])).code).toBe(0);
    const seq = await signCheckpoint();

    const json = await admin(['audit', 'heads']);
    expect(json.code).toBe(0);
    const heads = JSON.parse(json.stdout) as { checkpoints: Array<{ seq: number; fingerprint: string }> };
    expect(heads.checkpoints.map((c) => [c.seq, c.fingerprint])).toEqual([[seq, cli.relay.ctx.relayKey.fingerprint]]);

    const file = path.join(home, 'heads.txt');
    const text = await admin(['audit', 'heads', '--text', '-o', file]);
    expect(text).toEqual({ code: 0, stdout: '', stderr: `Wrote the signed heads to ${file}.\n` });
    expect(fs.statSync(file).mode & 0o777).toBe(0o600);
    await gpg.importKey(cli.relay.ctx.relayKey.publicArmored);
    const verified = await gpg.run(['--status-fd', '1', '--verify', file]);
    expect(verified.stdout.toString()).toContain(`VALIDSIG ${cli.relay.ctx.relayKey.fingerprint}`);
    expect(fs.readFileSync(file, 'utf8')).toContain(`seq: ${seq}`);

    const ok = await admin(['audit', 'verify']);
    expect(ok.code).toBe(0);
    expect(ok.stdout).toMatch(/signed checkpoints: +1 of 1 verified\n/);

    // Someone with write access drops the trigger, edits the first event, puts the trigger back.
    const { sql } = cli.relay.ctx.store;
    await sql.exec('DROP TRIGGER audit_events_no_update');
    await sql.run("UPDATE audit_events SET hash = ? WHERE seq = 1", ['0'.repeat(64)]);
    await sql.exec("CREATE TRIGGER audit_events_no_update BEFORE UPDATE ON audit_events BEGIN SELECT RAISE(ABORT, 'audit_events is append-only'); END");
    const broken = await admin(['audit', 'verify']);
    expect(broken.code).toBe(1);
    expect(broken.stdout).toMatch(new RegExp(`checkpoint ${seq}: +FAILED: hash\\n`));
    expect(broken.stdout).toMatch(/^chain: +BROKEN at event 1\n/);
    expect(broken.stdout).toMatch(/signed checkpoints: +0 of 1 verified\n/);
    expect(broken.stderr).toMatch(/^error audit_broken: The audit chain does not verify from event 1 on: an event or a checkpoint was edited/);
    expect(broken.stderr).toContain('export the signed heads (incident-relay audit heads)');
  }, 120_000);
});
