import { bigint, index, integer, jsonb, pgTable, primaryKey, text } from 'drizzle-orm/pg-core';
import type { Id, RunId } from '../../core/ids.ts';
import { timestamps, ts } from './columns.ts';
import { teamIdColumn } from './identity.ts';

/** batch: polled; stream: text and tool progress reach subscribers as they happen; session: a turn of a workspace. */
export const TASK_MODES = ['batch', 'stream', 'session'] as const;
export type TaskMode = (typeof TASK_MODES)[number];

export type TaskStatus = 'queued' | 'running' | 'awaiting_approval' | 'completed' | 'failed' | 'cancelled';
export const TASK_STATUSES = [
  'queued',
  'running',
  'awaiting_approval',
  'completed',
  'failed',
  'cancelled',
] as const satisfies readonly TaskStatus[];

/**
 * A task: one prompt handed to one agent version, run by a worker in a
 * capsule, its model calls all in one gateway run (`run_id`).
 */
export const tasks = pgTable(
  'tasks',
  {
    id: text('id').primaryKey().$type<Id<'task'>>(),
    teamId: teamIdColumn(),
    agentId: text('agent_id').notNull(),
    agentVersion: integer('agent_version').notNull(),
    /** The environment version the agent version pinned (null: the platform's minimal base). */
    environmentVersionId: text('environment_version_id'),
    /** As asked (the task's, else the agent version's): a full id or a family alias. */
    model: text('model').notNull(),
    prompt: text('prompt').notNull(),
    mode: text('mode', { enum: TASK_MODES }).notNull().default('batch'),
    /** A session task: the workspace whose conversation and capsule it continues. */
    workspaceId: text('workspace_id'),
    status: text('status', { enum: TASK_STATUSES }).notNull(),
    maxTurns: integer('max_turns').notNull(),
    maxBudgetMicros: bigint('max_budget_micros', { mode: 'number' }),
    timeoutSec: integer('timeout_sec').notNull(),
    outputSchema: jsonb('output_schema').$type<Record<string, unknown> | null>(),
    /** Names or globs of the tools the task may be offered (null: every tool its agent version has). */
    allowedTools: jsonb('allowed_tools').$type<string[] | null>(),
    inputFileIds: jsonb('input_file_ids').$type<string[]>().notNull(),
    metadata: jsonb('metadata').$type<Record<string, unknown>>().notNull(),
    result: jsonb('result').$type<unknown>(),
    error: jsonb('error').$type<{ code: string; message: string } | null>(),
    runId: text('run_id').$type<RunId>(),
    capsuleId: text('capsule_id'),
    /** A task sent to a work queue (its job, `paddock.task`, is run by the team's own worker), not to a capsule. */
    runnerQueue: text('runner_queue'),
    turns: integer('turns').notNull().default(0),
    inputTokens: bigint('input_tokens', { mode: 'number' }).notNull().default(0),
    outputTokens: bigint('output_tokens', { mode: 'number' }).notNull().default(0),
    costMicros: bigint('cost_micros', { mode: 'number' }).notNull().default(0),
    sandboxMs: bigint('sandbox_ms', { mode: 'number' }).notNull().default(0),
    /** Starts of the task by a worker (a lost worker's task starts again once). */
    attempt: integer('attempt').notNull().default(0),
    /** The worker holding the task writes this while it runs; a stale one means the worker is gone. */
    heartbeatAt: ts('heartbeat_at'),
    /** The last event's seq (events are numbered from 1). */
    eventSeq: integer('event_seq').notNull().default(0),
    createdBy: text('created_by'),
    ...timestamps(),
    startedAt: ts('started_at'),
    finishedAt: ts('finished_at'),
  },
  (t) => [
    index('tasks_team_idx').on(t.teamId, t.id),
    index('tasks_status_idx').on(t.status, t.heartbeatAt),
    // Analytics: tasks created in a range.
    index('tasks_team_created_idx').on(t.teamId, t.createdAt),
    // The analytics rollups find a run's task (its agent version) by it.
    index('tasks_run_idx').on(t.runId),
  ],
);

/** The task's event log: status changes, model calls, text, tool calls and results, in `seq` order. */
export const taskEvents = pgTable(
  'task_events',
  {
    taskId: text('task_id').notNull().$type<Id<'task'>>(),
    seq: integer('seq').notNull(),
    teamId: teamIdColumn(),
    type: text('type').notNull(),
    payload: jsonb('payload').$type<Record<string, unknown>>().notNull(),
    createdAt: ts('created_at').notNull(),
  },
  (t) => [primaryKey({ columns: [t.taskId, t.seq] })],
);

/** Files a task produced: its outputs, and the full text of tool outputs cut in the event log. */
export const taskFiles = pgTable(
  'task_files',
  {
    taskId: text('task_id').notNull().$type<Id<'task'>>(),
    fileId: text('file_id').notNull().$type<Id<'file'>>(),
    teamId: teamIdColumn(),
    kind: text('kind', { enum: ['output', 'tool_output'] }).notNull(),
    /** Outputs: the path under /workspace/outputs. */
    path: text('path').notNull(),
    sizeBytes: bigint('size_bytes', { mode: 'number' }).notNull(),
    createdAt: ts('created_at').notNull(),
  },
  (t) => [primaryKey({ columns: [t.taskId, t.fileId] })],
);
