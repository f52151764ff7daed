// One file over 400 lines: a workspace's life (opened by its first turn,
// its turns' start and end, idle → paused → expired, terminated) is one state
// machine on one row, with the same guards; it reads best together.
import type { Context, Timer } from '../../core/context.ts';
import { AppError, BadRequestError, ConflictError, NotFoundError } from '../../core/errors.ts';
import { idOrNotFound, newId, type RunId, type TeamId } from '../../core/ids.ts';
import { pageOf } from '../../core/pagination.ts';
import type { Db, DbOrTx } from '../../db/client.ts';
import type { ConversationMessage, WorkspaceStatus } from '../../db/schema/workspaces.ts';
import type { EventsService } from '../events/service.ts';
import { actorOf, managedTeam, type Principal } from '../identity/principal.ts';
import type { TaskPorts } from '../tasks/ports.ts';
import { seqOf, type TasksService } from '../tasks/service.ts';
import type { SessionHooks, SessionTurn } from '../tasks/sessions.ts';
import * as repo from './repo.ts';
import type { MessageInput, PatchWorkspaceInput, WorkspaceListQueryType } from './schemas.ts';
import { workspaceEventView, workspaceView } from './views.ts';

const workspaceId = (raw: string) => idOrNotFound(raw, 'ws', 'workspace');
/** The characters of the first message the title call sees. */
const TITLE_INPUT_CHARS = 2000;
const TITLE_MAX_CHARS = 80;

export interface WorkspaceOptions {
  /** How often the sweep looks for idle workspaces to pause and paused ones to expire. */
  sweepEveryMs: number;
}

/**
 * Workspaces (Vonzio's sessions): a conversation with one agent version that
 * keeps its capsule between turns. Each message is a session task run by the
 * task runner; this service holds the workspace's side of a turn (its
 * conversation, its capsule, its status) through the SessionHooks the tasks
 * module calls, and the sweep that pauses idle capsules and expires old ones.
 */
export class WorkspacesService implements SessionHooks {
  private sweepTimer: Timer | undefined;
  private readonly turnListeners: Array<(teamId: TeamId, taskId: string) => Promise<void>> = [];
  /**
   * Turns whose message this server took, by task id: the conversation and
   * capsule as the turn began, for its first attempt's start when it runs here
   * (a later attempt, or one on another server, reads the row).
   */
  private readonly turnsBegun = new Map<
    string,
    { messages: ConversationMessage[]; capsuleId: string | null }
  >();

  constructor(
    private readonly db: Db,
    private readonly ctx: Context,
    private readonly outbox: EventsService,
    readonly tasks: TasksService,
    private readonly ports: TaskPorts,
    private readonly options: WorkspaceOptions = { sweepEveryMs: 10_000 },
  ) {
    tasks.attachSessions(this);
  }

  team(principal: Principal, need: 'read' | 'write'): TeamId {
    return managedTeam(principal, need, 'workspaces');
  }

  async found(teamId: TeamId, raw: string): Promise<repo.WorkspaceRow> {
    const row = await repo.findWorkspace(this.db, teamId, workspaceId(raw));
    if (!row) throw new NotFoundError('workspace', raw);
    return row;
  }

  private actor(id: string): string {
    return `workspace:${id}`;
  }

  // -- the tasks module's side (SessionHooks) ---------------------------------------------

  async open(tx: DbOrTx, input: Parameters<SessionHooks['open']>[1]): Promise<SessionTurn> {
    const now = this.ctx.clock.now();
    const { agent } = input;
    const row = await repo.insertWorkspace(tx, {
      id: newId('ws'),
      teamId: input.teamId,
      agentId: agent.id,
      agentVersion: agent.version,
      status: 'active',
      runId: newId('run') as RunId,
      messages: [],
      currentTaskId: input.taskId,
      idleTimeoutSec: agent.definition.idle_timeout_sec,
      sessionTtlSec: agent.definition.session_ttl_sec,
      allowedTools: input.allowedTools,
      lastActiveAt: now,
      createdBy: input.createdBy,
      createdAt: now,
      updatedAt: now,
    });
    await this.tasks.log.appendToWorkspace(tx, input.teamId, row.id, [
      { type: 'workspace', payload: { status: 'active', task_id: input.taskId } },
    ]);
    await this.outbox.record(tx, {
      teamId: input.teamId,
      actorKind: 'system',
      actorId: 'workspaces',
      subjectId: row.id,
      type: 'workspace.created',
      data: { agent_id: agent.id, agent_version: agent.version, task_id: input.taskId },
    });
    this.beginning(input.taskId, row);
    return { workspaceId: row.id, runId: row.runId };
  }

  /**
   * Kept before the commit: the turn may start as soon as it is in. A bounded
   * map (a transaction that rolls back leaves its entry, and a turn run on
   * another server never takes one).
   */
  private beginning(taskId: string, row: repo.WorkspaceRow): void {
    if (this.turnsBegun.size >= 1_000) this.turnsBegun.clear();
    this.turnsBegun.set(taskId, { messages: row.messages, capsuleId: row.capsuleId });
  }

  async turnStarts(teamId: TeamId, id: string, taskId: string) {
    // The turn's message was taken on this server: its row as the turn began, without a read.
    const begun = this.turnsBegun.get(taskId);
    if (begun) {
      this.turnsBegun.delete(taskId);
      return begun;
    }
    const row = await this.found(teamId, id);
    return { messages: row.messages, capsuleId: row.capsuleId };
  }

  async capsuleStarted(teamId: TeamId, id: string, capsuleId: string): Promise<void> {
    const row = await repo.updateWorkspace(
      this.db,
      teamId,
      workspaceId(id),
      { capsuleId, updatedAt: this.ctx.clock.now() },
      { statuses: ['active', 'idle', 'paused'] },
    );
    // Ended while its capsule was starting (a DELETE): nobody else will remove this capsule.
    if (!row) {
      await this.ports.capsules
        .destroy(teamId, this.actor(id), capsuleId)
        .catch((err: unknown) =>
          this.ctx.log.warn({ err, workspace_id: id }, 'a workspace capsule could not be removed'),
        );
      throw new Error(`workspace ${id} ended while its capsule was starting`);
    }
  }

  async turnEnded(teamId: TeamId, id: string, turn: Parameters<SessionHooks['turnEnded']>[2]): Promise<void> {
    const row = await repo.findWorkspace(this.db, teamId, workspaceId(id));
    if (row?.currentTaskId !== turn.taskId) return;
    // The first answer names an unnamed workspace (before it takes the next message).
    if (row.turns === 0 && row.name === null && turn.status === 'completed')
      await this.title(row, turn.prompt, turn.model);
    // The capsule's idle time before the turn (from its last turn to this message): the workspace's,
    // not the turn's (its cost is its own steps'). Charged here, out of the way of the turn's start,
    // and before the workspace takes its next message.
    if (row.idleFrom) await this.chargeIdle(row, row.idleFrom, row.lastActiveAt);
    const messages: ConversationMessage[] = turn.messages ?? [
      ...row.messages,
      { role: 'user', content: turn.prompt },
      {
        role: 'assistant',
        content: `(this turn ended without an answer: ${turn.error?.code ?? turn.status})`,
      },
    ];
    const now = this.ctx.clock.now();
    await this.db.transaction(async (tx) => {
      const patch = {
        currentTaskId: null,
        idleFrom: null,
        messages,
        turns: row.turns + 1,
        lastRunModel: turn.model,
        lastActiveAt: now,
        updatedAt: now,
      };
      // A workspace terminated during the turn stays terminated; it only lets the turn go.
      const idle = await repo.updateWorkspace(
        tx,
        teamId,
        row.id,
        { ...patch, status: 'idle' },
        { statuses: ['active'], currentTaskId: turn.taskId },
      );
      if (!idle) {
        await repo.updateWorkspace(tx, teamId, row.id, patch, { currentTaskId: turn.taskId });
        return;
      }
      await this.moved(tx, row, 'idle', `turn_${turn.status}`, { task_id: turn.taskId });
    });
    this.tasks.log.wake(row.id);
    for (const listener of this.turnListeners)
      void Promise.resolve()
        .then(() => listener(teamId, turn.taskId))
        .catch((err: unknown) =>
          this.ctx.log.warn(
            { err, workspace_id: row.id, task_id: turn.taskId },
            'a turn’s end listener failed',
          ),
        );
  }

  /** Called (not awaited) after each turn this server ran has let its workspace go: a playbook run's next step. */
  onTurnEnded(listener: (teamId: TeamId, taskId: string) => Promise<void>): void {
    this.turnListeners.push(listener);
  }

  /** A status change: in the workspace's log and the outbox, in the transaction that made it. */
  private async moved(
    tx: DbOrTx,
    row: repo.WorkspaceRow,
    to: WorkspaceStatus,
    reason: string,
    extra: Record<string, unknown> = {},
  ): Promise<void> {
    await this.logMove(tx, row, to, reason, extra);
    await this.outbox.record(tx, statusChanged(row, to, reason));
  }

  /** A status change's event in the workspace's log (its outbox row is written by the caller). */
  private async logMove(
    tx: DbOrTx,
    row: repo.WorkspaceRow,
    to: WorkspaceStatus,
    reason: string,
    extra: Record<string, unknown>,
  ): Promise<void> {
    await this.tasks.log.appendToWorkspace(tx, row.teamId, row.id, [moveEvent(to, reason, extra)]);
  }

  /** The first answer names an unnamed workspace; a refused or failed call leaves it unnamed. */
  private async title(row: repo.WorkspaceRow, prompt: string, model: string): Promise<void> {
    try {
      const made = await this.titleFor(row, prompt, model);
      if ('name' in made)
        await repo.updateWorkspace(this.db, row.teamId, row.id, {
          name: made.name,
          updatedAt: this.ctx.clock.now(),
        });
    } catch (err) {
      this.ctx.log.warn({ err, workspace_id: row.id }, 'naming a workspace failed');
    }
  }

  /**
   * A title for a conversation that starts with `prompt`: one short model
   * call in the workspace's run, governed and recorded like the turns'. Or
   * why there is none: the gateway's status and code, or an empty answer.
   */
  private async titleFor(
    row: repo.WorkspaceRow,
    prompt: string,
    model: string,
  ): Promise<{ name: string } | { status: number; code: string | undefined }> {
    const result = await this.ports.callModel({
      format: 'openai',
      agentId: row.agentId as never,
      headers: { 'x-paddock-run-id': row.runId },
      body: {
        model,
        max_tokens: 24,
        messages: [
          {
            role: 'system',
            content:
              'Write a title of at most six words for a conversation that starts with the next message. Answer with the title only.',
          },
          { role: 'user', content: prompt.slice(0, TITLE_INPUT_CHARS) },
        ],
      },
      signal: AbortSignal.timeout(30_000),
    });
    if (result.kind !== 'json') return { status: 502, code: undefined };
    if (result.status !== 200) {
      const code = (result.body as { error?: { code?: unknown } }).error?.code;
      return { status: result.status, code: typeof code === 'string' ? code : undefined };
    }
    const text = (result.body as { choices?: Array<{ message?: { content?: unknown } }> }).choices?.[0]
      ?.message?.content;
    const name = typeof text === 'string' ? cleanTitle(text) : '';
    return name === '' ? { status: 200, code: 'empty_title' } : { name };
  }

  /**
   * POST …/generate-title (Vonzio): names the workspace again from its first
   * message, with the model its next turn would use, in its run (a turn may
   * be running). A workspace with no message yet, or ended (its run ended
   * with it), is a 409; a call the gateway refuses or that answers no title
   * is a 422 with its code.
   */
  async generateTitle(principal: Principal, id: string) {
    const teamId = this.team(principal, 'write');
    const ws = await this.found(teamId, id);
    if (isEnded(ws.status))
      throw new ConflictError('workspace_expired', `workspace ${ws.id} is ${ws.status}: its run has ended`, {
        status: ws.status,
      });
    const prompt = ws.messages.find((m) => m.role === 'user' && typeof m.content === 'string')?.content;
    if (!prompt)
      throw new ConflictError('workspace_empty', `workspace ${ws.id} has no message to make a title of yet`);
    const agent = await this.ports.agent(teamId, ws.agentId, ws.agentVersion);
    if (!agent) throw new NotFoundError('agent', ws.agentId);
    const model = ws.modelOverride ?? agent.definition.model;
    if (!model)
      throw new ConflictError('no_model', `agent ${ws.agentId} names no model for the title's call`);
    // The gateway's refusals (a budget, a rule, the provider's error) come as its errors: a 422 here.
    const made = await this.titleFor(ws, prompt, model).catch((err: unknown) => {
      if (err instanceof AppError) return { status: err.statusCode, code: err.code };
      throw err;
    });
    if (!('name' in made))
      throw new AppError(
        422,
        'title_failed',
        `the title call was answered ${made.status}${made.code ? ` ${made.code}` : ''}`,
        {
          status: made.status,
          ...(made.code ? { upstream_code: made.code } : {}),
        },
      );
    const updated = await repo.updateWorkspace(this.db, teamId, ws.id, {
      name: made.name,
      updatedAt: this.ctx.clock.now(),
    });
    return workspaceView(updated ?? { ...ws, name: made.name });
  }

  // -- the API ----------------------------------------------------------------------------

  async list(principal: Principal, q: WorkspaceListQueryType) {
    const teamId = this.team(principal, 'read');
    const filter: repo.WorkspaceFilter = {
      ...(q.status !== undefined ? { status: q.status } : {}),
      ...(q.agent_id !== undefined ? { agentId: q.agent_id } : {}),
      ...(q.archived !== undefined ? { archived: q.archived } : {}),
    };
    return pageOf(
      q,
      (cursor, rows) => repo.listWorkspaces(this.db, teamId, filter, cursor, rows),
      workspaceView,
    );
  }

  async get(principal: Principal, id: string) {
    return workspaceView(await this.found(this.team(principal, 'read'), id));
  }

  async patch(principal: Principal, id: string, input: PatchWorkspaceInput) {
    const teamId = this.team(principal, 'write');
    const row = await this.found(teamId, id);
    if (input.model_override) {
      const agent = await this.ports.agent(teamId, row.agentId, row.agentVersion);
      const refusal = agent
        ? await this.ports.modelRefusal(teamId, agent.policyId, this.ports.resolveModel(input.model_override))
        : undefined;
      if (refusal) throw new BadRequestError('model_not_allowed', refusal, { model: input.model_override });
    }
    const updated = await repo.updateWorkspace(this.db, teamId, row.id, {
      ...(input.name !== undefined ? { name: input.name } : {}),
      ...(input.starred !== undefined ? { starred: input.starred } : {}),
      ...(input.archived !== undefined ? { archived: input.archived } : {}),
      ...(input.model_override !== undefined ? { modelOverride: input.model_override } : {}),
      updatedAt: this.ctx.clock.now(),
    });
    return workspaceView(updated ?? row);
  }

  /**
   * A message: the workspace's next turn, a session task on the same agent
   * version, conversation, capsule and run. One turn at a time: a message
   * while one runs is a 409 (workspace_busy); an ended workspace takes none.
   * `limits` (a playbook's chain) set the turn's max_turns and timeout; a
   * message from the API takes the agent's.
   */
  async message(
    principal: Principal,
    id: string,
    input: MessageInput,
    limits: { max_turns?: number; timeout_sec?: number } = {},
  ) {
    const teamId = this.team(principal, 'write');
    const ws = await this.found(teamId, id);
    this.refuseTurn(ws);
    const now = this.ctx.clock.now();
    const task = await this.tasks.submit(
      principal,
      {
        agent_id: ws.agentId,
        agent_version: ws.agentVersion,
        prompt: input.content,
        mode: 'session',
        ...limits,
        allowed_tools: ws.allowedTools,
        ...(ws.modelOverride ? { model: ws.modelOverride } : {}),
        ...(input.file_ids ? { input_file_ids: input.file_ids } : {}),
      },
      (tx, _team, taskId) => ({
        workspaceId: ws.id,
        runId: ws.runId,
        // The status change's outbox row goes with the update that makes it; its log event is
        // written by the task's first append, ahead of the task's own (a turn that cannot begin
        // rolls the whole transaction back).
        begin: async () => {
          const recorded = this.outbox.alongside(tx, [statusChanged(ws, 'active', 'message')]);
          const row = await repo.beginTurn(tx, teamId, ws.id, taskId, now, recorded);
          if (!row) this.refuseTurn((await repo.findWorkspace(tx, teamId, ws.id)) ?? ws, true);
          else this.beginning(taskId, row);
          return [moveEvent('active', 'message', { task_id: taskId })];
        },
      }),
    );
    this.tasks.log.wake(ws.id);
    return task;
  }

  /** Why the workspace takes no message now (it is ended, or a turn runs). */
  private refuseTurn(ws: repo.WorkspaceRow, always = false): void {
    if (ws.status === 'expired' || ws.status === 'terminated')
      throw new ConflictError(
        'workspace_expired',
        `workspace ${ws.id} is ${ws.status}: its history is kept, it takes no more messages`,
        { status: ws.status },
      );
    if (ws.currentTaskId !== null || always)
      throw new ConflictError(
        'workspace_busy',
        `workspace ${ws.id} is answering a message (task ${ws.currentTaskId}); send the next one after it`,
        { status: ws.status, task_id: ws.currentTaskId },
      );
  }

  /** Cancels the running turn (the WebSocket's cancel); none running is a 409. */
  async cancelTurn(principal: Principal, id: string) {
    const teamId = this.team(principal, 'write');
    const ws = await this.found(teamId, id);
    if (!ws.currentTaskId)
      throw new ConflictError('no_turn_running', `workspace ${ws.id} has no turn running`);
    return this.tasks.cancel(principal, ws.currentTaskId);
  }

  /** DELETE: the capsule is removed and the run ended; the row and its history stay (terminated). */
  async terminate(principal: Principal, id: string) {
    const teamId = this.team(principal, 'write');
    const ws = await this.found(teamId, id);
    if (ws.status === 'expired' || ws.status === 'terminated') return workspaceView(ws);
    const ended = await this.end(ws, 'terminated', 'deleted', actorOf(principal).actorId ?? 'a user');
    if (ws.currentTaskId) await this.tasks.cancel(principal, ws.currentTaskId).catch(() => undefined);
    return workspaceView(ended ?? (await this.found(teamId, id)));
  }

  /** expired or terminated: the row moves first (no turn starts after), then the capsule goes and the run ends. */
  private async end(
    ws: repo.WorkspaceRow,
    to: 'expired' | 'terminated',
    reason: string,
    by: string,
  ): Promise<repo.WorkspaceRow | undefined> {
    const now = this.ctx.clock.now();
    let ended: repo.WorkspaceRow | undefined;
    let seen = ws;
    // The move is conditional on the status read. A DELETE holds whatever happened since (a turn
    // ending active → idle, a pause): the row is read again and the move retried from where it is.
    // Expiry does not: a paused workspace a message has just resumed is no longer due.
    const tries = to === 'terminated' ? 5 : 1;
    for (let n = 0; !ended && n < tries; n++) {
      if (n > 0) {
        const fresh = await repo.findWorkspace(this.db, seen.teamId, seen.id);
        if (!fresh || fresh.status === 'expired' || fresh.status === 'terminated') return undefined;
        seen = fresh;
      }
      const from = seen;
      ended = await this.db.transaction(async (tx) => {
        const row = await repo.updateWorkspace(
          tx,
          from.teamId,
          from.id,
          { status: to, endedAt: now, updatedAt: now },
          { statuses: [from.status] },
        );
        if (row) await this.moved(tx, from, to, reason, { by });
        return row;
      });
    }
    if (!ended) return undefined;
    this.tasks.log.wake(seen.id);
    if (seen.status === 'idle') await this.chargeIdle(seen, seen.lastActiveAt, now);
    // The row as it ended: a turn may have attached its capsule since `ws` was read.
    const capsuleId = ended.capsuleId ?? seen.capsuleId;
    if (capsuleId)
      await this.ports.capsules
        .destroy(seen.teamId, this.actor(seen.id), capsuleId)
        .catch((err: unknown) =>
          this.ctx.log.warn({ err, workspace_id: seen.id }, 'a workspace capsule could not be removed'),
        );
    await this.ports.runs.end(seen.teamId, seen.runId, 'success', `workspace_${to}`);
    return ended;
  }

  /** The capsule's running time between turns (to a message, a pause, the end) goes to the workspace's run. */
  private async chargeIdle(ws: repo.WorkspaceRow, from: Date, to: Date): Promise<void> {
    const seconds = (to.getTime() - from.getTime()) / 1000;
    const capsuleId = ws.capsuleId;
    if (!capsuleId || seconds <= 0) return;
    try {
      const capsule = await this.ports.capsules.describe(ws.teamId, this.actor(ws.id), capsuleId);
      if (!capsule) return;
      await this.ports.runs.chargeSandbox({
        teamId: ws.teamId,
        runId: ws.runId,
        agentId: ws.agentId,
        capsuleId,
        seconds,
        vcpus: capsule.vcpus,
        memoryMb: capsule.memoryMb,
      });
    } catch (err) {
      this.ctx.log.warn({ err, workspace_id: ws.id }, 'charging a workspace’s idle time failed');
    }
  }

  /**
   * The workspace's capsule, running, for its files routes: a paused one is
   * resumed (the workspace is idle again, its idle timeout counting anew).
   */
  async running(principal: Principal, id: string, need: 'read' | 'write') {
    const teamId = this.team(principal, need);
    const ws = await this.found(teamId, id);
    if (isEnded(ws.status))
      throw new ConflictError('workspace_expired', `workspace ${ws.id} is ${ws.status}: its files are gone`, {
        status: ws.status,
      });
    if (!ws.capsuleId)
      throw new ConflictError(
        'workspace_not_started',
        `workspace ${ws.id} has no capsule yet (its first turn starts it)`,
      );
    if (ws.status === 'paused') {
      const c = await this.ports.capsules.reuse(teamId, this.actor(ws.id), ws.capsuleId, 60_000);
      if (!c) throw new ConflictError('capsule_gone', `the capsule of workspace ${ws.id} is gone`);
      const now = this.ctx.clock.now();
      await this.db.transaction(async (tx) => {
        const row = await repo.updateWorkspace(
          tx,
          teamId,
          ws.id,
          { status: 'idle', pausedAt: null, lastActiveAt: now, updatedAt: now },
          { statuses: ['paused'] },
        );
        if (row) await this.moved(tx, ws, 'idle', 'files');
      });
      this.tasks.log.wake(ws.id);
    }
    return { teamId, workspace: ws, capsuleId: ws.capsuleId };
  }

  async events(principal: Principal, id: string, afterSeq: number, limit: number) {
    const teamId = this.team(principal, 'read');
    const ws = await this.found(teamId, id);
    const rows = await this.tasks.log.readWorkspace(
      teamId,
      ws.id,
      seqOf(afterSeq),
      Math.min(Math.max(1, limit), 1000),
    );
    const last = rows.at(-1)?.seq ?? afterSeq;
    return {
      data: rows.map(workspaceEventView),
      next_after_seq: last,
      done: isEnded(ws.status) && last >= ws.eventSeq,
    };
  }

  /** The workspace's events after `afterSeq` as they come, until it has ended (SSE, WebSocket). Checks access first. */
  async follow(principal: Principal, id: string, afterSeq: number, signal: AbortSignal) {
    const teamId = this.team(principal, 'read');
    const from = seqOf(afterSeq);
    const ws = await this.found(teamId, id);
    const ended = async () => isEnded((await this.found(teamId, ws.id)).status);
    const log = this.tasks.log;
    return (async function* () {
      for await (const row of log.followWorkspace(teamId, ws.id, from, ended, signal))
        yield workspaceEventView(row);
    })();
  }

  // -- the sweep --------------------------------------------------------------------------

  startSweeps(): void {
    this.sweepTimer = this.ctx.timers.every(this.options.sweepEveryMs, () => {
      void this.sweep().catch((err: unknown) => this.ctx.log.warn({ err }, 'the workspace sweep failed'));
    });
  }

  stopSweeps(): void {
    this.sweepTimer?.cancel();
    this.sweepTimer = undefined;
  }

  /**
   * Idle workspaces past their agent's idle_timeout_sec: paused (their
   * capsule paused, its idle time charged); paused ones past
   * session_ttl_sec: expired (the capsule removed, the run ended).
   */
  async sweep(now = this.ctx.clock.now()): Promise<void> {
    for (const ws of await repo.systemIdlePast(this.db, now, 50)) {
      const paused = await this.db.transaction(async (tx) => {
        const row = await repo.updateWorkspace(
          tx,
          ws.teamId,
          ws.id,
          { status: 'paused', pausedAt: now, updatedAt: now },
          { statuses: ['idle'], currentTaskId: null },
        );
        if (row) await this.moved(tx, ws, 'paused', 'idle_timeout', { idle_timeout_sec: ws.idleTimeoutSec });
        return row;
      });
      if (!paused) continue;
      this.tasks.log.wake(ws.id);
      await this.chargeIdle(ws, ws.lastActiveAt, now);
      // Only while it is still paused: a message may have begun a turn since, which uses the capsule
      // running (the check holds the workspace's row until the capsule is pausing; a turn that begins
      // after that finds it so, and resumes it).
      if (ws.capsuleId)
        await this.ports.capsules
          .pause(ws.teamId, this.actor(ws.id), ws.capsuleId, (tx) =>
            repo.lockStillPaused(tx, ws.teamId, ws.id),
          )
          .catch((err: unknown) =>
            this.ctx.log.warn({ err, workspace_id: ws.id }, 'pausing a workspace capsule failed'),
          );
    }
    for (const ws of await repo.systemPausedPast(this.db, now, 50))
      await this.end(ws, 'expired', 'session_ttl', 'the sweep').catch((err: unknown) =>
        this.ctx.log.warn({ err, workspace_id: ws.id }, 'expiring a workspace failed'),
      );
  }
}

export function isEnded(status: WorkspaceStatus): boolean {
  return (repo.ENDED_STATUSES as readonly string[]).includes(status);
}

/** The model's title as a name: its first line, without quotes or a trailing full stop, cut short. */
function cleanTitle(text: string): string {
  const line = text.trim().split('\n')[0] ?? '';
  return line
    .replace(/^["'“”#*\s]+|["'“”*.\s]+$/g, '')
    .slice(0, TITLE_MAX_CHARS)
    .trim();
}

/** The event of a workspace's status change in its own log. */
function moveEvent(to: WorkspaceStatus, reason: string, extra: Record<string, unknown>) {
  return { type: 'workspace' as const, payload: { status: to, reason, ...extra } };
}

/** The outbox event of a workspace's status change. */
function statusChanged(row: repo.WorkspaceRow, to: WorkspaceStatus, reason: string) {
  return {
    teamId: row.teamId,
    actorKind: 'system',
    actorId: 'workspaces',
    subjectId: row.id,
    type: 'workspace.status_changed' as const,
    data: { agent_id: row.agentId, from: row.status, to, reason },
  };
}
