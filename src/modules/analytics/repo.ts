import type { TeamId } from '../../core/ids.ts';
import { type Db, rawQuery } from '../../db/client.ts';
import { positionalSql } from '../../db/query-parts.ts';
import { LATENCY_BUCKETS, ROLLUP_TABLES, type RollupGrain, rollupUpsertSql } from '../../db/rollups.ts';

// Analytics: SQL only, always scoped by team. Reports read the rollups
// (analytics_hourly / analytics_daily), never the steps.

export type Granularity = 'hour' | 'day' | 'week';
export type GroupBy = 'agent' | 'agent_version' | 'provider' | 'model' | 'day';

export interface RollupQuery {
  teamId: TeamId;
  /** Whole hours, from < to. */
  from: Date;
  to: Date;
  granularity: Granularity | null;
  groupBy: GroupBy | null;
  agentId?: string;
  provider?: string;
  model?: string;
  /** The sums a report needs (each costs time on a year of rows); the others answer 0. Default: all. */
  columns?: readonly SumColumn[];
  /** Also sum the latency histograms (latency and reliability reports). */
  histogram?: boolean;
}

export interface RollupSums {
  group: string | null;
  period: Date | null;
  requestCount: number;
  successCount: number;
  errorCount: number;
  timeoutCount: number;
  budgetBlockedCount: number;
  policyBlockedCount: number;
  failoverCount: number;
  failoverAttempts: number;
  inputTokens: number;
  outputTokens: number;
  cacheReadTokens: number;
  cacheCreationTokens: number;
  costMicros: number;
  sandboxCostMicros: number;
  latencyCount: number;
  latencySumMs: number;
  latencyHist: number[] | null;
}

const DAY_MS = 86_400_000;

const GROUP_SQL: Record<GroupBy, string> = {
  agent: 'agent_id',
  agent_version: `agent_id || case when agent_version > 0 then '@' || agent_version else '' end`,
  provider: `nullif(provider, '')`,
  model: `nullif(model, '')`,
  day: `to_char(bucket_start at time zone 'UTC', 'YYYY-MM-DD')`,
};

const PERIOD_SQL: Record<Granularity, string> = {
  hour: 'bucket_start',
  day: `date_trunc('day', bucket_start, 'UTC')`,
  week: `date_trunc('week', bucket_start, 'UTC')`,
};

/** [table, from, to] pieces covering [from, to): whole UTC days from the daily table, the edges from the hourly one. */
function segments(from: Date, to: Date, granularity: Granularity | null): Array<[RollupGrain, Date, Date]> {
  const dayFrom = new Date(Math.ceil(from.getTime() / DAY_MS) * DAY_MS);
  const dayTo = new Date(Math.floor(to.getTime() / DAY_MS) * DAY_MS);
  if (granularity === 'hour' || dayFrom >= dayTo) return [['hour', from, to]];
  const out: Array<[RollupGrain, Date, Date]> = [['day', dayFrom, dayTo]];
  if (from < dayFrom) out.push(['hour', from, dayFrom]);
  if (dayTo < to) out.push(['hour', dayTo, to]);
  return out;
}

const SUMS = [
  ['request_count', 'requestCount'],
  ['success_count', 'successCount'],
  ['error_count', 'errorCount'],
  ['timeout_count', 'timeoutCount'],
  ['budget_blocked_count', 'budgetBlockedCount'],
  ['policy_blocked_count', 'policyBlockedCount'],
  ['failover_count', 'failoverCount'],
  ['failover_attempts', 'failoverAttempts'],
  ['input_tokens', 'inputTokens'],
  ['output_tokens', 'outputTokens'],
  ['cache_read_tokens', 'cacheReadTokens'],
  ['cache_creation_tokens', 'cacheCreationTokens'],
  ['cost_micros', 'costMicros'],
  ['sandbox_cost_micros', 'sandboxCostMicros'],
  ['latency_count', 'latencyCount'],
  ['latency_sum_ms', 'latencySumMs'],
] as const;

export type SumColumn = (typeof SUMS)[number][0];

/** The rollups of [from, to) summed per group and period. */
export async function sumRollups(db: Db, q: RollupQuery): Promise<RollupSums[]> {
  const params: unknown[] = [q.teamId];
  const p = (v: unknown) => {
    params.push(v);
    return `$${params.length}`;
  };
  const filters: string[] = [];
  if (q.agentId !== undefined) filters.push(`agent_id = ${p(q.agentId)}`);
  if (q.provider !== undefined) filters.push(`provider = ${p(q.provider)}`);
  if (q.model !== undefined) filters.push(`model = ${p(q.model)}`);
  const where = filters.map((f) => ` and ${f}`).join('');
  const source = segments(q.from, q.to, q.granularity)
    .map(
      ([grain, a, b]) =>
        `select * from ${ROLLUP_TABLES[grain]} where team_id = $1 and bucket_start >= ${p(a.toISOString())}::timestamptz and bucket_start < ${p(b.toISOString())}::timestamptz${where}`,
    )
    .join(' union all ');
  const group = q.groupBy ? GROUP_SQL[q.groupBy] : 'null::text';
  const period = q.granularity ? PERIOD_SQL[q.granularity] : 'null::timestamptz';
  const hist = q.histogram
    ? `, array[${Array.from({ length: LATENCY_BUCKETS }, (_, i) => `sum(latency_hist[${i + 1}])`).join(', ')}] as hist`
    : '';
  const wanted = SUMS.filter(([c]) => q.columns === undefined || q.columns.includes(c));
  const text = `
    select ${group} as grp, ${period} as period${wanted.map(([c]) => `, sum(${c}) as ${c}`).join('')}${hist}
    from (${source}) x
    group by 1, 2
    order by 2 nulls first, 1 nulls first`;
  const rows = await rawQuery(db, text, params);
  return rows.map((r) => {
    const out = {
      group: r.grp === null ? null : String(r.grp),
      period: r.period === null ? null : new Date(r.period as string),
      latencyHist: q.histogram ? (r.hist as unknown[]).map(Number) : null,
    } as RollupSums;
    for (const [column, field] of SUMS) out[field] = r[column] === undefined ? 0 : Number(r[column]);
    return out;
  });
}

/**
 * Deletes and rebuilds a team's rollups for [from, to) (whole days) from its
 * steps, in one transaction: a rebuild that fails half-way (a lost
 * connection, a statement refused) leaves the rollups as they were.
 */
export async function rebuildRollups(db: Db, teamId: TeamId, from: Date, to: Date): Promise<void> {
  const dayFrom = new Date(Math.floor(from.getTime() / DAY_MS) * DAY_MS).toISOString();
  const dayTo = new Date(Math.ceil(to.getTime() / DAY_MS) * DAY_MS).toISOString();
  const params = [teamId, dayFrom, dayTo];
  const source =
    '(select * from steps where team_id = $1 and created_at >= $2::timestamptz and created_at < $3::timestamptz)';
  await db.transaction(async (tx) => {
    for (const grain of ['hour', 'day'] as const) {
      const table = ROLLUP_TABLES[grain];
      await tx.execute(
        positionalSql(
          `delete from ${table} where team_id = $1 and bucket_start >= $2::timestamptz and bucket_start < $3::timestamptz`,
          params,
        ),
      );
      await tx.execute(positionalSql(rollupUpsertSql(grain, source), params));
    }
  });
}
