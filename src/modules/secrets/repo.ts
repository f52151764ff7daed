import { and, desc, eq, lt, sql } from 'drizzle-orm';
import type { AgentId, Id, TeamId } from '../../core/ids.ts';
import type { Db, DbOrTx } from '../../db/client.ts';
import { insertOne } from '../../db/one-row.ts';
import { rowsLocked } from '../../db/query-parts.ts';
import { cachedReads } from '../../db/read-cache.ts';
import { secrets, secretVersions } from '../../db/schema/index.ts';
import { deleteInTeam, findInTeam, pageInTeam, updateInTeam } from '../../db/team-rows.ts';

export type SecretId = Id<'sec'>;
export type SecretRow = typeof secrets.$inferSelect;
export type SecretVersionRow = typeof secretVersions.$inferSelect;
export type SecretPatch = Partial<
  Pick<SecretRow, 'name' | 'sealedValue' | 'valueVersion' | 'scope' | 'agentIds' | 'updatedAt'>
>;

export { isUniqueViolation } from '../../db/errors.ts';

export function insertSecret(db: DbOrTx, row: typeof secrets.$inferInsert): Promise<SecretRow> {
  return insertOne(db, secrets, row);
}

export function findSecret(db: DbOrTx, teamId: TeamId, id: SecretId, lock?: 'update') {
  return findInTeam(db, secrets, teamId, id, lock);
}

export async function findSecretByName(
  db: DbOrTx,
  teamId: TeamId,
  name: string,
  lock?: 'update',
): Promise<SecretRow | undefined> {
  const [row] = await rowsLocked(
    db
      .select()
      .from(secrets)
      .where(and(eq(secrets.teamId, teamId), eq(secrets.name, name))),
    lock,
  );
  return row;
}

export async function insertSecretVersion(db: DbOrTx, row: SecretVersionRow): Promise<void> {
  await db.insert(secretVersions).values(row);
}

/** A secret's value versions, newest first, below `beforeVersion` when given. */
export async function listSecretVersions(
  db: DbOrTx,
  teamId: TeamId,
  secretId: SecretId,
  beforeVersion: number | undefined,
  limit: number,
): Promise<SecretVersionRow[]> {
  return db
    .select()
    .from(secretVersions)
    .where(
      and(
        eq(secretVersions.teamId, teamId),
        eq(secretVersions.secretId, secretId),
        beforeVersion === undefined ? undefined : lt(secretVersions.version, beforeVersion),
      ),
    )
    .orderBy(desc(secretVersions.version))
    .limit(limit);
}

export async function listSecrets(
  db: DbOrTx,
  teamId: TeamId,
  filter: { agentId?: AgentId },
  beforeId: string | undefined,
  limit: number,
): Promise<SecretRow[]> {
  return pageInTeam(
    db,
    secrets,
    teamId,
    beforeId,
    limit,
    filter.agentId ? givenTo(filter.agentId) : undefined,
  );
}

const agentSecretReads = cachedReads<string, readonly SecretRow[]>(['secrets']);

/**
 * The team's secrets an agent gets, sealed: every `all` one, and the
 * `agents` ones that list it. Read as each task starts, so on the embedded
 * database kept until the secrets table changes.
 */
export async function secretsForAgent(
  db: Db,
  teamId: TeamId,
  agentId: AgentId,
): Promise<readonly SecretRow[]> {
  const rows = await agentSecretReads(db, `${teamId}/${agentId}`, () =>
    db
      .select()
      .from(secrets)
      .where(and(eq(secrets.teamId, teamId), givenTo(agentId)))
      .orderBy(secrets.name),
  );
  return rows ?? [];
}

function givenTo(agentId: AgentId) {
  return sql`(${secrets.scope} = 'all' or ${secrets.agentIds} @> ${JSON.stringify([agentId])}::jsonb)`;
}

export function updateSecret(db: DbOrTx, teamId: TeamId, id: SecretId, patch: SecretPatch) {
  return updateInTeam(db, secrets, teamId, id, patch);
}

export function deleteSecret(db: DbOrTx, teamId: TeamId, id: SecretId): Promise<SecretRow | undefined> {
  return deleteInTeam(db, secrets, teamId, id);
}
