import { type Static, Type } from 'typebox';
import { WORKSPACE_STATUSES } from '../../db/schema/workspaces.ts';
import { Body, Nullable, NullableTimestamp, Paginated, Timestamp } from '../../http/schemas.ts';
import { PROMPT_MAX_CHARS } from '../tasks/schemas.ts';

const FileId = Type.String({ minLength: 1, maxLength: 100 });
const Content = Type.String({
  minLength: 1,
  maxLength: PROMPT_MAX_CHARS,
  description: `the message, at most ${PROMPT_MAX_CHARS} characters`,
});
const FileIds = Type.Array(FileId, {
  maxItems: 100,
  uniqueItems: true,
  description: 'files of the team written into /workspace before the turn',
});

export const MessageBody = Body({ content: Content, file_ids: Type.Optional(FileIds) });
export type MessageInput = Static<typeof MessageBody>;

/** What a WebSocket client sends: a message (the same fields as POST …/messages) or a cancel of the running turn. */
export const ClientFrame = Type.Union([
  Type.Object(
    { type: Type.Literal('message'), content: Content, file_ids: Type.Optional(FileIds) },
    { additionalProperties: false },
  ),
  Type.Object({ type: Type.Literal('cancel') }, { additionalProperties: false }),
]);
export type ClientFrameType = Static<typeof ClientFrame>;

const ModelName = Type.String({
  minLength: 1,
  maxLength: 200,
  pattern: '^[A-Za-z0-9][A-Za-z0-9._:/@-]*$',
});

export const PatchWorkspaceBody = Body({
  name: Type.Optional(Type.String({ minLength: 1, maxLength: 200 })),
  starred: Type.Optional(Type.Boolean()),
  archived: Type.Optional(Type.Boolean()),
  model_override: Type.Optional(
    Nullable({ ...ModelName, description: 'the model of the next turns (null clears it)' }),
  ),
});
export type PatchWorkspaceInput = Static<typeof PatchWorkspaceBody>;

export const Workspace = Type.Object({
  id: Type.String(),
  team_id: Type.String(),
  agent_id: Type.String(),
  agent_version: Type.Integer({ description: 'pinned when the workspace opened' }),
  name: Nullable(Type.String()),
  status: Type.Enum([...WORKSPACE_STATUSES]),
  capsule_id: Nullable(Type.String()),
  run_id: Type.String({ description: 'the one gateway run of every turn' }),
  current_task_id: Nullable(Type.String({ description: 'the turn running now' })),
  turns: Type.Integer({ description: 'turns ended' }),
  messages: Type.Integer({ description: 'messages in the conversation kept for the next turn' }),
  model_override: Nullable(Type.String()),
  last_run_model: Nullable(Type.String()),
  starred: Type.Boolean(),
  archived: Type.Boolean(),
  idle_timeout_sec: Type.Integer(),
  session_ttl_sec: Type.Integer(),
  last_active_at: Timestamp,
  paused_at: NullableTimestamp,
  ended_at: NullableTimestamp,
  created_by: Nullable(Type.String()),
  created_at: Timestamp,
  updated_at: Timestamp,
});

export const Workspaces = Paginated(Workspace);

export const WorkspaceListQuery = Type.Object(
  {
    limit: Type.Optional(Type.Integer({ minimum: 1, maximum: 200, default: 50 })),
    cursor: Type.Optional(Type.String({ maxLength: 400 })),
    status: Type.Optional(Type.Enum([...WORKSPACE_STATUSES])),
    agent_id: Type.Optional(Type.String({ maxLength: 100 })),
    archived: Type.Optional(Type.Boolean()),
  },
  { additionalProperties: false },
);
export type WorkspaceListQueryType = Static<typeof WorkspaceListQuery>;

export const WorkspaceEvent = Type.Object({
  seq: Type.Integer(),
  type: Type.String(),
  task_id: Nullable(Type.String({ description: 'the turn that wrote it (null: the workspace’s own)' })),
  payload: Type.Record(Type.String(), Type.Unknown()),
  created_at: Timestamp,
});

export const WorkspaceEvents = Type.Object({
  data: Type.Array(WorkspaceEvent),
  next_after_seq: Type.Integer({ description: 'the seq to ask after for the next page' }),
  done: Type.Boolean({ description: 'the workspace has ended and every event is in this page or before' }),
});

export const WorkspaceEventsQuery = Type.Object(
  {
    after_seq: Type.Optional(Type.Integer({ minimum: 0, maximum: 2_147_483_647 })),
    limit: Type.Optional(Type.Integer({ minimum: 1, maximum: 1000, default: 200 })),
  },
  { additionalProperties: false },
);

export const WsQuery = Type.Object(
  { after_seq: Type.Optional(Type.Integer({ minimum: 0, maximum: 2_147_483_647 })) },
  { additionalProperties: false },
);

export const WorkspaceFile = Type.Object({
  path: Type.String({ description: 'relative to /workspace' }),
  type: Type.String({ description: 'file, directory, symlink or other' }),
  size_bytes: Type.Integer(),
});
export const WorkspaceFiles = Type.Object({ data: Type.Array(WorkspaceFile) });

export const WorkspaceFileParams = Type.Object({
  id: Type.String({ minLength: 1, maxLength: 100 }),
  '*': Type.String({ maxLength: 4096 }),
});
