import { type Static, type TSchema, Type } from 'typebox';
import { fieldErrors, validatorCompiler } from '../../http/validation.ts';
import { METRIC_RANGES } from './host-side/metrics.ts';

// The one contract between the control plane and a `paddock host`: every
// operation's request and answer, the file routes' query, the error body and
// the follow WebSocket's frames. The host validates what it is sent (as every
// /v1 route does); RemoteHost validates what it is answered, so a host that
// answers the wrong shape is a DriverError naming the operation, never a
// wrong-typed value inside the control plane. Requests refuse unknown fields;
// answers may carry more than asked (a newer host), and only the fields here
// are relied on.

/** Signals a caller may send a capsule's process (the /v1 kill route's list). */
export const KILL_SIGNALS = [
  'SIGKILL',
  'SIGTERM',
  'SIGINT',
  'SIGHUP',
  'SIGQUIT',
  'SIGUSR1',
  'SIGUSR2',
] as const;
export const KillSignal = Type.Enum([...KILL_SIGNALS]);

/** The codes a driver's refusal crosses the wire with (DriverError's). */
export const DRIVER_ERROR_CODES = [
  'not_found',
  'too_large',
  'no_space',
  'invalid_path',
  'exists',
  'not_a_directory',
  'invalid',
  'failed',
] as const;

const Args = <T extends Record<string, TSchema>>(properties: T) =>
  Type.Object(properties, { additionalProperties: false });
const Count = Type.Integer({ minimum: 0 });
const Envs = Type.Record(Type.String(), Type.String());
const Argv = Type.Array(Type.String());

const CapsuleLimits = Args({
  memoryMb: Type.Number({ minimum: 0 }),
  vcpus: Type.Number({ minimum: 0 }),
  diskMb: Type.Number({ minimum: 0 }),
  maxProcesses: Count,
  maxOpenFiles: Count,
});

const HostCapsuleSpec = Args({
  id: Type.String({ minLength: 1 }),
  teamId: Type.String({ minLength: 1 }),
  templatePath: Type.Union([Type.String({ minLength: 1 }), Type.Null()]),
  limits: CapsuleLimits,
  envs: Envs,
  networkAllow: Type.Union([Type.Array(Type.String()), Type.Null()]),
});

const ExecRequest = Args({
  cmd: Type.String({ minLength: 1 }),
  args: Type.Optional(Argv),
  envs: Type.Optional(Envs),
  cwd: Type.Optional(Type.String()),
  timeoutSec: Type.Number({ minimum: 0 }),
  maxOutputBytes: Count,
});

const StartRequest = Args({
  cmd: Type.String({ minLength: 1 }),
  args: Type.Optional(Argv),
  envs: Type.Optional(Envs),
  cwd: Type.Optional(Type.String()),
  tag: Type.Optional(Type.String({ minLength: 1 })),
  pty: Type.Optional(Args({ cols: Type.Integer({ minimum: 1 }), rows: Type.Integer({ minimum: 1 }) })),
});

const ExecResult = Type.Object({
  stdout: Type.String(),
  stderr: Type.String(),
  exit_code: Type.Integer(),
  duration_ms: Type.Number({ minimum: 0 }),
  encoding: Type.Enum(['utf-8', 'base64']),
  truncated: Type.Boolean(),
  timed_out: Type.Boolean(),
});

const FileEntry = Type.Object({
  name: Type.String(),
  path: Type.String(),
  type: Type.Enum(['file', 'directory', 'symlink']),
  size: Type.Number({ minimum: 0 }),
  mode: Count,
  permissions: Type.String(),
  owner: Type.String(),
  group: Type.String(),
  modified_at: Type.Number(),
  symlink_target: Type.Union([Type.String(), Type.Null()]),
});

const HostProcess = Type.Object({
  pid: Count,
  tag: Type.Union([Type.String(), Type.Null()]),
  cmd: Type.String(),
  args: Argv,
});

const CapsuleUsage = Type.Object({
  cpuNs: Type.Number({ minimum: 0 }),
  memBytes: Type.Number({ minimum: 0 }),
  diskBytes: Type.Number({ minimum: 0 }),
});

const MetricPoint = Type.Object({
  timestamp_unix: Type.Number(),
  cpu_pct: Type.Number(),
  mem_bytes: Type.Number(),
  disk_bytes: Type.Number(),
});

const Capsule = { capsuleId: Type.String({ minLength: 1 }) };
const InCapsule = { ...Capsule, path: Type.String() };
const Done = Type.Object({});

/** POST /host/rpc/<name>: `{...request}` → 200 `{result: response}`. */
export const HOST_RPC = {
  create: { request: Args({ spec: HostCapsuleSpec }), response: Done },
  destroy: { request: Args(Capsule), response: Done },
  pause: { request: Args(Capsule), response: Done },
  resume: { request: Args(Capsule), response: Done },
  exec: { request: Args({ ...Capsule, req: ExecRequest }), response: ExecResult },
  start: {
    request: Args({ ...Capsule, req: StartRequest }),
    response: Type.Object({ pid: Count, tag: Type.String({ minLength: 1 }) }),
  },
  processes: { request: Args(Capsule), response: Type.Array(HostProcess) },
  kill: {
    request: Args({ ...Capsule, selector: Type.String({ minLength: 1 }), signal: KillSignal }),
    response: Type.Object({ found: Type.Boolean() }),
  },
  list: {
    request: Args({ ...InCapsule, depth: Type.Optional(Type.Integer({ minimum: 0 })) }),
    response: Type.Array(FileEntry),
  },
  mkdir: { request: Args(InCapsule), response: FileEntry },
  remove: { request: Args(InCapsule), response: Done },
  usage: { request: Args(Capsule), response: CapsuleUsage },
  metrics: {
    request: Args({ ...Capsule, range: Type.Enum([...METRIC_RANGES]) }),
    response: Type.Array(MetricPoint),
  },
  snapshot: {
    request: Args({ ...Capsule, templateId: Type.String({ minLength: 1 }) }),
    response: Type.Object({ path: Type.String({ minLength: 1 }), sizeBytes: Type.Number({ minimum: 0 }) }),
  },
  removeTemplate: { request: Args({ path: Type.String({ minLength: 1 }) }), response: Done },
} as const;

export type HostRpcName = keyof typeof HOST_RPC;
export type HostRpcRequest<N extends HostRpcName> = Static<(typeof HOST_RPC)[N]['request']>;
export type HostRpcResponse<N extends HostRpcName> = Static<(typeof HOST_RPC)[N]['response']>;

/** GET and PUT /host/files: `max` 0 streams the whole file (GET); otherwise the most bytes read or written. */
export const FilesQuery = Args({
  capsule: Type.String({ minLength: 1 }),
  path: Type.String({ minLength: 1 }),
  max: Type.Optional(Count),
});

/** What a refused call answers (4xx or 5xx): a driver's refusal keeps its code. */
export const HostErrorBody = Type.Object({
  error: Type.Object({ code: Type.String(), message: Type.String() }),
});

/** GET /host/follow (a WebSocket): the process to follow, by pid or tag. */
export const FollowQuery = Args({
  capsule: Type.String({ minLength: 1 }),
  selector: Type.String({ minLength: 1 }),
});

/** Host → control plane on the follow socket: attached (or missing), output, then the exit. */
export const FollowEvent = Type.Union([
  Type.Object({ type: Type.Literal('missing') }),
  Type.Object({
    type: Type.Literal('attached'),
    pid: Count,
    tag: Type.Union([Type.String(), Type.Null()]),
    pty: Type.Boolean(),
  }),
  Type.Object({
    type: Type.Literal('out'),
    stream: Type.Enum(['stdout', 'stderr']),
    data: Type.String({ description: 'base64' }),
  }),
  Type.Object({ type: Type.Literal('exit'), code: Type.Integer() }),
]);
export type FollowEvent = Static<typeof FollowEvent>;

/** Control plane → host on the follow socket: input, a terminal's new size, a signal. */
export const FollowCommand = Type.Union([
  Args({ type: Type.Literal('input'), data: Type.String({ description: 'base64' }) }),
  Args({
    type: Type.Literal('resize'),
    cols: Type.Integer({ minimum: 1 }),
    rows: Type.Integer({ minimum: 1 }),
  }),
  Args({ type: Type.Literal('kill'), signal: Type.Optional(KillSignal) }),
]);
export type FollowCommand = Static<typeof FollowCommand>;

export type Checked<T> = { ok: true; value: T } | { ok: false; problems: string };

/**
 * A compiled check with the validator the HTTP bodies go through (JSON as
 * sent: no coercion), compiled on first use; its problems name each field
 * (`whole` when the value itself is wrong).
 */
export function checker<T extends TSchema>(
  schema: T,
  whole = 'answer',
): (value: unknown) => Checked<Static<T>> {
  const check = validatorCompiler({ schema, method: 'POST', url: '/', httpPart: 'body' }) as ((
    data: unknown,
  ) => boolean) & { errors?: Parameters<typeof fieldErrors>[0] | null };
  return (value) => {
    if (check(value)) return { ok: true, value: value as Static<T> };
    const fields = fieldErrors(check.errors ?? [], whole);
    return {
      ok: false,
      problems: Object.entries(fields)
        .map(([field, problem]) => `${field} ${problem}`)
        .join('; '),
    };
  };
}
