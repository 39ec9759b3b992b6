/** The STARTTLS certificate: generated once (key 0600), reused, or loaded from RELAY_TLS_CERT/RELAY_TLS_KEY. */
import { X509Certificate } from 'node:crypto';
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { afterEach, describe, expect, it } from 'vitest';
import { ConfigError } from '../../src/config.js';
import { GENERATED_CERT, GENERATED_KEY, loadOrCreateTlsCertificate } from '../../src/smtp/tls.js';

const dirs: string[] = [];
function tempDir(): string {
  const dir = fs.mkdtempSync(path.join(os.tmpdir(), 'relay-tls-'));
  dirs.push(dir);
  return dir;
}

afterEach(() => {
  for (const dir of dirs.splice(0)) fs.rmSync(dir, { recursive: true, force: true });
});

describe('generated certificate', () => {
  it('is generated on first start with a private key file, then reused with the same fingerprint', async () => {
    const dataDir = tempDir();
    const first = await loadOrCreateTlsCertificate({ dataDir, listenHost: 'relay.corp.example' });
    expect(first.source).toBe('generated');
    expect(first.fingerprint256).toMatch(/^([0-9A-F]{2}:){31}[0-9A-F]{2}$/);
    expect(fs.statSync(path.join(dataDir, GENERATED_KEY)).mode & 0o777).toBe(0o600);
    expect(fs.readdirSync(dataDir).sort()).toEqual([GENERATED_CERT, GENERATED_KEY].sort());

    const x509 = new X509Certificate(first.cert);
    expect(x509.fingerprint256).toBe(first.fingerprint256);
    expect(x509.subjectAltName).toContain('DNS:localhost');
    expect(x509.subjectAltName).toContain('DNS:relay.corp.example');
    expect(x509.subjectAltName).toContain('IP Address:127.0.0.1');
    expect(x509.ca).toBe(false);
    expect(x509.publicKey.asymmetricKeyType).toBe('ec');
    expect(x509.checkPrivateKey((await import('node:crypto')).createPrivateKey(first.key))).toBe(true);
    // Signed ecdsa-with-SHA256 (OID 1.2.840.10045.4.3.2), not the library's SHA-1 default.
    expect(x509.raw.includes(Buffer.from('06082a8648ce3d040302', 'hex'))).toBe(true);
    expect(x509.raw.includes(Buffer.from('06072a8648ce3d0401', 'hex'))).toBe(false);
    expect(x509.verify(x509.publicKey)).toBe(true);

    const again = await loadOrCreateTlsCertificate({ dataDir });
    expect(again.source).toBe('reused');
    expect(again.fingerprint256).toBe(first.fingerprint256);
  });

  it('replaces an expired generated certificate', async () => {
    const dataDir = tempDir();
    const old = await loadOrCreateTlsCertificate({ dataDir, now: new Date('2020-01-01T00:00:00Z') });
    const renewed = await loadOrCreateTlsCertificate({ dataDir });
    expect(renewed.source).toBe('generated');
    expect(renewed.fingerprint256).not.toBe(old.fingerprint256);
  });

  it('refuses to silently replace a certificate whose key is gone', async () => {
    const dataDir = tempDir();
    await loadOrCreateTlsCertificate({ dataDir });
    fs.rmSync(path.join(dataDir, GENERATED_KEY));
    await expect(loadOrCreateTlsCertificate({ dataDir })).rejects.toThrow(/smtp-tls-key\.pem is missing but .*smtp-tls-cert\.pem exists/);
  });

  it('regenerates when only the key is left (a start interrupted between the two writes)', async () => {
    const dataDir = tempDir();
    await loadOrCreateTlsCertificate({ dataDir });
    fs.rmSync(path.join(dataDir, GENERATED_CERT));
    expect((await loadOrCreateTlsCertificate({ dataDir })).source).toBe('generated');
  });
});

describe('configured certificate', () => {
  it('loads RELAY_TLS_CERT and RELAY_TLS_KEY and generates nothing', async () => {
    const source = await loadOrCreateTlsCertificate({ dataDir: tempDir() });
    const dataDir = tempDir();
    const loaded = await loadOrCreateTlsCertificate({ dataDir, certFile: source.certPath, keyFile: source.keyPath });
    expect(loaded).toMatchObject({ source: 'configured', fingerprint256: source.fingerprint256, certPath: source.certPath });
    expect(fs.readdirSync(dataDir)).toEqual([]);
  });

  it.each<[string, (a: { certPath: string; keyPath: string }, b: { certPath: string; keyPath: string }) => { certFile: string; keyFile: string }, RegExp]>([
    ['a missing file', (a) => ({ certFile: `${a.certPath}.nope`, keyFile: a.keyPath }), /^RELAY_TLS_CERT: a readable PEM file \(.*ENOENT\)$/],
    ['a key of another certificate', (a, b) => ({ certFile: a.certPath, keyFile: b.keyPath }), /^RELAY_TLS_CERT: not a usable PEM certificate and matching private key/],
    ['a key where the certificate goes', (a) => ({ certFile: a.keyPath, keyFile: a.keyPath }), /^RELAY_TLS_CERT: not a usable PEM certificate/],
  ])('refuses %s naming the variable', async (_name, pick, message) => {
    const a = await loadOrCreateTlsCertificate({ dataDir: tempDir() });
    const b = await loadOrCreateTlsCertificate({ dataDir: tempDir() });
    const err = await loadOrCreateTlsCertificate({ dataDir: tempDir(), ...pick(a, b) }).catch((e: unknown) => e);
    expect(err).toBeInstanceOf(ConfigError);
    expect((err as Error).message).toMatch(message);
    // The key's bytes never appear in the message.
    expect((err as Error).message).not.toContain('PRIVATE KEY');
  });
});
