/**
 * Turns a submitted message (the DATA bytes and the SMTP envelope) into the
 * EmailSubmission the HTTP route builds, so both feed one pipeline.
 *
 * The envelope decides who receives the message: header-only recipients are
 * not delivered to, envelope recipients absent from To/Cc are Bcc. Every
 * address in the envelope and in To/Cc/From/Sender must still pass the
 * relay's one address grammar (src/mail/address.ts): a routed address is
 * refused wherever it appears, never ignored. Only the content is
 * taken from the message; every client header (X-*, User-Agent, Received, …)
 * is dropped because the composer writes all headers itself. What the client
 * claimed as its sender (MAIL FROM, From:, Sender:) goes to the policy's
 * `sender` rule. The MIME is read off the event loop (src/smtp/mime-pool.ts).
 */
import { RelayError, invalid } from '../errors.js';
import { addressHint, normaliseAddress, shownAddress } from '../mail/address.js';
import type { Attachment } from '../mime/compose.js';
import type { EmailSubmission } from '../services/emails.js';
import { isContentType, isMessageId } from '../validation.js';
import { sharedMimeReader, type MimeReader } from './mime-pool.js';
import type { MimeAddress } from './mime-read.js';

/** The SMTP envelope of one transaction, addresses as the client gave them. */
export interface SmtpEnvelope {
  mailFrom: string;
  rcptTo: readonly string[];
}

/** The submission plus what only incident resolution needs. */
export interface ParsedSubmission {
  submission: EmailSubmission;
  /** Every X-Incident header value, trimmed, in order. */
  xIncident: string[];
}

const MAX_REFERENCES = 100;
const MAX_SUBJECT = 998;

/**
 * An envelope address (MAIL FROM, RCPT TO) by the relay's one grammar,
 * normalised; RelayError invalid_request with the hint otherwise.
 * smtp-server has already dropped an RFC 5321 source route (`<@a,@b:user@c>`
 * becomes `user@c`, as §4.1.2 and appendix C say a server must accept and
 * should ignore it), so no route ever reaches the relay from the envelope; a
 * quoted local part (`<"x"@c>`) arrives with its quotes and is refused here.
 */
export function envelopeAddress(value: string, command: 'MAIL FROM' | 'RCPT TO'): string {
  return normaliseAddress(value.trim(), command);
}

/**
 * Every address in a header's parsed list, normalised, groups flattened. A
 * routed or malformed address is refused, not ignored, even in a header the
 * relay does not deliver by. An entry without an address (a bare name, an
 * empty group) gives '' when `keepEmpty`, and nothing otherwise.
 */
function headerAddresses(list: readonly MimeAddress[], header: string, keepEmpty: boolean): string[] {
  return list.flatMap((a): string[] => {
    if (a.group !== undefined) {
      // "@relay:user@domain" without angle brackets parses as a group named "@relay".
      if ((a.name ?? '').trim().startsWith('@')) {
        throw new RelayError('invalid_request', `The ${header}: header holds "${shownAddress(`${a.name ?? ''}:`)}...": ${addressHint('source_route')}.`, {
          details: { field: header, reason: 'source_route' },
        });
      }
      return headerAddresses(a.group, header, keepEmpty);
    }
    const address = (a.address ?? '').trim();
    if (address === '') return keepEmpty ? [''] : [];
    return [normaliseAddress(address, `The ${header}: header address`)];
  });
}

function claimedSenders(from: readonly MimeAddress[], sender: readonly MimeAddress[], mailFrom: string): string[] {
  // An empty or unparsable mailbox is a claim too: it is not the authenticated address, so `sender` refuses it.
  const envelope = mailFrom.trim() === '' ? '' : envelopeAddress(mailFrom, 'MAIL FROM');
  return [...new Set([envelope, ...headerAddresses(from, 'From', true), ...headerAddresses(sender, 'Sender', true)])];
}

function messageIds(values: readonly string[], header: string): string[] {
  const ids = values.flatMap((v) => v.split(/\s+/)).filter((v) => v !== '');
  // The check the HTTP route and the composer use, so what passes here is never refused later.
  const bad = ids.find((id) => !isMessageId(id));
  // Fail closed: a chain that cannot be read cannot be checked for external participants (rule `encryption`).
  if (bad !== undefined) throw invalid(`The ${header} header holds "${bad.slice(0, 80)}", which is not a Message-ID such as <id@host>; reply from the original message.`);
  return ids;
}

// Attachment names are labels, never paths: the HTTP route refuses these characters; a mail client
// chose the name from a local file, so it is cleaned instead of refusing the whole message.
function attachmentName(name: string | undefined, index: number): string {
  const cleaned = (name ?? '')
    .replace(/[\x00-\x1f\x7f/\\]+/g, '_')
    .replace(/^[.\s]+/, '')
    .trim()
    .slice(0, 255);
  return cleaned === '' ? `attachment-${index + 1}` : cleaned;
}

/**
 * Reads the DATA bytes (in a worker thread, under the limits and deadline of
 * `reader`) and maps them, with the envelope, to an EmailSubmission. RelayError
 * invalid_request when they cannot be carried; payload_too_large or
 * message_unparsable when the MIME itself is over the limits or unreadable.
 */
export async function parseSubmission(raw: Buffer, envelope: SmtpEnvelope, reader: MimeReader = sharedMimeReader()): Promise<ParsedSubmission> {
  const envelopeRecipients = [...new Set(envelope.rcptTo.map((a) => envelopeAddress(a, 'RCPT TO')))];
  const mail = await reader.read(raw);

  const toHeader = new Set(headerAddresses(mail.to, 'To', false));
  const ccHeader = new Set(headerAddresses(mail.cc, 'Cc', false));
  const claimed = claimedSenders(mail.from, mail.sender, envelope.mailFrom);
  const to = envelopeRecipients.filter((a) => toHeader.has(a));
  const cc = envelopeRecipients.filter((a) => !toHeader.has(a) && ccHeader.has(a));
  const bcc = envelopeRecipients.filter((a) => !toHeader.has(a) && !ccHeader.has(a));
  if (to.length === 0) throw invalid('None of the envelope recipients is in the To: header; address at least one recipient in To.');

  const subject = (mail.subject ?? '').replace(/[\x00-\x1f\x7f]+/g, ' ').trim();
  if (subject.length > MAX_SUBJECT) throw invalid(`The subject is ${subject.length} characters; at most ${MAX_SUBJECT}.`);

  const inReplyToIds = messageIds(mail.inReplyTo ? [mail.inReplyTo] : [], 'In-Reply-To');
  const references = messageIds(mail.references, 'References');
  // In-Reply-To may name several parents (RFC 5322 §3.6.4); the extra ones still belong to the chain.
  const chain = [...new Set([...references, ...inReplyToIds.slice(1)])];
  if (chain.length > MAX_REFERENCES) throw invalid(`The References header names ${chain.length} messages; at most ${MAX_REFERENCES}.`);

  const attachments: Attachment[] = mail.attachments.map((a, i) => ({
    filename: attachmentName(a.filename, i),
    contentType: isContentType(a.contentType) ? a.contentType.toLowerCase() : 'application/octet-stream',
    // A worker's Buffer arrives as a Uint8Array view; a Buffer over the same bytes, not a copy.
    content: Buffer.from(a.content.buffer, a.content.byteOffset, a.content.byteLength),
  }));

  return {
    submission: {
      to,
      cc,
      bcc,
      subject: subject === '' ? undefined : subject,
      text: mail.text,
      html: mail.html,
      inReplyTo: inReplyToIds[0],
      references: chain.length > 0 ? chain : undefined,
      attachments,
      claimedSenders: claimed,
      // Kept only as an alias for chain lookups, never written to a header; one that is not a well-formed Message-ID is just not kept.
      clientMessageId: mail.messageId !== undefined && isMessageId(mail.messageId) ? mail.messageId : undefined,
    },
    xIncident: mail.xIncident,
  };
}
