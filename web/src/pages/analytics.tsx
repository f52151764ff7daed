import { useQuery } from '@tanstack/react-query';
import { useMemo } from 'react';
import { Link } from 'react-router';
import { api, unwrap, usd, when } from '../api.ts';
import { Chart, type Granularity, periodLabel, periods, type Series, seriesOf } from '../chart.tsx';
import { useAddressParams } from '../routed.ts';
import { DataTable, Empty, ErrorNote, Loading, Page, Section, SelectField, Stat } from '../ui.tsx';
import { useAgents } from './agents.tsx';

/** The ranges the pages offer, each with the period its charts are drawn in. */
export const RANGES = {
  '24h': { label: 'Last 24 hours', hours: 24, granularity: 'hour' },
  '7d': { label: 'Last 7 days', hours: 7 * 24, granularity: 'day' },
  '30d': { label: 'Last 30 days', hours: 30 * 24, granularity: 'day' },
  '90d': { label: 'Last 90 days', hours: 90 * 24, granularity: 'week' },
} as const satisfies Record<string, { label: string; hours: number; granularity: Granularity }>;
export type RangeKey = keyof typeof RANGES;

export interface Range {
  from: string;
  to: string;
  granularity: Granularity;
  labels: string[];
}

/**
 * A range ending at the next whole hour (the API rounds to hours, and a
 * stable end keeps the queries' keys the same across renders).
 */
export function useRange(key: RangeKey): Range {
  const hour = Math.ceil(Date.now() / 3_600_000);
  return useMemo(() => {
    const { hours, granularity } = RANGES[key];
    const to = new Date(hour * 3_600_000);
    const from = new Date(to.getTime() - hours * 3_600_000);
    return {
      from: from.toISOString(),
      to: to.toISOString(),
      granularity,
      labels: periods(from, to, granularity),
    };
  }, [key, hour]);
}

const METRICS = {
  cost: { label: 'Spend', unit: 'USD', format: usd, of: (r: CostRow) => r.total_cost_usd },
  tokens: { label: 'Tokens', unit: 'tokens', format: count, of: (r: CostRow) => r.total_tokens },
  requests: { label: 'Model calls', unit: 'calls', format: count, of: (r: CostRow) => r.request_count },
} as const;
type MetricKey = keyof typeof METRICS;
type CostRow = Awaited<ReturnType<typeof costs>>['data'][number];

const GROUPS = { none: 'Nothing', model: 'Model', provider: 'Provider', agent: 'Agent' } as const;
type GroupKey = keyof typeof GROUPS;

function count(n: number): string {
  return Math.round(n).toLocaleString();
}

function costs(range: Range, groupBy?: Exclude<GroupKey, 'none'>) {
  return unwrap(
    api.GET('/v1/analytics/costs', {
      params: {
        query: {
          from: range.from,
          to: range.to,
          granularity: range.granularity,
          ...(groupBy ? { group_by: groupBy } : {}),
        },
      },
    }),
  );
}

const xLabelOf = (g: Granularity) => `${g === 'hour' ? 'Hour' : g === 'day' ? 'Day' : 'Week'} (UTC)`;

function pick<T extends string>(value: string | null, choices: Record<T, unknown>, fallback: T): T {
  return value !== null && value in choices ? (value as T) : fallback;
}

/** The range picker, kept in the address (`?range=`), as every chart page offers it. */
export function RangePicker(props: { value: RangeKey; onChange: (value: RangeKey) => void }) {
  return (
    <SelectField
      label="Range"
      value={props.value}
      onChange={(e) => props.onChange(e.target.value as RangeKey)}
      options={Object.entries(RANGES).map(([value, r]) => ({ value, label: r.label }))}
    />
  );
}

/** Spend per period, model calls and sandbox time stacked (overview, billing). */
export function SpendChart(props: { range: Range; title: string }) {
  const report = useQuery({
    queryKey: ['analytics', 'costs', props.range.from, props.range.to, props.range.granularity],
    queryFn: () => costs(props.range),
  });
  if (report.isPending) return <Loading what="spend" />;
  if (report.isError) return <ErrorNote error={report.error} />;
  const { labels, granularity } = props.range;
  const rows = report.data.data;
  return (
    <Chart
      title={props.title}
      kind="bar"
      labels={labels}
      series={[
        ...seriesOf(
          rows,
          labels,
          (r) => r.model_cost_usd,
          () => 'Model calls',
          1,
        ),
        ...seriesOf(
          rows,
          labels,
          (r) => r.sandbox_cost_usd,
          () => 'Sandboxes',
          1,
        ),
      ]}
      yLabel="USD"
      xLabel={xLabelOf(granularity)}
      format={usd}
      formatLabel={periodLabel(granularity)}
      empty={
        <Empty title="No spend in this range.">
          Model calls and sandbox time show here once agents run. <Link to="/tasks">Submit a task</Link>.
        </Empty>
      }
    />
  );
}

export function AnalyticsPage() {
  const [params, change] = useAddressParams({ replace: true });
  const rangeKey = pick<RangeKey>(params.get('range'), RANGES, '7d');
  const metricKey = pick<MetricKey>(params.get('metric'), METRICS, 'cost');
  const groupKey = pick<GroupKey>(params.get('group'), GROUPS, 'model');
  const set = (key: string, value: string) => change((p) => p.set(key, value));
  const range = useRange(rangeKey);
  const agents = useAgents();
  const q = { from: range.from, to: range.to, granularity: range.granularity };
  const grouped = useQuery({
    queryKey: ['analytics', 'costs', range.from, range.to, range.granularity, groupKey],
    queryFn: () => costs(range, groupKey === 'none' ? undefined : groupKey),
  });
  const latency = useQuery({
    queryKey: ['analytics', 'latency', q],
    queryFn: () => unwrap(api.GET('/v1/analytics/latency', { params: { query: q } })),
  });
  const errors = useQuery({
    queryKey: ['analytics', 'errors', q],
    queryFn: () => unwrap(api.GET('/v1/analytics/errors', { params: { query: q } })),
  });
  const runs = useQuery({
    queryKey: ['analytics', 'runs', q],
    queryFn: () => unwrap(api.GET('/v1/analytics/runs', { params: { query: q } })),
  });
  const topDimension = groupKey === 'none' ? 'model' : groupKey;
  const top = useQuery({
    queryKey: ['analytics', 'top', range.from, range.to, topDimension],
    queryFn: () =>
      unwrap(
        api.GET('/v1/analytics/top', {
          params: {
            query: { from: range.from, to: range.to, by: 'cost', dimension: topDimension, limit: 10 },
          },
        }),
      ),
  });
  const agentName = (id: string | null) =>
    (id && agents.data?.data.find((a) => a.id === id)?.name) ?? id ?? 'no agent';
  const groupName = (group: string | null) =>
    groupKey === 'none'
      ? METRICS[metricKey].label
      : groupKey === 'agent'
        ? agentName(group)
        : // Sandbox time has no model or provider: its rows come without a group.
          (group ?? `no ${groupKey}`);

  const metric = METRICS[metricKey];
  const rows = grouped.data?.data ?? [];
  const sum = (of: (r: CostRow) => number) => rows.reduce((a, r) => a + of(r), 0);
  const errorRows = errors.data?.data ?? [];
  const requests = errorRows.reduce((a, r) => a + r.total_requests, 0);
  const failed = errorRows.reduce((a, r) => a + r.error_count, 0);
  const label = periodLabel(range.granularity);
  const xLabel = xLabelOf(range.granularity);
  const { labels } = range;
  const noCalls = (
    <Empty title="No model calls in this range.">
      Figures appear once agents make model calls. <Link to="/tasks">Submit a task</Link>, or widen the range.
    </Empty>
  );
  return (
    <Page title="Analytics">
      <p className="muted lead">
        Spend, tokens and model calls from the gateway's records: every call an agent or a task makes. Periods
        are UTC.
      </p>
      <form className="range-picker" onSubmit={(e) => e.preventDefault()}>
        <RangePicker value={rangeKey} onChange={(v) => set('range', v)} />
        <SelectField
          label="Show"
          value={metricKey}
          onChange={(e) => set('metric', e.target.value)}
          options={Object.entries(METRICS).map(([value, m]) => ({ value, label: m.label }))}
        />
        <SelectField
          label="Split by"
          value={groupKey}
          onChange={(e) => set('group', e.target.value)}
          options={Object.entries(GROUPS).map(([value, l]) => ({ value, label: l }))}
        />
      </form>
      <ErrorNote error={grouped.error ?? latency.error ?? errors.error ?? runs.error ?? top.error} />
      <div className="stats">
        <Stat label="Spend" value={grouped.data ? usd(sum((r) => r.total_cost_usd)) : '…'} />
        <Stat label="Tokens" value={grouped.data ? count(sum((r) => r.total_tokens)) : '…'} />
        <Stat label="Model calls" value={grouped.data ? count(sum((r) => r.request_count)) : '…'} />
        <Stat
          label="Error rate"
          value={errors.data ? (requests === 0 ? '—' : `${((100 * failed) / requests).toFixed(1)}%`) : '…'}
          hint={errors.data ? `${failed} of ${requests} calls failed` : undefined}
        />
      </div>
      <Section title={`${metric.label} by ${GROUPS[groupKey].toLowerCase()}`}>
        {grouped.isPending ? <Loading what="the figures" /> : null}
        {grouped.data ? (
          <Chart
            title={`${metric.label} per ${range.granularity}, ${RANGES[rangeKey].label.toLowerCase()}`}
            kind={groupKey === 'none' ? 'area' : 'line'}
            labels={labels}
            series={seriesOf(rows, labels, metric.of, groupName)}
            yLabel={metric.unit}
            xLabel={xLabel}
            format={metric.format}
            formatLabel={label}
            empty={noCalls}
          />
        ) : null}
      </Section>
      <div className="charts">
        <Section title="Latency">
          {latency.data ? (
            <Chart
              title="Latency p50 and p95 per period"
              labels={labels}
              series={fieldSeries(latency.data.data, labels, {
                p50: (r) => r.p50_ms,
                p95: (r) => r.p95_ms,
              })}
              yLabel="ms"
              xLabel={xLabel}
              format={(v) => `${Math.round(v)} ms`}
              formatLabel={label}
              empty={noCalls}
            />
          ) : (
            <Loading what="latency" />
          )}
        </Section>
        <Section title="Runs by outcome">
          {runs.data ? (
            <Chart
              title="Runs started per period by outcome"
              kind="bar"
              labels={labels}
              series={fieldSeries(runs.data.data, labels, {
                completed: (r) => r.completed_count,
                failed: (r) => r.failed_count,
                'over budget': (r) => r.budget_exceeded_count,
                running: (r) => r.running_count,
              })}
              yLabel="runs"
              xLabel={xLabel}
              format={count}
              formatLabel={label}
              empty={
                <Empty title="No runs in this range.">A task or an agent's model calls start one.</Empty>
              }
            />
          ) : (
            <Loading what="runs" />
          )}
        </Section>
      </div>
      <AgentFigures range={range} />
      <Section title={`Top ${topDimension}s by spend`}>
        <DataTable
          list={top}
          what="the top list"
          rowKey={(row) => `${row.rank}`}
          empty={noCalls}
          columns={[
            { header: 'Rank', cell: (row) => row.rank },
            {
              header: GROUPS[topDimension],
              cell: (row) =>
                topDimension === 'agent' ? (
                  <Link to={`/agents/${row.entity}`}>{agentName(row.entity)}</Link>
                ) : (
                  <code>{row.entity}</code>
                ),
            },
            { header: 'Spend', cell: (row) => usd(row.value) },
          ]}
        />
      </Section>
    </Page>
  );
}

/** Per agent, over its tasks created in the range: done, success rate, cost and tokens per task, queue wait. */
function AgentFigures(props: { range: Range }) {
  const { from, to } = props.range;
  const kpi = useQuery({
    queryKey: ['overview', 'agents', from, to],
    queryFn: () => unwrap(api.GET('/v1/overview/agents', { params: { query: { from, to } } })),
  });
  const pct = (v: number | null) => (v === null ? '—' : `${v.toFixed(0)}%`);
  const seconds = (ms: number | null) => (ms === null ? '—' : `${(ms / 1000).toFixed(1)} s`);
  return (
    <Section title="Agents">
      <DataTable
        list={kpi}
        what="the agents' figures"
        rowKey={(a) => a.agent_id}
        empty={
          <Empty title="No tasks in this range.">An agent's figures appear once it has run a task.</Empty>
        }
        columns={[
          {
            header: 'Agent',
            cell: (a) =>
              a.name ? <Link to={`/agents/${a.agent_id}`}>{a.name}</Link> : `${a.agent_id} (gone)`,
          },
          { header: 'Tasks done', cell: (a) => `${a.tasks_done} of ${a.tasks_total}` },
          { header: 'Succeeded', cell: (a) => pct(a.success_rate_pct) },
          { header: 'Cost a task', cell: (a) => usd(a.cost_per_task_usd) },
          {
            header: 'Tokens a task',
            cell: (a) => (a.tokens_per_task === null ? '—' : count(a.tokens_per_task)),
          },
          {
            header: 'Queue wait p50 / p95',
            cell: (a) => `${seconds(a.queue_wait_p50_ms)} / ${seconds(a.queue_wait_p95_ms)}`,
          },
          { header: 'Last active', cell: (a) => when(a.last_active_at) },
        ]}
      />
    </Section>
  );
}

/** One series per figure of a report's rows (one row a period), null where a period has no row. */
function fieldSeries<Row extends { period: string | null }>(
  rows: Row[],
  labels: string[],
  fields: Record<string, (row: Row) => number | null>,
): Series[] {
  const byTime = new Map(rows.map((r) => [r.period === null ? Number.NaN : new Date(r.period).getTime(), r]));
  return Object.entries(fields).map(([name, of]) => ({
    name,
    values: labels.map((l) => {
      const row = byTime.get(new Date(l).getTime());
      return row ? of(row) : null;
    }),
  }));
}
