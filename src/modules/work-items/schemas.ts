import { Type } from 'typebox';
import {
  ASSIGNEE_TYPES,
  WORK_ITEM_LINK_TYPES,
  WORK_ITEM_PRIORITIES,
  WORK_ITEM_STATUSES,
  WORK_ITEM_TYPES,
} from '../../db/schema/work-items.ts';
import { Body, Nullable, NullableTimestamp, PageQuery, Paginated, Timestamp } from '../../http/schemas.ts';

export const MAX_LABELS = 20;
export const MAX_LINKS_PER_ITEM = 200;

const literals = <const T extends readonly string[]>(values: T, description: string) =>
  Type.Enum(values as unknown as T[number][], { description });

const Title = Type.String({ minLength: 1, maxLength: 300 });
const Description = Type.String({ maxLength: 20_000 });
const ItemType = literals(WORK_ITEM_TYPES, 'feature, bug, research, ops, infra, content or other (default)');
const Priority = literals(WORK_ITEM_PRIORITIES, 'low, medium (default), high or critical');
const Status = literals(
  WORK_ITEM_STATUSES,
  'todo, in_progress, review, done, blocked or cancelled (docs/work-board.md)',
);
const Resolution = Type.String({
  maxLength: 2000,
  description: 'how it ended (Orkosi), e.g. with a move to done',
});
const Assignee = Type.Object(
  {
    type: literals(ASSIGNEE_TYPES, 'user: a member of the team; agent: one of its agents'),
    id: Type.String({ minLength: 1, maxLength: 100 }),
  },
  { additionalProperties: false },
);
const Labels = Type.Array(Type.String({ minLength: 1, maxLength: 50, pattern: '^[^,\\s][^,]*$' }), {
  maxItems: MAX_LABELS,
  uniqueItems: true,
  description: `at most ${MAX_LABELS}, no commas`,
});
const DueDate = Type.String({ format: 'date-time', description: 'when it is due (ISO 8601)' });

/** Every field but the title, optional on create and on PATCH alike. */
const OptionalFields = {
  description: Type.Optional(Nullable(Description)),
  type: Type.Optional(ItemType),
  priority: Type.Optional(Priority),
  status: Type.Optional(Status),
  resolution: Type.Optional(Nullable(Resolution)),
  assignee: Type.Optional(Nullable(Assignee)),
  labels: Type.Optional(Labels),
  due_date: Type.Optional(Nullable(DueDate)),
};

export const CreateWorkItemBody = Body({ title: Title, ...OptionalFields });

/** PATCH: the fields sent change; a status moves by the transitions table, as POST …/transition. */
export const UpdateWorkItemBody = Body({ title: Type.Optional(Title), ...OptionalFields });

export const TransitionBody = Body({
  status: Status,
  resolution: Type.Optional(Nullable(Resolution)),
});

const STATUS_LIST = `^(${WORK_ITEM_STATUSES.join('|')})(,(${WORK_ITEM_STATUSES.join('|')}))*$`;

export const WorkItemListQuery = Type.Object(
  {
    ...PageQuery.properties,
    status: Type.Optional(
      Type.String({
        pattern: STATUS_LIST,
        maxLength: 200,
        description: 'one status or several, comma-separated',
      }),
    ),
    priority: Type.Optional(Priority),
    type: Type.Optional(ItemType),
    assignee: Type.Optional(
      Type.String({
        minLength: 1,
        maxLength: 100,
        description:
          'me (the caller: a user, or an agent key’s agent), none, a user id (usr_…) or an agent id (agt_…)',
      }),
    ),
    label: Type.Optional(
      Type.String({ minLength: 1, maxLength: 50, description: 'items carrying this label' }),
    ),
    next: Type.Optional(
      Type.Boolean({
        description:
          'true: only the assignee’s (default: me) highest-priority todo item, at most one (then by due date, then oldest)',
      }),
    ),
    archived: Type.Optional(
      Type.Union([Type.Literal('exclude'), Type.Literal('include'), Type.Literal('only')], {
        description: 'archived items: left out (default), listed too, or listed alone',
      }),
    ),
  },
  { additionalProperties: false },
);

export const WorkItem = Type.Object({
  id: Type.String(),
  team_id: Type.String(),
  title: Type.String(),
  description: Nullable(Type.String()),
  type: Type.String(),
  priority: Type.String(),
  status: Type.String(),
  resolution: Nullable(Type.String()),
  assignee: Nullable(Type.Object({ type: Type.String(), id: Type.String() })),
  labels: Type.Array(Type.String()),
  due_date: NullableTimestamp,
  created_by: Nullable(Type.String({ description: 'user:usr_…, agent:agt_… or api_key:key_…' })),
  archived: Type.Boolean(),
  archived_at: NullableTimestamp,
  created_at: Timestamp,
  updated_at: Timestamp,
});
export const WorkItems = Paginated(WorkItem);

export const CommentBody = Body({ body: Type.String({ minLength: 1, maxLength: 10_000 }) });
export const CommentListQuery = PageQuery;
export const Comment = Type.Object({
  id: Type.String(),
  work_item_id: Type.String(),
  author_type: Type.String({ description: 'user, agent or api_key' }),
  author_id: Nullable(Type.String()),
  body: Type.String(),
  created_at: Timestamp,
});
export const Comments = Paginated(Comment);
export const CommentParams = Type.Object({
  id: Type.String({ minLength: 1, maxLength: 100 }),
  comment_id: Type.String({ minLength: 1, maxLength: 100 }),
});

export const LinkBody = Body({
  type: literals(WORK_ITEM_LINK_TYPES, 'task or playbook_run'),
  id: Type.String({
    minLength: 1,
    maxLength: 100,
    description: 'a task (task_…) or playbook run (pbr_…) of the team',
  }),
});
export const Link = Type.Object({
  id: Type.String(),
  work_item_id: Type.String(),
  type: Type.String(),
  target_id: Type.String(),
  created_by: Nullable(Type.String()),
  created_at: Timestamp,
});
export const Links = Type.Object({ data: Type.Array(Link) });
export const LinkParams = Type.Object({
  id: Type.String({ minLength: 1, maxLength: 100 }),
  link_id: Type.String({ minLength: 1, maxLength: 100 }),
});
