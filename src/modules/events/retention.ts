import { DAY_MS, HOUR_MS } from '../../core/clock.ts';
import type { Context, Timer } from '../../core/context.ts';
import type { Db, DbOrTx } from '../../db/client.ts';
import { deleteEventsBefore } from './repo.ts';

const SWEEP_EVERY_MS = HOUR_MS;
/** Rows per delete: short statements, so the sweep never holds many locks at once. */
const DELETE_BATCH = 1000;

/**
 * Deletes rows older than the retention: outbox events (PADDOCK_EVENT_RETENTION_DAYS)
 * by default, or what `deleteBefore` deletes or clears (the audit log's, the
 * activity feed's, steps' content). It answers how many rows its batch took
 * in; fewer than the batch means none is left. 0 keeps them forever.
 */
export class EventRetention {
  private timer: Timer | undefined;

  constructor(
    private readonly db: Db,
    private readonly ctx: Context,
    private readonly retentionDays: number,
    private readonly deleteBefore: (
      db: DbOrTx,
      cutoff: Date,
      batch: number,
    ) => Promise<number> = deleteEventsBefore,
    private readonly what = 'event',
  ) {}

  start(): void {
    if (this.retentionDays === 0 || this.timer) return;
    this.timer = this.ctx.timers.every(SWEEP_EVERY_MS, () => {
      this.sweep().catch((err: unknown) =>
        this.ctx.log.warn({ err }, `the ${this.what} retention sweep failed`),
      );
    });
  }

  stop(): void {
    this.timer?.cancel();
    this.timer = undefined;
  }

  /** Deletes in batches until none older than the retention is left; how many went. */
  async sweep(): Promise<number> {
    if (this.retentionDays === 0) return 0;
    const cutoff = new Date(this.ctx.clock.now().getTime() - this.retentionDays * DAY_MS);
    let total = 0;
    for (;;) {
      const deleted = await this.deleteBefore(this.db, cutoff, DELETE_BATCH);
      total += deleted;
      if (deleted < DELETE_BATCH) return total;
    }
  }
}
