import { boolean, index, integer, jsonb, pgTable, primaryKey, text } from 'drizzle-orm/pg-core';
import type { Id, RunId } from '../../core/ids.ts';
import { timestamps, ts } from './columns.ts';
import { teamIdColumn } from './identity.ts';

/**
 * active: a turn runs; idle: its capsule waits for the next message; paused:
 * the capsule was paused after the agent's idle timeout; expired: the capsule
 * was removed after session_ttl_sec paused; terminated: DELETE removed it.
 * The last two keep the row and its history; no turn runs again.
 */
export const WORKSPACE_STATUSES = ['active', 'idle', 'paused', 'expired', 'terminated'] as const;
export type WorkspaceStatus = (typeof WORKSPACE_STATUSES)[number];

/** One message of a conversation, as the OpenAI Chat Completions format has it. */
export interface ConversationMessage {
  role: 'system' | 'user' | 'assistant' | 'tool';
  content: string | null;
  tool_calls?: Array<{ id: string; type: 'function'; function: { name: string; arguments: string } }>;
  tool_call_id?: string;
}

/**
 * A workspace (Vonzio's session): a conversation with one agent version that
 * keeps its capsule between turns. Each message is a session task (a turn);
 * every turn's model calls and sandbox time are steps of the workspace's one
 * gateway run, and every turn's events are in the workspace's one log.
 */
export const workspaces = pgTable(
  'workspaces',
  {
    id: text('id').primaryKey().$type<Id<'ws'>>(),
    teamId: teamIdColumn(),
    agentId: text('agent_id').notNull(),
    /** Pinned when the workspace opened: every turn runs this version. */
    agentVersion: integer('agent_version').notNull(),
    name: text('name'),
    status: text('status', { enum: WORKSPACE_STATUSES }).notNull(),
    capsuleId: text('capsule_id'),
    runId: text('run_id').$type<RunId>().notNull(),
    /** The conversation so far (the system prompt aside), handed to the next turn. */
    messages: jsonb('messages').$type<ConversationMessage[]>().notNull(),
    /** The turn that runs now (null when none). */
    currentTaskId: text('current_task_id'),
    turns: integer('turns').notNull().default(0),
    /** From the pinned agent version: the capsule pauses after this long without a message… */
    idleTimeoutSec: integer('idle_timeout_sec').notNull(),
    /** …and the workspace expires after this long paused. */
    sessionTtlSec: integer('session_ttl_sec').notNull(),
    modelOverride: text('model_override'),
    /** The opening task's allowed_tools: every turn is offered only these (null: all the agent's). */
    allowedTools: jsonb('allowed_tools').$type<string[] | null>(),
    lastRunModel: text('last_run_model'),
    starred: boolean('starred').notNull().default(false),
    archived: boolean('archived').notNull().default(false),
    /** The last event's seq of the workspace's log (numbered from 1). */
    eventSeq: integer('event_seq').notNull().default(0),
    /** The end of the last turn (or its start while it runs): the idle timeout counts from here. */
    lastActiveAt: ts('last_active_at').notNull(),
    /**
     * While a turn runs: where the capsule's idle time before it began (a message to an idle
     * workspace), to be charged up to lastActiveAt when the turn ends; null when there is none.
     */
    idleFrom: ts('idle_from'),
    pausedAt: ts('paused_at'),
    endedAt: ts('ended_at'),
    createdBy: text('created_by'),
    ...timestamps(),
  },
  (t) => [
    index('workspaces_team_idx').on(t.teamId, t.id),
    index('workspaces_status_idx').on(t.status, t.lastActiveAt),
  ],
);

/**
 * The workspace's event log: every turn's events (tagged with the turn's
 * task), and the workspace's own (its status changes), in `seq` order.
 */
export const workspaceEvents = pgTable(
  'workspace_events',
  {
    workspaceId: text('workspace_id').notNull().$type<Id<'ws'>>(),
    seq: integer('seq').notNull(),
    teamId: teamIdColumn(),
    /** The turn (session task) that wrote it; null for the workspace's own events. */
    taskId: text('task_id').$type<Id<'task'>>(),
    type: text('type').notNull(),
    payload: jsonb('payload').$type<Record<string, unknown>>().notNull(),
    createdAt: ts('created_at').notNull(),
  },
  (t) => [
    primaryKey({ columns: [t.workspaceId, t.seq] }),
    index('workspace_events_task_idx').on(t.workspaceId, t.taskId, t.seq),
  ],
);
