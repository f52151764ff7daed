import type { Static } from 'typebox';
import type { Context } from '../../core/context.ts';
import { BadRequestError, ConflictError, NotFoundError } from '../../core/errors.ts';
import { idOrNotFound, newId, type TeamId } from '../../core/ids.ts';
import { pageOf } from '../../core/pagination.ts';
import type { Db, DbOrTx } from '../../db/client.ts';
import { isUniqueViolation } from '../../db/errors.ts';
import type { AlertConditionType } from '../../db/schema/alerts.ts';
import type { EventsService } from '../events/service.ts';
import { actorOf, managedTeam, type Principal, type Scope } from '../identity/principal.ts';
import { checkConditionConfig } from './conditions.ts';
import * as repo from './repo.ts';
import type * as s from './schemas.ts';
import {
  COOLDOWN_SECONDS,
  type CreateAlertRuleBody,
  type UpdateAlertRuleBody,
  WINDOW_SECONDS,
} from './schemas.ts';
import { firingView, ruleView } from './views.ts';

export type CreateAlertRuleInput = Static<typeof CreateAlertRuleBody>;
export type UpdateAlertRuleInput = Static<typeof UpdateAlertRuleBody>;

/** What alert rules need from other modules: unknown agents, and which addresses are the team's members'. */
export interface AlertPorts {
  unknownAgents(tx: DbOrTx, teamId: TeamId, ids: string[]): Promise<string[]>;
  memberEmailsAmong(tx: DbOrTx, teamId: TeamId, emails: string[]): Promise<string[]>;
}

function ruleId(raw: string): repo.AlertRuleId {
  return idOrNotFound(raw, 'alr', 'alert rule');
}

const nameTaken = (name: string) =>
  new ConflictError(
    'alert_rule_name_taken',
    `the team already has an alert rule named ${JSON.stringify(name)}`,
    {
      name,
    },
  );

/** The fields a PATCH changed, as the API names them. */
const snake = (keys: string[]) => keys.map((k) => k.replace(/[A-Z]/g, (c) => `_${c.toLowerCase()}`));

/**
 * Alert rules (Rungate): a team's conditions on its own records, evaluated
 * by the AlertEvaluator (evaluator.ts). Admins manage them (they e-mail
 * people); every member reads them and their firings.
 */
export class AlertRulesService {
  constructor(
    private readonly db: Db,
    private readonly ctx: Context,
    private readonly events: EventsService,
    private readonly ports: AlertPorts,
  ) {}

  /** Agent keys never read or manage alert rules: 403 agent_key_not_allowed. */
  private team(principal: Principal, need: Scope): TeamId {
    return managedTeam(principal, need, 'alert rules');
  }

  /** The rule as a whole: its agent (required for rate_limit_approaching), known, and its recipients, members. */
  private async checkRule(
    tx: DbOrTx,
    teamId: TeamId,
    rule: { conditionType: AlertConditionType; agentId: string | null },
    agentChanged: boolean,
    notifyEmails: string[] | undefined,
  ): Promise<void> {
    if (rule.conditionType === 'rate_limit_approaching' && rule.agentId === null)
      throw new BadRequestError(
        'agent_required',
        'agent_id is required for rate_limit_approaching (rate limits are counted per agent)',
      );
    if (
      agentChanged &&
      rule.agentId !== null &&
      (await this.ports.unknownAgents(tx, teamId, [rule.agentId])).length > 0
    )
      throw new BadRequestError('unknown_agent', `agent_id ${rule.agentId} is no agent of this team`, {
        agent_id: rule.agentId,
      });
    if (notifyEmails === undefined || notifyEmails.length === 0) return;
    const members = new Set(await this.ports.memberEmailsAmong(tx, teamId, notifyEmails));
    const strangers = notifyEmails.filter((e) => !members.has(e));
    if (strangers.length > 0)
      throw new BadRequestError(
        'not_a_member',
        `notify_emails may name only the team's members: ${strangers.join(', ')} ${strangers.length === 1 ? 'is' : 'are'} not one`,
        { emails: strangers },
      );
  }

  private async found(tx: DbOrTx, teamId: TeamId, id: string): Promise<repo.AlertRuleRow> {
    const row = await repo.findRule(tx, teamId, ruleId(id), 'update');
    if (!row) throw new NotFoundError('alert rule', id);
    return row;
  }

  async create(principal: Principal, input: CreateAlertRuleInput) {
    const teamId = this.team(principal, 'admin');
    const config = checkConditionConfig(input.condition_type, input.condition_config);
    const notifyEmails = (input.notify_emails ?? []).map((e) => e.trim().toLowerCase());
    const agentId = input.agent_id ?? null;
    try {
      const row = await this.db.transaction(async (tx) => {
        await this.checkRule(
          tx,
          teamId,
          { conditionType: input.condition_type, agentId },
          true,
          notifyEmails,
        );
        const now = this.ctx.clock.now();
        const inserted = await repo.insertRule(tx, {
          id: newId('alr'),
          teamId,
          name: input.name,
          description: input.description ?? null,
          conditionType: input.condition_type,
          conditionConfig: config,
          agentId,
          windowSeconds: input.window_seconds ?? WINDOW_SECONDS.default,
          cooldownSeconds: input.cooldown_seconds ?? COOLDOWN_SECONDS.default,
          status: input.status ?? 'active',
          notifyEmails,
          createdBy: actorOf(principal).actorId,
          createdAt: now,
          updatedAt: now,
        });
        await this.events.record(tx, {
          teamId,
          type: 'alert_rule.created',
          ...actorOf(principal),
          subjectId: inserted.id,
          data: { name: inserted.name, condition_type: inserted.conditionType, agent_id: agentId },
        });
        return inserted;
      });
      return ruleView(row);
    } catch (err) {
      if (isUniqueViolation(err)) throw nameTaken(input.name);
      throw err;
    }
  }

  async list(principal: Principal, query: Static<typeof s.AlertRuleListQuery>) {
    const teamId = this.team(principal, 'read');
    const filters = { agentId: query.agent_id, conditionType: query.condition_type, status: query.status };
    return pageOf(query, (cursor, rows) => repo.listRules(this.db, teamId, filters, cursor, rows), ruleView);
  }

  async get(principal: Principal, id: string) {
    const teamId = this.team(principal, 'read');
    const row = await repo.findRule(this.db, teamId, ruleId(id));
    if (!row) throw new NotFoundError('alert rule', id);
    return ruleView(row);
  }

  /** PATCH: the fields sent change; condition_config is replaced, and checked against the (new) type. */
  async update(principal: Principal, id: string, input: UpdateAlertRuleInput) {
    const teamId = this.team(principal, 'admin');
    try {
      const row = await this.db.transaction(async (tx) => {
        const existing = await this.found(tx, teamId, id);
        const patch: repo.AlertRulePatch = {};
        const type = input.condition_type ?? existing.conditionType;
        if (input.condition_type !== undefined || input.condition_config !== undefined) {
          const config = checkConditionConfig(type, input.condition_config ?? existing.conditionConfig);
          if (type !== existing.conditionType) patch.conditionType = type;
          if (JSON.stringify(config) !== JSON.stringify(existing.conditionConfig))
            patch.conditionConfig = config;
        }
        if (input.name !== undefined && input.name !== existing.name) patch.name = input.name;
        if (input.description !== undefined && input.description !== existing.description)
          patch.description = input.description;
        if (input.agent_id !== undefined && input.agent_id !== existing.agentId)
          patch.agentId = input.agent_id;
        if (input.window_seconds !== undefined && input.window_seconds !== existing.windowSeconds)
          patch.windowSeconds = input.window_seconds;
        if (input.cooldown_seconds !== undefined && input.cooldown_seconds !== existing.cooldownSeconds)
          patch.cooldownSeconds = input.cooldown_seconds;
        const emails = input.notify_emails?.map((e) => e.trim().toLowerCase());
        if (emails !== undefined && emails.join() !== existing.notifyEmails.join())
          patch.notifyEmails = emails;
        const changed = snake(Object.keys(patch));
        if (changed.length === 0) return existing;
        await this.checkRule(
          tx,
          teamId,
          { conditionType: type, agentId: patch.agentId !== undefined ? patch.agentId : existing.agentId },
          patch.agentId !== undefined,
          patch.notifyEmails,
        );
        patch.updatedAt = this.ctx.clock.now();
        const updated = (await repo.updateRule(tx, teamId, existing.id, patch))!;
        await this.events.record(tx, {
          teamId,
          type: 'alert_rule.updated',
          ...actorOf(principal),
          subjectId: existing.id,
          data: { name: updated.name, changed_fields: changed, agent_id: updated.agentId },
        });
        return updated;
      });
      return ruleView(row);
    } catch (err) {
      if (isUniqueViolation(err) && input.name !== undefined) throw nameTaken(input.name);
      throw err;
    }
  }

  /** enable / disable: a disabled rule is not evaluated; enabled again, it is evaluated at the next tick. */
  async setStatus(principal: Principal, id: string, status: 'active' | 'disabled') {
    const teamId = this.team(principal, 'admin');
    const row = await this.db.transaction(async (tx) => {
      const existing = await this.found(tx, teamId, id);
      if (existing.status === status) return existing;
      const updated = (await repo.updateRule(tx, teamId, existing.id, {
        status,
        updatedAt: this.ctx.clock.now(),
        // Enabled again: evaluated at the next tick, not an interval after its last evaluation.
        ...(status === 'active' ? { lastEvaluatedAt: null } : {}),
      }))!;
      await this.events.record(tx, {
        teamId,
        type: 'alert_rule.updated',
        ...actorOf(principal),
        subjectId: existing.id,
        data: { name: updated.name, changed_fields: ['status'], agent_id: updated.agentId, status },
      });
      return updated;
    });
    return ruleView(row);
  }

  /** Deletes the rule; its firings stay listed (GET /v1/alerts) with the rule's name. */
  async remove(principal: Principal, id: string): Promise<void> {
    const teamId = this.team(principal, 'admin');
    await this.db.transaction(async (tx) => {
      const existing = await this.found(tx, teamId, id);
      await repo.deleteRule(tx, teamId, existing.id);
      await this.events.record(tx, {
        teamId,
        type: 'alert_rule.deleted',
        ...actorOf(principal),
        subjectId: existing.id,
        data: { name: existing.name, agent_id: existing.agentId },
      });
    });
  }

  async firings(principal: Principal, id: string, query: Static<typeof s.FiringListQuery>) {
    const teamId = this.team(principal, 'read');
    const rule = await repo.findRule(this.db, teamId, ruleId(id));
    if (!rule) throw new NotFoundError('alert rule', id);
    return pageOf(
      query,
      (cursor, rows) => repo.listFirings(this.db, teamId, rule.id, cursor, rows),
      firingView,
    );
  }

  /** The team's firings, newest first; rule_id: one rule's (a deleted rule's too). */
  async alerts(principal: Principal, query: Static<typeof s.AlertListQuery>) {
    const teamId = this.team(principal, 'read');
    const rule = query.rule_id === undefined ? undefined : ruleId(query.rule_id);
    return pageOf(query, (cursor, rows) => repo.listFirings(this.db, teamId, rule, cursor, rows), firingView);
  }
}
