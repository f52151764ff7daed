import { and, asc, desc, eq, gt, gte, like, lt, type SQL, type WithSubquery } from 'drizzle-orm';
import type { TeamId } from '../../core/ids.ts';
import type { DbOrTx } from '../../db/client.ts';
import { deleteBatch } from '../../db/delete-batch.ts';
import { escapeLike } from '../../db/query-parts.ts';
import { auditLogs } from '../../db/schema/index.ts';

// The audit log: SQL only.

export type AuditInsert = typeof auditLogs.$inferInsert;
export type AuditRow = typeof auditLogs.$inferSelect;

export async function insertAudit(db: DbOrTx, row: AuditInsert): Promise<void> {
  await db.insert(auditLogs).values(row);
}

/** Audit rows as a common table expression of the statement that makes the change. */
export function auditAlongside(db: DbOrTx, rows: AuditInsert[]): WithSubquery {
  return db.$with('recorded_audit').as(db.insert(auditLogs).values(rows).returning({ id: auditLogs.id }));
}

export interface AuditFilter {
  /** undefined: every team's (platform admins only). */
  teamId: TeamId | undefined;
  actorKind?: string;
  actorId?: string;
  /** Exact, or a prefix when it ends in `*`. */
  action?: string;
  resourceId?: string;
  outcome?: string;
  from?: Date;
  to?: Date;
}

function matching(f: AuditFilter): SQL | undefined {
  return and(
    f.teamId !== undefined ? eq(auditLogs.teamId, f.teamId) : undefined,
    f.actorKind !== undefined ? eq(auditLogs.actorKind, f.actorKind) : undefined,
    f.actorId !== undefined ? eq(auditLogs.actorId, f.actorId) : undefined,
    f.action === undefined
      ? undefined
      : f.action.endsWith('*')
        ? like(auditLogs.action, `${escapeLike(f.action.slice(0, -1))}%`)
        : eq(auditLogs.action, f.action),
    f.resourceId !== undefined ? eq(auditLogs.resourceId, f.resourceId) : undefined,
    f.outcome !== undefined ? eq(auditLogs.outcome, f.outcome) : undefined,
    f.from !== undefined ? gte(auditLogs.createdAt, f.from) : undefined,
    f.to !== undefined ? lt(auditLogs.createdAt, f.to) : undefined,
  );
}

/** Newest first before `beforeId` (a page), or oldest first after `afterId` (an export). */
export function listAudit(
  db: DbOrTx,
  filter: AuditFilter,
  from: { beforeId: string | undefined } | { afterId: string },
  limit: number,
): Promise<AuditRow[]> {
  const ascending = 'afterId' in from;
  return db
    .select()
    .from(auditLogs)
    .where(
      and(
        matching(filter),
        ascending
          ? gt(auditLogs.id, from.afterId)
          : from.beforeId
            ? lt(auditLogs.id, from.beforeId)
            : undefined,
      ),
    )
    .orderBy(ascending ? asc(auditLogs.id) : desc(auditLogs.id))
    .limit(limit);
}

/** Deletes up to `batch` entries made before `cutoff`; how many went. */
export async function deleteAuditBefore(db: DbOrTx, cutoff: Date, batch: number): Promise<number> {
  return deleteBatch(db, auditLogs, auditLogs.id, lt(auditLogs.createdAt, cutoff), batch);
}
