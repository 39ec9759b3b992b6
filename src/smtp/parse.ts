/**
 * Turns a submitted message (the DATA bytes and the SMTP envelope) into the
 * EmailSubmission the HTTP route builds, so both feed one pipeline.
 *
 * The envelope decides who receives the message: header-only recipients are
 * ignored, envelope recipients absent from To/Cc are Bcc. Only the content is
 * taken from the message; every client header (X-*, User-Agent, Received, …)
 * is dropped because the composer writes all headers itself. What the client
 * claimed as its sender (MAIL FROM, From:, Sender:) goes to the policy's
 * `sender` rule.
 */
import addressparser, { type Address as ParsedAddress } from 'nodemailer/lib/addressparser';
import { simpleParser, type AddressObject, type ParsedMail } from 'mailparser';
import { invalid } from '../errors.js';
import type { Attachment } from '../mime/compose.js';
import type { EmailSubmission } from '../services/emails.js';
import { isEmailAddress, isMessageId } from '../validation.js';

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

const CONTENT_TYPE = /^[a-z0-9][a-z0-9!#$&^_.+-]{0,126}\/[a-z0-9][a-z0-9!#$&^_.+-]{0,126}$/i;
const MAX_REFERENCES = 100;
const MAX_SUBJECT = 998;

function flatten(list: readonly ParsedAddress[]): string[] {
  return list.flatMap((a) => (a.group ? flatten(a.group) : [a.address]));
}

function addressesOf(field: AddressObject | AddressObject[] | undefined): Set<string> {
  const objects = field === undefined ? [] : Array.isArray(field) ? field : [field];
  return new Set(objects.flatMap((o) => flatten(o.value as ParsedAddress[])).map((a) => a.trim().toLowerCase()).filter((a) => a !== ''));
}

// The value of every raw header line named `key`, unfolded (RFC 5322 §2.2.3).
// mailparser keeps only the last From:, so a second From: would go unseen otherwise.
function rawHeaderValues(mail: ParsedMail, key: string): string[] {
  return mail.headerLines.filter((h) => h.key === key).map((h) => h.line.slice(h.line.indexOf(':') + 1).replace(/\r?\n[ \t]/g, ' ').trim());
}

function claimedSenders(mail: ParsedMail, mailFrom: string): string[] {
  const header = ['from', 'sender'].flatMap((key) => rawHeaderValues(mail, key).flatMap((value) => flatten(addressparser(value))));
  // An empty or unparsable mailbox is a claim too: it is not the authenticated address, so `sender` refuses it.
  return [...new Set([mailFrom, ...header].map((a) => a.trim().toLowerCase()))];
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

/** Parses the DATA bytes and maps them, with the envelope, to an EmailSubmission; RelayError invalid_request when they cannot be carried. */
export async function parseSubmission(raw: Buffer, envelope: SmtpEnvelope): Promise<ParsedSubmission> {
  // keepCidLinks/skip*: take the parts as they are; rewriting HTML or linkifying text is not the relay's business.
  const mail = await simpleParser(raw, { keepCidLinks: true, skipImageLinks: true, skipTextToHtml: true, skipTextLinks: true });

  const envelopeRecipients = [...new Set(envelope.rcptTo.map((a) => a.trim().toLowerCase()))];
  const bad = envelopeRecipients.find((a) => !isEmailAddress(a));
  if (bad !== undefined) throw invalid(`"${bad.slice(0, 80)}" is not an email address such as name@corp.example.`);
  const toHeader = addressesOf(mail.to);
  const ccHeader = addressesOf(mail.cc);
  const to = envelopeRecipients.filter((a) => toHeader.has(a));
  const cc = envelopeRecipients.filter((a) => !toHeader.has(a) && ccHeader.has(a));
  const bcc = envelopeRecipients.filter((a) => !toHeader.has(a) && !ccHeader.has(a));
  if (to.length === 0) throw invalid('None of the envelope recipients is in the To: header; address at least one recipient in To.');

  const subject = (mail.subject ?? '').replace(/[\x00-\x1f\x7f]+/g, ' ').trim();
  if (subject.length > MAX_SUBJECT) throw invalid(`The subject is ${subject.length} characters; at most ${MAX_SUBJECT}.`);

  const inReplyToIds = messageIds(mail.inReplyTo ? [mail.inReplyTo] : [], 'In-Reply-To');
  const references = messageIds(mail.references === undefined ? [] : Array.isArray(mail.references) ? mail.references : [mail.references], 'References');
  // In-Reply-To may name several parents (RFC 5322 §3.6.4); the extra ones still belong to the chain.
  const chain = [...new Set([...references, ...inReplyToIds.slice(1)])];
  if (chain.length > MAX_REFERENCES) throw invalid(`The References header names ${chain.length} messages; at most ${MAX_REFERENCES}.`);

  const attachments: Attachment[] = mail.attachments.map((a, i) => ({
    filename: attachmentName(a.filename, i),
    contentType: CONTENT_TYPE.test(a.contentType) ? a.contentType.toLowerCase() : 'application/octet-stream',
    content: a.content,
  }));

  return {
    submission: {
      to,
      cc,
      bcc,
      subject: subject === '' ? undefined : subject,
      text: mail.text ?? '',
      html: typeof mail.html === 'string' && mail.html !== '' ? mail.html : undefined,
      inReplyTo: inReplyToIds[0],
      references: chain.length > 0 ? chain : undefined,
      attachments,
      claimedSenders: claimedSenders(mail, envelope.mailFrom),
    },
    xIncident: rawHeaderValues(mail, 'x-incident'),
  };
}
