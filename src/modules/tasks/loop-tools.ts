import type { AgentId, RunId, TeamId } from '../../core/ids.ts';
import type { SecretRedactor } from '../secrets/redact.ts';
import type { LoopHooks } from './agent-loop.ts';
import type { TaskEventType } from './event-log.ts';
import type { AgentForTask, TaskPorts } from './ports.ts';
import type { ToolCapsule, ToolOutcome } from './tools.ts';

// Tools beyond the capsule's built-ins (tools.ts): memory, skills, web_fetch,
// MCP servers' tools, delegation to sub-agents. Each comes from a ToolSource
// the runner is given; an attempt opens every source once, before its first
// model call, and closes them when it ends. The agent loop offers their
// tools beside the built-ins and runs a call by the tool's name; the
// gateway governs them like any tool (policy tool rules and approvals see
// the names the model is offered).

/** One call of a tool, as the loop hands it over. */
export interface ToolCallContext {
  turn: number;
  /** The model's id for this call. */
  callId: string;
  signal: AbortSignal;
  /** Seconds before the task's timeout. */
  secondsLeft(): number;
}

/** A tool the model is offered, run by the runner (never by the model's own text). */
export interface LoopTool {
  /** The name the model calls it by: `^[A-Za-z0-9_-]{1,64}$` (OpenAI's and Anthropic's rule). */
  name: string;
  description: string;
  /** A JSON Schema object for its arguments. */
  parameters: Record<string, unknown>;
  /**
   * Runs one call. `rawArguments` is the model's JSON text, untrusted: a
   * call the model can fix answers `ok: false` with what to send instead. A
   * throw ends the task (a TaskEnd with its code; anything else is internal).
   */
  run(rawArguments: string, call: ToolCallContext): Promise<ToolOutcome>;
}

/** What a source knows of the attempt it opens for. */
export interface ToolSourceContext {
  teamId: TeamId;
  taskId: string;
  agent: AgentForTask;
  agentId: AgentId;
  runId: RunId;
  /** The model the loop calls (resolved). */
  model: string;
  /** The task's capsule, started on first use (a source that needs it at open delays the first model call). */
  capsule(): Promise<ToolCapsule>;
  /** The egress allow-list of the task's capsule (environment + agent). */
  networkAllow: string[];
  /** The task's secrets, for processes in the capsule only. */
  envs: Record<string, string>;
  redactor: SecretRedactor;
  signal: AbortSignal;
  secondsLeft(): number;
  /** Appends to the task's event log. */
  event(type: TaskEventType, payload: Record<string, unknown>): Promise<void>;
  /** 0 for the task's own agent; 1 and more inside delegation (sub-agents). */
  depth: number;
  /** The attempt's loop hooks, for a source that runs an agent loop of its own (delegation). */
  loopHooks?: Pick<LoopHooks, 'storeOutput' | 'awaitingApproval' | 'resumed'>;
  /** The attempt's way to the gateway (it counts what each call cost), for such a loop's calls. */
  callModel?: TaskPorts['callModel'];
}

/** What an open source gives the loop. */
export interface ToolSet {
  tools: LoopTool[];
  /** Lines for the system prompt (what the tools are for, the skills one may load). */
  promptLines?: string[];
  /** Ends what the source started for the attempt (MCP server processes, connections). */
  close?(): Promise<void>;
}

export interface ToolSource {
  /** For logs and errors. */
  readonly name: string;
  /** The tools for this attempt's agent; undefined when the agent does not use this source. */
  open(ctx: ToolSourceContext): Promise<ToolSet | undefined>;
}

/** Opens every source for an attempt; a source that fails closes those already open, then throws. */
export async function openToolSources(
  sources: readonly ToolSource[],
  ctx: ToolSourceContext,
): Promise<ToolSet[]> {
  const results = await Promise.allSettled(sources.map((s) => s.open(ctx)));
  const sets = results.flatMap((r) => (r.status === 'fulfilled' && r.value ? [r.value] : []));
  const failed = results.find((r): r is PromiseRejectedResult => r.status === 'rejected');
  if (failed) {
    await closeToolSets(sets);
    throw failed.reason;
  }
  const seen = new Set<string>();
  for (const t of sets.flatMap((s) => s.tools)) {
    if (seen.has(t.name)) {
      await closeToolSets(sets);
      throw new Error(`two tool sources offer a tool named ${t.name}`);
    }
    seen.add(t.name);
  }
  return sets;
}

export async function closeToolSets(sets: readonly ToolSet[]): Promise<void> {
  await Promise.allSettled(sets.map((s) => s.close?.()));
}
