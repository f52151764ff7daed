import type { Context } from '../../core/context.ts';
import { BadRequestError } from '../../core/errors.ts';
import { isId, newId, type TeamId } from '../../core/ids.ts';
import { parseInstant } from '../../core/instant.ts';
import { type Page, pageOf } from '../../core/pagination.ts';
import type { RequestContext } from '../../core/request-context.ts';
import type { Db } from '../../db/client.ts';
import { actorOf, managedTeam, type Principal, requirePlatformAdmin } from '../identity/principal.ts';
import * as repo from './audit-repo.ts';

export const AUDIT_OUTCOMES = ['success', 'denied', 'failed', 'blocked'] as const;
export const AUDIT_ACTOR_KINDS = ['user', 'api_key', 'agent', 'host', 'system', 'anonymous'] as const;

/** Rows an export reads at a time. */
const EXPORT_BATCH = 500;

export interface AuditQuery {
  actor_kind?: string;
  actor_id?: string;
  action?: string;
  resource_id?: string;
  outcome?: string;
  from?: string;
  to?: string;
  team_id?: string;
}

/** A call that was refused or failed, or changed nothing that writes an event. */
export interface AuditedCall {
  request: RequestContext;
  principal: Principal | null;
  statusCode: number;
  errorCode: string | undefined;
  resourceId: string | undefined;
}

/** A model call the gateway refused (budget, policy, rate limit, tool rule). */
export interface AuditedBlock {
  teamId: TeamId;
  runId: string;
  agentId: string;
  code: string;
  model?: string | null;
}

export class AuditService {
  constructor(
    private readonly db: Db,
    private readonly ctx: Context,
  ) {}

  /** A request's own entry: written after its answer, as it changed nothing (or its change rolled back). */
  async recordCall(call: AuditedCall): Promise<void> {
    const { request, principal } = call;
    const actor = principal ? actorOf(principal) : { actorKind: 'anonymous', actorId: null };
    await repo.insertAudit(this.db, {
      id: newId('aud'),
      teamId: principal?.teamId ?? null,
      ...actor,
      action: `${request.method} ${request.route}`,
      resourceId: call.resourceId ?? null,
      outcome:
        call.statusCode < 400
          ? 'success'
          : call.statusCode === 401 || call.statusCode === 403
            ? 'denied'
            : 'failed',
      statusCode: call.statusCode,
      ipAddress: request.ipAddress,
      requestId: request.requestId,
      route: `${request.method} ${request.route}`,
      userAgent: request.userAgent,
      details: call.errorCode !== undefined ? { error_code: call.errorCode } : {},
      createdAt: this.ctx.clock.now(),
    });
  }

  /**
   * A governance block. It changes nothing but its step, which the runs
   * module writes behind in a batch, so its entry is written on its own.
   */
  recordBlock(block: AuditedBlock): void {
    repo
      .insertAudit(this.db, {
        id: newId('aud'),
        teamId: block.teamId,
        actorKind: 'agent',
        actorId: block.agentId,
        action: `governance.${block.code}`,
        resourceId: block.runId,
        outcome: 'blocked',
        statusCode: null,
        ipAddress: null,
        requestId: null,
        route: null,
        userAgent: null,
        details: { code: block.code, model: block.model ?? null },
        createdAt: this.ctx.clock.now(),
      })
      .catch((err: unknown) =>
        this.ctx.log.warn({ err, run_id: block.runId }, 'could not write a governance block’s audit entry'),
      );
  }

  /** Newest first: the team's (team admins and admin keys), or with `everyTeam` every team's (platform admins). */
  list(
    principal: Principal,
    query: AuditQuery & { limit?: number; cursor?: string },
    everyTeam = false,
  ): Promise<Page<AuditView>> {
    const filter = this.filterFor(principal, query, everyTeam);
    return pageOf(query, (cursor, rows) => repo.listAudit(this.db, filter, { beforeId: cursor }, rows), view);
  }

  /** Every entry that matches, oldest first, for an export (JSON lines); access and filters checked first. */
  exportAll(principal: Principal, query: AuditQuery, everyTeam = false): AsyncGenerator<AuditView> {
    return this.every(this.filterFor(principal, query, everyTeam));
  }

  private async *every(filter: repo.AuditFilter): AsyncGenerator<AuditView> {
    let after = '';
    for (;;) {
      const rows = await repo.listAudit(this.db, filter, { afterId: after }, EXPORT_BATCH);
      for (const row of rows) yield view(row);
      if (rows.length < EXPORT_BATCH) return;
      after = rows.at(-1)!.id;
    }
  }

  /** Platform admins read every team's entries (`team_id` narrows to one); a team admin reads their team's. */
  private filterFor(principal: Principal, query: AuditQuery, everyTeam: boolean): repo.AuditFilter {
    let teamId: TeamId | undefined;
    if (everyTeam) {
      requirePlatformAdmin(principal, 'read every team’s audit log');
      if (query.team_id !== undefined && !isId(query.team_id, 'team'))
        throw new BadRequestError('invalid_team_id', 'team_id is the id of a team (team_…)');
      teamId = query.team_id;
    } else {
      teamId = managedTeam(principal, 'admin', 'the audit log');
    }
    const from = timeOf(query.from, 'from');
    const to = timeOf(query.to, 'to');
    if (from && to && from >= to) throw new BadRequestError('invalid_range', 'from must be before to');
    return {
      teamId,
      actorKind: query.actor_kind,
      actorId: query.actor_id,
      action: query.action,
      resourceId: query.resource_id,
      outcome: query.outcome,
      from,
      to,
    };
  }
}

function timeOf(raw: string | undefined, field: string): Date | undefined {
  return raw === undefined ? undefined : parseInstant(raw, field);
}

export type AuditView = ReturnType<typeof view>;

function view(r: repo.AuditRow) {
  return {
    id: r.id,
    team_id: r.teamId,
    actor_kind: r.actorKind,
    actor_id: r.actorId,
    action: r.action,
    resource_id: r.resourceId,
    outcome: r.outcome,
    status_code: r.statusCode,
    ip_address: r.ipAddress,
    request_id: r.requestId,
    route: r.route,
    user_agent: r.userAgent,
    details: r.details,
    created_at: r.createdAt.toISOString(),
  };
}
