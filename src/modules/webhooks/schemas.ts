import { Type } from 'typebox';
import { Body, Nullable, NullableTimestamp, PageQuery, Paginated, Timestamp } from '../../http/schemas.ts';

const Url = Type.String({
  minLength: 1,
  maxLength: 2000,
  description:
    'where deliveries are POSTed: https, or http for a host on the platform admin’s allow-list; no user:password@',
});
const EventTypes = Type.Array(Type.String({ minLength: 1, maxLength: 100 }), {
  minItems: 1,
  maxItems: 50,
  uniqueItems: true,
  description: 'event types (task.completed) and prefixes (task.*); a changed list replaces the old one',
});
const AgentId = Type.String({
  minLength: 1,
  maxLength: 100,
  description: 'only events about this agent (its own, and its tasks’ and runs’)',
});
const Description = Type.String({ maxLength: 1000 });

export const CreateWebhookBody = Body({
  url: Url,
  event_types: EventTypes,
  agent_id: Type.Optional(Nullable(AgentId)),
  description: Type.Optional(Nullable(Description)),
});

export const UpdateWebhookBody = Body({
  url: Type.Optional(Url),
  event_types: Type.Optional(EventTypes),
  agent_id: Type.Optional(Nullable(AgentId)),
  description: Type.Optional(Nullable(Description)),
});

export const WebhookListQuery = PageQuery;

const webhookFields = {
  id: Type.String(),
  team_id: Type.String(),
  url: Type.String(),
  event_types: Type.Array(Type.String()),
  agent_id: Nullable(Type.String()),
  description: Nullable(Type.String()),
  status: Type.Union([Type.Literal('active'), Type.Literal('paused'), Type.Literal('failing')]),
  failure_count: Type.Integer({ description: 'deliveries that ended failed in a row' }),
  previous_secret_expires_at: Nullable(
    Type.String({
      format: 'date-time',
      description: 'while set, deliveries are signed with the previous secret too',
    }),
  ),
  created_by: Nullable(Type.String()),
  created_at: Timestamp,
  updated_at: Timestamp,
};

export const Webhook = Type.Object(webhookFields);
export const Webhooks = Paginated(Webhook);

/** Create's answer: the only time the secret is shown. */
export const CreatedWebhook = Type.Object({
  ...webhookFields,
  secret: Type.String({ description: 'whsec_…: shown once; Paddock never returns it again' }),
});

export const RotatedSecret = Type.Object({
  id: Type.String(),
  secret: Type.String({ description: 'the new secret (whsec_…): shown once' }),
  previous_secret_expires_at: Timestamp,
});

export const Attempt = Type.Object({
  id: Type.String(),
  delivery_id: Type.String(),
  event_id: Type.String(),
  event_type: Type.String(),
  attempt: Type.Integer({ description: '1 for the first' }),
  status_code: Nullable(Type.Integer()),
  duration_ms: Type.Integer(),
  error: Nullable(Type.String()),
  response_body: Nullable(Type.String({ description: 'the first 4 KB of the answer' })),
  next_attempt_at: NullableTimestamp,
  delivery_status: Type.String({ description: 'pending, succeeded or failed: the delivery’s state now' }),
  created_at: Timestamp,
});
export const Attempts = Paginated(Attempt);

export const Delivery = Type.Object({
  id: Type.String(),
  webhook_id: Type.String(),
  event_id: Type.String(),
  event_type: Type.String(),
  status: Type.String(),
  attempts: Type.Integer(),
  max_attempts: Type.Integer(),
  next_attempt_at: NullableTimestamp,
});

export const DeliveryParams = Type.Object({
  id: Type.String({ minLength: 1, maxLength: 100 }),
  delivery_id: Type.String({ minLength: 1, maxLength: 100 }),
});
