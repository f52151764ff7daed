import { and, desc, eq, inArray, isNull, lt, max, or, type SQL } from 'drizzle-orm';
import type { Id, TeamId } from '../../core/ids.ts';
import type { DbOrTx } from '../../db/client.ts';
import { findOne, insertOne } from '../../db/one-row.ts';
import { environments, environmentVersions } from '../../db/schema/index.ts';
import { findInTeam, pageInTeam, updateInTeam } from '../../db/team-rows.ts';
import { updateOne } from '../../db/update-one.ts';

export type EnvironmentId = Id<'env'>;
export type EnvironmentVersionId = Id<'envv'>;
export type EnvironmentRow = typeof environments.$inferSelect;
export type VersionRow = typeof environmentVersions.$inferSelect;
export type EnvironmentPatch = Partial<
  Pick<EnvironmentRow, 'name' | 'description' | 'currentVersion' | 'archivedAt' | 'updatedAt'>
>;
export type VersionPatch = Partial<
  Pick<
    VersionRow,
    'status' | 'templateName' | 'buildLog' | 'error' | 'buildStartedAt' | 'buildFinishedAt' | 'updatedAt'
  >
>;

export { isUniqueViolation } from '../../db/errors.ts';

export function insertEnvironment(
  db: DbOrTx,
  row: typeof environments.$inferInsert,
): Promise<EnvironmentRow> {
  return insertOne(db, environments, row);
}

export function insertVersion(db: DbOrTx, row: typeof environmentVersions.$inferInsert): Promise<VersionRow> {
  return insertOne(db, environmentVersions, row);
}

export function findEnvironment(db: DbOrTx, teamId: TeamId, id: EnvironmentId, lock?: 'update') {
  return findInTeam(db, environments, teamId, id, lock);
}

export async function findLiveEnvironmentByName(
  db: DbOrTx,
  teamId: TeamId,
  name: string,
): Promise<EnvironmentRow | undefined> {
  const [row] = await db
    .select()
    .from(environments)
    .where(
      and(eq(environments.teamId, teamId), eq(environments.name, name), isNull(environments.archivedAt)),
    );
  return row;
}

/** The team's environments that are not archived, newest first. */
export function listEnvironments(db: DbOrTx, teamId: TeamId, beforeId: string | undefined, limit: number) {
  return pageInTeam(db, environments, teamId, beforeId, limit, isNull(environments.archivedAt));
}

export function updateEnvironment(db: DbOrTx, teamId: TeamId, id: EnvironmentId, patch: EnvironmentPatch) {
  return updateInTeam(db, environments, teamId, id, patch);
}

/** The environment's versions, where `also` holds too. */
function versionsOf(teamId: TeamId, environmentId: EnvironmentId, also: SQL | undefined) {
  return and(
    eq(environmentVersions.teamId, teamId),
    eq(environmentVersions.environmentId, environmentId),
    also,
  );
}

export function findVersion(db: DbOrTx, teamId: TeamId, environmentId: EnvironmentId, version: number) {
  return findOne(
    db,
    environmentVersions,
    versionsOf(teamId, environmentId, eq(environmentVersions.version, version)),
  );
}

export function findVersionById(db: DbOrTx, teamId: TeamId, id: EnvironmentVersionId) {
  return findInTeam(db, environmentVersions, teamId, id);
}

/** The versions of an environment, newest first; `before` is a version number. */
export async function listVersions(
  db: DbOrTx,
  teamId: TeamId,
  environmentId: EnvironmentId,
  before: number | undefined,
  limit: number,
) {
  return db
    .select()
    .from(environmentVersions)
    .where(
      versionsOf(
        teamId,
        environmentId,
        before !== undefined ? lt(environmentVersions.version, before) : undefined,
      ),
    )
    .orderBy(desc(environmentVersions.version))
    .limit(limit);
}

export async function latestVersionNumber(db: DbOrTx, environmentId: EnvironmentId): Promise<number> {
  const [row] = await db
    .select({ n: max(environmentVersions.version) })
    .from(environmentVersions)
    .where(eq(environmentVersions.environmentId, environmentId));
  return row?.n ?? 0;
}

/** System-only (by id alone): the build job carries the id of a version it was sent for. */
export function systemFindVersion(db: DbOrTx, id: EnvironmentVersionId, lock?: 'update') {
  return findOne(db, environmentVersions, eq(environmentVersions.id, id), lock);
}

export async function systemUpdateVersion(db: DbOrTx, id: EnvironmentVersionId, patch: VersionPatch) {
  return updateOne(db, environmentVersions, eq(environmentVersions.id, id), patch);
}

/**
 * System-only: the build job `jobId` takes the version — a queued one, or one
 * it was building already (its own retry after its worker vanished). Any other
 * job finds nothing, so two jobs for one version never build it together.
 */
export async function systemClaimBuild(
  db: DbOrTx,
  id: EnvironmentVersionId,
  jobId: string,
  now: Date,
): Promise<VersionRow | undefined> {
  return updateOne(
    db,
    environmentVersions,
    and(
      eq(environmentVersions.id, id),
      or(
        eq(environmentVersions.status, 'queued'),
        and(eq(environmentVersions.status, 'building'), eq(environmentVersions.buildJobId, jobId)),
      ),
    ),
    { status: 'building', buildJobId: jobId, buildStartedAt: now, buildLog: '', error: null, updatedAt: now },
  );
}

/**
 * System-only: the build log so far, while the version is still the building of `jobId` (its
 * `updated_at` stays: the sweep times a build from it).
 */
export async function systemBuildProgress(
  db: DbOrTx,
  id: EnvironmentVersionId,
  jobId: string,
  buildLog: string,
): Promise<void> {
  await db
    .update(environmentVersions)
    .set({ buildLog })
    .where(
      and(
        eq(environmentVersions.id, id),
        eq(environmentVersions.status, 'building'),
        eq(environmentVersions.buildJobId, jobId),
      ),
    );
}

/** System-only: writes a build's outcome, if the version is still the building of `jobId`. */
export async function systemFinishBuild(
  db: DbOrTx,
  id: EnvironmentVersionId,
  jobId: string | null,
  patch: VersionPatch,
): Promise<VersionRow | undefined> {
  return updateOne(
    db,
    environmentVersions,
    and(
      eq(environmentVersions.id, id),
      eq(environmentVersions.status, 'building'),
      jobId === null ? undefined : eq(environmentVersions.buildJobId, jobId),
    ),
    patch,
  );
}

/** System-only: versions in these statuses whose last change is older than `before` (the sweep's). */
export async function systemStaleVersions(
  db: DbOrTx,
  statuses: Array<VersionRow['status']>,
  before: Date,
  limit: number,
): Promise<VersionRow[]> {
  return db
    .select()
    .from(environmentVersions)
    .where(and(inArray(environmentVersions.status, statuses), lt(environmentVersions.updatedAt, before)))
    .orderBy(environmentVersions.updatedAt)
    .limit(limit);
}
