import type { FastifyRequest } from 'fastify';
import { Type } from 'typebox';
import type { WebSocket } from 'ws';
import {
  jsonMayHoldUnsafeText,
  jsonNestingExceeds,
  MAX_JSON_DEPTH,
  unsafeTextFields,
} from '../../core/input-guard.ts';
import { principalOf } from '../../http/auth.ts';
import { errorResponses, IdParams } from '../../http/schemas.ts';
import type { App } from '../../http/types.ts';
import { DriverError } from './drivers/types.ts';
import { envProblems } from './envs.ts';
import type { FollowedProcess, SandboxHost } from './host.ts';
import { ProcessParams } from './schemas.ts';
import type { CapsulesService } from './service.ts';

// Wrenn's WebSocket protocols. exec/stream and processes/{selector}/stream
// send {type: start|stdout|stderr|exit|error} frames with text data; the PTY
// sends {type: started|output|exit|error|ping} with base64 terminal bytes and
// survives a disconnect (reattach with {type: "connect", tag}).

const tags = ['capsules'];
/** How long a PTY may wait for its first message, and the keepalive it gets while attached. */
const FIRST_MESSAGE_MS = 10_000;
const PING_EVERY_MS = 25_000;
const MAX_FRAME_BYTES = 1024 * 1024;

interface Streamable {
  capsuleId: string;
  host: SandboxHost;
}
declare module 'fastify' {
  interface FastifyRequest {
    capsuleStream?: Streamable;
  }
}

function send(ws: WebSocket, frame: Record<string, unknown>): void {
  if (ws.readyState === ws.OPEN) ws.send(JSON.stringify(frame));
}

/**
 * A frame as a JSON object, held to the HTTP API's input rules (input-guard.ts):
 * bounded nesting, no NUL or lone surrogate in any string. `refused` names
 * what is wrong; neither set: not a JSON object.
 */
function parse(raw: unknown): { msg?: Record<string, unknown>; refused?: Record<string, string> } {
  const text = Buffer.isBuffer(raw) ? raw.toString('utf8') : String(raw);
  if (text.length > MAX_FRAME_BYTES) return {};
  if (jsonNestingExceeds(text)) return { refused: { frame: `nests deeper than ${MAX_JSON_DEPTH} levels` } };
  let v: unknown;
  try {
    v = JSON.parse(text);
  } catch {
    return {};
  }
  if (!v || typeof v !== 'object' || Array.isArray(v)) return {};
  if (jsonMayHoldUnsafeText(text)) {
    const refused = unsafeTextFields(v, 'frame');
    if (Object.keys(refused).length > 0) return { refused };
  }
  return { msg: v as Record<string, unknown> };
}

const strings = (v: unknown): string[] | undefined =>
  Array.isArray(v) && v.every((x) => typeof x === 'string') ? (v as string[]) : undefined;
/**
 * A start frame's envs by the same rule as the HTTP API's (envs.ts): the
 * variables, or the problems to answer with (validation_failed, by field).
 */
function envsOf(v: unknown): { envs?: Record<string, string>; refused?: Record<string, string> } {
  if (v === undefined) return {};
  if (!v || typeof v !== 'object' || Array.isArray(v)) return { refused: { envs: 'must be an object' } };
  const refused = envProblems(v as Record<string, unknown>);
  return refused ? { refused } : { envs: v as Record<string, string> };
}

/** The error frame for a refused frame, shaped like the HTTP API's validation_failed. */
function refusal(fields: Record<string, string>): Record<string, unknown> {
  const summary = Object.entries(fields)
    .map(([field, problem]) => `${field} ${problem}`)
    .join('; ');
  return { type: 'error', code: 'validation_failed', data: `the frame is invalid: ${summary}`, fields };
}
const size = (v: unknown, fallback: number) =>
  typeof v === 'number' && Number.isInteger(v) && v >= 1 && v <= 1000 ? v : fallback;

/** Streams a process's output as Wrenn's exec frames until it exits, then closes. */
function relayExec(ws: WebSocket, proc: FollowedProcess): void {
  send(ws, { type: 'start', pid: proc.pid });
  const stop = proc.follow((stream, data) => send(ws, { type: stream, data: data.toString('utf8') }));
  void proc.exited.then((code) => {
    stop();
    send(ws, { type: 'exit', exit_code: code });
    ws.close(1000, 'process exited');
  });
  ws.on('close', stop);
}

export function registerCapsuleStreamRoutes(app: App, capsules: CapsulesService): void {
  /** The pre-upgrade checks: 404 / 409 are answered over HTTP, before any WebSocket exists. */
  const running = (need: 'read' | 'write') => async (request: FastifyRequest) => {
    const { id } = request.params as { id: string };
    const { c, host } = await capsules.states.running(principalOf(request), id, need);
    request.capsuleStream = { capsuleId: c.id, host };
  };
  const upgrade = { 101: Type.Null({ description: 'Switching Protocols: the WebSocket' }) };

  app.get(
    '/v1/capsules/:id/exec/stream',
    {
      websocket: true,
      config: { auth: { scope: 'write' } },
      preHandler: running('write'),
      schema: {
        tags,
        summary: 'WebSocket: {type:"start", cmd, args?} then stdout/stderr/exit frames; {type:"stop"} kills',
        params: IdParams,
        response: { ...upgrade, ...errorResponses(404, 409) },
      },
    },
    (ws, request) => {
      const { capsuleId, host } = request.capsuleStream!;
      let proc: FollowedProcess | undefined;
      ws.on('message', (raw) => {
        const { msg, refused: badFrame } = parse(raw);
        if (badFrame) return send(ws, refusal(badFrame));
        if (!msg) return send(ws, { type: 'error', data: 'frames are JSON objects' });
        if (msg.type === 'stop') return proc?.kill('SIGKILL');
        if (msg.type !== 'start' || proc)
          return send(ws, { type: 'error', data: 'send one {"type":"start","cmd":…}' });
        if (typeof msg.cmd !== 'string' || msg.cmd === '')
          return send(ws, { type: 'error', data: 'cmd is required' });
        const args = strings(msg.args);
        const { envs, refused } = envsOf(msg.envs);
        if (refused) {
          send(ws, refusal(refused));
          return ws.close(1008, 'invalid start frame');
        }
        host
          .start(capsuleId, {
            cmd: msg.cmd,
            ...(args ? { args } : {}),
            ...(envs ? { envs } : {}),
            ...(typeof msg.cwd === 'string' && msg.cwd.startsWith('/') ? { cwd: msg.cwd } : {}),
          })
          .then((started) => {
            proc = started;
            relayExec(ws, started);
            // The socket closing (the client gone) ends a process it started and did not detach.
            ws.on('close', () => {
              if (started.exitCode === null) started.kill('SIGKILL');
            });
          })
          .catch((err: unknown) => {
            send(ws, { type: 'error', data: (err as Error).message });
            ws.close(1011, 'could not start');
          });
      });
    },
  );

  app.get(
    '/v1/capsules/:id/processes/:selector/stream',
    {
      websocket: true,
      config: { auth: { scope: 'read' } },
      preHandler: running('read'),
      schema: {
        tags,
        summary: 'WebSocket: attach to a process started through the API (its recent output, then live)',
        params: ProcessParams,
        response: { ...upgrade, ...errorResponses(404, 409) },
      },
    },
    (ws, request) => {
      const { capsuleId, host } = request.capsuleStream!;
      const { selector } = request.params as { selector: string };
      void Promise.resolve(host.followed(capsuleId, selector)).then(
        (proc) => {
          if (!proc) {
            send(ws, { type: 'error', data: `no process ${selector} started through the API` });
            ws.close(1008, 'no such process');
            return;
          }
          relayExec(ws, proc);
        },
        (err: unknown) => {
          send(ws, { type: 'error', data: (err as Error).message });
          ws.close(1011, 'host error');
        },
      );
    },
  );

  app.get(
    '/v1/capsules/:id/pty',
    {
      websocket: true,
      config: { auth: { scope: 'write' } },
      preHandler: running('write'),
      schema: {
        tags,
        summary:
          'WebSocket terminal: {type:"start"|"connect"} then input/resize/kill; started/output/exit/error/ping (base64 data)',
        params: IdParams,
        response: { ...upgrade, ...errorResponses(404, 409) },
      },
    },
    (ws, request) => {
      const { capsuleId, host } = request.capsuleStream!;
      let session: FollowedProcess | undefined;
      let detach: (() => void) | undefined;
      const fatal = (data: string) => {
        send(ws, { type: 'error', data, fatal: true });
        ws.close(1008, data.slice(0, 100));
      };
      const first = setTimeout(() => fatal('no start or connect message in time'), FIRST_MESSAGE_MS);
      const ping = setInterval(() => send(ws, { type: 'ping' }), PING_EVERY_MS);
      const attach = (s: FollowedProcess, started: boolean) => {
        session = s;
        if (started) send(ws, { type: 'started', tag: s.tag, pid: s.pid });
        else send(ws, { type: 'started', tag: s.tag, pid: s.pid, reconnected: true });
        detach = s.follow((_stream, data) => send(ws, { type: 'output', data: data.toString('base64') }));
        void s.exited.then((code) => {
          send(ws, { type: 'exit', exit_code: code });
          ws.close(1000, 'exited');
        });
      };
      ws.on('close', () => {
        clearTimeout(first);
        clearInterval(ping);
        // Sessions outlive the socket: the terminal keeps running for a later connect.
        detach?.();
      });
      ws.on('message', (raw) => {
        const { msg, refused: badFrame } = parse(raw);
        if (badFrame) return send(ws, { ...refusal(badFrame), fatal: false });
        if (!msg) return send(ws, { type: 'error', data: 'frames are JSON objects', fatal: false });
        if (!session) {
          clearTimeout(first);
          if (msg.type === 'connect') {
            const tag = msg.tag;
            if (typeof tag !== 'string') return fatal('connect needs the tag of a running terminal');
            void Promise.resolve(host.followed(capsuleId, tag)).then(
              (s) => {
                if (!s?.pty || s.exitCode !== null) return fatal(`no running terminal with tag ${tag}`);
                attach(s, false);
              },
              () => fatal(`no running terminal with tag ${tag}`),
            );
            return;
          }
          if (msg.type !== 'start')
            return fatal('the first message is {"type":"start"} or {"type":"connect","tag":…}');
          const args = strings(msg.args) ?? [];
          const { envs: given, refused } = envsOf(msg.envs);
          if (refused) {
            send(ws, { ...refusal(refused), fatal: true });
            return ws.close(1008, 'invalid start frame');
          }
          const envs = { TERM: 'xterm-256color', ...given };
          host
            .start(capsuleId, {
              cmd: typeof msg.cmd === 'string' && msg.cmd !== '' ? msg.cmd : '/bin/bash',
              // A terminal's command runs as given (no sh -c): an empty args list is still "args".
              args,
              envs,
              ...(typeof msg.cwd === 'string' && msg.cwd.startsWith('/') ? { cwd: msg.cwd } : {}),
              pty: { cols: size(msg.cols, 80), rows: size(msg.rows, 24) },
            })
            .then((s) => attach(s, true))
            .catch((err: unknown) =>
              fatal(err instanceof DriverError ? err.message : 'could not start the terminal'),
            );
          return;
        }
        switch (msg.type) {
          case 'input':
            if (typeof msg.data === 'string') session.write(Buffer.from(msg.data, 'base64'));
            return;
          case 'resize':
            session.resize(size(msg.cols, 80), size(msg.rows, 24));
            return;
          case 'kill':
            session.kill('SIGKILL');
            return;
          default:
            send(ws, { type: 'error', data: `unknown message type ${String(msg.type)}`, fatal: false });
        }
      });
    },
  );
}
