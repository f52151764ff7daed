import type { Context } from '../../core/context.ts';
import type { TeamId } from '../../core/ids.ts';
import { storableText } from '../../core/input-guard.ts';
import { type Db, type DbOrTx, oneTransactionAtATime } from '../../db/client.ts';
import type { EventMap, EventsService, EventType } from '../events/service.ts';
import type { HeldBack, JobRow } from '../queues/repo.ts';
import type { QueueJobListener, QueuesService } from '../queues/service.ts';
import { validateResult } from './output-schema.ts';
import type { TaskPorts } from './ports.ts';
import * as repo from './repo.ts';
import type { TasksService } from './service.ts';

/** The job type of a task sent to a work queue. */
export const TASK_JOB_TYPE = 'paddock.task';
/** Where a worker sends its model calls (relative: the worker knows the server), and the header naming the task's run. */
const GATEWAY_BASE_PATH = '/v1';
const RUN_HEADER = 'x-paddock-run-id';
/** A worker that dies or fails holding the job leaves it to be claimed again this many times in all. */
export const TASK_JOB_MAX_ATTEMPTS = 3;

type Ending = {
  status: 'completed' | 'failed' | 'cancelled';
  result?: unknown;
  error?: repo.TaskRow['error'];
};

/** What the job's end means for its task; undefined while the job may run again. */
function endingOf(job: JobRow, task: repo.TaskRow): Ending | undefined {
  if (job.status === 'cancelled')
    return { status: 'cancelled', error: { code: 'cancelled', message: `its job ${job.id} was cancelled` } };
  if (job.status === 'failed')
    return {
      status: 'failed',
      error: { code: 'queue_job_failed', message: `job ${job.id}: ${job.error ?? 'failed'}` },
    };
  if (job.status !== 'completed') return undefined;
  if (task.outputSchema) {
    const verdict = validateResult(task.outputSchema, job.result);
    if (!verdict.ok)
      return {
        status: 'failed',
        error: { code: 'invalid_result', message: `the worker's result: ${verdict.message}` },
      };
  }
  return { status: 'completed', result: job.result };
}

/**
 * Tasks run by a team's own workers: the task's job (`paddock.task`) is
 * written to its queue with the task, and the task follows the job — claimed:
 * running; completed: completed with the worker's result (checked against
 * output_schema); failed past its attempts or cancelled: failed or cancelled.
 * The worker calls models with its own agent key, naming the task's run
 * (started at submit), so the gateway governs and records them there.
 */
export class QueueTaskRunner implements QueueJobListener {
  readonly type = TASK_JOB_TYPE;
  /** Transactions run one at a time (the embedded database): the agents' locks order nothing there. */
  private readonly serialized: boolean;

  constructor(
    private readonly db: Db,
    private readonly ctx: Context,
    private readonly events: EventsService,
    private readonly tasks: TasksService,
    private readonly ports: TaskPorts,
    private readonly queues: QueuesService,
    /** The team's paused agents (the agents module's presence): their tasks' jobs wait. */
    private readonly pausedAgents: (teamId: TeamId) => Promise<readonly string[]> = async () => [],
  ) {
    this.serialized = oneTransactionAtATime(db);
    queues.listen(this);
    tasks.attachQueue(this);
  }

  /** A paused agent's tasks wait in their queue, whoever claims (docs/queues.md, "Agents' presence"). */
  async heldBack(teamId: TeamId): Promise<HeldBack | undefined> {
    const values = await this.pausedAgents(teamId);
    return values.length > 0 ? { type: TASK_JOB_TYPE, field: 'agent_id', values } : undefined;
  }

  /**
   * Of the task jobs a claim took, those whose agent already runs as many
   * tasks as its concurrency_limit (carried in the job, from the version the
   * task pins): they wait in the queue, like a Paddock-run task that finds its
   * agent busy. The agents' task locks are taken in id order, so two claims
   * cannot wait on each other (on Postgres; see `serialized`).
   */
  async refuse(tx: DbOrTx, rows: readonly JobRow[]): Promise<ReadonlySet<string>> {
    const limited = rows.filter(
      (j) => typeof j.payload.agent_id === 'string' && typeof j.payload.concurrency_limit === 'number',
    );
    const held = new Map<string, number>();
    for (const agentId of [...new Set(limited.map((j) => j.payload.agent_id as string))].sort()) {
      if (!this.serialized) await repo.lockAgentTasks(tx, limited[0]!.teamId, agentId);
      held.set(agentId, await repo.countHeldOfAgent(tx, limited[0]!.teamId, agentId));
    }
    const refused = new Set<string>();
    for (const job of limited) {
      const agentId = job.payload.agent_id as string;
      const running = held.get(agentId) ?? 0;
      if (running >= (job.payload.concurrency_limit as number)) refused.add(job.id);
      else held.set(agentId, running + 1);
    }
    return refused;
  }

  /** Writes the task's job in the task's transaction: what the worker needs, never a secret. */
  async send(
    tx: DbOrTx,
    task: repo.TaskRow,
    inputFiles: Array<{ id: string; name: string }>,
    concurrencyLimit: number,
  ): Promise<void> {
    // Called in the submitting request's context; a worker that sends it on its model calls joins that trace.
    const traceparent = this.ctx.tracer.traceparent();
    await this.queues.submitIn(tx, task.teamId, task.runnerQueue!, {
      type: TASK_JOB_TYPE,
      key: task.id,
      maxAttempts: TASK_JOB_MAX_ATTEMPTS,
      timeoutSec: task.timeoutSec,
      payload: {
        task_id: task.id,
        agent_id: task.agentId,
        agent_version: task.agentVersion,
        // The agent's tasks running at once, held at claims (refuse).
        concurrency_limit: concurrencyLimit,
        run_id: task.runId,
        prompt: task.prompt,
        model: task.model,
        max_turns: task.maxTurns,
        timeout_sec: task.timeoutSec,
        output_schema: task.outputSchema ?? null,
        input_files: inputFiles,
        gateway: { base_path: GATEWAY_BASE_PATH, run_header: RUN_HEADER },
        ...(traceparent ? { traceparent } : {}),
      },
    });
  }

  /** After the task's commit: long polls on this server claim it at once. */
  sent(task: repo.TaskRow): void {
    this.queues.submitted(task.teamId, task.runnerQueue!);
  }

  /** The task was cancelled (in `tx`): its job is too, so its worker's next call gets a 409. */
  async cancel(tx: DbOrTx, task: repo.TaskRow): Promise<void> {
    await this.queues.cancelIn(tx, task.teamId, task.runnerQueue!, task.id);
  }

  async changed(tx: DbOrTx, rows: readonly JobRow[]): Promise<void> {
    const now = this.ctx.clock.now();
    for (const job of rows) {
      const id = job.idempotencyKey as repo.TaskId | null;
      const task = id ? await repo.findTask(tx, job.teamId, id) : undefined;
      // Only the task's own job (its queue, its id) moves it.
      if (!task || task.runnerQueue !== job.queue) continue;
      if (job.status === 'active') {
        const row = await repo.claimTask(tx, task.teamId, task.id, now, null);
        if (!row) continue;
        await this.tasks.log.append(tx, row.teamId, row, [
          {
            type: 'status',
            payload: { status: 'running', attempt: row.attempt, run_id: row.runId, job_id: job.id },
          },
        ]);
        await this.system(tx, row, 'task.started', {
          agent_id: row.agentId,
          attempt: row.attempt,
          run_id: row.runId ?? '',
        });
        continue;
      }
      const ending = endingOf(job, task);
      if (ending) await this.end(tx, task, ending, now);
    }
  }

  private async end(tx: DbOrTx, task: repo.TaskRow, ending: Ending, now: Date): Promise<void> {
    const row = await repo.updateUnfinished(tx, task.teamId, task.id, {
      status: ending.status,
      result: ending.status === 'completed' ? storableText(ending.result ?? null) : null,
      error: ending.error ?? null,
      finishedAt: now,
      updatedAt: now,
    });
    if (!row) return;
    await this.tasks.log.append(tx, row.teamId, row, [
      {
        type: 'status',
        payload: { status: ending.status, ...(ending.error ? { error: ending.error } : {}) },
      },
    ]);
    // The run's cost is known once it ended, after this commit: it is on the task then, not in the event.
    const base = { agent_id: row.agentId, run_id: row.runId, cost_usd: 0, turns: 0 };
    if (ending.status === 'completed') await this.system(tx, row, 'task.completed', base);
    else if (ending.status === 'failed')
      await this.system(tx, row, 'task.failed', { ...base, code: ending.error?.code ?? 'failed' });
    else await this.system(tx, row, 'task.cancelled', { agent_id: row.agentId, from: task.status });
  }

  /** After the commit: an ended task's run ends too, and its totals come onto the task. */
  async committed(rows: readonly JobRow[]): Promise<void> {
    for (const job of rows) {
      if (!job.idempotencyKey || job.status === 'queued') continue;
      const task = await repo.findTask(this.db, job.teamId, job.idempotencyKey as repo.TaskId);
      if (!task || task.runnerQueue !== job.queue) continue;
      this.tasks.log.wake(task);
      if (repo.FINAL_STATUSES.includes(task.status as never)) await this.ended(task);
    }
  }

  /** An ended task's run ends with it; the run's totals are written onto the task. */
  async ended(task: repo.TaskRow): Promise<void> {
    if (!task.runId) return;
    const totals = await this.ports.runs.end(
      task.teamId,
      task.runId,
      task.status === 'completed' ? 'success' : 'failed',
      `task_${task.status}`,
    );
    if (!totals) return;
    await repo.updateTotals(this.db, task.teamId, task.id, task.attempt, {
      turns: task.turns,
      inputTokens: totals.inputTokens,
      outputTokens: totals.outputTokens,
      costMicros: totals.costMicros,
      sandboxMs: 0,
      updatedAt: this.ctx.clock.now(),
    });
  }

  /** A task.* event in the outbox, in the transaction of the change it reports. */
  private system<T extends EventType & `task.${string}`>(
    tx: DbOrTx,
    task: repo.TaskRow,
    type: T,
    data: EventMap[T],
  ): Promise<void> {
    return this.events.record(tx, {
      teamId: task.teamId,
      actorKind: 'system',
      actorId: 'queue_runner',
      subjectId: task.id,
      type,
      data,
    });
  }
}
