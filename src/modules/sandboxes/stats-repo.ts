import { and, eq, gte, inArray, lt, sql } from 'drizzle-orm';
import type { TeamId } from '../../core/ids.ts';
import type { DbOrTx } from '../../db/client.ts';
import { capsuleSamples, capsules } from '../../db/schema/index.ts';
import { type CapsuleRow, LIVE_STATUSES } from './repo.ts';

// The queries behind team stats (stats.ts): the per-minute samples of every
// team's live capsules, and what a team holds now. Always scoped by team,
// except the sample taken for every team at once (system-only).

export type SampleRow = typeof capsuleSamples.$inferSelect;

/** A running capsule counts in running; every live one holds its vCPUs and memory on its host (paused ones too). */
const aggregate = {
  running: sql<number>`count(*) filter (where ${capsules.status} = 'running')::int`,
  vcpus: sql<number>`coalesce(sum(${capsules.vcpus}), 0)::int`,
  memoryMb: sql<number>`coalesce(sum(${capsules.memoryMb}), 0)::int`,
};

export interface Load {
  running: number;
  vcpus: number;
  memoryMb: number;
}

/** System-only: one sample row per team with live capsules, at `at`; samples older than `pruneBefore` deleted. */
export async function insertTeamSamples(db: DbOrTx, at: Date, pruneBefore: Date): Promise<void> {
  const rows = await db
    .select({ teamId: capsules.teamId, ...aggregate })
    .from(capsules)
    .where(inArray(capsules.status, LIVE_STATUSES))
    .groupBy(capsules.teamId);
  if (rows.length > 0) {
    await db
      .insert(capsuleSamples)
      .values(rows.map((r) => ({ ...r, sampledAt: at })))
      // Several samples in one minute keep the highest of each (what a bucket shows).
      .onConflictDoUpdate({
        target: [capsuleSamples.teamId, capsuleSamples.sampledAt],
        set: {
          running: sql`greatest(${capsuleSamples.running}, excluded.running)`,
          vcpus: sql`greatest(${capsuleSamples.vcpus}, excluded.vcpus)`,
          memoryMb: sql`greatest(${capsuleSamples.memoryMb}, excluded.memory_mb)`,
        },
      });
  }
  await db.delete(capsuleSamples).where(lt(capsuleSamples.sampledAt, pruneBefore));
}

/** What the team's live capsules hold now. */
export async function currentLoad(db: DbOrTx, teamId: TeamId): Promise<Load> {
  const [current] = await db
    .select(aggregate)
    .from(capsules)
    .where(and(eq(capsules.teamId, teamId), inArray(capsules.status, LIVE_STATUSES)));
  return current ?? { running: 0, vcpus: 0, memoryMb: 0 };
}

/** The team's highest sampled figures since `since`. */
export async function peakLoad(db: DbOrTx, teamId: TeamId, since: Date): Promise<Load> {
  const [peak] = await db
    .select({
      running: sql<number>`coalesce(max(${capsuleSamples.running}), 0)::int`,
      vcpus: sql<number>`coalesce(max(${capsuleSamples.vcpus}), 0)::int`,
      memoryMb: sql<number>`coalesce(max(${capsuleSamples.memoryMb}), 0)::int`,
    })
    .from(capsuleSamples)
    .where(and(eq(capsuleSamples.teamId, teamId), gte(capsuleSamples.sampledAt, since)));
  return peak ?? { running: 0, vcpus: 0, memoryMb: 0 };
}

export async function samplesSince(db: DbOrTx, teamId: TeamId, since: Date): Promise<SampleRow[]> {
  return db
    .select()
    .from(capsuleSamples)
    .where(and(eq(capsuleSamples.teamId, teamId), gte(capsuleSamples.sampledAt, since)));
}

export async function runningCapsules(db: DbOrTx, teamId: TeamId): Promise<CapsuleRow[]> {
  return db
    .select()
    .from(capsules)
    .where(and(eq(capsules.teamId, teamId), eq(capsules.status, 'running')));
}
