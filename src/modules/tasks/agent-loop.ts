// One file over 400 lines: the conversation with the model, turn by turn
// (calls, tool calls, approvals, the result), reads top to bottom; a streamed
// answer's parsing and its text deltas are in stream-call.ts.
import type { Context } from '../../core/context.ts';
import { AppError } from '../../core/errors.ts';
import type { AgentId, RunId, TeamId } from '../../core/ids.ts';
import { ATTR, inSpan, type Span } from '../../core/tracing.ts';
import type { ConversationMessage } from '../../db/schema/workspaces.ts';
import type { Definition } from '../agents/definition.ts';
import type { ProxyResult } from '../gateway/call.ts';
import type { SecretRedactor } from '../secrets/redact.ts';
import type { TaskEventType } from './event-log.ts';
import type { LoopTool } from './loop-tools.ts';
import { validateResult } from './output-schema.ts';
import type { TaskPorts } from './ports.ts';
import { DeltaWriter, readCompletionStream } from './stream-call.ts';
import { isBuiltIn, toolDefinitions } from './tool-definitions.ts';
import { runTool, type ToolCapsule } from './tools.ts';

/** Why a task ended other than by its answer: the code becomes the task's error code. */
export class TaskEnd extends Error {
  constructor(
    readonly code: string,
    message: string,
    readonly status: 'failed' | 'cancelled' = 'failed',
  ) {
    super(message);
  }
}

/** How many bad tool calls in a row (malformed arguments, unknown tools) a model gets before the task fails. */
const MAX_BAD_CALLS_IN_A_ROW = 3;
/** How many results submit_result may refuse (they do not match output_schema) before the task fails. */
const MAX_RESULT_RETRIES = 2;
/** How long a rate-limited call waits before it is tried again, at most. */
const MAX_RATE_LIMIT_WAIT_MS = 60_000;

type ChatMessage = ConversationMessage;

interface Completion {
  text: string;
  toolCalls: NonNullable<ChatMessage['tool_calls']>;
  inputTokens: number;
  outputTokens: number;
  headers: Record<string, string>;
  finishReason: string | null;
}

export interface LoopInput {
  teamId: TeamId;
  taskId: string;
  agentId: AgentId;
  runId: RunId;
  model: string;
  prompt: string;
  /** A workspace's conversation so far (the system prompt aside): the prompt follows it. */
  history?: readonly ConversationMessage[];
  definition: Definition;
  maxTurns: number;
  outputSchema: Record<string, unknown> | null;
  inputFiles: string[];
  /** Tools beyond the built-ins (loop-tools.ts), offered beside those the definition allows. */
  extraTools: LoopTool[];
  /** Lines the tool sources add to the system prompt. */
  promptLines: string[];
  /** The capsule, once it runs (the first model call does not wait for it). */
  capsule: () => Promise<ToolCapsule>;
  /** A model call was admitted by the gateway and goes to the provider. */
  callAdmitted: () => void;
  envs: Record<string, string>;
  redactor: SecretRedactor;
  /** Stream mode: the model's answers are streamed, their text written as text_delta events as it comes. */
  stream?: boolean;
  /** Seconds left before the task's timeout (a tool's timeout is capped by it). */
  secondsLeft: () => number;
  signal: AbortSignal;
}

export interface LoopHooks {
  event(type: TaskEventType, payload: Record<string, unknown>): Promise<void>;
  /** A tool output too long for the event log: stored whole as a file; answers its id. */
  storeOutput(name: string, text: string): Promise<string>;
  turn(turns: number): void;
  /** awaiting_approval while `wait` runs, running again after. */
  awaitingApproval(approvalIds: string[], tools: string[]): Promise<void>;
  resumed(): Promise<void>;
}

export interface LoopResult {
  result: unknown;
  turns: number;
}

/** Characters of a tool output an event carries; the whole output goes to a file. */
export const EVENT_OUTPUT_CHARS = 4000;

function systemPrompt(
  def: Definition,
  inputFiles: string[],
  hasSchema: boolean,
  extra: readonly string[],
): string {
  const lines = [
    'You are working inside a sandbox (a Linux capsule) through the tools you are given.',
    'Your working directory is /workspace.',
  ];
  if (inputFiles.length > 0) lines.push(`Input files in /workspace: ${inputFiles.join(', ')}.`);
  lines.push('Put any files you produce for the user in /workspace/outputs/.');
  lines.push(
    hasSchema
      ? 'When you are done, call submit_result with a result that matches the required schema.'
      : 'When you are done, call submit_result with your result, or answer without a tool call.',
  );
  lines.push(...extra);
  return def.system_prompt ? `${def.system_prompt}\n\n${lines.join('\n')}` : lines.join('\n');
}

/**
 * One attempt of a task: the agent loop. Each turn is a model call through
 * the gateway's governed path (OpenAI wire format; the gateway translates for
 * an Anthropic key), then the tool calls it asked for, run in the capsule.
 * Tool output is redacted of every secret before it is stored, streamed or
 * sent back to the model.
 */
export class AgentLoop {
  private readonly messages: ChatMessage[];
  private badCalls = 0;
  private resultRetries = 0;
  /** Every tool the model is offered, by name: the allowed built-ins and the sources' tools. */
  private readonly offered: Map<string, LoopTool | 'built_in'>;

  constructor(
    private readonly ctx: Context,
    private readonly ports: Pick<TaskPorts, 'callModel' | 'approvals'>,
    private readonly input: LoopInput,
    private readonly hooks: LoopHooks,
  ) {
    this.messages = [
      {
        role: 'system',
        content: systemPrompt(
          input.definition,
          input.inputFiles,
          input.outputSchema !== null,
          input.promptLines,
        ),
      },
      ...(input.history ?? []),
      { role: 'user', content: input.prompt },
    ];
    this.offered = new Map<string, LoopTool | 'built_in'>(
      input.definition.tools.filter(isBuiltIn).map((name) => [name, 'built_in']),
    );
    for (const t of input.extraTools) this.offered.set(t.name, t);
  }

  /**
   * The conversation as it stands (the system prompt aside), every secret
   * taken out: a workspace keeps it for its next turn.
   */
  conversation(): ConversationMessage[] {
    return redactedValue(this.input.redactor, this.messages.slice(1)) as ConversationMessage[];
  }

  async run(): Promise<LoopResult> {
    const tools = [
      ...toolDefinitions(this.input.definition.tools.filter(isBuiltIn), this.input.outputSchema ?? undefined),
      ...this.input.extraTools.map((t) => ({
        type: 'function' as const,
        function: { name: t.name, description: t.description, parameters: structuredClone(t.parameters) },
      })),
    ];
    for (let turn = 1; turn <= this.input.maxTurns; turn++) {
      this.hooks.turn(turn);
      // A span per turn: its model call (the gateway's span) and its tool calls are its children.
      const ended = await inSpan(
        this.ctx.tracer,
        'task.turn',
        { attributes: { 'paddock.task.id': this.input.taskId, 'paddock.task.turn': turn } },
        () => this.turn(tools, turn),
      );
      if (ended) return ended;
    }
    throw new TaskEnd(
      'max_turns',
      `the task reached its max_turns (${this.input.maxTurns}) without a result`,
    );
  }

  /** One turn: the model call, then the tool calls it asked for; answers the task's result when it ends here. */
  private async turn(tools: unknown[], turn: number): Promise<LoopResult | undefined> {
    const answer = await this.call(tools, turn);
    if (answer.text !== '')
      await this.hooks.event('text', { turn, text: this.input.redactor.redact(answer.text) });
    if (answer.toolCalls.length === 0) {
      this.messages.push({ role: 'assistant', content: this.input.redactor.redact(answer.text) });
      return { result: this.input.redactor.redact(answer.text), turns: turn };
    }
    this.messages.push({ role: 'assistant', content: answer.text || null, tool_calls: answer.toolCalls });
    const submitted = await this.runToolCalls(answer.toolCalls, turn);
    if (submitted) return { result: redactedValue(this.input.redactor, submitted.result), turns: turn };
    return undefined;
  }

  /** Runs the turn's tool calls in order; answers the result when one was submit_result and it was accepted. */
  private async runToolCalls(
    calls: NonNullable<ChatMessage['tool_calls']>,
    turn: number,
  ): Promise<{ result: unknown } | undefined> {
    let submitted: { result: unknown } | undefined;
    for (const call of calls) {
      // A span per tool call (GenAI's execute_tool): the capsule commands it runs are its children.
      // The name only when it is one the model was offered (anything else is the model's text).
      const offered = this.offered.has(call.function.name);
      submitted = await inSpan(
        this.ctx.tracer,
        offered ? `execute_tool ${call.function.name}` : 'execute_tool',
        {
          attributes: {
            [ATTR.genAiOperationName]: 'execute_tool',
            [ATTR.genAiToolName]: offered ? call.function.name : undefined,
            [ATTR.genAiToolCallId]: call.id.slice(0, 200),
            [ATTR.genAiToolType]: 'function',
            'paddock.task.turn': turn,
          },
        },
        (span) => this.runToolCall(call, turn, submitted, span),
      );
    }
    return submitted;
  }

  /** One tool call; answers the task's submitted result (this call's, or an earlier one's). */
  private async runToolCall(
    call: NonNullable<ChatMessage['tool_calls']>[number],
    turn: number,
    earlier: { result: unknown } | undefined,
    span: Span,
  ): Promise<{ result: unknown } | undefined> {
    let submitted = earlier;
    const { name } = call.function;
    const args = this.input.redactor.redact(call.function.arguments);
    await this.hooks.event('tool_call', { turn, id: call.id, name, arguments: parsedOrRaw(args) });
    let ok: boolean;
    let output: string;
    let full: string | undefined;
    let exitCode: number | undefined;
    /** A failure that counts towards malformed_tool_calls. */
    let bad = false;
    if (submitted) {
      ok = false;
      output = 'the result was already submitted; this call was not run';
    } else if (!this.offered.has(name)) {
      ok = false;
      bad = true;
      output = `there is no tool named ${JSON.stringify(name)}; use one of: ${[...this.offered.keys()].join(', ')}`;
    } else if (name === 'submit_result') {
      const verdict = this.submit(call.function.arguments);
      ok = verdict.ok;
      output = verdict.ok ? 'result accepted' : verdict.message;
      if (verdict.ok) submitted = { result: verdict.result };
    } else {
      const tool = this.offered.get(name);
      const outcome =
        tool === 'built_in'
          ? await runTool(
              await this.input.capsule(),
              { name, arguments: call.function.arguments },
              { envs: this.input.envs, maxTimeoutSec: Math.max(1, Math.floor(this.input.secondsLeft())) },
            )
          : await tool!.run(call.function.arguments, {
              turn,
              callId: call.id,
              signal: this.input.signal,
              secondsLeft: this.input.secondsLeft,
            });
      ok = outcome.ok;
      // A built-in's failure counts (bash's exit codes aside); a source's tool says when it does.
      bad = tool === 'built_in' ? !ok && name !== 'bash' : outcome.malformed === true;
      output = this.input.redactor.redact(outcome.output);
      full = outcome.full === undefined ? undefined : this.input.redactor.redact(outcome.full);
      exitCode = outcome.exitCode;
    }
    this.badCalls = bad ? this.badCalls + 1 : 0;
    span.set({ 'paddock.tool.ok': ok, [ATTR.processExitCode]: exitCode });
    await this.recordResult(turn, call.id, name, ok, output, full, exitCode);
    this.messages.push({ role: 'tool', tool_call_id: call.id, content: output });
    if (this.badCalls >= MAX_BAD_CALLS_IN_A_ROW)
      throw new TaskEnd(
        'malformed_tool_calls',
        `the model made ${MAX_BAD_CALLS_IN_A_ROW} tool calls in a row that could not run; the last: ${output}`,
      );
    return submitted;
  }

  private async recordResult(
    turn: number,
    id: string,
    name: string,
    ok: boolean,
    output: string,
    full: string | undefined,
    exitCode: number | undefined,
  ): Promise<void> {
    const whole = full ?? output;
    const payload: Record<string, unknown> = { turn, id, name, ok, output: whole };
    if (exitCode !== undefined) payload.exit_code = exitCode;
    if (whole.length > EVENT_OUTPUT_CHARS) {
      const fileId = await this.hooks.storeOutput(`${name}-${id}.txt`, whole);
      payload.output = `${whole.slice(0, EVENT_OUTPUT_CHARS)}\n[cut at ${EVENT_OUTPUT_CHARS} of ${whole.length} characters; the whole output is file ${fileId}]`;
      payload.truncated = true;
      payload.output_file_id = fileId;
    }
    await this.hooks.event('tool_result', payload);
  }

  private submit(rawArgs: string): { ok: true; result: unknown } | { ok: false; message: string } {
    let args: unknown;
    try {
      args = JSON.parse(rawArgs);
    } catch {
      return this.refuseResult('the arguments of submit_result are not valid JSON');
    }
    if (args === null || typeof args !== 'object' || !('result' in args))
      return this.refuseResult('submit_result needs {"result": …}');
    const result = (args as { result: unknown }).result;
    if (this.input.outputSchema) {
      const verdict = validateResult(this.input.outputSchema, result);
      if (!verdict.ok)
        return this.refuseResult(`the result does not match the output schema: ${verdict.message}`);
    }
    return { ok: true, result };
  }

  private refuseResult(message: string): { ok: false; message: string } {
    this.resultRetries++;
    if (this.resultRetries > MAX_RESULT_RETRIES)
      throw new TaskEnd(
        'invalid_result',
        `submit_result was refused ${this.resultRetries} times; the last: ${message}`,
      );
    return { ok: false, message };
  }

  /** One model call through the gateway, waiting out approvals and rate limits. */
  private async call(tools: unknown[], turn: number): Promise<Completion> {
    let approvalId: string | undefined;
    for (;;) {
      const headers: Record<string, string> = { 'x-paddock-run-id': this.input.runId };
      if (approvalId) headers['x-paddock-approval-id'] = approvalId;
      let result: Awaited<ReturnType<TaskPorts['callModel']>>;
      try {
        result = await this.ports.callModel({
          format: 'openai',
          agentId: this.input.agentId,
          headers,
          body: this.body(tools),
          signal: this.input.signal,
          onAdmitted: this.input.callAdmitted,
        });
      } catch (err) {
        if (this.input.signal.aborted) throw this.input.signal.reason;
        const wait = rateLimitWait(err);
        if (wait !== undefined && wait / 1000 < this.input.secondsLeft()) {
          await this.ctx.timers.sleep(wait, this.input.signal);
          continue;
        }
        throw modelCallEnd(err);
      }
      let completion: Completion;
      let costUsd: number | null = Number(result.headers['x-paddock-cost-usd'] ?? 0);
      if (result.kind === 'stream') {
        if (!this.input.stream)
          throw new TaskEnd('model_error', 'the gateway answered a stream to a call that asked for none');
        completion = parseCompletion(await this.streamed(result, turn), result.headers);
        const micros = result.costMicros?.();
        // A stream's headers went out before its cost was known: the gateway says it once the stream ended.
        const header = result.headers['x-paddock-cost-usd'];
        costUsd = micros !== undefined ? micros / 1e6 : header !== undefined ? Number(header) : null;
      } else {
        if (result.status === 202) {
          const ids = await this.waitForApproval(result.body);
          approvalId = ids[0];
          continue;
        }
        if (result.status >= 400) throw modelAnswerEnd(result.status, result.body);
        completion = parseCompletion(result.body, result.headers);
      }
      await this.hooks.event('model_call', {
        turn,
        step_id: completion.headers['x-paddock-step-id'] ?? null,
        provider: completion.headers['x-paddock-provider'] ?? null,
        model: completion.headers['x-paddock-model'] ?? null,
        input_tokens: completion.inputTokens,
        output_tokens: completion.outputTokens,
        cost_usd: costUsd,
        finish_reason: completion.finishReason,
        tool_calls: completion.toolCalls.length,
      });
      return completion;
    }
  }

  private body(tools: unknown[]): Record<string, unknown> {
    // A new object each time: the gateway takes its controls out of the body, and an
    // approval's replay must be the very request that was approved.
    return structuredClone({
      model: this.input.model,
      messages: this.messages,
      ...(tools.length > 0 ? { tools, tool_choice: 'auto' } : {}),
      ...(this.input.stream ? { stream: true, stream_options: { include_usage: true } } : {}),
    });
  }

  /** Reads a streamed answer whole, writing its text as text_delta events (redacted) as it comes. */
  private async streamed(result: Extract<ProxyResult, { kind: 'stream' }>, turn: number): Promise<unknown> {
    const writer = new DeltaWriter(this.ctx.timers, this.input.redactor, (text) =>
      this.hooks.event('text_delta', { turn, text }),
    );
    try {
      const body = await readCompletionStream(result.chunks, (piece) => writer.push(piece));
      await writer.end();
      return body;
    } catch (err) {
      if (this.input.signal.aborted) {
        writer.close();
        throw this.input.signal.reason;
      }
      // A stream that broke off: the text that came is written (the task ends on the error after it).
      await writer.end().catch(() => undefined);
      throw modelCallEnd(err);
    }
  }

  /** awaiting_approval until every approval asked for is decided; answers them when approved. */
  private async waitForApproval(body: unknown): Promise<string[]> {
    const requests =
      (body as { approval_requests?: Array<{ id: string; tool: string }> }).approval_requests ?? [];
    const ids = requests.map((r) => r.id);
    if (ids.length === 0)
      throw new TaskEnd('approval_error', 'the gateway asked for an approval but named none');
    await this.hooks.awaitingApproval(
      ids,
      requests.map((r) => r.tool),
    );
    for (;;) {
      const statuses = await Promise.all(ids.map((id) => this.ports.approvals.status(this.input.teamId, id)));
      if (statuses.some((s) => s === 'rejected'))
        throw new TaskEnd(
          'approval_rejected',
          `a tool call of the task was rejected (${requests.map((r) => r.tool).join(', ')})`,
        );
      if (statuses.some((s) => s === 'expired' || s === undefined))
        throw new TaskEnd('approval_expired', 'an approval the task waited for expired');
      if (statuses.every((s) => s === 'approved')) break;
      await this.ctx.timers.sleep(APPROVAL_POLL_MS, this.input.signal);
    }
    await this.hooks.resumed();
    return ids;
  }
}

/** How often a task waiting for an approval looks again. */
export const APPROVAL_POLL_MS = 500;

/** A JSON value with the secrets taken out of every string in it (keys too). */
function redactedValue(redactor: SecretRedactor, value: unknown): unknown {
  if (typeof value === 'string') return redactor.redact(value);
  if (Array.isArray(value)) return value.map((v) => redactedValue(redactor, v));
  if (value !== null && typeof value === 'object')
    return Object.fromEntries(
      Object.entries(value).map(([k, v]) => [redactor.redact(k), redactedValue(redactor, v)]),
    );
  return value;
}

function parsedOrRaw(text: string): unknown {
  try {
    return JSON.parse(text);
  } catch {
    return text;
  }
}

function parseCompletion(body: unknown, headers: Record<string, string>): Completion {
  const b = body as {
    choices?: Array<{ message?: ChatMessage; finish_reason?: string | null }>;
    usage?: { prompt_tokens?: number; completion_tokens?: number };
  };
  const choice = b.choices?.[0];
  if (!choice?.message) throw new TaskEnd('model_error', 'the model’s answer had no message');
  const calls = choice.message.tool_calls ?? [];
  for (const c of calls) {
    if (typeof c?.id !== 'string' || typeof c.function?.name !== 'string')
      throw new TaskEnd('malformed_tool_calls', 'the model’s answer had a tool call without an id or a name');
    if (typeof c.function.arguments !== 'string')
      c.function.arguments = JSON.stringify(c.function.arguments ?? {});
  }
  return {
    text: typeof choice.message.content === 'string' ? choice.message.content : '',
    toolCalls: calls.map((c) => ({
      id: c.id,
      type: 'function',
      function: { name: c.function.name, arguments: c.function.arguments },
    })),
    inputTokens: b.usage?.prompt_tokens ?? 0,
    outputTokens: b.usage?.completion_tokens ?? 0,
    headers,
    finishReason: choice.finish_reason ?? null,
  };
}

/** A refused call's wait, when it was a rate limit worth waiting for. */
function rateLimitWait(err: unknown): number | undefined {
  if (!(err instanceof AppError) || err.statusCode !== 429) return undefined;
  const sec = Number(err.details?.retry_after_sec ?? err.headers?.['retry-after'] ?? 1);
  const ms = Math.max(100, (Number.isFinite(sec) ? sec : 1) * 1000);
  return ms <= MAX_RATE_LIMIT_WAIT_MS ? ms : undefined;
}

/** What ends a task whose model call the gateway refused or could not make. */
function modelCallEnd(err: unknown): TaskEnd {
  if (err instanceof TaskEnd) return err;
  if (err instanceof AppError) return new TaskEnd(err.code, err.message);
  return new TaskEnd('model_error', 'the model call failed unexpectedly');
}

function modelAnswerEnd(status: number, body: unknown): TaskEnd {
  const e = (body as { error?: { code?: unknown; message?: unknown } } | null)?.error;
  const code = typeof e?.code === 'string' ? e.code : status >= 500 ? 'provider_error' : 'model_error';
  const message = typeof e?.message === 'string' ? e.message : `the model call answered ${status}`;
  return new TaskEnd(code, message);
}
