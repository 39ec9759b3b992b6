import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { pino } from 'pino';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { createGpgHome, type GpgHome } from '../helpers/gpg.js';
import { createTestRelay } from '../helpers/relay.js';

let gpg: GpgHome;
beforeAll(async () => {
  gpg = await createGpgHome();
}, 60_000);
afterAll(async () => {
  await gpg.cleanup();
});

describe('RELAY_KEYS_DIR', () => {
  it('files each usable key under the emails of its user IDs and skips the rest', async () => {
    const dir = fs.mkdtempSync(path.join(os.tmpdir(), 'relay-keys-'));
    const counsel = await gpg.generateKey('counsel@lawfirm.example', 'Counsel');
    // A second user ID on the same key: filed under both addresses.
    await gpg.run(['--quick-add-uid', counsel.fingerprint, 'Counsel Desk <desk@lawfirm.example>']);
    const weak = await gpg.generateKey('weak@lawfirm.example', 'Weak', { algo: 'rsa1024' });
    fs.writeFileSync(path.join(dir, 'counsel.asc'), await gpg.exportPublic(counsel.fingerprint));
    fs.writeFileSync(path.join(dir, 'weak.asc'), weak.armoredPublic);
    fs.writeFileSync(path.join(dir, 'garbage.asc'), 'not a key');
    fs.writeFileSync(path.join(dir, 'ignored.txt'), 'not an .asc file');

    const relay = await createTestRelay();
    const result = await relay.ctx.keys.loadDirectory(dir, pino({ level: 'silent' }));
    expect(result).toEqual({ filed: 2, skipped: 2 });
    expect((await relay.ctx.keys.get('counsel@lawfirm.example'))?.fingerprint).toBe(counsel.fingerprint);
    expect((await relay.ctx.keys.get('desk@lawfirm.example'))?.fingerprint).toBe(counsel.fingerprint);
    expect(await relay.ctx.keys.get('weak@lawfirm.example')).toBeUndefined();
    // Loading the same directory again changes nothing.
    expect(await relay.ctx.keys.loadDirectory(dir, pino({ level: 'silent' }))).toEqual({ filed: 0, skipped: 2 });
  });

  it('never rolls back a key its owner uploaded through the API', async () => {
    const dir = fs.mkdtempSync(path.join(os.tmpdir(), 'relay-keys-'));
    const [old, current] = await Promise.all([gpg.generateKey('ir@lawfirm.example', 'Old'), gpg.generateKey('ir@lawfirm.example', 'Current')]);
    fs.writeFileSync(path.join(dir, 'ir.asc'), old.armoredPublic);
    const relay = await createTestRelay();
    await relay.ctx.keys.loadDirectory(dir, pino({ level: 'silent' }));
    expect((await relay.ctx.keys.get('ir@lawfirm.example'))?.fingerprint).toBe(old.fingerprint);
    await relay.ctx.keys.put('ir@lawfirm.example', current.armoredPublic, 'api', 'ir@lawfirm.example');
    // The next start loads the directory again.
    expect(await relay.ctx.keys.loadDirectory(dir, pino({ level: 'silent' }))).toEqual({ filed: 0, skipped: 0 });
    expect((await relay.ctx.keys.get('ir@lawfirm.example'))?.fingerprint).toBe(current.fingerprint);
  });
});
