/**
 * The embedded default when RELAY_SMTP_UPSTREAM is unset: each delivery is
 * written as an .eml file under <data>/outbox/, so a new user can open it.
 */
import fs from 'node:fs';
import path from 'node:path';
import { DeliveryError, type Channel, type OutgoingDelivery, type SendReceipt } from '../channel.js';

/** Writes each delivery atomically (temp file, fsync, rename) as <outbox>/<delivery id>.eml. */
export function createOutboxDirChannel(dir: string): Channel {
  fs.mkdirSync(dir, { recursive: true, mode: 0o700 });
  return {
    async send(delivery: OutgoingDelivery): Promise<SendReceipt> {
      if (delivery.envelope.kind !== 'email') throw new DeliveryError('not an email envelope', false);
      const name = `${delivery.id}.eml`;
      const final = path.join(dir, name);
      const temp = path.join(dir, `.${name}.tmp`);
      try {
        const handle = await fs.promises.open(temp, 'w', 0o600);
        try {
          if (Buffer.isBuffer(delivery.body)) await handle.writeFile(delivery.body);
          else for (const chunk of delivery.body.chunks()) await handle.write(chunk);
          await handle.sync();
        } finally {
          await handle.close();
        }
        await fs.promises.rename(temp, final);
      } catch (err) {
        throw new DeliveryError(`cannot write ${final}: ${(err as NodeJS.ErrnoException).code ?? 'error'}`, true);
      }
      return { id: name, at: new Date() };
    },
  };
}
