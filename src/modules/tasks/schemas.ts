import { type Static, Type } from 'typebox';
import { TASK_MODES, TASK_STATUSES } from '../../db/schema/tasks.ts';
import { Body, ListQuery, Nullable, NullableTimestamp, Paginated, Timestamp } from '../../http/schemas.ts';
import { QueueName } from '../queues/schemas.ts';

/** The longest prompt a task takes, in characters. */
export const PROMPT_MAX_CHARS = 100_000;

const FileId = Type.String({ minLength: 1, maxLength: 100 });

/** A task's tool restriction: names or globs (`*`, `?`); null or absent, every tool its agent version has. */
export const AllowedTools = Nullable(
  Type.Array(Type.String({ minLength: 1, maxLength: 100, pattern: '^[A-Za-z0-9_*?-]+$' }), {
    maxItems: 100,
    description:
      'the tools the task may be offered, by name or glob (mcp__github__*); submit_result is always offered; null: all the agent version has',
  }),
);

export const CreateTaskBody = Body({
  agent_id: Type.String({ minLength: 1, maxLength: 100 }),
  prompt: Type.String({
    minLength: 1,
    maxLength: PROMPT_MAX_CHARS,
    description: `the work, at most ${PROMPT_MAX_CHARS} characters`,
  }),
  agent_version: Type.Optional(
    Type.Integer({ minimum: 1, description: 'a version of the agent (default: its current one)' }),
  ),
  mode: Type.Optional(
    Type.Enum([...TASK_MODES], {
      description:
        'batch (default): poll or follow its events; stream: text deltas and tool progress as they happen; session: the task opens a workspace',
    }),
  ),
  model: Type.Optional(
    Type.String({
      minLength: 1,
      maxLength: 200,
      pattern: '^[A-Za-z0-9][A-Za-z0-9._:/@-]*$',
      description: "overrides the agent version's model: a full id or a family alias",
    }),
  ),
  max_turns: Type.Optional(Type.Integer({ minimum: 1, maximum: 1000 })),
  max_budget_usd: Type.Optional(Type.Number({ minimum: 0, maximum: 100_000 })),
  timeout_sec: Type.Optional(Type.Integer({ minimum: 10, maximum: 86_400 })),
  output_schema: Type.Optional(
    Type.Record(Type.String(), Type.Unknown(), {
      description: 'a JSON Schema (draft 2020-12) the result of submit_result must match',
    }),
  ),
  input_file_ids: Type.Optional(Type.Array(FileId, { maxItems: 100, uniqueItems: true })),
  allowed_tools: Type.Optional(AllowedTools),
  metadata: Type.Optional(Type.Record(Type.String(), Type.Unknown())),
  runner: Type.Optional(
    Type.Object(
      { queue: QueueName },
      {
        additionalProperties: false,
        description:
          "run by the team's own worker: a paddock.task job in this work queue instead of a capsule (batch mode only)",
      },
    ),
  ),
});
export type CreateTaskInput = Static<typeof CreateTaskBody>;

export const TaskError = Type.Object({ code: Type.String(), message: Type.String() });

export const Task = Type.Object({
  id: Type.String(),
  team_id: Type.String(),
  agent_id: Type.String(),
  agent_version: Type.Integer(),
  environment_version_id: Nullable(Type.String()),
  model: Type.String({ description: 'as asked: a full id or a family alias' }),
  prompt: Type.String(),
  mode: Type.Enum([...TASK_MODES]),
  workspace_id: Nullable(Type.String({ description: 'session tasks: the workspace it opened or continues' })),
  status: Type.Enum([...TASK_STATUSES]),
  max_turns: Type.Integer(),
  max_budget_usd: Nullable(Type.Number()),
  timeout_sec: Type.Integer(),
  output_schema: Nullable(Type.Record(Type.String(), Type.Unknown())),
  allowed_tools: Nullable(Type.Array(Type.String())),
  input_file_ids: Type.Array(Type.String()),
  metadata: Type.Record(Type.String(), Type.Unknown()),
  result: Type.Unknown({ description: 'what submit_result gave, or the final answer text; null until done' }),
  error: Nullable(TaskError),
  run_id: Nullable(Type.String({ description: 'the gateway run holding every model call of the task' })),
  runner: Nullable(
    Type.Object(
      { queue: Type.String() },
      { description: 'a task sent to a work queue; null: a capsule runs it' },
    ),
  ),
  turns: Type.Integer(),
  input_tokens: Type.Integer(),
  output_tokens: Type.Integer(),
  cost_usd: Type.Number({ description: 'model cost + sandbox cost: the run’s ledger sum' }),
  sandbox_seconds: Type.Number(),
  attempt: Type.Integer({ description: 'starts by a worker (a lost worker’s task starts once more)' }),
  created_by: Nullable(Type.String()),
  created_at: Timestamp,
  started_at: NullableTimestamp,
  finished_at: NullableTimestamp,
  updated_at: Timestamp,
});

export const Tasks = Paginated(Task);

export const TaskListQuery = ListQuery({
  agent_id: Type.Optional(Type.String({ maxLength: 100 })),
  status: Type.Optional(Type.Enum([...TASK_STATUSES])),
  created_after: Type.Optional(Type.String({ format: 'date-time' })),
  created_before: Type.Optional(Type.String({ format: 'date-time' })),
});
export type TaskListQueryType = Static<typeof TaskListQuery>;

export const TaskEvent = Type.Object({
  seq: Type.Integer(),
  type: Type.String(),
  payload: Type.Record(Type.String(), Type.Unknown()),
  created_at: Timestamp,
});

export const TaskEvents = Type.Object({
  data: Type.Array(TaskEvent),
  next_after_seq: Type.Integer({ description: 'the seq to ask after for the next page' }),
  done: Type.Boolean({ description: 'the task has ended and every event is in this page or before' }),
});

export const TaskEventsQuery = Type.Object(
  {
    after_seq: Type.Optional(Type.Integer({ minimum: 0, maximum: 2_147_483_647 })),
    limit: Type.Optional(Type.Integer({ minimum: 1, maximum: 1000, default: 200 })),
  },
  { additionalProperties: false },
);

export const TaskFile = Type.Object({
  file_id: Type.String(),
  path: Type.String({ description: 'the path under /workspace/outputs' }),
  size_bytes: Type.Integer(),
  created_at: Timestamp,
});

export const TaskFiles = Paginated(TaskFile);

export const TaskFileParams = Type.Object({
  id: Type.String({ minLength: 1, maxLength: 100 }),
  file_id: Type.String({ minLength: 1, maxLength: 100 }),
});
