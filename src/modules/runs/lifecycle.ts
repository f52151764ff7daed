import type { DbOrTx } from '../../db/client.ts';
import type { EventMap, EventsService } from '../events/service.ts';
import { endRunningRuns, type RunEnding, type RunRow, type RunsToEnd } from './repo.ts';
import { usdOf } from './views.ts';

/** Who made a change, for the event outbox. */
export interface Actor {
  actorKind: string;
  actorId: string | null;
}

export const SYSTEM_ACTOR: Actor = { actorKind: 'system', actorId: null };

const usedTokens = (r: RunRow) => r.inputTokens + r.outputTokens + r.cacheReadTokens + r.cacheCreationTokens;

type RunEndType = 'run.completed' | 'run.budget_exceeded' | 'run.force_stopped';
type RunEndEvent = { [T in RunEndType]: { type: T; data: EventMap[T] } }[RunEndType];

/** The event that tells of a run's end, by its new status. */
function endEvent(r: RunRow, ending: RunEnding): RunEndEvent {
  const common = { agent_id: r.agentId, outcome: r.outcome, cost_usd: usdOf(r.costMicros) };
  const endedReason = r.endedReason ?? ending.endedReason;
  if (r.status === 'budget_exceeded')
    return {
      type: 'run.budget_exceeded',
      data: {
        ...common,
        ended_reason: endedReason,
        hard_limit_usd: r.hardLimitMicros === null ? null : usdOf(r.hardLimitMicros),
        tokens_used: usedTokens(r),
        hard_limit_tokens: r.hardLimitTokens,
      },
    };
  if (r.status === 'force_stopped')
    return { type: 'run.force_stopped', data: { ...common, policy_id: r.policyId } };
  return {
    type: 'run.completed',
    data: {
      ...common,
      ended_reason: endedReason,
      completion_reason: r.completionReason,
      step_count: r.stepCount,
    },
  };
}

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
  for (const r of ended)
    await events.record(tx, { teamId: r.teamId, ...actor, subjectId: r.id, ...endEvent(r, ending) });
  return ended;
}
