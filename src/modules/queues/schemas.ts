import { type Static, Type } from 'typebox';
import { Body, Nullable, NullableTimestamp, PageQuery, Paginated, Timestamp } from '../../http/schemas.ts';

/** A payload or a result, as JSON text: work to describe, not files to carry (upload those to /v1/files). */
export const MAX_JSON_BYTES = 256 * 1024;
export const MAX_BATCH = 100;
export const MAX_WAIT_SEC = 30;
export const JOB_STATUSES = ['queued', 'active', 'completed', 'failed', 'cancelled'] as const;
export type JobStatus = (typeof JOB_STATUSES)[number];
const Status = Type.Union([
  Type.Literal('queued'),
  Type.Literal('active'),
  Type.Literal('completed'),
  Type.Literal('failed'),
  Type.Literal('cancelled'),
]);

const NAME_PATTERN = '^[A-Za-z0-9][A-Za-z0-9._-]{0,99}$';
const TYPE_PATTERN = '^[A-Za-z0-9][A-Za-z0-9._:/-]{0,99}$';

export const QueueName = Type.String({
  pattern: NAME_PATTERN,
  description: 'a queue of the team: letters, digits, . _ - (up to 100); it exists once a job is in it',
});
const JobType = Type.String({
  pattern: TYPE_PATTERN,
  description: 'what kind of work (e.g. email.send); workers may claim only some types',
});
const WorkerId = Type.String({
  minLength: 1,
  maxLength: 200,
  pattern: '\\S',
  description: 'who is working: any stable name of the worker process; its lease is held under it',
});

export const QueueParams = Type.Object({ name: QueueName });
export const JobParams = Type.Object({ name: QueueName, id: Type.String({ minLength: 1, maxLength: 100 }) });

export const SubmitJobBody = Body({
  type: JobType,
  payload: Type.Optional(
    Type.Record(Type.String({ maxLength: 200 }), Type.Unknown(), {
      description: `the work's input, handed to the worker as given (at most ${MAX_JSON_BYTES} bytes as JSON)`,
    }),
  ),
  priority: Type.Optional(
    Type.Integer({ minimum: -1000, maximum: 1000, default: 0, description: 'higher is claimed first' }),
  ),
  max_attempts: Type.Optional(
    Type.Integer({
      minimum: 1,
      maximum: 100,
      default: 3,
      description: 'claims before the job is failed for good (an expired lease counts)',
    }),
  ),
  timeout_sec: Type.Optional(
    Type.Integer({
      minimum: 1,
      maximum: 86_400,
      default: 300,
      description: 'the lease a claim or heartbeat gives: unheard-from for longer, the job goes back',
    }),
  ),
  run_at: Type.Optional(
    Type.String({ format: 'date-time', description: 'not claimable before this time (default now)' }),
  ),
  idempotency_key: Type.Optional(
    Type.String({
      minLength: 1,
      maxLength: 200,
      description: 'the same key in this queue answers the job it made (200) instead of a new one',
    }),
  ),
});
export type SubmitJobInput = Static<typeof SubmitJobBody>;

export const ClaimBody = Body({
  worker_id: WorkerId,
  types: Type.Optional(Type.Array(JobType, { minItems: 1, maxItems: 20, uniqueItems: true })),
  batch_size: Type.Optional(Type.Integer({ minimum: 1, maximum: MAX_BATCH, default: 1 })),
  wait_sec: Type.Optional(
    Type.Integer({
      minimum: 0,
      maximum: MAX_WAIT_SEC,
      default: 0,
      description: 'with nothing to claim, wait up to this long for a job (long poll)',
    }),
  ),
});
export type ClaimInput = Static<typeof ClaimBody>;

export const HeartbeatBody = Body({
  worker_id: WorkerId,
  extend_sec: Type.Optional(
    Type.Integer({
      minimum: 1,
      maximum: 86_400,
      description: "the lease from now, in seconds (default: the job's timeout_sec)",
    }),
  ),
});
export type HeartbeatInput = Static<typeof HeartbeatBody>;

const Result = Type.Unknown({ description: `any JSON (at most ${MAX_JSON_BYTES} bytes)` });

export const CompleteBody = Body({ worker_id: WorkerId, result: Type.Optional(Result) });
export type CompleteInput = Static<typeof CompleteBody>;

export const FailBody = Body({
  worker_id: WorkerId,
  error: Type.String({ minLength: 1, maxLength: 10_000, description: 'what went wrong' }),
  retry: Type.Optional(
    Type.Boolean({
      default: true,
      description: 'false: failed for good now; else queued again (with backoff) while attempts remain',
    }),
  ),
});
export type FailInput = Static<typeof FailBody>;

export const CompleteManyBody = Body({
  worker_id: WorkerId,
  jobs: Type.Array(
    Body({ id: Type.String({ minLength: 1, maxLength: 100 }), result: Type.Optional(Result) }),
    { minItems: 1, maxItems: MAX_BATCH },
  ),
});
export type CompleteManyInput = Static<typeof CompleteManyBody>;

export const JobListQuery = Type.Object(
  { ...PageQuery.properties, status: Type.Optional(Status), type: Type.Optional(JobType) },
  { additionalProperties: false },
);
export type JobListInput = Static<typeof JobListQuery>;

export const QueueListQuery = PageQuery;
export type QueueListInput = Static<typeof QueueListQuery>;

export const Job = Type.Object({
  id: Type.String(),
  team_id: Type.String(),
  queue: Type.String(),
  type: Type.String(),
  payload: Type.Record(Type.String(), Type.Unknown()),
  priority: Type.Integer(),
  status: Status,
  attempts: Type.Integer({ description: 'claims so far' }),
  max_attempts: Type.Integer(),
  timeout_sec: Type.Integer(),
  run_at: Timestamp,
  lease_expires_at: NullableTimestamp,
  worker_id: Nullable(Type.String()),
  idempotency_key: Nullable(Type.String()),
  result: Type.Unknown(),
  error: Nullable(Type.String()),
  claimed_at: NullableTimestamp,
  ended_at: NullableTimestamp,
  created_at: Timestamp,
  updated_at: Timestamp,
});
export const Jobs = Paginated(Job);
export const Claimed = Type.Object({ data: Type.Array(Job) });

export const CompletedMany = Type.Object({
  completed: Type.Array(Type.String(), { description: 'the jobs this call completed' }),
  rejected: Type.Array(
    Type.Object({
      id: Type.String(),
      code: Type.String({
        description: 'not_found, or not_lease_holder (not active, or held by another worker)',
      }),
    }),
  ),
});

const Counts = {
  queued: Type.Integer({ description: 'waiting, due now or later' }),
  active: Type.Integer(),
  completed: Type.Integer(),
  failed: Type.Integer(),
  cancelled: Type.Integer(),
};

export const QueueSummary = Type.Object({ name: Type.String(), ...Counts });
export const Queues = Paginated(QueueSummary);

export const QueueStats = Type.Object({
  name: Type.String(),
  ...Counts,
  depth: Type.Integer({ description: 'queued jobs due now (claimable)' }),
  scheduled: Type.Integer({ description: 'queued jobs not due yet (run_at or a retry backoff ahead)' }),
  oldest_waiting_sec: Nullable(
    Type.Number({ description: 'how long the longest-waiting due job has been claimable, in seconds' }),
  ),
  completed_last_hour: Type.Integer(),
  failed_last_hour: Type.Integer(),
  throughput_per_min: Type.Number({ description: 'jobs completed per minute over the last hour' }),
});
