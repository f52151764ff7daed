import { type Static, Type } from 'typebox';
import { CAPSULE_STATUSES } from '../../db/schema/index.ts';
import { Body, Nullable, Paginated, Timestamp } from '../../http/schemas.ts';
import { EnvsSchema } from './envs.ts';
import { KILL_SIGNALS } from './host-rpc-schemas.ts';

export const CapsuleStatusSchema = Type.Enum([...CAPSULE_STATUSES]);

export const Hostname = Type.String({
  minLength: 1,
  maxLength: 253,
  pattern: '^(\\*\\.)?[A-Za-z0-9]([A-Za-z0-9-]*[A-Za-z0-9])?(\\.[A-Za-z0-9]([A-Za-z0-9-]*[A-Za-z0-9])?)*$',
  description: 'a host name, or *.domain for its subdomains',
});
const Labels = Type.Record(Type.String({ minLength: 1, maxLength: 100 }), Type.String({ maxLength: 1000 }), {
  maxProperties: 50,
  propertyNames: { not: { enum: ['__proto__', 'constructor', 'prototype'] } },
} as Record<string, unknown>);
export const TemplateName = Type.String({
  minLength: 1,
  maxLength: 100,
  pattern: '^[a-z0-9][a-z0-9._-]*$',
  description: 'lower case letters, digits, ".", "_" and "-"',
});

export const CreateCapsuleBody = Body({
  template: Type.Optional(TemplateName),
  vcpus: Type.Optional(Type.Integer({ minimum: 1, maximum: 64, default: 1 })),
  memory_mb: Type.Optional(Type.Integer({ minimum: 64, maximum: 262_144, default: 512 })),
  disk_size_mb: Type.Optional(
    Type.Integer({
      minimum: 16,
      maximum: 5120,
      default: 5120,
      description: 'the writable layer; capped at 5 GB',
    }),
  ),
  timeout_sec: Type.Optional(
    Type.Integer({
      minimum: 0,
      maximum: 30 * 86_400,
      default: 0,
      description: 'auto-pause after this much inactivity; 0 = never; 1–59 are raised to 60',
    }),
  ),
  metadata: Type.Optional(Labels),
  host_tags: Type.Optional(
    Type.Array(Type.String({ minLength: 1, maxLength: 100 }), {
      maxItems: 20,
      description: 'place the capsule only on a host that has every one of these tags',
    }),
  ),
  network: Type.Optional(
    Nullable(
      Type.Object(
        { allow: Type.Array(Hostname, { maxItems: 100 }) },
        {
          additionalProperties: false,
          description: 'hosts reachable through the egress proxy; absent = no network',
        },
      ),
    ),
  ),
});
export type CreateCapsuleInput = Static<typeof CreateCapsuleBody>;

export const Capsule = Type.Object({
  id: Type.String(),
  team_id: Type.String(),
  status: CapsuleStatusSchema,
  status_reason: Nullable(Type.String()),
  template: Type.String(),
  vcpus: Type.Integer(),
  memory_mb: Type.Integer(),
  disk_size_mb: Type.Integer(),
  timeout_sec: Type.Integer(),
  network: Nullable(Type.Object({ allow: Type.Array(Type.String()) })),
  metadata: Type.Record(Type.String(), Type.String()),
  isolation: Nullable(Type.Enum(['bwrap', 'none'])),
  host_id: Nullable(Type.String()),
  active_seconds: Type.Integer({ description: 'seconds spent running so far (container-seconds)' }),
  created_at: Timestamp,
  started_at: Nullable(Timestamp),
  last_active_at: Nullable(Timestamp),
  ended_at: Nullable(Timestamp),
});

export const CapsuleList = Paginated(Capsule);
const STATUS_LIST = `(${CAPSULE_STATUSES.join('|')})`;
export const GetCapsuleQuery = Type.Object(
  {
    wait_for: Type.Optional(
      Type.String({
        pattern: `^${STATUS_LIST}(,${STATUS_LIST})*$`,
        description: 'comma-separated statuses: answer once the capsule is in one (or has ended)',
      }),
    ),
    timeout_ms: Type.Optional(
      Type.Integer({
        minimum: 0,
        maximum: 60_000,
        default: 30_000,
        description: 'the longest wait_for waits',
      }),
    ),
  },
  { additionalProperties: false },
);
export const CapsuleListQuery = Type.Object(
  {
    status: Type.Optional(CapsuleStatusSchema),
    limit: Type.Optional(Type.Integer({ minimum: 1, maximum: 200, default: 50 })),
    cursor: Type.Optional(Type.String({ maxLength: 400 })),
  },
  { additionalProperties: false },
);

const InsidePath = Type.String({
  minLength: 1,
  maxLength: 4096,
  pattern: '^/',
  description: 'absolute, inside the capsule',
});

export const ExecBody = Body({
  cmd: Type.String({ minLength: 1, maxLength: 100_000, description: 'without args, run by /bin/sh -c' }),
  args: Type.Optional(Type.Array(Type.String({ maxLength: 100_000 }), { maxItems: 1000 })),
  timeout_sec: Type.Optional(
    Type.Integer({ minimum: 1, maximum: 3600, default: 30, description: 'foreground only' }),
  ),
  background: Type.Optional(Type.Boolean({ default: false })),
  tag: Type.Optional(Type.String({ minLength: 1, maxLength: 100, pattern: '^[A-Za-z0-9._-]+$' })),
  envs: Type.Optional(EnvsSchema),
  cwd: Type.Optional(InsidePath),
});
export type ExecInput = Static<typeof ExecBody>;

// WebSocket frames (ws-routes.ts), held to the same schemas as the HTTP bodies.
const TerminalSize = Type.Integer({ minimum: 1, maximum: 1000 });
const { cmd: ExecCmd, args: ExecArgs, envs: ExecEnvs, cwd: ExecCwd } = ExecBody.properties;
export const ExecStartFrame = Body({
  type: Type.Literal('start'),
  cmd: ExecCmd,
  args: ExecArgs,
  envs: ExecEnvs,
  cwd: ExecCwd,
});
export type ExecStart = Static<typeof ExecStartFrame>;
export const StopFrame = Body({ type: Type.Literal('stop') });
export const PtyStartFrame = Body({
  type: Type.Literal('start'),
  cmd: Type.Optional(ExecCmd),
  args: ExecArgs,
  envs: ExecEnvs,
  cwd: ExecCwd,
  cols: Type.Optional(TerminalSize),
  rows: Type.Optional(TerminalSize),
});
export type PtyStart = Static<typeof PtyStartFrame>;
export const PtyConnectFrame = Body({
  type: Type.Literal('connect'),
  tag: Type.String({ minLength: 1, maxLength: 100 }),
});
export const PtyInputFrame = Body({
  type: Type.Literal('input'),
  data: Type.String({ contentEncoding: 'base64' }),
});
export const PtyResizeFrame = Body({ type: Type.Literal('resize'), cols: TerminalSize, rows: TerminalSize });
export const PtyKillFrame = Body({ type: Type.Literal('kill') });

export const ExecResponse = Type.Object({
  sandbox_id: Type.String(),
  cmd: Type.String(),
  stdout: Type.String(),
  stderr: Type.String(),
  exit_code: Type.Integer({ description: '124 when the timeout ended it; 128 + n when killed by signal n' }),
  duration_ms: Type.Integer(),
  encoding: Type.Enum(['utf-8', 'base64']),
  truncated: Type.Boolean({ description: 'output past the limit was cut' }),
  timed_out: Type.Boolean(),
});

export const BackgroundExecResponse = Type.Object({
  sandbox_id: Type.String(),
  cmd: Type.String(),
  pid: Type.Integer(),
  tag: Type.String(),
});

export const ProcessList = Type.Object({
  data: Type.Array(
    Type.Object({
      pid: Type.Integer(),
      tag: Nullable(Type.String()),
      cmd: Type.String(),
      args: Type.Array(Type.String()),
    }),
  ),
  next_cursor: Type.Null(),
});

export const ProcessParams = Type.Object({
  id: Type.String({ minLength: 1, maxLength: 100 }),
  selector: Type.String({ minLength: 1, maxLength: 100, description: 'a pid (digits) or a tag' }),
});
export const KillQuery = Type.Object(
  {
    signal: Type.Optional(Type.Enum([...KILL_SIGNALS], { default: 'SIGKILL' })),
  },
  { additionalProperties: false },
);

export const PathBody = Body({ path: InsidePath });
export const ListBody = Body({
  path: InsidePath,
  depth: Type.Optional(
    Type.Integer({ minimum: 0, maximum: 10, default: 1, description: '0 and 1: the entries of path' }),
  ),
});

export const FileEntrySchema = Type.Object({
  name: Type.String(),
  path: Type.String(),
  type: Type.Enum(['file', 'directory', 'symlink']),
  size: Type.Integer(),
  mode: Type.Integer(),
  permissions: Type.String(),
  owner: Type.String(),
  group: Type.String(),
  modified_at: Type.Integer({ description: 'Unix seconds' }),
  symlink_target: Nullable(Type.String()),
});
export const ListDirResponse = Type.Object({ entries: Type.Array(FileEntrySchema) });
export const MakeDirResponse = Type.Object({ entry: FileEntrySchema });

export const Template = Type.Object({
  name: Type.String(),
  type: Type.Enum(['base', 'snapshot']),
  vcpus: Nullable(Type.Integer()),
  memory_mb: Nullable(Type.Integer()),
  size_bytes: Type.Integer(),
  platform: Type.Boolean({ description: 'platform-managed, visible to every team (minimal)' }),
  source_capsule_id: Nullable(Type.String()),
  host_id: Nullable(Type.String({ description: 'the host that holds its files (null for minimal)' })),
  metadata: Type.Record(Type.String(), Type.String()),
  created_at: Timestamp,
});
export const TemplateList = Type.Object({ data: Type.Array(Template), next_cursor: Type.Null() });
export const CreateSnapshotBody = Body({
  sandbox_id: Type.String({ minLength: 1, maxLength: 100, description: 'the running capsule to snapshot' }),
  name: Type.Optional(TemplateName),
});
export const TemplateListQuery = Type.Object(
  { type: Type.Optional(Type.Enum(['base', 'snapshot'])) },
  { additionalProperties: false },
);
export const TemplateParams = Type.Object({ name: TemplateName });

export const MetricsQuery = Type.Object(
  { range: Type.Optional(Type.Enum(['5m', '10m', '1h', '2h', '6h', '12h', '24h'], { default: '10m' })) },
  { additionalProperties: false },
);
export const CapsuleMetrics = Type.Object({
  sandbox_id: Type.String(),
  range: Type.String(),
  points: Type.Array(
    Type.Object({
      timestamp_unix: Type.Integer({ description: 'Unix milliseconds' }),
      cpu_pct: Type.Number({ description: '0–100, normalised to the capsule’s vCPUs' }),
      mem_bytes: Type.Integer(),
      disk_bytes: Type.Integer({ description: 'bytes used in the writable layer' }),
    }),
  ),
});

export const StatsQuery = Type.Object(
  { range: Type.Optional(Type.Enum(['5m', '1h', '6h', '24h', '30d'], { default: '1h' })) },
  { additionalProperties: false },
);
export const CapsuleStats = Type.Object({
  range: Type.String(),
  current: Type.Object({
    running_count: Type.Integer(),
    vcpus_reserved: Type.Integer({ description: 'over every live capsule (paused ones hold theirs)' }),
    memory_mb_reserved: Type.Integer(),
    sampled_at: Timestamp,
  }),
  peaks: Type.Object(
    { running_count: Type.Integer(), vcpus: Type.Integer(), memory_mb: Type.Integer() },
    { description: 'the highest values over the last 30 days' },
  ),
  series: Type.Object({
    labels: Type.Array(Timestamp),
    running: Type.Array(Type.Integer()),
    vcpus: Type.Array(Type.Integer()),
    memory_mb: Type.Array(Type.Integer()),
  }),
  last_sample_at: Nullable(Timestamp),
});

export const UsageQuery = Type.Object(
  {
    from: Type.Optional(Type.String({ description: 'YYYY-MM-DD (UTC), included; default 30 days ago' })),
    to: Type.Optional(Type.String({ description: 'YYYY-MM-DD (UTC), included; default today' })),
  },
  { additionalProperties: false },
);
export const CapsuleUsageResponse = Type.Object({
  from: Type.String(),
  to: Type.String(),
  points: Type.Array(
    Type.Object({
      date: Type.String(),
      cpu_minutes: Type.Number({ description: 'vCPU-minutes reserved while running' }),
      ram_mb_minutes: Type.Number({ description: 'MB-minutes reserved while running' }),
    }),
  ),
});
