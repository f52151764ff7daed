import type { Context } from '../../core/context.ts';
import { BadRequestError, ConflictError, NotFoundError } from '../../core/errors.ts';
import { idOrNotFound, isId, newId, type TeamId } from '../../core/ids.ts';
import { pageOf } from '../../core/pagination.ts';
import { type Db, type DbOrTx, oneTransactionAtATime, sideBySide } from '../../db/client.ts';
import type { EventsService } from '../events/service.ts';
import type { FileDownload } from '../files/service.ts';
import { actorOf, managedTeam, type Principal } from '../identity/principal.ts';
import { TaskEventLog } from './event-log.ts';
import { checkOutputSchema } from './output-schema.ts';
import type { TaskPorts, TaskQueueRunner, TaskWorkers } from './ports.ts';
import * as repo from './repo.ts';
import type { CreateTaskInput, TaskListQueryType } from './schemas.ts';
import type { NextTurn, SessionHooks } from './sessions.ts';
import { taskEventView, taskFileView, taskView } from './views.ts';

const taskId = (raw: string) => idOrNotFound(raw, 'task', 'task');

/**
 * Tasks (Vonzio, AgentContainer): a prompt handed to an agent version, run by
 * the runner (runner.ts) in a capsule. Submission checks everything a worker
 * would trip on later (the agent, its keys, its environment's build, the
 * files, the output schema), so bad input is a 4xx now, not a failed task.
 */
export class TasksService {
  readonly log: TaskEventLog;
  private workers: TaskWorkers | undefined;
  private queueRunner: TaskQueueRunner | undefined;
  /** The workspaces module's side of session tasks (attached once it is built). */
  sessions: SessionHooks | undefined;

  constructor(
    private readonly db: Db,
    private readonly ctx: Context,
    private readonly outbox: EventsService,
    private readonly ports: TaskPorts,
  ) {
    this.log = new TaskEventLog(db, ctx);
  }

  /** The runner, once built (it needs this service too). */
  attach(workers: TaskWorkers): void {
    this.workers = workers;
  }

  attachQueue(runner: TaskQueueRunner): void {
    this.queueRunner = runner;
  }

  attachSessions(sessions: SessionHooks): void {
    this.sessions = sessions;
  }

  private team(principal: Principal, need: 'read' | 'write'): TeamId {
    return managedTeam(principal, need, 'tasks');
  }

  /**
   * Checks and queues a task. A session task opens a workspace, or, with
   * `turn` (a workspace's message), continues one: `turn` runs in the task's
   * transaction (it may refuse: the workspace is busy) and names the workspace.
   */
  async submit(
    principal: Principal,
    input: CreateTaskInput,
    turn?: (tx: DbOrTx, teamId: TeamId, taskId: string) => NextTurn,
  ) {
    const teamId = this.team(principal, 'write');
    const agent = await this.ports.agent(teamId, input.agent_id, input.agent_version);
    if (!agent) {
      if (input.agent_version !== undefined && (await this.ports.agent(teamId, input.agent_id)))
        throw new NotFoundError('agent version', `${input.agent_id} v${input.agent_version}`);
      throw new NotFoundError('agent', input.agent_id);
    }
    if (agent.status === 'disabled')
      throw new ConflictError(
        'agent_disabled',
        `agent ${agent.name} is disabled; enable it to give it tasks`,
        {
          agent_id: agent.id,
        },
      );
    const def = agent.definition;
    const model = input.model ?? def.model;
    if (!model)
      throw new BadRequestError(
        'model_required',
        `version ${agent.version} of agent ${agent.name} names no model; set the agent's model or give one with the task`,
      );
    if ((await this.ports.usableKeyCount(teamId, agent.id)) === 0)
      throw new ConflictError(
        'no_provider_key',
        `agent ${agent.name} has no usable provider key; bind an active one to it`,
        { agent_id: agent.id },
      );
    const queue = input.runner?.queue;
    if (queue !== undefined && (input.mode ?? 'batch') !== 'batch')
      throw new BadRequestError('runner_mode', 'a task sent to a queue runs in batch mode only', {
        mode: input.mode,
      });
    if (queue !== undefined && !this.queueRunner)
      throw new BadRequestError('queues_unavailable', 'this server does not send tasks to queues');
    // A queue's worker runs the task on its own machine: no capsule, so no environment to wait for.
    const env =
      queue === undefined ? await this.ports.environment(teamId, def.environment_version_id) : undefined;
    if (queue === undefined && env?.status !== 'ready') {
      const which = `version ${def.environment_version} of environment ${def.environment_id}`;
      const details = {
        environment_id: def.environment_id,
        environment_version_id: def.environment_version_id,
        status: env?.status ?? 'missing',
      };
      if (env?.status === 'failed')
        throw new ConflictError(
          'environment_build_failed',
          `${which} failed to build (${env.error?.code ?? 'unknown'}); fix it and pin a version that builds`,
          details,
        );
      throw new ConflictError(
        'environment_not_ready',
        env ? `${which} is ${env.status}; wait for its build` : `${which} no longer exists`,
        details,
      );
    }
    if (input.output_schema !== undefined) {
      const problem = checkOutputSchema(input.output_schema);
      if (problem)
        throw new BadRequestError(
          'invalid_output_schema',
          `output_schema is not a valid JSON Schema: ${problem}`,
        );
    }
    const refusal = await this.ports.modelRefusal(teamId, agent.policyId, this.ports.resolveModel(model));
    if (refusal) throw new BadRequestError('model_not_allowed', refusal, { model });
    const fileIds = input.input_file_ids ?? [];
    const unknown = await this.ports.unknownFiles(teamId, [...fileIds, ...def.reference_file_ids]);
    const badInputs = unknown.filter((id) => fileIds.includes(id));
    if (badInputs.length > 0)
      throw new BadRequestError('invalid_file', `${badInputs.join(', ')} is not a file of this team`, {
        input_file_ids: badInputs,
      });
    if (unknown.length > 0)
      throw new ConflictError(
        'reference_file_missing',
        `version ${agent.version} of agent ${agent.name} names reference files that were deleted: ${unknown.join(', ')}`,
        { reference_file_ids: unknown },
      );

    // A queue's task: its run starts with it (its worker names it on every model call) and its files go by name.
    const policy = queue === undefined ? undefined : await this.ports.policy(teamId, agent.policyId);
    if (queue !== undefined && !policy) throw new NotFoundError('policy', agent.policyId);
    const inputFiles =
      queue === undefined
        ? []
        : await Promise.all(
            fileIds.map(async (id) => ({ id, name: (await this.ports.fileName(teamId, id)) ?? id })),
          );

    const now = this.ctx.clock.now();
    const actor = actorOf(principal);
    const maxBudget = input.max_budget_usd ?? def.max_budget_usd;
    const sessions = this.sessions;
    if (input.mode === 'session' && !sessions)
      throw new BadRequestError('sessions_unavailable', 'this server does not run workspaces');
    // A task this server can start at once is claimed in its own transaction (no second one, no job).
    const here =
      queue === undefined ? await this.workers?.reserve(teamId, agent.id, agent.version) : undefined;
    const submitted = this.db.transaction(async (tx) => {
      const id = newId('task');
      const next = input.mode === 'session' ? turn?.(tx, teamId, id) : undefined;
      const session =
        input.mode !== 'session'
          ? undefined
          : (next ??
            (await sessions!.open(tx, {
              teamId,
              taskId: id,
              agent,
              createdBy: actor.actorId,
              allowedTools: input.allowed_tools ?? null,
            })));
      const runId = policy
        ? await this.ports.runs.start(
            {
              id: newId('run'),
              teamId,
              agent: { id: agent.id, name: agent.name },
              policy,
              name: `task ${id}`,
              metadata: { task_id: id },
              maxBudgetMicros: maxBudget === null ? null : Math.round(maxBudget * 1_000_000),
            },
            tx,
          )
        : null;
      // Its outbox row goes with the insert (one statement fewer on the way to the task's start).
      const created = this.outbox.alongside(tx, [
        {
          teamId,
          ...actor,
          subjectId: id,
          type: 'task.created',
          data: { agent_id: agent.id, agent_version: agent.version, model },
        },
      ]);
      // A message's turn begins beside the insert (neither reads what the other writes).
      const insert = () =>
        repo.insertTask(
          tx,
          {
            id,
            workspaceId: session?.workspaceId ?? null,
            runId: session?.runId ?? runId,
            runnerQueue: queue ?? null,
            teamId,
            agentId: agent.id,
            agentVersion: agent.version,
            environmentVersionId: def.environment_version_id,
            model,
            prompt: input.prompt,
            mode: input.mode ?? 'batch',
            status: 'queued',
            maxTurns: input.max_turns ?? def.max_turns,
            maxBudgetMicros: maxBudget === null ? null : Math.round(maxBudget * 1_000_000),
            timeoutSec: input.timeout_sec ?? def.timeout_sec,
            outputSchema: input.output_schema ?? null,
            allowedTools: input.allowed_tools ? [...new Set(input.allowed_tools)] : null,
            inputFileIds: fileIds,
            metadata: input.metadata ?? {},
            createdBy: actor.actorId,
            createdAt: now,
            updatedAt: now,
          },
          created,
        );
      const [row, ahead] = next
        ? await sideBySide(oneTransactionAtATime(this.db), insert, next.begin)
        : [await insert(), []];
      const claimed = await here?.claim(tx, row, ahead);
      if (claimed) return claimed;
      await this.log.append(
        tx,
        teamId,
        row,
        [{ type: 'status', payload: { status: 'queued' } }],
        undefined,
        ahead,
      );
      if (queue !== undefined) await this.queueRunner!.send(tx, row, inputFiles, def.concurrency_limit);
      return row;
    });
    const task = await submitted.catch((err: unknown) => {
      here?.rolledBack();
      throw err;
    });
    if (here) {
      here.committed(task);
      return taskView(task);
    }
    if (queue !== undefined) {
      this.queueRunner!.sent(task);
      return taskView(task);
    }
    // A lost send is not a lost task: the runner's sweep sends queued tasks again.
    await this.workers
      ?.dispatch(task)
      .catch((err: unknown) =>
        this.ctx.log.warn({ err, task_id: task.id }, 'sending a task’s job failed; the sweep sends it again'),
      );
    return taskView(task);
  }

  async list(principal: Principal, q: TaskListQueryType) {
    const teamId = this.team(principal, 'read');
    const filter: repo.TaskFilter = {
      ...(q.agent_id !== undefined ? { agentId: q.agent_id } : {}),
      ...(q.status !== undefined ? { status: q.status } : {}),
      ...(q.created_after !== undefined ? { createdAfter: new Date(q.created_after) } : {}),
      ...(q.created_before !== undefined ? { createdBefore: new Date(q.created_before) } : {}),
    };
    return pageOf(q, (cursor, rows) => repo.listTasks(this.db, teamId, filter, cursor, rows), taskView);
  }

  /** For modules that point at tasks (the work board's links): whether `raw` is a task of the team. */
  async isTeamTask(tx: DbOrTx, teamId: TeamId, raw: string): Promise<boolean> {
    return isId(raw, 'task') && (await repo.findTask(tx, teamId, raw)) !== undefined;
  }

  private async found(teamId: TeamId, raw: string): Promise<repo.TaskRow> {
    const row = await repo.findTask(this.db, teamId, taskId(raw));
    if (!row) throw new NotFoundError('task', raw);
    return row;
  }

  async get(principal: Principal, id: string) {
    return taskView(await this.found(this.team(principal, 'read'), id));
  }

  /** Queued or running → cancelled, its capsule's processes stopped; an ended task is a 409. */
  async cancel(principal: Principal, id: string) {
    const teamId = this.team(principal, 'write');
    const before = await this.found(teamId, id);
    const now = this.ctx.clock.now();
    const actor = actorOf(principal);
    const cancelled = await this.db.transaction(async (tx) => {
      const row = await repo.updateUnfinished(tx, teamId, before.id, {
        status: 'cancelled',
        error: {
          code: 'cancelled',
          message: `cancelled by ${actor.actorKind} ${actor.actorId ?? ''}`.trim(),
        },
        finishedAt: now,
        updatedAt: now,
      });
      if (!row) return undefined;
      if (row.runnerQueue) await this.queueRunner?.cancel(tx, row);
      await this.log.append(tx, teamId, row, [
        { type: 'status', payload: { status: 'cancelled', error: row.error } },
      ]);
      await this.outbox.record(tx, {
        teamId,
        ...actor,
        subjectId: row.id,
        type: 'task.cancelled',
        data: { agent_id: row.agentId, from: before.status },
      });
      return row;
    });
    if (!cancelled) {
      const now = await this.found(teamId, id);
      throw new ConflictError(
        'task_finished',
        `task ${now.id} is ${now.status}; only a queued or running task can be cancelled`,
        {
          status: now.status,
        },
      );
    }
    this.log.wake(cancelled);
    this.workers?.cancelled(cancelled.id);
    if (cancelled.runnerQueue) await this.queueRunner?.ended(cancelled);
    // The turn's workspace takes the next message now: its worker, if it is alive, says the same after
    // (a no-op then); one that died with it never will (the lost-worker sweep skips an ended task).
    if (cancelled.workspaceId)
      await this.sessions?.turnEnded(teamId, cancelled.workspaceId, {
        taskId: cancelled.id,
        prompt: cancelled.prompt,
        status: 'cancelled',
        error: cancelled.error ?? { code: 'cancelled', message: 'cancelled' },
        model: cancelled.model,
      });
    return taskView(cancelled);
  }

  async events(principal: Principal, id: string, afterSeq: number, limit: number) {
    const teamId = this.team(principal, 'read');
    const task = await this.found(teamId, id);
    const pageSize = Math.min(Math.max(1, limit), 1000) || 200;
    const rows = await this.log.read(teamId, task, seqOf(afterSeq), pageSize);
    return {
      data: rows.map(taskEventView),
      next_after_seq: rows.at(-1)?.seq ?? afterSeq,
      // A session task's events are numbered on its workspace's log: its own count stays 0.
      done:
        isFinal(task.status) &&
        (task.workspaceId ? rows.length < pageSize : (rows.at(-1)?.seq ?? afterSeq) >= task.eventSeq),
    };
  }

  /** The task's events after `afterSeq` as they come, until it has ended (SSE). Checks access first. */
  async follow(principal: Principal, id: string, afterSeq: number, signal: AbortSignal) {
    const teamId = this.team(principal, 'read');
    const task = await this.found(teamId, id);
    const ended = async () => isFinal((await this.found(teamId, task.id)).status);
    afterSeq = seqOf(afterSeq);
    const log = this.log;
    return (async function* () {
      for await (const row of log.followTask(teamId, task, afterSeq, ended, signal)) yield taskEventView(row);
    })();
  }

  /** The task's output files (at most the output limit's count: one page). */
  async files(principal: Principal, id: string) {
    const teamId = this.team(principal, 'read');
    const task = await this.found(teamId, id);
    const rows = await repo.listTaskFiles(this.db, teamId, task.id, 'output');
    return { data: rows.map(taskFileView), next_cursor: null };
  }

  /** An output file of the task (or a tool output the event log cut), as the files module serves it. */
  async file(principal: Principal, id: string, fileId: string): Promise<FileDownload> {
    const teamId = this.team(principal, 'read');
    const task = await this.found(teamId, id);
    const row = await repo.findTaskFile(this.db, teamId, task.id, fileId);
    if (!row) throw new NotFoundError('task file', fileId);
    return this.ports.openFile(teamId, row.fileId);
  }
}

/** A seq to read after, as given: a whole number that fits the log's numbering (a 400 otherwise; callers other than the HTTP routes pass numbers the routes' schemas never checked). */
export function seqOf(value: number): number {
  if (Number.isSafeInteger(value) && value >= 0 && value <= MAX_SEQ) return value;
  throw new BadRequestError('invalid_after_seq', `after_seq must be a whole number from 0 to ${MAX_SEQ}`);
}
const MAX_SEQ = 2_147_483_647;

export function isFinal(status: string): boolean {
  return (repo.FINAL_STATUSES as readonly string[]).includes(status);
}
