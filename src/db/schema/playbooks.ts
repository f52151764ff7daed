import {
  boolean,
  doublePrecision,
  index,
  integer,
  jsonb,
  pgTable,
  text,
  uniqueIndex,
} from 'drizzle-orm/pg-core';
import type { Id } from '../../core/ids.ts';
import { timestamps, ts } from './columns.ts';
import { teamIdColumn } from './identity.ts';

export const TRIGGER_TYPES = ['cron', 'interval', 'manual', 'webhook'] as const;
export type TriggerType = (typeof TRIGGER_TYPES)[number];
export const NOTIFY_ON = ['completion', 'failure', 'both', 'none'] as const;
export type NotifyOn = (typeof NOTIFY_ON)[number];
export const RUN_STATUSES = ['queued', 'running', 'completed', 'failed', 'cancelled', 'skipped'] as const;
export type PlaybookRunStatus = (typeof RUN_STATUSES)[number];
export const ACTIVE_RUN_STATUSES = ['queued', 'running'] as const;
export const DECISIONS = ['pass', 'fail', 'skipped'] as const;
export type Decision = (typeof DECISIONS)[number];
/** What fired a run: the playbook's schedule, a person (POST …/run) or its webhook. */
export const FIRED_BY = ['cron', 'interval', 'manual', 'webhook'] as const;
export type FiredBy = (typeof FIRED_BY)[number];

/** The chain settings after clamping (docs/playbooks.md lists the bounds). */
export interface ChainConfig {
  max_chains: number;
  budget_cap_usd: number;
  chain_delay_ms: number;
  max_turns_per_chain: number;
  allowed_tools: string[] | null;
  timeout_per_chain_seconds: number;
}

/** A success criterion, checked against the final answer of a chain. */
export type SuccessCriterion =
  | { type: 'contains'; value: string }
  | { type: 'not_contains'; value: string }
  | { type: 'matches'; pattern: string };

/**
 * A playbook (Vonzio): a prompt an agent is given on a schedule (cron or
 * interval), by hand, or by a webhook. `next_run_at` is kept for the
 * scheduled kinds while enabled; the scheduler fires rows whose time passed.
 */
export const playbooks = pgTable(
  'playbooks',
  {
    id: text('id').primaryKey().$type<Id<'pb'>>(),
    teamId: teamIdColumn(),
    agentId: text('agent_id').notNull(),
    name: text('name').notNull(),
    description: text('description'),
    prompt: text('prompt').notNull(),
    triggerType: text('trigger_type', { enum: TRIGGER_TYPES }).notNull(),
    schedule: text('schedule'),
    timezone: text('timezone').notNull().default('UTC'),
    intervalSeconds: integer('interval_seconds'),
    enabled: boolean('enabled').notNull().default(false),
    chainConfig: jsonb('chain_config').$type<ChainConfig>().notNull(),
    successCriteria: jsonb('success_criteria').$type<SuccessCriterion[] | null>(),
    notifyOn: text('notify_on', { enum: NOTIFY_ON }).notNull(),
    notificationChannels: jsonb('notification_channels').$type<string[]>().notNull(),
    /** The webhook token's keyed hash (TokenHasher); the token is shown once. */
    webhookTokenHash: text('webhook_token_hash'),
    webhookTokenPrefix: text('webhook_token_prefix'),
    nextRunAt: ts('next_run_at'),
    lastRunAt: ts('last_run_at'),
    createdBy: text('created_by'),
    ...timestamps(),
  },
  (t) => [
    index('playbooks_team_idx').on(t.teamId, t.id),
    index('playbooks_due_idx').on(t.enabled, t.nextRunAt),
    uniqueIndex('playbooks_webhook_token_key').on(t.webhookTokenHash),
  ],
);

/**
 * One firing of a playbook. `slot_at` is the scheduled time a cron or
 * interval run fired for (null for manual and webhook runs): unique per
 * playbook, so one slot can never be fired twice, whichever server tries.
 */
export const playbookRuns = pgTable(
  'playbook_runs',
  {
    id: text('id').primaryKey().$type<Id<'pbr'>>(),
    teamId: teamIdColumn(),
    playbookId: text('playbook_id')
      .notNull()
      .$type<Id<'pb'>>()
      .references(() => playbooks.id, { onDelete: 'cascade' }),
    agentId: text('agent_id').notNull(),
    status: text('status', { enum: RUN_STATUSES }).notNull(),
    decision: text('decision', { enum: DECISIONS }),
    firedBy: text('fired_by', { enum: FIRED_BY }).notNull(),
    slotAt: ts('slot_at'),
    /** The webhook's body (JSON text), handed to the agent after the prompt. */
    context: text('context'),
    taskId: text('task_id'),
    workspaceId: text('workspace_id'),
    chainsUsed: integer('chains_used').notNull().default(0),
    turns: integer('turns').notNull().default(0),
    costUsd: doublePrecision('cost_usd').notNull().default(0),
    /** The next chain is not sent before this (chain_delay_ms after the last ended). */
    nextChainAt: ts('next_chain_at'),
    /** A start or chain step in hand (its time): another tick leaves the run alone for a while. */
    claimedAt: ts('claimed_at'),
    /** When the leader's sweep last took the run up: the sweep takes the least recently checked first. */
    checkedAt: ts('checked_at'),
    error: jsonb('error').$type<{ code: string; message: string } | null>(),
    resultSummary: text('result_summary'),
    startedAt: ts('started_at'),
    finishedAt: ts('finished_at'),
    ...timestamps(),
  },
  (t) => [
    uniqueIndex('playbook_runs_slot_key').on(t.playbookId, t.slotAt),
    index('playbook_runs_team_idx').on(t.teamId, t.id),
    index('playbook_runs_playbook_idx').on(t.playbookId, t.status),
    index('playbook_runs_status_idx').on(t.status, t.checkedAt),
  ],
);

/**
 * The scheduler's shared state: one lease row (`id = 'leader'`) naming the
 * process that ticks and until when, and one row per paused team. Every
 * server reads the same rows, so a pause holds across processes.
 */
export const playbookScheduler = pgTable('playbook_scheduler', {
  id: text('id').primaryKey(),
  leaderId: text('leader_id'),
  leaseUntil: ts('lease_until'),
  lastTickAt: ts('last_tick_at'),
  updatedAt: ts('updated_at').notNull(),
});

export const playbookSchedulerPauses = pgTable('playbook_scheduler_pauses', {
  teamId: teamIdColumn().primaryKey(),
  pausedBy: text('paused_by'),
  pausedAt: ts('paused_at').notNull(),
});
