import { HOUR_MS, MINUTE_MS, SECOND_MS } from '../../core/clock.ts';
import type { Context } from '../../core/context.ts';
import type { Sealer } from '../../core/crypto.ts';
import { newId } from '../../core/ids.ts';
import type { Db } from '../../db/client.ts';
import type { Jobs } from '../../jobs/jobs.ts';
import type { EventsService } from '../events/service.ts';
import { AttemptQueue } from './attempt-queue.ts';
import * as repo from './repo.ts';
import type { WebhookSender } from './sender.ts';
import { signedHeaders } from './signing.ts';

export interface WebhookOptions {
  /**
   * The wait before each attempt of a delivery, the first one included; its
   * length is how many attempts a delivery makes before it is failed.
   */
  retryScheduleMs: number[];
  /** Deliveries that end failed in a row before an active endpoint becomes failing. */
  failingAfter: number;
  /** How often each server reads new outbox events. */
  pollMs: number;
  /** How far behind the cursor each read starts again (events commit out of id order). */
  lookbackMs: number;
  /** How often each server looks for deliveries whose job was lost. */
  sweepMs: number;
  /** How long past its due time a pending delivery nobody holds waits before the sweep sends it a job again. */
  sweepGraceMs: number;
  /** One attempt's time limit: connect, send, answer. */
  timeoutMs: number;
  /** Attempts under way at once on one server. */
  concurrency: number;
}

export const WEBHOOK_DEFAULTS: WebhookOptions = {
  // Immediately, 5 s, 5 min, 30 min, 2 h, 5 h, 10 h, 10 h (Paddock issue 14).
  retryScheduleMs: [
    0,
    5 * SECOND_MS,
    5 * MINUTE_MS,
    30 * MINUTE_MS,
    2 * HOUR_MS,
    5 * HOUR_MS,
    10 * HOUR_MS,
    10 * HOUR_MS,
  ],
  failingAfter: 5,
  pollMs: 500,
  lookbackMs: 10_000,
  sweepMs: 10_000,
  sweepGraceMs: 20_000,
  timeoutMs: 10_000,
  concurrency: 4,
};

export const DELIVERY_QUEUE = 'webhook-delivery';
/** How long past an attempt's time limit its worker's hold lasts (then it counts as lost). */
const LOCK_MARGIN_MS = 5_000;

/**
 * Attempts of deliveries: one pg-boss job per attempt, each signed afresh,
 * logged, and followed by the next (after the schedule's wait) until one
 * succeeds or the schedule is spent. A delivery row is its own durable
 * record: a job lost in a crash is sent again by the sweep.
 */
export class WebhookDeliveries {
  private readonly queue: AttemptQueue<repo.DeliveryId>;

  constructor(
    private readonly db: Db,
    private readonly ctx: Context,
    private readonly sealer: Sealer,
    private readonly events: EventsService,
    jobs: Jobs,
    private readonly sender: WebhookSender,
    readonly options: WebhookOptions,
  ) {
    this.queue = new AttemptQueue(jobs, ctx.clock, DELIVERY_QUEUE, options, (dueBefore, now, limit) =>
      repo.overdueDeliveries(db, dueBefore, now, limit),
    );
  }

  start(): Promise<void> {
    return this.queue.work((id, n) => this.attempt(id, n));
  }

  /** Sends the first attempt's job of new deliveries. */
  async enqueue(ids: repo.DeliveryId[]): Promise<void> {
    for (const id of ids) await this.sendAttempt(id, 1, this.options.retryScheduleMs[0] ?? 0);
  }

  /** The job of attempt `n`, to run after `waitMs`. */
  sendAttempt(id: repo.DeliveryId, n: number, waitMs = 0): Promise<void> {
    return this.queue.send(id, n, waitMs);
  }

  /** Sends a job again for every pending delivery nobody holds whose attempt is overdue; how many. */
  sweep(): Promise<number> {
    return this.queue.sweep();
  }

  /** The secrets an attempt signs with: the current one, and the previous one while its window lasts. */
  private secretsOf(hook: repo.WebhookRow, now: Date): string[] {
    const context = `webhook:${hook.id}`;
    const secrets = [this.sealer.open(hook.secretSealed, context)];
    if (hook.previousSecretSealed && hook.previousSecretExpiresAt && hook.previousSecretExpiresAt > now)
      secrets.push(this.sealer.open(hook.previousSecretSealed, context));
    return secrets;
  }

  /**
   * Makes attempt `n` of a delivery, when it is still this attempt's turn
   * (a duplicate job makes none); answers the attempt's log row.
   */
  async attempt(id: repo.DeliveryId, n: number): Promise<repo.AttemptRow | undefined> {
    const now = this.ctx.clock.now();
    const lockedUntil = new Date(now.getTime() + this.options.timeoutMs + LOCK_MARGIN_MS);
    const delivery = await repo.claimAttempt(this.db, id, n, now, lockedUntil);
    if (!delivery) return undefined;
    const hook = await repo.webhookById(this.db, delivery.webhookId);
    if (!hook) return undefined;
    const isTest = delivery.eventType === 'webhook.test';
    if (hook.status !== 'active' && !isTest) {
      // Paused or failing: what was queued for it ends failed, without a request (redeliver sends it again).
      return this.record(delivery, hook, n, isTest, {
        statusCode: null,
        responseBody: null,
        error: `not sent: the endpoint is ${hook.status}`,
        durationMs: 0,
      });
    }
    const timestampSec = Math.floor(now.getTime() / 1000);
    const headers = signedHeaders(this.secretsOf(hook, now), delivery.id, timestampSec, delivery.payload);
    const outcome = await this.sender.post(hook.url, headers, delivery.payload);
    return this.record(delivery, hook, n, isTest, outcome, hook.status === 'active' || isTest);
  }

  private async record(
    delivery: repo.DeliveryRow,
    hook: repo.WebhookRow,
    n: number,
    isTest: boolean,
    outcome: Awaited<ReturnType<WebhookSender['post']>>,
    retryable = false,
  ): Promise<repo.AttemptRow> {
    const done = this.ctx.clock.now();
    const ok = outcome.statusCode !== null && outcome.statusCode >= 200 && outcome.statusCode < 300;
    const schedule = this.options.retryScheduleMs;
    const waitMs =
      !ok && retryable && n < delivery.maxAttempts ? (schedule[n] ?? schedule.at(-1) ?? 0) : undefined;
    const nextAttemptAt = waitMs !== undefined ? new Date(done.getTime() + waitMs) : null;
    const row = await this.db.transaction(async (tx) => {
      const logged = await repo.insertAttempt(tx, {
        id: newId('wha'),
        teamId: delivery.teamId,
        webhookId: delivery.webhookId,
        deliveryId: delivery.id,
        eventId: delivery.eventId,
        eventType: delivery.eventType,
        attempt: n,
        statusCode: outcome.statusCode,
        durationMs: outcome.durationMs,
        error: outcome.error,
        responseBody: outcome.responseBody,
        nextAttemptAt,
        createdAt: done,
      });
      const ended = ok || nextAttemptAt === null;
      await repo.finishAttempt(
        tx,
        delivery.id,
        ended
          ? {
              status: ok ? 'succeeded' : 'failed',
              nextAttemptAt: null,
              completedAt: done,
              lastStatusCode: outcome.statusCode,
            }
          : { nextAttemptAt, lastStatusCode: outcome.statusCode },
        done,
      );
      // A test says nothing about the endpoint's health; a delivery to a paused one neither.
      if (ended && !isTest && (ok || retryable)) {
        const failing = await repo.countDeliveryOutcome(tx, hook.id, ok, this.options.failingAfter, done);
        if (failing)
          await this.events.record(tx, {
            teamId: hook.teamId,
            type: 'webhook.failing',
            actorKind: 'system',
            actorId: 'webhooks',
            subjectId: hook.id,
            data: { failure_count: failing.failureCount },
          });
      }
      return logged;
    });
    this.ctx.metrics?.webhookAttempt(
      ok ? 'success' : outcome.statusCode !== null ? 'http_error' : retryable ? 'network_error' : 'not_sent',
      waitMs === undefined ? { ok, lagMs: done.getTime() - delivery.createdAt.getTime() } : undefined,
    );
    // Lost (a crash right here), the sweep sends it once it is overdue.
    if (waitMs !== undefined) await this.sendAttempt(delivery.id, n + 1, waitMs);
    return row;
  }

  close(): Promise<void> {
    return this.sender.close();
  }
}
