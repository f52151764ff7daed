import type { Clock } from '../../core/clock.ts';
import { ConflictError, NotFoundError } from '../../core/errors.ts';
import type { Jobs, QueuePolicy } from '../../jobs/jobs.ts';
import type { WebhookOptions } from './deliveries.ts';

// No pg-boss retries: the delivery row says what is due, and a lost job is the sweep's to send again.
const POLICY: QueuePolicy = { retryLimit: 0, retryDelaySec: 1, expireInSec: 60 };
const SWEEP_BATCH = 200;

interface AttemptJob<Id> {
  delivery_id: Id;
  attempt: number;
}

/** A pending delivery whose attempt is overdue: what the sweep sends a job for again. */
/** A redelivery's delivery (a webhook's or a channel's): found (else 404) and ended (else 409 delivery_pending). */
export function endedDelivery<D extends { status: string }>(found: D | undefined, deliveryId: string): D {
  if (!found) throw new NotFoundError('delivery', deliveryId);
  if (found.status === 'pending')
    throw new ConflictError('delivery_pending', 'this delivery is still being attempted; wait for it to end');
  return found;
}

/** What a redelivery writes on an ended delivery (a webhook's or a channel's): pending again, one attempt more, due now. */
export function reopened(attempts: number, now: Date) {
  return {
    status: 'pending' as const,
    maxAttempts: attempts + 1,
    nextAttemptAt: now,
    completedAt: null,
    lockedUntil: null,
    updatedAt: now,
  };
}

export interface OverdueDelivery<Id> {
  id: Id;
  attempts: number;
}

/**
 * The pg-boss side of delivery attempts (webhooks' and channels'): one job
 * per attempt, sent with its wait as its start time, and the sweep that
 * sends a job again for a pending delivery nobody holds whose job was lost.
 */
export class AttemptQueue<Id extends string> {
  constructor(
    private readonly jobs: Jobs,
    private readonly clock: Clock,
    private readonly queue: string,
    private readonly options: Pick<WebhookOptions, 'concurrency' | 'sweepGraceMs'>,
    private readonly overdue: (dueBefore: Date, now: Date, limit: number) => Promise<OverdueDelivery<Id>[]>,
  ) {}

  /** Starts `concurrency` workers, each making the attempts its jobs name. */
  async work(attempt: (id: Id, n: number) => Promise<unknown>): Promise<void> {
    for (let i = 0; i < this.options.concurrency; i++)
      await this.jobs.work<AttemptJob<Id>>(this.queue, POLICY, async (job) => {
        await attempt(job.data.delivery_id, job.data.attempt);
      });
  }

  /** The job of attempt `n`, to run after `waitMs`. */
  async send(id: Id, n: number, waitMs = 0): Promise<void> {
    await this.jobs.declare(this.queue, POLICY);
    await this.jobs.send<AttemptJob<Id>>(
      this.queue,
      { delivery_id: id, attempt: n },
      waitMs > 0 ? { startAfterSec: waitMs / 1000 } : undefined,
    );
  }

  /** Sends a job again for every pending delivery nobody holds whose attempt is overdue; how many. */
  async sweep(): Promise<number> {
    const now = this.clock.now();
    const overdue = await this.overdue(new Date(now.getTime() - this.options.sweepGraceMs), now, SWEEP_BATCH);
    for (const d of overdue) await this.send(d.id, d.attempts + 1);
    return overdue.length;
  }
}
