/**
 * "Bodies of delivered messages are purged" (SPEC §6) must hold for someone
 * who reads the database file itself (a backup, a stolen disk), not only for
 * SQL: a body set to NULL must not survive in the file's free pages.
 */
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { afterEach, describe, expect, it } from 'vitest';
import { DeliveryError } from '../../src/channels/channel.js';
import { createOutboxDirChannel } from '../../src/channels/email/outbox-dir.js';
import { DeliveryWorker } from '../../src/workers/delivery.js';
import { createTestRelay } from '../helpers/relay.js';

const dirs: string[] = [];
afterEach(() => {
  for (const dir of dirs.splice(0)) fs.rmSync(dir, { recursive: true, force: true });
});

function tempDir(prefix: string): string {
  const dir = fs.mkdtempSync(path.join(os.tmpdir(), prefix));
  dirs.push(dir);
  return dir;
}

// SQLite only: the test reads the database file's bytes (a backup, a stolen
// disk), which is what SQLite's secure_delete protects; PostgreSQL's files are
// the server's, outside the relay.
describe('purged bodies', () => {
  it.each(['sent', 'failed'])('leave no trace of a %s message in the database file', async (outcome) => {
    const dataDir = tempDir('relay-purge-');
    const file = path.join(dataDir, 'relay.db');
    const relay = await createTestRelay({ dataDir }, { file, backend: 'sqlite' });
    const ic = await relay.tokenFor('ic@corp.example');
    const auth = { Authorization: `Bearer ${ic}` };
    const codename = (await relay.request.post('/v1/incidents').set(auth).send({})).body.codename as string;
    await relay.request.put(`/v1/incidents/${codename}/roster/sec@corp.example`).set(auth).send({ name: 'Sec', role: 'security' });
    // Plain internal mail: the one kind of body stored in clear until it is delivered.
    // Short enough that quoted-printable never folds it.
    const canary = 'PrivilegedIncidentDetail42';
    const res = await relay.request.post(`/v1/incidents/${codename}/emails`).set(auth).send({ to: ['sec@corp.example'], text: `${canary}\n${'filler '.repeat(2000)}` });
    expect(res.status).toBe(202);

    const channel =
      outcome === 'sent'
        ? createOutboxDirChannel(tempDir('relay-purge-outbox-'))
        : { send: () => Promise.reject(new DeliveryError('upstream refused: 550 mailbox unavailable', false)) };
    await new DeliveryWorker(relay.ctx, { channels: { email: channel } }).drain();
    const row = await relay.ctx.store.sql.get('SELECT status, body FROM deliveries WHERE email_id = ?', [res.body.id]);
    expect(row).toEqual({ status: outcome, body: null });

    // Fold the WAL into the main file, as SQLite does on its own, then read the bytes.
    await relay.ctx.store.sql.exec('PRAGMA wal_checkpoint(TRUNCATE)');
    await relay.ctx.store.close();
    const bytes = Buffer.concat([file, `${file}-wal`].filter((f) => fs.existsSync(f)).map((f) => fs.readFileSync(f)));
    expect(bytes.includes(canary)).toBe(false);
  });
});
