import { DAY_MS, MINUTE_MS } from '../../core/clock.ts';
import { BadRequestError } from '../../core/errors.ts';
import type { TeamId } from '../../core/ids.ts';
import type { DbOrTx } from '../../db/client.ts';
import { usageBetween } from './repo.ts';
import { currentLoad, insertTeamSamples, peakLoad, runningCapsules, samplesSince } from './stats-repo.ts';

// Team-level figures: what a team holds now, its 30-day peaks and a series
// for charts (from a per-minute sample of every team's live capsules), and
// daily usage for billing (from the running periods kept per team and day).

export const STATS_RANGES = ['5m', '1h', '6h', '24h', '30d'] as const;
export type StatsRange = (typeof STATS_RANGES)[number];

/** How often every team's live capsules are sampled; samples are kept 31 days. */
export const SAMPLE_TEAMS_EVERY_MS = MINUTE_MS;
const KEEP_SAMPLES_MS = 31 * DAY_MS;

const RANGE: Record<StatsRange, { spanMs: number; bucketMs: number }> = {
  '5m': { spanMs: 5 * MINUTE_MS, bucketMs: MINUTE_MS },
  '1h': { spanMs: 60 * MINUTE_MS, bucketMs: MINUTE_MS },
  '6h': { spanMs: 6 * 60 * MINUTE_MS, bucketMs: 5 * MINUTE_MS },
  '24h': { spanMs: DAY_MS, bucketMs: 15 * MINUTE_MS },
  '30d': { spanMs: 30 * DAY_MS, bucketMs: 6 * 60 * MINUTE_MS },
};

/** Every team's live capsules at `at`, into the samples; old samples pruned. */
export async function sampleTeams(db: DbOrTx, at: Date): Promise<void> {
  await insertTeamSamples(db, at, new Date(at.getTime() - KEEP_SAMPLES_MS));
}

export async function teamStats(db: DbOrTx, teamId: TeamId, range: StatsRange, now: Date) {
  const cur = await currentLoad(db, teamId);
  const peak = await peakLoad(db, teamId, new Date(now.getTime() - 30 * DAY_MS));

  const { spanMs, bucketMs } = RANGE[range];
  const first = Math.floor((now.getTime() - spanMs) / bucketMs) * bucketMs + bucketMs;
  const samples = await samplesSince(db, teamId, new Date(first));
  // Each bucket shows its highest sample; a bucket with none had nothing live.
  const n = Math.max(1, Math.ceil((now.getTime() - first + 1) / bucketMs));
  const series = {
    labels: [] as string[],
    running: [] as number[],
    vcpus: [] as number[],
    memory_mb: [] as number[],
  };
  for (let i = 0; i < n; i++) {
    series.labels.push(new Date(first + i * bucketMs).toISOString());
    series.running.push(0);
    series.vcpus.push(0);
    series.memory_mb.push(0);
  }
  for (const s of samples) {
    const i = Math.floor((s.sampledAt.getTime() - first) / bucketMs);
    if (i < 0 || i >= n) continue;
    series.running[i] = Math.max(series.running[i]!, s.running);
    series.vcpus[i] = Math.max(series.vcpus[i]!, s.vcpus);
    series.memory_mb[i] = Math.max(series.memory_mb[i]!, s.memoryMb);
  }
  const last = samples.reduce<Date | null>((a, s) => (!a || s.sampledAt > a ? s.sampledAt : a), null);
  return {
    range,
    current: {
      running_count: cur.running,
      vcpus_reserved: cur.vcpus,
      memory_mb_reserved: cur.memoryMb,
      sampled_at: now.toISOString(),
    },
    peaks: {
      running_count: Math.max(peak.running, cur.running),
      vcpus: Math.max(peak.vcpus, cur.vcpus),
      memory_mb: Math.max(peak.memoryMb, cur.memoryMb),
    },
    series,
    last_sample_at: last?.toISOString() ?? null,
  };
}

/** A running period split into UTC days (usage is kept per day). */
export function splitByDay(from: Date, to: Date): Array<{ day: string; seconds: number }> {
  const out: Array<{ day: string; seconds: number }> = [];
  let start = from.getTime();
  const end = to.getTime();
  while (start < end) {
    const dayStart = Math.floor(start / DAY_MS) * DAY_MS;
    const stop = Math.min(end, dayStart + DAY_MS);
    out.push({
      day: new Date(dayStart).toISOString().slice(0, 10),
      seconds: Math.round((stop - start) / 1000),
    });
    start = stop;
  }
  return out;
}

const DAY = /^\d{4}-\d{2}-\d{2}$/;

function dayOf(raw: string | undefined, fallback: Date, field: string): string {
  if (raw === undefined) return fallback.toISOString().slice(0, 10);
  const d = new Date(`${raw}T00:00:00Z`);
  if (!DAY.test(raw) || Number.isNaN(d.getTime()) || d.toISOString().slice(0, 10) !== raw) {
    throw new BadRequestError('invalid_date', `${field} must be a date as YYYY-MM-DD`, { [field]: raw });
  }
  return raw;
}

/**
 * Reserved vCPU-minutes and RAM MB-minutes per UTC day, both bounds
 * included; running time only (paused time is not billed). The periods still
 * running count up to now.
 */
export async function teamUsage(db: DbOrTx, teamId: TeamId, q: { from?: string; to?: string }, now: Date) {
  const to = dayOf(q.to, now, 'to');
  const from = dayOf(q.from, new Date(now.getTime() - 30 * DAY_MS), 'from');
  if (from > to) throw new BadRequestError('invalid_range', 'from must not be after to', { from, to });
  if (Date.parse(to) - Date.parse(from) > 366 * DAY_MS) {
    throw new BadRequestError('invalid_range', 'ask for at most 366 days at a time', { from, to });
  }
  const totals = new Map<string, { vcpuSeconds: number; ramMbSeconds: number }>();
  const add = (day: string, vcpuSeconds: number, ramMbSeconds: number) => {
    if (day < from || day > to) return;
    const t = totals.get(day) ?? { vcpuSeconds: 0, ramMbSeconds: 0 };
    t.vcpuSeconds += vcpuSeconds;
    t.ramMbSeconds += ramMbSeconds;
    totals.set(day, t);
  };
  for (const row of await usageBetween(db, teamId, from, to)) add(row.day, row.vcpuSeconds, row.ramMbSeconds);
  const running = await runningCapsules(db, teamId);
  for (const c of running) {
    if (!c.runningSince) continue;
    for (const d of splitByDay(c.runningSince, now)) add(d.day, d.seconds * c.vcpus, d.seconds * c.memoryMb);
  }
  const points = [...totals.entries()]
    .sort(([a], [b]) => (a < b ? -1 : 1))
    .map(([date, t]) => ({
      date,
      cpu_minutes: Math.round((t.vcpuSeconds / 60) * 100) / 100,
      ram_mb_minutes: Math.round((t.ramMbSeconds / 60) * 100) / 100,
    }));
  return { from, to, points };
}
