/**
 * A linear pre-scan of submitted message bytes, run before mailparser sees
 * them: it bounds how many MIME parts there are and how large any header
 * field, any part's header block and all header blocks together are.
 * mailparser's header handling (address lists, parameters, encoded words) is
 * where hostile input got expensive (an 800 KB `To: a:a:a…` cost ~5 s per
 * part), so what it is handed is capped here first.
 *
 * It mirrors the splitter mailparser uses (@zone-eu/mailsplit) from the safe
 * side: every line mailsplit could read as a header line is one here too.
 * A part starts at the top, after a delimiter line of any boundary declared
 * so far (mailsplit only knows the current part's and its parent's, a subset),
 * and after the header block of any message/rfc822 part that is not base64 or
 * quoted-printable encoded (mailsplit also needs `inline`); boundaries come from
 * every Content-Type field, parsed exactly as libmime's parseHeaderValue does.
 * Over-counting can only refuse a message, never let a larger one through.
 * mailsplit's own maxHeadSize and maxChildNodes are set to the same limits as
 * a second line (src/smtp/mime-read.ts).
 *
 * Work is one pass over the bytes: a body line costs a byte comparison unless
 * it starts with `--` and is short enough to be a delimiter; a header line is
 * looked at only until the header limits are reached.
 */
import { RelayError } from '../errors.js';

/** The limits of one message's structure. */
export interface MimeLimits {
  /** MIME parts (entities), the message itself and every multipart container included. */
  maxParts: number;
  /** One header field, unfolded: name, colon and value. */
  maxHeaderField: number;
  /** One part's header block. */
  maxHeaderBlock: number;
  /** All header blocks of the message together. */
  maxHeaderTotal: number;
}

/**
 * Defaults: generous for mail people write (a To: of 100 named recipients is
 * about 7 KB; a message with 100 attachments has about 105 parts), small
 * enough that mailparser's worst case on them stays well under a second.
 */
export const DEFAULT_MIME_LIMITS: MimeLimits = {
  maxParts: 250,
  maxHeaderField: 32 * 1024,
  maxHeaderBlock: 128 * 1024,
  maxHeaderTotal: 512 * 1024,
};

// RFC 2046 §5.1.1 allows 70; longer is refused rather than compared against every line.
const MAX_BOUNDARY = 200;

const LF = 0x0a;
const CR = 0x0d;
const DASH = 0x2d;
const SP = 0x20;
const TAB = 0x09;

function tooLarge(message: string): RelayError {
  return new RelayError('payload_too_large', message);
}

function unparsable(message: string): RelayError {
  return new RelayError('message_unparsable', message);
}

/** Printable name of a header field for a refusal: its token characters, at most 40. */
function fieldName(field: string): string {
  const colon = field.indexOf(':');
  const name = (colon < 0 ? field : field.slice(0, colon)).trim().replace(/[^A-Za-z0-9-]/g, '').slice(0, 40);
  return name === '' ? 'a' : `the ${name}`;
}

/**
 * libmime's parseHeaderValue, the parameter part only: the same character
 * state machine (quotes toggle anywhere, backslash escapes, whitespace outside
 * quotes dropped), so a boundary is read here exactly as the splitter reads it.
 */
export function headerParams(value: string): { value: string; params: Map<string, string> } {
  const params = new Map<string, string>();
  let main = '';
  let key: string | undefined;
  let inKey = false;
  let collected = '';
  let end = 0;
  let quote = false;
  let escaped = false;
  const commit = (): void => {
    const text = collected.slice(0, end);
    collected = '';
    end = 0;
    if (inKey) {
      if (text !== '') params.set(text.toLowerCase(), '');
    } else if (key === undefined) {
      main = text;
    } else {
      params.set(key, text);
    }
  };
  for (let i = 0; i < value.length; i++) {
    const chr = value[i]!;
    // libmime's isWSP: ASCII only, so a byte read as latin1 here is never whitespace where it is not there.
    const wsp = chr === ' ' || chr === '\t' || chr === '\r' || chr === '\n' || chr === '\f' || chr === '\v';
    if (inKey) {
      if (chr === '=') {
        key = collected.slice(0, end).toLowerCase();
        collected = '';
        end = 0;
        inKey = false;
      } else if (chr === ';') {
        commit();
      } else if (wsp) {
        if (collected.length > 0) collected += chr;
      } else {
        collected += chr;
        end = collected.length;
      }
      continue;
    }
    if (escaped) {
      collected += chr;
      end = collected.length;
    } else if (chr === '\\') {
      escaped = true;
      continue;
    } else if (chr === '"') {
      quote = !quote;
    } else if (!quote && chr === ';') {
      commit();
      inKey = true;
    } else if (!quote && wsp) {
      if (collected.length > 0) collected += chr;
    } else {
      collected += chr;
      end = collected.length;
    }
    escaped = false;
  }
  commit();
  return { value: main, params };
}

interface PartFacts {
  rfc822: boolean;
  sawContentType: boolean;
  disposition: boolean;
  encodings: string[];
}

function newPartFacts(): PartFacts {
  return { rfc822: false, sawContentType: false, disposition: false, encodings: [] };
}

/** What one finished header field contributes to the structure. */
interface FieldFacts {
  boundary?: string;
  rfc822?: boolean;
  /** Content-Transfer-Encoding, lowercased and trimmed. */
  encoding?: string;
  disposition?: boolean;
}

// libmime's decodeHeader: unfold, then the value after the first colon, trimmed.
function fieldFacts(field: string, partNumber: number): FieldFacts {
  const colon = field.indexOf(':');
  if (colon < 0) return {};
  const name = field.slice(0, colon).trim().toLowerCase();
  if (name !== 'content-type' && name !== 'content-transfer-encoding' && name !== 'content-disposition') return {};
  const value = field
    .slice(colon + 1)
    .replace(/(?:\r?\n|\r)[ \t]*/g, ' ')
    .trim();
  if (name === 'content-transfer-encoding') return { encoding: value.toLowerCase() };
  if (name === 'content-disposition') return { disposition: true };
  const parsed = headerParams(value);
  const facts: FieldFacts = { rfc822: parsed.value.toLowerCase().trim() === 'message/rfc822' };
  for (const key of parsed.params.keys()) {
    // RFC 2231 continuations would make libmime assemble a boundary from pieces (and override a plain one).
    if (key.startsWith('boundary*')) {
      throw unparsable(`MIME part ${partNumber} gives its boundary in RFC 2231 form (boundary*=); send it with a plain boundary parameter.`);
    }
  }
  const boundary = parsed.params.get('boundary');
  if (boundary !== undefined && boundary !== '') {
    // RFC 2046 §5.1.1 bchars are printable ASCII; anything else could be read differently by the splitter.
    if (boundary.length > MAX_BOUNDARY || /[^\x20-\x7e]/.test(boundary)) {
      throw unparsable(`MIME part ${partNumber} declares a boundary that is not 1-${MAX_BOUNDARY} printable ASCII characters (RFC 2046 section 5.1.1); the message cannot be read.`);
    }
    facts.boundary = boundary;
  }
  return facts;
}

/**
 * Throws RelayError `payload_too_large` when a header field, a header block or
 * all headers together are over `limits`, or there are more than
 * `limits.maxParts` MIME parts; `message_unparsable` for a boundary the relay
 * will not read. Linear in `raw.length`.
 */
export function checkMimeLimits(raw: Uint8Array, limits: MimeLimits = DEFAULT_MIME_LIMITS): void {
  const bytes = Buffer.from(raw.buffer, raw.byteOffset, raw.byteLength);
  const boundaries = new Set<string>();
  let longestBoundary = 0;

  let parts = 0;
  let inHead = false;
  let blockBytes = 0;
  let totalBytes = 0;
  let field = '';
  let partFacts = newPartFacts();

  const startPart = (): void => {
    parts++;
    if (parts > limits.maxParts) {
      throw tooLarge(`The message has more than ${limits.maxParts} MIME parts; send fewer attachments, or put them in one archive.`);
    }
    inHead = true;
    blockBytes = 0;
    field = '';
    partFacts = newPartFacts();
  };

  const finishField = (): void => {
    if (field === '') return;
    const facts = fieldFacts(field, parts);
    field = '';
    if (facts.boundary !== undefined && !boundaries.has(facts.boundary)) {
      boundaries.add(facts.boundary);
      longestBoundary = Math.max(longestBoundary, facts.boundary.length);
    }
    if (facts.rfc822 !== undefined) {
      partFacts.sawContentType = true;
      if (facts.rfc822) partFacts.rfc822 = true;
    }
    if (facts.disposition) partFacts.disposition = true;
    if (facts.encoding !== undefined) partFacts.encodings.push(facts.encoding);
  };

  const countHeaderBytes = (length: number): void => {
    blockBytes += length;
    totalBytes += length;
    if (blockBytes > limits.maxHeaderBlock) {
      throw tooLarge(`The header block of MIME part ${parts} is larger than ${limits.maxHeaderBlock} bytes; send it with fewer or shorter headers.`);
    }
    if (totalBytes > limits.maxHeaderTotal) {
      throw tooLarge(`The message's header blocks add up to more than ${limits.maxHeaderTotal} bytes; send it with fewer or shorter headers.`);
    }
  };

  // After a header block: an embedded message starts another header block at
  // once. Without a Content-Type a part is message/rfc822 when its disposition
  // names a .eml file, so any part with a disposition and no type counts too;
  // only a part whose every Content-Transfer-Encoding is base64 or
  // quoted-printable is surely not read as one.
  const endHead = (): void => {
    finishField();
    inHead = false;
    const encoded = partFacts.encodings.length > 0 && partFacts.encodings.every((e) => e === 'base64' || e === 'quoted-printable');
    if ((partFacts.rfc822 || (!partFacts.sawContentType && partFacts.disposition)) && !encoded) startPart();
  };

  // Only delimiter lines matter: one starts a part (and its header block).
  // A close-delimiter ends header reading in the splitter at most, so it is
  // read here as an ordinary line, which can only count more header bytes.
  const delimiter = (start: number, end: number): boolean => {
    // mailsplit also reads a delimiter after a line ending carried over from the line before.
    if (start < end && bytes[start] === CR) start++;
    if (boundaries.size === 0 || end - start < 3 || bytes[start] !== DASH || bytes[start + 1] !== DASH) return false;
    if (end - start > longestBoundary + 8) return false;
    // The splitter takes a delimiter for "--", the boundary, then CR or LF (anything after it is ignored).
    let stop = start + 2;
    while (stop < end && bytes[stop] !== CR && bytes[stop] !== LF) stop++;
    return stop < end && boundaries.has(bytes.toString('latin1', start + 2, stop));
  };

  startPart();
  let lineStart = 0;
  while (lineStart < bytes.length) {
    let lineEnd = bytes.indexOf(LF, lineStart);
    lineEnd = lineEnd < 0 ? bytes.length : lineEnd + 1;
    if (delimiter(lineStart, lineEnd)) {
      if (inHead) {
        // Inside a header block the splitter may not know this boundary and read the line as a header.
        finishField();
        countHeaderBytes(lineEnd - lineStart);
      }
      startPart();
    } else if (inHead) {
      const length = lineEnd - lineStart;
      const blank = (length === 1 && bytes[lineStart] === LF) || (length === 2 && bytes[lineStart] === CR && bytes[lineStart + 1] === LF);
      if (blank) {
        // Counted like the splitter counts it: the blank line belongs to the header block.
        countHeaderBytes(length);
        endHead();
      } else {
        const first = bytes[lineStart];
        const folded = first === SP || first === TAB;
        if (!folded) finishField();
        // The most specific limit first, so the refusal names what to shorten.
        if (field.length + length > limits.maxHeaderField) {
          const shown = fieldName(field === '' ? bytes.toString('latin1', lineStart, Math.min(lineEnd, lineStart + 80)) : field);
          throw tooLarge(`${shown.charAt(0).toUpperCase()}${shown.slice(1)} header of MIME part ${parts} is longer than ${limits.maxHeaderField} bytes; shorten it (a To: or Cc: of up to 100 recipients fits easily).`);
        }
        countHeaderBytes(length);
        field += bytes.toString('latin1', lineStart, lineEnd);
      }
    }
    lineStart = lineEnd;
  }
}
