import { Client } from '@modelcontextprotocol/sdk/client/index.js';
import { StreamableHTTPClientTransport } from '@modelcontextprotocol/sdk/client/streamableHttp.js';
import type { Transport } from '@modelcontextprotocol/sdk/shared/transport.js';
import { ErrorCode, McpError, type Tool } from '@modelcontextprotocol/sdk/types.js';
import type { Context } from '../../../core/context.ts';
import type { OutboundGuard } from '../../../core/outbound-guard.ts';
import type { McpServerSpec } from '../../agents/definition.ts';
import type { SecretRedactor } from '../../secrets/redact.ts';
import { TaskEnd } from '../agent-loop.ts';
import { raceAbort } from '../attempt.ts';
import type { LoopTool, ToolSet, ToolSource, ToolSourceContext } from '../loop-tools.ts';
import { WORKSPACE } from '../tool-definitions.ts';
import { CapsuleGone, type ToolOutcome } from '../tools.ts';
import { CapsuleStdioTransport } from './capsule-stdio.ts';
import { egressFetch } from './egress-fetch.ts';
import { toolOutput } from './results.ts';

// An agent's MCP servers as a tool source: each server is started (stdio,
// inside the task's capsule) or reached (HTTP, through the egress allow-list
// and the outbound guard) when an attempt opens, its tools offered to the
// model as `mcp__<server>__<tool>`, so the policy's tool rules and approvals
// see and govern them like any tool (docs/tasks.md, "MCP servers").

/** How long a server may take to start, initialize and list its tools. */
export const MCP_START_TIMEOUT_MS = 30_000;
/** Pages of tools/list read from one server, at most. */
const MAX_TOOL_PAGES = 10;
/** Tools offered from one server, at most (the rest are left out with a warning). */
export const MAX_TOOLS_PER_SERVER = 100;
/** A tool's description as the model gets it, at most. */
const MAX_DESCRIPTION_CHARS = 1024;
/** A tool's input schema, as JSON, at most (a bigger one leaves the tool out). */
const MAX_SCHEMA_CHARS = 32 * 1024;
/** OpenAI's and Anthropic's rule for a tool name. */
const TOOL_NAME = /^[A-Za-z0-9_-]{1,64}$/;

/** One server, connected for one attempt. */
interface Connection {
  spec: McpServerSpec;
  client: Client;
  stdio: CapsuleStdioTransport | undefined;
  /** Its connection ended (the process exited, the HTTP session closed) before the attempt did. */
  gone: boolean;
}

export class McpToolSource implements ToolSource {
  readonly name = 'mcp';

  constructor(
    private readonly ctx: Context,
    /** The one outbound-address guard: HTTP servers are connected to through it. */
    private readonly guard: OutboundGuard,
  ) {}

  async open(ctx: ToolSourceContext): Promise<ToolSet | undefined> {
    const servers = ctx.agent.definition.mcp_servers;
    if (servers.length === 0) return undefined;
    const http = egressFetch(this.guard, ctx.networkAllow);
    const connections: Connection[] = [];
    const close = async () => {
      await Promise.allSettled(connections.map((c) => c.client.close()));
      await http.close().catch(() => undefined);
    };
    const started = await Promise.allSettled(
      servers.map((spec) => this.start(spec, ctx, http.fetch, (c) => connections.push(c))),
    );
    const failures = started.flatMap((r) => (r.status === 'rejected' ? [r.reason as unknown] : []));
    if (failures.length > 0) {
      await close();
      // The capsule not starting (or its setup failing) ends the task with its own code.
      const own = failures.find((e) => e instanceof TaskEnd || e instanceof CapsuleGone);
      if (own) throw own;
      if (ctx.signal.aborted) throw ctx.signal.reason;
      throw new TaskEnd('mcp_server_failed', failures.map((e) => (e as Error).message).join('; '));
    }
    const tools: LoopTool[] = [];
    for (const r of started) {
      if (r.status !== 'fulfilled') continue;
      tools.push(...this.offer(r.value.connection, r.value.tools, ctx));
    }
    return { tools, close };
  }

  /** Starts or connects to one server, initializes it and lists its tools, within MCP_START_TIMEOUT_MS. */
  private async start(
    spec: McpServerSpec,
    ctx: ToolSourceContext,
    fetch: ReturnType<typeof egressFetch>['fetch'],
    opened: (c: Connection) => void,
  ): Promise<{ connection: Connection; tools: Tool[] }> {
    const limit = new AbortController();
    const timer = this.ctx.timers.after(MCP_START_TIMEOUT_MS, () =>
      limit.abort(new Error(`no answer within ${MCP_START_TIMEOUT_MS / 1000} s`)),
    );
    const onAbort = () => limit.abort(ctx.signal.reason);
    ctx.signal.addEventListener('abort', onAbort, { once: true });
    let stdio: CapsuleStdioTransport | undefined;
    let step = 'did not start';
    try {
      let transport: Transport;
      if (spec.transport === 'stdio') {
        const capsule = await ctx.capsule();
        const spawning = capsule.spawn({
          cmd: spec.command,
          args: spec.args ?? [],
          envs: ctx.envs,
          cwd: WORKSPACE,
        });
        // A process that starts after the limit passed is nobody's: it is ended at once.
        spawning.then(
          (p) => limit.signal.aborted && p.kill(),
          () => undefined,
        );
        const process = await raceAbort(spawning, limit.signal);
        stdio = new CapsuleStdioTransport(process);
        transport = stdio;
      } else {
        const headers = spec.headers ? filledHeaders(spec.headers, ctx.envs) : undefined;
        transport = new StreamableHTTPClientTransport(new URL(spec.url), {
          fetch,
          ...(headers ? { requestInit: { headers } } : {}),
        });
      }
      const client = new Client({ name: 'paddock', version: '1' }, { capabilities: {} });
      const connection: Connection = { spec, client, stdio, gone: false };
      opened(connection);
      client.onclose = () => {
        connection.gone = true;
      };
      // Out-of-band complaints (a stray line on stdout) neither fail a call nor end the server.
      client.onerror = () => undefined;
      const options = { signal: limit.signal, timeout: MCP_START_TIMEOUT_MS };
      await raceAbort(client.connect(transport, options), limit.signal);
      step = 'could not list its tools';
      const tools: Tool[] = [];
      let cursor: string | undefined;
      for (let page = 0; page < MAX_TOOL_PAGES; page++) {
        const r = await raceAbort(
          client.listTools(cursor === undefined ? {} : { cursor }, options),
          limit.signal,
        );
        tools.push(...r.tools);
        cursor = r.nextCursor;
        if (cursor === undefined) break;
      }
      return { connection, tools };
    } catch (err) {
      if (err instanceof TaskEnd || err instanceof CapsuleGone) throw err;
      throw new Error(serverProblem(spec, step, err, stdio, ctx.redactor));
    } finally {
      timer.cancel();
      ctx.signal.removeEventListener('abort', onAbort);
    }
  }

  /** The server's tools as the model is offered them; a tool whose name or schema cannot be offered is left out. */
  private offer(c: Connection, listed: Tool[], ctx: ToolSourceContext): LoopTool[] {
    const server = c.spec.name;
    const tools: LoopTool[] = [];
    const seen = new Set<string>();
    for (const tool of listed) {
      const name = `mcp__${server}__${tool.name}`;
      const schema = ctx.redactor.redact(JSON.stringify(tool.inputSchema));
      const problem = !TOOL_NAME.test(name)
        ? `its name as offered (${name.slice(0, 100)}) does not match ${TOOL_NAME.source}`
        : seen.has(name)
          ? 'the server lists two tools of that name'
          : schema.length > MAX_SCHEMA_CHARS
            ? `its input schema is over ${MAX_SCHEMA_CHARS} characters`
            : tools.length >= MAX_TOOLS_PER_SERVER
              ? `the server lists more than ${MAX_TOOLS_PER_SERVER} tools`
              : undefined;
      if (problem) {
        this.ctx.log.warn(
          { task_id: ctx.taskId, mcp_server: server, tool: tool.name.slice(0, 100) },
          `an MCP server's tool is not offered: ${problem}`,
        );
        continue;
      }
      seen.add(name);
      const described = tool.description ?? tool.title ?? `${tool.name} (from the MCP server ${server})`;
      tools.push({
        name,
        description: ctx.redactor.redact(described).slice(0, MAX_DESCRIPTION_CHARS),
        parameters: JSON.parse(schema) as Record<string, unknown>,
        run: (raw, call) => this.call(c, tool.name, raw, call.signal, call.secondsLeft(), ctx.redactor),
      });
    }
    return tools;
  }

  private async call(
    c: Connection,
    tool: string,
    raw: string,
    signal: AbortSignal,
    secondsLeft: number,
    redactor: SecretRedactor,
  ): Promise<ToolOutcome> {
    let args: unknown;
    try {
      args = raw.trim() === '' ? {} : JSON.parse(raw);
    } catch {
      return { ok: false, malformed: true, output: 'the arguments are not JSON: send one JSON object' };
    }
    if (typeof args !== 'object' || args === null || Array.isArray(args))
      return { ok: false, malformed: true, output: 'the arguments must be one JSON object' };
    if (c.gone)
      return {
        ok: false,
        output: serverProblem(c.spec, 'is no longer running', undefined, c.stdio, redactor),
      };
    try {
      const result = await c.client.callTool(
        { name: tool, arguments: args as Record<string, unknown> },
        undefined,
        {
          signal,
          // The task's own timeout ends a longer call (the signal), not the SDK's default of 60 s.
          timeout: Math.max(1, secondsLeft) * 1000,
        },
      );
      // Parsed by CallToolResultSchema (the default), never the pre-2024 `toolResult` shape.
      return toolOutput(result as Parameters<typeof toolOutput>[0]);
    } catch (err) {
      if (signal.aborted) throw signal.reason;
      if (c.gone)
        return {
          ok: false,
          output: serverProblem(c.spec, 'is no longer running', undefined, c.stdio, redactor),
        };
      if (err instanceof McpError)
        return {
          ok: false,
          malformed: err.code === ErrorCode.InvalidParams,
          output: `the MCP server ${c.spec.name} answered an error: ${err.message}`,
        };
      return { ok: false, output: `the call to the MCP server ${c.spec.name} failed: ${messageOf(err)}` };
    }
  }
}

/**
 * What went wrong with a server, naming it: how its process ended and the
 * last of its stderr (stdio), or the error; secrets taken out.
 */
/** `${NAME}` in a header's value: a variable of the task. */
const VARIABLE = /\$\{([A-Za-z_][A-Za-z0-9_]*)\}/g;

/**
 * An HTTP server's headers with each `${NAME}` filled in from the task's
 * variables (its agent's secrets, the environment's variables). A name the
 * task has no value for, or a value that cannot be a header's, fails the
 * server's start naming the header and the variable, never the value.
 */
function filledHeaders(
  headers: Record<string, string>,
  envs: Record<string, string>,
): Record<string, string> {
  const filled: Record<string, string> = {};
  for (const [name, template] of Object.entries(headers)) {
    filled[name] = template.replace(VARIABLE, (_, variable: string) => {
      const value = envs[variable];
      if (value === undefined)
        throw new Error(
          `header ${name} names \${${variable}}, which is no secret of the agent nor variable of its environment`,
        );
      if (/[\r\n\0]/.test(value))
        throw new Error(
          `header ${name}: the value of ${variable} holds a line break or NUL, which no header can carry`,
        );
      return value;
    });
  }
  return filled;
}

function serverProblem(
  spec: McpServerSpec,
  what: string,
  err: unknown,
  stdio: CapsuleStdioTransport | undefined,
  redactor: SecretRedactor,
): string {
  const parts = [`MCP server ${spec.name} ${what}`];
  if (stdio?.exitCode !== undefined) parts.push(`its process exited with code ${stdio.exitCode}`);
  else if (err !== undefined) parts.push(messageOf(err));
  const stderr = stdio?.stderrTail();
  if (stderr) parts.push(`stderr: ${stderr}`);
  return redactor.redact(parts.join(': '));
}

function messageOf(err: unknown): string {
  return err instanceof Error ? err.message : String(err);
}
