/**
 * One encryption worker thread of src/pgp/pool.ts. It holds the relay signing
 * key and a cache of parsed recipient keys, and runs the very same
 * sealPayload as the main thread, so the bytes format cannot drift.
 */
import { parentPort, workerData } from 'node:worker_threads';
import * as openpgp from 'openpgp';
import { sealPayload } from './encrypt.js';
import type { PoolReply, PoolRequest, PoolWorkerData } from './pool.js';

if (!parentPort) throw new Error('pool-worker.ts runs only as a worker thread of src/pgp/pool.ts');
const port = parentPort;
const data = workerData as PoolWorkerData;

// Parsed once per worker; a key that does not parse fails every task (never an unsigned message).
const signingKey = openpgp.readPrivateKey({ binaryKey: data.signingKey });
signingKey.catch(() => undefined); // reported per task below, not as an unhandled rejection

// Cache key -> parse in progress or done. Promises are stored synchronously on
// arrival, so a later request that names a key by reference only always finds
// the parse its earlier sibling started, whatever order the awaits finish in.
const keys = new Map<string, Promise<openpgp.PublicKey>>();

function keyFor(ref: string, binary: Uint8Array | undefined): Promise<openpgp.PublicKey> {
  if (binary !== undefined) {
    const parsing = openpgp.readKey({ binaryKey: binary });
    keys.set(ref, parsing);
    // A key that fails to parse must not poison the cache for a corrected resend.
    parsing.catch(() => {
      if (keys.get(ref) === parsing) keys.delete(ref);
    });
    return parsing;
  }
  const cached = keys.get(ref);
  return cached ?? Promise.reject(new Error(`encryption worker: recipient key ${ref} was never sent to this worker`));
}

port.on('message', (request: PoolRequest) => {
  if (request.forget) keys.clear();
  // Synchronous up to here, see `keys` above.
  const recipients = request.keys.map((k) => keyFor(k.ref, k.binary));
  void (async (): Promise<void> => {
    let reply: PoolReply;
    try {
      const keys = await Promise.all(recipients);
      const copies = request.copies.map((indexes) =>
        indexes.map((i) => {
          const key = keys[i];
          if (key === undefined) throw new Error(`encryption worker: copy names key ${i}, which the request does not carry`);
          return key;
        }),
      );
      const sealed = await sealPayload(request.payload, { copies, signingKey: await signingKey, date: new Date(request.date) });
      reply = { id: request.id, sealed };
    } catch (err) {
      // The message only: stacks and key material stay in this thread.
      reply = { id: request.id, error: err instanceof Error ? err.message : String(err) };
    }
    // The shared payload's memory is moved, not copied (a 25 MB attachment
    // encrypts to 34 MB); the key packets are small and copied.
    const shared = 'sealed' in reply ? reply.sealed.shared : undefined;
    const movable = shared !== undefined && shared.byteOffset === 0 && shared.byteLength === shared.buffer.byteLength && shared.buffer instanceof ArrayBuffer;
    port.postMessage(reply, movable ? [shared.buffer as ArrayBuffer] : []);
  })();
});
