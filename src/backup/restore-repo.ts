import { sql } from 'drizzle-orm';
import type { Db } from '../db/client.ts';

/**
 * Templates' rows name their trees by absolute path: a data dir restored
 * elsewhere moves every path under `from` (the old sandbox dir's templates
 * folder, with its trailing slash) to the same place under `to`.
 */
export async function moveTemplatePaths(db: Db, from: string, to: string): Promise<void> {
  await db.execute(
    sql`update templates set path = ${to} || substr(path, length(${from}) + 1) where left(path, length(${from})) = ${from}`,
  );
}
