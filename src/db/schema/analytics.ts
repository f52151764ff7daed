import { bigint, integer, pgTable, text, uniqueIndex } from 'drizzle-orm/pg-core';
import type { TeamId } from '../../core/ids.ts';
import { ts } from './columns.ts';

// Analytics rollups: what the steps of one team, agent (version), provider
// and model added up to in one hour (analytics_hourly) or one UTC day
// (analytics_daily). Both are kept by the statement that writes the steps
// (src/db/rollups.ts), so a report reads a few thousand rows, never the steps.

const count = (name: string) => bigint(name, { mode: 'number' }).notNull().default(0);

function rollupTable<N extends string>(name: N) {
  return pgTable(
    name,
    {
      // No foreign key, as for steps: the hot path's upsert checks nothing it need not.
      teamId: text('team_id').$type<TeamId>().notNull(),
      /** The hour's (or UTC day's) start. */
      bucketStart: ts('bucket_start').notNull(),
      agentId: text('agent_id').notNull(),
      /** The task's agent version; 0 for runs that are not a task's (gateway calls). */
      agentVersion: integer('agent_version').notNull().default(0),
      /** '' when the step had none (sandbox time, an unsettled reservation). */
      provider: text('provider').notNull().default(''),
      model: text('model').notNull().default(''),
      /** Steps that are requests: every type but sandbox and failover_transition. */
      requestCount: count('request_count'),
      successCount: count('success_count'),
      errorCount: count('error_count'),
      timeoutCount: count('timeout_count'),
      budgetBlockedCount: count('budget_blocked_count'),
      policyBlockedCount: count('policy_blocked_count'),
      /** failover_transition steps, and the providers that failed before each. */
      failoverCount: count('failover_count'),
      failoverAttempts: count('failover_attempts'),
      inputTokens: count('input_tokens'),
      outputTokens: count('output_tokens'),
      cacheReadTokens: count('cache_read_tokens'),
      cacheCreationTokens: count('cache_creation_tokens'),
      /** Every step's cost (= the ledger's), micro-dollars; sandbox_cost_micros is the sandbox part. */
      costMicros: count('cost_micros'),
      sandboxCostMicros: count('sandbox_cost_micros'),
      latencyCount: count('latency_count'),
      latencySumMs: count('latency_sum_ms'),
      /** Requests per latency bucket (LATENCY_BUCKET_BOUNDS_MS in src/db/rollups.ts). */
      latencyHist: bigint('latency_hist', { mode: 'number' }).array().notNull(),
    },
    (t) => [
      uniqueIndex(`${name}_key`).on(t.teamId, t.bucketStart, t.agentId, t.agentVersion, t.provider, t.model),
    ],
  );
}

export const analyticsHourly = rollupTable('analytics_hourly');
export const analyticsDaily = rollupTable('analytics_daily');
