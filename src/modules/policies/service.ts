// One file over ~400 lines: every use case of a policy (create, update, upsert with its
// races, delete, versions, stats) shares the team check, the cache and the version writer;
// split by concern if it grows further.
import type { Context } from '../../core/context.ts';
import { BadRequestError, ConflictError, NotFoundError } from '../../core/errors.ts';
import { idOrNotFound, isId, newId, type PolicyId, type TeamId, ulid } from '../../core/ids.ts';
import { type PageQuery, pageOf } from '../../core/pagination.ts';
import { ReadThroughCache } from '../../core/read-through-cache.ts';
import type { Db, DbOrTx } from '../../db/client.ts';
import type { EventsService } from '../events/service.ts';
import { actorOf, managedTeam, type Principal, type Scope } from '../identity/principal.ts';
import type { RunReports, RunWindow } from '../runs/reports.ts';
import * as repo from './repo.ts';
import {
  applyDefaults,
  changedFields,
  deepFreeze,
  type PolicyInput,
  type PolicySpec,
  validatePolicyInput,
  validatePolicySpec,
} from './spec.ts';
import {
  actorLabel,
  iso,
  type PolicyView,
  policyView,
  snapshotOf,
  toNumber,
  usd,
  versionView,
} from './views.ts';

export type { PolicySpec } from './spec.ts';
export { actorLabel, type PolicyView, policyView } from './views.ts';

/** Which live agents use a policy as their default; given by the agents module (see app.ts). */
/** What the policy's stats and cost trend read from the runs module. */
export type PolicyRunsPort = Pick<RunReports, 'policyStats' | 'endedRunsOfPolicy'>;

export type AgentIdsUsingPolicy = (tx: DbOrTx, teamId: TeamId, policyId: string) => Promise<string[]>;

export interface ResolvedPolicy {
  id: string;
  name: string;
  spec: PolicySpec;
  version: number;
}

export const DEFAULT_COST_TREND_LIMIT = 100;
export const MAX_COST_TREND_LIMIT = 500;
/** A policy id from a path; anything else names no policy (404, as an unknown id). */
export function policyIdOf(raw: string): PolicyId {
  return idOrNotFound(raw, 'pol', 'policy');
}

/** How long findForTeam trusts what it read; changes made in this process clear it at once. */
const POLICY_CACHE = { ttlMs: 2000, refreshAheadMs: 500, max: 5000 };

function splitInput<T extends { name?: string }>(input: T): { name?: string; fields: PolicyInput } {
  const { name, ...fields } = input;
  validatePolicyInput(fields);
  return name === undefined ? { fields } : { name: name.trim(), fields };
}

function nameTaken(name: string): ConflictError {
  return new ConflictError('policy_name_taken', `a policy named "${name}" already exists in this team`, {
    name,
  });
}

export class PoliciesService {
  private readonly cache = new ReadThroughCache<ResolvedPolicy | undefined>(POLICY_CACHE);

  constructor(
    private readonly db: Db,
    private readonly ctx: Context,
    private readonly events: EventsService,
    private readonly agentIdsUsingPolicy: AgentIdsUsingPolicy,
    private readonly runs: PolicyRunsPort,
  ) {}

  /** Policies are team resources managed by people and team keys, never by agent keys. */
  private team(principal: Principal, need: Scope): TeamId {
    return managedTeam(principal, need, 'policies');
  }

  private invalidate(): void {
    this.cache.clear();
  }

  /** Runs a change in one transaction and clears the cache once it committed. */
  private async change<T>(work: (tx: DbOrTx) => Promise<T>): Promise<T> {
    try {
      return await this.db.transaction((tx) => work(tx));
    } finally {
      this.invalidate();
    }
  }

  async create(principal: Principal, input: { name: string } & PolicyInput) {
    const teamId = this.team(principal, 'write');
    const { name, fields } = splitInput(input);
    const row = await this.createRow(principal, teamId, name!, fields);
    return policyView(row);
  }

  private async createRow(principal: Principal, teamId: TeamId, name: string, fields: PolicyInput) {
    const spec = applyDefaults(fields);
    validatePolicySpec(spec);
    const now = this.ctx.clock.now();
    const actor = actorLabel(principal);
    try {
      return await this.change(async (tx) => {
        if (await repo.findPolicyByName(tx, teamId, name)) throw nameTaken(name);
        const row = await repo.insertPolicy(tx, {
          id: newId('pol'),
          teamId,
          name,
          spec: spec as unknown as Record<string, unknown>,
          // Paddock writes version 1 at creation (Rungate is silent): the
          // history then holds every state the policy was ever in.
          version: 1,
          createdBy: actor,
          updatedBy: actor,
          createdAt: now,
          updatedAt: now,
        });
        await this.writeVersion(tx, principal, row, spec, ['_created']);
        await this.events.record(tx, {
          teamId,
          type: 'policy.created',
          ...actorOf(principal),
          subjectId: row.id,
          data: { name, version: 1 },
        });
        return row;
      });
    } catch (err) {
      if (repo.isUniqueViolation(err)) throw nameTaken(name);
      throw err;
    }
  }

  private async writeVersion(
    tx: DbOrTx,
    principal: Principal,
    row: repo.PolicyRow,
    spec: PolicySpec,
    changed: string[],
  ): Promise<void> {
    await repo.insertVersion(tx, {
      // No typed prefix is registered for versions; `polv_` keeps them apart from policies.
      id: `polv_${ulid()}`,
      teamId: row.teamId,
      policyId: row.id,
      version: row.version,
      snapshot: snapshotOf(row.name, spec),
      changedBy: actorLabel(principal),
      changedFields: changed,
      createdAt: this.ctx.clock.now(),
    });
    await this.events.record(tx, {
      teamId: row.teamId,
      type: 'policy.version_created',
      ...actorOf(principal),
      subjectId: row.id,
      data: { name: row.name, version: row.version, changed_fields: changed },
    });
  }

  async list(principal: Principal, query: PageQuery & { name?: string }) {
    const teamId = this.team(principal, 'read');
    const filter = query.name ? { name: query.name } : {};
    return pageOf(
      query,
      (cursor, rows) => repo.listPolicies(this.db, teamId, filter, cursor, rows),
      policyView,
    );
  }

  private async policyOrNotFound(teamId: TeamId, id: PolicyId) {
    const row = await repo.findPolicy(this.db, teamId, id);
    if (!row) throw new NotFoundError('policy', id);
    return row;
  }

  async get(principal: Principal, id: PolicyId) {
    return policyView(await this.policyOrNotFound(this.team(principal, 'read'), id));
  }

  /** PUT: deep-merges the fields sent into the policy; omitted fields are kept. */
  async update(principal: Principal, id: PolicyId, input: { name?: string } & PolicyInput) {
    const teamId = this.team(principal, 'write');
    const { name, fields } = splitInput(input);
    const row = await this.mergeInto(principal, teamId, { id }, fields, name);
    return policyView(row);
  }

  /**
   * Applies a deep-merge patch to one policy: a new version when anything
   * changed, nothing at all when the patch changes nothing (so a declarative
   * tool re-applying the same policy does not pile up versions).
   */
  private async mergeInto(
    principal: Principal,
    teamId: TeamId,
    which: { id: PolicyId } | { name: string },
    fields: PolicyInput,
    rename?: string,
  ): Promise<repo.PolicyRow> {
    try {
      return await this.change(async (tx) => {
        // The row lock orders concurrent updates, so versions are never skipped or reused.
        const row =
          'id' in which
            ? await repo.findPolicy(tx, teamId, which.id, 'update')
            : await repo.findPolicyByName(tx, teamId, which.name, 'update');
        if (!row) throw new NotFoundError('policy', 'id' in which ? which.id : which.name);
        const before = applyDefaults(row.spec);
        const spec = applyDefaults(fields, before);
        validatePolicySpec(spec);
        const name = rename ?? row.name;
        const changed = changedFields(snapshotOf(row.name, before), snapshotOf(name, spec));
        if (changed.length === 0) return row;
        if (name !== row.name && (await repo.findPolicyByName(tx, teamId, name))) throw nameTaken(name);
        const updated = await repo.updatePolicy(tx, teamId, row.id, {
          name,
          spec: spec as unknown as Record<string, unknown>,
          version: row.version + 1,
          updatedBy: actorLabel(principal),
          updatedAt: this.ctx.clock.now(),
        });
        await this.writeVersion(tx, principal, updated!, spec, changed);
        await this.events.record(tx, {
          teamId,
          type: 'policy.updated',
          ...actorOf(principal),
          subjectId: row.id,
          data: { name, version: updated!.version, changed_fields: changed },
        });
        return updated!;
      });
    } catch (err) {
      if (rename !== undefined && repo.isUniqueViolation(err)) throw nameTaken(rename);
      throw err;
    }
  }

  /** PUT /by-name/{name}: created with defaults (201) or deep-merged (200). */
  async upsertByName(
    principal: Principal,
    name: string,
    input: PolicyInput,
  ): Promise<{ created: boolean; policy: PolicyView }> {
    const teamId = this.team(principal, 'write');
    const { fields } = splitInput(input as PolicyInput & { name?: string });
    const trimmed = name.trim();
    for (let attempt = 0; ; attempt++) {
      const existing = await repo.findPolicyByName(this.db, teamId, trimmed);
      try {
        if (existing) {
          return {
            created: false,
            policy: policyView(await this.mergeInto(principal, teamId, { name: trimmed }, fields)),
          };
        }
        return {
          created: true,
          policy: policyView(await this.createRow(principal, teamId, trimmed, fields)),
        };
      } catch (err) {
        // Lost a race with a concurrent create or delete of the same name: look again.
        const raced =
          (err instanceof ConflictError && err.code === 'policy_name_taken') || err instanceof NotFoundError;
        if (!raced || attempt >= 2) throw err;
      }
    }
  }

  /** Soft delete, refused while a live agent has this as its policy; the history stays readable. */
  async remove(principal: Principal, id: PolicyId): Promise<void> {
    const teamId = this.team(principal, 'write');
    await this.change(async (tx) => {
      // FOR UPDATE: an agent being pointed at this policy meanwhile (which
      // takes the row FOR SHARE) either finishes first and is seen below, or
      // waits and then finds the policy gone.
      const row = await repo.findPolicy(tx, teamId, id, 'update');
      if (!row) throw new NotFoundError('policy', id);
      const agentIds = await this.agentIdsUsingPolicy(tx, teamId, id);
      if (agentIds.length > 0) {
        throw new ConflictError(
          'policy_in_use',
          `policy ${id} is the policy of ${agentIds.length} agent(s); move them to another policy first`,
          { agent_ids: agentIds.slice(0, 100), agent_count: agentIds.length },
        );
      }
      const now = this.ctx.clock.now();
      const deleted = await repo.updatePolicy(tx, teamId, id, {
        deletedAt: now,
        updatedAt: now,
        version: row.version + 1,
        updatedBy: actorLabel(principal),
      });
      await this.writeVersion(tx, principal, deleted!, applyDefaults(row.spec), ['_deleted']);
      await this.events.record(tx, {
        teamId,
        type: 'policy.deleted',
        ...actorOf(principal),
        subjectId: id,
        data: { name: row.name, version: deleted!.version },
      });
    });
  }

  /** Oldest first; works after the policy was deleted (versions are audit records). */
  async versions(principal: Principal, id: PolicyId, page: PageQuery) {
    const teamId = this.team(principal, 'read');
    if (!(await repo.findPolicyWithDeleted(this.db, teamId, id))) throw new NotFoundError('policy', id);
    return pageOf(
      page,
      (after, rows) => {
        const afterVersion = after === undefined ? undefined : Number(after);
        if (afterVersion !== undefined && !Number.isInteger(afterVersion)) {
          throw new BadRequestError(
            'invalid_cursor',
            'cursor is not one this server issued; start again without it',
          );
        }
        return repo.listVersions(this.db, teamId, id, afterVersion, rows);
      },
      versionView,
      (r) => String(r.version),
    );
  }

  async version(principal: Principal, id: PolicyId, version: number) {
    const teamId = this.team(principal, 'read');
    if (!Number.isInteger(version) || version < 1) {
      throw new BadRequestError('invalid_version', 'the version number must be an integer ≥ 1');
    }
    if (!(await repo.findPolicyWithDeleted(this.db, teamId, id))) throw new NotFoundError('policy', id);
    const row = await repo.findVersion(this.db, teamId, id, version);
    if (!row) throw new NotFoundError('policy_version', `${id} v${version}`);
    return versionView(row);
  }

  private window(since?: string, until?: string): RunWindow {
    const w: RunWindow = {};
    if (since) w.since = new Date(since);
    if (until) w.until = new Date(until);
    if (w.since && w.until && w.since > w.until) {
      throw new BadRequestError('validation_failed', 'since must be before until', {
        fields: { since: 'must be before until' },
      });
    }
    return w;
  }

  /** Spend and outcomes of the policy's runs started in [since, until). Averages are null with no runs. */
  async stats(principal: Principal, id: PolicyId, query: { since?: string; until?: string }) {
    const teamId = this.team(principal, 'read');
    await this.policyOrNotFound(teamId, id);
    const s = await this.runs.policyStats(teamId, id, this.window(query.since, query.until));
    const totalRuns = Number(s.totalRuns);
    const totalMicros = Number(s.totalMicros);
    const endedRuns = Number(s.endedRuns);
    const avgSteps = toNumber(s.avgSteps);
    const avgDuration = toNumber(s.avgDurationMs);
    const utilization = toNumber(s.utilization);
    return {
      total_runs: totalRuns,
      total_spend_usd: usd(totalMicros),
      avg_cost_per_run_usd: totalRuns > 0 ? usd(totalMicros / totalRuns) : null,
      avg_steps_per_run: avgSteps === null ? null : Math.round(avgSteps),
      avg_duration_ms: avgDuration === null ? null : Math.round(avgDuration),
      success_rate: endedRuns > 0 ? Number(s.succeeded) / endedRuns : null,
      budget_utilization: utilization,
    };
  }

  /**
   * One entry per ended run started in the window, oldest first. With more
   * than `limit` such runs the most recent `limit` are returned (a trend
   * reads up to now); `total` counts them all.
   */
  async costTrend(
    principal: Principal,
    id: PolicyId,
    query: { since?: string; until?: string; limit?: number },
  ) {
    const teamId = this.team(principal, 'read');
    await this.policyOrNotFound(teamId, id);
    const limit = Math.min(Math.max(query.limit ?? DEFAULT_COST_TREND_LIMIT, 1), MAX_COST_TREND_LIMIT);
    const { rows, total } = await this.runs.endedRunsOfPolicy(
      teamId,
      id,
      this.window(query.since, query.until),
      limit,
    );
    return {
      data: rows.reverse().map((r) => ({
        run_id: r.id,
        name: r.name,
        cost_usd: usd(r.costMicros),
        step_count: r.stepCount,
        started_at: iso(r.startedAt)!,
      })),
      total,
    };
  }

  /**
   * A live policy of the team by id or by name, defaults applied (the gateway
   * and agents use this). The document is frozen: it is shared with other callers.
   */
  findForTeam(teamId: TeamId, idOrName: string): Promise<ResolvedPolicy | undefined> {
    return this.cache.get(`${teamId}\u0000${idOrName}`, async () => {
      const row =
        (isId(idOrName, 'pol') ? await repo.findPolicy(this.db, teamId, idOrName) : undefined) ??
        (await repo.findPolicyByName(this.db, teamId, idOrName));
      return row
        ? deepFreeze({ id: row.id, name: row.name, spec: applyDefaults(row.spec), version: row.version })
        : undefined;
    });
  }

  /**
   * For the agents module, inside its transaction: true when the policy is a
   * live policy of the team, and holds it (FOR SHARE) so it cannot be deleted
   * before that transaction commits.
   */
  async holdForReference(tx: DbOrTx, teamId: TeamId, policyId: string): Promise<boolean> {
    return isId(policyId, 'pol') && (await repo.findPolicy(tx, teamId, policyId, 'share')) !== undefined;
  }

  /** Of `ids`, those that are not live policies of the team. */
  async missingPolicies(tx: DbOrTx, teamId: TeamId, ids: string[]): Promise<string[]> {
    const missing: string[] = [];
    for (const id of new Set(ids))
      if (!isId(id, 'pol') || !(await repo.findPolicy(tx, teamId, id))) missing.push(id);
    return missing;
  }
}
