import { and, type Column, desc, eq, notInArray, type SQL, type SQLWrapper, sql } from 'drizzle-orm';
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

/** At most this many memories holding a query's words are ranked, all of them exactly… */
export const RANKED_AT_MOST = 500;
/** …beyond that the words are common, and the matches among this many of the agent's newest memories are ranked. */
export const NEWEST_SEARCHED = 2_000;

/**
 * The agent's memories that hold the words of `query`, best first. The words
 * are parsed as plainto_tsquery does (English: stemmed, stop words dropped).
 * Memories that hold every word come first; when they are fewer than
 * `limit`, memories that hold only some of the words follow. Within each,
 * ts_rank scores the matches (more of the words, and more often, rank
 * higher; normalisation 1 divides by the log of the memory's length, so a
 * short memory on the point beats a long one that mentions it), ties going
 * to the newer memory.
 *
 * The cost of ranking grows with the number of matches, so it is bounded: a
 * search ranks at most RANKED_AT_MOST matches. When more memories than that
 * hold the words (words too common to tell memories apart), it ranks those
 * among the agent's NEWEST_SEARCHED newest memories instead, then fills up
 * from older matches if these are too few.
 */
export async function searchMemories(
  db: DbOrTx,
  teamId: TeamId,
  agentId: AgentId,
  query: string,
  limit: number,
): Promise<MemoryHit[]> {
  const allWords = sql`plainto_tsquery('english', ${query})`;
  const hits = await rankMatches(db, teamId, agentId, allWords, limit, []);
  // One word (or none): the memories holding any of the words are those already ranked.
  if (hits.length >= limit || (query.match(/[\p{L}\p{N}]+/gu)?.length ?? 0) < 2) return hits;
  // Lexemes are quoted in a tsquery's text, so ' & ' occurs only between them.
  const anyWord = sql`replace(${allWords}::text, ' & ', ' | ')::tsquery`;
  const more = await rankMatches(
    db,
    teamId,
    agentId,
    anyWord,
    limit - hits.length,
    hits.map((h) => h.id),
  );
  return [...hits, ...more];
}

async function rankMatches(
  db: DbOrTx,
  teamId: TeamId,
  agentId: AgentId,
  tsquery: SQL,
  limit: number,
  excluded: MemoryId[],
): Promise<MemoryHit[]> {
  // The same match and rank, on the table's columns or the newest memories' subquery.
  const rankOf = (vector: SQLWrapper) => sql<number>`ts_rank(${vector}, ${tsquery}, 1)`.mapWith(Number);
  const matchOf = (vector: SQLWrapper, id: Column) =>
    and(sql`${vector} @@ ${tsquery}`, excluded.length > 0 ? notInArray(id, excluded) : undefined);
  const ofAgent = and(eq(memories.teamId, teamId), eq(memories.agentId, agentId));
  // The matches as the index finds them, one more than are ranked (so a search knows whether it saw
  // them all), ranked in the database: only the best `limit` of them leave it.
  const found = db.$with('found').as(
    db
      .select({ ...columns, rank: rankOf(memories.searchVector).as('rank') })
      .from(memories)
      .where(and(ofAgent, matchOf(memories.searchVector, memories.id)))
      .limit(RANKED_AT_MOST + 1),
  );
  const counted = await db
    .with(found)
    .select({
      ...found._.selectedFields,
      matched: sql<number>`(select count(*) from ${found})`.mapWith(Number),
    })
    .from(found)
    .orderBy(desc(found.rank), desc(found.id))
    .limit(limit);
  const ranked = counted.map(({ matched: _, ...hit }) => hit);
  if ((counted[0]?.matched ?? 0) <= RANKED_AT_MOST) return ranked;
  // The newest memories first, then the matches among them: the index on (team, agent, id) reads
  // them in order, and the subquery's LIMIT keeps the planner from ranking every match instead.
  const newest = db
    .select({ ...columns, searchVector: memories.searchVector })
    .from(memories)
    .where(ofAgent)
    .orderBy(desc(memories.id))
    .limit(NEWEST_SEARCHED)
    .as('newest');
  const { searchVector: _, ...newestColumns } = newest._.selectedFields;
  const recentRank = rankOf(newest.searchVector);
  const recent = await db
    .select({ ...newestColumns, rank: recentRank })
    .from(newest)
    .where(matchOf(newest.searchVector, newest.id))
    .orderBy(desc(recentRank), desc(newest.id))
    .limit(limit);
  if (recent.length >= limit) return recent;
  const taken = new Set(recent.map((h) => h.id));
  const older = ranked.filter((h) => !taken.has(h.id));
  return [...recent, ...older].slice(0, limit);
}
