import { spawn } from 'node:child_process';
import net from 'node:net';
import { quietPipes } from './proc.ts';

// A capsule never shares the host's network: it has its own namespace with
// only a loopback. When it is given a network, the one way out is the HTTP
// proxy (which applies the egress rules): a port on the capsule's loopback
// whose connections Paddock carries to the proxy. The listening socket is
// created inside the capsule's network namespace by a short-lived helper
// (node, entered there with nsenter -n) and handed to this process over the
// IPC channel; the connections to the proxy are made from the host's
// namespace. The helper exits at once; nothing of Paddock runs in the capsule.

const HELPER = [
  "const s = require('node:net').createServer();",
  "s.on('error', (e) => { process.send({ error: String(e.message) }, () => process.exit(1)); });",
  "s.listen(Number(process.env.PADDOCK_PORT), '127.0.0.1', () => {",
  "  process.send('listening', s, () => process.exit(0));",
  '});',
].join('\n');

export interface ProxyForwarder {
  /** The proxy's URL as the capsule's processes must use it. */
  insideUrl: string;
  close(): void;
}

function portOf(url: URL): number {
  if (url.port) return Number(url.port);
  return url.protocol === 'https:' ? 443 : 80;
}

export async function openProxyForwarder(
  nsenter: string,
  initHostPid: number,
  proxyUrl: string,
  timeoutMs = 10_000,
): Promise<ProxyForwarder> {
  const upstream = new URL(proxyUrl);
  const port = portOf(upstream);
  const helper = quietPipes(
    spawn(nsenter, ['-t', String(initHostPid), '-n', '--', process.execPath, '-e', HELPER], {
      stdio: ['ignore', 'ignore', 'pipe', 'ipc'],
      env: { PADDOCK_PORT: String(port), PATH: '/usr/bin:/bin' },
    }),
  );
  let stderr = '';
  helper.stderr?.setEncoding('utf8').on('data', (d: string) => {
    stderr += d;
  });
  const server = await new Promise<net.Server>((resolve, reject) => {
    const timer = setTimeout(() => {
      helper.kill('SIGKILL');
      reject(new Error(`the capsule's proxy port did not open in ${timeoutMs} ms`));
    }, timeoutMs);
    helper.on('message', (message: unknown, handle: unknown) => {
      clearTimeout(timer);
      if (message === 'listening' && handle instanceof net.Server) resolve(handle);
      else reject(new Error(`cannot open the capsule's proxy port: ${JSON.stringify(message)}`));
    });
    helper.on('error', (err) => {
      clearTimeout(timer);
      reject(new Error(`the proxy helper could not start: ${err.message}`));
    });
    helper.on('exit', (code) => {
      // A clean exit may be seen before its message is: the message settles it then.
      if (code === 0) return;
      clearTimeout(timer);
      reject(new Error(`the proxy helper exited with ${code}: ${stderr.trim()}`));
    });
  });
  const sockets = new Set<net.Socket>();
  server.on('connection', (inside: net.Socket) => {
    const outside = net.connect(port, upstream.hostname.replace(/^\[|\]$/g, ''));
    for (const s of [inside, outside]) {
      sockets.add(s);
      s.on('error', () => {
        inside.destroy();
        outside.destroy();
      });
      s.on('close', () => sockets.delete(s));
    }
    inside.pipe(outside).pipe(inside);
  });
  const inside = new URL(proxyUrl);
  inside.hostname = '127.0.0.1';
  return {
    insideUrl: inside.toString().replace(/\/$/, ''),
    close() {
      server.close();
      for (const s of sockets) s.destroy();
    },
  };
}
