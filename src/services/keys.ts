/**
 * Responders' public keys: validated on the way in (SPEC §2 "usable key"),
 * filed by email, re-checked at every send, parsed once and cached.
 *
 * A relay-wide key comes from its owner, an admin or RELAY_KEYS_DIR. A key
 * given with a roster entry holds in that incident only, ahead of the
 * relay-wide one: a commander vouches for keys in their own incident, never
 * for anyone else's.
 */
import fs from 'node:fs';
import path from 'node:path';
import type { Logger } from 'pino';
import type { PublicKey } from 'openpgp';
import { RelayError } from '../errors.js';
import { assertUsableFor, parsePublicKey, type ParsedPublicKey } from '../pgp/keys.js';
import { applyRevocation, readRevocation, revocationMismatch, type RevocationMismatch } from '../pgp/revocation.js';
import type { Repositories, Store } from '../store/index.js';
import type { StoredKey } from '../store/keys.js';
import type { KeyState } from '../policy/email.js';

/** What the API shows of a key: never the key material itself. */
export interface KeyMetadata {
  email: string;
  fingerprint: string;
  algorithm: string;
  expiresAt: string | null;
}

function metadata(key: StoredKey): KeyMetadata {
  return { email: key.email, fingerprint: key.fingerprint, algorithm: key.algorithm, expiresAt: key.expiresAt };
}

/** Whether mail can be encrypted to a key now, as GET /v1/keys/:email and the roster show it. */
export type KeyStatus = 'usable' | 'expired' | 'revoked' | 'unusable';

/** A key as the API shows it: where it holds, and whether it can be used now (issue 12 §7). */
export interface KeyView extends KeyMetadata {
  /** `incident`: filed with a roster entry, holds in that incident only; `relay`: the address's relay-wide key. */
  scope: 'incident' | 'relay';
  status: KeyStatus;
  /** Why it cannot be used (`unusable_public_key` reasons: expired, revoked, weak_key, …); absent when usable. */
  reason?: string;
}

/** What a revocation did: the key it revoked and how many stored copies now carry it. */
export interface RevocationApplied {
  email: string;
  fingerprint: string;
  revoked: true;
  /** Stored copies of that key revoked: relay-wide and per incident, under every address. */
  copies: number;
}

/** Key validation, storage and lookup for sends. */
export class KeyService {
  // '<incident id or *> <email>' -> the parsed key for the armored text currently stored.
  private readonly parsed = new Map<string, { armored: string; key: ParsedPublicKey }>();
  // Parsed keys already found usable for their address (see keyStates).
  private readonly usableCache = new WeakMap<ParsedPublicKey, true>();

  constructor(
    private readonly store: Store,
    private readonly now: () => Date,
  ) {}

  /** Parses and checks a key for `email` without storing it. */
  async validate(email: string, armored: string): Promise<ParsedPublicKey> {
    const parsed = await parsePublicKey(armored);
    await assertUsableFor(parsed, email, this.now());
    return parsed;
  }

  /**
   * Files an already validated key under `email`, in the caller's transaction
   * `tx` (the one that records why: roster change, key upload).
   */
  async file(tx: Repositories, email: string, parsed: ParsedPublicKey, source: StoredKey['source'], actor: string | null, incidentId: string | null = null): Promise<KeyMetadata> {
    const stored: StoredKey = {
      email,
      fingerprint: parsed.info.fingerprint,
      algorithm: parsed.info.algorithm,
      expiresAt: parsed.info.expiresAt,
      armored: parsed.armored,
      source,
      incidentId,
      updatedAt: this.now().toISOString(),
    };
    await tx.keys.put(stored);
    this.parsed.set(`${incidentId ?? '*'} ${email}`, { armored: parsed.armored, key: parsed });
    await tx.audit.append({ type: 'key.stored', actor, incidentId, outcome: 'ok', data: { email, fingerprint: stored.fingerprint, algorithm: stored.algorithm, source } });
    return metadata(stored);
  }

  /** Validates and stores in one step. */
  async put(email: string, armored: string, source: StoredKey['source'], actor: string | null): Promise<KeyMetadata> {
    const parsed = await this.validate(email, armored);
    return this.store.transaction((tx) => this.file(tx, email, parsed, source, actor));
  }

  /** Metadata of the key that holds for `email` (in `incidentId` when given), if any. */
  async get(email: string, incidentId: string | null = null): Promise<KeyMetadata | undefined> {
    const stored = await this.store.keys.getFor(email, incidentId);
    return stored ? metadata(stored) : undefined;
  }

  /** The key that holds for `email` (in `incidentId`), parsed; undefined when none is stored. No usability check. */
  async lookup(email: string, incidentId: string | null = null): Promise<ParsedPublicKey | undefined> {
    const stored = await this.store.keys.getFor(email, incidentId);
    return stored ? this.parse(email, stored) : undefined;
  }

  // The parsed form of a stored key, parsed once per armored text.
  private async parse(email: string, stored: StoredKey): Promise<ParsedPublicKey> {
    const cacheKey = `${stored.incidentId ?? '*'} ${email}`;
    const cached = this.parsed.get(cacheKey);
    if (cached && cached.armored === stored.armored) return cached.key;
    const key = await parsePublicKey(stored.armored);
    this.parsed.set(cacheKey, { armored: stored.armored, key });
    return key;
  }

  /**
   * The state of each address's key at `at`: usable, unusable (with the
   * reason) or missing. Keys are re-checked at every send because a key can
   * expire between upload and send; a usable verdict is cached until the
   * key's expiry, since only time (or a new upload) can change it.
   */
  async keyStates(emails: readonly string[], at: Date, incidentId: string | null): Promise<Map<string, KeyState>> {
    const states = new Map<string, KeyState>();
    const unique = [...new Set(emails)];
    const stored = await this.store.keys.getForMany(unique, incidentId);
    for (const email of unique) {
      const found = stored.get(email);
      const parsed = found ? await this.parse(email, found) : undefined;
      if (!parsed) {
        states.set(email, { state: 'missing' });
        continue;
      }
      const expiresMs = parsed.info.expiresAt === null ? Infinity : Date.parse(parsed.info.expiresAt);
      if (this.usableCache.get(parsed) === true && at.getTime() < expiresMs) {
        states.set(email, { state: 'usable' });
        continue;
      }
      try {
        await assertUsableFor(parsed, email, at);
        this.usableCache.set(parsed, true);
        states.set(email, { state: 'usable' });
      } catch (err) {
        if (!(err instanceof RelayError)) throw err;
        states.set(email, { state: 'unusable', reason: String(err.details?.['reason'] ?? err.code) });
      }
    }
    return states;
  }

  /**
   * The parsed public keys of addresses whose state was found usable. A key
   * that changed since (revoked or replaced while the message was being
   * prepared) is checked again here, so a revocation that lands between the
   * decision and the encryption still refuses the message.
   */
  async publicKeys(emails: readonly string[], incidentId: string | null, at: Date = this.now()): Promise<PublicKey[]> {
    const keys: PublicKey[] = [];
    for (const email of emails) {
      const parsed = await this.lookup(email, incidentId);
      if (!parsed) throw new RelayError('missing_public_key', `No public key on file for ${email}; nothing was sent.`, { rule: 'encryption', details: { recipients: [email] } });
      if (this.usableCache.get(parsed) !== true) {
        await assertUsableFor(parsed, email, at);
        this.usableCache.set(parsed, true);
      }
      keys.push(parsed.key);
    }
    return keys;
  }

  /** The key mail to `email` would use (in `incidentId` when given), with its scope and whether it is usable at `at`; undefined when none is on file. */
  async view(email: string, incidentId: string | null, at: Date = this.now()): Promise<KeyView | undefined> {
    const stored = await this.store.keys.getFor(email, incidentId);
    if (!stored) return undefined;
    const state = (await this.keyStates([email], at, incidentId)).get(email);
    const base: KeyView = { ...metadata(stored), scope: stored.incidentId === null ? 'relay' : 'incident', status: 'usable' };
    if (state === undefined || state.state === 'usable') return base;
    if (state.state === 'missing') return undefined; // withdrawn between the two reads
    const status: KeyStatus = state.reason === 'expired' || state.reason === 'revoked' ? state.reason : 'unusable';
    return { ...base, status, reason: state.reason };
  }

  /**
   * Applies a revocation for `email` when `text` is one: a revocation
   * certificate, or a revoked copy of a key on file. It must verify against
   * a key on file for `email` (relay-wide or in any incident); then every
   * stored copy of that key (every scope, every address) is replaced by the
   * revoked one in one transaction, each audited as `key.revoked`, so the
   * next send to any of them is refused (`unusable_public_key`, revoked).
   * Undefined when `text` is not a revocation (an ordinary key to upload).
   */
  async revoke(email: string, text: string, actor: string | null, requestedIn: string | null = null): Promise<RevocationApplied | undefined> {
    const revocation = await readRevocation(text);
    if (revocation === undefined) return undefined;
    const at = this.now();
    return this.store.transaction(async (tx) => {
      const onFile = await tx.keys.allFor(email);
      const fingerprints = [...new Set(onFile.map((k) => k.fingerprint))];
      let matched: string | undefined;
      let why: RevocationMismatch = 'other_key';
      for (const fingerprint of fingerprints) {
        const copy = onFile.find((k) => k.fingerprint === fingerprint)!;
        const outcome = await applyRevocation((await parsePublicKey(copy.armored, at)).key, revocation, at);
        if (typeof outcome !== 'string') {
          matched = fingerprint;
          break;
        }
        if (outcome !== 'other_key') why = outcome;
      }
      if (matched === undefined) {
        // A revoked copy of a key that is not on file is just an unusable key: say so as an upload would.
        if (revocation.kind === 'revoked-key' && why === 'other_key') return undefined;
        throw revocationMismatch(email, fingerprints.length === 0 && why === 'other_key' ? 'other_key' : why, fingerprints);
      }
      const copies = await tx.keys.byFingerprint(matched);
      for (const copy of copies) {
        const current = (await parsePublicKey(copy.armored, at)).key;
        // Already revoked: sending the certificate again changes nothing (and must not grow the stored key).
        if (await current.isRevoked(undefined, undefined, at)) continue;
        const revoked = await applyRevocation(current, revocation, at);
        // Every copy is the same primary key, so the revocation verifies against each; if one did not, store nothing.
        if (typeof revoked === 'string') throw new RelayError('internal', 'A stored copy of the key did not accept its revocation; nothing changed.');
        const parsed = await parsePublicKey(revoked.armor(), at);
        // Relay-wide copies become 'api': RELAY_KEYS_DIR must not bring the unrevoked key back at the next start.
        const stored: StoredKey = { ...copy, armored: parsed.armored, algorithm: parsed.info.algorithm, expiresAt: parsed.info.expiresAt, source: copy.incidentId === null ? 'api' : copy.source, updatedAt: at.toISOString() };
        await tx.keys.put(stored);
        this.parsed.set(`${copy.incidentId ?? '*'} ${copy.email}`, { armored: parsed.armored, key: parsed });
        await tx.audit.append({
          type: 'key.revoked',
          actor,
          incidentId: copy.incidentId,
          outcome: 'ok',
          data: { email: copy.email, fingerprint: matched, scope: copy.incidentId === null ? 'relay' : 'incident', via: revocation.kind, ...(requestedIn !== null ? { requestedIn } : {}) },
        });
      }
      return { email, fingerprint: matched, revoked: true as const, copies: copies.length };
    });
  }

  /** Withdraws the key of `email` (relay-wide, or in `incidentId`), audited as `key.withdrawn`; false when there was none. */
  async withdraw(email: string, incidentId: string | null, actor: string | null): Promise<boolean> {
    const withdrawn = await this.store.transaction((tx) => this.withdrawIn(tx, email, incidentId, actor));
    if (withdrawn) this.forget(email, incidentId);
    return withdrawn;
  }

  /** withdraw, in the caller's transaction `tx` (then call forget once it committed). */
  async withdrawIn(tx: Repositories, email: string, incidentId: string | null, actor: string | null): Promise<boolean> {
    const current = (await tx.keys.allFor(email)).find((k) => k.incidentId === incidentId);
    if (!current || !(await tx.keys.remove(email, incidentId))) return false;
    await tx.audit.append({ type: 'key.withdrawn', actor, incidentId, outcome: 'ok', data: { email, fingerprint: current.fingerprint, scope: incidentId === null ? 'relay' : 'incident' } });
    return true;
  }

  /** Drops the parsed copy of a key that is no longer on file. */
  forget(email: string, incidentId: string | null): void {
    this.parsed.delete(`${incidentId ?? '*'} ${email}`);
  }

  /**
   * Loads every `*.asc` in `dir`, filing each key under every email in its
   * user IDs for which it is usable. Bad files are logged and skipped: the
   * relay still starts, and those recipients are refused until fixed.
   */
  async loadDirectory(dir: string, logger: Logger): Promise<{ filed: number; skipped: number }> {
    let filed = 0;
    let skipped = 0;
    const files = fs.readdirSync(dir).filter((name) => name.endsWith('.asc')).sort();
    for (const name of files) {
      let parsed: ParsedPublicKey;
      try {
        parsed = await parsePublicKey(fs.readFileSync(path.join(dir, name), 'utf8'));
      } catch (err) {
        skipped += 1;
        logger.warn({ file: name, code: err instanceof RelayError ? err.code : 'internal' }, 'skipping key file that is not one public key');
        continue;
      }
      for (const email of parsed.info.emails) {
        try {
          await assertUsableFor(parsed, email, this.now());
        } catch (err) {
          skipped += 1;
          logger.warn({ file: name, email, reason: err instanceof RelayError ? err.details?.['reason'] : 'internal' }, 'skipping unusable key');
          continue;
        }
        const current = await this.store.keys.get(email);
        if (current?.fingerprint === parsed.info.fingerprint && current.armored === parsed.armored) continue;
        // A key its owner or an admin uploaded is newer knowledge than a file
        // on disk: a restart must not roll it back.
        if (current?.source === 'api') {
          logger.warn({ file: name, email }, 'keeping the key uploaded through the API over the keys directory');
          continue;
        }
        await this.store.transaction((tx) => this.file(tx, email, parsed, 'keys-dir', null));
        filed += 1;
      }
    }
    return { filed, skipped };
  }
}
