import { and, desc, eq, isNull, or, sql } from 'drizzle-orm';
import type { TeamId } from '../../core/ids.ts';
import { type Db, type DbOrTx, rawQuery } from '../../db/client.ts';
import { UNWATCHED_WRITE } from '../../db/pglite-remote.ts';
import { preparedPerDb } from '../../db/prepared.ts';
import { beforeCursor, liveInTeam } from '../../db/query-parts.ts';
import { cachedReads } from '../../db/read-cache.ts';
import { apiKeys, apiKeyUsage, teams, users } from '../../db/schema/index.ts';
import { updateOne } from '../../db/update-one.ts';

export type ApiKeyRow = typeof apiKeys.$inferSelect;

export async function insertApiKey(db: DbOrTx, row: typeof apiKeys.$inferInsert): Promise<ApiKeyRow> {
  const [inserted] = await db.insert(apiKeys).values(row).returning();
  return inserted!;
}

const apiKeyByHash = preparedPerDb((db) =>
  db
    .select({ key: apiKeys, creatorDeactivatedAt: users.deactivatedAt })
    .from(apiKeys)
    .innerJoin(teams, eq(teams.id, apiKeys.teamId))
    // created_by is a user id, `api_key:<id>` or null: only a user's row joins.
    .leftJoin(users, eq(users.id, apiKeys.createdBy))
    .where(
      and(
        or(
          eq(apiKeys.keyHash, sql.placeholder('hash')),
          eq(apiKeys.previousKeyHash, sql.placeholder('hash')),
        ),
        isNull(apiKeys.deletedAt),
        isNull(teams.deletedAt),
      ),
    )
    .limit(1)
    .prepare('identity_api_key_by_hash'),
);

type KeyFound = { key: ApiKeyRow; creatorDeactivatedAt: Date | null };

/** On the embedded database, read again only once a table the lookup reads has changed (read-cache.ts). */
const keyLookups = cachedReads<string, KeyFound>(['api_keys', 'teams', 'users']);

/**
 * A key, not deleted, of a live team, whose current or previous secret hashes
 * to `hash`, and when the user who created it was deactivated (each request
 * with a key reads it).
 */
export async function findApiKeyByHash(db: Db, hash: string): Promise<KeyFound | undefined> {
  return keyLookups(db, hash, async () => (await apiKeyByHash(db).execute({ hash }))[0]);
}

export async function findApiKey(db: DbOrTx, teamId: TeamId, id: string): Promise<ApiKeyRow | undefined> {
  const [row] = await db
    .select()
    .from(apiKeys)
    .where(liveInTeam(apiKeys, teamId, eq(apiKeys.id, id)));
  return row;
}

export async function listApiKeys(db: DbOrTx, teamId: TeamId, beforeId: string | undefined, limit: number) {
  return db
    .select()
    .from(apiKeys)
    .where(liveInTeam(apiKeys, teamId, beforeCursor(apiKeys.id, beforeId)))
    .orderBy(desc(apiKeys.id))
    .limit(limit);
}

export async function updateApiKey(
  db: DbOrTx,
  teamId: TeamId,
  id: string,
  patch: Partial<Omit<ApiKeyRow, 'id' | 'teamId' | 'createdAt'>>,
): Promise<ApiKeyRow | undefined> {
  return updateOne(db, apiKeys, liveInTeam(apiKeys, teamId, eq(apiKeys.id, id)), patch);
}

export async function insertUsage(db: DbOrTx, row: typeof apiKeyUsage.$inferInsert): Promise<void> {
  await db.insert(apiKeyUsage).values(row);
}

/**
 * Moves last_used_at forward only (concurrent requests may finish out of
 * order). Authentication reads nothing it changes, so it leaves the cached
 * key lookups standing: each request with a key makes it.
 */
export async function touchLastUsed(db: Db, id: string, at: Date): Promise<void> {
  await rawQuery(
    db,
    `${UNWATCHED_WRITE}update api_keys set last_used_at = $2 where id = $1 and (last_used_at is null or last_used_at < $2)`,
    [id, at.toISOString()],
  );
}

export async function listUsage(
  db: DbOrTx,
  teamId: TeamId,
  keyId: string,
  beforeId: string | undefined,
  limit: number,
) {
  return db
    .select()
    .from(apiKeyUsage)
    .where(
      and(
        eq(apiKeyUsage.teamId, teamId),
        eq(apiKeyUsage.apiKeyId, keyId),
        beforeCursor(apiKeyUsage.id, beforeId),
      ),
    )
    .orderBy(desc(apiKeyUsage.id))
    .limit(limit);
}

/** Revokes, in every team, the live keys the user created (an erasure); answers which. */
export function revokeKeysCreatedBy(db: DbOrTx, userId: string, at: Date) {
  return db
    .update(apiKeys)
    .set({ revokedAt: at, previousKeyHash: null, previousKeyExpiresAt: null, updatedAt: at })
    .where(and(eq(apiKeys.createdBy, userId), isNull(apiKeys.revokedAt), isNull(apiKeys.deletedAt)))
    .returning({ id: apiKeys.id, teamId: apiKeys.teamId, name: apiKeys.name });
}
