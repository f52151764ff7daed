import type { Context, Timer } from '../../core/context.ts';
import type { AgentId, RunId, TeamId } from '../../core/ids.ts';
import type { Db } from '../../db/client.ts';
import { type Jobs, JobsStopping, type QueuePolicy } from '../../jobs/jobs.ts';
import type { EventsService } from '../events/service.ts';
import { SecretRedactor } from '../secrets/redact.ts';
import { AgentLoop, TaskEnd } from './agent-loop.ts';
import type { TaskEventType } from './event-log.ts';
import { checkOutputs } from './output-policy.ts';
import type { AgentForTask, TaskCapsule, TaskPorts } from './ports.ts';
import * as repo from './repo.ts';
import type { TasksService } from './service.ts';
import { CapsuleGone, type ToolCapsule } from './tools.ts';
import { collectOutputs, prepareWorkspace, WorkspaceError } from './workspace.ts';

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

/** How long a job whose agent is at its concurrency limit waits before it looks again. */
const BUSY_RETRY_SEC = 2;

interface TaskJob {
  task_id: string;
  team_id: string;
}

/** The task's end as the runner decides it. */
interface Ending {
  status: 'completed' | 'failed' | 'cancelled';
  result?: unknown;
  error?: { code: string; message: string };
}

/**
 * Runs tasks as pg-boss jobs: a worker claims the task and starts the agent
 * loop at once, while the capsule starts beside it (the first model call does
 * not wait for the capsule). A heartbeat marks the task as held; a task whose
 * heartbeat stops is started once more, then failed `worker_lost`.
 */
export class TaskRunner {
  private readonly inHand = new Map<string, AbortController>();
  private sweepTimer: Timer | undefined;
  private readonly options: RunnerOptions;

  constructor(
    private readonly db: Db,
    private readonly ctx: Context,
    private readonly events: EventsService,
    private readonly tasks: TasksService,
    private readonly ports: TaskPorts,
    private readonly jobs: Jobs,
    options: Partial<RunnerOptions> = {},
  ) {
    this.options = { ...DEFAULT_RUNNER_OPTIONS, ...options };
    tasks.attach({
      enqueue: (teamId, taskId) => this.enqueue(teamId, taskId),
      cancelled: (taskId) =>
        this.inHand.get(taskId)?.abort(new TaskEnd('cancelled', 'cancelled', 'cancelled')),
    });
  }

  async declare(): Promise<void> {
    await this.jobs.declare(TASK_QUEUE, TASK_POLICY);
  }

  /** Works the queue on this server and starts the lost-worker sweep. */
  async start(): Promise<void> {
    for (let i = 0; i < this.options.concurrency; i++)
      await this.jobs.work<TaskJob>(TASK_QUEUE, TASK_POLICY, (job) => this.handle(job.data, job.signal));
    this.sweepTimer = this.ctx.timers.every(this.options.sweepEveryMs, () => {
      void this.sweep().catch((err: unknown) => this.ctx.log.warn({ err }, 'the task sweep failed'));
    });
  }

  stopSweeps(): void {
    this.sweepTimer?.cancel();
    this.sweepTimer = undefined;
  }

  async enqueue(teamId: TeamId, taskId: string, startAfterSec?: number): Promise<void> {
    await this.jobs.declare(TASK_QUEUE, TASK_POLICY);
    await this.jobs.send<TaskJob>(
      TASK_QUEUE,
      { task_id: taskId, team_id: teamId },
      startAfterSec ? { startAfterSec } : undefined,
    );
  }

  /** The job's handler: claims the task (within its agent's concurrency limit) and runs it. */
  async handle(data: TaskJob, signal: AbortSignal): Promise<void> {
    const teamId = data.team_id as TeamId;
    const id = data.task_id as repo.TaskId;
    const task = await repo.findTask(this.db, teamId, id);
    if (task?.status !== 'queued') return;
    const agent = await this.ports.agent(teamId, task.agentId, task.agentVersion);
    const claimed = await this.claim(task, agent?.definition.concurrency_limit ?? 1);
    if (claimed === 'busy') {
      await this.enqueue(teamId, id, BUSY_RETRY_SEC);
      return;
    }
    if (!claimed) return;
    await this.run(claimed, agent, signal);
  }

  /** queued → running, unless the agent already runs as many tasks as its concurrency_limit allows. */
  private claim(task: repo.TaskRow, limit: number): Promise<repo.TaskRow | 'busy' | undefined> {
    return this.db.transaction(async (tx) => {
      await repo.lockAgentTasks(tx, task.teamId, task.agentId);
      if ((await repo.countHeldOfAgent(tx, task.teamId, task.agentId)) >= limit) return 'busy' as const;
      return repo.claimTask(tx, task.teamId, task.id, this.ctx.clock.now());
    });
  }

  /** One attempt of the task, from its start; whatever happens, it ends in a final status or is left for the sweep. */
  private async run(
    task: repo.TaskRow,
    agent: AgentForTask | undefined,
    jobSignal: AbortSignal,
  ): Promise<void> {
    const abort = new AbortController();
    const onJob = () => abort.abort(jobSignal.reason);
    jobSignal.addEventListener('abort', onJob, { once: true });
    this.inHand.set(task.id, abort);
    const timeout = this.ctx.timers.after(Math.min(task.timeoutSec, LONGEST_TIMEOUT_SEC) * 1000, () =>
      abort.abort(new TaskEnd('timeout', `the task ran past its timeout_sec (${task.timeoutSec})`)),
    );
    const heartbeat = this.ctx.timers.every(this.options.heartbeatMs, () => {
      void repo
        .beat(this.db, task.teamId, task.id, task.attempt, this.ctx.clock.now())
        .then((mine) => {
          if (!mine) abort.abort(new TaskEnd('gone', 'the task is no longer this worker’s', 'cancelled'));
        })
        .catch((err: unknown) => this.ctx.log.warn({ err, task_id: task.id }, 'a task heartbeat failed'));
    });
    // Durations (the timeout's seconds left, the capsule's running time) on the monotonic clock.
    const startedMs = performance.now();
    const attempt = new Attempt(this, task, agent, abort.signal, startedMs);
    try {
      const ending = await attempt.run();
      await this.finish(task, attempt, ending);
    } catch (err) {
      // The server is stopping: the task stays held and the sweep starts it again elsewhere.
      if (jobSignal.reason instanceof JobsStopping) return;
      this.ctx.log.error({ err, task_id: task.id }, 'a task attempt failed unexpectedly');
      await this.finish(task, attempt, {
        status: 'failed',
        error: { code: 'internal_error', message: 'the task failed inside Paddock; see the server log' },
      });
    } finally {
      timeout.cancel();
      heartbeat.cancel();
      jobSignal.removeEventListener('abort', onJob);
      this.inHand.delete(task.id);
      await attempt.cleanUp();
    }
  }

  /** Writes the task's end (once: an ended task keeps its end), with its totals from the run. */
  private async finish(task: repo.TaskRow, attempt: Attempt, ending: Ending): Promise<void> {
    await attempt.cleanUp();
    const totals = attempt.runId
      ? await this.ports.runs.end(
          task.teamId,
          attempt.runId,
          ending.status === 'completed' ? 'success' : 'failed',
          ending.status === 'completed' ? 'task_completed' : `task_${ending.status}`,
        )
      : undefined;
    const now = this.ctx.clock.now();
    await this.db.transaction(async (tx) => {
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
          result: ending.result ?? null,
          error: ending.error ?? null,
          finishedAt: now,
        },
        { statuses: repo.HELD_STATUSES, attempt: task.attempt },
      );
      if (!ended) {
        await repo.updateTotals(tx, task.teamId, task.id, task.attempt, patch);
        return;
      }
      await this.tasks.log.append(tx, task.teamId, task.id, [
        {
          type: 'status',
          payload: { status: ending.status, ...(ending.error ? { error: ending.error } : {}) },
        },
      ]);
      const cost = (totals?.costMicros ?? 0) / 1_000_000;
      if (ending.status === 'completed')
        await this.events.record(tx, {
          teamId: task.teamId,
          actorKind: 'system',
          actorId: 'task_runner',
          subjectId: task.id,
          type: 'task.completed',
          data: {
            agent_id: task.agentId,
            run_id: attempt.runId ?? null,
            cost_usd: cost,
            turns: attempt.turns,
          },
        });
      else if (ending.status === 'failed')
        await this.events.record(tx, {
          teamId: task.teamId,
          actorKind: 'system',
          actorId: 'task_runner',
          subjectId: task.id,
          type: 'task.failed',
          data: {
            agent_id: task.agentId,
            run_id: attempt.runId ?? null,
            code: ending.error?.code ?? 'failed',
            cost_usd: cost,
            turns: attempt.turns,
          },
        });
    });
    this.tasks.log.wake(task.id);
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
      const retry = t.attempt < this.options.maxAttempts;
      if (t.runId)
        await this.ports.runs.end(t.teamId, t.runId, 'failed', 'worker_lost').catch(() => undefined);
      if (t.capsuleId)
        await this.ports.capsules.destroy(t.teamId, `task:${t.id}`, t.capsuleId).catch(() => undefined);
      const error = {
        code: 'worker_lost',
        message: `the worker running the task stopped responding (attempt ${t.attempt} of ${this.options.maxAttempts})`,
      };
      const changed = await this.db.transaction(async (tx) => {
        const row = await repo.updateUnfinished(
          tx,
          t.teamId,
          t.id,
          retry
            ? { status: 'queued', heartbeatAt: null, runId: null, capsuleId: null, updatedAt: now }
            : { status: 'failed', error, finishedAt: now, updatedAt: now },
          { statuses: repo.HELD_STATUSES, attempt: t.attempt },
        );
        if (!row) return undefined;
        await this.tasks.log.append(tx, t.teamId, t.id, [
          {
            type: 'status',
            payload: retry
              ? { status: 'queued', retry_of_attempt: t.attempt, reason: 'worker_lost' }
              : { status: 'failed', error },
          },
        ]);
        await this.events.record(
          tx,
          retry
            ? {
                teamId: t.teamId,
                actorKind: 'system',
                actorId: 'task_runner',
                subjectId: t.id,
                type: 'task.retried',
                data: { agent_id: t.agentId, attempt: t.attempt + 1, reason: 'worker_lost' },
              }
            : {
                teamId: t.teamId,
                actorKind: 'system',
                actorId: 'task_runner',
                subjectId: t.id,
                type: 'task.failed',
                data: {
                  agent_id: t.agentId,
                  run_id: t.runId,
                  code: 'worker_lost',
                  cost_usd: t.costMicros / 1e6,
                  turns: t.turns,
                },
              },
        );
        return row;
      });
      if (changed && retry) await this.enqueue(t.teamId, t.id);
      this.tasks.log.wake(t.id);
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

  /** For an attempt: its ports, context and the service's log. */
  get parts() {
    return { db: this.db, ctx: this.ctx, ports: this.ports, log: this.tasks.log, options: this.options };
  }
}

/** One attempt of one task: the run, the capsule, the loop. */
class Attempt {
  runId: RunId | undefined;
  turns = 0;
  sandboxMs = 0;
  private capsule: Promise<TaskCapsule> | undefined;
  /** The capsule once it started (cleanUp stops it even when the loop never asked for it). */
  private started: TaskCapsule | undefined;
  private capsuleStartedMs: number | undefined;
  private cleaned = false;

  constructor(
    private readonly runner: TaskRunner,
    private readonly task: repo.TaskRow,
    private readonly agent: AgentForTask | undefined,
    private readonly signal: AbortSignal,
    private readonly startedMs: number,
  ) {}

  private get p() {
    return this.runner.parts;
  }

  private actor(): string {
    return `task:${this.task.id}`;
  }

  private async event(type: TaskEventType, payload: Record<string, unknown>): Promise<void> {
    // After a cancel or the timeout the loop may still be finishing a call: nothing it says is logged.
    if (this.signal.aborted) throw this.signal.reason;
    await this.p.log.append(this.p.db, this.task.teamId, this.task.id, [{ type, payload }]);
  }

  private async setStatus(
    status: 'running' | 'awaiting_approval',
    payload: Record<string, unknown>,
  ): Promise<void> {
    const { db, ctx, log } = this.p;
    await db.transaction(async (tx) => {
      const row = await repo.updateUnfinished(
        tx,
        this.task.teamId,
        this.task.id,
        { status, updatedAt: ctx.clock.now() },
        { statuses: repo.HELD_STATUSES, attempt: this.task.attempt },
      );
      if (!row) throw new TaskEnd('gone', 'the task is no longer this worker’s', 'cancelled');
      await log.append(tx, this.task.teamId, this.task.id, [
        { type: 'status', payload: { status, ...payload } },
      ]);
    });
  }

  async run(): Promise<Ending> {
    const { ports } = this.p;
    const t = this.task;
    try {
      const agent = this.agent;
      if (!agent)
        throw new TaskEnd('agent_missing', `agent ${t.agentId} version ${t.agentVersion} no longer exists`);
      const policy = await ports.policy(t.teamId, agent.policyId);
      if (!policy) throw new TaskEnd('policy_missing', `agent ${agent.name} has no usable policy`);
      this.runId = await ports.runs.start({
        teamId: t.teamId,
        agent: { id: agent.id, name: agent.name },
        policy,
        name: `task ${t.id}`,
        metadata: { task_id: t.id, attempt: t.attempt },
        maxBudgetMicros: t.maxBudgetMicros,
      });
      await this.recordStart();
      const secrets = await ports.secrets(t.teamId, agent.id);
      const env = t.environmentVersionId
        ? await ports.environment(t.teamId, t.environmentVersionId)
        : undefined;
      if (env?.status !== 'ready' || !env.template)
        throw new TaskEnd(
          'environment_not_ready',
          `environment version ${t.environmentVersionId} is not ready`,
        );
      const inputs = [...new Set([...t.inputFileIds, ...agent.definition.reference_file_ids])];
      // The capsule starts now, beside the first model call; the first tool call waits for it.
      this.capsule = this.startCapsule(
        env.template,
        [...new Set([...env.networkAllow, ...agent.definition.egress])],
        inputs,
      );
      this.capsule.catch(() => undefined);
      const tools: () => Promise<ToolCapsule> = async () => (await this.capsule!).tools;
      const loop = new AgentLoop(
        this.p.ctx,
        ports,
        {
          teamId: t.teamId,
          taskId: t.id,
          agentId: agent.id,
          runId: this.runId,
          model: ports.resolveModel(t.model),
          prompt: t.prompt,
          definition: agent.definition,
          maxTurns: t.maxTurns,
          outputSchema: t.outputSchema ?? null,
          inputFiles: inputs,
          capsule: tools,
          envs: { ...env.envVars, ...Object.fromEntries(secrets.map((s) => [s.name, s.value])) },
          redactor: new SecretRedactor(secrets),
          secondsLeft: () => t.timeoutSec - (performance.now() - this.startedMs) / 1000,
          signal: this.signal,
        },
        {
          event: (type, payload) => this.event(type, payload),
          storeOutput: (name, text) => this.storeToolOutput(name, text),
          turn: (n) => {
            this.turns = n;
          },
          awaitingApproval: (ids, toolNames) =>
            this.setStatus('awaiting_approval', { approval_ids: ids, tools: toolNames }),
          resumed: () => this.setStatus('running', {}),
        },
      );
      const { result, turns } = await raceAbort(loop.run(), this.signal);
      this.turns = turns;
      await this.keepOutputs(agent.definition.output_policy);
      return { status: 'completed', result };
    } catch (err) {
      const reason = this.signal.aborted ? this.signal.reason : err;
      if (reason instanceof JobsStopping) throw reason;
      if (reason instanceof TaskEnd)
        return {
          status: reason.status,
          error: { code: reason.code, message: reason.message },
        };
      if (reason instanceof CapsuleGone)
        return {
          status: 'failed',
          error: { code: 'capsule_lost', message: `the task’s capsule stopped running: ${reason.message}` },
        };
      if (reason instanceof WorkspaceError)
        return { status: 'failed', error: { code: reason.code, message: reason.message } };
      throw reason;
    }
  }

  private async recordStart(): Promise<void> {
    const { db, ctx, log } = this.p;
    const now = ctx.clock.now();
    await db.transaction(async (tx) => {
      const row = await repo.updateUnfinished(
        tx,
        this.task.teamId,
        this.task.id,
        { runId: this.runId, updatedAt: now },
        { statuses: repo.HELD_STATUSES, attempt: this.task.attempt },
      );
      if (!row) throw new TaskEnd('gone', 'the task is no longer this worker’s', 'cancelled');
      await log.append(tx, this.task.teamId, this.task.id, [
        { type: 'status', payload: { status: 'running', attempt: this.task.attempt, run_id: this.runId } },
      ]);
    });
  }

  private async startCapsule(
    template: string,
    networkAllow: string[],
    fileIds: string[],
  ): Promise<TaskCapsule> {
    const { ports, db } = this.p;
    const t = this.task;
    const [capsule, files] = await Promise.all([
      ports.capsules.start(t.teamId, this.actor(), {
        template,
        networkAllow,
        metadata: { task_id: t.id },
        timeoutMs: this.p.options.capsuleStartTimeoutMs,
      }),
      Promise.all(fileIds.map((id) => ports.readFile(t.teamId, id))),
    ]).catch((err: unknown) => {
      if (err instanceof TaskEnd) throw err;
      throw new TaskEnd('capsule_failed', `the task’s capsule did not start: ${messageOf(err)}`);
    });
    this.capsuleStartedMs = performance.now();
    this.started = capsule;
    await repo.updateUnfinished(
      db,
      t.teamId,
      t.id,
      { capsuleId: capsule.id },
      { statuses: repo.HELD_STATUSES, attempt: t.attempt },
    );
    await prepareWorkspace(capsule.tools, files);
    await this.event('capsule', { capsule_id: capsule.id, template, input_files: files.map((f) => f.name) });
    return capsule;
  }

  private async storeToolOutput(name: string, text: string): Promise<string> {
    const { ports, db, ctx } = this.p;
    const data = Buffer.from(text, 'utf8');
    const fileId = await ports.writeFile(this.task.teamId, this.actor(), { name, data });
    await repo.insertTaskFile(db, {
      taskId: this.task.id,
      fileId: fileId as repo.TaskFileRow['fileId'],
      teamId: this.task.teamId,
      kind: 'tool_output',
      path: name,
      sizeBytes: data.length,
      createdAt: ctx.clock.now(),
    });
    return fileId;
  }

  /** Keeps /workspace/outputs as the task's files, checked against the agent's output policy. */
  private async keepOutputs(policy: Parameters<typeof checkOutputs>[0]): Promise<void> {
    const capsule = this.capsule ? await this.capsule : undefined;
    const { options, ports, db, ctx } = this.p;
    const outputs = capsule
      ? await collectOutputs(capsule.tools, {
          maxFiles: options.maxOutputFiles,
          maxBytes: options.maxOutputBytes,
        })
      : [];
    const problem = checkOutputs(
      policy,
      outputs.map((o) => o.path),
    );
    if (problem) throw new TaskEnd('output_policy', problem);
    const kept: Array<{ file_id: string; path: string; size_bytes: number }> = [];
    for (const o of outputs) {
      const fileId = await ports.writeFile(this.task.teamId, this.actor(), { name: o.name, data: o.data });
      await repo.insertTaskFile(db, {
        taskId: this.task.id,
        fileId: fileId as repo.TaskFileRow['fileId'],
        teamId: this.task.teamId,
        kind: 'output',
        path: o.path,
        sizeBytes: o.data.length,
        createdAt: ctx.clock.now(),
      });
      kept.push({ file_id: fileId, path: o.path, size_bytes: o.data.length });
    }
    if (kept.length > 0) await this.event('output_files', { files: kept });
  }

  /** Stops the capsule and charges its time to the run (once). */
  async cleanUp(): Promise<void> {
    if (this.cleaned) return;
    this.cleaned = true;
    const { ports, ctx } = this.p;
    const capsule = this.started ?? (await this.capsule?.catch(() => undefined));
    if (!capsule) return;
    await ports.capsules
      .destroy(this.task.teamId, this.actor(), capsule.id)
      .catch((err: unknown) =>
        ctx.log.warn({ err, capsule_id: capsule.id }, 'a task capsule could not be removed'),
      );
    this.sandboxMs = Math.max(
      0,
      Math.round(performance.now() - (this.capsuleStartedMs ?? performance.now())),
    );
    if (this.runId)
      await ports.runs
        .chargeSandbox({
          teamId: this.task.teamId,
          runId: this.runId,
          agentId: this.task.agentId as AgentId,
          capsuleId: capsule.id,
          seconds: this.sandboxMs / 1000,
          vcpus: capsule.vcpus,
          memoryMb: capsule.memoryMb,
        })
        .catch((err: unknown) =>
          ctx.log.warn({ err, task_id: this.task.id }, 'charging a task’s sandbox time failed'),
        );
  }
}

/** Settles with the promise, or rejects with the signal's reason as soon as it aborts. */
function raceAbort<T>(promise: Promise<T>, signal: AbortSignal): Promise<T> {
  if (signal.aborted) return Promise.reject(signal.reason);
  return new Promise<T>((resolve, reject) => {
    const onAbort = () => reject(signal.reason);
    signal.addEventListener('abort', onAbort, { once: true });
    promise.then(
      (v) => {
        signal.removeEventListener('abort', onAbort);
        resolve(v);
      },
      (e) => {
        signal.removeEventListener('abort', onAbort);
        reject(e);
      },
    );
  });
}

function messageOf(err: unknown): string {
  return err instanceof Error ? err.message : String(err);
}
