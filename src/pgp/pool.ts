/**
 * Sign-and-encrypt off the event loop: a pool of worker threads, sized to the
 * cores, each holding the relay signing key and a cache of parsed recipient
 * keys. The HTTP/SMTP thread keeps accepting while the workers do the
 * elliptic-curve work (see BENCHMARKS.md for why it exists).
 *
 * Fail closed: a worker that crashes, hangs or cannot start rejects every
 * task it held with `unavailable` (HTTP 503 / SMTP 451: the client retries);
 * nothing is queued for those messages, and the next task gets a new worker.
 */
import { createHash } from 'node:crypto';
import os from 'node:os';
import type { Worker } from 'node:worker_threads';
import type { PrivateKey, PublicKey } from 'openpgp';
import { RelayError } from '../errors.js';
import { startModuleWorker } from '../worker-thread.js';
import type { SealedParts } from './encrypt.js';
import type { Encryptor } from './pgp-mime.js';

/** A recipient key as sent to a worker: the binary key only the first time that worker sees `ref`. */
export interface PoolKeyRef {
  ref: string;
  binary?: Uint8Array;
}

/** Main thread to worker. */
export interface PoolRequest {
  id: number;
  payload: Uint8Array;
  /** Every distinct key of the message, each once. */
  keys: PoolKeyRef[];
  /** Per copy, indexes into `keys`. */
  copies: number[][];
  /** Epoch ms: the signature time and the time keys must be valid at. */
  date: number;
  /** Drop every cached key first (the main thread's record of what the worker holds was reset). */
  forget?: boolean;
}

/** Worker to main thread. */
export type PoolReply = { id: number; sealed: SealedParts } | { id: number; error: string };

/** What each worker starts with. */
export interface PoolWorkerData {
  /** The relay's decrypted private key, binary (it never leaves this process). */
  signingKey: Uint8Array;
}

/** Options of EncryptionPool. */
export interface EncryptionPoolOptions {
  /** Worker threads; default os.availableParallelism(). */
  size?: number;
  /** A task still unanswered after this long kills its worker and is refused; default 120 s. */
  taskTimeoutMs?: number;
  /** Parsed recipient keys a worker may hold before its cache is reset; default 4096. */
  maxCachedKeys?: number;
  /** Told about lost workers (crash, timeout), for the log. */
  onWorkerLost?: (reason: string) => void;
  /** A worker that encrypted a payload this large is replaced once idle, releasing its heap; default 8 MiB. */
  recycleAfterBytes?: number;
}

interface Task {
  resolve: (sealed: SealedParts) => void;
  reject: (err: Error) => void;
  timer: NodeJS.Timeout;
  /** Keys whose binary this task carried: forgotten again if the task fails. */
  sent: string[];
  bytes: number;
}

interface Slot {
  worker: Worker | undefined;
  tasks: Map<number, Task>;
  /** Cache refs this slot's current worker has been sent. */
  known: Set<string>;
  forgetNext: boolean;
  /** Retire this worker when it next has no tasks. */
  recycle: boolean;
}

// Binary form and cache ref of each parsed key object; KeyService reuses the
// same objects across sends, so this is computed once per key version.
const keyForms = new WeakMap<PublicKey, { ref: string; binary: Uint8Array }>();

function keyForm(key: PublicKey): { ref: string; binary: Uint8Array } {
  let form = keyForms.get(key);
  if (!form) {
    const binary = key.write();
    // Fingerprint plus a digest of the packets: a re-uploaded certificate with
    // the same fingerprint (new expiry, new subkey) is a different cache entry.
    const ref = `${key.getFingerprint()}:${createHash('sha256').update(binary).digest('hex').slice(0, 16)}`;
    form = { ref, binary };
    keyForms.set(key, form);
  }
  return form;
}

function startWorker(data: PoolWorkerData): Worker {
  return startModuleWorker(import.meta.url, 'pool-worker', { workerData: data });
}

function lostError(reason: string): RelayError {
  return new RelayError('unavailable', `Encryption failed (${reason}); nothing was queued or sent. Try again.`, { retryAfter: 1 });
}

/** A pool of encryption worker threads; an Encryptor. */
export class EncryptionPool implements Encryptor {
  private readonly slots: Slot[];
  private readonly data: PoolWorkerData;
  private readonly timeoutMs: number;
  private readonly maxCachedKeys: number;
  private readonly recycleAfterBytes: number;
  private nextId = 1;
  private closed = false;
  /** The relay key's fingerprint: every copy this pool seals is signed by it. */
  readonly signerFingerprint: string;

  constructor(
    signingKey: PrivateKey,
    private readonly options: EncryptionPoolOptions = {},
  ) {
    if (!signingKey.isDecrypted()) throw new Error('encryption pool: the relay signing key must be decrypted');
    const size = Math.max(1, options.size ?? os.availableParallelism());
    this.data = { signingKey: signingKey.write() };
    this.signerFingerprint = signingKey.getFingerprint().toUpperCase();
    this.timeoutMs = options.taskTimeoutMs ?? 120_000;
    this.maxCachedKeys = options.maxCachedKeys ?? 4096;
    this.recycleAfterBytes = options.recycleAfterBytes ?? 8 * 1024 * 1024;
    this.slots = Array.from({ length: size }, () => ({ worker: undefined, tasks: new Map(), known: new Set<string>(), forgetNext: false, recycle: false }));
  }

  /** Number of worker threads. */
  get size(): number {
    return this.slots.length;
  }

  /** The live worker threads (tests and diagnostics). */
  threads(): Worker[] {
    return this.slots.flatMap((s) => (s.worker ? [s.worker] : []));
  }

  /** Starts every worker now rather than at its first task (so the first sends do not pay for it). */
  warm(): void {
    for (const slot of this.slots) if (!slot.worker && !this.closed) this.spawn(slot);
  }

  /**
   * Signs and encrypts once in the least busy worker, and wraps the session
   * key for each copy there too (about 1 ms per X25519 key: 100 Bcc copies
   * would hold the event loop for 100 ms). Rejects (never falls back to
   * plaintext) when the worker fails.
   */
  seal(payload: Uint8Array, copies: PublicKey[][], date: Date): Promise<SealedParts> {
    if (this.closed) return Promise.reject(lostError('the encryption pool is shut down'));
    if (copies.length === 0 || copies.some((keys) => keys.length === 0)) {
      // Same refusal as sealPayload, before any thread is involved.
      return Promise.reject(new Error('signAndEncrypt: no encryption keys; refusing to produce an unencrypted message'));
    }
    const slot = this.slots.reduce((best, s) => (s.tasks.size < best.tasks.size ? s : best));
    let worker: Worker;
    try {
      worker = slot.worker ?? this.spawn(slot);
    } catch (err) {
      return Promise.reject(lostError(`no encryption worker could start: ${err instanceof Error ? err.message : String(err)}`));
    }
    // Each distinct key travels once; copies name keys by index.
    const index = new Map<PublicKey, number>();
    const distinct: PublicKey[] = [];
    const copyIndexes = copies.map((keys) =>
      keys.map((key) => {
        let i = index.get(key);
        if (i === undefined) {
          i = distinct.push(key) - 1;
          index.set(key, i);
        }
        return i;
      }),
    );
    if (slot.known.size + distinct.length > this.maxCachedKeys) {
      slot.known.clear();
      slot.forgetNext = true;
    }
    const sent: string[] = [];
    const keys = distinct.map((key): PoolKeyRef => {
      const form = keyForm(key);
      if (slot.known.has(form.ref)) return { ref: form.ref };
      slot.known.add(form.ref);
      sent.push(form.ref);
      return { ref: form.ref, binary: form.binary };
    });
    const id = this.nextId++;
    const request: PoolRequest = { id, payload, keys, copies: copyIndexes, date: date.getTime(), ...(slot.forgetNext ? { forget: true } : {}) };
    slot.forgetNext = false;
    return new Promise<SealedParts>((resolve, reject) => {
      // Settle through the task record, not the executor's own reject: close()
      // wraps the record's callbacks to learn when each task ends.
      const fail = (error: Error): void => {
        const task = slot.tasks.get(id);
        slot.tasks.delete(id);
        (task?.reject ?? reject)(error);
      };
      const timer = setTimeout(() => {
        fail(lostError(`no answer from the encryption worker within ${this.timeoutMs} ms`));
        this.options.onWorkerLost?.('task timeout');
        void worker.terminate();
      }, this.timeoutMs);
      slot.tasks.set(id, { resolve, reject, timer, sent, bytes: payload.byteLength });
      // A payload that owns its whole buffer is moved, not copied (25 MB attachments).
      const movable = payload.byteOffset === 0 && payload.byteLength === payload.buffer.byteLength && payload.buffer instanceof ArrayBuffer;
      try {
        worker.postMessage(request, movable ? [payload.buffer as ArrayBuffer] : []);
      } catch (err) {
        clearTimeout(timer);
        fail(lostError(`could not reach the encryption worker: ${err instanceof Error ? err.message : String(err)}`));
      }
    });
  }

  /** Waits for the tasks in flight, then stops every worker. Later calls are refused. */
  async close(): Promise<void> {
    this.closed = true;
    const pending = this.slots.flatMap((s) =>
      [...s.tasks.values()].map(
        (t) =>
          new Promise<void>((done) => {
            const { resolve, reject } = t;
            t.resolve = (v) => (resolve(v), done());
            t.reject = (e) => (reject(e), done());
          }),
      ),
    );
    await Promise.all(pending);
    await Promise.all(this.slots.map((s) => s.worker?.terminate()));
  }

  private spawn(slot: Slot): Worker {
    const worker = startWorker(this.data);
    slot.worker = worker;
    slot.known = new Set();
    slot.forgetNext = false;
    slot.recycle = false;
    let failure: string | undefined;
    worker.on('message', (reply: PoolReply) => this.settle(slot, reply));
    worker.on('error', (err: Error) => {
      failure = err.message;
    });
    // After the listeners: adding a 'message' listener refs the worker again.
    // Idle workers do not keep the process alive; a task's timer does while it is pending.
    worker.unref();
    worker.on('exit', (code) => {
      if (slot.worker !== worker) return;
      slot.worker = undefined;
      slot.known = new Set();
      const reason = failure ? `the encryption worker crashed: ${failure}` : `the encryption worker exited (code ${code})`;
      if (slot.tasks.size > 0 || failure) this.options.onWorkerLost?.(reason);
      for (const [id, task] of slot.tasks) {
        clearTimeout(task.timer);
        slot.tasks.delete(id);
        task.reject(lostError(reason));
      }
    });
    return worker;
  }

  private settle(slot: Slot, reply: PoolReply): void {
    const task = slot.tasks.get(reply.id);
    if (!task) return; // timed out already
    slot.tasks.delete(reply.id);
    clearTimeout(task.timer);
    // A worker's heap keeps what a large message needed (hundreds of MB for
    // 25 MB) until its next GC, which an idle worker never runs: retire it.
    if (task.bytes >= this.recycleAfterBytes) slot.recycle = true;
    if (slot.recycle && slot.tasks.size === 0 && slot.worker) {
      const retired = slot.worker;
      slot.worker = undefined; // its exit is then not a loss
      slot.known = new Set();
      void retired.terminate();
      if (!this.closed) this.spawn(slot);
    }
    if ('sealed' in reply) {
      task.resolve(reply.sealed);
      return;
    }
    // The worker may not hold what this task carried; send it again next time.
    for (const ref of task.sent) slot.known.delete(ref);
    // A plain Error: an internal fault (500 / 451 without internals), as in-thread.
    task.reject(new Error(reply.error));
  }
}
