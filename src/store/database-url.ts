/**
 * What a RELAY_DATABASE_URL means, as pg itself reads it: whether it stays on
 * this machine or is reached over verified TLS, and how to show it without
 * its secrets.
 */
import { parse as parseConnectionString } from 'pg-connection-string';
import { isLoopbackHost } from '../loopback.js';

// sslmode values with which `pg` encrypts and verifies the server's certificate and name
// (it reads require and verify-ca as verify-full); any other value, or none, may go in clear.
const VERIFIED_SSLMODES = new Set(['require', 'verify-ca', 'verify-full']);

/**
 * Whether `pg` will reach this database on this machine, or over TLS that
 * checks the server's certificate and name. Judged on what pg's own parser
 * (the version pg uses, pinned alongside it) makes of the URL, not on the URL
 * as written: its last sslmode wins, ?host= overrides the host, and
 * uselibpqcompat turns require into "encrypt, trust anyone". Throws when pg
 * would: an sslrootcert, sslcert or sslkey file it cannot read.
 */
export function databaseIsLocalOrVerified(url: string): boolean {
  const parsed = parseConnectionString(url);
  const host = parsed.host ?? '';
  if (host.startsWith('/') || isLoopbackHost(host)) return true;
  const ssl: unknown = parsed.ssl;
  if (typeof ssl !== 'object' || ssl === null) return false;
  const options = ssl as { rejectUnauthorized?: unknown; checkServerIdentity?: unknown };
  return VERIFIED_SSLMODES.has(String(parsed.sslmode ?? '')) && options.rejectUnauthorized !== false && options.checkServerIdentity === undefined;
}

// Query parameters pg reads a secret from.
const SECRET_PARAMETERS = /pass/i;

/** The URL without its password (in the userinfo or a ?password= parameter), for logs and the banner. */
export function redactDatabaseUrl(url: string): string {
  try {
    const parsed = new URL(url);
    if (parsed.password !== '') parsed.password = '***';
    for (const name of [...parsed.searchParams.keys()]) {
      if (SECRET_PARAMETERS.test(name)) parsed.searchParams.set(name, '***');
    }
    return parsed.toString();
  } catch {
    return 'postgres://(unparsable URL)';
  }
}
