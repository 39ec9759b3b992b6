/**
 * One MIME-reading worker thread of src/smtp/mime-pool.ts: it runs readMime
 * (pre-scan and mailparser) on one message at a time, off the event loop that
 * answers HTTP and SMTP, and sends back the plain values or the refusal.
 */
import { parentPort } from 'node:worker_threads';
import { RelayError } from '../errors.js';
import { readMime } from './mime-read.js';
import type { MimeReply, MimeRequest } from './mime-pool.js';

if (!parentPort) throw new Error('mime-worker.ts runs only as a worker thread of src/smtp/mime-pool.ts');
const port = parentPort;

// Attachment buffers that own their whole ArrayBuffer are moved, not copied;
// small ones (from Node's shared allocation pool) are copied.
function movable(parsed: { attachments: { content: Uint8Array }[] }): ArrayBuffer[] {
  const buffers = new Set<ArrayBuffer>();
  for (const { content } of parsed.attachments) {
    const whole = content.byteOffset === 0 && content.byteLength === content.buffer.byteLength;
    if (whole && content.buffer instanceof ArrayBuffer) buffers.add(content.buffer);
  }
  return [...buffers];
}

async function handle(request: MimeRequest): Promise<MimeReply> {
  try {
    return { id: request.id, parsed: await readMime(request.raw, request.limits) };
  } catch (err) {
    if (err instanceof RelayError) return { id: request.id, refusal: { code: err.code, message: err.message } };
    return { id: request.id, error: err instanceof Error ? err.message : String(err) };
  }
}

port.on('message', (request: MimeRequest) => {
  void handle(request).then((reply) => port.postMessage(reply, 'parsed' in reply ? movable(reply.parsed) : []));
});
port.postMessage({ ready: true } satisfies MimeReply);
