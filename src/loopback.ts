/**
 * Whether a host or peer address is this machine's loopback: the one path a
 * weakening switch (plain SMTP to the upstream, AUTH before STARTTLS) may
 * apply to, because nothing on it crosses a network.
 */
import net from 'node:net';

// 127.0.0.0/8 and ::1, and the IPv4 loopback written as IPv6 (::ffff:127.x.y.z),
// which is how a dual-stack listener reports a client on 127.0.0.1.
const LOOPBACK = new net.BlockList();
LOOPBACK.addSubnet('127.0.0.0', 8, 'ipv4');
LOOPBACK.addAddress('::1', 'ipv6');
LOOPBACK.addSubnet('::ffff:127.0.0.0', 104, 'ipv6');

/**
 * True for `localhost`, 127.0.0.0/8 and ::1 in any spelling (brackets, as a
 * URL writes IPv6, and IPv4-mapped forms included). Any other name is false:
 * what a DNS name resolves to can change, so only `localhost` is trusted by name.
 */
export function isLoopbackHost(host: string): boolean {
  const bare = host.trim().toLowerCase().replace(/^\[(.*)\]$/, '$1');
  if (bare === 'localhost' || bare === 'localhost.') return true;
  const family = net.isIP(bare);
  if (family === 0) return false;
  return LOOPBACK.check(bare, family === 6 ? 'ipv6' : 'ipv4');
}
