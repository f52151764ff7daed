import http, { type IncomingMessage, type ServerResponse } from 'node:http';
import type { AddressInfo } from 'node:net';
import type { Log } from '../../core/context.ts';
import { AppError } from '../../core/errors.ts';
import { errorBody } from '../../http/errors.ts';
import type { MetricsEndpoint } from './metrics-routes.ts';

/**
 * GET /metrics on an address of its own (PADDOCK_METRICS_LISTEN): a plain
 * HTTP server with one route, so a scraper can be let in on a port the
 * API's users never reach. Everything else is 404 in the error shape.
 */
export class MetricsServer {
  private constructor(
    private readonly server: http.Server,
    /** host:port it listens on (the port chosen when 0 was asked for). */
    readonly address: string,
  ) {}

  static async listen(
    endpoint: MetricsEndpoint,
    at: { host: string; port: number },
    log: Log,
  ): Promise<MetricsServer> {
    const server = http.createServer((req, res) => {
      answer(endpoint, req, res).catch((err: unknown) => {
        log.error({ err }, 'metrics: the scrape failed');
        if (!res.headersSent)
          send(res, 500, errorBody('internal_error', 'the metrics could not be rendered'));
        else res.destroy();
      });
    });
    await new Promise<void>((resolve, reject) => {
      server.once('error', reject);
      server.listen(at.port, at.host, () => {
        server.off('error', reject);
        resolve();
      });
    });
    const bound = server.address() as AddressInfo;
    const host = bound.family === 'IPv6' ? `[${bound.address}]` : bound.address;
    return new MetricsServer(server, `${host}:${bound.port}`);
  }

  async close(): Promise<void> {
    const closed = new Promise<void>((resolve) => this.server.close(() => resolve()));
    // A scraper's kept-alive connection would hold close() until it timed out.
    this.server.closeAllConnections();
    await closed;
  }
}

async function answer(endpoint: MetricsEndpoint, req: IncomingMessage, res: ServerResponse): Promise<void> {
  const path = (req.url ?? '/').split('?')[0]!;
  if (path !== '/metrics') {
    send(
      res,
      404,
      errorBody(
        'route_not_found',
        `there is no route ${req.method} ${path}: this address serves GET /metrics`,
      ),
    );
    return;
  }
  if (req.method !== 'GET' && req.method !== 'HEAD') {
    send(res, 405, errorBody('method_not_allowed', 'the metrics are read with GET'), { allow: 'GET, HEAD' });
    return;
  }
  try {
    endpoint.authorize(req.headers.authorization);
  } catch (err) {
    if (!(err instanceof AppError)) throw err;
    send(res, err.statusCode, errorBody(err.code, err.message), err.headers);
    return;
  }
  const text = await endpoint.render();
  res.writeHead(200, { 'content-type': endpoint.contentType, 'content-length': Buffer.byteLength(text) });
  res.end(req.method === 'HEAD' ? undefined : text);
}

function send(
  res: ServerResponse,
  status: number,
  body: unknown,
  headers: Record<string, string> = {},
): void {
  const text = JSON.stringify(body);
  res.writeHead(status, {
    ...headers,
    'content-type': 'application/json; charset=utf-8',
    'content-length': Buffer.byteLength(text),
  });
  res.end(text);
}
