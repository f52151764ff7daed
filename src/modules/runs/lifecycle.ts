import type { DbOrTx } from '../../db/client.ts';
import type { EventsService } from '../events/service.ts';
import { endRunningRuns, type RunEnding, type RunRow, type RunsToEnd } from './repo.ts';
import { usdOf } from './views.ts';

/** Who made a change, for the event outbox. */
export interface Actor {
  actorKind: string;
  actorId: string | null;
}

export const SYSTEM_ACTOR: Actor = { actorKind: 'system', actorId: null };

const usedTokens = (r: RunRow) => r.inputTokens + r.outputTokens + r.cacheReadTokens + r.cacheCreationTokens;

/**
 * Ends the running runs `which` names and records one event per ended run,
 * in the caller's transaction: run.completed, run.budget_exceeded or
 * run.force_stopped by the new status.
 */
export async function endRuns(
  tx: DbOrTx,
  events: EventsService,
  which: RunsToEnd,
  ending: RunEnding,
  actor: Actor,
): Promise<RunRow[]> {
  const ended = await endRunningRuns(tx, which, ending);
  for (const r of ended) {
    const common = { teamId: r.teamId, ...actor, subjectId: r.id };
    if (r.status === 'budget_exceeded') {
      await events.record(tx, {
        ...common,
        type: 'run.budget_exceeded',
        data: {
          agent_id: r.agentId,
          ended_reason: r.endedReason ?? ending.endedReason,
          outcome: r.outcome,
          cost_usd: usdOf(r.costMicros),
          hard_limit_usd: r.hardLimitMicros === null ? null : usdOf(r.hardLimitMicros),
          tokens_used: usedTokens(r),
          hard_limit_tokens: r.hardLimitTokens,
        },
      });
    } else if (r.status === 'force_stopped') {
      await events.record(tx, {
        ...common,
        type: 'run.force_stopped',
        data: {
          agent_id: r.agentId,
          policy_id: r.policyId,
          outcome: r.outcome,
          cost_usd: usdOf(r.costMicros),
        },
      });
    } else {
      await events.record(tx, {
        ...common,
        type: 'run.completed',
        data: {
          agent_id: r.agentId,
          ended_reason: r.endedReason ?? ending.endedReason,
          completion_reason: r.completionReason,
          outcome: r.outcome,
          cost_usd: usdOf(r.costMicros),
          step_count: r.stepCount,
        },
      });
    }
  }
  return ended;
}
