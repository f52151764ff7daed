// One file over 400 lines: a task's claim, its run, its end and the
// sweep that takes back a lost worker's task share one state machine and one
// set of guards on the task row; they are read together.
import type { Context, Timer } from '../../core/context.ts';
import { newId, type TeamId } from '../../core/ids.ts';
import { storableText } from '../../core/input-guard.ts';
import { ATTR, errorType, type Span } from '../../core/tracing.ts';
import { type Db, type DbOrTx, oneTransactionAtATime, sideBySide } from '../../db/client.ts';
import { type Jobs, JobsStopping, type QueuePolicy } from '../../jobs/jobs.ts';
import type { EventMap, EventsService, EventType } from '../events/service.ts';
import { TaskEnd } from './agent-loop.ts';
import { Attempt, type EarlyReads, type Ending } from './attempt.ts';
import * as logRepo from './event-log-repo.ts';
import type { ToolSource } from './loop-tools.ts';
import type { AgentForTask, LocalStart, TaskPorts } from './ports.ts';
import * as repo from './repo.ts';
import type { TasksService } from './service.ts';
import type { WorkspaceEvents } from './sessions.ts';

export const TASK_QUEUE = 'task-run';
/**
 * No pg-boss retry: the runner's own heartbeat finds a lost worker's task
 * (sweep) and starts it once more. The job's expiry (pg-boss allows just
 * under 24 h) only frees a hung worker's slot; a task's own timeout ends it
 * first (a 24 h timeout_sec is held to a minute before the job's expiry).
 */
export const TASK_POLICY: QueuePolicy = { retryLimit: 0, retryDelaySec: 0, expireInSec: 86_340 };
const LONGEST_TIMEOUT_SEC = TASK_POLICY.expireInSec - 60;

export interface RunnerOptions {
  /** Tasks one server runs at once. */
  concurrency: number;
  heartbeatMs: number;
  /** A task whose worker has not beaten for this long is lost. */
  lostAfterMs: number;
  sweepEveryMs: number;
  /** Starts of a task (the first, and one more after a lost worker). */
  maxAttempts: number;
  capsuleStartTimeoutMs: number;
  /** Output files a task may leave, and their bytes in all. */
  maxOutputFiles: number;
  maxOutputBytes: number;
}

export const DEFAULT_RUNNER_OPTIONS: RunnerOptions = {
  concurrency: 8,
  heartbeatMs: 5_000,
  lostAfterMs: 30_000,
  sweepEveryMs: 10_000,
  maxAttempts: 2,
  capsuleStartTimeoutMs: 60_000,
  maxOutputFiles: 100,
  maxOutputBytes: 256 * 1024 * 1024,
};

/**
 * The runner's timings from the two settings an operator gives: a worker
 * beats six times within the time after which it counts as lost, and the
 * sweep looks three times within it.
 */
export function runnerTimings(concurrency: number, lostAfterSec: number): Partial<RunnerOptions> {
  const lostAfterMs = lostAfterSec * 1000;
  return {
    concurrency,
    lostAfterMs,
    heartbeatMs: Math.max(300, Math.round(lostAfterMs / 6)),
    sweepEveryMs: Math.max(500, Math.round(lostAfterMs / 3)),
  };
}

/** How long a job whose agent is at its concurrency limit waits before it looks again. */
const BUSY_RETRY_SEC = 2;

/** What a claim needs besides the task row, looked up before its transaction. */
interface ClaimInputs {
  agent: AgentForTask | undefined;
  policy: { id: string; name: string; spec: object } | undefined;
  /** Read before the claim's transaction, or (a reservation on Postgres) beside it, on another connection. */
  teamLimit: Promise<number | undefined>;
}

interface TaskJob {
  task_id: string;
  team_id: string;
  /** The submit request's span (W3C traceparent): the task's spans continue its trace. */
  traceparent?: string;
}

/**
 * Runs tasks: a task submitted to a server with a free slot is run there at
 * once (its committed row is its durable record), any other as a pg-boss
 * job. Either way a worker claims the task (the claim takes only a queued
 * task, so it runs once) and starts the agent loop at once, while the capsule
 * starts beside it (the first model call does not wait for the capsule). A
 * heartbeat marks the task as held; a task whose heartbeat stops is started
 * once more, then failed `worker_lost`; a queued task nobody took is sent again.
 */
export class TaskRunner {
  private readonly inHand = new Map<string, AbortController>();
  private sweepTimer: Timer | undefined;
  private readonly options: RunnerOptions;
  /** Whether this server runs tasks (start() was called, stop() not yet). */
  private working = false;
  /** Whether the database runs one transaction at a time (the embedded one): claims need no lock there. */
  private readonly serialized: boolean;
  /** Tasks in hand on this server, however they came (at most `concurrency`). */
  private slotsTaken = 0;
  /** Jobs fetched while every slot was taken (by tasks run at once), each waiting for one. */
  private readonly slotWaiters: Array<() => void> = [];

  constructor(
    private readonly db: Db,
    private readonly ctx: Context,
    private readonly events: EventsService,
    private readonly tasks: TasksService,
    private readonly ports: TaskPorts,
    private readonly jobs: Jobs,
    options: Partial<RunnerOptions> = {},
    /** Tools beyond the built-ins (memory, skills, web_fetch, MCP servers, sub-agents). */
    private readonly toolSources: readonly ToolSource[] = [],
  ) {
    this.options = { ...DEFAULT_RUNNER_OPTIONS, ...options };
    this.serialized = oneTransactionAtATime(db);
    tasks.attach({
      reserve: (teamId, agentId, version) => this.reserve(teamId, agentId, version),
      dispatch: (task) => this.dispatch(task),
      cancelled: (taskId) =>
        this.inHand.get(taskId)?.abort(new TaskEnd('cancelled', 'cancelled', 'cancelled')),
    });
  }

  async declare(): Promise<void> {
    await this.jobs.declare(TASK_QUEUE, TASK_POLICY);
  }

  /** Works the queue on this server, takes tasks submitted here, and starts the lost-worker sweep. */
  async start(): Promise<void> {
    for (let i = 0; i < this.options.concurrency; i++)
      await this.jobs.work<TaskJob>(TASK_QUEUE, TASK_POLICY, async (job) => {
        if (!(await this.takeSlot(job.signal))) return;
        try {
          await this.handle(job.data, job.signal);
        } finally {
          this.releaseSlot();
        }
      });
    this.working = true;
    this.sweepTimer = this.ctx.timers.every(this.options.sweepEveryMs, () => {
      void this.sweep().catch((err: unknown) => this.ctx.log.warn({ err }, 'the task sweep failed'));
    });
  }

  /** Takes no more tasks submitted here and stops the sweep (the jobs stop with the server's Jobs). */
  stop(): void {
    this.working = false;
    this.sweepTimer?.cancel();
    this.sweepTimer = undefined;
  }

  /**
   * A slot on this server for a task about to be submitted here, and what its
   * claim needs: the claim then goes in the task's own transaction, right
   * after its insert, so it starts with no transaction of its own (and no job).
   * On Postgres the reads that the claim and the attempt's start need (the
   * team's limit, the agent's secrets, its environment) go out now, on other
   * connections, and are answered while the transaction's statements run.
   * Undefined when this server takes no tasks now or every slot is taken: the
   * task is dispatched after its commit.
   */
  async reserve(teamId: TeamId, agentId: string, agentVersion: number): Promise<LocalStart | undefined> {
    if (!this.working || this.slotsTaken >= this.options.concurrency) return undefined;
    // Taken before the lookups, so two submits at once cannot both take the last slot.
    this.slotsTaken++;
    // Called in the submitting request's context: its span is the task's parent.
    const traceparent = this.ctx.tracer.traceparent();
    let inputs: ClaimInputs;
    try {
      inputs = await this.claimInputs(teamId, agentId, agentVersion, !this.serialized);
    } catch (err) {
      // The task is submitted all the same; dispatch looks again after its commit.
      this.releaseSlot();
      this.ctx.log.warn(
        { err },
        'looking up what a task’s claim needs failed; it is dispatched after its commit',
      );
      return undefined;
    }
    // On Postgres what the attempt's start reads is read now, beside the transaction (the embedded
    // database answers one statement at a time, and from memory).
    const early = this.serialized ? undefined : this.earlyReads(teamId, inputs.agent);
    let claimed: repo.TaskRow | 'busy' | undefined;
    let settled = false;
    const settle = () => {
      if (settled) throw new Error('a reserved slot was settled twice');
      settled = true;
    };
    return {
      claim: async (tx, task, ahead) => {
        claimed = await this.claimIn(tx, task, inputs, true, ahead);
        return claimed !== undefined && claimed !== 'busy' ? claimed : undefined;
      },
      committed: (task) => {
        settle();
        if (claimed !== undefined && claimed !== 'busy') {
          const row = claimed;
          this.claimed(row);
          this.jobs.runHere(`task ${row.id}`, async (signal) => {
            try {
              await this.run(row, inputs.agent, signal, traceparent, early);
            } finally {
              this.releaseSlot();
            }
          });
          return;
        }
        // At its agent's (or team's) limit: it waits as a job, like one a worker found busy.
        this.releaseSlot();
        void this.enqueue(
          task.teamId,
          task.id,
          claimed === 'busy' ? BUSY_RETRY_SEC : undefined,
          traceparent,
        ).catch((err: unknown) =>
          this.ctx.log.warn(
            { err, task_id: task.id },
            'sending a task’s job failed; the sweep sends it again',
          ),
        );
      },
      rolledBack: () => {
        settle();
        this.releaseSlot();
      },
    };
  }

  /**
   * A task whose row just committed, queued (no slot was reserved for it):
   * run on this server at once when it has a free slot (no job: the send, the
   * worker's fetch and its read of the row are skipped), else sent as a job.
   * A crash before the claim leaves the task queued, and the sweep sends it again.
   */
  async dispatch(task: repo.TaskRow): Promise<void> {
    // Called in the submitting request's context: its span is the task's parent, wherever it runs.
    const traceparent = this.ctx.tracer.traceparent();
    if (this.working && this.slotsTaken < this.options.concurrency) {
      this.slotsTaken++;
      this.jobs.runHere(`task ${task.id}`, async (signal) => {
        try {
          await this.handleRow(task, signal, traceparent);
        } catch (err) {
          // Before the claim (a lookup, the claim's transaction): the task is still queued, so a job
          // takes it now rather than the sweep a minute later. After the claim, run() ends it itself.
          this.ctx.log.warn({ err, task_id: task.id }, 'starting a task here failed; sent as a job');
          if (!signal.aborted) await this.enqueue(task.teamId, task.id, undefined, traceparent);
        } finally {
          this.releaseSlot();
        }
      });
      return;
    }
    await this.enqueue(task.teamId, task.id, undefined, traceparent);
  }

  /** A slot for a job's task: at once, or once a task in hand ends; false when the server stops first. */
  private takeSlot(signal: AbortSignal): Promise<boolean> {
    if (this.slotsTaken < this.options.concurrency) {
      this.slotsTaken++;
      return Promise.resolve(true);
    }
    return new Promise((resolve) => {
      const handOver = () => {
        signal.removeEventListener('abort', onAbort);
        resolve(true);
      };
      const onAbort = () => {
        this.slotWaiters.splice(this.slotWaiters.indexOf(handOver), 1);
        resolve(false);
      };
      signal.addEventListener('abort', onAbort, { once: true });
      this.slotWaiters.push(handOver);
    });
  }

  /** A task ended: its slot goes to a job waiting for one, or is free. */
  private releaseSlot(): void {
    const next = this.slotWaiters.shift();
    if (next) next();
    else this.slotsTaken--;
  }

  async enqueue(teamId: TeamId, taskId: string, startAfterSec?: number, traceparent?: string): Promise<void> {
    await this.jobs.declare(TASK_QUEUE, TASK_POLICY);
    await this.jobs.send<TaskJob>(
      TASK_QUEUE,
      { task_id: taskId, team_id: teamId, ...(traceparent ? { traceparent } : {}) },
      startAfterSec ? { startAfterSec } : undefined,
    );
  }

  /** The job's handler: claims the task (within its agent's concurrency limit) and runs it. */
  async handle(data: TaskJob, signal: AbortSignal): Promise<void> {
    const id = data.task_id as repo.TaskId;
    const task = await repo.findTask(this.db, data.team_id as TeamId, id);
    if (task) await this.handleRow(task, signal, data.traceparent);
  }

  /** Claims the task (within its agent's concurrency limit) and runs it; a task no longer queued is left alone. */
  private async handleRow(task: repo.TaskRow, signal: AbortSignal, traceparent?: string): Promise<void> {
    const { teamId, id } = task;
    // A stopping server claims nothing: the claim would spend one of the task's attempts.
    if (task.status !== 'queued' || signal.aborted) return;
    const inputs = await this.claimInputs(teamId, task.agentId, task.agentVersion);
    const claimed = await this.db.transaction((tx) => this.claimIn(tx, task, inputs, false));
    if (claimed === 'busy') {
      // Touched, so the sweep does not take the waiting task's job for a lost one and send another.
      await repo.updateUnfinished(
        this.db,
        teamId,
        id,
        { updatedAt: this.ctx.clock.now() },
        { statuses: ['queued'] },
      );
      await this.enqueue(teamId, id, BUSY_RETRY_SEC, traceparent);
      return;
    }
    if (!claimed) return;
    this.claimed(claimed);
    await this.run(claimed, inputs.agent, signal, traceparent);
  }

  /**
   * What a claim needs: the agent version and its policy, looked up before its
   * transaction, and the team's limit, read before it too or (`beside`) left
   * in flight for the claim to await inside it.
   */
  private async claimInputs(
    teamId: TeamId,
    agentId: string,
    agentVersion: number,
    beside = false,
  ): Promise<ClaimInputs> {
    const teamLimit = this.ports.teamTaskLimit(teamId);
    // Awaited by the claim only: no unhandled rejection while the agent is looked up.
    teamLimit.catch(() => undefined);
    const agent = await this.ports.agent(teamId, agentId, agentVersion);
    const policy = agent ? await this.ports.policy(teamId, agent.policyId) : undefined;
    if (!beside) await teamLimit;
    return { agent, policy, teamLimit };
  }

  /**
   * queued → running in `tx`, unless the agent already runs as many tasks as
   * its concurrency_limit allows (or the team its limit); in the same
   * transaction the task's run starts (one run for every attempt: named on
   * the row at its first claim) and the start is logged (`fresh`: the task was
   * inserted in `tx`, so its queued status is logged here too, in the same
   * append, after its turn's `ahead`). An agent or policy gone since submission leaves no run: the
   * attempt fails the task. The caller wakes the followers after the commit
   * (claimed).
   */
  private async claimIn(
    tx: DbOrTx,
    task: repo.TaskRow,
    { agent, policy, teamLimit: limitRead }: ClaimInputs,
    fresh: boolean,
    ahead: WorkspaceEvents = [],
  ): Promise<repo.TaskRow | 'busy' | undefined> {
    const teamLimit = await limitRead;
    const limit = agent?.definition.concurrency_limit ?? 1;
    const runId = agent && policy ? (task.runId ?? newId('run')) : null;
    // The count and the claim under the agent's lock (none needed where transactions run one at a time).
    if (!this.serialized) await repo.lockAgentTasks(tx, task.teamId, task.agentId);
    // The team's limit (set by a platform admin), over all its agents: the agent's lock first, then the team's.
    if (teamLimit !== undefined) {
      if (!this.serialized) await repo.lockTeamTasks(tx, task.teamId);
      if ((await repo.countHeldOfTeam(tx, task.teamId)) >= teamLimit) return 'busy';
    }
    // The agent's count is in the claim's statement; only a claim that took nothing asks which stopped it.
    const row = await repo.claimTask(tx, task.teamId, task.id, this.ctx.clock.now(), runId, {
      agentId: task.agentId,
      limit,
    });
    if (!row)
      return (await repo.countHeldOfAgent(tx, task.teamId, task.agentId)) >= limit ? 'busy' : undefined;
    if (agent && policy && row.runId)
      await this.ports.runs.start(
        {
          id: row.runId,
          teamId: row.teamId,
          agent: { id: agent.id, name: agent.name },
          policy,
          name: `task ${row.id}`,
          metadata: { task_id: row.id },
          maxBudgetMicros: row.maxBudgetMicros,
          // The id made for this claim is the one the row took: no run of it can exist yet.
          isNew: task.runId === null && row.runId === runId,
        },
        tx,
      );
    const running = {
      type: 'status',
      payload: { status: 'running', attempt: row.attempt, run_id: row.runId },
    } as const;
    await sideBySide(
      this.serialized,
      () =>
        this.tasks.log.append(
          tx,
          row.teamId,
          row,
          fresh ? [{ type: 'status', payload: { status: 'queued' } }, running] : [running],
          undefined,
          ahead,
        ),
      () =>
        this.recordEvent(tx, row, 'task.started', {
          agent_id: row.agentId,
          attempt: row.attempt,
          run_id: row.runId ?? '',
        }),
    );
    return row;
  }

  /** The secrets and environment of an agent version, read ahead of its attempt (EarlyReads). */
  private earlyReads(teamId: TeamId, agent: AgentForTask | undefined): EarlyReads | undefined {
    const versionId = agent?.definition.environment_version_id;
    if (!agent || !versionId) return undefined;
    const reads: EarlyReads = {
      agentId: agent.id,
      secrets: this.ports.secrets(teamId, agent.id),
      environmentVersionId: versionId,
      environment: this.ports.environment(teamId, versionId),
    };
    // Unread when the claim is refused (or the transaction fails): no unhandled rejection.
    reads.secrets.catch(() => undefined);
    reads.environment.catch(() => undefined);
    return reads;
  }

  /** After a claim's commit: its followers read the start, and its wait in the queue is measured. */
  private claimed(row: repo.TaskRow): void {
    this.tasks.log.wake(row);
    // Its wait in the queue: from submission to its first start (a second start follows a lost worker).
    if (row.attempt === 1 && row.startedAt)
      this.ctx.metrics?.taskStarted(row.startedAt.getTime() - row.createdAt.getTime());
  }

  /** One attempt of the task, from its start; whatever happens, it ends in a final status or is left for the sweep. */
  private async run(
    task: repo.TaskRow,
    agent: AgentForTask | undefined,
    jobSignal: AbortSignal,
    traceparent: string | undefined,
    early?: EarlyReads,
  ): Promise<void> {
    // The attempt's span (invoke_agent, GenAI's name for an agent's run): a child of the submit
    // request's span, or a trace of its own (a retry after a lost worker, a playbook's fire).
    const tracer = this.ctx.tracer;
    const span = tracer.start(agent ? `invoke_agent ${agent.name}` : 'invoke_agent', {
      parent: traceparent ?? null,
      attributes: {
        [ATTR.genAiOperationName]: 'invoke_agent',
        [ATTR.genAiAgentId]: task.agentId,
        [ATTR.genAiAgentName]: agent?.name,
        'paddock.task.id': task.id,
        'paddock.task.attempt': task.attempt,
        'paddock.run.id': task.runId ?? undefined,
      },
    });
    try {
      await tracer.within(span, () => this.runAttempt(task, agent, jobSignal, span, early));
    } catch (err) {
      span.fail(errorType(err));
      throw err;
    } finally {
      span.end();
    }
  }

  private async runAttempt(
    task: repo.TaskRow,
    agent: AgentForTask | undefined,
    jobSignal: AbortSignal,
    span: Span,
    early: EarlyReads | undefined,
  ): Promise<void> {
    const abort = new AbortController();
    const onJob = () => abort.abort(jobSignal.reason);
    jobSignal.addEventListener('abort', onJob, { once: true });
    if (jobSignal.aborted) onJob();
    this.inHand.set(task.id, abort);
    const timeout = this.ctx.timers.after(Math.min(task.timeoutSec, LONGEST_TIMEOUT_SEC) * 1000, () =>
      abort.abort(new TaskEnd('timeout', `the task ran past its timeout_sec (${task.timeoutSec})`)),
    );
    // Durations (the timeout's seconds left, the capsule's running time) on the monotonic clock.
    const startedMs = performance.now();
    const attempt = new Attempt(
      {
        db: this.db,
        outbox: this.events,
        ctx: this.ctx,
        ports: this.ports,
        log: this.tasks.log,
        toolSources: this.toolSources,
        options: this.options,
        sessions: this.tasks.sessions,
      },
      task,
      agent,
      abort.signal,
      startedMs,
      early,
    );
    const heartbeat = this.ctx.timers.every(this.options.heartbeatMs, () => {
      void repo
        .beat(this.db, task.teamId, task.id, task.attempt, this.ctx.clock.now())
        .then((mine) => {
          if (!mine) abort.abort(new TaskEnd('gone', 'the task is no longer this worker’s', 'cancelled'));
          else void attempt.chargeSandbox();
        })
        .catch((err: unknown) => this.ctx.log.warn({ err, task_id: task.id }, 'a task heartbeat failed'));
    });
    let stopping = false;
    try {
      const ending = await attempt.run();
      span.set({ 'paddock.task.status': ending.status, 'paddock.task.turns': attempt.turns });
      if (ending.status === 'failed') span.fail(ending.error?.code ?? 'failed');
      await this.finish(task, attempt, ending, startedMs);
    } catch (err) {
      // The server is stopping: the task is given back below, once its capsule is gone.
      stopping = jobSignal.reason instanceof JobsStopping;
      if (stopping) return;
      this.ctx.log.error({ err, task_id: task.id }, 'a task attempt failed unexpectedly');
      span.fail('internal_error');
      await this.finish(
        task,
        attempt,
        {
          status: 'failed',
          error: { code: 'internal_error', message: 'the task failed inside Paddock; see the server log' },
        },
        startedMs,
      );
    } finally {
      timeout.cancel();
      heartbeat.cancel();
      jobSignal.removeEventListener('abort', onJob);
      this.inHand.delete(task.id);
      await attempt.cleanUp();
      await attempt.stopped();
      if (stopping)
        await this.release(task, attempt).catch((err: unknown) =>
          // Still held: the sweep takes it back after PADDOCK_TASK_LOST_AFTER_SEC.
          this.ctx.log.warn({ err, task_id: task.id }, 'a stopping worker could not give its task back'),
        );
    }
  }

  /**
   * A stopping worker gives its task back: queued again for its next attempt
   * in the same run, its job sent, so another worker starts it at once
   * rather than the sweep after PADDOCK_TASK_LOST_AFTER_SEC. Only while this
   * attempt still holds it; the attempt is not counted as lost (sweep).
   */
  private async release(task: repo.TaskRow, attempt: Attempt): Promise<void> {
    const now = this.ctx.clock.now();
    const released = await this.db.transaction(async (tx) => {
      const row = await repo.updateUnfinished(
        tx,
        task.teamId,
        task.id,
        {
          status: 'queued',
          heartbeatAt: null,
          // A workspace's capsule is the workspace's: its next attempt goes on in it.
          ...(task.workspaceId ? {} : { capsuleId: null }),
          turns: attempt.turns,
          sandboxMs: attempt.sandboxMs,
          updatedAt: now,
        },
        { statuses: repo.HELD_STATUSES, attempt: task.attempt },
      );
      if (!row) return undefined;
      await this.tasks.log.append(tx, task.teamId, task, [
        {
          type: 'status',
          payload: { status: 'queued', retry_of_attempt: task.attempt, reason: logRepo.RELEASED_REASON },
        },
      ]);
      await this.recordEvent(tx, task, 'task.retried', {
        agent_id: task.agentId,
        attempt: task.attempt + 1,
        reason: logRepo.RELEASED_REASON,
      });
      return row;
    });
    if (!released) return;
    this.tasks.log.wake(task);
    await this.enqueue(task.teamId, task.id);
  }

  /** Writes the task's end (once: an ended task keeps its end), with its totals from the run. */
  private async finish(
    task: repo.TaskRow,
    attempt: Attempt,
    ending: Ending,
    startedMs: number,
  ): Promise<void> {
    await attempt.cleanUp();
    // A workspace's run goes on after its turn: the turn's totals are what its own steps cost.
    const totals = !attempt.runId
      ? undefined
      : task.workspaceId
        ? await this.ports.runs.flushSteps().then(() => attempt.spent)
        : await this.ports.runs.end(
            task.teamId,
            attempt.runId,
            ending.status === 'completed' ? 'success' : 'failed',
            ending.status === 'completed' ? 'task_completed' : `task_${ending.status}`,
          );
    const now = this.ctx.clock.now();
    const endedHere = await this.db.transaction(async (tx) => {
      const patch: repo.TaskPatch = {
        turns: attempt.turns,
        inputTokens: totals?.inputTokens ?? 0,
        outputTokens: totals?.outputTokens ?? 0,
        costMicros: totals?.costMicros ?? 0,
        sandboxMs: attempt.sandboxMs,
        updatedAt: now,
      };
      // A cancel already ended the task: only its totals are written.
      const ended = await repo.updateUnfinished(
        tx,
        task.teamId,
        task.id,
        {
          ...patch,
          status: ending.status,
          result: storableText(ending.result ?? null),
          error: ending.error ?? null,
          finishedAt: now,
        },
        { statuses: repo.HELD_STATUSES, attempt: task.attempt },
      );
      if (!ended) {
        await repo.updateTotals(tx, task.teamId, task.id, task.attempt, patch);
        return false;
      }
      await this.tasks.log.append(tx, task.teamId, task, [
        {
          type: 'status',
          payload: { status: ending.status, ...(ending.error ? { error: ending.error } : {}) },
        },
      ]);
      const cost = (totals?.costMicros ?? 0) / 1_000_000;
      if (ending.status === 'completed')
        await this.recordEvent(tx, task, 'task.completed', {
          agent_id: task.agentId,
          run_id: attempt.runId ?? null,
          cost_usd: cost,
          turns: attempt.turns,
        });
      else if (ending.status === 'failed')
        await this.recordEvent(tx, task, 'task.failed', {
          agent_id: task.agentId,
          run_id: attempt.runId ?? null,
          code: ending.error?.code ?? 'failed',
          cost_usd: cost,
          turns: attempt.turns,
        });
      return true;
    });
    this.tasks.log.wake(task);
    if (endedHere) this.ctx.metrics?.taskEnded(ending.status, performance.now() - startedMs);
    if (task.workspaceId)
      await this.tasks.sessions?.turnEnded(task.teamId, task.workspaceId, {
        taskId: task.id,
        prompt: task.prompt,
        status: ending.status,
        ...(ending.error ? { error: ending.error } : {}),
        ...(ending.status === 'completed' && attempt.conversation ? { messages: attempt.conversation } : {}),
        model: this.ports.resolveModel(task.model),
      });
  }

  /** A task.* event in the outbox, in the transaction of the change it reports. */
  private recordEvent<T extends EventType & `task.${string}`>(
    tx: DbOrTx,
    task: { teamId: TeamId; id: string },
    type: T,
    data: EventMap[T],
  ): Promise<void> {
    return this.events.record(tx, {
      teamId: task.teamId,
      actorKind: 'system',
      actorId: 'task_runner',
      subjectId: task.id,
      type,
      data,
    });
  }

  /**
   * A lost worker's task: taken back first (only while its worker is still
   * silent, so a worker that was only slow keeps it), then its capsule is
   * stopped; queued again for its next attempt in the same run, or, after the
   * last, failed worker_lost with its run ended and its totals written.
   */
  private async recover(t: repo.TaskRow, silentSince: Date, now: Date): Promise<void> {
    // Attempts a stopping worker gave back were not lost: only lost ones count toward the limit.
    const lost = t.attempt - (await logRepo.countReleases(this.db, t.teamId, t));
    const retry = lost < this.options.maxAttempts;
    const error = {
      code: 'worker_lost',
      message: `the worker running the task stopped responding (attempt ${lost} of ${this.options.maxAttempts})`,
    };
    const taken = await this.db.transaction(async (tx) => {
      const row = await repo.updateUnfinished(
        tx,
        t.teamId,
        t.id,
        retry
          ? { status: 'queued', heartbeatAt: null, capsuleId: null, updatedAt: now }
          : { status: 'failed', error, finishedAt: now, updatedAt: now },
        { statuses: repo.HELD_STATUSES, attempt: t.attempt, silentSince },
      );
      if (!row) return undefined;
      await this.tasks.log.append(tx, t.teamId, t, [
        {
          type: 'status',
          payload: retry
            ? { status: 'queued', retry_of_attempt: t.attempt, reason: 'worker_lost' }
            : { status: 'failed', error },
        },
      ]);
      if (retry)
        await this.recordEvent(tx, t, 'task.retried', {
          agent_id: t.agentId,
          attempt: t.attempt + 1,
          reason: 'worker_lost',
        });
      return row;
    });
    if (!taken) return;
    this.tasks.log.wake(t);
    // A workspace's capsule is the workspace's: its next attempt (or turn) goes on in it.
    if (t.capsuleId && !t.workspaceId)
      await this.ports.capsules.destroy(t.teamId, `task:${t.id}`, t.capsuleId).catch(() => undefined);
    if (retry) {
      await this.enqueue(t.teamId, t.id);
      return;
    }
    if (t.workspaceId)
      await this.tasks.sessions?.turnEnded(t.teamId, t.workspaceId, {
        taskId: t.id,
        prompt: t.prompt,
        status: 'failed',
        error,
        model: this.ports.resolveModel(t.model),
      });
    const totals =
      t.runId && !t.workspaceId
        ? await this.ports.runs.end(t.teamId, t.runId, 'failed', 'worker_lost')
        : undefined;
    await this.db.transaction(async (tx) => {
      await repo.updateTotals(tx, t.teamId, t.id, t.attempt, {
        turns: t.turns,
        inputTokens: totals?.inputTokens ?? t.inputTokens,
        outputTokens: totals?.outputTokens ?? t.outputTokens,
        costMicros: totals?.costMicros ?? t.costMicros,
        sandboxMs: t.sandboxMs,
        updatedAt: now,
      });
      await this.recordEvent(tx, t, 'task.failed', {
        agent_id: t.agentId,
        run_id: t.runId,
        code: 'worker_lost',
        cost_usd: (totals?.costMicros ?? t.costMicros) / 1e6,
        turns: t.turns,
      });
    });
  }

  /**
   * Tasks whose worker stopped beating: started once more (queued again, a
   * new job), or failed `worker_lost` after the last attempt. Queued tasks
   * whose job was lost (a send after commit that never happened) are sent again.
   */
  async sweep(now = this.ctx.clock.now()): Promise<void> {
    const stale = await repo.systemStaleTasks(
      this.db,
      new Date(now.getTime() - this.options.lostAfterMs),
      50,
    );
    for (const t of stale) {
      if (this.inHand.has(t.id)) continue;
      const silentSince = new Date(now.getTime() - this.options.lostAfterMs);
      await this.recover(t, silentSince, now).catch((err: unknown) =>
        this.ctx.log.warn({ err, task_id: t.id }, 'recovering a lost worker’s task failed'),
      );
    }
    const queued = await repo.systemQueuedBefore(
      this.db,
      new Date(now.getTime() - 2 * this.options.lostAfterMs),
      50,
    );
    for (const t of queued) {
      await repo.updateUnfinished(this.db, t.teamId, t.id, { updatedAt: now }, { statuses: ['queued'] });
      await this.enqueue(t.teamId, t.id);
    }
  }
}
