/**
 * A small, bounded multipart/form-data parser (RFC 7578) for the console's
 * two file forms: a roster entry with a key file, and compose with
 * attachments. The body arrives whole (express.raw with a byte limit), so
 * this only splits a Buffer: Buffer.indexOf for the delimiter (a
 * Boyer-Moore-Horspool search, linear in the body for a delimiter of at
 * most 74 bytes), a cap on the number of parts and on each part's header
 * block, and no regular expression ever sees more than one header line.
 *
 * Why not a dependency: busboy or formidable would be the first
 * stream-parsing dependency for two forms whose bodies are already bounded
 * and in memory; this is about a hundred lines with its hostile cases tested
 * (test/console/multipart.test.ts).
 */
import { RelayError, invalid } from '../errors.js';

/** One field or file of the form. */
export interface FormPart {
  name: string;
  /** Present for a file input (possibly empty when no file was chosen). */
  filename?: string;
  /** The part's Content-Type, lowercased, when it had one. */
  contentType?: string;
  data: Buffer;
}

/** Bounds on one form. */
export interface MultipartLimits {
  /** At most this many parts (fields and files together). */
  maxParts: number;
  /** At most this many bytes of headers per part. */
  maxHeaderBytes: number;
}

/** The default bounds: more than the biggest console form needs (100 recipients × 3 lists, 100 attachments). */
export const MULTIPART_LIMITS: MultipartLimits = { maxParts: 512, maxHeaderBytes: 4096 };

const CRLF = Buffer.from('\r\n');
const HEADER_END = Buffer.from('\r\n\r\n');

/** The boundary of a multipart/form-data Content-Type, or undefined. RFC 2046 §5.1.1: 1-70 characters. */
export function boundaryOf(contentType: string): string | undefined {
  if (contentType.length > 1000) return undefined;
  if (!/^\s*multipart\/form-data\s*;/i.test(contentType)) return undefined;
  const m = /;\s*boundary\s*=\s*(?:"([^"\r\n]{1,70})"|([^\s;"]{1,70}))\s*(?:;|$)/i.exec(contentType);
  return m?.[1] ?? m?.[2];
}

/** A parameter of a Content-Disposition line: `name="x"` (quoted, with \" unescaped) or a bare token. */
function dispositionParam(line: string, param: string): string | undefined {
  // One header line, at most maxHeaderBytes long; the pattern has no nested quantifiers.
  const re = new RegExp(`;\\s*${param}\\s*=\\s*(?:"((?:[^"\\\\]|\\\\.)*)"|([^;\\s"]+))`, 'i');
  const m = re.exec(line);
  if (!m) return undefined;
  return m[1] !== undefined ? m[1].replace(/\\(.)/g, '$1') : m[2];
}

/**
 * A browser's file name as a plain name: percent-escapes that browsers
 * write for `"`, CR and LF decoded, the directories some old browsers
 * included dropped.
 */
function cleanFilename(raw: string): string {
  const decoded = raw.replace(/%(22|0D|0A)/gi, (_m, hex: string) => String.fromCharCode(parseInt(hex, 16)));
  return decoded.slice(Math.max(decoded.lastIndexOf('/'), decoded.lastIndexOf('\\')) + 1);
}

/** Splits a multipart/form-data body into its parts; refuses what does not parse (invalid_request) or is over the limits. */
export function parseMultipart(body: Buffer, contentType: string, limits: MultipartLimits = MULTIPART_LIMITS): FormPart[] {
  const boundary = boundaryOf(contentType);
  if (boundary === undefined) throw invalid('The form must be sent as multipart/form-data with a boundary.');
  const opening = Buffer.from(`--${boundary}`);
  const delimiter = Buffer.from(`\r\n--${boundary}`);
  // The first delimiter may follow a preamble (RFC 2046), or start the body.
  let at = body.subarray(0, opening.length).equals(opening) ? opening.length : body.indexOf(delimiter);
  if (at < 0) throw invalid('The form has no parts.');
  if (at !== opening.length) at += delimiter.length;
  const parts: FormPart[] = [];
  for (;;) {
    // After a delimiter: "--" ends the body, CRLF starts a part.
    if (body[at] === 0x2d && body[at + 1] === 0x2d) return parts;
    if (!body.subarray(at, at + 2).equals(CRLF)) throw invalid('The form is malformed: a boundary is not followed by a line break.');
    at += 2;
    if (parts.length >= limits.maxParts) throw invalid(`The form has more than ${limits.maxParts} fields.`);
    // A part without headers starts with the blank line at once. Otherwise the
    // header block ends at the first blank line, looked for only within the
    // limit so that a part without one costs no scan of the rest of the body.
    const noHeaders = body.subarray(at, at + 2).equals(CRLF);
    const window = body.subarray(at, at + limits.maxHeaderBytes + HEADER_END.length);
    const headerEnd = noHeaders ? at : at + window.indexOf(HEADER_END);
    if (headerEnd < at) throw invalid('The form is malformed: a part\'s headers are missing, unterminated or too long.');
    const headers = body.subarray(at, headerEnd).toString('latin1').split('\r\n');
    const dataStart = noHeaders ? at + 2 : headerEnd + HEADER_END.length;
    const dataEnd = body.indexOf(delimiter, dataStart);
    if (dataEnd < 0) throw invalid('The form is malformed: the last part is not closed.');
    parts.push(partOf(headers, body.subarray(dataStart, dataEnd)));
    at = dataEnd + delimiter.length;
  }
}

function partOf(headerLines: readonly string[], data: Buffer): FormPart {
  let disposition: string | undefined;
  let contentType: string | undefined;
  for (const line of headerLines) {
    const colon = line.indexOf(':');
    if (colon <= 0) continue;
    const name = line.slice(0, colon).trim().toLowerCase();
    // Header bytes are read as Latin-1 so no byte is lost; a UTF-8 file name is decoded from them below.
    const value = line.slice(colon + 1).trim();
    if (name === 'content-disposition') disposition = value;
    else if (name === 'content-type') contentType = value.toLowerCase();
  }
  if (disposition === undefined || !/^form-data\s*(;|$)/i.test(disposition)) throw invalid('The form is malformed: a part has no Content-Disposition: form-data.');
  const name = dispositionParam(disposition, 'name');
  if (name === undefined || name === '') throw invalid('The form is malformed: a part has no field name.');
  const rawFilename = dispositionParam(disposition, 'filename');
  const part: FormPart = { name: Buffer.from(name, 'latin1').toString('utf8'), data };
  if (rawFilename !== undefined) part.filename = cleanFilename(Buffer.from(rawFilename, 'latin1').toString('utf8'));
  if (contentType !== undefined) part.contentType = contentType.split(';')[0]!.trim();
  return part;
}

/** The form's text fields and files, by field name, as the console's handlers read them. */
export class FormData {
  constructor(private readonly parts: readonly FormPart[]) {}

  /** Every text value of the field (files excluded), decoded as UTF-8. */
  all(name: string): string[] {
    return this.parts.filter((p) => p.name === name && p.filename === undefined).map((p) => p.data.toString('utf8'));
  }

  /** The field's one text value; undefined when absent; invalid_request when it is given twice. */
  one(name: string): string | undefined {
    const values = this.all(name);
    if (values.length > 1) throw invalid(`The form field "${name}" was sent more than once.`);
    return values[0];
  }

  /** The files chosen in a file input; an input left empty sends a part without a name or bytes, which is dropped. */
  files(name: string): FormPart[] {
    return this.parts.filter((p) => p.name === name && p.filename !== undefined && !(p.filename === '' && p.data.length === 0));
  }
}

/** Builds the form data of an url-encoded body (express.urlencoded, extended: false) the same way as a multipart one. */
export function urlencodedForm(body: unknown): FormData {
  if (body === undefined || body === null) return new FormData([]);
  if (typeof body !== 'object') throw new RelayError('invalid_request', 'The form could not be read.');
  const parts: FormPart[] = [];
  for (const [name, value] of Object.entries(body as Record<string, unknown>)) {
    for (const v of Array.isArray(value) ? value : [value]) {
      if (typeof v === 'string') parts.push({ name, data: Buffer.from(v, 'utf8') });
    }
  }
  return new FormData(parts);
}
