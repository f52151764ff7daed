import type { ErrorObject } from 'ajv';
import type { FastifyRequest } from 'fastify';
import { type Static, type TSchema, Type } from 'typebox';
import type { WebSocket } from 'ws';
import type { Timers } from '../../core/context.ts';
import { ValidationError } from '../../core/errors.ts';
import {
  jsonMayHoldUnsafeText,
  jsonNestingExceeds,
  MAX_JSON_DEPTH,
  unsafeTextFields,
} from '../../core/input-guard.ts';
import { principalOf } from '../../http/auth.ts';
import { errorResponses, IdParams } from '../../http/schemas.ts';
import type { App } from '../../http/types.ts';
import { fieldErrors, validatorCompiler } from '../../http/validation.ts';
import { capsuleIdOf } from './capsule-view.ts';
import { DriverError } from './drivers/types.ts';
import type { FollowedProcess } from './host.ts';
import {
  ExecStartFrame,
  ProcessParams,
  PtyConnectFrame,
  PtyInputFrame,
  PtyKillFrame,
  PtyResizeFrame,
  PtyStartFrame,
  StopFrame,
} from './schemas.ts';
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

export function send(ws: WebSocket, frame: Record<string, unknown>): void {
  if (ws.readyState === ws.OPEN) ws.send(JSON.stringify(frame));
}

/**
 * A frame as a JSON object, held to the HTTP API's input rules (input-guard.ts):
 * bounded nesting, no NUL or lone surrogate in any string. `refused` names
 * what is wrong; neither set: not a JSON object.
 */
export function parse(raw: unknown): { msg?: Record<string, unknown>; refused?: Record<string, string> } {
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

/** The error frame for a refused frame, shaped like the HTTP API's validation_failed. */
export function refusal(fields: Record<string, string>): Record<string, unknown> {
  const summary = Object.entries(fields)
    .map(([field, problem]) => `${field} ${problem}`)
    .join('; ');
  return { type: 'error', code: 'validation_failed', data: `the frame is invalid: ${summary}`, fields };
}

type Checked<T> = { frame: T; refused?: undefined } | { frame?: undefined; refused: Record<string, string> };

/** A frame checked by the validator the HTTP bodies go through (strict JSON: no coercion, no unknown field). */
export function frameCheck<T extends TSchema>(
  schema: T,
): (msg: Record<string, unknown>) => Checked<Static<T>> {
  const check = validatorCompiler({ schema, method: 'GET', url: '/', httpPart: 'body' }) as ((
    data: unknown,
  ) => boolean) & { errors?: ErrorObject[] | null };
  return (msg) =>
    check(msg) ? { frame: msg as Static<T> } : { refused: fieldErrors(check.errors ?? [], 'frame') };
}
const execStart = frameCheck(ExecStartFrame);
const stop = frameCheck(StopFrame);
const ptyStart = frameCheck(PtyStartFrame);
const ptyConnect = frameCheck(PtyConnectFrame);
const ptyInput = frameCheck(PtyInputFrame);
const ptyResize = frameCheck(PtyResizeFrame);
const ptyKill = frameCheck(PtyKillFrame);

/** A refused start (the envs rule past the schema's) as its error frame; anything else as its message. */
function startRefusal(err: unknown): Record<string, unknown> | undefined {
  if (err instanceof ValidationError) return refusal((err.details?.fields as Record<string, string>) ?? {});
  return undefined;
}

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

// The frame protocols as the API reference shows them (the route's `description`; the
// operation is marked `x-websocket`). docs/sandboxes.md "WebSockets" says the same at length.
const UPGRADE =
  'A WebSocket: connect with `Upgrade: websocket` (ws:// or wss://). The capsule is checked first: a missing one is a 404, one not running a 409, over HTTP. ' +
  'Frames are JSON text. A refused frame is answered `{"type":"error","code":"validation_failed","data","fields"}`';
const EXEC_STREAM_PROTOCOL = `${UPGRADE}, and the socket closes when it was the start frame.

Client → server: \`{"type":"start","cmd","args"?,"envs"?,"cwd"?}\` (once, first; \`cmd\` without \`args\` runs through \`/bin/sh -c\`), \`{"type":"stop"}\` (kills the process; so does closing the socket).

Server → client: \`{"type":"start","pid"}\`, \`{"type":"stdout"|"stderr","data"}\` (text), \`{"type":"exit","exit_code"}\`, then the socket closes.`;
const PROCESS_STREAM_PROTOCOL = `${UPGRADE}.

Nothing to send. Server → client: the process's recent output (up to 256 KiB) then live output as \`{"type":"stdout"|"stderr","data"}\`, then \`{"type":"exit","exit_code"}\`; \`{"type":"error","data"}\` when no process of that pid or tag was started through the API.`;
const PTY_PROTOCOL = `${UPGRADE} (with \`fatal\`: false for input, resize and kill frames, which leave the terminal running).

Client → server: first \`{"type":"start","cmd"?,"args"?,"cols"?,"rows"?,"envs"?,"cwd"?}\` (defaults \`/bin/bash\`, 80×24; \`cols\`/\`rows\` 1–1000) or \`{"type":"connect","tag"}\` (reattach); then \`{"type":"input","data":<base64>}\`, \`{"type":"resize","cols","rows"}\`, \`{"type":"kill"}\`.

Server → client: \`{"type":"started","tag","pid","reconnected"?}\`, \`{"type":"output","data":<base64>}\`, \`{"type":"exit","exit_code"}\`, \`{"type":"error","data","fatal"}\`, \`{"type":"ping"}\` every 25 s. The terminal outlives its socket: reconnect with its tag.`;

/** `timers` drive the terminal's first-message deadline and its keep-alive pings (the context's, like every timer). */
export function registerCapsuleStreamRoutes(app: App, capsules: CapsulesService, timers: Timers): void {
  /**
   * The options of a WebSocket route on a running capsule that takes the scope
   * `need`: its 404 / 409 are answered over HTTP, before any WebSocket exists.
   */
  const onRunningCapsule = (
    need: 'read' | 'write',
    summary: string,
    description: string,
    params: TSchema,
  ) => ({
    websocket: true as const,
    config: { auth: { scope: need } },
    preHandler: async (request: FastifyRequest) => {
      const id = capsuleIdOf((request.params as { id: string }).id);
      await capsules.io.checkRunning(principalOf(request), id, need);
    },
    schema: {
      tags,
      summary,
      description,
      params,
      response: {
        101: Type.Null({ description: 'Switching Protocols: the WebSocket' }),
        ...errorResponses(404, 409),
      },
    },
  });

  app.get(
    '/v1/capsules/:id/exec/stream',
    onRunningCapsule(
      'write',
      'WebSocket: {type:"start", cmd, args?, envs?, cwd?} then stdout/stderr/exit frames; {type:"stop"} kills',
      EXEC_STREAM_PROTOCOL,
      IdParams,
    ),
    (ws, request) => {
      const principal = principalOf(request);
      const id = capsuleIdOf((request.params as { id: string }).id);
      let proc: FollowedProcess | undefined;
      let starting = false;
      ws.on('message', (raw) => {
        const { msg, refused: badFrame } = parse(raw);
        if (badFrame) return send(ws, refusal(badFrame));
        if (!msg) return send(ws, { type: 'error', data: 'frames are JSON objects' });
        if (msg.type === 'stop') {
          const checked = stop(msg);
          if (checked.refused) return send(ws, refusal(checked.refused));
          return proc?.kill('SIGKILL');
        }
        if (msg.type !== 'start' || proc || starting)
          return send(ws, { type: 'error', data: 'send one {"type":"start","cmd":…}' });
        const { frame, refused } = execStart(msg);
        if (refused) {
          send(ws, refusal(refused));
          return ws.close(1008, 'invalid start frame');
        }
        starting = true;
        capsules.io
          .startFollowed(principal, id, {
            cmd: frame.cmd,
            ...(frame.args ? { args: frame.args } : {}),
            ...(frame.envs ? { envs: frame.envs } : {}),
            ...(frame.cwd ? { cwd: frame.cwd } : {}),
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
            const refusedStart = startRefusal(err);
            send(ws, refusedStart ?? { type: 'error', data: (err as Error).message });
            ws.close(refusedStart ? 1008 : 1011, refusedStart ? 'invalid start frame' : 'could not start');
          });
      });
    },
  );

  app.get(
    '/v1/capsules/:id/processes/:selector/stream',
    onRunningCapsule(
      'read',
      'WebSocket: attach to a process started through the API (its recent output, then live)',
      PROCESS_STREAM_PROTOCOL,
      ProcessParams,
    ),
    (ws, request) => {
      const { id: raw, selector } = request.params as { id: string; selector: string };
      const id = capsuleIdOf(raw);
      capsules.io.followed(principalOf(request), id, selector, 'read').then(
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
    onRunningCapsule(
      'write',
      'WebSocket terminal: {type:"start"|"connect"} then input/resize/kill; started/output/exit/error/ping (base64 data)',
      PTY_PROTOCOL,
      IdParams,
    ),
    (ws, request) => {
      const principal = principalOf(request);
      const id = capsuleIdOf((request.params as { id: string }).id);
      let session: FollowedProcess | undefined;
      let opening = false;
      let detach: (() => void) | undefined;
      const fatal = (data: string) => {
        send(ws, { type: 'error', data, fatal: true });
        ws.close(1008, data.slice(0, 100));
      };
      const first = timers.after(FIRST_MESSAGE_MS, () => fatal('no start or connect message in time'));
      const ping = timers.every(PING_EVERY_MS, () => send(ws, { type: 'ping' }));
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
        first.cancel();
        ping.cancel();
        // Sessions outlive the socket: the terminal keeps running for a later connect.
        detach?.();
      });
      const open = (msg: Record<string, unknown>) => {
        first.cancel();
        if (msg.type === 'connect') {
          const { frame, refused } = ptyConnect(msg);
          if (refused) return fatal('connect needs the tag of a running terminal');
          opening = true;
          capsules.io.followed(principal, id, frame.tag, 'write').then(
            (s) => {
              if (!s?.pty || s.exitCode !== null) return fatal(`no running terminal with tag ${frame.tag}`);
              attach(s, false);
            },
            () => fatal(`no running terminal with tag ${frame.tag}`),
          );
          return;
        }
        if (msg.type !== 'start')
          return fatal('the first message is {"type":"start"} or {"type":"connect","tag":…}');
        const { frame, refused } = ptyStart(msg);
        if (refused) {
          send(ws, { ...refusal(refused), fatal: true });
          return ws.close(1008, 'invalid start frame');
        }
        opening = true;
        capsules.io
          .startFollowed(principal, id, {
            cmd: frame.cmd ?? '/bin/bash',
            // A terminal's command runs as given (no sh -c): an empty args list is still "args".
            args: frame.args ?? [],
            envs: { TERM: 'xterm-256color', ...frame.envs },
            ...(frame.cwd ? { cwd: frame.cwd } : {}),
            pty: { cols: frame.cols ?? 80, rows: frame.rows ?? 24 },
          })
          .then((s) => attach(s, true))
          .catch((err: unknown) => {
            const refusedStart = startRefusal(err);
            if (!refusedStart)
              return fatal(err instanceof DriverError ? err.message : 'could not start the terminal');
            send(ws, { ...refusedStart, fatal: true });
            ws.close(1008, 'invalid start frame');
          });
      };
      ws.on('message', (raw) => {
        const { msg, refused: badFrame } = parse(raw);
        if (badFrame) return send(ws, { ...refusal(badFrame), fatal: false });
        if (!msg) return send(ws, { type: 'error', data: 'frames are JSON objects', fatal: false });
        if (!session) {
          if (opening)
            return send(ws, { type: 'error', data: 'the terminal is still opening', fatal: false });
          return open(msg);
        }
        const checked =
          msg.type === 'input'
            ? ptyInput(msg)
            : msg.type === 'resize'
              ? ptyResize(msg)
              : msg.type === 'kill'
                ? ptyKill(msg)
                : null;
        if (!checked)
          return send(ws, { type: 'error', data: `unknown message type ${String(msg.type)}`, fatal: false });
        if (checked.refused) return send(ws, { ...refusal(checked.refused), fatal: false });
        const frame = checked.frame;
        if (frame.type === 'input') session.write(Buffer.from(frame.data, 'base64'));
        else if (frame.type === 'resize') session.resize(frame.cols, frame.rows);
        else session.kill('SIGKILL');
      });
    },
  );
}
