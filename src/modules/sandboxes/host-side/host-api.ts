import type { Readable } from 'node:stream';
import type { TypeBoxTypeProvider } from '@fastify/type-provider-typebox';
import fastifyWebsocket from '@fastify/websocket';
import Fastify, { type FastifyError } from 'fastify';
import type { WebSocket } from 'ws';
import { safeEqual } from '../../../core/crypto.ts';
import { AppError } from '../../../core/errors.ts';
import { NOOP_TRACER, type Tracer } from '../../../core/tracing.ts';
import { errorBody } from '../../../http/errors.ts';
import { registerInputGuards } from '../../../http/input-guards.ts';
import { registerRequestSpans } from '../../../http/tracing.ts';
import { fieldErrors, validatorCompiler } from '../../../http/validation.ts';
import { DriverError } from '../drivers/types.ts';
import type { SandboxHost } from '../host.ts';
import {
  checker,
  FilesQuery,
  FollowCommand,
  type FollowEvent,
  FollowQuery,
  HOST_RPC,
  type HostRpcName,
  type HostRpcRequest,
  type HostRpcResponse,
} from '../host-rpc-schemas.ts';

// The API a `paddock host` serves to its control plane: the SandboxHost
// operations as JSON calls (POST /host/rpc/<method>), file contents as raw
// streams (GET and PUT /host/files), a WebSocket per followed process
// (GET /host/follow), every call authenticated by the control token the
// control plane gave this host at registration. Requests are checked against
// host-rpc-schemas.ts, the contract RemoteHost (the client) checks answers
// against. A driver's refusal crosses as {error: {code, message}} and becomes
// the same DriverError on the other side.

const JSON_LIMIT_BYTES = 4 * 1024 * 1024;

type Operations = { [N in HostRpcName]: (a: HostRpcRequest<N>) => Promise<HostRpcResponse<N>> };

/** The JSON operations, by name: each checked by the compiler against the shared schemas. */
function operations(h: () => SandboxHost): Operations {
  return {
    create: async (a) => {
      await h().create(a.spec);
      return {};
    },
    destroy: async (a) => {
      await h().destroy(a.capsuleId);
      return {};
    },
    pause: async (a) => {
      await h().pause(a.capsuleId);
      return {};
    },
    resume: async (a) => {
      await h().resume(a.capsuleId);
      return {};
    },
    exec: (a) => h().exec(a.capsuleId, a.req),
    start: (a) => h().launch(a.capsuleId, a.req),
    processes: (a) => h().processes(a.capsuleId),
    kill: async (a) => ({ found: await h().kill(a.capsuleId, a.selector, a.signal) }),
    list: (a) => h().list(a.capsuleId, a.path, a.depth ?? 1),
    mkdir: (a) => h().mkdir(a.capsuleId, a.path),
    remove: async (a) => {
      await h().remove(a.capsuleId, a.path);
      return {};
    },
    usage: (a) => h().usage(a.capsuleId),
    metrics: async (a) => h().metrics(a.capsuleId, a.range),
    snapshot: (a) => h().snapshot(a.capsuleId, a.templateId),
    removeTemplate: async (a) => {
      await h().removeTemplate(a.path);
      return {};
    },
  };
}

export interface AgentServer {
  port: number;
  close(): Promise<void>;
}

const checkCommand = checker(FollowCommand);

/** Relays one followed process over its socket (the protocol in host-rpc-schemas.ts). */
async function follow(ws: WebSocket, host: SandboxHost, capsuleId: string, selector: string): Promise<void> {
  const send = (event: FollowEvent) => {
    if (ws.readyState === ws.OPEN) ws.send(JSON.stringify(event));
  };
  const f = await host.followed(capsuleId, selector);
  if (!f) {
    send({ type: 'missing' });
    ws.close(1000);
    return;
  }
  send({ type: 'attached', pid: f.pid, tag: f.tag, pty: f.pty });
  const stop = f.follow((stream, data) => send({ type: 'out', stream, data: data.toString('base64') }));
  void f.exited.then((code) => {
    stop();
    send({ type: 'exit', code });
    ws.close(1000);
  });
  ws.on('close', stop);
  ws.on('message', (raw) => {
    let parsed: unknown;
    try {
      parsed = JSON.parse(String(raw));
    } catch {
      return;
    }
    // A frame this host does not understand is dropped, as a broken one.
    const checked = checkCommand(parsed);
    if (!checked.ok) return;
    const command = checked.value;
    if (command.type === 'input') f.write(Buffer.from(command.data, 'base64'));
    else if (command.type === 'resize') f.resize(command.cols, command.rows);
    else f.kill(command.signal ?? 'SIGKILL');
  });
}

/**
 * Serves `host` on listen:port. `controlToken()` is read per request: it is
 * known only once the host has registered. A request that carries the control
 * plane's traceparent gets a span of `tracer`'s, continuing that trace.
 */
export async function serveAgentApi(
  host: () => SandboxHost | undefined,
  controlToken: () => string | undefined,
  listen: { host: string; port: number },
  tracer: Tracer = NOOP_TRACER,
): Promise<AgentServer> {
  const app = Fastify({
    bodyLimit: JSON_LIMIT_BYTES,
    keepAliveTimeout: 30_000,
    // close() ends the control plane's pooled connections and followers at once.
    forceCloseConnections: true,
  }).withTypeProvider<TypeBoxTypeProvider>();
  registerRequestSpans(app, tracer, { continuedOnly: true });
  app.setValidatorCompiler(validatorCompiler);
  registerInputGuards(app);
  app.setErrorHandler((error: FastifyError | Error, _request, reply) => {
    if (error instanceof DriverError) return reply.status(422).send(errorBody(error.code, error.message));
    if (error instanceof AppError)
      return reply.status(error.statusCode).send(errorBody(error.code, error.message, error.details));
    const fe = error as FastifyError;
    if (fe.validation) {
      const fields = fieldErrors(fe.validation as never, fe.validationContext);
      const summary = Object.entries(fields)
        .map(([f, m]) => `${f} ${m}`)
        .join('; ');
      return reply
        .status(400)
        .send(
          errorBody('validation_failed', `the ${fe.validationContext ?? 'request'} is invalid: ${summary}`),
        );
    }
    if (fe.code === 'FST_ERR_CTP_BODY_TOO_LARGE')
      return reply.status(413).send(errorBody('too_large', 'request body too large'));
    if (typeof fe.statusCode === 'number' && fe.statusCode >= 400 && fe.statusCode < 500)
      return reply.status(fe.statusCode).send(errorBody('bad_request', fe.message));
    // The control plane is this API's one caller: it reports the host's failure to its user.
    return reply.status(500).send(errorBody('failed', error.message));
  });
  app.setNotFoundHandler((request, reply) => {
    const rpc = request.url.startsWith('/host/rpc/');
    reply.status(404).send(errorBody('not_found', rpc ? 'no such operation' : 'no such route'));
  });

  // First: its hooks mark an upgrade (request.ws) for ours, and close a refused one's socket.
  await app.register(fastifyWebsocket, {
    options: { maxPayload: 2 * 1024 * 1024 },
    // Followers are cut at close, not asked to agree: the host is stopping.
    preClose: (done) => {
      for (const ws of app.websocketServer.clients) ws.terminate();
      app.websocketServer.close(() => done());
    },
  });
  // Every request, the follow socket's upgrade included: the control token first, then a host to serve.
  app.addHook('onRequest', async (request) => {
    const expected = controlToken();
    const presented = (request.headers.authorization ?? '').replace(/^Bearer /, '');
    if (!expected || !presented || !safeEqual(presented, expected))
      throw new AppError(401, 'unauthorized', 'bad control token');
    if (!host()) throw new AppError(503, 'starting', 'the host is starting');
    if (request.ws && request.url.split('?')[0] !== '/host/follow')
      throw new AppError(404, 'not_found', 'no such route');
  });
  // File contents pass through as the request stream, never buffered whole (the host bounds their size).
  app.addContentTypeParser('application/octet-stream', (_request, payload, done) => done(null, payload));

  const live = () => host()!;
  const ops = operations(live);
  for (const name of Object.keys(HOST_RPC) as HostRpcName[]) {
    // The route's body schema is this operation's own request: what reaches op has its type.
    const op = ops[name] as (a: unknown) => Promise<unknown>;
    app.post(`/host/rpc/${name}`, { schema: { body: HOST_RPC[name].request } }, async (request) => ({
      result: await op(request.body),
    }));
  }

  app.get('/host/files', { schema: { querystring: FilesQuery } }, async (request, reply) => {
    const { capsule, path, max = 0 } = request.query;
    const contents =
      max > 0 ? await live().readFile(capsule, path, max) : await live().readStream(capsule, path);
    return reply.type('application/octet-stream').send(contents);
  });
  app.put('/host/files', { schema: { querystring: FilesQuery } }, async (request) => {
    const { capsule, path, max = 0 } = request.query;
    if (request.headers['content-type'] !== 'application/octet-stream')
      throw new AppError(415, 'unsupported_media_type', 'send the file as application/octet-stream');
    await live().writeFile(capsule, path, request.body as Readable, max);
    return { result: {} };
  });

  app.get('/host/follow', { websocket: true, schema: { querystring: FollowQuery } }, (socket, request) => {
    const { capsule, selector } = request.query as { capsule: string; selector: string };
    follow(socket, live(), capsule, selector).catch(() => socket.close(1011));
  });

  await app.listen({ host: listen.host, port: listen.port });
  const address = app.server.address();
  return {
    port: typeof address === 'object' && address !== null ? address.port : listen.port,
    close: () => app.close(),
  };
}
