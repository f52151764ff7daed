import type { Context } from '../../core/context.ts';
import type { AgentId } from '../../core/ids.ts';
import { AgentLoop, EVENT_OUTPUT_CHARS, type LoopHooks, TaskEnd } from './agent-loop.ts';
import {
  closeToolSets,
  type LoopTool,
  openToolSources,
  type ToolCallContext,
  type ToolSet,
  type ToolSource,
  type ToolSourceContext,
} from './loop-tools.ts';
import type { AgentForTask, TaskPorts } from './ports.ts';
import { cutOutput, type ToolOutcome } from './tools.ts';

// Sub-agents: an agent whose definition lists sub_agent_ids is offered a
// `delegate {agent, prompt}` tool. A call runs the sub-agent's own loop (its
// current version: system prompt, tools, max_turns, model) in the task's
// capsule, its model calls steps of the task's run under the sub-agent's own
// policy (ProxyRequest.delegation), and answers its result as the tool's
// output. docs/tasks.md, "Sub-agents", says what is limited and why.

/** A task's agent is depth 0; its sub-agents run at 1, theirs at 2, and those may not delegate. */
export const MAX_DELEGATION_DEPTH = 2;
/** Delegations one attempt of a task may start, at every depth together. */
export const MAX_DELEGATIONS_PER_TASK = 20;

/**
 * A sub-agent's end that ends the whole task: the run's money or state
 * (shared by the parent and its sub-agents), or the task itself going away.
 * Any other end (max_turns, a model or tool its policy refuses, a rejected
 * approval …) is the delegate call's failure, and the parent goes on.
 */
const ENDS_THE_TASK = new Set([
  'budget_exceeded',
  'run_force_stopped',
  'run_not_running',
  'gone',
  'cancelled',
  'timeout',
]);

interface TaskDelegations {
  /** The task's own agent, whose run every sub-agent's call joins. */
  ownerId: AgentId;
  started: number;
}

const DELEGATE_PARAMETERS = {
  type: 'object',
  properties: {
    agent: { type: 'string', description: 'the sub-agent’s name (or id)' },
    prompt: {
      type: 'string',
      description:
        'the work to hand over; the sub-agent sees nothing of this conversation, so say everything it needs',
    },
  },
  required: ['agent', 'prompt'],
  additionalProperties: false,
};

/** The delegate tool, for agents that list sub-agents (definition.sub_agent_ids). */
export class DelegateSource implements ToolSource {
  readonly name = 'delegate';
  /** Per attempt (its abort signal is shared by every depth of it): who owns the run, how many delegations started. */
  private readonly tasks = new WeakMap<AbortSignal, TaskDelegations>();

  constructor(
    private readonly ctx: Context,
    private readonly ports: Pick<TaskPorts, 'agent' | 'callModel' | 'approvals' | 'resolveModel'>,
    /** Every source the runner has (this one too): a sub-agent's own tools are opened from them. */
    private readonly sources: readonly ToolSource[],
  ) {}

  async open(ctx: ToolSourceContext): Promise<ToolSet | undefined> {
    const ids = ctx.agent.definition.sub_agent_ids;
    if (ids.length === 0) return undefined;
    if (!ctx.loopHooks) {
      this.ctx.log.warn({ task_id: ctx.taskId }, 'delegate: no loop hooks given, so no delegate tool');
      return undefined;
    }
    let task = this.tasks.get(ctx.signal);
    if (!task) {
      task = { ownerId: ctx.agentId, started: 0 };
      this.tasks.set(ctx.signal, task);
    }
    const listed = (await Promise.all(ids.map((id) => this.ports.agent(ctx.teamId, id)))).filter(
      (a): a is AgentForTask => a !== undefined,
    );
    if (listed.length === 0) return undefined;
    const byName = new Map(listed.map((a) => [a.name, a.id]));
    const atLimit = ctx.depth >= MAX_DELEGATION_DEPTH;
    const tool: LoopTool = {
      name: 'delegate',
      description:
        'Hands a piece of work to one of your sub-agents and waits for its result. It works in the same ' +
        'sandbox (/workspace) with its own instructions and tools.',
      parameters: DELEGATE_PARAMETERS,
      run: (raw, call) => this.delegate(ctx, task, ids, byName, raw, call),
    };
    return {
      tools: [tool],
      promptLines: [
        atLimit
          ? 'You are a sub-agent at the deepest level: the delegate tool will refuse; do the work yourself.'
          : 'You can hand work to a sub-agent with the delegate tool. Your sub-agents:',
        ...listed.map((a) => `- ${a.name}: ${oneLine(a.description ?? 'no description')}`),
      ],
    };
  }

  private async delegate(
    ctx: ToolSourceContext,
    task: TaskDelegations,
    ids: readonly string[],
    byName: ReadonlyMap<string, string>,
    raw: string,
    call: ToolCallContext,
  ): Promise<ToolOutcome> {
    const args = parseArguments(raw);
    if (typeof args === 'string') return { ok: false, output: args, malformed: true };
    if (ctx.depth >= MAX_DELEGATION_DEPTH)
      return refused(
        `delegation goes at most ${MAX_DELEGATION_DEPTH} levels deep and you are a sub-agent at that depth: do this work yourself`,
      );
    if (task.started >= MAX_DELEGATIONS_PER_TASK)
      return refused(
        `this task already made ${MAX_DELEGATIONS_PER_TASK} delegations, the most it may: do the rest of the work yourself`,
      );
    const id = ids.includes(args.agent) ? args.agent : byName.get(args.agent);
    if (id === undefined)
      return {
        ok: false,
        output: `there is no sub-agent ${JSON.stringify(args.agent)}; use one of: ${[...byName.keys()].join(', ')}`,
        malformed: true,
      };
    const sub = await this.ports.agent(ctx.teamId, id);
    if (!sub) return refused(`the sub-agent ${args.agent} no longer exists (it was deleted)`);
    if (sub.status === 'disabled') return refused(`the sub-agent ${sub.name} is disabled`);
    if (!sub.definition.model) return refused(`the sub-agent ${sub.name} has no model set, so it cannot run`);
    task.started++;
    const depth = ctx.depth + 1;
    const base = {
      id: call.callId,
      agent_id: sub.id,
      agent_name: sub.name,
      parent_agent_id: ctx.agentId,
      depth,
    };
    await ctx.event('delegation', { ...base, agent_version: sub.version, status: 'started' });
    // The sub-agent's events say whose they are; a deeper one's own tags win.
    const event: ToolSourceContext['event'] = (type, payload) =>
      ctx.event(type, { agent_id: sub.id, depth, delegation_id: call.callId, ...payload });
    const model = this.ports.resolveModel(sub.definition.model);
    let sets: ToolSet[] = [];
    try {
      sets = await openToolSources(this.sources, {
        ...ctx,
        agent: sub,
        agentId: sub.id,
        model,
        event,
        depth,
      });
      let turns = 0;
      const hooks: LoopHooks = {
        event,
        storeOutput: ctx.loopHooks!.storeOutput,
        turn: (n) => {
          turns = n;
        },
        awaitingApproval: ctx.loopHooks!.awaitingApproval,
        resumed: ctx.loopHooks!.resumed,
      };
      const loop = new AgentLoop(
        this.ctx,
        {
          // Its calls join the task's run: the gateway lets them, governed by the sub-agent's own policy.
          callModel: (req) =>
            (ctx.callModel ?? this.ports.callModel)({
              ...req,
              delegation: { runOwnerId: task.ownerId, depth },
            }),
          approvals: this.ports.approvals,
        },
        {
          teamId: ctx.teamId,
          taskId: ctx.taskId,
          agentId: sub.id,
          runId: ctx.runId,
          model,
          prompt: args.prompt,
          definition: sub.definition,
          maxTurns: sub.definition.max_turns,
          outputSchema: null,
          inputFiles: [],
          extraTools: sets.flatMap((s) => s.tools),
          promptLines: sets.flatMap((s) => s.promptLines ?? []),
          capsule: ctx.capsule,
          callAdmitted: () => undefined,
          envs: ctx.envs,
          redactor: ctx.redactor,
          secondsLeft: ctx.secondsLeft,
          signal: ctx.signal,
        },
        hooks,
      );
      const { result } = await loop.run();
      const text = typeof result === 'string' ? result : JSON.stringify(result, null, 2);
      const resultJson = JSON.stringify(result) ?? 'null';
      await ctx.event('delegation', {
        ...base,
        status: 'completed',
        turns,
        ...(resultJson.length <= EVENT_OUTPUT_CHARS ? { result } : { result_truncated: true }),
      });
      return { ok: true, ...cutOutput(text, 'head') };
    } catch (err) {
      if (ctx.signal.aborted) throw ctx.signal.reason;
      if (!(err instanceof TaskEnd) || ENDS_THE_TASK.has(err.code)) throw err;
      await ctx.event('delegation', {
        ...base,
        status: 'failed',
        error: { code: err.code, message: err.message },
      });
      return refused(`the sub-agent ${sub.name} did not finish (${err.code}): ${err.message}`);
    } finally {
      await closeToolSets(sets);
    }
  }
}

function refused(output: string): ToolOutcome {
  return { ok: false, output };
}

function oneLine(text: string): string {
  const line = text.replace(/\s+/g, ' ').trim();
  return line.length > 300 ? `${line.slice(0, 300)}…` : line;
}

/** {agent, prompt} from the model's JSON, or what is wrong with it. */
function parseArguments(raw: string): { agent: string; prompt: string } | string {
  let args: unknown;
  try {
    args = JSON.parse(raw);
  } catch {
    return 'the arguments of delegate are not valid JSON; send {"agent": "<name>", "prompt": "<the work>"}';
  }
  if (args === null || typeof args !== 'object' || Array.isArray(args))
    return 'delegate needs {"agent": "<name>", "prompt": "<the work>"}';
  const { agent, prompt } = args as Record<string, unknown>;
  if (typeof agent !== 'string' || agent === '') return 'delegate needs "agent": a sub-agent’s name';
  if (typeof prompt !== 'string' || prompt.trim() === '')
    return 'delegate needs "prompt": the work to hand over, as text';
  return { agent, prompt };
}
