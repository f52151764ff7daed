import { and, desc, eq, inArray, sql } from 'drizzle-orm';
import { type Id, isId, type TeamId } from '../../core/ids.ts';
import type { DbOrTx } from '../../db/client.ts';
import { insertOne } from '../../db/one-row.ts';
import { beforeCursor } from '../../db/query-parts.ts';
import { skills } from '../../db/schema/index.ts';
import { deleteInTeam, findInTeam, updateInTeam } from '../../db/team-rows.ts';

export type SkillId = Id<'skl'>;
export type SkillRow = typeof skills.$inferSelect;
/** A skill without its content, as lists show it: the content's length instead. */
export type SkillSummaryRow = Omit<SkillRow, 'content'> & { contentChars: number };
export type SkillPatch = Partial<Pick<SkillRow, 'name' | 'description' | 'content' | 'updatedAt'>>;

export { isUniqueViolation } from '../../db/errors.ts';

export function insertSkill(db: DbOrTx, row: typeof skills.$inferInsert): Promise<SkillRow> {
  return insertOne(db, skills, row);
}

export function findSkill(db: DbOrTx, teamId: TeamId, id: SkillId, lock?: 'update') {
  return findInTeam(db, skills, teamId, id, lock);
}

export async function skillNameTaken(db: DbOrTx, teamId: TeamId, name: string): Promise<boolean> {
  const [row] = await db
    .select({ id: skills.id })
    .from(skills)
    .where(and(eq(skills.teamId, teamId), eq(skills.name, name)));
  return row !== undefined;
}

/** Newest first; the content stays in the database (a page of 200 could be 40 MB). */
export async function listSkills(
  db: DbOrTx,
  teamId: TeamId,
  beforeId: string | undefined,
  limit: number,
): Promise<SkillSummaryRow[]> {
  return db
    .select({
      id: skills.id,
      teamId: skills.teamId,
      name: skills.name,
      description: skills.description,
      contentChars: sql<number>`char_length(${skills.content})::int`,
      createdBy: skills.createdBy,
      createdAt: skills.createdAt,
      updatedAt: skills.updatedAt,
    })
    .from(skills)
    .where(and(eq(skills.teamId, teamId), beforeCursor(skills.id, beforeId)))
    .orderBy(desc(skills.id))
    .limit(limit);
}

/** The team's skills among `ids`, content included (ids that are none of them are left out). */
export async function skillsAmong(db: DbOrTx, teamId: TeamId, ids: readonly string[]): Promise<SkillRow[]> {
  const skillIds = ids.filter((id): id is SkillId => isId(id, 'skl'));
  if (skillIds.length === 0) return [];
  return db
    .select()
    .from(skills)
    .where(and(eq(skills.teamId, teamId), inArray(skills.id, skillIds)));
}

/** Which of `ids` are skills of the team. */
export async function skillIdsAmong(
  db: DbOrTx,
  teamId: TeamId,
  ids: readonly string[],
): Promise<Set<string>> {
  const skillIds = ids.filter((id): id is SkillId => isId(id, 'skl'));
  if (skillIds.length === 0) return new Set();
  const rows = await db
    .select({ id: skills.id })
    .from(skills)
    .where(and(eq(skills.teamId, teamId), inArray(skills.id, skillIds)));
  return new Set(rows.map((r) => r.id));
}

export function updateSkill(db: DbOrTx, teamId: TeamId, id: SkillId, patch: SkillPatch) {
  return updateInTeam(db, skills, teamId, id, patch);
}

export function deleteSkill(db: DbOrTx, teamId: TeamId, id: SkillId): Promise<SkillRow | undefined> {
  return deleteInTeam(db, skills, teamId, id);
}
