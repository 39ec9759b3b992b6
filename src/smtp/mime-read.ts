/**
 * Reads submitted message bytes into the plain values the relay takes from
 * them (ParsedMime): the limits pre-scan, then mailparser with everything the
 * relay does not need switched off, then the few fields, copied out.
 *
 * This is the phase that runs in a worker thread (src/smtp/mime-worker.ts,
 * driven by src/smtp/mime-pool.ts), so its result is structured-clone data
 * only. It decides nothing about addresses or policy: src/smtp/parse.ts does.
 */
import { simpleParser, type AddressObject, type ParsedMail, type SimpleParserOptions } from 'mailparser';
import addressparser from 'nodemailer/lib/addressparser';
import { RelayError } from '../errors.js';
import { DEFAULT_MIME_LIMITS, checkMimeLimits, type MimeLimits } from './mime-limits.js';

/** A mailbox or group as the address parsers give it. */
export interface MimeAddress {
  name?: string;
  address?: string;
  group?: MimeAddress[];
}

/** A file part of the message. */
export interface MimeAttachment {
  filename: string | undefined;
  contentType: string;
  content: Uint8Array;
}

/** What the relay takes from a submitted message; nothing else of it survives. */
export interface ParsedMime {
  /** Every From: line, each parsed (mailparser itself keeps only the last). */
  from: MimeAddress[];
  /** Every Sender: line, parsed. */
  sender: MimeAddress[];
  /** To: and Cc: as mailparser reads them (encoded words decoded). */
  to: MimeAddress[];
  cc: MimeAddress[];
  /** Every X-Incident value, trimmed. */
  xIncident: string[];
  subject: string | undefined;
  /** The client's own Message-ID, kept as an alias of the relay's (replies from a Sent folder). */
  messageId: string | undefined;
  inReplyTo: string | undefined;
  references: string[];
  text: string;
  html: string | undefined;
  attachments: MimeAttachment[];
}

// The value of every raw header line named `key`, unfolded (RFC 5322 §2.2.3).
function rawHeaderValues(mail: ParsedMail, key: string): string[] {
  return mail.headerLines.filter((h) => h.key === key).map((h) => h.line.slice(h.line.indexOf(':') + 1).replace(/\r?\n[ \t]/g, ' ').trim());
}

function plainAddresses(list: readonly MimeAddress[]): MimeAddress[] {
  return list.map((a) => ({
    ...(a.name !== undefined ? { name: a.name } : {}),
    ...(a.address !== undefined ? { address: a.address } : {}),
    ...(a.group !== undefined ? { group: plainAddresses(a.group) } : {}),
  }));
}

function addressesOf(field: AddressObject | AddressObject[] | undefined): MimeAddress[] {
  const objects = field === undefined ? [] : Array.isArray(field) ? field : [field];
  return objects.flatMap((o) => plainAddresses(o.value as MimeAddress[]));
}

/**
 * The parser's options: nothing rewritten or derived. html-to-text is off: it
 * runs synchronously and was the 73-second stall on 300,000 `<div>`s (and the
 * relay only carries the HTML as it is). mailsplit's own limits repeat the
 * pre-scan's, as a second line.
 */
function parserOptions(limits: MimeLimits): SimpleParserOptions {
  return {
    keepCidLinks: true,
    skipImageLinks: true,
    skipTextToHtml: true,
    skipTextLinks: true,
    skipHtmlToText: true,
    ...({ maxHeadSize: limits.maxHeaderBlock, maxChildNodes: limits.maxParts } as Record<string, number>),
  };
}

/** The refusal for whatever the parser could not read; mailsplit's limit errors keep their meaning. */
function parseRefusal(err: unknown): RelayError {
  if (err instanceof RelayError) return err;
  const code = (err as { code?: unknown } | null)?.code;
  const message = err instanceof Error ? err.message : '';
  if (code === 'EMAXLEN' && /child nodes/i.test(message)) {
    return new RelayError('payload_too_large', 'The message has too many MIME parts; send fewer attachments, or put them in one archive.', { cause: err });
  }
  if (code === 'EMAXLEN') {
    return new RelayError('payload_too_large', 'A header block of the message is too large; send it with fewer or shorter headers.', { cause: err });
  }
  // Never the parser's own text: it can quote the message (a charset name, a header).
  return new RelayError('message_unparsable', 'The message could not be read as MIME (RFC 2045-2049); send it again from a standard mail client.', { cause: err });
}

/** Pre-scans and parses `raw`; RelayError payload_too_large or message_unparsable when it cannot be carried. */
export async function readMime(raw: Uint8Array, limits: MimeLimits = DEFAULT_MIME_LIMITS): Promise<ParsedMime> {
  checkMimeLimits(raw, limits);
  let mail: ParsedMail;
  try {
    mail = await simpleParser(Buffer.from(raw.buffer, raw.byteOffset, raw.byteLength), parserOptions(limits));
  } catch (err) {
    throw parseRefusal(err);
  }
  const references = mail.references === undefined ? [] : Array.isArray(mail.references) ? mail.references : [mail.references];
  return {
    from: rawHeaderValues(mail, 'from').flatMap((v) => plainAddresses(addressparser(v))),
    sender: rawHeaderValues(mail, 'sender').flatMap((v) => plainAddresses(addressparser(v))),
    to: addressesOf(mail.to),
    cc: addressesOf(mail.cc),
    xIncident: rawHeaderValues(mail, 'x-incident'),
    subject: mail.subject,
    messageId: mail.messageId,
    inReplyTo: mail.inReplyTo,
    references,
    text: mail.text ?? '',
    html: typeof mail.html === 'string' && mail.html !== '' ? mail.html : undefined,
    attachments: mail.attachments.map((a) => ({ filename: a.filename, contentType: a.contentType, content: a.content })),
  };
}
