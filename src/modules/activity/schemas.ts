import { Type } from 'typebox';
import { ACTIVITY_ACTOR_TYPES } from '../../db/schema/activity.ts';
import { Body, Nullable, PageQuery, Paginated, Timestamp } from '../../http/schemas.ts';

export const MAX_DETAILS_BYTES = 8192;
export const MAX_LINKS = 20;
/** Stats look back a day unless told; at most 90 days at once. */
export const STATS_DEFAULT_WINDOW_MS = 86_400_000;
export const STATS_MAX_WINDOW_MS = 90 * 86_400_000;
export const STATS_TOP = 50;

const ActorType = Type.Enum([...ACTIVITY_ACTOR_TYPES], {
  description: 'user, agent, system (Paddock itself, hosts) or api_key (a team key)',
});
const Word = (description: string) => Type.String({ minLength: 1, maxLength: 100, description });

const Link = Type.Object(
  {
    type: Type.String({
      minLength: 1,
      maxLength: 50,
      description: 'what it points at: a Paddock resource type (task, work_item, run…) or "url"',
    }),
    id: Type.Optional(Type.String({ minLength: 1, maxLength: 200 })),
    url: Type.Optional(Type.String({ minLength: 1, maxLength: 2000, format: 'uri' })),
    title: Type.Optional(Type.String({ minLength: 1, maxLength: 200 })),
  },
  { additionalProperties: false, description: 'a link: an id or a url (or both)' },
);

export const ActivityListQuery = Type.Object(
  {
    ...PageQuery.properties,
    actor_type: Type.Optional(ActorType),
    actor_id: Type.Optional(Word('who: a user, agent or key id, or what Paddock ran (task_runner…)')),
    action: Type.Optional(
      Word('an event type (work_item.created) or an agent’s reported action; a trailing * matches a prefix'),
    ),
    resource_type: Type.Optional(Word('work_item, task, agent…')),
    resource_id: Type.Optional(Word('the resource’s id')),
    source: Type.Optional(
      Type.Union([Type.Literal('event'), Type.Literal('reported')], {
        description: 'event: made from the team’s events; reported: written by an agent',
      }),
    ),
    from: Type.Optional(Type.String({ format: 'date-time', description: 'made at or after' })),
    to: Type.Optional(Type.String({ format: 'date-time', description: 'made at or before' })),
  },
  { additionalProperties: false },
);

export const ReportActivityBody = Body({
  action: Type.String({
    minLength: 1,
    maxLength: 100,
    pattern: '^[A-Za-z0-9_.:-]+$',
    description: 'what the agent did, as a word (deployed, opened_pr, work_item.progress)',
  }),
  summary: Type.String({ minLength: 1, maxLength: 1000, description: 'a readable line about it' }),
  resource_type: Type.Optional(Word('what it acted on, e.g. work_item')),
  resource_id: Type.Optional(Word('its id')),
  links: Type.Optional(Type.Array(Link, { maxItems: MAX_LINKS })),
  details: Type.Optional(
    Type.Record(Type.String({ maxLength: 100 }), Type.Unknown(), {
      description: `anything else worth keeping, at most ${MAX_DETAILS_BYTES} bytes as JSON`,
    }),
  ),
});

export const ActivityStatsQuery = Type.Object(
  {
    from: Type.Optional(Type.String({ format: 'date-time', description: 'default: a day before `to`' })),
    to: Type.Optional(Type.String({ format: 'date-time', description: 'default: now' })),
  },
  { additionalProperties: false },
);

export const ActivityEntry = Type.Object({
  id: Type.String(),
  source: Type.Union([Type.Literal('event'), Type.Literal('reported')]),
  event_id: Type.String(),
  actor_type: Type.String({ description: 'user, agent, system or api_key' }),
  actor_id: Nullable(Type.String()),
  action: Type.String(),
  resource_type: Nullable(Type.String()),
  resource_id: Nullable(Type.String()),
  summary: Type.String(),
  details: Type.Record(Type.String(), Type.Unknown()),
  links: Type.Array(Link),
  created_at: Timestamp,
});
export const ActivityEntries = Paginated(ActivityEntry);

export const ActivityStats = Type.Object({
  from: Timestamp,
  to: Timestamp,
  total: Type.Integer(),
  by_actor: Type.Array(
    Type.Object({ actor_type: Type.String(), actor_id: Nullable(Type.String()), count: Type.Integer() }),
    { description: `the ${STATS_TOP} busiest actors` },
  ),
  by_action: Type.Array(Type.Object({ action: Type.String(), count: Type.Integer() }), {
    description: `the ${STATS_TOP} most frequent actions`,
  }),
});
