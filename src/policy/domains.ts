/**
 * Internal-domain matching (SPEC §2): exact domains, and `*.corp.example`
 * for every subdomain. Built once from the configuration.
 *
 * The domain is taken by the relay's one address grammar (src/mail/address.ts),
 * never as "whatever follows the last @": `counsel%lawfirm.example@corp.test`
 * is not an address at all, so it is never internal (fail closed: whatever is
 * not provably internal is treated as external and must be encrypted).
 */
import { domainOf } from '../mail/address.js';

/** Returns a predicate telling whether an address's domain is internal; false for anything that is not an address. */
export function createDomainMatcher(internalDomains: readonly string[]): (address: string) => boolean {
  const exact = new Set<string>();
  const suffixes: string[] = [];
  for (const entry of internalDomains) {
    const domain = entry.toLowerCase();
    if (domain.startsWith('*.')) suffixes.push(domain.slice(1)); // keep the dot: '.corp.example'
    else exact.add(domain);
  }
  return (address: string): boolean => {
    const domain = domainOf(address);
    if (domain === undefined) return false;
    return exact.has(domain) || suffixes.some((suffix) => domain.endsWith(suffix) && domain.length > suffix.length);
  };
}
