import { and, desc, eq, type SQL, sql } from 'drizzle-orm';
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

interface StoredHit {
  id: MemoryId;
  team_id: TeamId;
  agent_id: AgentId;
  content: string;
  metadata: Record<string, unknown>;
  task_id: MemoryRow['taskId'];
  created_by: MemoryRow['createdBy'];
  created_at: string | Date;
  updated_at: string | Date;
  rank: number | string;
}

/**
 * One statement ranks one group of words. The matches are first found by the
 * index as ids alone, one more than are ranked; their count then picks which
 * of the two branches below reads anything (each is gated by a condition the
 * planner evaluates once, before it scans): at most RANKED_AT_MOST matches are
 * ranked exactly; beyond that, the matches among the agent's NEWEST_SEARCHED
 * newest memories, then older matches if these are too few.
 */
async function rankMatches(
  db: DbOrTx,
  teamId: TeamId,
  agentId: AgentId,
  tsquery: SQL,
  limit: number,
  excluded: MemoryId[],
): Promise<MemoryHit[]> {
  const notExcluded =
    excluded.length > 0 ? sql`and not (m.id = any(${`{${excluded.join(',')}}`}::text[]))` : sql``;
  const fields = sql`m.id, m.team_id, m.agent_id, m.content, m.metadata, m.task_id, m.created_by, m.created_at, m.updated_at`;
  // The text query is made once per run (an init plan), not once per row: the statement's
  // plan does not depend on it, so a plan kept for the statement serves every query.
  const q = sql`(select q from query)`;
  const rank = sql`ts_rank(m.search_vector, ${q}, 1)`;
  const matches = sql`m.search_vector @@ ${q}`;
  const result = await db.execute(sql`
    with query as materialized (select ${tsquery} as q),
    found as (
      select m.id from memories m
      where m.team_id = ${teamId} and m.agent_id = ${agentId} and ${matches} ${notExcluded}
      limit ${RANKED_AT_MOST + 1}
    ),
    common as materialized (select count(*) > ${RANKED_AT_MOST} as yes from found),
    ranked as (
      select ${fields}, ${rank} as rank, 0 as part from memories m
      where m.team_id = ${teamId} and m.id in (select id from found) and not (select yes from common)
      order by rank desc, m.id desc limit ${limit}
    ),
    recent as (
      select ${fields}, ${rank} as rank, 1 as part
      from (
        select * from memories where team_id = ${teamId} and agent_id = ${agentId} and (select yes from common)
        order by id desc limit ${NEWEST_SEARCHED}
      ) m
      where ${matches} ${notExcluded}
      order by rank desc, m.id desc limit ${limit}
    ),
    older as (
      select ${fields}, ${rank} as rank, 2 as part from memories m
      where m.team_id = ${teamId} and m.id in (select id from found)
        and (select count(*) from recent) < ${limit} and (select yes from common)
        and m.id not in (select id from recent)
      order by rank desc, m.id desc limit ${limit}
    )
    select * from ranked
    union all select * from recent
    union all select * from older
    order by part, rank desc, id desc
    limit ${limit}`);
  return (result as unknown as { rows: StoredHit[] }).rows.map((r) => ({
    id: r.id,
    teamId: r.team_id,
    agentId: r.agent_id,
    content: r.content,
    metadata: r.metadata,
    taskId: r.task_id,
    createdBy: r.created_by,
    createdAt: new Date(r.created_at),
    updatedAt: new Date(r.updated_at),
    rank: Number(r.rank),
  }));
}
