import net from 'node:net';

/**
 * What an IP address is, for deciding whether Paddock may connect to it on a
 * user's behalf: anything but `public` is refused unless the platform admin
 * allows it. The one definition of "private" in the codebase (the outbound
 * guard and the capsules' egress proxy both use it).
 */
export type AddressClass =
  | 'public'
  | 'unspecified'
  | 'loopback'
  | 'private'
  | 'shared'
  | 'link_local'
  | 'multicast'
  | 'reserved';

type Ranges = Array<[AddressClass, string, number]>;

// IANA's special-purpose registries (RFC 6890 and successors). Order matters
// only for readability: the ranges of different classes do not overlap.
const IPV4_RANGES: Ranges = [
  ['unspecified', '0.0.0.0', 8],
  ['loopback', '127.0.0.0', 8],
  ['private', '10.0.0.0', 8],
  ['private', '172.16.0.0', 12],
  ['private', '192.168.0.0', 16],
  ['shared', '100.64.0.0', 10],
  ['link_local', '169.254.0.0', 16],
  ['multicast', '224.0.0.0', 4],
  ['reserved', '192.0.0.0', 24],
  ['reserved', '192.0.2.0', 24],
  ['reserved', '192.88.99.0', 24],
  ['reserved', '198.18.0.0', 15],
  ['reserved', '198.51.100.0', 24],
  ['reserved', '203.0.113.0', 24],
  ['reserved', '240.0.0.0', 4],
];

// IPv6 beyond these is judged by 2000::/3: nothing else is global unicast.
// IPv4-mapped, NAT64 and 6to4 addresses are judged by the IPv4 address they carry.
const IPV6_RANGES: Ranges = [
  ['unspecified', '::', 128],
  ['loopback', '::1', 128],
  ['private', 'fc00::', 7],
  ['private', 'fec0::', 10],
  ['private', '64:ff9b:1::', 48],
  ['link_local', 'fe80::', 10],
  ['multicast', 'ff00::', 8],
  ['reserved', '100::', 64],
  ['reserved', '2001::', 23],
  ['reserved', '2001:db8::', 32],
  ['reserved', '3fff::', 20],
  ['reserved', '5f00::', 16],
];

function rangeLists(ranges: Ranges, type: 'ipv4' | 'ipv6'): Array<[AddressClass, net.BlockList]> {
  const byClass = new Map<AddressClass, net.BlockList>();
  for (const [kind, network, prefix] of ranges) {
    const list = byClass.get(kind) ?? new net.BlockList();
    list.addSubnet(network, prefix, type);
    byClass.set(kind, list);
  }
  return [...byClass];
}

const IPV4_LISTS = rangeLists(IPV4_RANGES, 'ipv4');
const IPV6_LISTS = rangeLists(IPV6_RANGES, 'ipv6');
const GLOBAL_UNICAST_V6 = new net.BlockList();
GLOBAL_UNICAST_V6.addSubnet('2000::', 3, 'ipv6');

/** `[::1]` → `::1`, `fe80::1%eth0` → `fe80::1`: the forms sockets and URLs hand out. */
export function bareAddress(address: string): string {
  const unbracketed = address.startsWith('[') && address.endsWith(']') ? address.slice(1, -1) : address;
  const zone = unbracketed.indexOf('%');
  return zone === -1 ? unbracketed : unbracketed.slice(0, zone);
}

/** The eight 16-bit groups of an IPv6 address (which must be valid). */
function ipv6Groups(address: string): number[] {
  let text = address;
  // A trailing dotted quad (::ffff:127.0.0.1) stands for the last two groups.
  const lastColon = text.lastIndexOf(':');
  const tail = text.slice(lastColon + 1);
  if (tail.includes('.')) {
    const [a, b, c, d] = tail.split('.').map(Number) as [number, number, number, number];
    text = `${text.slice(0, lastColon + 1)}${((a << 8) | b).toString(16)}:${((c << 8) | d).toString(16)}`;
  }
  const parse = (part: string) => (part === '' ? [] : part.split(':').map((g) => Number.parseInt(g, 16)));
  const [head, rest] = text.split('::') as [string, string | undefined];
  const left = parse(head);
  if (rest === undefined) return left;
  const right = parse(rest);
  return [...left, ...new Array<number>(8 - left.length - right.length).fill(0), ...right];
}

function ipv4From(high: number, low: number): string {
  return `${high >> 8}.${high & 0xff}.${low >> 8}.${low & 0xff}`;
}

/**
 * The IPv4 address an IPv6 address stands for, when it carries one that a
 * connection would reach: IPv4-mapped (`::ffff:a.b.c.d`), NAT64's well-known
 * prefix (`64:ff9b::/96`) and 6to4 (`2002:AABB:CCDD::/48`).
 */
export function embeddedIpv4(address: string): string | undefined {
  const g = ipv6Groups(address);
  if (g.slice(0, 5).every((x) => x === 0) && g[5] === 0xffff) return ipv4From(g[6]!, g[7]!);
  if (g[0] === 0x64 && g[1] === 0xff9b && g.slice(2, 6).every((x) => x === 0)) return ipv4From(g[6]!, g[7]!);
  if (g[0] === 0x2002) return ipv4From(g[1]!, g[2]!);
  return undefined;
}

/** Classifies an IP address (IPv4 in dotted decimal, or IPv6, bracketed or with a zone). */
export function classifyAddress(address: string): AddressClass {
  const bare = bareAddress(address);
  const family = net.isIP(bare);
  if (family === 4) {
    for (const [kind, list] of IPV4_LISTS) if (list.check(bare, 'ipv4')) return kind;
    return 'public';
  }
  if (family !== 6) throw new TypeError(`not an IP address: ${JSON.stringify(address)}`);
  const carried = embeddedIpv4(bare);
  if (carried !== undefined) return classifyAddress(carried);
  for (const [kind, list] of IPV6_LISTS) if (list.check(bare, 'ipv6')) return kind;
  return GLOBAL_UNICAST_V6.check(bare, 'ipv6') ? 'public' : 'reserved';
}
