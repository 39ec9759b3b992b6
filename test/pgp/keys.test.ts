import * as openpgp from 'openpgp';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { RelayError } from '../../src/errors.js';
import { assertUsableFor, parsePublicKey, type ParsedPublicKey, type UnusableKeyReason } from '../../src/pgp/keys.js';
import { createGpgHome, type GeneratedKey, type GpgHome } from '../helpers/gpg.js';

const DAY = 24 * 60 * 60 * 1000;

async function refusal(promise: Promise<unknown>): Promise<RelayError> {
  const err = await promise.then(
    () => undefined,
    (e: unknown) => e,
  );
  expect(err).toBeInstanceOf(RelayError);
  return err as RelayError;
}

async function expectUnusable(parsed: ParsedPublicKey, email: string, now: Date, reason: UnusableKeyReason): Promise<void> {
  const err = await refusal(assertUsableFor(parsed, email, now));
  expect(err.code).toBe('unusable_public_key');
  expect(err.httpStatus).toBe(422);
  expect(err.rule).toBe('encryption');
  expect(err.details).toEqual({ recipients: [email], reason });
}

describe('parsePublicKey / assertUsableFor with keys made by gpg', () => {
  let gpg: GpgHome;
  let alice: GeneratedKey;

  beforeAll(async () => {
    gpg = await createGpgHome();
    alice = await gpg.generateKey('alice@example.com', 'Alice Responder');
  });
  afterAll(async () => {
    await gpg?.cleanup();
  });

  it('accepts a gpg ed25519/cv25519 key and describes it', async () => {
    const parsed = await parsePublicKey(alice.armoredPublic);
    expect(parsed.info).toEqual({
      fingerprint: alice.fingerprint,
      algorithm: 'eddsaLegacy(ed25519Legacy)+ecdh(curve25519Legacy)',
      expiresAt: null,
      emails: ['alice@example.com'],
    });
    expect(parsed.armored).toContain('-----BEGIN PGP PUBLIC KEY BLOCK-----');
    expect(parsed.key.isPrivate()).toBe(false);
    await expect(assertUsableFor(parsed, 'alice@example.com', new Date())).resolves.toBeUndefined();
    // The address comparison is case-insensitive.
    await expect(assertUsableFor(parsed, 'Alice@EXAMPLE.com', new Date())).resolves.toBeUndefined();
  });

  it('round-trips: the re-armored key parses to the same info', async () => {
    const parsed = await parsePublicKey(alice.armoredPublic);
    const again = await parsePublicKey(parsed.armored);
    expect(again.info).toEqual(parsed.info);
  });

  it('accepts an rsa2048 key', async () => {
    const k = await gpg.generateKey('rsa@example.com', 'Rsa User', { algo: 'rsa2048' });
    const parsed = await parsePublicKey(k.armoredPublic);
    expect(parsed.info.algorithm).toBe('rsa2048');
    await expect(assertUsableFor(parsed, 'rsa@example.com', new Date())).resolves.toBeUndefined();
  });

  it("refuses rsa1024 as 'weak_key'", async () => {
    const k = await gpg.generateKey('weak@example.com', 'Weak User', { algo: 'rsa1024' });
    const parsed = await parsePublicKey(k.armoredPublic);
    expect(parsed.info.algorithm).toBe('rsa1024');
    await expectUnusable(parsed, 'weak@example.com', new Date(), 'weak_key');
  });

  it("refuses an expired key as 'expired', evaluated at the given clock", async () => {
    const k = await gpg.generateKey('exp@example.com', 'Exp User', { expire: 'seconds=60' });
    const parsed = await parsePublicKey(k.armoredPublic);
    expect(parsed.info.expiresAt).not.toBeNull();
    const expiresAt = Date.parse(parsed.info.expiresAt ?? '');
    expect(expiresAt).toBeGreaterThan(Date.now());
    expect(expiresAt).toBeLessThanOrEqual(Date.now() + 61_000);
    await expect(assertUsableFor(parsed, 'exp@example.com', new Date())).resolves.toBeUndefined();
    await expectUnusable(parsed, 'exp@example.com', new Date(Date.now() + DAY), 'expired');
  });

  it("refuses a key whose only encryption subkey expired as 'expired'", async () => {
    const k = await gpg.generateKey('subexp@example.com', 'Subexp User', { noEncryptionSubkey: true });
    await gpg.run(['--quick-add-key', k.fingerprint, 'cv25519', 'encr', 'seconds=60']);
    const parsed = await parsePublicKey(await gpg.exportPublic(k.fingerprint));
    await expect(assertUsableFor(parsed, 'subexp@example.com', new Date())).resolves.toBeUndefined();
    expect(parsed.info.expiresAt).not.toBeNull();
    await expectUnusable(parsed, 'subexp@example.com', new Date(Date.now() + DAY), 'expired');
  });

  it("refuses a revoked key as 'revoked'", async () => {
    const k = await gpg.generateKey('rev@example.com', 'Rev User');
    const before = await parsePublicKey(k.armoredPublic);
    await expect(assertUsableFor(before, 'rev@example.com', new Date())).resolves.toBeUndefined();
    const revoked = await parsePublicKey(await gpg.revoke(k.fingerprint));
    await expectUnusable(revoked, 'rev@example.com', new Date(), 'revoked');
  });

  it("refuses a sign-only key as 'no_encryption_subkey'", async () => {
    const k = await gpg.generateKey('signonly@example.com', 'Sign Only', { noEncryptionSubkey: true });
    const parsed = await parsePublicKey(k.armoredPublic);
    expect(parsed.info.algorithm).toBe('eddsaLegacy(ed25519Legacy)');
    await expectUnusable(parsed, 'signonly@example.com', new Date(), 'no_encryption_subkey');
  });

  it("refuses alice's key for bob as 'user_id_mismatch'", async () => {
    const parsed = await parsePublicKey(alice.armoredPublic);
    await expectUnusable(parsed, 'bob@example.com', new Date(), 'user_id_mismatch');
    // A look-alike address is not a match either.
    await expectUnusable(parsed, 'alice@example.com.evil.test', new Date(), 'user_id_mismatch');
  });

  it('matches a user ID with a Unicode domain to its A-label address, and lists it in that form', async () => {
    // Made with OpenPGP.js: the gpg helper runs under LC_ALL=C, which would re-encode a non-ASCII user ID.
    const { publicKey } = await openpgp.generateKey({ userIDs: [{ name: 'Dora', email: 'Dora@Bücher.example' }], type: 'ecc', curve: 'curve25519Legacy', date: new Date(Date.now() - 60_000) });
    const parsed = await parsePublicKey(publicKey);
    expect(parsed.info.emails).toEqual(['dora@xn--bcher-kva.example']);
    await expect(assertUsableFor(parsed, 'dora@xn--bcher-kva.example', new Date())).resolves.toBeUndefined();
    await expectUnusable(parsed, 'dora@bucher.example', new Date(), 'user_id_mismatch');
  });

  it('lowercases user ID emails and ignores revoked user IDs', async () => {
    const k = await gpg.generateKey('Carol@Example.COM', 'Carol');
    await gpg.run(['--quick-add-uid', k.fingerprint, 'Carol Old <carol.old@example.com>']);
    const both = await parsePublicKey(await gpg.exportPublic(k.fingerprint));
    expect(both.info.emails).toEqual(['carol.old@example.com', 'carol@example.com']);
    await expect(assertUsableFor(both, 'carol.old@example.com', new Date())).resolves.toBeUndefined();

    await gpg.run(['--quick-revoke-uid', k.fingerprint, 'Carol Old <carol.old@example.com>']);
    const parsed = await parsePublicKey(await gpg.exportPublic(k.fingerprint));
    expect(parsed.info.emails).toEqual(['carol@example.com']);
    await expect(assertUsableFor(parsed, 'carol@example.com', new Date())).resolves.toBeUndefined();
    await expectUnusable(parsed, 'carol.old@example.com', new Date(), 'user_id_mismatch');
  });

  it('refuses a key evaluated before it was created', async () => {
    const parsed = await parsePublicKey(alice.armoredPublic);
    await expectUnusable(parsed, 'alice@example.com', new Date(Date.now() - 365 * DAY), 'expired');
  });

  describe('invalid input is invalid_request and never echoes key material', () => {
    it('garbage', async () => {
      for (const input of ['', 'hello', '-----BEGIN PGP PUBLIC KEY BLOCK-----\n\nnot base64 at all\n-----END PGP PUBLIC KEY BLOCK-----\n']) {
        const err = await refusal(parsePublicKey(input));
        expect(err.code).toBe('invalid_request');
      }
    });

    it('a private key block', async () => {
      const secret = await gpg.exportSecret(alice.fingerprint);
      expect(secret).toContain('PRIVATE KEY BLOCK');
      const err = await refusal(parsePublicKey(secret));
      expect(err.code).toBe('invalid_request');
      const body = secret.split('\n').filter((l) => l.length > 20 && !l.startsWith('-----'));
      for (const line of body) expect(JSON.stringify(err.toJSON())).not.toContain(line);
    });

    it('a private key relabelled as a public key block', async () => {
      const secret = await gpg.exportSecret(alice.fingerprint);
      const relabelled = secret.replaceAll('PRIVATE KEY BLOCK', 'PUBLIC KEY BLOCK');
      const err = await refusal(parsePublicKey(relabelled));
      expect(err.code).toBe('invalid_request');
      expect(err.message).not.toMatch(/[A-Za-z0-9+/]{40}/);
    });

    it('several keys, in one block or in two', async () => {
      const bob = await gpg.generateKey('bob@example.com', 'Bob');
      const twoBlocks = `${alice.armoredPublic}\n${bob.armoredPublic}`;
      expect((await refusal(parsePublicKey(twoBlocks))).code).toBe('invalid_request');
      const { stdout } = await gpg.run(['--armor', '--export', alice.fingerprint, bob.fingerprint]);
      expect((await refusal(parsePublicKey(stdout.toString('utf8')))).code).toBe('invalid_request');
    });

    it('a binary key', async () => {
      const { stdout } = await gpg.run(['--export', alice.fingerprint]);
      expect((await refusal(parsePublicKey(stdout.toString('latin1')))).code).toBe('invalid_request');
    });

    it('an oversized body', async () => {
      const huge = alice.armoredPublic + ' '.repeat(70 * 1024);
      expect((await refusal(parsePublicKey(huge))).code).toBe('invalid_request');
    });
  });
});
