import { and, eq, lt, or, sql } from 'drizzle-orm';
import { type AgentId, idFloorAt, type ResponseId, type TeamId } from '../../core/ids.ts';
import type { DbOrTx } from '../../db/client.ts';
import { deleteBatch } from '../../db/delete-batch.ts';
import { type ResponseItem, responses } from '../../db/schema/index.ts';

export type StoredResponseRow = typeof responses.$inferSelect;

export async function insertResponse(db: DbOrTx, row: typeof responses.$inferInsert): Promise<void> {
  await db.insert(responses).values(row);
}

/** A stored response of this agent of this team (another team's or agent's is not found). */
export async function findResponse(
  db: DbOrTx,
  teamId: TeamId,
  agentId: AgentId,
  id: ResponseId,
): Promise<StoredResponseRow | undefined> {
  const [row] = await db
    .select()
    .from(responses)
    .where(and(eq(responses.teamId, teamId), eq(responses.agentId, agentId), eq(responses.id, id)));
  return row;
}

export async function deleteResponse(
  db: DbOrTx,
  teamId: TeamId,
  agentId: AgentId,
  id: ResponseId,
): Promise<boolean> {
  const deleted = await db
    .delete(responses)
    .where(and(eq(responses.teamId, teamId), eq(responses.agentId, agentId), eq(responses.id, id)))
    .returning({ id: responses.id });
  return deleted.length > 0;
}

/**
 * Output items of this agent's stored responses by their ids (what an
 * `item_reference` names), newest response first; ids not found are absent.
 */
export async function findOutputItems(
  db: DbOrTx,
  teamId: TeamId,
  agentId: AgentId,
  ids: readonly string[],
): Promise<Map<string, ResponseItem>> {
  const found = new Map<string, ResponseItem>();
  if (ids.length === 0) return found;
  const rows = await db
    .select({ output: responses.output })
    .from(responses)
    .where(
      and(
        eq(responses.teamId, teamId),
        eq(responses.agentId, agentId),
        or(...ids.map((id) => sql`${responses.output} @> ${JSON.stringify([{ id }])}::jsonb`)),
      ),
    )
    .orderBy(sql`${responses.id} desc`);
  const wanted = new Set(ids);
  for (const row of rows)
    for (const item of row.output)
      if (typeof item.id === 'string' && wanted.has(item.id) && !found.has(item.id)) found.set(item.id, item);
  return found;
}

/**
 * The retention's batch: stored responses made before `cutoff` (by the time
 * in their ids, as they sort), oldest first. Answers how many went.
 */
export async function systemDeleteResponsesBefore(db: DbOrTx, cutoff: Date, batch: number): Promise<number> {
  const old = lt(responses.id, idFloorAt('resp', cutoff.getTime()) as ResponseId);
  return deleteBatch(db, responses, responses.id, old, batch, responses.id);
}
