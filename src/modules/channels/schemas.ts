import { Type } from 'typebox';
import { Body, Nullable, NullableTimestamp, PageQuery, Paginated, Timestamp } from '../../http/schemas.ts';

const Provider = Type.Union(
  [
    Type.Literal('slack'),
    Type.Literal('discord'),
    Type.Literal('teams'),
    Type.Literal('googlechat'),
    Type.Literal('telegram'),
    Type.Literal('matrix'),
    Type.Literal('webhook'),
    Type.Literal('in_app'),
  ],
  { description: 'slack, discord, teams, googlechat, telegram, matrix, webhook or in_app' },
);
const Name = Type.String({
  minLength: 1,
  maxLength: 100,
  pattern: '^[^\\u0000-\\u001f]+$',
  description: 'unique within the team',
});
const Events = Type.Array(Type.String({ minLength: 1, maxLength: 100 }), {
  minItems: 1,
  maxItems: 50,
  uniqueItems: true,
  description: 'event types (task.completed) and prefixes (task.*); a changed list replaces the old one',
});
// Checked per provider by the service (providers.ts), so a bad field is named with its provider.
const Config = Type.Record(Type.String({ maxLength: 100 }), Type.Unknown(), {
  description: 'the provider’s fields (docs/channels.md); sealed, never returned',
});

export const CreateChannelBody = Body({ name: Name, provider: Provider, config: Config, events: Events });
export const UpdateChannelBody = Body({ name: Type.Optional(Name), events: Type.Optional(Events) });
export const ChannelConfigBody = Body({ config: Config });
export const TestChannelBody = Body({ provider: Provider, config: Config });

const channelFields = {
  id: Type.String(),
  team_id: Type.String(),
  name: Type.String(),
  provider: Provider,
  events: Type.Array(Type.String()),
  created_by: Nullable(Type.String()),
  created_at: Timestamp,
  updated_at: Timestamp,
};
export const Channel = Type.Object(channelFields);
export const Channels = Paginated(Channel);
/** Create's and a config change's answer: a webhook channel's signing secret, shown only then. */
export const ChannelWithSecret = Type.Object({
  ...channelFields,
  secret: Type.Optional(Type.String({ description: 'webhook channels: whsec_…, shown only here' })),
});

export const TestResult = Type.Object({ status: Type.Literal('ok') });

export const ChannelDelivery = Type.Object({
  id: Type.String(),
  channel_id: Type.String(),
  event_id: Type.String(),
  event_type: Type.String(),
  status: Type.String({ description: 'pending, succeeded or failed' }),
  attempts: Type.Integer(),
  max_attempts: Type.Integer(),
  last_status_code: Nullable(Type.Integer()),
  last_error: Nullable(Type.String()),
  next_attempt_at: NullableTimestamp,
  completed_at: NullableTimestamp,
  created_at: Timestamp,
});
export const ChannelDeliveries = Paginated(ChannelDelivery);

export const ChannelListQuery = PageQuery;

export const NotificationListQuery = Type.Object(
  {
    ...PageQuery.properties,
    unread: Type.Optional(Type.Boolean({ description: 'true: only the unread ones' })),
  },
  { additionalProperties: false },
);

export const Notification = Type.Object({
  id: Type.String(),
  event_id: Type.String(),
  event_type: Type.String(),
  subject_id: Nullable(Type.String()),
  channel_id: Nullable(Type.String()),
  title: Type.String(),
  message: Type.String(),
  data: Type.Record(Type.String(), Type.Unknown()),
  read: Type.Boolean(),
  read_at: NullableTimestamp,
  created_at: Timestamp,
});
export const Notifications = Paginated(Notification);
export const UnreadCount = Type.Object({ unread: Type.Integer() });
export const MarkedAll = Type.Object({ marked: Type.Integer({ description: 'how many were unread' }) });
