import { isId } from '../../core/ids.ts';
import type { DbOrTx } from '../../db/client.ts';
import type { AlertEvidence } from '../../db/schema/alerts.ts';
import { type ConditionConfig, DEFAULT_MIN_COUNT } from './conditions.ts';
import * as m from './measures-repo.ts';
import type { AlertRuleRow } from './repo.ts';

/** What one evaluation found: the evidence, and whether it crosses the rule's threshold. */
export interface Measurement {
  fires: boolean;
  evidence: AlertEvidence;
}

const MICROS_PER_USD = 1_000_000;
/** Agents, providers and approvals named in evidence: the first few. */
const EVIDENCE_ITEMS = 10;
const pct = (part: number, whole: number) => (whole === 0 ? 0 : Math.round((part / whole) * 10_000) / 100);

/** Measures the rule's condition over the window that ends at `now`. */
export async function measure(db: DbOrTx, rule: AlertRuleRow, now: Date): Promise<Measurement> {
  const scope: m.Scope = {
    teamId: rule.teamId,
    agentId: rule.agentId,
    from: new Date(now.getTime() - rule.windowSeconds * 1000),
    to: now,
  };
  const base = {
    window_start: scope.from.toISOString(),
    window_end: now.toISOString(),
    agent_id: rule.agentId,
  };
  const cfg = rule.conditionConfig;
  switch (rule.conditionType) {
    case 'cost_threshold': {
      const c = cfg as ConditionConfig<'cost_threshold'>;
      const rows = await m.costByAgent(db, scope);
      const micros = rows.reduce((sum, r) => sum + r.costMicros, 0);
      const value = micros / MICROS_PER_USD;
      return {
        fires: value >= c.threshold_usd,
        evidence: {
          ...base,
          value,
          threshold: c.threshold_usd,
          unit: 'usd',
          ledger_entries: rows.reduce((sum, r) => sum + r.entries, 0),
          by_agent: rows.slice(0, EVIDENCE_ITEMS).map((r) => ({
            agent_id: r.agentId,
            cost_usd: r.costMicros / MICROS_PER_USD,
            entries: r.entries,
          })),
        },
      };
    }
    case 'error_rate':
    case 'failover_rate': {
      const c = cfg as ConditionConfig<'error_rate'>;
      const rows = await m.callsByProvider(db, scope);
      const counted = rule.conditionType === 'error_rate' ? 'errors' : 'failovers';
      const calls = rows.reduce((sum, r) => sum + r.calls, 0);
      const hits = rows.reduce((sum, r) => sum + r[counted], 0);
      const minRequests = c.min_requests ?? DEFAULT_MIN_COUNT;
      const value = pct(hits, calls);
      return {
        fires: calls >= minRequests && value >= c.threshold_pct,
        evidence: {
          ...base,
          value,
          threshold: c.threshold_pct,
          unit: 'percent',
          requests: calls,
          [counted]: hits,
          min_requests: minRequests,
          by_provider: rows
            .sort((a, b) => b[counted] - a[counted])
            .slice(0, EVIDENCE_ITEMS)
            .map((r) => ({ provider: r.provider, requests: r.calls, [counted]: r[counted] })),
        },
      };
    }
    case 'rate_limit_approaching':
      return rateLimitApproaching(db, rule, scope, base, cfg as ConditionConfig<'rate_limit_approaching'>);
    case 'approval_pending_timeout': {
      const c = cfg as ConditionConfig<'approval_pending_timeout'>;
      const since = new Date(now.getTime() - c.timeout_seconds * 1000);
      const { total, oldest } = await m.overdueApprovals(db, scope, since, EVIDENCE_ITEMS);
      const first = oldest[0];
      return {
        fires: total > 0,
        evidence: {
          ...base,
          value: first ? Math.floor((now.getTime() - first.createdAt.getTime()) / 1000) : 0,
          threshold: c.timeout_seconds,
          unit: 'seconds',
          overdue_approvals: total,
          approvals: oldest.map((a) => ({
            id: a.id,
            agent_id: a.agentId,
            run_id: a.runId,
            tool_name: a.toolName,
            pending_seconds: Math.floor((now.getTime() - a.createdAt.getTime()) / 1000),
          })),
        },
      };
    }
    case 'task_failure_rate': {
      const c = cfg as ConditionConfig<'task_failure_rate'>;
      const rows = await m.taskOutcomesByAgent(db, scope);
      const ended = rows.reduce((sum, r) => sum + r.ended, 0);
      const failed = rows.reduce((sum, r) => sum + r.failed, 0);
      const minTasks = c.min_tasks ?? DEFAULT_MIN_COUNT;
      const value = pct(failed, ended);
      return {
        fires: ended >= minTasks && value >= c.threshold_pct,
        evidence: {
          ...base,
          value,
          threshold: c.threshold_pct,
          unit: 'percent',
          tasks_ended: ended,
          tasks_failed: failed,
          min_tasks: minTasks,
          by_agent: rows
            .sort((a, b) => b.failed - a.failed)
            .slice(0, EVIDENCE_ITEMS)
            .map((r) => ({ agent_id: r.agentId, tasks_ended: r.ended, tasks_failed: r.failed })),
        },
      };
    }
  }
}

interface PerMinuteLimits {
  max_requests_per_minute?: number | null;
  max_tokens_per_minute?: number | null;
}

/**
 * The busiest minute of the window against the agent's policy's rate limits
 * (requests and tokens per minute, as the gateway counts them): the larger
 * of the two percentages. A policy with neither limit never fires.
 */
async function rateLimitApproaching(
  db: DbOrTx,
  rule: AlertRuleRow,
  scope: m.Scope,
  base: Record<string, unknown> & { window_start: string; window_end: string },
  c: ConditionConfig<'rate_limit_approaching'>,
): Promise<Measurement> {
  const agentId = rule.agentId;
  const policy =
    agentId && isId(agentId, 'agt') ? await m.agentRateLimits(db, rule.teamId, agentId) : undefined;
  const limits = (policy?.rateLimits ?? {}) as PerMinuteLimits;
  const maxRequests = limits.max_requests_per_minute ?? null;
  const maxTokens = limits.max_tokens_per_minute ?? null;
  let peak = { value: 0, minute: null as number | null, requests: 0, tokens: 0, limit: 'none' };
  if (agentId && (maxRequests !== null || maxTokens !== null)) {
    for (const row of await m.callsPerMinute(db, { ...scope, agentId })) {
      const byRequests = maxRequests !== null ? pct(row.calls, maxRequests) : 0;
      const byTokens = maxTokens !== null ? pct(row.tokens, maxTokens) : 0;
      const value = Math.max(byRequests, byTokens);
      if (value > peak.value)
        peak = {
          value,
          minute: row.minute,
          requests: row.calls,
          tokens: row.tokens,
          limit: byRequests >= byTokens ? 'requests_per_minute' : 'tokens_per_minute',
        };
    }
  }
  return {
    fires: peak.value >= c.threshold_pct,
    evidence: {
      ...base,
      value: peak.value,
      threshold: c.threshold_pct,
      unit: 'percent',
      limit: peak.limit,
      policy_id: policy?.policyId ?? null,
      max_requests_per_minute: maxRequests,
      max_tokens_per_minute: maxTokens,
      peak_minute_start: peak.minute === null ? null : new Date(peak.minute * 60_000).toISOString(),
      peak_requests: peak.requests,
      peak_tokens: peak.tokens,
    },
  };
}
