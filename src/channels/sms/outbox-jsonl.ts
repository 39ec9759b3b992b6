/**
 * The embedded default when Twilio is not configured: each nudge becomes one
 * JSON line `{"id","to","body","at"}` appended to <data>/outbox/sms.jsonl, so a
 * new user can see what would have been texted.
 */
import fs from 'node:fs';
import path from 'node:path';
import { DeliveryError, type Channel, type OutgoingDelivery, type SendReceipt } from '../channel.js';
import { nudgeFor } from './guard.js';

/** Appends each delivery to `file` (created 0600), one fsynced line per nudge. */
export function createSmsOutboxChannel(file: string, now: () => Date = () => new Date()): Channel {
  fs.mkdirSync(path.dirname(file), { recursive: true, mode: 0o700 });
  return {
    async send(delivery: OutgoingDelivery): Promise<SendReceipt> {
      const { to, nudge } = nudgeFor(delivery);
      const at = now();
      const line = `${JSON.stringify({ id: delivery.id, to, body: nudge, at: at.toISOString() })}\n`;
      try {
        // One write() on an O_APPEND descriptor: concurrent deliveries never interleave inside a line.
        const handle = await fs.promises.open(file, 'a', 0o600);
        try {
          await handle.write(line);
          await handle.sync();
        } finally {
          await handle.close();
        }
      } catch (err) {
        throw new DeliveryError(`cannot append to ${file}: ${(err as NodeJS.ErrnoException).code ?? 'error'}`, true);
      }
      return { id: `sms.jsonl:${delivery.id}`, at };
    },
  };
}
