// One file over 400 lines: one attempt of a task from capsule start to
// teardown, in the order it happens; its steps share the capsule and the
// event log.
import type { Context } from '../../core/context.ts';
import type { AgentId, RunId } from '../../core/ids.ts';
import { inSpan } from '../../core/tracing.ts';
import type { Db } from '../../db/client.ts';
import type { ConversationMessage } from '../../db/schema/workspaces.ts';
import { JobsStopping } from '../../jobs/jobs.ts';
import type { EventsService } from '../events/service.ts';
import { matchesAny } from '../gateway/glob.ts';
import { SecretRedactor } from '../secrets/redact.ts';
import { AgentLoop, type LoopHooks, TaskEnd } from './agent-loop.ts';
import type { TaskEventLog, TaskEventType } from './event-log.ts';
import { closeToolSets, openToolSources, type ToolSet, type ToolSource } from './loop-tools.ts';
import { checkOutputs } from './output-policy.ts';
import type { AgentForTask, EnvironmentForTask, TaskCapsule, TaskPorts } from './ports.ts';
import { redactingCapsule } from './redacting-capsule.ts';
import * as repo from './repo.ts';
import type { SessionHooks } from './sessions.ts';
import { WORKSPACE } from './tool-definitions.ts';
import { CapsuleGone, CapsuleRefused, type ToolCapsule } from './tools.ts';
import { collectOutputs, prepareWorkspace, WorkspaceError } from './workspace.ts';

/** How often the time of a running capsule is charged to its run (and when it stops). */
const SANDBOX_CHARGE_EVERY_MS = 60_000;
/** How long one of the agent's setup commands may run in the task's capsule. */
const SETUP_TIMEOUT_SEC = 600;

/** What an attempt works with: the runner's database, context, ports, the event log and its limits. */
export interface AttemptParts {
  db: Db;
  outbox: EventsService;
  ctx: Context;
  ports: TaskPorts;
  log: TaskEventLog;
  /** Tools beyond the built-ins: each source is opened for the attempt before its first model call. */
  toolSources: readonly ToolSource[];
  options: { capsuleStartTimeoutMs: number; maxOutputFiles: number; maxOutputBytes: number };
  /** The workspaces module's side of a session task (a turn of a workspace). */
  sessions?: SessionHooks | undefined;
}

/**
 * What an attempt's start reads before its first model call, started early
 * (while the submit's transaction runs, on another of the pool's connections)
 * for the agent and environment version they name. Its promises are handled:
 * a failed read fails the attempt's start as its own read would.
 */
export interface EarlyReads {
  agentId: AgentId;
  secrets: Promise<Array<{ name: string; value: string }>>;
  environmentVersionId: string;
  environment: Promise<EnvironmentForTask | undefined>;
}

/** The task's end as an attempt decides it. */
export interface Ending {
  status: 'completed' | 'failed' | 'cancelled';
  result?: unknown;
  error?: { code: string; message: string };
}

/** One attempt of one task: the run, the capsule, the loop. */
export class Attempt {
  runId: RunId | undefined;
  turns = 0;
  sandboxMs = 0;
  private capsule: Promise<TaskCapsule> | undefined;
  /** The capsule once it started (cleanUp stops it even when the loop never asked for it). */
  private started: TaskCapsule | undefined;
  private starting: Promise<TaskCapsule> | undefined;
  /** The capsule's id as soon as it was made (it may never run). */
  private createdId: string | undefined;
  private capsuleStartedMs: number | undefined;
  /** Capsule time up to here (performance.now()) is charged. */
  private chargedUntilMs: number | undefined;
  private charging: Promise<void> = Promise.resolve();
  private chargedLast = false;
  private stopping: Promise<void> | undefined;
  private cleaned = false;
  private toolSets: ToolSet[] = [];
  /** A session task: the workspace's conversation and capsule before the turn. */
  private session: { messages: ConversationMessage[]; capsuleId: string | null } | undefined;
  /** A session task that completed: the conversation its workspace keeps. */
  conversation: ConversationMessage[] | undefined;
  /**
   * What this attempt's own steps cost: its model calls (a sub-agent's too)
   * and its capsule time, counted as each is settled. A workspace's turn
   * reports these (its run holds the other turns, the title and idle time).
   */
  readonly spent = { costMicros: 0, inputTokens: 0, outputTokens: 0 };
  /** The gateway, counting each call's cost into `spent` as its step settles. */
  private readonly callModel: TaskPorts['callModel'] = (req) =>
    this.p.ports.callModel({
      ...req,
      onSettled: ({ usage, costMicros }) => {
        this.spent.costMicros += costMicros;
        this.spent.inputTokens += usage.input + usage.cacheRead + usage.cacheCreation;
        this.spent.outputTokens += usage.output;
      },
    });

  constructor(
    private readonly p: AttemptParts,
    private readonly task: repo.TaskRow,
    private readonly agent: AgentForTask | undefined,
    private readonly signal: AbortSignal,
    private readonly startedMs: number,
    private readonly early?: EarlyReads,
  ) {}

  private actor(): string {
    return `task:${this.task.id}`;
  }

  private async event(type: TaskEventType, payload: Record<string, unknown>): Promise<void> {
    // After a cancel or the timeout the loop may still be finishing a call: nothing it says is logged,
    // here or (a cancel on another server, a sweep) in the database, which takes only this attempt's.
    if (this.signal.aborted) throw this.signal.reason;
    const rows = await this.p.log.append(this.p.db, this.task.teamId, this.task, [{ type, payload }], {
      attempt: this.task.attempt,
    });
    if (rows.length === 0) throw new TaskEnd('gone', 'the task is no longer this worker’s', 'cancelled');
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
      await log.append(tx, this.task.teamId, this.task, [
        { type: 'status', payload: { status, ...payload } },
      ]);
      if (status === 'awaiting_approval')
        await this.p.outbox.record(tx, {
          teamId: this.task.teamId,
          actorKind: 'system',
          actorId: 'task_runner',
          subjectId: this.task.id,
          type: 'task.awaiting_approval',
          data: {
            agent_id: this.task.agentId,
            approval_ids: payload.approval_ids as string[],
            tools: payload.tools as string[],
          },
        });
    });
    log.wake(this.task);
  }

  async run(): Promise<Ending> {
    const { ports } = this.p;
    const t = this.task;
    try {
      const agent = this.agent;
      if (!agent)
        throw new TaskEnd('agent_missing', `agent ${t.agentId} version ${t.agentVersion} no longer exists`);
      // The claim started the task's run (one for every attempt) in its transaction.
      if (!t.runId) throw new TaskEnd('policy_missing', `agent ${agent.name} has no usable policy`);
      this.runId = t.runId;
      const sessions = t.workspaceId ? this.p.sessions : undefined;
      if (t.workspaceId && !sessions)
        throw new TaskEnd('sessions_unavailable', 'this server does not run workspaces');
      const inputs = [...new Set([...t.inputFileIds, ...agent.definition.reference_file_ids])];
      // One wait for every lookup the first model call needs (on Postgres they run side by side).
      const early = this.early?.agentId === agent.id ? this.early : undefined;
      const [secrets, env, inputNames, session] = await Promise.all([
        early?.secrets ?? ports.secrets(t.teamId, agent.id),
        t.environmentVersionId
          ? early?.environmentVersionId === t.environmentVersionId
            ? early.environment
            : ports.environment(t.teamId, t.environmentVersionId)
          : undefined,
        Promise.all(inputs.map((id) => this.fileName(id))),
        sessions && t.workspaceId ? sessions.turnStarts(t.teamId, t.workspaceId, t.id) : undefined,
      ]);
      this.session = session;
      if (env?.status !== 'ready' || !env.template)
        throw new TaskEnd(
          'environment_not_ready',
          `environment version ${t.environmentVersionId} is not ready`,
        );
      const template = env.template;
      const envs = { ...env.envVars, ...Object.fromEntries(secrets.map((s) => [s.name, s.value])) };
      const redactor = new SecretRedactor(secrets);
      const networkAllow = [...new Set([...env.networkAllow, ...agent.definition.egress])];
      // The capsule starts once the first model call is admitted, beside it (not ahead of the
      // gateway's own statements); the first tool call waits for it. Its span is the task's
      // child, whichever call (the gateway's admission, a tool) asks for it first.
      const tracer = this.p.ctx.tracer;
      const startCapsule = tracer.bind(() =>
        inSpan(tracer, 'capsule.start', { attributes: { 'paddock.task.id': t.id } }, () =>
          this.startCapsule(template, networkAllow, inputs, {
            envs,
            redactor,
            setup: agent.definition.setup_commands,
          }),
        ),
      );
      const capsule = () => {
        // A call admitted after the task ended (a cancel, the timeout) starts nothing to stop later.
        if (this.signal.aborted || this.cleaned) return Promise.reject(this.signal.reason);
        if (!this.capsule) {
          this.capsule = startCapsule();
          this.capsule.catch(() => undefined);
        }
        return this.capsule;
      };
      const tools: () => Promise<ToolCapsule> = async () => (await capsule()).tools;
      const model = ports.resolveModel(t.model);
      const secondsLeft = () => t.timeoutSec - (performance.now() - this.startedMs) / 1000;
      const hooks: LoopHooks = {
        event: (type, payload) => this.event(type, payload),
        storeOutput: (name, text) => this.storeToolOutput(name, text),
        turn: (n) => {
          this.turns = n;
        },
        awaitingApproval: (ids, toolNames) =>
          this.setStatus('awaiting_approval', { approval_ids: ids, tools: toolNames }),
        resumed: () => this.setStatus('running', {}),
      };
      const opening = openToolSources(this.p.toolSources, {
        teamId: t.teamId,
        taskId: t.id,
        agent,
        agentId: agent.id,
        runId: this.runId,
        model,
        capsule: tools,
        networkAllow,
        envs,
        redactor,
        signal: this.signal,
        secondsLeft,
        event: (type, payload) => this.event(type, payload),
        depth: 0,
        loopHooks: hooks,
        callModel: this.callModel,
      });
      // Sources that finish opening after a cancel are closed here (cleanUp has run by then).
      opening.then(
        (sets) => {
          if (this.signal.aborted) void closeToolSets(sets);
        },
        () => undefined,
      );
      this.toolSets = await raceAbort(opening, this.signal);
      // The task's allowed_tools narrow what the agent version offers; submit_result always stays.
      const offered = (name: string) =>
        t.allowedTools === null || name === 'submit_result' || matchesAny(t.allowedTools, name);
      const loop = new AgentLoop(
        this.p.ctx,
        { callModel: this.callModel, approvals: ports.approvals },
        {
          teamId: t.teamId,
          taskId: t.id,
          agentId: agent.id,
          runId: this.runId,
          model,
          prompt: t.prompt,
          ...(this.session ? { history: this.session.messages } : {}),
          definition: { ...agent.definition, tools: agent.definition.tools.filter(offered) },
          maxTurns: t.maxTurns,
          outputSchema: t.outputSchema ?? null,
          inputFiles: inputNames,
          extraTools: this.toolSets.flatMap((set) => set.tools).filter((tool) => offered(tool.name)),
          // A source whose tools are all left out says nothing in the prompt either (no skills listed without load_skill).
          promptLines: this.toolSets
            .filter((set) => set.tools.some((tool) => offered(tool.name)))
            .flatMap((set) => set.promptLines ?? []),
          capsule: tools,
          callAdmitted: () => void capsule().catch(() => undefined),
          envs,
          redactor,
          // A workspace's turns stream too: a conversation is watched as it happens.
          stream: t.mode === 'stream' || t.mode === 'session',
          secondsLeft,
          signal: this.signal,
        },
        hooks,
      );
      const { result, turns } = await raceAbort(loop.run(), this.signal);
      this.turns = turns;
      // A workspace's files stay in its capsule (its files routes), for the next turn.
      if (this.session) this.conversation = loop.conversation();
      else await this.keepOutputs(agent.definition.output_policy);
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

  /** A task's input or reference file's name (it is placed in /workspace under it). */
  private async fileName(id: string): Promise<string> {
    const name = await this.p.ports.fileName(this.task.teamId, id);
    if (name === undefined)
      throw new TaskEnd('invalid_file', `file ${id} of the task was deleted before the task ran`);
    return name;
  }

  /**
   * The capsule, running with the task's files in /workspace and the agent's
   * setup commands run. Once it exists it is the attempt's to stop (cleanUp),
   * whatever fails after.
   */
  private async startCapsule(
    template: string,
    networkAllow: string[],
    fileIds: string[],
    run: { envs: Record<string, string>; redactor: SecretRedactor; setup: string[] },
  ): Promise<TaskCapsule> {
    const { ports, db } = this.p;
    const t = this.task;
    const previous = this.session?.capsuleId ?? null;
    if (previous) {
      const reused = await this.reuseCapsule(previous, fileIds, run.redactor);
      if (reused) return reused;
    }
    this.starting = ports.capsules
      .start(
        t.teamId,
        this.actor(),
        {
          template,
          networkAllow,
          metadata: { task_id: t.id },
          timeoutMs: this.p.options.capsuleStartTimeoutMs,
        },
        // Named on the row before it runs: whoever ends the task (a cancel, the sweep) stops it.
        async (id) => {
          this.createdId = id;
          if (t.workspaceId) await this.p.sessions?.capsuleStarted(t.teamId, t.workspaceId, id);
          await repo.updateUnfinished(
            db,
            t.teamId,
            t.id,
            { capsuleId: id },
            { statuses: repo.HELD_STATUSES, attempt: t.attempt },
          );
        },
      )
      .then((c) => {
        this.capsuleStartedMs = performance.now();
        this.started = c;
        return c;
      });
    this.starting.catch(() => undefined);
    const started = await this.starting.catch((err: unknown) => {
      throw new TaskEnd('capsule_failed', `the task’s capsule did not start: ${messageOf(err)}`);
    });
    const capsule = { ...started, tools: redactingCapsule(started.tools, run.redactor) };
    const files = await Promise.all(fileIds.map((id) => ports.readFile(t.teamId, id))).catch(() => {
      throw new TaskEnd('invalid_file', 'an input file of the task could not be read (was it deleted?)');
    });
    await prepareWorkspace(capsule.tools, files).catch((err: unknown) => {
      // The capsule's host failed under it (it died, or cannot write): the capsule is lost, not Paddock.
      if (err instanceof CapsuleGone || (err instanceof CapsuleRefused && err.reason === 'failed'))
        throw new TaskEnd('capsule_lost', `the task’s capsule stopped answering: ${err.message}`);
      throw err;
    });
    await this.event('capsule', {
      capsule_id: capsule.id,
      template,
      input_files: files.map((f) => f.name),
      ...(previous
        ? {
            replaced_capsule_id: previous,
            note: 'the workspace’s capsule was removed: a new one started, without the files of earlier turns',
          }
        : {}),
    });
    for (const [i, command] of run.setup.entries()) {
      const r = await capsule.tools.exec({
        cmd: 'bash',
        args: ['-c', command],
        envs: run.envs,
        cwd: WORKSPACE,
        timeoutSec: SETUP_TIMEOUT_SEC,
      });
      if (r.exit_code !== 0)
        throw new TaskEnd(
          'setup_failed',
          `the agent's setup command ${i + 1} exited with ${r.exit_code}: ${r.stderr.slice(-500)}`,
        );
    }
    return capsule;
  }

  /**
   * A workspace's capsule for the next turn: resumed when it was paused, with
   * the message's files written into /workspace; undefined when it is gone.
   */
  private async reuseCapsule(
    id: string,
    fileIds: string[],
    redactor: SecretRedactor,
  ): Promise<TaskCapsule | undefined> {
    const { ports } = this.p;
    const t = this.task;
    this.starting = ports.capsules
      .reuse(t.teamId, this.actor(), id, this.p.options.capsuleStartTimeoutMs)
      .then((c) => {
        if (!c) throw new CapsuleGone('capsule_not_found', `capsule ${id} is gone`);
        this.capsuleStartedMs = performance.now();
        this.started = c;
        return c;
      });
    const found = await this.starting.catch(() => undefined);
    if (!found) {
      this.starting = undefined;
      return undefined;
    }
    this.createdId = found.id;
    await repo.updateUnfinished(
      this.p.db,
      t.teamId,
      t.id,
      { capsuleId: id },
      { statuses: repo.HELD_STATUSES, attempt: t.attempt },
    );
    const capsule = { ...found, tools: redactingCapsule(found.tools, redactor) };
    const files = await Promise.all(fileIds.map((f) => ports.readFile(t.teamId, f))).catch(() => {
      throw new TaskEnd('invalid_file', 'an input file of the task could not be read (was it deleted?)');
    });
    await prepareWorkspace(capsule.tools, files);
    await this.event('capsule', {
      capsule_id: id,
      reused: true,
      resumed: (found as { resumed?: boolean }).resumed === true,
      input_files: files.map((f) => f.name),
    });
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
    // Before the capsule goes: an MCP server in it ends with its connection.
    await closeToolSets(this.toolSets);
    // A capsule still starting is waited for; once made it is stopped whatever failed after
    // (the workspace, the setup, a cancel that made its `capsule` event throw).
    const capsule = this.started ?? (await this.starting?.catch(() => undefined));
    const id = capsule?.id ?? this.createdId;
    if (id === undefined) return;
    // A workspace keeps its capsule for the next turn: its time so far is charged, it runs on.
    if (this.task.workspaceId) {
      if (capsule) await this.chargeSandbox(capsule, true);
      return;
    }
    // Its time is charged up to the stop; the task's end need not wait for the teardown (stopped()).
    this.stopping = ports.capsules
      .destroy(this.task.teamId, this.actor(), id)
      .catch((err: unknown) => ctx.log.warn({ err, capsule_id: id }, 'a task capsule could not be removed'));
    if (capsule) await this.chargeSandbox(capsule, true);
  }

  /** Resolves once the capsule is gone (after cleanUp). */
  async stopped(): Promise<void> {
    await this.stopping;
  }

  /**
   * Charges the capsule's running time since the last charge to the run: on
   * each heartbeat while it runs (so budgets count it as it is spent) and once
   * more when it stops. One charge at a time.
   */
  chargeSandbox(capsule = this.started, final = false): Promise<void> {
    this.charging = this.charging.then(async () => {
      if (this.chargedLast || !capsule || !this.runId || this.capsuleStartedMs === undefined) return;
      // The capsule is gone after the last charge: a heartbeat queued behind it charges nothing.
      if (final) this.chargedLast = true;
      const now = performance.now();
      const ms = Math.round(now - (this.chargedUntilMs ?? this.capsuleStartedMs));
      // While it runs, time is charged a minute at a time (a step and a ledger entry each).
      if (ms <= 0 || (!final && ms < SANDBOX_CHARGE_EVERY_MS)) return;
      try {
        const { costMicros } = await this.p.ports.runs.chargeSandbox({
          teamId: this.task.teamId,
          runId: this.runId,
          agentId: this.task.agentId as AgentId,
          capsuleId: capsule.id,
          seconds: ms / 1000,
          vcpus: capsule.vcpus,
          memoryMb: capsule.memoryMb,
        });
        // Only a charge that was written moves the mark: a failed one is in the next.
        this.chargedUntilMs = now;
        this.sandboxMs += ms;
        this.spent.costMicros += costMicros;
      } catch (err) {
        this.p.ctx.log.warn({ err, task_id: this.task.id }, 'charging a task’s sandbox time failed');
      }
    });
    return this.charging;
  }
}

/** Settles with the promise, or rejects with the signal's reason as soon as it aborts. */
export function raceAbort<T>(promise: Promise<T>, signal: AbortSignal): Promise<T> {
  if (signal.aborted) {
    // The promise's own rejection (it sees the same signal) has no one else to hear it.
    promise.catch(() => undefined);
    return Promise.reject(signal.reason);
  }
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
