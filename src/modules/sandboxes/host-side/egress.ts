import { lookup } from 'node:dns/promises';
import http from 'node:http';
import net from 'node:net';
import { OutboundGuard } from '../../../core/outbound-guard.ts';

// The one way out of a capsule that was given a network: an HTTP proxy
// (CONNECT for TLS and anything else, absolute-URI requests for plain HTTP)
// that lets through only the hosts on the capsule's allow list. Each such
// capsule gets a listener of its own, so a connection's capsule is known by
// the port it came in on; the capsule's own network namespace has no other
// route out. Names are resolved here, and an address in a loopback, private,
// link-local or other special range is refused even when its name is
// allowed (a DNS name pointed at 127.0.0.1 or at a cloud metadata service
// must not open the host to the capsule), unless the operator allows private
// addresses. "Private" is the outbound-address guard's definition, the one
// Paddock uses for its own connections (core/outbound-guard.ts), with no
// exceptions: PADDOCK_ALLOW_PRIVATE_UPSTREAMS is for Paddock's connections,
// not capsules'.

/** Whether `host` is on the allow list: an exact name, or `*.domain` for its subdomains. */
export function hostAllowed(allow: readonly string[], host: string): boolean {
  const h = host.toLowerCase().replace(/\.$/, '');
  return allow.some((rule) => {
    const r = rule.toLowerCase();
    if (r.startsWith('*.')) return h.endsWith(r.slice(1)) && h.length > r.length - 1;
    return h === r;
  });
}

export interface EgressOptions {
  /** Let allowed names reach loopback, private and link-local addresses too (a LAN mirror, a registry on the host). */
  allowPrivate: boolean;
  connectTimeoutMs: number;
}

export interface EgressListener {
  /** What the capsule's processes use as HTTP(S)_PROXY. */
  url: string;
  close(): void;
}

type Decision = { ok: true; address: string; family: number } | { ok: false; status: number; reason: string };

export class EgressProxy {
  private readonly options: EgressOptions;
  private readonly guard = new OutboundGuard();

  constructor(options: Partial<EgressOptions> = {}) {
    this.options = { allowPrivate: false, connectTimeoutMs: 10_000, ...options };
  }

  /** Where `host` may be reached for a capsule with this allow list, or why not. */
  async decide(allow: readonly string[], host: string): Promise<Decision> {
    const name = host.replace(/^\[|\]$/g, '');
    if (!hostAllowed(allow, name)) {
      return { ok: false, status: 403, reason: `${name} is not on this capsule's network allow list` };
    }
    let addresses: Array<{ address: string; family: number }>;
    try {
      addresses = net.isIP(name)
        ? [{ address: name, family: net.isIP(name) }]
        : await lookup(name, { all: true });
    } catch {
      return { ok: false, status: 502, reason: `${name} does not resolve` };
    }
    const usable = this.options.allowPrivate
      ? addresses
      : addresses.filter((a) => this.guard.refusal(a.address) === undefined);
    const first = usable[0];
    if (!first) {
      return {
        ok: false,
        status: 403,
        reason: `${name} resolves to a loopback, private or reserved address, or one of this machine's`,
      };
    }
    return { ok: true, address: first.address, family: first.family };
  }

  /** A proxy listener on the host's loopback for one capsule's allow list. */
  async open(allow: readonly string[]): Promise<EgressListener> {
    const sockets = new Set<net.Socket>();
    const server = http.createServer((req, res) => void this.forward(allow, req, res));
    server.on('connect', (req: http.IncomingMessage, client: net.Socket, head: Buffer) => {
      sockets.add(client);
      client.on('close', () => sockets.delete(client));
      void this.tunnel(allow, req, client, head, sockets);
    });
    server.on('connection', (s: net.Socket) => {
      sockets.add(s);
      s.on('close', () => sockets.delete(s));
    });
    server.on('clientError', (_err, socket) => socket.destroy());
    await new Promise<void>((resolve, reject) => {
      server.once('error', reject);
      server.listen(0, '127.0.0.1', () => resolve());
    });
    const { port } = server.address() as net.AddressInfo;
    return {
      url: `http://127.0.0.1:${port}`,
      close() {
        server.close();
        for (const s of sockets) s.destroy();
      },
    };
  }

  private async tunnel(
    allow: readonly string[],
    req: http.IncomingMessage,
    client: net.Socket,
    head: Buffer,
    sockets: Set<net.Socket>,
  ): Promise<void> {
    client.on('error', () => client.destroy());
    const target = parseAuthority(req.url ?? '');
    if (!target) return refuse(client, 400, 'CONNECT needs host:port');
    const decision = await this.decide(allow, target.host);
    if (!decision.ok) return refuse(client, decision.status, decision.reason);
    const upstream = net.connect({ host: decision.address, port: target.port, family: decision.family });
    sockets.add(upstream);
    upstream.on('close', () => sockets.delete(upstream));
    const timer = setTimeout(
      () => upstream.destroy(new Error('connect timeout')),
      this.options.connectTimeoutMs,
    );
    let connected = false;
    upstream.once('connect', () => {
      connected = true;
      clearTimeout(timer);
      client.write('HTTP/1.1 200 Connection Established\r\n\r\n');
      if (head.length > 0) upstream.write(head);
      upstream.pipe(client).pipe(upstream);
    });
    upstream.on('error', (err) => {
      clearTimeout(timer);
      if (!connected) {
        refuse(client, 502, `cannot connect to ${target.host}:${target.port}: ${err.message}`);
      } else client.destroy();
    });
    client.on('close', () => upstream.destroy());
  }

  private async forward(allow: readonly string[], req: http.IncomingMessage, res: http.ServerResponse) {
    let url: URL;
    try {
      url = new URL(req.url ?? '');
      if (url.protocol !== 'http:') throw new Error('not http');
    } catch {
      return answer(res, 400, 'send absolute http:// URLs, or CONNECT host:port for anything else');
    }
    const decision = await this.decide(allow, url.hostname);
    if (!decision.ok) return answer(res, decision.status, decision.reason);
    const headers: http.OutgoingHttpHeaders = { ...req.headers, host: url.host };
    delete headers['proxy-authorization'];
    delete headers['proxy-connection'];
    const upstream = http.request({
      host: decision.address,
      family: decision.family,
      port: Number(url.port || 80),
      method: req.method,
      path: `${url.pathname}${url.search}`,
      headers,
      timeout: this.options.connectTimeoutMs,
    });
    upstream.on('response', (up) => {
      res.writeHead(up.statusCode ?? 502, up.headers);
      up.pipe(res);
    });
    upstream.on('timeout', () => upstream.destroy(new Error('timeout')));
    upstream.on('error', (err) => {
      if (!res.headersSent) answer(res, 502, `cannot reach ${url.host}: ${err.message}`);
      else res.destroy();
    });
    req.pipe(upstream);
  }
}

function parseAuthority(authority: string): { host: string; port: number } | undefined {
  const m = /^(\[[0-9a-fA-F:.]+\]|[^:/\s]+):(\d{1,5})$/.exec(authority);
  if (!m) return undefined;
  const port = Number(m[2]);
  if (port < 1 || port > 65_535) return undefined;
  return { host: m[1]!, port };
}

const REASONS: Record<number, string> = { 400: 'Bad Request', 403: 'Forbidden', 502: 'Bad Gateway' };

function refuse(client: net.Socket, status: number, reason: string): void {
  const body = `${reason}\n`;
  client.end(
    `HTTP/1.1 ${status} ${REASONS[status] ?? 'Error'}\r\ncontent-type: text/plain\r\ncontent-length: ${Buffer.byteLength(body)}\r\nconnection: close\r\n\r\n${body}`,
  );
}

function answer(res: http.ServerResponse, status: number, reason: string): void {
  res.writeHead(status, { 'content-type': 'text/plain', connection: 'close' });
  res.end(`${reason}\n`);
}
