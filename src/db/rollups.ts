// The analytics rollups' one upsert (tables in schema/analytics.ts), shared by
// the runs module's step batch (its steps CTE is the source, so the rollups
// move in the same statement as the steps and the ledger) and by the
// analytics backfill (the steps table is the source).

/**
 * Lower bounds of the latency buckets, ms: each about 25 % above the last
 * (exact to the millisecond under 8 ms), up to 12 minutes. Bucket 0 holds
 * 0 ms, bucket j (1…N) holds [bound[j-1], bound[j]) and the last one
 * everything from its bound up.
 */
export const LATENCY_BUCKET_BOUNDS_MS: readonly number[] = (() => {
  const bounds = [1];
  while (bounds.length < 58) {
    const last = bounds[bounds.length - 1]!;
    bounds.push(Math.max(last + 1, Math.round(last * 1.25)));
  }
  return bounds;
})();

/** How many buckets a histogram has (bucket 0 included). */
export const LATENCY_BUCKETS = LATENCY_BUCKET_BOUNDS_MS.length + 1;

export type RollupGrain = 'hour' | 'day';

export const ROLLUP_TABLES: Record<RollupGrain, string> = {
  hour: 'analytics_hourly',
  day: 'analytics_daily',
};

const REQUEST = `type not in ('sandbox', 'failover_transition')`;

const SUMMED = [
  'request_count',
  'success_count',
  'error_count',
  'timeout_count',
  'budget_blocked_count',
  'policy_blocked_count',
  'failover_count',
  'failover_attempts',
  'input_tokens',
  'output_tokens',
  'cache_read_tokens',
  'cache_creation_tokens',
  'cost_micros',
  'sandbox_cost_micros',
  'latency_count',
  'latency_sum_ms',
] as const;

const KEY = ['team_id', 'bucket_start', 'agent_id', 'agent_version', 'provider', 'model'] as const;

/**
 * `insert … on conflict do update` adding the steps of `source` (a relation
 * with the steps table's columns, e.g. a CTE's name or a parenthesised
 * select) into one rollup table. The steps are first counted per key and
 * latency bucket, then per key, so a bulk backfill evaluates the bucket
 * once per step. A task run's agent version comes from its task (the
 * latest, when a workspace's turns share one run).
 */
export function rollupUpsertSql(grain: RollupGrain, source: string): string {
  const table = ROLLUP_TABLES[grain];
  const bounds = `'{${LATENCY_BUCKET_BOUNDS_MS.join(',')}}'::int[]`;
  const perBucket = `
    select x.team_id, date_trunc('${grain}', x.created_at, 'UTC') as bucket_start, x.agent_id,
      coalesce(t.agent_version, 0) as agent_version, coalesce(x.provider, '') as provider,
      coalesce(x.model, '') as model,
      case when x.${REQUEST} and x.latency_ms is not null then width_bucket(x.latency_ms, ${bounds}) end as lb,
      count(*) filter (where x.${REQUEST}) as request_count,
      count(*) filter (where x.${REQUEST} and x.status = 'success') as success_count,
      count(*) filter (where x.${REQUEST} and x.status = 'error') as error_count,
      count(*) filter (where x.${REQUEST} and x.status = 'timeout') as timeout_count,
      count(*) filter (where x.${REQUEST} and x.status = 'budget_blocked') as budget_blocked_count,
      count(*) filter (where x.${REQUEST} and x.status = 'policy_blocked') as policy_blocked_count,
      count(*) filter (where x.type = 'failover_transition') as failover_count,
      coalesce(sum(x.failover_attempts) filter (where x.type = 'failover_transition'), 0) as failover_attempts,
      sum(x.input_tokens) as input_tokens, sum(x.output_tokens) as output_tokens,
      sum(x.cache_read_tokens) as cache_read_tokens, sum(x.cache_creation_tokens) as cache_creation_tokens,
      sum(x.cost_micros) as cost_micros,
      coalesce(sum(x.cost_micros) filter (where x.type = 'sandbox'), 0) as sandbox_cost_micros,
      count(x.latency_ms) filter (where x.${REQUEST}) as latency_count,
      coalesce(sum(x.latency_ms) filter (where x.${REQUEST}), 0) as latency_sum_ms
    from ${source} x
    left join (
      select run_id, max(agent_version) as agent_version from tasks
      where run_id in (select run_id from ${source} y) group by run_id
    ) t on t.run_id = x.run_id
    group by 1, 2, 3, 4, 5, 6, 7`;
  const hist = Array.from(
    { length: LATENCY_BUCKETS },
    (_, j) => `coalesce(sum(latency_count) filter (where lb = ${j}), 0)`,
  ).join(', ');
  return `
    insert into ${table} as a (${KEY.join(', ')}, ${SUMMED.join(', ')}, latency_hist)
    select ${KEY.join(', ')}, ${SUMMED.map((c) => `sum(${c})`).join(', ')}, array[${hist}]::bigint[]
    from (${perBucket}) b
    group by ${KEY.join(', ')}
    on conflict (${KEY.join(', ')}) do update set
      ${SUMMED.map((c) => `${c} = a.${c} + excluded.${c}`).join(',\n      ')},
      latency_hist = array(
        select p + q from unnest(a.latency_hist, excluded.latency_hist) with ordinality as u(p, q, i) order by i
      )`;
}
