import type { Context } from '../../core/context.ts';
import { newId } from '../../core/ids.ts';
import type { Db } from '../../db/client.ts';
import { LeaderWork } from '../../jobs/leader-ticker.ts';
import type { EventsService } from '../events/service.ts';
import type { MailPort } from '../mail/service.ts';
import { alertMail } from './emails.ts';
import { measure } from './measure.ts';
import * as repo from './repo.ts';
import type { AlertPorts } from './service.ts';

export interface EvaluatorOptions {
  /** How often each active rule is evaluated (PADDOCK_ALERT_EVALUATION_INTERVAL_SEC). */
  evaluateEveryMs: number;
  /** How often every server tries for the lease and the leader looks for due rules. */
  tickEveryMs: number;
  /** How long a lease lasts without renewal. */
  leaseMs: number;
  /** Rules evaluated per tick at most (the rest wait for the next, oldest evaluation first). */
  batch: number;
}

export function evaluatorOptions(evaluateEverySec: number): EvaluatorOptions {
  const evaluateEveryMs = evaluateEverySec * 1000;
  // A tick per evaluation, at most every 15 s; the lease outlives three ticks.
  const tickEveryMs = Math.min(evaluateEveryMs, 15_000);
  return { evaluateEveryMs, tickEveryMs, leaseMs: Math.max(3 * tickEveryMs, 30_000), batch: 200 };
}

/**
 * Evaluates alert rules on the leader (LeaderTicker, lease row `alerts`):
 * each tick takes the rules whose evaluation slot has come, claims each slot
 * in one statement (so two servers never both evaluate one slot), measures
 * the window that ends now, and fires when the measure crosses the
 * threshold and the rule is out of its cooldown: the firing, the event
 * alert.triggered and one e-mail per recipient, in one transaction.
 */
export class AlertEvaluator extends LeaderWork {
  constructor(
    private readonly db: Db,
    private readonly ctx: Context,
    private readonly events: EventsService,
    private readonly mail: MailPort,
    private readonly ports: AlertPorts,
    /** Where the e-mails' links point (PADDOCK_PUBLIC_URL). */
    private readonly publicBase: string,
    private readonly options: EvaluatorOptions,
  ) {
    super(db, ctx, 'alerts', options, 'alert evaluator');
  }

  protected async lead(now: Date): Promise<void> {
    const dueBefore = new Date(now.getTime() - this.options.evaluateEveryMs);
    for (const rule of await repo.dueRules(this.db, dueBefore, this.options.batch)) {
      try {
        await this.evaluate(rule.id, dueBefore, now);
      } catch (err) {
        this.ctx.log.warn({ err, alert_rule_id: rule.id }, 'evaluating an alert rule failed');
      }
    }
  }

  private async evaluate(id: repo.AlertRuleId, dueBefore: Date, now: Date): Promise<void> {
    const rule = await repo.claimEvaluation(this.db, id, dueBefore, now);
    if (!rule) return;
    const { fires, evidence } = await measure(this.db, rule, now);
    if (!fires) return;
    const quietSince = new Date(now.getTime() - rule.cooldownSeconds * 1000);
    const mails = await this.db.transaction(async (tx) => {
      if (!(await repo.markTriggered(tx, rule.id, quietSince, now))) return [];
      const firing = await repo.insertFiring(tx, {
        id: newId('alf'),
        teamId: rule.teamId,
        ruleId: rule.id,
        ruleName: rule.name,
        conditionType: rule.conditionType,
        agentId: rule.agentId,
        evidence,
        firedAt: now,
      });
      await this.events.record(tx, {
        teamId: rule.teamId,
        type: 'alert.triggered',
        actorKind: 'system',
        actorId: 'alert_evaluator',
        subjectId: rule.id,
        data: {
          rule_id: rule.id,
          rule_name: rule.name,
          condition_type: rule.conditionType,
          agent_id: rule.agentId,
          firing_id: firing.id,
          evidence,
        },
      });
      // Only addresses that are still the team's members' (one may have left since the rule was written).
      const to = await this.ports.memberEmailsAmong(tx, rule.teamId, rule.notifyEmails);
      const ids: string[] = [];
      for (const address of to)
        ids.push(await this.mail.queue(tx, alertMail(this.publicBase, address, firing)));
      return ids;
    });
    for (const mailId of mails) this.mail.dispatch(mailId);
  }
}
