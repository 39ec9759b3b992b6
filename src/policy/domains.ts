/**
 * Internal-domain matching (SPEC §2): exact domains, and `*.corp.example`
 * for every subdomain. Built once from the configuration.
 */

/** Returns a predicate telling whether an address's domain is internal. */
export function createDomainMatcher(internalDomains: readonly string[]): (address: string) => boolean {
  const exact = new Set<string>();
  const suffixes: string[] = [];
  for (const entry of internalDomains) {
    const domain = entry.toLowerCase();
    if (domain.startsWith('*.')) suffixes.push(domain.slice(1)); // keep the dot: '.corp.example'
    else exact.add(domain);
  }
  return (address: string): boolean => {
    const at = address.lastIndexOf('@');
    if (at < 0) return false;
    const domain = address.slice(at + 1).toLowerCase();
    return exact.has(domain) || suffixes.some((suffix) => domain.endsWith(suffix) && domain.length > suffix.length);
  };
}
