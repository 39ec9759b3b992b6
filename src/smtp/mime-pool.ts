/**
 * Reading submitted messages off the event loop: a few worker threads run
 * readMime (src/smtp/mime-read.ts) one message each, under a deadline and a
 * heap limit. However slow or large a hostile message is to parse, the thread
 * that answers HTTP, SMTP and delivery only copies its bytes in and the
 * results out.
 *
 * Fail closed, and say whose fault it is: a message whose parse outlives the
 * deadline, crashes its worker or exhausts its heap can never be accepted, so
 * it is refused permanently (`message_unparsable`, 550 5.6.0) and the worker
 * is replaced; a worker that cannot start, or a full queue, is the relay's
 * problem (`unavailable`, 451: the client retries later).
 */
import os from 'node:os';
import type { Worker } from 'node:worker_threads';
import { ERROR_CODES, RelayError, type ErrorCode } from '../errors.js';
import { startModuleWorker } from '../worker-thread.js';
import { DEFAULT_MIME_LIMITS, type MimeLimits } from './mime-limits.js';
import type { ParsedMime } from './mime-read.js';

/** Main thread to worker. */
export interface MimeRequest {
  id: number;
  raw: Uint8Array;
  limits: MimeLimits;
}

/** Worker to main thread: readiness once, then one reply per request. */
export type MimeReply =
  | { ready: true }
  | { id: number; parsed: ParsedMime }
  | { id: number; refusal: { code: ErrorCode; message: string } }
  | { id: number; error: string };

/** Options of MimeReader; the defaults suit the relay, tests shrink them. */
export interface MimeReaderOptions {
  /** Worker threads; default min(2, cores). */
  size?: number;
  /** A parse still running after this long is refused and its worker replaced; default 30 s. */
  deadlineMs?: number;
  /** Messages waiting for a worker beyond this are refused as `unavailable`; default 200. */
  maxQueue?: number;
  /** Structure limits handed to the pre-scan and to mailparser. */
  limits?: MimeLimits;
  /**
   * Heap of one worker (V8 old generation), in MB; default 1024. mailparser
   * needs about 560 MB for 24 MB of two-character text lines (the costliest
   * message at the size limit we found), so this bounds memory at two such
   * parses, not at what any message asks for.
   */
  maxHeapMb?: number;
  /** A worker that read a message this large is replaced, releasing its heap; default 8 MiB. */
  recycleAfterBytes?: number;
  /** Told about replaced workers (deadline, crash), for the log. */
  onWorkerLost?: (reason: string) => void;
}

interface Task {
  id: number;
  raw: Uint8Array;
  resolve: (parsed: ParsedMime) => void;
  reject: (err: Error) => void;
}

interface Slot {
  worker: Worker | undefined;
  ready: boolean;
  task: Task | undefined;
  timer: NodeJS.Timeout | undefined;
  /** Replace this worker once its task is done. */
  recycle: boolean;
}

function unparsable(message: string): RelayError {
  return new RelayError('message_unparsable', message);
}

function unavailable(reason: string): RelayError {
  return new RelayError('unavailable', `The relay cannot read messages right now (${reason}); nothing was accepted, try again shortly.`, { retryAfter: 30 });
}

function isErrorCode(code: unknown): code is ErrorCode {
  return typeof code === 'string' && Object.hasOwn(ERROR_CODES, code);
}

/** Turns a worker's message bytes into ParsedMime, a few at a time, each under a deadline. */
export class MimeReader {
  private readonly slots: Slot[];
  private readonly queue: Task[] = [];
  private readonly deadlineMs: number;
  private readonly maxQueue: number;
  private readonly limits: MimeLimits;
  private readonly maxHeapMb: number;
  private readonly recycleAfterBytes: number;
  private nextId = 1;
  private closed = false;

  constructor(private readonly options: MimeReaderOptions = {}) {
    const size = Math.max(1, options.size ?? Math.min(2, os.availableParallelism()));
    this.deadlineMs = options.deadlineMs ?? 30_000;
    this.maxQueue = options.maxQueue ?? 200;
    this.limits = options.limits ?? DEFAULT_MIME_LIMITS;
    this.maxHeapMb = options.maxHeapMb ?? 1024;
    this.recycleAfterBytes = options.recycleAfterBytes ?? 8 * 1024 * 1024;
    this.slots = Array.from({ length: size }, () => ({ worker: undefined, ready: false, task: undefined, timer: undefined, recycle: false }));
  }

  /** The live worker threads (tests and diagnostics). */
  threads(): Worker[] {
    return this.slots.flatMap((s) => (s.worker ? [s.worker] : []));
  }

  /** Reads `raw` in a worker; rejects with a RelayError when the message cannot be carried or read. */
  read(raw: Uint8Array): Promise<ParsedMime> {
    if (this.closed) return Promise.reject(unavailable('shutting down'));
    if (this.queue.length >= this.maxQueue) return Promise.reject(unavailable('too many messages waiting to be read'));
    return new Promise<ParsedMime>((resolve, reject) => {
      this.queue.push({ id: this.nextId++, raw, resolve, reject });
      this.dispatch();
    });
  }

  /** Refuses what is still queued, waits for the messages being read, then stops every worker. */
  async close(): Promise<void> {
    this.closed = true;
    for (const task of this.queue.splice(0)) task.reject(unavailable('shutting down'));
    await Promise.all(
      this.slots.map(async (slot) => {
        while (slot.task) await new Promise((resolve) => setTimeout(resolve, 10));
        await slot.worker?.terminate();
      }),
    );
  }

  private dispatch(): void {
    for (const slot of this.slots) {
      if (slot.task || this.queue.length === 0) continue;
      const task = this.queue.shift()!;
      let worker: Worker;
      try {
        worker = slot.worker ?? this.spawn(slot);
      } catch (err) {
        task.reject(unavailable(`no reader thread could start: ${err instanceof Error ? err.message : String(err)}`));
        continue;
      }
      slot.task = task;
      slot.recycle = task.raw.byteLength >= this.recycleAfterBytes;
      worker.ref();
      const request: MimeRequest = { id: task.id, raw: task.raw, limits: this.limits };
      try {
        // Copied, not moved: the caller keeps its buffer.
        worker.postMessage(request);
      } catch (err) {
        this.finish(slot, () => task.reject(unavailable(`could not reach the reader thread: ${err instanceof Error ? err.message : String(err)}`)));
        continue;
      }
      if (slot.ready) this.startDeadline(slot);
    }
  }

  // The deadline counts the parse, not the thread's start-up (seconds under tsx).
  private startDeadline(slot: Slot): void {
    if (!slot.task || slot.timer) return;
    slot.timer = setTimeout(() => {
      const worker = slot.worker;
      const limit = this.deadlineMs % 1000 === 0 ? `${this.deadlineMs / 1000} s` : `${this.deadlineMs} ms`;
      this.lose(slot, unparsable(`The message could not be read within ${limit}, so it can never be accepted; simplify it (fewer parts, plain text) and send it again.`), 'deadline');
      void worker?.terminate();
    }, this.deadlineMs);
  }

  /** Ends the slot's task with `settle`, retires the worker if due, and moves the queue on. */
  private finish(slot: Slot, settle: () => void): void {
    if (slot.timer) clearTimeout(slot.timer);
    slot.timer = undefined;
    slot.task = undefined;
    slot.worker?.unref();
    if (slot.recycle && slot.worker) {
      // A worker's heap keeps what a large message needed until a GC an idle worker never runs.
      const retired = slot.worker;
      slot.worker = undefined;
      slot.ready = false;
      void retired.terminate();
    }
    settle();
    this.dispatch();
  }

  /** The slot's worker is gone or going: its task (if any) fails with `error`. */
  private lose(slot: Slot, error: RelayError, reason: string): void {
    const task = slot.task;
    slot.worker = undefined;
    slot.ready = false;
    if (task) this.options.onWorkerLost?.(reason);
    this.finish(slot, () => task?.reject(error));
  }

  private spawn(slot: Slot): Worker {
    const worker = startModuleWorker(import.meta.url, 'mime-worker', { resourceLimits: { maxOldGenerationSizeMb: this.maxHeapMb } });
    slot.worker = worker;
    slot.ready = false;
    let failure: { message: string; code?: unknown } | undefined;
    worker.on('message', (reply: MimeReply) => {
      if (slot.worker !== worker) return;
      if ('ready' in reply) {
        slot.ready = true;
        this.startDeadline(slot);
        return;
      }
      const task = slot.task;
      if (!task || task.id !== reply.id) return;
      if ('parsed' in reply) {
        this.finish(slot, () => task.resolve(reply.parsed));
      } else if ('refusal' in reply) {
        const code = isErrorCode(reply.refusal.code) ? reply.refusal.code : 'message_unparsable';
        this.finish(slot, () => task.reject(new RelayError(code, reply.refusal.message)));
      } else {
        // A fault of the relay's own code in the worker: an internal error (451), never blamed on the message.
        this.finish(slot, () => task.reject(new Error(`MIME reader: ${reply.error}`)));
      }
    });
    worker.on('error', (err: Error & { code?: unknown }) => {
      failure = { message: err.message, code: err.code };
    });
    // After the listeners: adding a 'message' listener refs the worker again.
    // An idle worker does not keep the process alive; a busy one does (see dispatch).
    worker.unref();
    worker.on('exit', (code) => {
      if (slot.worker !== worker) return;
      if (!slot.ready) {
        // It never got as far as reading: the relay's problem, not the message's.
        this.lose(slot, unavailable(`the reader thread did not start: ${failure?.message ?? `exit ${code}`}`), 'start');
        return;
      }
      const outOfMemory = failure?.code === 'ERR_WORKER_OUT_OF_MEMORY';
      this.lose(
        slot,
        unparsable(
          outOfMemory
            ? 'Reading the message needs more memory than the relay gives one message, so it can never be accepted; send smaller or fewer parts.'
            : 'The message made the MIME parser fail, so it can never be accepted; send it again from a standard mail client.',
        ),
        failure ? `crash: ${failure.message}` : `exit ${code}`,
      );
    });
    return worker;
  }
}

let shared: MimeReader | undefined;

/** The process's MimeReader with the default options, started on first use; its idle threads do not hold the process open. */
export function sharedMimeReader(): MimeReader {
  shared ??= new MimeReader();
  return shared;
}
