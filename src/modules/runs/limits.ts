import type { DbOrTx } from '../../db/client.ts';
import type { EventsService } from '../events/service.ts';
import { endRuns, SYSTEM_ACTOR } from './lifecycle.ts';
import * as repo from './repo.ts';
import { usdOf } from './views.ts';

/**
 * After a charge, inside its transaction: alert thresholds flag the run once
 * (run.alert_threshold); a reached hard limit ends it as budget_exceeded
 * (cost_limit / token_limit); on_alert_threshold stop_and_alert ends it at
 * the alert (alert_threshold_stop). Runs it changed go to `changed`.
 */
export async function enforceLimits(
  tx: DbOrTx,
  events: EventsService,
  run: repo.RunRow,
  at: Date,
  changed: repo.RunRow[],
): Promise<repo.RunRow> {
  let current = run;
  const used = run.inputTokens + run.outputTokens + run.cacheReadTokens + run.cacheCreationTokens;
  const costHit = run.hardLimitMicros !== null && run.costMicros >= run.hardLimitMicros;
  const tokenHit = run.hardLimitTokens !== null && used >= run.hardLimitTokens;
  const alertHit =
    (run.alertThresholdMicros !== null && run.costMicros >= run.alertThresholdMicros) ||
    (run.alertThresholdTokens !== null && used >= run.alertThresholdTokens);
  const budget = (run.policySnapshot.budget ?? {}) as { on_alert_threshold?: string };
  const action = budget.on_alert_threshold ?? 'continue_and_alert';
  let alertedNow = false;
  if (alertHit && !run.alertThresholdExceeded) {
    const flagged = await repo.flagAlertThreshold(tx, run.teamId, run.id, at);
    if (flagged) {
      alertedNow = true;
      current = flagged;
      await events.record(tx, {
        teamId: run.teamId,
        ...SYSTEM_ACTOR,
        subjectId: run.id,
        type: 'run.alert_threshold',
        data: {
          agent_id: run.agentId,
          cost_usd: usdOf(run.costMicros),
          alert_threshold_usd: run.alertThresholdMicros === null ? null : usdOf(run.alertThresholdMicros),
          tokens_used: used,
          alert_threshold_tokens: run.alertThresholdTokens,
          action,
        },
      });
    }
  }
  if (current.status !== 'running') return current;
  let endedReason: string | undefined;
  if (costHit) endedReason = 'cost_limit';
  else if (tokenHit) endedReason = 'token_limit';
  else if (alertedNow && action === 'stop_and_alert') endedReason = 'alert_threshold_stop';
  if (endedReason === undefined) return current;
  const [ended] = await endRuns(
    tx,
    events,
    { run: run.id, teamId: run.teamId },
    { status: 'budget_exceeded', endedReason, completionReason: null, fallbackOutcome: null, at },
    SYSTEM_ACTOR,
  );
  if (ended) changed.push(ended);
  return ended ?? current;
}
