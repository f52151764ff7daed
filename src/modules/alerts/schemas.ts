import { Type } from 'typebox';
import { ALERT_CONDITION_TYPES } from '../../db/schema/alerts.ts';
import { Body, Nullable, NullableTimestamp, PageQuery, Paginated, Timestamp } from '../../http/schemas.ts';

/** Rule windows: a minute to a week (docs/alerts.md). */
export const WINDOW_SECONDS = { min: 60, max: 604_800, default: 3600 } as const;
/** Rungate: cooldown_seconds defaults to 300; at most 30 days here. */
export const COOLDOWN_SECONDS = { min: 0, max: 2_592_000, default: 300 } as const;
export const MAX_NOTIFY_EMAILS = 20;

const Name = Type.String({ minLength: 1, maxLength: 200, description: 'unique in the team' });
const Description = Type.String({ maxLength: 1000 });
const ConditionType = Type.Union(
  ALERT_CONDITION_TYPES.map((t) => Type.Literal(t)),
  { description: 'what the rule measures (docs/alerts.md)' },
);
const ConditionConfig = Type.Record(Type.String({ maxLength: 100 }), Type.Unknown(), {
  description: 'the type’s keys (docs/alerts.md): e.g. {"threshold_usd": 50} for cost_threshold',
});
const AgentId = Type.String({
  minLength: 1,
  maxLength: 100,
  description:
    'only this agent’s calls, tasks and approvals; null: every agent (required for rate_limit_approaching)',
});
const WindowSeconds = Type.Integer({
  minimum: WINDOW_SECONDS.min,
  maximum: WINDOW_SECONDS.max,
  description: `the span measured, ending at each evaluation (default ${WINDOW_SECONDS.default})`,
});
const CooldownSeconds = Type.Integer({
  minimum: COOLDOWN_SECONDS.min,
  maximum: COOLDOWN_SECONDS.max,
  description: `minimum seconds between two firings (default ${COOLDOWN_SECONDS.default})`,
});
const NotifyEmails = Type.Array(Type.String({ minLength: 3, maxLength: 254, format: 'email' }), {
  maxItems: MAX_NOTIFY_EMAILS,
  uniqueItems: true,
  description: 'team members’ e-mail addresses; each gets one e-mail per firing',
});
const Status = Type.Union([Type.Literal('active'), Type.Literal('disabled')]);

export const CreateAlertRuleBody = Body({
  name: Name,
  description: Type.Optional(Nullable(Description)),
  condition_type: ConditionType,
  condition_config: ConditionConfig,
  agent_id: Type.Optional(Nullable(AgentId)),
  window_seconds: Type.Optional(WindowSeconds),
  cooldown_seconds: Type.Optional(CooldownSeconds),
  notify_emails: Type.Optional(NotifyEmails),
  status: Type.Optional(Status),
});

/** PATCH: the fields sent change; a changed condition_type needs its condition_config with it. */
export const UpdateAlertRuleBody = Body({
  name: Type.Optional(Name),
  description: Type.Optional(Nullable(Description)),
  condition_type: Type.Optional(ConditionType),
  condition_config: Type.Optional(ConditionConfig),
  agent_id: Type.Optional(Nullable(AgentId)),
  window_seconds: Type.Optional(WindowSeconds),
  cooldown_seconds: Type.Optional(CooldownSeconds),
  notify_emails: Type.Optional(NotifyEmails),
});

export const AlertRuleListQuery = Type.Object(
  {
    ...PageQuery.properties,
    agent_id: Type.Optional(Type.String({ minLength: 1, maxLength: 100 })),
    condition_type: Type.Optional(ConditionType),
    status: Type.Optional(Status),
  },
  { additionalProperties: false },
);

export const AlertListQuery = Type.Object(
  {
    ...PageQuery.properties,
    rule_id: Type.Optional(Type.String({ minLength: 1, maxLength: 100 })),
  },
  { additionalProperties: false },
);

export const FiringListQuery = PageQuery;

export const AlertRule = Type.Object({
  id: Type.String(),
  team_id: Type.String(),
  name: Type.String(),
  description: Nullable(Type.String()),
  condition_type: Type.String(),
  condition_config: Type.Record(Type.String(), Type.Unknown()),
  agent_id: Nullable(Type.String()),
  window_seconds: Type.Integer(),
  cooldown_seconds: Type.Integer(),
  notify_emails: Type.Array(Type.String()),
  status: Status,
  last_evaluated_at: NullableTimestamp,
  last_triggered_at: NullableTimestamp,
  created_by: Nullable(Type.String()),
  created_at: Timestamp,
  updated_at: Timestamp,
});
export const AlertRules = Paginated(AlertRule);

export const AlertFiring = Type.Object({
  id: Type.String(),
  rule_id: Type.String(),
  rule_name: Type.String(),
  condition_type: Type.String(),
  agent_id: Nullable(Type.String()),
  evidence: Type.Record(Type.String(), Type.Unknown(), {
    description:
      'what was measured: value, threshold, unit, window_start, window_end and the type’s counts (docs/alerts.md)',
  }),
  fired_at: Timestamp,
});
export const AlertFirings = Paginated(AlertFiring);
