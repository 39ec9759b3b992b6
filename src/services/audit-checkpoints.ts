/**
 * Signed checkpoints of the audit chain (issue 10 §16-17), and the
 * verification that uses them.
 *
 * The hash chain alone proves nothing to someone who can write the database:
 * they can drop the triggers, edit an event, re-hash every later one and put
 * the triggers back. So every few minutes (CHECKPOINT_MAX_AGE_MS) or every
 * CHECKPOINT_MAX_EVENTS events, one relay at a time verifies the chain and
 * signs its head `(seq, hash, at, fingerprint)` with the relay key. A rewrite
 * before a checkpoint changes the hash at its seq, and a new signature needs
 * the relay's private key. Verification checks every stored checkpoint
 * (signature AND hash at its seq), then recomputes the chain from the newest
 * checkpoint that holds, in slices that leave the event loop free.
 */
import { createHash } from 'node:crypto';
import * as openpgp from 'openpgp';
import type { Logger } from 'pino';
import type { RelayKey } from '../pgp/relay-key.js';
import { CHECKPOINT_EVENT, type AuditVerification, type CheckpointRecord } from '../store/audit.js';
import type { AuditCheckpoint, CheckpointAgainstChain } from '../store/checkpoints.js';
import type { Repositories, Store } from '../store/index.js';
import { startPeriodic, type Periodic, type PeriodicDeps } from '../workers/periodic.js';

/** How often the checkpoint job looks whether a checkpoint is due. */
export const CHECKPOINT_CHECK_INTERVAL_MS = 30_000;
/** A checkpoint is due once the newest is this old and events came since. */
export const CHECKPOINT_MAX_AGE_MS = 5 * 60_000;
/** …or once this many events came since the newest, whatever its age. */
export const CHECKPOINT_MAX_EVENTS = 10_000;
/** The named lease under which one relay at a time signs checkpoints. */
export const CHECKPOINT_LEASE = 'audit-checkpoint';
/**
 * How often the whole chain is recomputed from genesis by the checkpoint job:
 * the default verify recomputes only the tail after the newest checkpoint, so
 * an edit before it that leaves the stored hashes alone is found by this pass.
 */
export const FULL_VERIFY_INTERVAL_MS = 24 * 60 * 60_000;
// The settings row holding the outcome of the last full verification (any relay's).
const FULL_VERIFY_SETTING = 'audit_full_verification';

/** The outcome of the last full verification, as stored and as the verify answer shows it. */
export interface FullVerification {
  at: string;
  ok: boolean;
  events: number;
  brokenAt?: number;
  failures?: number;
}

// Checkpoints are read in pages; between pages the loop is free for requests.
const CHECKPOINT_PAGE = 200;
// The answer names at most this many failed checkpoints (the count is complete).
const MAX_FAILURES_LISTED = 20;
// Signatures already verified in this process, by a hash of what was signed and the signature:
// a row changed behind the store misses the cache and is verified again. Bounded; cleared when full.
const MAX_CACHED_SIGNATURES = 100_000;

/** Why a checkpoint does not hold. */
export type CheckpointFailureReason =
  /** A field is not of the form the relay writes (it could not have signed it). */
  | 'malformed'
  /** Not signed by this relay's key, or the signature does not match the fields. */
  | 'signature'
  /** The chain holds another hash at that seq: events up to it were rewritten. */
  | 'hash'
  /** The chain has no event at that seq any more: it was cut back. */
  | 'missing_event'
  /** The chain records a checkpoint (an `audit.checkpoint` event) that is no longer stored. */
  | 'not_stored';

/** One checkpoint that does not hold. */
export interface CheckpointFailure {
  seq: number;
  reason: CheckpointFailureReason;
  /** For `not_stored`: the event that records it. */
  event?: number;
}

/** `GET /v1/audit/verify`: the chain and its checkpoints. */
export interface AuditReport extends AuditVerification {
  checkpoints: {
    /** Checkpoints stored. */
    signed: number;
    /** Of those, how many hold (signature and hash). */
    verified: number;
    /** The newest that holds. */
    latest?: { seq: number; hash: string; at: string };
    /** Total of failures (stored checkpoints that do not hold, and recorded ones that are gone). */
    failures?: number;
    /** The first failures, oldest first. */
    failed?: CheckpointFailure[];
  };
  /**
   * The last full recomputation from genesis (daily, by the checkpoint job, or
   * any `?full=true`). When it failed, `ok` is false until one passes again.
   */
  lastFullVerification?: FullVerification;
}

/** The text a checkpoint's signature is over: fixed lines, no trailing newline. */
export function checkpointText(checkpoint: Omit<AuditCheckpoint, 'signature'>): string {
  return [
    'incident-relay audit checkpoint',
    `relay-key: ${checkpoint.fingerprint}`,
    `seq: ${checkpoint.seq}`,
    `hash: ${checkpoint.hash}`,
    `at: ${checkpoint.at}`,
  ].join('\n');
}

// The fields come back from a database an attacker may write: only the exact
// forms the relay writes are checked at all, so no field can carry a line
// break that shifts text from one line of a signed text into another.
const HASH = /^[0-9a-f]{64}$/;
const FINGERPRINT = /^[0-9A-F]{40}$/;
const ISO_TIME = /^\d{4}-\d{2}-\d{2}T\d{2}:\d{2}:\d{2}\.\d{3}Z$/;

function wellFormed(checkpoint: AuditCheckpoint): boolean {
  return Number.isSafeInteger(checkpoint.seq) && checkpoint.seq > 0 && HASH.test(checkpoint.hash) && FINGERPRINT.test(checkpoint.fingerprint) && ISO_TIME.test(checkpoint.at);
}

/** Signs a checkpoint with the relay key: an ASCII-armored detached signature over checkpointText. */
export async function signCheckpoint(signingKey: openpgp.PrivateKey, checkpoint: Omit<AuditCheckpoint, 'signature'>): Promise<string> {
  const message = await openpgp.createMessage({ text: checkpointText(checkpoint) });
  return openpgp.sign({ message, signingKeys: signingKey, detached: true, date: new Date(checkpoint.at), format: 'armored' });
}

/** True when `checkpoint.signature` is a good signature by `publicKey` over its fields, and the fingerprint is that key's. */
export async function checkpointSignatureHolds(publicKey: openpgp.PublicKey, checkpoint: AuditCheckpoint, at: Date): Promise<boolean> {
  if (checkpoint.fingerprint !== publicKey.getFingerprint().toUpperCase()) return false;
  try {
    const signature = await openpgp.readSignature({ armoredSignature: checkpoint.signature });
    const message = await openpgp.createMessage({ text: checkpointText(checkpoint) });
    const { signatures } = await openpgp.verify({ message, signature, verificationKeys: publicKey, expectSigned: true, date: at });
    // expectSigned: verify() has thrown unless a signature by publicKey verified.
    return signatures.length > 0;
  } catch {
    return false;
  }
}

// openpgp's typings leave out the (text, signature) constructor that its own sign() uses.
const Cleartext = openpgp.CleartextMessage as unknown as new (text: string, signature: openpgp.Signature) => openpgp.CleartextMessage;

/**
 * The checkpoint as one clearsigned text (RFC 4880 §7) with its stored
 * signature, which `gpg --verify` checks against the relay's public key.
 */
export async function clearsignedCheckpoint(checkpoint: AuditCheckpoint): Promise<string> {
  const signature = await openpgp.readSignature({ armoredSignature: checkpoint.signature });
  // openpgp keeps the signed lines in their canonical CRLF form; the armor around them is LF.
  // One line ending throughout: a clearsigned text is verified over canonical line ends anyway (RFC 4880 §7.1).
  return new Cleartext(checkpointText(checkpoint), signature).armor().replace(/\r\n/g, '\n');
}

const yieldToLoop = (): Promise<void> => new Promise((resolve) => setImmediate(resolve));

/** What verification reads and checks against. */
export interface AuditVerifierDeps {
  store: Pick<Repositories, 'audit' | 'checkpoints' | 'settings'>;
  relayKey: Pick<RelayKey, 'publicKey'>;
  now: () => Date;
}

/**
 * Verifies the audit chain with its checkpoints. Concurrent calls of the same
 * kind share one pass; signatures verified once are remembered (by content).
 */
export class AuditVerifier {
  private readonly goodSignatures = new Set<string>();
  private readonly running = new Map<boolean, Promise<AuditReport>>();
  // When this process last recomputed the whole chain (at first, when it started): the stored
  // outcome is a row anyone who can write the database can keep fresh, so it is not the only clock.
  private lastFullHere: number;

  constructor(private readonly deps: AuditVerifierDeps) {
    this.lastFullHere = deps.now().getTime();
  }

  /** Whether this process has recomputed the whole chain within `intervalMs`, or started within it. */
  fullRunHereWithin(intervalMs: number): boolean {
    const age = this.deps.now().getTime() - this.lastFullHere;
    return age >= 0 && age < intervalMs;
  }

  /**
   * Checks every checkpoint, then recomputes the chain from the newest that
   * holds (`full`: from genesis, every signature checked afresh).
   */
  verify(options: { full?: boolean } = {}): Promise<AuditReport> {
    const full = options.full === true;
    let pass = this.running.get(full);
    if (!pass) {
      pass = this.run(full).finally(() => this.running.delete(full));
      this.running.set(full, pass);
    }
    return pass;
  }

  private async run(full: boolean): Promise<AuditReport> {
    const { store } = this.deps;
    const failed: CheckpointFailure[] = [];
    let failures = 0;
    const fail = (failure: CheckpointFailure): void => {
      failures += 1;
      if (failed.length < MAX_FAILURES_LISTED) failed.push(failure);
    };

    let signed = 0;
    let verified = 0;
    let latest: AuditCheckpoint | undefined;
    for (let after = 0; ; ) {
      const page = await store.checkpoints.listAgainstChain(after, CHECKPOINT_PAGE);
      for (const checkpoint of page) {
        signed += 1;
        const reason = await this.check(checkpoint, full);
        if (reason) fail({ seq: checkpoint.seq, reason });
        else {
          verified += 1;
          latest = checkpoint;
        }
        after = checkpoint.seq;
      }
      if (page.length < CHECKPOINT_PAGE) break;
      await yieldToLoop();
    }

    const base = full ? undefined : latest;
    const chain = await store.audit.verify({
      ...(base ? { from: { seq: base.seq, hash: base.hash } } : {}),
      recorded: async (records: CheckpointRecord[]) => {
        const present = await store.checkpoints.present(records);
        for (const record of records) if (!present.has(record.seq)) fail({ seq: record.seq, reason: 'not_stored', event: record.eventSeq });
      },
    });
    failed.sort((a, b) => a.seq - b.seq);
    const ok = chain.ok && failures === 0;
    let lastFull: FullVerification | undefined;
    if (full) {
      this.lastFullHere = this.deps.now().getTime();
      // Any relay's full pass is every relay's answer from now on.
      lastFull = { at: this.deps.now().toISOString(), ok, events: chain.events, ...(chain.brokenAt !== undefined ? { brokenAt: chain.brokenAt } : {}), ...(failures > 0 ? { failures } : {}) };
      await store.settings.put(FULL_VERIFY_SETTING, JSON.stringify(lastFull));
    } else {
      lastFull = await this.lastFull();
    }
    return {
      ...chain,
      // Fail closed: tampering a full pass found stays reported until a full pass is clean.
      ok: ok && lastFull?.ok !== false,
      checkpoints: {
        signed,
        verified,
        ...(latest ? { latest: { seq: latest.seq, hash: latest.hash, at: latest.at } } : {}),
        ...(failures > 0 ? { failures, failed } : {}),
      },
      ...(lastFull ? { lastFullVerification: lastFull } : {}),
    };
  }

  /** The last full verification's outcome, when one was stored. */
  async lastFull(): Promise<FullVerification | undefined> {
    const stored = await this.deps.store.settings.get(FULL_VERIFY_SETTING);
    if (stored === undefined) return undefined;
    try {
      const parsed = JSON.parse(stored) as Partial<FullVerification> | null;
      // A time the relay could not have written (not its form, or later than now) is not trusted to say "clean" either.
      const readable = typeof parsed?.at === 'string' && ISO_TIME.test(parsed.at) && Date.parse(parsed.at) <= this.deps.now().getTime();
      if (readable && typeof parsed.ok === 'boolean' && typeof parsed.events === 'number') return parsed as FullVerification;
    } catch {
      // Not JSON: treated as below.
    }
    // Not a row the relay wrote: reported as a failed pass at the epoch (fail closed) until the next full pass, due at once.
    return { at: new Date(0).toISOString(), ok: false, events: 0 };
  }

  private async check(checkpoint: CheckpointAgainstChain, full: boolean): Promise<CheckpointFailureReason | undefined> {
    if (!wellFormed(checkpoint)) return 'malformed';
    const key = createHash('sha256').update(checkpointText(checkpoint)).update('\n').update(checkpoint.signature).digest('hex');
    if (full || !this.goodSignatures.has(key)) {
      // Checked as of when it was signed if that is later than this clock: a relay whose clock runs
      // ahead signs with a time openpgp would otherwise call "in the future" and reject.
      const at = new Date(Math.max(this.deps.now().getTime(), Date.parse(checkpoint.at)));
      if (!(await checkpointSignatureHolds(this.deps.relayKey.publicKey, checkpoint, at))) return 'signature';
      if (this.goodSignatures.size >= MAX_CACHED_SIGNATURES) this.goodSignatures.clear();
      this.goodSignatures.add(key);
    }
    if (checkpoint.chainHash === null) return 'missing_event';
    if (checkpoint.chainHash !== checkpoint.hash) return 'hash';
    return undefined;
  }
}

/** What signing a checkpoint needs. */
export interface CheckpointDeps {
  store: Pick<Store, 'audit' | 'checkpoints' | 'transaction'>;
  relayKey: Pick<RelayKey, 'privateKey' | 'fingerprint'>;
  now: () => Date;
  logger: Logger;
}

/** When a checkpoint is due. */
export interface CheckpointPolicy {
  maxAgeMs: number;
  maxEvents: number;
}

/** Default CheckpointPolicy: every 5 minutes or every 10,000 events, whichever comes first. */
export const DEFAULT_CHECKPOINT_POLICY: CheckpointPolicy = { maxAgeMs: CHECKPOINT_MAX_AGE_MS, maxEvents: CHECKPOINT_MAX_EVENTS };

/** What one checkpoint pass did. */
export type CheckpointOutcome =
  | { signed: AuditCheckpoint }
  | { skipped: 'empty' | 'nothing_new' | 'not_due' | 'taken' }
  | { refused: AuditReport };

/**
 * Signs a checkpoint of the chain's head when one is due: verifies the chain
 * first and never signs one that does not verify (it logs that instead).
 * The checkpoint and its `audit.checkpoint` event are stored in one
 * transaction, so the chain itself records every checkpoint.
 */
export async function createCheckpoint(deps: CheckpointDeps, verifier: AuditVerifier, policy: CheckpointPolicy = DEFAULT_CHECKPOINT_POLICY): Promise<CheckpointOutcome> {
  const { store } = deps;
  const head = await store.audit.head();
  if (head.seq === 0) return { skipped: 'empty' };
  const last = await store.checkpoints.latest();
  if (last) {
    // Nothing but the last checkpoint's own record since: an idle relay signs nothing.
    if (head.seq <= last.seq || head.type === CHECKPOINT_EVENT) return { skipped: 'nothing_new' };
    const age = deps.now().getTime() - Date.parse(last.at);
    if (head.seq - last.seq < policy.maxEvents && !(age >= policy.maxAgeMs)) return { skipped: 'not_due' };
  }
  const report = await verifier.verify();
  if (!report.ok) {
    deps.logger.error(
      { brokenAt: report.brokenAt, failures: report.checkpoints.failures, failed: report.checkpoints.failed },
      'the audit chain does not verify: no checkpoint is signed until an admin has looked (GET /v1/audit/verify)',
    );
    return { refused: report };
  }
  const unsigned = { seq: report.events, hash: report.head, at: deps.now().toISOString(), fingerprint: deps.relayKey.fingerprint };
  // Signed outside the transaction: the store is not held while the key works.
  const checkpoint: AuditCheckpoint = { ...unsigned, signature: await signCheckpoint(deps.relayKey.privateKey, unsigned) };
  const stored = await store.transaction(async (tx) => {
    if (!(await tx.checkpoints.add(checkpoint))) return false;
    await tx.audit.append({ type: CHECKPOINT_EVENT, actor: null, outcome: 'ok', data: { seq: checkpoint.seq, hash: checkpoint.hash, fingerprint: checkpoint.fingerprint } });
    return true;
  });
  return stored ? { signed: checkpoint } : { skipped: 'taken' };
}

/** Options of startAuditCheckpoints. */
export interface AuditCheckpointJobOptions {
  checkIntervalMs?: number;
  policy?: CheckpointPolicy;
}

/**
 * Recomputes the whole chain from genesis when the last full pass is older
 * than `intervalMs` (or there was none, or its time is unreadable or in the
 * future), and in any case when this process has not run one for
 * `intervalMs`: a stored outcome kept fresh by someone writing the database
 * cannot put the pass off for good. Its outcome is stored and carried by
 * every later verify answer. Logs an error when it finds the chain broken.
 */
export async function fullVerificationIfDue(deps: CheckpointDeps, verifier: AuditVerifier, intervalMs = FULL_VERIFY_INTERVAL_MS): Promise<FullVerification | undefined> {
  const last = await verifier.lastFull();
  const age = last === undefined ? Number.NaN : deps.now().getTime() - Date.parse(last.at);
  if (age >= 0 && age < intervalMs && verifier.fullRunHereWithin(intervalMs)) return undefined;
  const report = await verifier.verify({ full: true });
  if (!report.ok) {
    deps.logger.error({ brokenAt: report.brokenAt, failures: report.checkpoints.failures }, 'the daily full verification found the audit chain broken: see GET /v1/audit/verify?full=true');
  }
  return report.lastFullVerification;
}

/**
 * Runs createCheckpoint every CHECKPOINT_CHECK_INTERVAL_MS, and the full
 * verification once a day, under the named lease `audit-checkpoint`: one
 * relay at a time.
 */
export function startAuditCheckpoints(periodic: PeriodicDeps, deps: CheckpointDeps, verifier: AuditVerifier, options: AuditCheckpointJobOptions = {}): Periodic {
  return startPeriodic(periodic, CHECKPOINT_LEASE, options.checkIntervalMs ?? CHECKPOINT_CHECK_INTERVAL_MS, async () => {
    const outcome = await createCheckpoint(deps, verifier, options.policy);
    if ('signed' in outcome) deps.logger.debug({ seq: outcome.signed.seq }, 'signed an audit checkpoint');
    await fullVerificationIfDue(deps, verifier);
  });
}

/** A page of stored checkpoints, oldest first, after `cursor` (an opaque string: the last seq of the previous page). */
export async function listCheckpoints(store: Pick<Repositories, 'checkpoints'>, options: { cursor?: string | undefined; limit: number }): Promise<{ checkpoints: AuditCheckpoint[]; next?: string }> {
  const after = options.cursor === undefined ? 0 : Number(options.cursor);
  const rows = await store.checkpoints.list(after, options.limit + 1);
  const page = rows.slice(0, options.limit);
  return rows.length > options.limit ? { checkpoints: page, next: String(page[page.length - 1]!.seq) } : { checkpoints: page };
}
