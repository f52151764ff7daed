import { and, desc, eq, sql } from 'drizzle-orm';
import type { AgentId, Id, TeamId } from '../../core/ids.ts';
import type { DbOrTx } from '../../db/client.ts';
import { beforeCursor, rowsLocked } from '../../db/query-parts.ts';
import { memories } from '../../db/schema/index.ts';

export type MemoryId = Id<'mem'>;

/** Every column but the search vector, which only the database reads. */
const columns = {
  id: memories.id,
  teamId: memories.teamId,
  agentId: memories.agentId,
  content: memories.content,
  metadata: memories.metadata,
  taskId: memories.taskId,
  createdBy: memories.createdBy,
  createdAt: memories.createdAt,
  updatedAt: memories.updatedAt,
};

export type MemoryRow = Omit<typeof memories.$inferSelect, 'searchVector'>;
export type MemoryInsert = typeof memories.$inferInsert;
export type MemoryPatch = Partial<Pick<MemoryRow, 'content' | 'metadata' | 'updatedAt'>>;

export async function insertMemory(db: DbOrTx, row: MemoryInsert): Promise<MemoryRow> {
  const [inserted] = await db.insert(memories).values(row).returning(columns);
  return inserted!;
}

export async function findMemory(
  db: DbOrTx,
  teamId: TeamId,
  id: MemoryId,
  lock?: 'update',
): Promise<MemoryRow | undefined> {
  const [row] = await rowsLocked(
    db
      .select(columns)
      .from(memories)
      .where(and(eq(memories.teamId, teamId), eq(memories.id, id))),
    lock,
  );
  return row;
}

/** Newest first; `agentId` narrows to one agent's. */
export async function listMemories(
  db: DbOrTx,
  teamId: TeamId,
  filter: { agentId?: AgentId },
  beforeId: string | undefined,
  limit: number,
): Promise<MemoryRow[]> {
  return db
    .select(columns)
    .from(memories)
    .where(
      and(
        eq(memories.teamId, teamId),
        filter.agentId ? eq(memories.agentId, filter.agentId) : undefined,
        beforeCursor(memories.id, beforeId),
      ),
    )
    .orderBy(desc(memories.id))
    .limit(limit);
}

/** Whether the team holds any memory of the agent (a deleted agent's are still the team's). */
export async function agentHasMemories(db: DbOrTx, teamId: TeamId, agentId: AgentId): Promise<boolean> {
  const [row] = await db
    .select({ id: memories.id })
    .from(memories)
    .where(and(eq(memories.teamId, teamId), eq(memories.agentId, agentId)))
    .limit(1);
  return row !== undefined;
}

export async function updateMemory(
  db: DbOrTx,
  teamId: TeamId,
  id: MemoryId,
  patch: MemoryPatch,
): Promise<MemoryRow | undefined> {
  const [row] = await db
    .update(memories)
    .set(patch)
    .where(and(eq(memories.teamId, teamId), eq(memories.id, id)))
    .returning(columns);
  return row;
}

export async function deleteMemory(db: DbOrTx, teamId: TeamId, id: MemoryId): Promise<MemoryRow | undefined> {
  const [row] = await db
    .delete(memories)
    .where(and(eq(memories.teamId, teamId), eq(memories.id, id)))
    .returning(columns);
  return row;
}

/** Deletes every memory of the agent; answers how many there were. */
export async function deleteAgentMemories(db: DbOrTx, teamId: TeamId, agentId: AgentId): Promise<number> {
  const rows = await db
    .delete(memories)
    .where(and(eq(memories.teamId, teamId), eq(memories.agentId, agentId)))
    .returning({ id: memories.id });
  return rows.length;
}

export interface MemoryHit extends MemoryRow {
  rank: number;
}

/**
 * The agent's memories that hold any word of `query`, best first. The words
 * are parsed as plainto_tsquery does (English: stemmed, stop words dropped),
 * then joined by OR rather than AND, so a memory that holds only some of them
 * is still found; ts_rank scores the matches (more of the words, and more
 * often, rank higher; normalisation 1 divides by the log of the memory's
 * length, so a short memory on the point beats a long one that mentions it).
 * Ties go to the newer memory.
 */
export async function searchMemories(
  db: DbOrTx,
  teamId: TeamId,
  agentId: AgentId,
  query: string,
  limit: number,
): Promise<MemoryHit[]> {
  // Lexemes are quoted in a tsquery's text, so ' & ' occurs only between them.
  const anyWord = sql`replace(plainto_tsquery('english', ${query})::text, ' & ', ' | ')::tsquery`;
  const rank = sql<number>`ts_rank(${memories.searchVector}, ${anyWord}, 1)`.mapWith(Number);
  return db
    .select({ ...columns, rank })
    .from(memories)
    .where(
      and(
        eq(memories.teamId, teamId),
        eq(memories.agentId, agentId),
        sql`${memories.searchVector} @@ ${anyWord}`,
      ),
    )
    .orderBy(desc(rank), desc(memories.id))
    .limit(limit);
}
