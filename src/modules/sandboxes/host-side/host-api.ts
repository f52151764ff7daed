import http from 'node:http';
import type { AddressInfo } from 'node:net';
import { pipeline } from 'node:stream/promises';
import { WebSocketServer } from 'ws';
import { safeEqual } from '../../../core/crypto.ts';
import { DriverError } from '../drivers/types.ts';
import type { SandboxHost } from '../host.ts';
import type { MetricRange } from './metrics.ts';

// The API a `paddock host` serves to its control plane: the SandboxHost
// operations as JSON calls (POST /host/rpc/<method>), file contents as raw
// streams (GET and PUT /host/files), every call authenticated by the control
// token the control plane gave this host at registration. RemoteHost is its
// client. A driver's refusal crosses as {error: {code, message}} and becomes
// the same DriverError on the other side.

const JSON_LIMIT_BYTES = 4 * 1024 * 1024;

type Args = Record<string, unknown>;
const str = (a: Args, k: string) => {
  const v = a[k];
  if (typeof v !== 'string') throw new DriverError('failed', `missing ${k}`);
  return v;
};

/** The JSON operations, by name. */
function operations(host: SandboxHost): Record<string, (a: Args) => Promise<unknown>> {
  return {
    create: async (a) => {
      await host.create(a.spec as Parameters<SandboxHost['create']>[0]);
      return {};
    },
    destroy: async (a) => {
      await host.destroy(str(a, 'capsuleId'));
      return {};
    },
    pause: async (a) => {
      await host.pause(str(a, 'capsuleId'));
      return {};
    },
    resume: async (a) => {
      await host.resume(str(a, 'capsuleId'));
      return {};
    },
    exec: (a) => host.exec(str(a, 'capsuleId'), a.req as Parameters<SandboxHost['exec']>[1]),
    start: async (a) => {
      const p = await host.start(str(a, 'capsuleId'), a.req as Parameters<SandboxHost['start']>[1]);
      return { pid: p.pid, tag: p.tag };
    },
    processes: (a) => host.processes(str(a, 'capsuleId')),
    kill: async (a) => ({
      found: await host.kill(str(a, 'capsuleId'), str(a, 'selector'), str(a, 'signal') as NodeJS.Signals),
    }),
    list: (a) => host.list(str(a, 'capsuleId'), str(a, 'path'), Number(a.depth ?? 1)),
    mkdir: (a) => host.mkdir(str(a, 'capsuleId'), str(a, 'path')),
    remove: async (a) => {
      await host.remove(str(a, 'capsuleId'), str(a, 'path'));
      return {};
    },
    usage: (a) => host.usage(str(a, 'capsuleId')),
    metrics: async (a) => host.metrics(str(a, 'capsuleId'), str(a, 'range') as MetricRange),
    snapshot: (a) => host.snapshot(str(a, 'capsuleId'), str(a, 'templateId')),
    removeTemplate: async (a) => {
      await host.removeTemplate(str(a, 'path'));
      return {};
    },
  };
}

function sendJson(res: http.ServerResponse, status: number, body: unknown): void {
  const text = JSON.stringify(body);
  res.writeHead(status, { 'content-type': 'application/json', 'content-length': Buffer.byteLength(text) });
  res.end(text);
}

function sendError(res: http.ServerResponse, err: unknown): void {
  if (res.headersSent) {
    res.destroy();
    return;
  }
  const code = err instanceof DriverError ? err.code : 'failed';
  sendJson(res, err instanceof DriverError ? 422 : 500, {
    error: { code, message: (err as Error)?.message ?? String(err) },
  });
}

async function readJson(req: http.IncomingMessage): Promise<Args> {
  const chunks: Buffer[] = [];
  let size = 0;
  for await (const chunk of req) {
    size += (chunk as Buffer).length;
    if (size > JSON_LIMIT_BYTES) throw new DriverError('too_large', 'request body too large');
    chunks.push(chunk as Buffer);
  }
  const v = JSON.parse(Buffer.concat(chunks).toString('utf8') || '{}');
  if (!v || typeof v !== 'object') throw new DriverError('failed', 'expected a JSON object');
  return v as Args;
}

export interface AgentServer {
  port: number;
  close(): Promise<void>;
}

/**
 * Serves `host` on listen:port. `controlToken()` is read per request: it is
 * known only once the host has registered.
 */
export async function serveAgentApi(
  host: () => SandboxHost | undefined,
  controlToken: () => string | undefined,
  listen: { host: string; port: number },
): Promise<AgentServer> {
  let ops: { host: SandboxHost; table: ReturnType<typeof operations> } | undefined;
  const server = http.createServer((req, res) => {
    void (async () => {
      try {
        const expected = controlToken();
        const presented = (req.headers.authorization ?? '').replace(/^Bearer /, '');
        if (!expected || !presented || !safeEqual(presented, expected)) {
          return sendJson(res, 401, { error: { code: 'unauthorized', message: 'bad control token' } });
        }
        const h = host();
        if (!h) return sendJson(res, 503, { error: { code: 'starting', message: 'the host is starting' } });
        if (!ops || ops.host !== h) ops = { host: h, table: operations(h) };
        const url = new URL(req.url ?? '/', 'http://host');
        if (req.method === 'POST' && url.pathname.startsWith('/host/rpc/')) {
          const name = url.pathname.slice('/host/rpc/'.length);
          // Own names only: "constructor" or "valueOf" must not reach Object.prototype's.
          const op = Object.hasOwn(ops.table, name) ? ops.table[name] : undefined;
          if (!op) return sendJson(res, 404, { error: { code: 'not_found', message: 'no such operation' } });
          return sendJson(res, 200, { result: (await op(await readJson(req))) ?? null });
        }
        if (url.pathname === '/host/files') {
          const capsuleId = url.searchParams.get('capsule') ?? '';
          const path = url.searchParams.get('path') ?? '';
          const max = Number(url.searchParams.get('max') ?? '0');
          if (req.method === 'GET') {
            const stream =
              max > 0
                ? await h.readFile(capsuleId, path, max).then((b) => {
                    res.setHeader('content-length', b.length);
                    return [b];
                  })
                : await h.readStream(capsuleId, path);
            res.writeHead(200, { 'content-type': 'application/octet-stream' });
            await pipeline(stream, res);
            return;
          }
          if (req.method === 'PUT') {
            await h.writeFile(capsuleId, path, req, max);
            return sendJson(res, 200, { result: {} });
          }
        }
        sendJson(res, 404, { error: { code: 'not_found', message: 'no such route' } });
      } catch (err) {
        sendError(res, err);
      }
    })();
  });
  server.keepAliveTimeout = 30_000;
  // Following a process (exec/stream, processes/{selector}/stream, PTY): one WebSocket per follower.
  const wss = new WebSocketServer({ noServer: true, maxPayload: 2 * 1024 * 1024 });
  server.on('upgrade', (req, socket, head) => {
    const expected = controlToken();
    const presented = (req.headers.authorization ?? '').replace(/^Bearer /, '');
    const url = new URL(req.url ?? '/', 'http://host');
    const h = host();
    if (!expected || !presented || !safeEqual(presented, expected) || !h || url.pathname !== '/host/follow') {
      socket.end('HTTP/1.1 401 Unauthorized\r\nconnection: close\r\n\r\n');
      return;
    }
    wss.handleUpgrade(req, socket, head, (ws) => {
      void (async () => {
        const f = await h.followed(
          url.searchParams.get('capsule') ?? '',
          url.searchParams.get('selector') ?? '',
        );
        if (!f) {
          ws.send(JSON.stringify({ type: 'missing' }));
          ws.close(1000);
          return;
        }
        ws.send(JSON.stringify({ type: 'attached', pid: f.pid, tag: f.tag, pty: f.pty }));
        const stop = f.follow((stream, data) => {
          if (ws.readyState === ws.OPEN)
            ws.send(JSON.stringify({ type: 'out', stream, data: data.toString('base64') }));
        });
        void f.exited.then((code) => {
          stop();
          if (ws.readyState === ws.OPEN) ws.send(JSON.stringify({ type: 'exit', code }));
          ws.close(1000);
        });
        ws.on('close', stop);
        ws.on('message', (raw) => {
          let msg: { type?: string; data?: string; cols?: number; rows?: number; signal?: string };
          try {
            msg = JSON.parse(String(raw));
          } catch {
            return;
          }
          if (msg.type === 'input' && typeof msg.data === 'string') f.write(Buffer.from(msg.data, 'base64'));
          else if (msg.type === 'resize') f.resize(Number(msg.cols) || 80, Number(msg.rows) || 24);
          else if (msg.type === 'kill') f.kill((msg.signal as NodeJS.Signals) ?? 'SIGKILL');
        });
      })();
    });
  });
  await new Promise<void>((resolve, reject) => {
    server.once('error', reject);
    server.listen(listen.port, listen.host, () => resolve());
  });
  return {
    port: (server.address() as AddressInfo).port,
    close: () =>
      new Promise<void>((resolve) => {
        for (const ws of wss.clients) ws.terminate();
        server.close(() => resolve());
        server.closeAllConnections();
      }),
  };
}
