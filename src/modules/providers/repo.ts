import { and, eq, inArray, isNotNull, ne, sql } from 'drizzle-orm';
import type { ProviderKeyId, TeamId } from '../../core/ids.ts';
import type { DbOrTx } from '../../db/client.ts';
import { insertOne } from '../../db/one-row.ts';
import { rowsLocked } from '../../db/query-parts.ts';
import { providerKeys } from '../../db/schema/index.ts';
import { findInTeam, pageInTeam, updateInTeam } from '../../db/team-rows.ts';

export type ProviderKeyRow = typeof providerKeys.$inferSelect;
export type ProviderKeyPatch = Partial<Omit<ProviderKeyRow, 'id' | 'teamId' | 'createdAt'>>;
export type ProviderName = ProviderKeyRow['provider'];
export type KeyStatus = ProviderKeyRow['status'];

export { isUniqueViolation } from '../../db/errors.ts';

export function insertKey(db: DbOrTx, row: typeof providerKeys.$inferInsert): Promise<ProviderKeyRow> {
  return insertOne(db, providerKeys, row);
}

/** A key of the team in any status (deleted ones are tombstones, still readable). */
export function findKey(db: DbOrTx, teamId: TeamId, id: ProviderKeyId, lock?: 'update' | 'share') {
  return findInTeam(db, providerKeys, teamId, id, lock);
}

/** The team's key of this name that is not deleted (deleted ones free their name). */
export async function findLiveKeyByName(
  db: DbOrTx,
  teamId: TeamId,
  name: string,
  lock?: 'update',
): Promise<ProviderKeyRow | undefined> {
  const q = db
    .select()
    .from(providerKeys)
    .where(
      and(eq(providerKeys.teamId, teamId), eq(providerKeys.name, name), ne(providerKeys.status, 'deleted')),
    );
  const [row] = await rowsLocked(q, lock);
  return row;
}

export async function listKeys(
  db: DbOrTx,
  teamId: TeamId,
  filter: { provider?: ProviderName; status?: KeyStatus },
  beforeId: string | undefined,
  limit: number,
) {
  return pageInTeam(
    db,
    providerKeys,
    teamId,
    beforeId,
    limit,
    filter.status ? eq(providerKeys.status, filter.status) : ne(providerKeys.status, 'deleted'),
    filter.provider ? eq(providerKeys.provider, filter.provider) : undefined,
  );
}

/** The team's keys that are not deleted (for the health view). */
export async function liveKeys(db: DbOrTx, teamId: TeamId) {
  return db
    .select({ id: providerKeys.id, name: providerKeys.name, provider: providerKeys.provider })
    .from(providerKeys)
    .where(and(eq(providerKeys.teamId, teamId), ne(providerKeys.status, 'deleted')))
    .orderBy(providerKeys.id);
}

export function updateKey(db: DbOrTx, teamId: TeamId, id: ProviderKeyId, patch: ProviderKeyPatch) {
  return updateInTeam(db, providerKeys, teamId, id, patch);
}

/** What the proxy needs of the team's active keys among `ids`: one indexed read. */
export async function activeKeysForCall(db: DbOrTx, teamId: TeamId, ids: ProviderKeyId[]) {
  if (ids.length === 0) return [];
  return db
    .select({
      id: providerKeys.id,
      provider: providerKeys.provider,
      baseUrl: providerKeys.baseUrl,
      sealedKey: providerKeys.sealedKey,
      priceOverrides: providerKeys.priceOverrides,
      updatedAt: providerKeys.updatedAt,
    })
    .from(providerKeys)
    .where(
      and(
        eq(providerKeys.teamId, teamId),
        ids.length === 1 ? eq(providerKeys.id, ids[0]!) : inArray(providerKeys.id, ids),
        eq(providerKeys.status, 'active'),
        isNotNull(providerKeys.sealedKey),
      ),
    );
}

/**
 * System-only (by id alone): the id is of a key the proxy opened for its own
 * team a moment ago, never one from a request. Moves last_used_at forward only
 * (calls finish out of order), and leaves updated_at alone: it versions the
 * cached secret.
 */
export async function systemTouchLastUsed(db: DbOrTx, id: ProviderKeyId, at: Date): Promise<void> {
  await db
    .update(providerKeys)
    .set({ lastUsedAt: at })
    .where(
      and(
        eq(providerKeys.id, id),
        sql`(${providerKeys.lastUsedAt} is null or ${providerKeys.lastUsedAt} < ${at})`,
      ),
    );
}
