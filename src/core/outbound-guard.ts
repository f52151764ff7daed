// One file over ~400 lines: the one outbound-address guard (docs/security.md).
// Resolution, classification, the pinned connect and the socket's remote-end
// check are one security boundary, read and reviewed together.
import { lookup as dnsLookup } from 'node:dns/promises';
import http from 'node:http';
import net from 'node:net';
import os from 'node:os';
import type { Duplex } from 'node:stream';
import { buildConnector } from 'undici';
import { type AddressClass, bareAddress, classifyAddress } from './ip-address.ts';

// The one outbound-address guard: every connection Paddock itself opens to a
// user-given URL or address (provider base URLs, BYOC hosts; webhooks and
// channels later) goes through it. A name is resolved here, every answer is
// checked, and the socket connects to exactly the address that was checked,
// so a name that answers "public" to the check and "127.0.0.1" to the
// connection (DNS rebinding) gets nowhere; the connected socket's remote end
// is checked once more before anything is written to it.

export interface ResolvedAddress {
  address: string;
  family: 4 | 6;
}

/** Answers a DNS question: every address of `name`. */
export type HostResolver = (name: string) => Promise<ResolvedAddress[]>;

export type RefusalReason = Exclude<AddressClass, 'public'> | 'this_machine' | 'paddock_itself';

const REASON_TEXT: Record<Exclude<RefusalReason, 'paddock_itself'>, string> = {
  unspecified: 'an unspecified address (0.0.0.0 or ::)',
  loopback: 'a loopback address',
  private: 'a private address',
  shared: 'a shared (carrier-grade NAT) address',
  link_local: 'a link-local address',
  multicast: 'a multicast address',
  reserved: 'a reserved or special-purpose address',
  this_machine: "an address of Paddock's own machine",
};

/**
 * A connection the guard did not allow. Its message names the host and why,
 * never a secret, and never the address a name resolved to: that would show
 * a tenant the inside of the network (internal DNS). The address is kept on
 * the error for the server's log (OutboundGuardOptions.onRefused).
 */
export class OutboundRefusedError extends Error {
  readonly code = 'EOUTBOUNDREFUSED';
  /** The host and why, for a caller to put in its own words ("intranet.test resolves to a private address"). */
  readonly summary: string;
  constructor(
    readonly host: string,
    readonly reason: RefusalReason,
    readonly address: string,
  ) {
    const literal = bareAddress(host) === address;
    const subject = literal ? address : host;
    const summary =
      reason === 'paddock_itself'
        ? `${subject} at this port is Paddock itself`
        : `${subject} ${literal ? 'is' : 'resolves to'} ${REASON_TEXT[reason]}`;
    super(
      reason === 'paddock_itself'
        ? `${summary}: Paddock does not call itself`
        : `${summary}, which Paddock does not connect to unless the platform admin allows it (PADDOCK_ALLOW_PRIVATE_UPSTREAMS)`,
    );
    this.summary = summary;
    this.name = 'OutboundRefusedError';
  }
}

/** Whether `err` (or what it wraps) is a refusal of the guard's. */
export function outboundRefusal(err: unknown): OutboundRefusedError | undefined {
  for (let e = err, depth = 0; e && depth < 4; e = (e as { cause?: unknown }).cause, depth++) {
    if (e instanceof OutboundRefusedError) return e;
  }
  return undefined;
}

/** Lower case, no trailing dot: how names are compared. */
function nameKey(host: string): string {
  return bareAddress(host).toLowerCase().replace(/\.$/, '');
}

/** RFC 6761: `localhost` and every name under it are loopback, whatever a resolver says. */
function isLocalhostName(name: string): boolean {
  return name === 'localhost' || name.endsWith('.localhost');
}

const LOCALHOST: ResolvedAddress[] = [
  { address: '127.0.0.1', family: 4 },
  { address: '::1', family: 6 },
];

const HOST_NAME = /^(\*\.)?[a-z0-9_]([a-z0-9_-]*[a-z0-9_])?(\.[a-z0-9_]([a-z0-9_-]*[a-z0-9_])?)*$/;

/**
 * The platform admin's exceptions (PADDOCK_ALLOW_PRIVATE_UPSTREAMS): host
 * names (`ollama.lan`, `*.corp.example` for its subdomains), IP addresses and
 * CIDRs. A listed name may resolve to anything; a listed address or range
 * lets that address through whatever name led to it.
 */
export class AllowList {
  private readonly names = new Set<string>();
  private readonly suffixes: string[] = [];
  private readonly ranges = new net.BlockList();
  private empty = true;

  /** Parses entries, or names the ones that are not a host name, an IP address or a CIDR. */
  static parse(entries: readonly string[]): { list: AllowList; problems: string[] } {
    const list = new AllowList();
    const problems: string[] = [];
    for (const raw of entries) {
      const entry = raw.trim();
      if (entry === '') continue;
      if (!list.add(entry)) problems.push(entry);
    }
    return { list, problems };
  }

  private add(entry: string): boolean {
    const [network, prefixText, extra] = entry.split('/');
    const address = bareAddress(network!);
    const family = net.isIP(address);
    if (family !== 0 && extra === undefined) {
      const max = family === 4 ? 32 : 128;
      const prefix = prefixText === undefined ? max : Number(prefixText);
      if (!/^\d{1,3}$/.test(prefixText ?? String(max)) || prefix > max) return false;
      this.ranges.addSubnet(address, prefix, family === 4 ? 'ipv4' : 'ipv6');
      this.empty = false;
      return true;
    }
    const name = nameKey(entry);
    if (prefixText !== undefined || !HOST_NAME.test(name)) return false;
    if (name.startsWith('*.')) this.suffixes.push(name.slice(1));
    else this.names.add(name);
    this.empty = false;
    return true;
  }

  get isEmpty(): boolean {
    return this.empty;
  }

  allowsName(host: string): boolean {
    const name = nameKey(host);
    return this.names.has(name) || this.suffixes.some((s) => name.endsWith(s) && name.length > s.length);
  }

  allowsAddress(address: string): boolean {
    const bare = bareAddress(address);
    const family = net.isIP(bare);
    return family !== 0 && this.ranges.check(bare, family === 4 ? 'ipv4' : 'ipv6');
  }
}

export interface OutboundGuardOptions {
  allow?: AllowList;
  /** DNS; the system resolver (getaddrinfo: /etc/hosts too) by default. Tests answer for themselves. */
  resolve?: HostResolver;
  /** This machine's interface addresses; read from the OS at each check by default. */
  localAddresses?: () => readonly string[];
  /** How long a check made ahead of time (checkHost) waits for DNS before leaving it to connect time. */
  aheadTimeoutMs?: number;
  /** Told of every refusal (the server logs it with the resolved address, which callers' messages leave out). */
  onRefused?: (refusal: OutboundRefusedError) => void;
}

async function systemResolve(name: string): Promise<ResolvedAddress[]> {
  const answers = await dnsLookup(name, { all: true, verbatim: true });
  return answers.map((a) => ({ address: a.address, family: a.family === 6 ? 6 : 4 }));
}

function interfaceAddresses(): string[] {
  return Object.values(os.networkInterfaces()).flatMap((list) => (list ?? []).map((i) => i.address));
}

/** A host part as URLs normalise it: numeric IPv4 forms (`0x7f.1`, `2130706433`) become dotted quads. */
function canonicalHost(host: string): string | undefined {
  const bare = bareAddress(host);
  if (net.isIP(bare) !== 0) return bare;
  try {
    return nameKey(new URL(`http://${bare}/`).hostname);
  } catch {
    return undefined;
  }
}

type LookupCallback = (
  err: NodeJS.ErrnoException | null,
  address: string | ResolvedAddress[],
  family?: number,
) => void;

export class OutboundGuard {
  private readonly allow: AllowList;
  private readonly resolver: HostResolver;
  private readonly localAddresses: () => readonly string[];
  private readonly aheadTimeoutMs: number;
  private readonly onRefused: ((refusal: OutboundRefusedError) => void) | undefined;
  private readonly ownPorts = new Set<number>();

  constructor(options: OutboundGuardOptions = {}) {
    this.allow = options.allow ?? new AllowList();
    this.resolver = options.resolve ?? systemResolve;
    this.localAddresses = options.localAddresses ?? interfaceAddresses;
    this.aheadTimeoutMs = options.aheadTimeoutMs ?? 2000;
    this.onRefused = options.onRefused;
  }

  /**
   * Paddock listens on `port`: connecting to it on this machine would be
   * Paddock calling itself (a key pointed at the gateway loops), so it is
   * refused even where the allow-list covers the address.
   */
  protectOwnPort(port: number): void {
    this.ownPorts.add(port);
  }

  /** Whether the platform admin's allow-list names `host` (a name, or an address it covers). */
  allowListed(host: string): boolean {
    const bare = bareAddress(host);
    return this.allow.allowsName(bare) || (net.isIP(bare) !== 0 && this.allow.allowsAddress(bare));
  }

  private isInterfaceAddress(address: string): boolean {
    const bare = bareAddress(address);
    return this.localAddresses().some((a) => bareAddress(a) === bare);
  }

  private isThisMachine(address: string): boolean {
    const kind = classifyAddress(address);
    return kind === 'loopback' || kind === 'unspecified' || this.isInterfaceAddress(address);
  }

  /**
   * Why Paddock may not connect to `address` (reached through the name
   * `host`, at `port` when known), or undefined when it may.
   */
  refusal(address: string, host: string = address, port?: number): RefusalReason | undefined {
    if (port !== undefined && this.ownPorts.has(port) && this.isThisMachine(address)) return 'paddock_itself';
    if (this.allow.allowsName(host) || this.allow.allowsAddress(address)) return undefined;
    const kind = classifyAddress(address);
    if (kind !== 'public') return kind;
    return this.isInterfaceAddress(address) ? 'this_machine' : undefined;
  }

  /**
   * Resolves `host` and keeps the addresses Paddock may connect to, in the
   * resolver's order. Throws OutboundRefusedError when there are none; DNS
   * errors pass through.
   */
  async resolve(host: string, port?: number): Promise<ResolvedAddress[]> {
    const name = canonicalHost(host);
    if (name === undefined)
      throw Object.assign(new Error(`invalid host ${JSON.stringify(host)}`), { code: 'EINVAL' });
    const family = net.isIP(name);
    const answers =
      family !== 0
        ? [{ address: name, family: family as 4 | 6 }]
        : isLocalhostName(name)
          ? LOCALHOST
          : await this.resolver(name);
    const usable: ResolvedAddress[] = [];
    let first: OutboundRefusedError | undefined;
    for (const a of answers) {
      const why = this.refusal(a.address, name, port);
      if (why === undefined) usable.push(a);
      else first ??= new OutboundRefusedError(host, why, bareAddress(a.address));
    }
    if (usable.length === 0) {
      if (first) {
        this.onRefused?.(first);
        throw first;
      }
      throw Object.assign(new Error(`${name} has no address`), { code: 'ENOTFOUND' });
    }
    return usable;
  }

  /**
   * Checked ahead of time (a base URL being saved, a host registering): the
   * refusal's message, or undefined. A name that does not resolve now (no
   * DNS, a private zone only the connection's network sees) passes: it is
   * checked again at every connection.
   */
  async checkHost(host: string, port?: number): Promise<string | undefined> {
    let timer: NodeJS.Timeout | undefined;
    const timeout = new Promise<undefined>((resolve) => {
      timer = setTimeout(() => resolve(undefined), this.aheadTimeoutMs);
    });
    try {
      await Promise.race([this.resolve(host, port), timeout]);
      return undefined;
    } catch (err) {
      return outboundRefusal(err)?.message;
    } finally {
      clearTimeout(timer);
    }
  }

  /** checkHost for an http(s) URL. */
  checkUrl(raw: string): Promise<string | undefined> {
    let url: URL;
    try {
      url = new URL(raw);
    } catch {
      return Promise.resolve('is not a URL');
    }
    const port = url.port === '' ? (url.protocol === 'https:' ? 443 : 80) : Number(url.port);
    return this.checkHost(url.hostname, port);
  }

  /**
   * A `lookup` for net.connect, tls.connect, http and ws: only checked
   * addresses come back, so the socket connects to one of them. (Sockets
   * given an IP literal skip `lookup`; see `connectChecked`.)
   */
  readonly lookup = (
    hostname: string,
    options: { family?: number | string; all?: boolean },
    callback: LookupCallback,
  ): void => {
    const wanted =
      options.family === 4 || options.family === 'IPv4'
        ? 4
        : options.family === 6 || options.family === 'IPv6'
          ? 6
          : 0;
    this.resolve(hostname).then(
      (all) => {
        const addresses = wanted === 0 ? all : all.filter((a) => a.family === wanted);
        if (addresses.length === 0) {
          const err: NodeJS.ErrnoException = new Error(
            `${hostname} has no IPv${wanted} address Paddock may use`,
          );
          err.code = 'ENOTFOUND';
          return callback(err, '');
        }
        if (options.all) callback(null, addresses);
        else callback(null, addresses[0]!.address, addresses[0]!.family);
      },
      (err: NodeJS.ErrnoException) => callback(err, ''),
    );
  };

  /**
   * Opens a socket with `open` (which must connect through this guard's
   * lookup) and hands it over only once it is connected and its remote end
   * checked: nothing is written to an address the guard did not allow.
   */
  private connectChecked(
    host: string,
    port: number,
    open: () => net.Socket,
    connectedEvent: 'connect' | 'secureConnect',
    callback: (err: Error | null, socket: net.Socket | null) => void,
  ): void {
    const bare = bareAddress(host);
    // net.connect does not call lookup for an IP literal: check it before connecting.
    if (net.isIP(bare) !== 0) {
      const why = this.refusal(bare, bare, port);
      if (why) {
        callback(new OutboundRefusedError(host, why, bare), null);
        return;
      }
    }
    let settled = false;
    const settle = (err: Error | null, socket: net.Socket | null) => {
      if (settled) return;
      settled = true;
      callback(err, socket);
    };
    const socket = open();
    socket.once(connectedEvent, () => {
      const remote = socket.remoteAddress;
      const why = remote === undefined ? 'unspecified' : this.refusal(remote, host, socket.remotePort);
      if (why === undefined) return settle(null, socket);
      const err = new OutboundRefusedError(host, why, remote ?? '');
      socket.destroy();
      settle(err, null);
    });
    socket.once('error', (err) => settle(err, null));
  }

  /** An undici connector (an Agent's `connect`) whose connections pass the guard; TLS still verifies the name. */
  undiciConnector(options: { timeoutMs: number }): buildConnector.connector {
    // One connector, so TLS sessions are cached across connections as undici's own would.
    const connect = buildConnector({ timeout: options.timeoutMs, lookup: this.lookup });
    return (opts, callback) => {
      const port = Number(opts.port) || (opts.protocol === 'https:' ? 443 : 80);
      this.connectChecked(
        opts.hostname,
        port,
        // undici's connector returns its socket and reports errors on it (the connect timeout too).
        () => connect(opts, () => undefined) as unknown as net.Socket,
        opts.protocol === 'https:' ? 'secureConnect' : 'connect',
        (err, socket) => (err ? callback(err, null) : callback(null, socket!)),
      );
    };
  }

  /** An http.Agent (plain HTTP, for http.request and ws) whose connections pass the guard. */
  httpAgent(options: http.AgentOptions & { connectTimeoutMs?: number } = {}): http.Agent {
    const guard = this;
    const { connectTimeoutMs = 10_000, ...agentOptions } = options;
    class GuardedAgent extends http.Agent {
      override createConnection(
        opts: http.ClientRequestArgs,
        oncreate?: (err: Error | null, socket: Duplex) => void,
      ): undefined {
        const host = opts.host ?? 'localhost';
        const port = Number(opts.port) || 80;
        guard.connectChecked(
          host,
          port,
          () => {
            const socket = net.connect({
              host: bareAddress(host),
              port,
              lookup: guard.lookup,
              ...(opts.localAddress ? { localAddress: opts.localAddress } : {}),
            });
            const timer = setTimeout(
              () => socket.destroy(new Error(`connecting to ${host}:${port} timed out`)),
              connectTimeoutMs,
            );
            socket.once('connect', () => clearTimeout(timer));
            socket.once('close', () => clearTimeout(timer));
            return socket;
          },
          'connect',
          // Node's Agent always passes oncreate and takes a socket handed over later.
          (err, socket) => oncreate?.(err, socket as Duplex),
        );
        return undefined;
      }
    }
    return new GuardedAgent(agentOptions);
  }
}
