import { type Static, Type } from 'typebox';
import { Body, ListQuery, Nullable, Paginated, Timestamp } from '../../http/schemas.ts';

/** What a memory may hold: Issue 13's bound, for the API and memory_save alike. */
export const MAX_CONTENT_CHARS = 10_000;
/** metadata, as JSON text: a label or two, not a second content. */
export const MAX_METADATA_BYTES = 16_384;
export const DEFAULT_SEARCH_LIMIT = 10;
export const MAX_SEARCH_LIMIT = 50;
/** A search's words: Postgres parses at most this much of a query. */
export const MAX_QUERY_CHARS = 1_000;

const AgentIdField = Type.String({ minLength: 1, maxLength: 100, description: 'an agent of the team' });

export const MemoryContent = Type.String({
  minLength: 1,
  maxLength: MAX_CONTENT_CHARS,
  pattern: '\\S',
  description: `the text to remember (1 to ${MAX_CONTENT_CHARS} characters, not only whitespace)`,
});

export const MemoryMetadata = Type.Record(Type.String({ maxLength: 100 }), Type.Unknown(), {
  maxProperties: 50,
  description: `free-form labels for the caller (at most 50 keys and ${MAX_METADATA_BYTES} bytes as JSON); not searched`,
});

export const CreateMemoryBody = Body({
  agent_id: AgentIdField,
  content: MemoryContent,
  metadata: Type.Optional(MemoryMetadata),
});
export type CreateMemoryInput = Static<typeof CreateMemoryBody>;

export const UpdateMemoryBody = Body({
  content: Type.Optional(MemoryContent),
  metadata: Type.Optional(MemoryMetadata),
});
export type UpdateMemoryInput = Static<typeof UpdateMemoryBody>;

export const MemoryListQuery = ListQuery({
  agent_id: Type.Optional(AgentIdField),
});
export type MemoryListInput = Static<typeof MemoryListQuery>;

export const DeleteMemoriesQuery = Type.Object(
  {
    agent_id: Type.String({
      minLength: 1,
      maxLength: 100,
      description: 'the agent whose memories to delete (required)',
    }),
  },
  { additionalProperties: false },
);

export const MemorySearchQuery = Type.Object(
  {
    agent_id: AgentIdField,
    q: Type.String({
      minLength: 1,
      maxLength: MAX_QUERY_CHARS,
      description:
        'words to look for (memories holding all of them first, then those holding some; English stemming, stop words ignored)',
    }),
    limit: Type.Optional(
      Type.Integer({ minimum: 1, maximum: MAX_SEARCH_LIMIT, default: DEFAULT_SEARCH_LIMIT }),
    ),
  },
  { additionalProperties: false },
);
export type MemorySearchInput = Static<typeof MemorySearchQuery>;

export const Memory = Type.Object({
  id: Type.String(),
  team_id: Type.String(),
  agent_id: Type.String(),
  content: Type.String(),
  metadata: Type.Record(Type.String(), Type.Unknown()),
  task_id: Nullable(Type.String({ description: 'the task whose model saved it (memory_save)' })),
  created_at: Timestamp,
  updated_at: Timestamp,
});

export const Memories = Paginated(Memory);

export const MemoryHit = Type.Object({
  ...Memory.properties,
  score: Type.Number({ description: 'ts_rank of the match: higher is closer; compare within one search' }),
});

export const MemorySearchResult = Type.Object({ data: Type.Array(MemoryHit) });

export const MemoriesDeleted = Type.Object({
  agent_id: Type.String(),
  deleted: Type.Integer({ description: 'how many memories were deleted' }),
});
