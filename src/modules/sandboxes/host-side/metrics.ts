import type { CapsuleUsage } from '../drivers/types.ts';

// Per-capsule metrics kept by the host in memory, in three tiers (Wrenn's):
// raw samples over the last 10 minutes, 30-second averages over 2 hours and
// 5-minute averages over 24 hours. Each tier is a fixed ring, so a capsule's
// history costs the same whatever its age (~830 points, ~30 KB).

export interface MetricPoint {
  /** Unix milliseconds. */
  timestamp_unix: number;
  /** CPU use over the interval, 0–100, normalised to the capsule's vCPUs. */
  cpu_pct: number;
  mem_bytes: number;
  disk_bytes: number;
}

export const METRIC_RANGES = ['5m', '10m', '1h', '2h', '6h', '12h', '24h'] as const;
export type MetricRange = (typeof METRIC_RANGES)[number];

const MINUTE = 60_000;
const RANGE_MS: Record<MetricRange, number> = {
  '5m': 5 * MINUTE,
  '10m': 10 * MINUTE,
  '1h': 60 * MINUTE,
  '2h': 120 * MINUTE,
  '6h': 360 * MINUTE,
  '12h': 720 * MINUTE,
  '24h': 1440 * MINUTE,
};

/** How often the host samples each running capsule. */
export const SAMPLE_EVERY_MS = 2_000;

class Ring {
  private readonly points: MetricPoint[] = [];
  private next = 0;
  constructor(private readonly capacity: number) {}
  push(p: MetricPoint): void {
    if (this.points.length < this.capacity) this.points.push(p);
    else this.points[this.next] = p;
    this.next = (this.next + 1) % this.capacity;
  }
  /** Oldest first. */
  all(): MetricPoint[] {
    if (this.points.length < this.capacity) return [...this.points];
    return [...this.points.slice(this.next), ...this.points.slice(0, this.next)];
  }
}

/** Averages samples over fixed windows into a coarser ring. */
class Averaging {
  readonly ring: Ring;
  private sum = { cpu: 0, mem: 0, disk: 0, n: 0 };
  private windowStart = -1;
  constructor(
    private readonly windowMs: number,
    spanMs: number,
  ) {
    this.ring = new Ring(Math.ceil(spanMs / windowMs));
  }
  add(p: MetricPoint): void {
    const start = Math.floor(p.timestamp_unix / this.windowMs) * this.windowMs;
    if (this.windowStart !== -1 && start !== this.windowStart) this.flush();
    this.windowStart = start;
    this.sum.cpu += p.cpu_pct;
    this.sum.mem += p.mem_bytes;
    this.sum.disk += p.disk_bytes;
    this.sum.n += 1;
  }
  private flush(): void {
    const { cpu, mem, disk, n } = this.sum;
    if (n > 0) {
      this.ring.push({
        timestamp_unix: this.windowStart,
        cpu_pct: round2(cpu / n),
        mem_bytes: Math.round(mem / n),
        disk_bytes: Math.round(disk / n),
      });
    }
    this.sum = { cpu: 0, mem: 0, disk: 0, n: 0 };
  }
  /** The finished windows, then the current one's average so far. */
  points(): MetricPoint[] {
    const out = this.ring.all();
    const { cpu, mem, disk, n } = this.sum;
    if (n > 0) {
      out.push({
        timestamp_unix: this.windowStart,
        cpu_pct: round2(cpu / n),
        mem_bytes: Math.round(mem / n),
        disk_bytes: Math.round(disk / n),
      });
    }
    return out;
  }
}

const round2 = (x: number) => Math.round(x * 100) / 100;

export class CapsuleMetrics {
  private readonly raw = new Ring(Math.ceil((10 * MINUTE) / SAMPLE_EVERY_MS));
  private readonly mid = new Averaging(30_000, 120 * MINUTE);
  private readonly coarse = new Averaging(5 * MINUTE, 1440 * MINUTE);
  private last: { atMs: number; cpuNs: number } | undefined;

  constructor(private readonly vcpus: number) {}

  /** Adds a reading of the capsule's counters taken at `atMs`. */
  record(atMs: number, usage: CapsuleUsage): void {
    const prev = this.last;
    this.last = { atMs, cpuNs: usage.cpuNs };
    if (!prev || atMs <= prev.atMs) return;
    const busy = Math.max(0, usage.cpuNs - prev.cpuNs) / 1e6;
    const pct = Math.min(100, (busy / ((atMs - prev.atMs) * Math.max(1, this.vcpus))) * 100);
    const p = {
      timestamp_unix: atMs,
      cpu_pct: round2(pct),
      mem_bytes: usage.memBytes,
      disk_bytes: usage.diskBytes,
    };
    this.raw.push(p);
    this.mid.add(p);
    this.coarse.add(p);
  }

  /** A pause breaks the CPU interval: the next reading starts a new one. */
  gap(): void {
    this.last = undefined;
  }

  /** The smallest tier that covers the range, trimmed to it. */
  points(range: MetricRange, nowMs: number): MetricPoint[] {
    const span = RANGE_MS[range];
    const tier =
      span <= 10 * MINUTE ? this.raw.all() : span <= 120 * MINUTE ? this.mid.points() : this.coarse.points();
    const from = nowMs - span;
    return tier.filter((p) => p.timestamp_unix >= from);
  }
}
