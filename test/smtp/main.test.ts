/**
 * The built relay (`node dist/main.js`) with SMTP submission wired in by
 * main.ts: the banner prints the listen address and the certificate
 * fingerprint, the generated key is private and reused across restarts, and a
 * mail client pinning that certificate submits a message that lands in the
 * local outbox.
 */
import fs from 'node:fs';
import path from 'node:path';
import { simpleParser } from 'mailparser';
import nodemailer from 'nodemailer';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { buildDist } from '../helpers/build.js';
import { BANNER_END, bannerPorts, killRelayProcesses, relayEnv, startRelayProcess, stopRelayProcess, tempDirs, waitForOutput } from '../helpers/process.js';

const dirs = tempDirs();

beforeAll(() => {
  buildDist();
}, 240_000);

afterAll(() => {
  killRelayProcesses();
  dirs.cleanup();
});

const FINGERPRINT = /tls certificate SHA-256: ((?:[0-9A-F]{2}:){31}[0-9A-F]{2}) \(self-signed, (\S+)\)/;

describe('SMTP submission in the started relay', () => {
  it('prints the address and fingerprint, keeps the key private, reuses it, and accepts a pinned client', async () => {
    const dataDir = path.join(dirs.make('relay-smtp-main-'), 'data');
    const cwd = dirs.make('relay-smtp-cwd-');
    const env = relayEnv({ RELAY_DATA_DIR: dataDir, RELAY_HTTP_PORT: '0', RELAY_SMTP_PORT: '0', RELAY_INTERNAL_DOMAINS: 'corp.example' });

    const first = startRelayProcess(env, cwd);
    await waitForOutput(first, BANNER_END, 60_000);
    const { stdout } = first.output();
    const { http: httpPort, smtp: smtpPort } = bannerPorts(stdout);
    expect(stdout).toContain(`smtp submission: 127.0.0.1:${smtpPort} (STARTTLS`);
    const [, fingerprint, certPath] = FINGERPRINT.exec(stdout) ?? [];
    expect(certPath).toBe(path.join(dataDir, 'smtp-tls-cert.pem'));
    const cert = fs.readFileSync(certPath!, 'utf8');
    expect(new (await import('node:crypto')).X509Certificate(cert).fingerprint256).toBe(fingerprint);
    expect(fs.statSync(path.join(dataDir, 'smtp-tls-key.pem')).mode & 0o777).toBe(0o600);
    const admin = /Bootstrap admin token[^\n]*\n\s+(\S+)\n/.exec(stdout)?.[1] ?? '';

    // A responder with a token, on an incident with one more member.
    const api = (p: string, token: string, body?: unknown, method = 'POST') =>
      fetch(`http://127.0.0.1:${httpPort}${p}`, { method, headers: { authorization: `Bearer ${token}`, 'content-type': 'application/json' }, body: JSON.stringify(body) });
    const issued = (await (await api('/v1/tokens', admin, { email: 'ic@corp.example', role: 'responder' })).json()) as { token: string };
    expect((await api('/v1/incidents', issued.token, { codename: 'amber-otter' })).status).toBe(201);
    expect((await api('/v1/incidents/amber-otter/roster/sec@corp.example', issued.token, { name: 'Sec', role: 'security' }, 'PUT')).status).toBe(201);

    const transport = nodemailer.createTransport({ host: '127.0.0.1', port: smtpPort, secure: false, requireTLS: true, auth: { user: 'ic@corp.example', pass: issued.token }, tls: { ca: cert, servername: 'localhost' } });
    try {
      const info = await transport.sendMail({ from: 'ic@corp.example', to: 'sec@corp.example', subject: 'Rotate credentials', text: 'Now, please.' });
      expect(info.response).toMatch(/^250 2\.0\.0 Ok: queued as </);
    } finally {
      transport.close();
    }
    const outbox = path.join(dataDir, 'outbox');
    const deadline = Date.now() + 10_000;
    while (!(fs.existsSync(outbox) && fs.readdirSync(outbox).some((f) => f.endsWith('.eml'))) && Date.now() < deadline) await new Promise((r) => setTimeout(r, 50));
    const eml = fs.readdirSync(outbox).find((f) => f.endsWith('.eml'))!;
    const parsed = await simpleParser(fs.readFileSync(path.join(outbox, eml)));
    expect(parsed.subject).toBe('Attorney Work Project');
    expect(parsed.text).toMatch(/^Topic: Rotate credentials\n\nNow, please\.\n?$/);

    expect(await stopRelayProcess(first)).toEqual({ code: 0, signal: null });

    const second = startRelayProcess(env, cwd);
    await waitForOutput(second, BANNER_END, 60_000);
    expect(FINGERPRINT.exec(second.output().stdout)?.[1]).toBe(fingerprint);
    expect(await stopRelayProcess(second)).toEqual({ code: 0, signal: null });
  }, 120_000);
});
