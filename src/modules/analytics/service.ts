import type { Static } from 'typebox';
import type { Context } from '../../core/context.ts';
import { ValidationError } from '../../core/errors.ts';
import type { TeamId } from '../../core/ids.ts';
import { parseInstant } from '../../core/instant.ts';
import type { Db } from '../../db/client.ts';
import type { EventsService } from '../events/service.ts';
import { actorOf, managedTeam, type Principal } from '../identity/principal.ts';
import * as records from './records-repo.ts';
import type { SumColumn } from './repo.ts';
import * as repo from './repo.ts';
import type * as s from './schemas.ts';
import * as v from './views.ts';

export type ReportInput = Static<typeof s.ReportQuery>;
export type TopInput = Static<typeof s.TopQuery>;
export type RunsInput = Static<typeof s.RunsQuery>;
export type TasksInput = Static<typeof s.TasksQuery>;
export type AgentsKpiInput = Static<typeof s.AgentsKpiQuery>;

const WINDOW_MS: Record<NonNullable<AgentsKpiInput['window']>, number> = {
  '24h': 24 * 3_600_000,
  '7d': 7 * 86_400_000,
  '30d': 30 * 86_400_000,
  '90d': 90 * 86_400_000,
};

const HOUR_MS = 3_600_000;
const DAY_MS = 24 * HOUR_MS;
/** The longest range a report covers (a year and a day, so a leap year fits). */
export const MAX_RANGE_DAYS = 366;
/** Hourly periods are answered for up to this many days. */
export const MAX_HOURLY_RANGE_DAYS = 31;
const DEFAULT_RANGE_DAYS = 30;

const TOKENS: SumColumn[] = ['input_tokens', 'output_tokens', 'cache_read_tokens', 'cache_creation_tokens'];
const COST: SumColumn[] = ['cost_micros', 'sandbox_cost_micros'];
const ERRORS: SumColumn[] = ['error_count', 'timeout_count'];
const LATENCY: SumColumn[] = ['latency_count', 'latency_sum_ms'];
const TOP_COLUMNS: Record<TopInput['by'], SumColumn[]> = {
  cost: ['cost_micros'],
  calls: ['request_count'],
  tokens: TOKENS,
  errors: ERRORS,
};

interface Range {
  from: Date;
  to: Date;
}

/**
 * Analytics (Rungate's /api/analytics): what a team's model calls, sandbox
 * time, runs and tasks added up to. Call figures come from the hourly and
 * daily rollups the step writer keeps (see src/db/rollups.ts); run and task
 * figures from their rows. Agent keys are refused by the routes' auth rule.
 */
export class AnalyticsService {
  constructor(
    private readonly db: Db,
    private readonly ctx: Context,
    private readonly events: EventsService,
  ) {}

  private range(
    q: { from?: string; to?: string; window?: AgentsKpiInput['window'] },
    granularity?: string | null,
  ): Range {
    const now = this.ctx.clock.now().getTime();
    const to = q.to === undefined ? now : parseInstant(q.to, 'to').getTime();
    if (q.from !== undefined && q.window !== undefined)
      throw new ValidationError('give from or window, not both', { window: 'not with from' });
    const span = q.window === undefined ? DEFAULT_RANGE_DAYS * DAY_MS : WINDOW_MS[q.window];
    const from = q.from === undefined ? to - span : parseInstant(q.from, 'from').getTime();
    // Rollups are hourly: the range is widened to whole hours.
    const r = {
      from: new Date(Math.floor(from / HOUR_MS) * HOUR_MS),
      to: new Date(Math.ceil(to / HOUR_MS) * HOUR_MS),
    };
    if (!(from < to)) throw new ValidationError('from must be before to', { from: 'must be before to' });
    const days = (r.to.getTime() - r.from.getTime()) / DAY_MS;
    if (days > MAX_RANGE_DAYS)
      throw new ValidationError(`a report covers at most ${MAX_RANGE_DAYS} days`, {
        from: `at most ${MAX_RANGE_DAYS} days before to`,
      });
    if (granularity === 'hour' && days > MAX_HOURLY_RANGE_DAYS)
      throw new ValidationError(`hourly periods are answered for at most ${MAX_HOURLY_RANGE_DAYS} days`, {
        granularity: `hour needs a range of at most ${MAX_HOURLY_RANGE_DAYS} days`,
      });
    return r;
  }

  private async sums(principal: Principal, q: ReportInput, columns: readonly SumColumn[], histogram = false) {
    const teamId = managedTeam(principal, 'read', 'analytics');
    const r = this.range(q, q.granularity);
    const rows = await repo.sumRollups(this.db, {
      teamId,
      ...r,
      granularity: q.granularity ?? null,
      groupBy: q.group_by ?? null,
      ...(q.agent_id !== undefined ? { agentId: q.agent_id } : {}),
      ...(q.provider !== undefined ? { provider: q.provider } : {}),
      ...(q.model !== undefined ? { model: q.model } : {}),
      columns,
      histogram,
    });
    return { rows, ...v.rangeView(r) };
  }

  async costs(principal: Principal, q: ReportInput) {
    const { rows, ...r } = await this.sums(principal, q, ['request_count', ...TOKENS, ...COST]);
    return { data: rows.map(v.costRow), ...r };
  }

  async latency(principal: Principal, q: ReportInput) {
    const { rows, ...r } = await this.sums(principal, q, LATENCY, true);
    // Only groups with a timed request (failover bookkeeping and sandbox time have no latency).
    return { data: rows.filter((x) => x.latencyCount > 0).map(v.latencyRow), ...r };
  }

  async errors(principal: Principal, q: ReportInput) {
    const { rows, ...r } = await this.sums(principal, q, [
      'request_count',
      'success_count',
      ...ERRORS,
      'budget_blocked_count',
      'policy_blocked_count',
      'failover_count',
      'failover_attempts',
    ]);
    return { data: rows.map(v.errorRow), ...r };
  }

  async throughput(principal: Principal, q: ReportInput) {
    const { rows, ...r } = await this.sums(principal, q, ['request_count', ...TOKENS, 'cost_micros']);
    return { data: rows.map(v.throughputRow), ...r };
  }

  async providerReliability(principal: Principal, q: Static<typeof s.ReliabilityQuery>) {
    const columns: SumColumn[] = [
      'request_count',
      'success_count',
      ...ERRORS,
      'failover_count',
      'cost_micros',
    ];
    const { rows, ...r } = await this.sums(
      principal,
      { ...q, group_by: 'provider' },
      [...columns, ...LATENCY],
      true,
    );
    // Steps without a provider (sandbox time, unsettled reservations) are not a provider's.
    return { data: rows.filter((x) => x.group !== null).map(v.reliabilityRow), ...r };
  }

  async top(principal: Principal, q: TopInput) {
    const { rows, ...r } = await this.sums(principal, { ...q, group_by: q.dimension }, TOP_COLUMNS[q.by]);
    const ranked = rows
      .filter((x) => x.group !== null)
      .map((x) => ({ entity: x.group!, value: v.topValue(q.by, x) }))
      .filter((x) => x.value > 0)
      .sort((a, b) => b.value - a.value || a.entity.localeCompare(b.entity))
      .slice(0, q.limit ?? 10);
    return { data: ranked.map((x, i) => ({ rank: i + 1, ...x })), ...r };
  }

  async runs(principal: Principal, q: RunsInput) {
    const teamId = managedTeam(principal, 'read', 'analytics');
    const r = this.range(q, q.granularity);
    const rows = await records.runsReport(this.db, {
      teamId,
      ...r,
      granularity: q.granularity ?? null,
      ...(q.agent_id !== undefined ? { agentId: q.agent_id } : {}),
    });
    return { data: rows.map(v.runsRow), ...v.rangeView(r) };
  }

  async tasks(principal: Principal, q: TasksInput) {
    const teamId = managedTeam(principal, 'read', 'analytics');
    const r = this.range(q);
    const rows = await records.tasksReport(this.db, {
      teamId,
      ...r,
      ...(q.agent_id !== undefined ? { agentId: q.agent_id } : {}),
    });
    return { data: v.tasksSummary(rows), ...v.rangeView(r) };
  }

  /**
   * Per agent, over its tasks created in the range (the ones
   * /v1/analytics/tasks counts): done, success rate, cost and tokens per
   * done task, queue wait, last activity.
   */
  async agents(principal: Principal, q: AgentsKpiInput) {
    const teamId = managedTeam(principal, 'read', 'analytics');
    const r = this.range(q);
    const sort = q.sort ?? 'tasks_done';
    const rows = await records.agentsKpi(this.db, {
      teamId,
      ...r,
      ...(q.agent_id !== undefined ? { agentId: q.agent_id } : {}),
      sort,
      descending: (q.order ?? (sort === 'name' ? 'asc' : 'desc')) === 'desc',
      limit: q.limit ?? 50,
    });
    return { data: rows.map(v.agentKpiRow), ...v.rangeView(r) };
  }

  /**
   * Today (UTC, midnight to now) against yesterday up to the same time of
   * day; active agents are those with a request today.
   */
  async overview(principal: Principal) {
    const teamId = managedTeam(principal, 'read', 'analytics');
    const now = this.ctx.clock.now().getTime();
    const midnight = Math.floor(now / DAY_MS) * DAY_MS;
    const end = Math.ceil((now + 1) / HOUR_MS) * HOUR_MS;
    const span = (a: number, b: number) => ({ from: new Date(a), to: new Date(b) });
    const agentsToday = (a: number, b: number) =>
      repo.sumRollups(this.db, {
        teamId,
        ...span(a, b),
        granularity: null,
        groupBy: 'agent',
        columns: ['request_count', 'cost_micros', ...TOKENS],
      });
    const [today, yesterday, runsToday, runsYesterday] = await Promise.all([
      agentsToday(midnight, end),
      agentsToday(midnight - DAY_MS, end - DAY_MS),
      records.countRuns(this.db, teamId, new Date(midnight), new Date(now + 1)),
      records.countRuns(this.db, teamId, new Date(midnight - DAY_MS), new Date(now + 1 - DAY_MS)),
    ]);
    return { data: v.overviewView(today, yesterday, runsToday, runsYesterday) };
  }

  async cleanupPreview(principal: Principal, q: Static<typeof s.CleanupPreviewQuery>) {
    const teamId = managedTeam(principal, 'admin', 'analytics');
    return { data: v.cleanupView(await records.cleanupPreview(this.db, teamId, this.before(q.before))) };
  }

  /** Deletes the raw steps and ledger entries of runs that ended before `before`; rollups and run rows stay. */
  async cleanup(principal: Principal, body: Static<typeof s.CleanupBody>) {
    const teamId: TeamId = managedTeam(principal, 'admin', 'analytics');
    const before = this.before(body.before);
    const counts = await this.db.transaction(async (tx) => {
      const done = await records.cleanup(tx, teamId, before);
      await this.events.record(tx, {
        teamId,
        type: 'analytics.cleaned_up',
        ...actorOf(principal),
        data: {
          before: before.toISOString(),
          runs: done.runs,
          steps: done.steps,
          ledger_entries: done.ledgerEntries,
        },
      });
      return done;
    });
    return { data: v.cleanupView(counts) };
  }

  private before(raw: string): Date {
    const before = parseInstant(raw, 'before');
    if (before.getTime() > this.ctx.clock.now().getTime())
      throw new ValidationError('before must not be in the future', { before: 'must not be in the future' });
    return before;
  }
}
