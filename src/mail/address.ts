/**
 * The one address grammar of the relay: what an email address may look like
 * anywhere it enters (HTTP fields and path parameters, SMTP MAIL FROM, RCPT TO
 * and To/Cc/From/Sender headers, the composer, the internal-domain matcher).
 *
 * Deliberately narrower than RFC 5321/5322, because anything an MTA behind the
 * relay could read as a route must never pass as an ordinary internal
 * address: `counsel%lawfirm.example@corp.test` and
 * `lawfirm.example!counsel@corp.test` have an internal domain after the last
 * `@`, so they would leave in clear, and a stock Postfix relays them onward
 * (the "percent hack" and UUCP bang paths). Accepted:
 *
 * - local part: a dot-atom (RFC 5322 §3.2.3) of letters, digits and
 *   `# $ & ' * + - / = ? ^ _ \` { | } ~`, i.e. atext without `%` and `!`;
 *   no quoted strings, no comments, no leading `@route:` (RFC 5321 §4.1.2),
 *   at most 64 octets (RFC 5321 section 4.5.3.1.1);
 * - domain: at least two LDH labels (RFC 1035 §2.3.1, RFC 5890 A-labels),
 *   each 1-63 octets, not starting or ending with a hyphen, the last not all
 *   digits; at most 253 octets; no address literals (`[192.0.2.1]`). A domain
 *   written in Unicode is converted to its A-label (xn--) form, since
 *   smtp-server and mailparser hand such domains over decoded;
 * - the whole address at most 254 octets (RFC 5321 §4.5.3.1.3 path of 256
 *   minus the angle brackets).
 *
 * Every check is a single pass over at most 254 characters (longer input is
 * refused before it is scanned), so the grammar is linear and bounded.
 */
import { domainToASCII } from 'node:url';
import { RelayError } from '../errors.js';

/** RFC 5321 §4.5.3.1.3: a path is at most 256 octets including `<` and `>`. */
export const MAX_ADDRESS_LENGTH = 254;
/** RFC 5321 §4.5.3.1.1. */
export const MAX_LOCAL_PART_LENGTH = 64;
/** RFC 1035 §2.3.4 (255 octets on the wire, 253 as text). */
export const MAX_DOMAIN_LENGTH = 253;
const MAX_LABEL_LENGTH = 63;

/** The reasons an address is refused; each has its own hint. */
export type AddressFault =
  | 'empty'
  | 'too_long'
  | 'space_or_control'
  | 'source_route'
  | 'quoted'
  | 'no_at'
  | 'several_at'
  | 'percent_route'
  | 'bang_path'
  | 'local_too_long'
  | 'local_not_ascii'
  | 'local_character'
  | 'local_dots'
  | 'address_literal'
  | 'domain_idn'
  | 'domain_too_long'
  | 'domain_label'
  | 'domain_single_label'
  | 'domain_numeric_tld';

// Plain ASCII: these hints end up in SMTP replies (RFC 5321 §4.2 reply text is US-ASCII).
const DIRECTLY = 'address the recipient directly as name@their-domain';

/** What to tell the sender for each fault: why, and what to do instead. */
const HINTS: Record<AddressFault, string> = {
  empty: 'is empty; give an address such as name@corp.example',
  too_long: `is longer than ${MAX_ADDRESS_LENGTH} characters (RFC 5321 section 4.5.3.1.3)`,
  space_or_control: 'must not contain spaces, control characters or angle brackets; give the bare address such as name@corp.example',
  source_route: `source routes (@host:...) are not allowed; ${DIRECTLY}`,
  quoted: 'quoted local parts ("..."@ or \\) are not accepted; use the plain address name@domain',
  no_at: 'has no @; give an address such as name@corp.example',
  several_at: `has more than one @; ${DIRECTLY}`,
  percent_route: `source routing (%) is not allowed; ${DIRECTLY}`,
  bang_path: `bang paths (!) are not allowed; ${DIRECTLY}`,
  local_too_long: `has a local part (before the @) longer than ${MAX_LOCAL_PART_LENGTH} characters (RFC 5321 section 4.5.3.1.1)`,
  local_not_ascii: 'has a non-ASCII local part (before the @); the relay does not carry SMTPUTF8 addresses',
  local_character: "has a character the relay does not accept before the @: use letters, digits, dots and # $ & ' * + - / = ? ^ _ ` { | } ~",
  local_dots: 'has a local part (before the @) that starts or ends with a dot or holds two dots in a row',
  address_literal: 'uses an address literal ([192.0.2.1]); use the domain name instead',
  domain_idn: 'has a domain that is not a valid internationalised domain name; use its ASCII (xn--) form',
  domain_too_long: `has a domain longer than ${MAX_DOMAIN_LENGTH} characters`,
  domain_label: 'has a domain whose labels are not 1-63 letters, digits and hyphens (no leading or trailing hyphen, no empty label)',
  domain_single_label: 'needs a full domain name with a dot, such as corp.example',
  domain_numeric_tld: 'has a domain whose last label is all digits; use the domain name, not an IP address',
};

/** What to tell the sender about `fault`. */
export function addressHint(fault: AddressFault): string {
  return HINTS[fault];
}

/** An accepted address, normalised: lowercase, domain in A-label form. */
export interface Address {
  address: string;
  local: string;
  domain: string;
}

/** The outcome of checking one address. */
export type AddressCheck = ({ ok: true } & Address) | { ok: false; fault: AddressFault; hint: string };

const refused = (fault: AddressFault): AddressCheck => ({ ok: false, fault, hint: HINTS[fault] });

// atext (RFC 5322 §3.2.3) without '%' and '!', which MTAs read as routes.
function isLocalChar(c: number): boolean {
  return (
    (c >= 0x61 && c <= 0x7a) || // a-z
    (c >= 0x41 && c <= 0x5a) || // A-Z
    (c >= 0x30 && c <= 0x39) || // 0-9
    c === 0x23 || // #
    c === 0x24 || // $
    c === 0x26 || // &
    c === 0x27 || // '
    c === 0x2a || // *
    c === 0x2b || // +
    c === 0x2d || // -
    c === 0x2f || // /
    c === 0x3d || // =
    c === 0x3f || // ?
    (c >= 0x5e && c <= 0x60) || // ^ _ `
    (c >= 0x7b && c <= 0x7e) // { | } ~
  );
}

function isLdh(c: number): boolean {
  return (c >= 0x61 && c <= 0x7a) || (c >= 0x30 && c <= 0x39) || c === 0x2d;
}

function localFault(local: string): AddressFault | undefined {
  if (local.includes('%')) return 'percent_route';
  if (local.includes('!')) return 'bang_path';
  if (local.length > MAX_LOCAL_PART_LENGTH) return 'local_too_long';
  for (let i = 0; i < local.length; i++) {
    const c = local.charCodeAt(i);
    if (c === 0x2e) {
      if (i === 0 || i === local.length - 1 || local.charCodeAt(i - 1) === 0x2e) return 'local_dots';
    } else if (c > 0x7e) {
      return 'local_not_ascii';
    } else if (!isLocalChar(c)) {
      return 'local_character';
    }
  }
  return undefined;
}

/** The domain in lowercase A-label form, or the fault. */
function checkDomain(raw: string): { domain: string } | { fault: AddressFault } {
  if (raw.startsWith('[')) return { fault: 'address_literal' };
  let domain = raw.toLowerCase();
  // Only non-ASCII input goes through IDNA: UTS #46 would also rewrite ASCII
  // (e.g. drop a trailing dot) and the grammar below must see what was given.
  if (/[^\x00-\x7f]/.test(domain)) {
    domain = domainToASCII(domain);
    if (domain === '') return { fault: 'domain_idn' };
  }
  if (domain.length > MAX_DOMAIN_LENGTH) return { fault: 'domain_too_long' };
  let labels = 0;
  let start = 0;
  let lastLabelAllDigits = true;
  for (let i = 0; i <= domain.length; i++) {
    if (i < domain.length && domain.charCodeAt(i) !== 0x2e) continue;
    const length = i - start;
    if (length === 0 || length > MAX_LABEL_LENGTH || domain.charCodeAt(start) === 0x2d || domain.charCodeAt(i - 1) === 0x2d) return { fault: 'domain_label' };
    lastLabelAllDigits = true;
    for (let j = start; j < i; j++) {
      const c = domain.charCodeAt(j);
      if (!isLdh(c)) return { fault: 'domain_label' };
      if (c < 0x30 || c > 0x39) lastLabelAllDigits = false;
    }
    labels++;
    start = i + 1;
  }
  if (labels < 2) return { fault: 'domain_single_label' };
  if (lastLabelAllDigits) return { fault: 'domain_numeric_tld' };
  return { domain };
}

/** Checks `value` against the relay's address grammar; on success the normalised address. */
export function checkAddress(value: unknown): AddressCheck {
  if (typeof value !== 'string' || value === '') return refused('empty');
  // Bounded before anything scans it: no input makes this more than one pass over 254 characters.
  if (value.length > MAX_ADDRESS_LENGTH) return refused('too_long');
  // Whitespace, controls (C0, DEL, C1, Unicode line separators) and the angle
  // brackets of a name-addr: only the bare addr-spec is an address here.
  if (/[\x00-\x20\x7f-\x9f\u2028\u2029<>]/.test(value)) return refused('space_or_control');
  // RFC 5321 §4.1.2 A-d-l: "@relay1,@relay2:user@domain".
  if (value.startsWith('@')) return refused('source_route');
  if (value.includes('"') || value.includes('\\')) return refused('quoted');
  const at = value.indexOf('@');
  if (at < 0) return refused('no_at');
  if (value.indexOf('@', at + 1) >= 0) return refused('several_at');
  const local = value.slice(0, at);
  if (local === '') return refused('no_at');
  const fault = localFault(local);
  if (fault) return refused(fault);
  const domain = checkDomain(value.slice(at + 1));
  if ('fault' in domain) return refused(domain.fault);
  const address = `${local.toLowerCase()}@${domain.domain}`;
  // An A-label domain is longer than the Unicode one it came from.
  if (address.length > MAX_ADDRESS_LENGTH) return refused('too_long');
  return { ok: true, address, local: local.toLowerCase(), domain: domain.domain };
}

/** True when `value` is an address the relay accepts. */
export function isAddress(value: unknown): boolean {
  return checkAddress(value).ok;
}

/** The value as it may be quoted back in a refusal: at most 80 characters, controls shown as `?`. */
export function shownAddress(value: string): string {
  return value.slice(0, 80).replace(/[\x00-\x1f\x7f-\x9f\u2028\u2029]/g, '?');
}

/**
 * The normalised address, or RelayError invalid_request naming `what` (a
 * field, a header, an SMTP command), the value and the hint for its fault.
 */
export function normaliseAddress(value: string, what: string): string {
  const checked = checkAddress(value);
  if (checked.ok) return checked.address;
  throw new RelayError('invalid_request', `${what} "${shownAddress(value)}" ${checked.hint}.`, {
    details: { field: what, reason: checked.fault },
  });
}

/** The A-label domain of an accepted address, lowercase; undefined for anything the grammar refuses. */
export function domainOf(address: string): string | undefined {
  const checked = checkAddress(address);
  return checked.ok ? checked.domain : undefined;
}
