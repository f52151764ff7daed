import type { Context } from '../../core/context.ts';
import { ConflictError, NotFoundError } from '../../core/errors.ts';
import { statusAt } from '../../core/expiry.ts';
import { newId, type TeamId } from '../../core/ids.ts';
import { storableText } from '../../core/input-guard.ts';
import { pageOf } from '../../core/pagination.ts';
import type { Db } from '../../db/client.ts';
import type { EventsService } from '../events/service.ts';
import { activeTeam, actorOf, type Principal } from '../identity/principal.ts';
import * as repo from './repo.ts';
import type { ApprovalListQueryType } from './schemas.ts';
import { approvalView } from './views.ts';

export interface ApprovalRequestInput {
  teamId: TeamId;
  runId: string;
  agentId: string;
  policyId: string;
  /** The tools of the request that need approval: one approval each. */
  toolNames: string[];
  /** Fingerprint of the request: only this request can use the approvals. */
  requestHash: string;
  requestSnapshot: unknown;
  /** Now + the policy's approval_expiry_ms. */
  expiresAt: Date;
}

export type ConsumeRefusal =
  | 'not_found'
  | 'request_mismatch'
  | 'not_approved'
  | 'rejected'
  | 'expired'
  | 'consumed';
export type ConsumeResult = { ok: true } | { ok: false; reason: ConsumeRefusal; message: string };

/** Thrown inside the consume transaction to roll back a partial batch. */
class LostRace extends Error {}

/**
 * Human approval of tools (Rungate §1.10): the proxy asks for one approval
 * per tool that needs it and answers 202; a person approves or rejects; the
 * client replays the same request with the approval id, which is used once.
 */
export class ApprovalsService {
  constructor(
    private readonly db: Db,
    private readonly ctx: Context,
    private readonly events: EventsService,
  ) {}

  // -- the proxy's side --------------------------------------------------

  /**
   * Pending approvals for the request's tools. A client that re-sends the same
   * request while they are pending gets the same ones back, not new ones.
   */
  async request(input: ApprovalRequestInput): Promise<Array<{ id: string; tool: string }>> {
    const tools = [...new Set(input.toolNames)];
    if (tools.length === 0) return [];
    const now = this.ctx.clock.now();
    return this.db.transaction(async (tx) => {
      const pending = await repo.pendingForRequest(tx, input.teamId, input.agentId, input.requestHash, now);
      const latest = pending.filter(
        (a) =>
          a.runId === input.runId &&
          a.createdAt.getTime() === Math.max(...pending.map((p) => p.createdAt.getTime())),
      );
      if (latest.length === tools.length && tools.every((t) => latest.some((a) => a.toolName === t))) {
        return tools.map((t) => ({ id: latest.find((a) => a.toolName === t)!.id, tool: t }));
      }
      const rows = await repo.insertApprovals(
        tx,
        tools.map((tool) => ({
          id: newId('apr'),
          teamId: input.teamId,
          runId: input.runId,
          agentId: input.agentId,
          policyId: input.policyId,
          toolName: tool,
          requestHash: input.requestHash,
          requestSnapshot: storableText(input.requestSnapshot ?? null),
          status: 'pending' as const,
          expiresAt: input.expiresAt,
          // One timestamp for the batch: consume() finds the siblings by it.
          createdAt: now,
        })),
      );
      for (const a of rows) {
        await this.events.record(tx, {
          teamId: a.teamId,
          actorKind: 'agent',
          actorId: a.agentId,
          subjectId: a.id,
          type: 'approval.requested',
          data: {
            run_id: a.runId,
            agent_id: a.agentId,
            tool_name: a.toolName,
            expires_at: a.expiresAt.toISOString(),
          },
        });
      }
      return rows.map((a) => ({ id: a.id, tool: a.toolName }));
    });
  }

  /**
   * Uses an approval for the replayed request: it must be this agent's, for
   * this exact request, approved and unexpired — and so must every approval
   * asked for in the same request (one per tool). All become consumed at once,
   * each with an approval.consumed event in the same transaction.
   */
  async consume(
    teamId: TeamId,
    approvalId: string,
    agentId: string,
    requestHash: string,
  ): Promise<ConsumeResult> {
    const now = this.ctx.clock.now();
    const refuse = (reason: ConsumeRefusal, message: string): ConsumeResult => ({
      ok: false,
      reason,
      message,
    });
    try {
      return await this.db.transaction(async (tx) => {
        const a = await repo.findApproval(tx, teamId, approvalId);
        if (!a || a.agentId !== agentId) return refuse('not_found', `approval ${approvalId} was not found`);
        if (a.requestHash !== requestHash) {
          return refuse(
            'request_mismatch',
            `approval ${approvalId} was given for a different request; replay the request exactly as it was sent`,
          );
        }
        const batch = await repo.batchOf(tx, a);
        for (const b of batch) {
          const status = b.status === 'approved' && b.expiresAt <= now ? 'expired' : statusAt(b, now);
          if (status === 'approved') continue;
          const which =
            b.id === a.id ? `approval ${b.id}` : `approval ${b.id} (tool ${b.toolName}) of the same request`;
          if (status === 'pending') return refuse('not_approved', `${which} is still pending`);
          if (status === 'rejected')
            return refuse('rejected', `${which} was rejected${b.reason ? `: ${b.reason}` : ''}`);
          if (status === 'expired')
            return refuse('expired', `${which} expired at ${b.expiresAt.toISOString()}`);
          return refuse('consumed', `${which} was already used`);
        }
        const consumed = await repo.consumeBatch(
          tx,
          teamId,
          batch.map((b) => b.id),
          now,
        );
        if (consumed !== batch.length) throw new LostRace();
        for (const b of batch) {
          await this.events.record(tx, {
            teamId,
            actorKind: 'agent',
            actorId: agentId,
            subjectId: b.id,
            type: 'approval.consumed',
            data: { run_id: b.runId, agent_id: b.agentId, tool_name: b.toolName },
          });
        }
        return { ok: true } as const;
      });
    } catch (err) {
      if (err instanceof LostRace) return refuse('consumed', `approval ${approvalId} was already used`);
      throw err;
    }
  }

  // -- the HTTP side ------------------------------------------------------

  async list(principal: Principal, q: ApprovalListQueryType) {
    const now = this.ctx.clock.now();
    const filter = {
      ...(q.status !== undefined ? { status: q.status } : {}),
      ...(q.run_id !== undefined ? { runId: q.run_id } : {}),
      ...(q.agent_id !== undefined ? { agentId: q.agent_id } : {}),
    };
    return pageOf(
      q,
      (cursor, rows) => repo.listApprovals(this.db, activeTeam(principal), filter, now, cursor, rows),
      (a) => approvalView(a, now),
    );
  }

  async get(principal: Principal, id: string) {
    const a = await repo.findApproval(this.db, activeTeam(principal), id);
    if (!a) throw new NotFoundError('approval', id);
    return approvalView(a, this.ctx.clock.now());
  }

  approve(principal: Principal, id: string) {
    return this.decide(principal, id, 'approved', null);
  }

  reject(principal: Principal, id: string, reason: string | null) {
    return this.decide(principal, id, 'rejected', reason);
  }

  private async decide(
    principal: Principal,
    id: string,
    status: 'approved' | 'rejected',
    reason: string | null,
  ) {
    const teamId = activeTeam(principal);
    const now = this.ctx.clock.now();
    const actor = actorOf(principal);
    const decided = await this.db.transaction(async (tx) => {
      const row = await repo.decide(tx, teamId, id, {
        status,
        decidedBy: actor.actorId === null ? actor.actorKind : `${actor.actorKind}:${actor.actorId}`,
        reason,
        at: now,
      });
      if (!row) return undefined;
      const data = { run_id: row.runId, agent_id: row.agentId, tool_name: row.toolName };
      if (status === 'approved') {
        await this.events.record(tx, {
          teamId,
          ...actor,
          subjectId: row.id,
          type: 'approval.approved',
          data,
        });
      } else {
        await this.events.record(tx, {
          teamId,
          ...actor,
          subjectId: row.id,
          type: 'approval.rejected',
          data: { ...data, reason },
        });
      }
      return row;
    });
    if (decided) return approvalView(decided, now);
    const current = await repo.findApproval(this.db, teamId, id);
    if (!current) throw new NotFoundError('approval', id);
    const state = statusAt(current, now);
    throw new ConflictError(
      'approval_not_pending',
      `approval ${id} is ${state}; only a pending approval can be decided`,
      {
        status: state,
      },
    );
  }
}
