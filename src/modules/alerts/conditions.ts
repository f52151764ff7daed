import { type Static, type TSchema, Type } from 'typebox';
import { Value } from 'typebox/value';
import { ValidationError } from '../../core/errors.ts';
import type { AlertConditionType } from '../../db/schema/alerts.ts';

// Each condition type's condition_config: its keys, ranges and units (docs/alerts.md).

const Pct = (description: string) => Type.Number({ exclusiveMinimum: 0, maximum: 100, description });
const MinCount = (what: string) =>
  Type.Integer({
    minimum: 1,
    maximum: 1_000_000,
    description: `the rule fires only when the window holds at least this many ${what} (default 10)`,
  });
const config = <T extends Record<string, TSchema>>(properties: T) =>
  Type.Object(properties, { additionalProperties: false });

export const CONDITION_CONFIGS = {
  cost_threshold: config({
    threshold_usd: Type.Number({
      exclusiveMinimum: 0,
      maximum: 1_000_000,
      description: 'fires when the cost charged in the window reaches this (USD)',
    }),
  }),
  error_rate: config({
    threshold_pct: Pct(
      'fires when this percentage of model calls in the window ended in an error or a timeout',
    ),
    min_requests: Type.Optional(MinCount('model calls')),
  }),
  rate_limit_approaching: config({
    threshold_pct: Pct(
      'fires when a minute of the window used this percentage of the agent’s policy rate limit (requests or tokens per minute)',
    ),
  }),
  approval_pending_timeout: config({
    timeout_seconds: Type.Integer({
      minimum: 1,
      maximum: 604_800,
      description: 'fires when an approval has been pending longer than this',
    }),
  }),
  failover_rate: config({
    threshold_pct: Pct(
      'fires when this percentage of model calls in the window failed over to another provider',
    ),
    min_requests: Type.Optional(MinCount('model calls')),
  }),
  task_failure_rate: config({
    threshold_pct: Pct('fires when this percentage of the tasks that ended in the window failed'),
    min_tasks: Type.Optional(MinCount('ended tasks')),
  }),
} satisfies Record<AlertConditionType, TSchema>;

export type ConditionConfig<T extends AlertConditionType> = Static<(typeof CONDITION_CONFIGS)[T]>;

/** min_requests and min_tasks when the rule leaves them out. */
export const DEFAULT_MIN_COUNT = 10;

/** The config checked against its type's schema: a 400 naming each bad key (condition_config.<key>). */
export function checkConditionConfig(type: AlertConditionType, value: unknown): Record<string, number> {
  const schema = CONDITION_CONFIGS[type];
  const fields: Record<string, string> = {};
  for (const e of Value.Errors(schema, value)) {
    if (e.keyword === 'boolean') continue; // the additionalProperties error below names the key
    const params = e.params as Record<string, unknown>;
    const key = e.instancePath.replace(/^\//, '').replaceAll('/', '.');
    if (e.keyword === 'additionalProperties') {
      for (const extra of (params.additionalProperties as string[] | undefined) ?? [])
        fields[`condition_config.${extra}`] ??= `is not a key of ${type} (see docs/alerts.md)`;
    } else if (e.keyword === 'required') {
      for (const missing of (params.requiredProperties as string[] | undefined) ?? [])
        fields[`condition_config.${missing}`] ??= `is required for ${type}`;
    } else {
      fields[key ? `condition_config.${key}` : 'condition_config'] ??= e.message;
    }
  }
  if (Object.keys(fields).length > 0) {
    const summary = Object.entries(fields)
      .map(([f, m]) => `${f} ${m}`)
      .join('; ');
    throw new ValidationError(`the alert rule is invalid: ${summary}`, fields);
  }
  return value as Record<string, number>;
}
