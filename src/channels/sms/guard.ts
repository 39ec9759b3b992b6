/**
 * The last line of defence of rule `sms`: whatever reached the queue, an SMS
 * channel sends nothing but the fixed nudge, and only to an E.164 number.
 */
import { loadTemplate } from '../../templates.js';
import { DeliveryError, type OutgoingDelivery } from '../channel.js';

const E164 = /^\+[1-9]\d{6,14}$/;

/** The phone number and the nudge to send, or a permanent DeliveryError when the delivery is anything else. */
export function nudgeFor(delivery: OutgoingDelivery): { to: string; nudge: string } {
  if (delivery.envelope.kind !== 'sms') throw new DeliveryError('not an SMS envelope', false);
  const to = delivery.envelope.to;
  if (!E164.test(to)) throw new DeliveryError('the SMS envelope holds no E.164 number', false);
  const nudge = loadTemplate('sms-nudge');
  // Compared as bytes: the queue holds bytes, and no decoding may turn other text into the nudge.
  if (!Buffer.isBuffer(delivery.body) || !delivery.body.equals(Buffer.from(nudge, 'utf8'))) {
    throw new DeliveryError('refused: an SMS body other than the fixed nudge reached the channel (rule sms)', false);
  }
  return { to, nudge };
}
