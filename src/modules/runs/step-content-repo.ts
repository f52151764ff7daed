import { sql } from 'drizzle-orm';
import type { DbOrTx } from '../../db/client.ts';

// The step content retention's one statement (step-content-retention.ts).

/**
 * Clears the request and response of the next `batch` steps in id order
 * after `afterId` and below `floorId` (ids sort by the time they were made,
 * so the primary key walks them in time order). Answers how many steps it
 * passed over and the last one's id, for the next batch to start after.
 */
export async function systemClearStepContent(
  db: DbOrTx,
  floorId: string,
  afterId: string,
  batch: number,
): Promise<{ passed: number; lastId: string | undefined }> {
  const result = await db.execute(sql`
    with passed as (
      select id from steps where id > ${afterId} and id < ${floorId} order by id limit ${batch}
    ), cleared as (
      -- Runs whether or not the select below reads it (a data-modifying CTE always does).
      update steps s set request = null, response = null
      from passed p
      where s.id = p.id and (s.request is not null or s.response is not null)
    )
    select (select count(*)::int from passed) as passed, (select max(id) from passed) as last_id`);
  const row = (result as unknown as { rows: Array<{ passed: number | string; last_id: string | null }> })
    .rows[0];
  return { passed: Number(row?.passed ?? 0), lastId: row?.last_id ?? undefined };
}
