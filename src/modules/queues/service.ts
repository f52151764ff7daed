// One file over 400 lines: a job's lease protocol (submit, claim,
// heartbeat, complete, fail, cancel) and the sweep that ends expired leases
// change the same rows through one `changing`, which tells the other modules'
// listeners in the same transaction; split, each part would need it.
import { DAY_MS, HOUR_MS, SECOND_MS } from '../../core/clock.ts';
import type { Context, Timer } from '../../core/context.ts';
import { BadRequestError, ConflictError, NotFoundError, ValidationError } from '../../core/errors.ts';
import { idOrNotFound, isId, newId, type TeamId } from '../../core/ids.ts';
import { decodeCursor, encodeCursor, pageLimit, pageOf } from '../../core/pagination.ts';
import type { Db, DbOrTx } from '../../db/client.ts';
import type { EventInput, EventsService, EventType } from '../events/service.ts';
import {
  type Actor,
  activeTeam,
  actorOf,
  managedTeam,
  type Principal,
  requireScope,
} from '../identity/principal.ts';
import * as repo from './repo.ts';
import {
  type ClaimInput,
  type CompleteInput,
  type CompleteManyInput,
  type FailInput,
  type HeartbeatInput,
  type JobListInput,
  MAX_JSON_BYTES,
  type QueueListInput,
  type SubmitJobInput,
} from './schemas.ts';
import { jobView } from './views.ts';
import { QueueWakeups } from './wakeups.ts';

export interface QueueOptions {
  /** How often the sweep puts jobs with an expired lease back (or fails them). */
  sweepIntervalSec: number;
  /** A long poll's claim is tried again this often (jobs submitted to other servers, or come due). */
  pollIntervalMs: number;
  /** Ended jobs are deleted this many days after they ended (0: kept); idempotency keys last as long. */
  retentionDays: number;
}

export const QUEUE_DEFAULTS: QueueOptions = { sweepIntervalSec: 10, pollIntervalMs: 1000, retentionDays: 7 };

/** A worker's own failure is retried after 2^(attempt-1) s, at most this long. */
const MAX_BACKOFF_SEC = 300;
const SWEEP_BATCH = 1000;
/** A job a listener refused to let run (a limit reached) is claimable again this much later. */
const REFUSED_RETRY_MS = 1000;

const jobId = (raw: string) => idOrNotFound(raw, 'qjob', 'job');

function checkJsonSize(value: unknown, field: string): void {
  if (value !== undefined && Buffer.byteLength(JSON.stringify(value) ?? '') > MAX_JSON_BYTES)
    throw new ValidationError(`the request body is invalid: ${field} is over ${MAX_JSON_BYTES} bytes`, {
      [field]: `must be at most ${MAX_JSON_BYTES} bytes as JSON`,
    });
}

function notHolder(row: repo.JobRow, workerId: string): ConflictError {
  const why =
    row.status !== 'active'
      ? `the job is ${row.status}, not active`
      : `the job is held by another worker (${row.workerId})`;
  return new ConflictError('not_lease_holder', `worker ${workerId} does not hold this job: ${why}`, {
    status: row.status,
  });
}

/**
 * Another module's side of one job type (the tasks module's `paddock.task`):
 * told of its jobs that were claimed or that ended, in the transaction that
 * changed them, then once more after it committed. So queues import nothing
 * of the module that listens.
 */
export interface QueueJobListener {
  readonly type: string;
  /** The jobs as they are now (active: claimed; completed, failed, cancelled: ended; queued: put back). */
  changed(tx: DbOrTx, rows: readonly repo.JobRow[]): Promise<void>;
  /** After the commit: work that cannot join the transaction. */
  committed(rows: readonly repo.JobRow[]): Promise<void>;
  /** Its jobs no claim may take now (they wait): those whose payload's `field` is one of `values`. */
  heldBack?(teamId: TeamId): Promise<repo.HeldBack | undefined>;
  /**
   * Of the jobs of its type a claim just took (in the claim's transaction),
   * the ids it cannot let run now (a limit is reached): they go back to the
   * queue, due again shortly, and the claim does not answer them.
   */
  refuse?(tx: DbOrTx, rows: readonly repo.JobRow[]): Promise<ReadonlySet<string>>;
}

/** The agents module's word on claims made with an agent key. */
export interface ClaimGate {
  /** A paused agent's claims answer nothing at once (no long poll). */
  paused(agentId: string): Promise<boolean>;
}

/** A job another module submits in its own transaction (no idempotency key of its own: the caller's id is it). */
export interface OwnJobInput {
  type: string;
  payload: Record<string, unknown>;
  maxAttempts: number;
  timeoutSec: number;
  /** The caller's id for the job (a task's id): it finds the job by it again. */
  key: string;
}

/**
 * Work queues (Orkosi's task queue, completed): a team's named queues of
 * jobs that workers running elsewhere claim over HTTP. A claim is a lease
 * (the job's timeout_sec, renewed by heartbeats); a lease that runs out
 * puts the job back until max_attempts, then fails it: delivery is at least
 * once, so a worker's job must be safe to run twice.
 */
export class QueuesService {
  private readonly stopping = new AbortController();
  private sweepTimer: Timer | undefined;
  private sweeping = false;
  private sweepAgain = false;
  private readonly listeners = new Map<string, QueueJobListener>();
  private readonly wakeups: QueueWakeups;

  constructor(
    private readonly db: Db,
    private readonly ctx: Context,
    private readonly events: EventsService,
    private readonly options: QueueOptions = QUEUE_DEFAULTS,
    private readonly gate?: ClaimGate,
  ) {
    this.wakeups = new QueueWakeups(ctx, options.pollIntervalMs);
  }

  /** Workers' calls: team API keys with the queue scope (write and admin include it) and agent keys. */
  private worker(principal: Principal): TeamId {
    const teamId = activeTeam(principal);
    requireScope(principal, 'queue');
    return teamId;
  }

  /** Submitting: a team key or member that writes, or an agent key. */
  private submitter(principal: Principal): TeamId {
    const teamId = activeTeam(principal);
    requireScope(principal, 'write');
    return teamId;
  }

  /** Another module follows its job type's claims and ends (one listener per type). */
  listen(listener: QueueJobListener): void {
    this.listeners.set(listener.type, listener);
  }

  /** Runs `work` in a transaction and tells the listeners of the jobs it answers, in it and after the commit. */
  private async changing<T extends repo.JobRow | repo.JobRow[]>(
    work: (tx: DbOrTx) => Promise<T>,
  ): Promise<T> {
    const heard: Array<[QueueJobListener, repo.JobRow[]]> = [];
    const out = await this.db.transaction(async (tx) => {
      const result = await work(tx);
      const rows = Array.isArray(result) ? result : [result];
      for (const [type, listener] of this.listeners) {
        const mine = rows.filter((r) => r.type === type);
        if (mine.length === 0) continue;
        await listener.changed(tx, mine);
        heard.push([listener, mine]);
      }
      return result;
    });
    for (const [listener, rows] of heard)
      await listener
        .committed(rows)
        .catch((err: unknown) => this.ctx.log.warn({ err, type: listener.type }, 'a queue listener failed'));
    return out;
  }

  /**
   * A job another module submits in its own transaction (system actor), its
   * `key` as the idempotency key; call `submitted` after the commit to wake
   * long polls. Answers the job.
   */
  async submitIn(tx: DbOrTx, teamId: TeamId, queue: string, input: OwnJobInput): Promise<repo.JobRow> {
    const now = this.ctx.clock.now();
    const row = await repo.insertJob(tx, {
      id: newId('qjob'),
      teamId,
      queue,
      type: input.type,
      payload: input.payload,
      priority: 0,
      status: 'queued',
      attempts: 0,
      maxAttempts: input.maxAttempts,
      timeoutSec: input.timeoutSec,
      runAt: now,
      idempotencyKey: input.key,
      createdAt: now,
      updatedAt: now,
    });
    if (!row)
      throw new ConflictError('idempotency_conflict', `a job for ${input.key} is already in ${queue}`);
    await this.events.record(tx, {
      teamId,
      type: 'queue_job.submitted',
      actorKind: 'system',
      actorId: input.type,
      subjectId: row.id,
      data: { queue, type: row.type, priority: row.priority },
    });
    return row;
  }

  /** After a `submitIn` committed: long polls on this server look at once. */
  submitted(teamId: TeamId, queue: string): void {
    this.wakeups.wake(teamId, queue);
  }

  /** Cancels the unended job submitted with `key` (submitIn), in the caller's transaction; listeners are not told. */
  async cancelIn(tx: DbOrTx, teamId: TeamId, queue: string, key: string): Promise<repo.JobRow | undefined> {
    const job = await repo.findByIdempotencyKey(tx, teamId, queue, key);
    if (!job) return undefined;
    const cancelled = await repo.cancelJob(tx, teamId, queue, job.id, this.ctx.clock.now());
    if (cancelled)
      await this.events.record(tx, {
        teamId,
        type: 'queue_job.cancelled',
        actorKind: 'system',
        actorId: job.type,
        subjectId: cancelled.id,
        data: { queue, type: cancelled.type, from: job.status },
      });
    return cancelled;
  }

  /** The job submitted with `key`, if it is still there. */
  findOwn(teamId: TeamId, queue: string, key: string): Promise<repo.JobRow | undefined> {
    return repo.findByIdempotencyKey(this.db, teamId, queue, key);
  }

  private record(
    tx: DbOrTx,
    actor: Actor,
    teamId: TeamId,
    rows: repo.JobRow[],
    of: (row: repo.JobRow) => Omit<EventInput<EventType>, 'teamId' | 'actorKind' | 'actorId' | 'subjectId'>,
  ) {
    return this.events.recordAll(
      tx,
      rows.map((row) => ({ teamId, ...actor, subjectId: row.id, ...of(row) }) as EventInput<EventType>),
    );
  }

  async submit(principal: Principal, queue: string, input: SubmitJobInput) {
    const teamId = this.submitter(principal);
    if (this.listeners.has(input.type))
      throw new BadRequestError('reserved_type', `jobs of type ${input.type} are Paddock's own`, {
        type: input.type,
      });
    checkJsonSize(input.payload, 'payload');
    const now = this.ctx.clock.now();
    let runAt = now;
    if (input.run_at !== undefined) {
      const at = new Date(input.run_at);
      if (Number.isNaN(at.getTime()))
        throw new ValidationError('the request body is invalid: run_at is not a time', {
          run_at: 'must be a date-time',
        });
      if (at > now) runAt = at;
    }
    const outcome = await this.db.transaction(async (tx) => {
      const inserted = await repo.insertJob(tx, {
        id: newId('qjob'),
        teamId,
        queue,
        type: input.type,
        payload: input.payload ?? {},
        priority: input.priority ?? 0,
        status: 'queued',
        attempts: 0,
        maxAttempts: input.max_attempts ?? 3,
        timeoutSec: input.timeout_sec ?? 300,
        runAt,
        idempotencyKey: input.idempotency_key ?? null,
        createdAt: now,
        updatedAt: now,
      });
      if (!inserted) {
        const existing = await repo.findByIdempotencyKey(tx, teamId, queue, input.idempotency_key ?? '');
        if (!existing)
          throw new ConflictError(
            'idempotency_conflict',
            'a job with this idempotency key is being made; try again',
          );
        return { row: existing, created: false };
      }
      await this.events.record(tx, {
        teamId,
        type: 'queue_job.submitted',
        ...actorOf(principal),
        subjectId: inserted.id,
        data: { queue, type: inserted.type, priority: inserted.priority },
      });
      return { row: inserted, created: true };
    });
    if (outcome.created && outcome.row.runAt <= now) this.wakeups.wake(teamId, queue);
    return { job: jobView(outcome.row), created: outcome.created };
  }

  /**
   * Up to batch_size due jobs for this worker, always an array. With
   * nothing to claim and wait_sec given, waits for a submit on this server
   * (woken at once) or the next poll, until the wait is up or `signal` aborts.
   */
  async claim(principal: Principal, queue: string, input: ClaimInput, signal?: AbortSignal) {
    const teamId = this.worker(principal);
    if (principal.kind === 'agent' && principal.agentId && (await this.gate?.paused(principal.agentId)))
      return { data: [] };
    const limit = input.batch_size ?? 1;
    const take = async () => {
      const held = await this.heldBack(teamId);
      return this.changing(async (tx) => {
        await repo.relaxCommit(tx);
        const now = this.ctx.clock.now();
        const rows = await repo.claimJobs(tx, teamId, queue, input.worker_id, input.types, limit, now, held);
        return this.withoutRefused(tx, teamId, rows, now);
      });
    };
    let rows = await take();
    const waitSec = input.wait_sec ?? 0;
    if (rows.length === 0 && waitSec > 0) {
      const deadline = new AbortController();
      const timer = this.ctx.timers.after(waitSec * SECOND_MS, () => deadline.abort());
      const ends = [deadline.signal, this.stopping.signal, ...(signal ? [signal] : [])];
      try {
        while (rows.length === 0 && !ends.some((s) => s.aborted)) {
          await this.wakeups.wakeOrPoll(teamId, queue, ends);
          if (ends.some((s) => s.aborted)) break;
          rows = await take();
        }
      } finally {
        timer.cancel();
      }
    }
    return { data: rows.map(jobView) };
  }

  /** A claim's jobs less those a listener refuses now, which go back to the queue in the claim's transaction. */
  private async withoutRefused(
    tx: DbOrTx,
    teamId: TeamId,
    rows: repo.JobRow[],
    now: Date,
  ): Promise<repo.JobRow[]> {
    const refused = new Set<string>();
    for (const [type, listener] of this.listeners) {
      const mine = rows.filter((r) => r.type === type);
      if (mine.length === 0 || !listener.refuse) continue;
      for (const id of await listener.refuse(tx, mine)) refused.add(id);
    }
    if (refused.size === 0) return rows;
    await repo.unclaimJobs(
      tx,
      teamId,
      [...refused] as repo.JobId[],
      new Date(now.getTime() + REFUSED_RETRY_MS),
      now,
    );
    return rows.filter((r) => !refused.has(r.id));
  }

  /** What the listeners hold back from claims in this team now. */
  private async heldBack(teamId: TeamId): Promise<repo.HeldBack[]> {
    const held: repo.HeldBack[] = [];
    for (const listener of this.listeners.values()) {
      const h = await listener.heldBack?.(teamId);
      if (h && h.values.length > 0) held.push(h);
    }
    return held;
  }

  async heartbeat(principal: Principal, queue: string, id: string, input: HeartbeatInput) {
    const teamId = this.worker(principal);
    const jid = jobId(id);
    const row = await repo.extendLease(
      this.db,
      teamId,
      queue,
      jid,
      input.worker_id,
      input.extend_sec,
      this.ctx.clock.now(),
    );
    if (row) return jobView(row);
    throw await this.refusal(teamId, queue, jid, input.worker_id);
  }

  /** Why a worker's call on a job changed nothing: 404 when it is not there, else 409. */
  private async refusal(teamId: TeamId, queue: string, id: repo.JobId, workerId: string) {
    const row = await repo.findJob(this.db, teamId, queue, id);
    if (!row) return new NotFoundError('job', id);
    return notHolder(row, workerId);
  }

  async complete(principal: Principal, queue: string, id: string, input: CompleteInput) {
    const teamId = this.worker(principal);
    const jid = jobId(id);
    checkJsonSize(input.result, 'result');
    const [row] = await this.completeMany(principal, teamId, queue, input.worker_id, [
      { id: jid, result: input.result },
    ]);
    if (row) return jobView(row);
    throw await this.refusal(teamId, queue, jid, input.worker_id);
  }

  /** Many of a worker's jobs completed in one call (one statement): each either completed or rejected. */
  async completeBatch(principal: Principal, queue: string, input: CompleteManyInput) {
    const teamId = this.worker(principal);
    const ids = new Set<string>();
    const jobs: Array<{ id: repo.JobId; result: unknown }> = [];
    const rejected: Array<{ id: string; code: string }> = [];
    for (const j of input.jobs) {
      if (ids.has(j.id))
        throw new BadRequestError('duplicate_job', `job ${j.id} is in jobs twice`, { id: j.id });
      ids.add(j.id);
      checkJsonSize(j.result, 'result');
      if (isId(j.id, 'qjob')) jobs.push({ id: j.id, result: j.result });
      else rejected.push({ id: j.id, code: 'not_found' });
    }
    const done = await this.completeMany(principal, teamId, queue, input.worker_id, jobs);
    const completed = new Set<string>(done.map((r) => r.id));
    const missed = jobs.filter((j) => !completed.has(j.id));
    if (missed.length > 0) {
      const found = await Promise.all(missed.map((j) => repo.findJob(this.db, teamId, queue, j.id)));
      for (const [i, j] of missed.entries())
        rejected.push({ id: j.id, code: found[i] ? 'not_lease_holder' : 'not_found' });
    }
    const order = new Map(input.jobs.map((j, i) => [j.id, i]));
    rejected.sort((a, b) => order.get(a.id)! - order.get(b.id)!);
    return { completed: jobs.filter((j) => completed.has(j.id)).map((j) => j.id), rejected };
  }

  private async completeMany(
    principal: Principal,
    teamId: TeamId,
    queue: string,
    workerId: string,
    jobs: Array<{ id: repo.JobId; result: unknown }>,
  ): Promise<repo.JobRow[]> {
    if (jobs.length === 0) return [];
    return this.changing(async (tx) => {
      await repo.relaxCommit(tx);
      const rows = await repo.completeJobs(tx, teamId, queue, workerId, jobs, this.ctx.clock.now());
      await this.record(tx, actorOf(principal), teamId, rows, (row) => ({
        type: 'queue_job.completed',
        data: { queue, type: row.type, attempts: row.attempts, worker_id: row.workerId },
      }));
      return rows;
    });
  }

  /** A worker's failure: queued again after a backoff while attempts remain (unless retry: false), else failed. */
  async fail(principal: Principal, queue: string, id: string, input: FailInput) {
    const teamId = this.worker(principal);
    const jid = jobId(id);
    const now = this.ctx.clock.now();
    const row = await this.changing(async (tx) => {
      const current = await repo.findJob(tx, teamId, queue, jid);
      if (!current) throw new NotFoundError('job', id);
      const backoffSec = Math.min(2 ** Math.max(0, current.attempts - 1), MAX_BACKOFF_SEC);
      const retryAt = input.retry === false ? null : new Date(now.getTime() + backoffSec * SECOND_MS);
      const updated = await repo.failJob(tx, teamId, queue, jid, input.worker_id, input.error, retryAt, now);
      if (!updated) throw notHolder(current, input.worker_id);
      const data = {
        queue,
        type: updated.type,
        attempts: updated.attempts,
        worker_id: updated.workerId,
        reason: 'worker_failed',
      };
      await this.events.record(tx, {
        teamId,
        type: updated.status === 'queued' ? 'queue_job.retried' : 'queue_job.failed',
        ...actorOf(principal),
        subjectId: updated.id,
        data,
      });
      return updated;
    });
    return jobView(row);
  }

  /** Cancels a queued or active job (its worker's next heartbeat or completion gets a 409); 409 once it ended. */
  async cancel(principal: Principal, queue: string, id: string) {
    const teamId = managedTeam(principal, 'write', 'queue jobs');
    const jid = jobId(id);
    const row = await this.changing(async (tx) => {
      const current = await repo.findJob(tx, teamId, queue, jid);
      if (!current) throw new NotFoundError('job', id);
      const cancelled = await repo.cancelJob(tx, teamId, queue, jid, this.ctx.clock.now());
      if (!cancelled)
        throw new ConflictError('job_ended', `the job has already ended (${current.status})`, {
          status: current.status,
        });
      await this.events.record(tx, {
        teamId,
        type: 'queue_job.cancelled',
        ...actorOf(principal),
        subjectId: cancelled.id,
        data: { queue, type: cancelled.type, from: current.status },
      });
      return cancelled;
    });
    return jobView(row);
  }

  async get(principal: Principal, queue: string, id: string) {
    const teamId = activeTeam(principal);
    requireScope(principal, 'read');
    const row = await repo.findJob(this.db, teamId, queue, jobId(id));
    if (!row) throw new NotFoundError('job', id);
    return jobView(row);
  }

  async list(principal: Principal, queue: string, query: JobListInput) {
    const teamId = managedTeam(principal, 'read', 'queue jobs');
    return pageOf(
      query,
      (cursor, rows) =>
        repo.listJobs(this.db, teamId, queue, { status: query.status, type: query.type }, cursor, rows),
      jobView,
    );
  }

  /** The team's queues by name, each with its jobs counted by status. */
  async queues(principal: Principal, query: QueueListInput) {
    const teamId = managedTeam(principal, 'read', 'queues');
    const limit = pageLimit(query.limit);
    const rows = await repo.listQueues(this.db, teamId, decodeCursor(query.cursor), limit + 1);
    const more = rows.length > limit;
    const data = more ? rows.slice(0, limit) : rows;
    return { data, next_cursor: more ? encodeCursor(data.at(-1)!.name) : null };
  }

  async stats(principal: Principal, queue: string) {
    const teamId = managedTeam(principal, 'read', 'queues');
    const now = this.ctx.clock.now();
    const f = await repo.queueFigures(this.db, teamId, queue, now, new Date(now.getTime() - HOUR_MS));
    return {
      name: queue,
      queued: f.queued,
      active: f.active,
      completed: f.completed,
      failed: f.failed,
      cancelled: f.cancelled,
      depth: f.due,
      scheduled: f.queued - f.due,
      oldest_waiting_sec: f.oldestDueAt
        ? Math.max(0, (now.getTime() - f.oldestDueAt.getTime()) / SECOND_MS)
        : null,
      completed_last_hour: f.completedSince,
      failed_last_hour: f.failedSince,
      throughput_per_min: Math.round((f.completedSince / 60) * 100) / 100,
    };
  }

  // -- the sweep --

  start(): void {
    if (this.sweepTimer) return;
    this.sweepTimer = this.ctx.timers.every(this.options.sweepIntervalSec * SECOND_MS, () => this.tick());
  }

  /** A tick that comes while a sweep runs is not lost: the sweep runs once more when it ends. */
  private tick(): void {
    if (this.sweeping) {
      this.sweepAgain = true;
      return;
    }
    void this.sweep()
      .catch((err) => this.ctx.log.warn({ err }, 'queue sweep failed'))
      .finally(() => {
        if (!this.sweepAgain || !this.sweepTimer) return;
        this.sweepAgain = false;
        this.tick();
      });
  }

  /** Stops the sweep and ends every long poll (answered with what they have: nothing). */
  stop(): void {
    this.sweepTimer?.cancel();
    this.sweepTimer = undefined;
    this.stopping.abort();
  }

  /**
   * Jobs whose lease ran out go back to their queue (queue_job.retried) or,
   * out of attempts, fail (queue_job.failed); ended jobs past the retention
   * are deleted. Any server may run it: SKIP LOCKED splits the rows.
   */
  async sweep(): Promise<{ retried: number; failed: number; deleted: number }> {
    if (this.sweeping) return { retried: 0, failed: 0, deleted: 0 };
    this.sweeping = true;
    try {
      let retried = 0;
      let failed = 0;
      for (;;) {
        const now = this.ctx.clock.now();
        const rows = await this.changing(async (tx) => {
          const expired = await repo.systemExpireLeases(tx, now, SWEEP_BATCH);
          await this.events.recordAll(
            tx,
            expired.map((row) => ({
              teamId: row.teamId,
              type: row.status === 'queued' ? ('queue_job.retried' as const) : ('queue_job.failed' as const),
              actorKind: 'system',
              actorId: 'queue_sweep',
              subjectId: row.id,
              data: {
                queue: row.queue,
                type: row.type,
                attempts: row.attempts,
                worker_id: row.workerId,
                reason: 'lease_expired',
              },
            })),
          );
          return expired;
        });
        for (const row of rows) {
          if (row.status === 'queued') {
            retried++;
            this.wakeups.wake(row.teamId, row.queue);
          } else failed++;
        }
        if (rows.length < SWEEP_BATCH) break;
      }
      let deleted = 0;
      if (this.options.retentionDays > 0) {
        const cutoff = new Date(this.ctx.clock.now().getTime() - this.options.retentionDays * DAY_MS);
        deleted = await repo.systemDeleteEndedBefore(this.db, cutoff, SWEEP_BATCH);
      }
      return { retried, failed, deleted };
    } finally {
      this.sweeping = false;
    }
  }
}
