import { type Static, Type } from 'typebox';
import { Nullable } from '../../http/schemas.ts';
import { Hostname } from '../sandboxes/schemas.ts';

// What an agent runs: its definition. A change to any of these fields makes
// the agent's next immutable version (versions.ts); name, description,
// metadata, policy and provider keys are the gateway identity and change in place.

/** The built-in tools a task's agent may be given (they run in its capsule). */
export const BUILT_IN_TOOLS = [
  'bash',
  'read_file',
  'write_file',
  'edit_file',
  'list_files',
  'grep',
  'submit_result',
] as const;

/** Every tool an agent's `tools` may name: the capsule's built-ins, and web_fetch (run by the runner). */
export const AGENT_TOOLS = [...BUILT_IN_TOOLS, 'web_fetch'] as const;
export type AgentToolName = (typeof AGENT_TOOLS)[number];

/** A server's name as its tools are named (`mcp__<name>__<tool>`). */
const McpServerName = Type.String({ minLength: 1, maxLength: 40, pattern: '^[A-Za-z0-9_-]+$' });

/**
 * An MCP server whose tools join the agent's: a stdio server started inside
 * the task's capsule, or an HTTP (streamable HTTP) server reached through the
 * capsule's egress allow-list.
 */
export const McpServer = Type.Union([
  Type.Object(
    {
      name: McpServerName,
      transport: Type.Literal('stdio'),
      command: Type.String({
        minLength: 1,
        maxLength: 1000,
        description: 'run in the capsule, from /workspace',
      }),
      args: Type.Optional(Type.Array(Type.String({ maxLength: 10_000 }), { maxItems: 100 })),
    },
    { additionalProperties: false },
  ),
  Type.Object(
    {
      name: McpServerName,
      transport: Type.Literal('http'),
      url: Type.String({ minLength: 1, maxLength: 2000, format: 'uri' }),
      headers: Type.Optional(
        Type.Record(
          Type.String({ pattern: '^[A-Za-z0-9-]{1,64}$' }),
          Type.String({ maxLength: 2000, pattern: '^[^\\r\\n\\u0000]*$' }),
          {
            maxProperties: 20,
            additionalProperties: false,
            description:
              'sent with every request to the server; ${NAME} in a value is the task’s variable NAME (a secret of the agent, or the environment’s), filled in when the task runs, so the definition never holds it',
          },
        ),
      ),
    },
    { additionalProperties: false },
  ),
]);
export type McpServerSpec = Static<typeof McpServer>;

/** Headers the MCP client or the HTTP connection set themselves: an agent's `headers` may not. */
const RESERVED_MCP_HEADERS = new Set([
  'accept',
  'connection',
  'content-length',
  'content-type',
  'host',
  'keep-alive',
  'last-event-id',
  'mcp-protocol-version',
  'mcp-session-id',
  'proxy-authorization',
  'proxy-connection',
  'te',
  'trailer',
  'transfer-encoding',
  'upgrade',
]);

/** The first header of an HTTP server that Paddock sets itself, as `mcp_servers[i].headers.Name`; undefined: none. */
export function reservedMcpHeader(servers: readonly McpServerSpec[]): string | undefined {
  for (const [i, server] of servers.entries()) {
    if (server.transport !== 'http') continue;
    const name = Object.keys(server.headers ?? {}).find((h) => RESERVED_MCP_HEADERS.has(h.toLowerCase()));
    if (name !== undefined) return `mcp_servers[${i}].headers.${name}`;
  }
  return undefined;
}

const OutputPolicy = Type.Union(
  [
    Type.Object({ mode: Type.Literal('any') }, { additionalProperties: false }),
    Type.Object({ mode: Type.Literal('none') }, { additionalProperties: false }),
    Type.Object({ mode: Type.Literal('at_least_one') }, { additionalProperties: false }),
    Type.Object(
      {
        mode: Type.Literal('named'),
        files: Type.Array(
          Type.Object(
            {
              name: Type.String({ minLength: 1, maxLength: 255, pattern: '^(?!\\.{1,2}$)[^/\\\\]+$' }),
              description: Type.Optional(Type.String({ maxLength: 1000 })),
            },
            { additionalProperties: false },
          ),
          { minItems: 1, maxItems: 50 },
        ),
      },
      { additionalProperties: false },
    ),
  ],
  {
    description:
      'which files the task must leave in /workspace/outputs: any, none, at least one, or these names',
  },
);

/** The definition's fields as a request sends them (all optional: defaults fill the rest). */
export const DefinitionFields = {
  model: Type.Optional(
    Nullable(
      Type.String({
        minLength: 1,
        maxLength: 200,
        pattern: '^[A-Za-z0-9][A-Za-z0-9._:/@-]*$',
        description:
          'a full model id, or a family alias (sonnet, opus, haiku, gpt-…) resolved when a task runs',
      }),
    ),
  ),
  system_prompt: Type.Optional(Nullable(Type.String({ maxLength: 200_000 }))),
  effort: Type.Optional(Nullable(Type.Enum(['low', 'medium', 'high', 'max']))),
  tools: Type.Optional(
    Type.Array(Type.Enum([...AGENT_TOOLS]), {
      uniqueItems: true,
      description: 'the built-in tools the agent may use (default: all)',
    }),
  ),
  max_turns: Type.Optional(Type.Integer({ minimum: 1, maximum: 1000 })),
  max_budget_usd: Type.Optional(Nullable(Type.Number({ minimum: 0, maximum: 100_000 }))),
  timeout_sec: Type.Optional(Type.Integer({ minimum: 10, maximum: 86_400 })),
  concurrency_limit: Type.Optional(Type.Integer({ minimum: 1, maximum: 1000 })),
  setup_commands: Type.Optional(
    Type.Array(Type.String({ minLength: 1, maxLength: 10_000 }), { maxItems: 50 }),
  ),
  egress: Type.Optional(
    Type.Array(Hostname, { maxItems: 100, uniqueItems: true, description: 'hosts its capsule may reach' }),
  ),
  environment_id: Type.Optional(Type.String({ minLength: 1, maxLength: 100 })),
  environment_version_id: Type.Optional(
    Type.String({
      minLength: 1,
      maxLength: 100,
      description: 'pins this version instead of the current one',
    }),
  ),
  output_policy: Type.Optional(OutputPolicy),
  reference_file_ids: Type.Optional(
    Type.Array(Type.String({ minLength: 1, maxLength: 100 }), { maxItems: 100, uniqueItems: true }),
  ),
  memory_enabled: Type.Optional(
    Type.Boolean({ description: 'the agent remembers across tasks (memory_search and memory_save tools)' }),
  ),
  skill_ids: Type.Optional(
    Type.Array(Type.String({ minLength: 1, maxLength: 100 }), {
      maxItems: 50,
      uniqueItems: true,
      description: 'skills of the team the agent may load (load_skill)',
    }),
  ),
  mcp_servers: Type.Optional(Type.Array(McpServer, { maxItems: 20 })),
  sub_agent_ids: Type.Optional(
    Type.Array(Type.String({ minLength: 1, maxLength: 100 }), {
      maxItems: 20,
      uniqueItems: true,
      description: 'agents of the team this agent may delegate to (the delegate tool)',
    }),
  ),
  idle_timeout_sec: Type.Optional(
    Type.Integer({
      minimum: 30,
      maximum: 86_400,
      description: "a workspace's capsule pauses after this long without a message",
    }),
  ),
  session_ttl_sec: Type.Optional(
    Type.Integer({
      minimum: 60,
      maximum: 30 * 86_400,
      description: 'a paused workspace expires (its capsule removed, its history kept) after this long',
    }),
  ),
};

type DefinitionInput = { [K in keyof typeof DefinitionFields]?: Static<(typeof DefinitionFields)[K]> };

/** The definition as stored on a version and shown: every field set, the environment version pinned. */
export interface Definition {
  model: string | null;
  system_prompt: string | null;
  effort: 'low' | 'medium' | 'high' | 'max' | null;
  tools: AgentToolName[];
  max_turns: number;
  max_budget_usd: number | null;
  timeout_sec: number;
  concurrency_limit: number;
  setup_commands: string[];
  egress: string[];
  environment_id: string;
  environment_version_id: string;
  environment_version: number;
  output_policy: Static<typeof OutputPolicy>;
  reference_file_ids: string[];
  memory_enabled: boolean;
  skill_ids: string[];
  mcp_servers: McpServerSpec[];
  sub_agent_ids: string[];
  idle_timeout_sec: number;
  session_ttl_sec: number;
}

/** The JSON schema of a stored definition, for responses. */
export const DefinitionSchema = Type.Object({
  model: Nullable(Type.String()),
  system_prompt: Nullable(Type.String()),
  effort: Nullable(Type.Enum(['low', 'medium', 'high', 'max'])),
  tools: Type.Array(Type.String()),
  max_turns: Type.Integer(),
  max_budget_usd: Nullable(Type.Number()),
  timeout_sec: Type.Integer(),
  concurrency_limit: Type.Integer(),
  setup_commands: Type.Array(Type.String()),
  egress: Type.Array(Type.String()),
  environment_id: Type.String(),
  environment_version_id: Type.String(),
  environment_version: Type.Integer(),
  output_policy: OutputPolicy,
  reference_file_ids: Type.Array(Type.String()),
  memory_enabled: Type.Boolean(),
  skill_ids: Type.Array(Type.String()),
  mcp_servers: Type.Array(McpServer),
  sub_agent_ids: Type.Array(Type.String()),
  idle_timeout_sec: Type.Integer(),
  session_ttl_sec: Type.Integer(),
});

export const DEFINITION_DEFAULTS = {
  model: null,
  system_prompt: null,
  effort: null,
  tools: [...AGENT_TOOLS] as AgentToolName[],
  max_turns: 50,
  max_budget_usd: null,
  timeout_sec: 1800,
  concurrency_limit: 5,
  setup_commands: [],
  egress: [],
  output_policy: { mode: 'any' as const },
  reference_file_ids: [],
  memory_enabled: false,
  skill_ids: [],
  mcp_servers: [],
  sub_agent_ids: [],
  idle_timeout_sec: 600,
  session_ttl_sec: 7 * 86_400,
};

/**
 * A definition as stored: versions written before a field existed lack it,
 * and read as its default.
 */
export function storedDefinition(stored: Record<string, unknown>): Definition {
  return { ...DEFINITION_DEFAULTS, ...stored } as unknown as Definition;
}

/** Whether the request sends any definition field (a create always makes version 1 anyway). */
export function sendsDefinition(input: object): boolean {
  return Object.keys(DefinitionFields).some((k) => (input as Record<string, unknown>)[k] !== undefined);
}

/**
 * The definition a request asks for, on top of `from` (or the defaults),
 * before its environment is pinned (the caller resolves the environment).
 */
export function mergeDefinition(
  input: DefinitionInput,
  from: Definition | undefined,
): Omit<Definition, 'environment_id' | 'environment_version_id' | 'environment_version'> {
  const base = from ?? DEFINITION_DEFAULTS;
  return {
    model: input.model !== undefined ? input.model : base.model,
    system_prompt: input.system_prompt !== undefined ? input.system_prompt : base.system_prompt,
    effort: input.effort !== undefined ? input.effort : base.effort,
    tools: input.tools ?? base.tools,
    max_turns: input.max_turns ?? base.max_turns,
    max_budget_usd: input.max_budget_usd !== undefined ? input.max_budget_usd : base.max_budget_usd,
    timeout_sec: input.timeout_sec ?? base.timeout_sec,
    concurrency_limit: input.concurrency_limit ?? base.concurrency_limit,
    setup_commands: input.setup_commands ?? base.setup_commands,
    egress: input.egress ?? base.egress,
    output_policy: input.output_policy ?? base.output_policy,
    reference_file_ids: input.reference_file_ids ?? base.reference_file_ids,
    memory_enabled: input.memory_enabled ?? base.memory_enabled,
    skill_ids: input.skill_ids ?? base.skill_ids,
    mcp_servers: input.mcp_servers ?? base.mcp_servers,
    sub_agent_ids: input.sub_agent_ids ?? base.sub_agent_ids,
    idle_timeout_sec: input.idle_timeout_sec ?? base.idle_timeout_sec,
    session_ttl_sec: input.session_ttl_sec ?? base.session_ttl_sec,
  };
}

/** The fields whose values differ between two definitions, in schema order (for a version's diff). */
export function changedFields(a: Definition, b: Definition): Array<keyof Definition> {
  return (Object.keys(DefinitionSchema.properties) as Array<keyof Definition>).filter(
    (k) => JSON.stringify(a[k]) !== JSON.stringify(b[k]),
  );
}
