import { Type } from 'typebox';
import { Nullable, Paginated, Timestamp } from '../../http/schemas.ts';

export const Event = Type.Object(
  {
    id: Type.String({ description: 'evt_…; ids order by when the event was made' }),
    type: Type.String({ description: 'noun.verb, e.g. task.completed' }),
    actor_kind: Type.String({ description: 'who caused it: user, api_key, agent, host, system' }),
    actor_id: Nullable(Type.String()),
    subject_id: Nullable(Type.String({ description: 'the resource it is about' })),
    data: Type.Record(Type.String(), Type.Unknown(), { description: 'the type’s payload (never a secret)' }),
    created_at: Timestamp,
  },
  { $id: 'Event' },
);

export const Events = Paginated(Event);

export const EventTypes = Type.Object(
  {
    data: Type.Array(Type.String(), {
      description: 'every type (noun.verb), sorted; a subscription may also name a noun.* prefix',
    }),
  },
  { $id: 'EventTypes' },
);

export const EventListQuery = Type.Object(
  {
    limit: Type.Optional(Type.Integer({ minimum: 1, maximum: 200, default: 50 })),
    cursor: Type.Optional(Type.String({ maxLength: 400 })),
    type: Type.Optional(
      Type.String({
        maxLength: 2000,
        description: 'comma-separated types (task.completed) or prefixes (task.*)',
      }),
    ),
    subject_id: Type.Optional(Type.String({ maxLength: 100, description: 'one resource’s events' })),
    after: Type.Optional(
      Type.String({
        maxLength: 100,
        description: 'an event id: the events after it, oldest first (a stream: Last-Event-ID wins)',
      }),
    ),
  },
  { additionalProperties: false },
);
