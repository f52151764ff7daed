import type { LoopTool, ToolSource, ToolSourceContext } from '../tasks/loop-tools.ts';
import { cutOutput, type ToolOutcome } from '../tasks/tools.ts';
import { MAX_CONTENT_CHARS, MAX_QUERY_CHARS } from './schemas.ts';
import type { MemoriesService } from './service.ts';

/** memory_search's default and largest `limit`: enough to choose from, little enough to read. */
export const TOOL_SEARCH_DEFAULT = 5;
export const TOOL_SEARCH_MAX = 20;

const PROMPT_LINES = [
  'You have a long-term memory shared by every task of this agent: memory_search finds what earlier tasks saved (search it before work that may have been done or learnt before); memory_save keeps one fact, decision or result for later tasks (short, self-contained, never a secret).',
];

function refused(output: string): ToolOutcome {
  return { ok: false, output, malformed: true };
}

/** The model's arguments as an object with only `allowed` fields, or what to send instead. */
function argumentsOf(
  name: string,
  raw: string,
  allowed: readonly string[],
  expected: string,
): Record<string, unknown> | ToolOutcome {
  let value: unknown;
  try {
    value = raw.trim() === '' ? {} : JSON.parse(raw);
  } catch (err) {
    return refused(
      `The arguments of ${name} are not valid JSON (${(err as Error).message}). Send ${expected}.`,
    );
  }
  if (typeof value !== 'object' || value === null || Array.isArray(value))
    return refused(`The arguments of ${name} must be a JSON object: ${expected}.`);
  const unknown = Object.keys(value).filter((k) => !allowed.includes(k));
  if (unknown.length > 0)
    return refused(`Invalid arguments for ${name}: unknown field "${unknown[0]}". Expected ${expected}.`);
  return value as Record<string, unknown>;
}

function isOutcome(v: Record<string, unknown> | ToolOutcome): v is ToolOutcome {
  return typeof (v as ToolOutcome).ok === 'boolean' && typeof (v as ToolOutcome).output === 'string';
}

function searchTool(memories: MemoriesService, ctx: ToolSourceContext): LoopTool {
  const expected = '{"query": string, "limit"?: integer}';
  return {
    name: 'memory_search',
    description: `Search this agent's long-term memory (what earlier tasks saved with memory_save). Memories holding all of the query's words come first, then those holding some (English stemming); best matches first, newer memories first among words too common to tell apart. Answers a JSON list of {id, content, created_at}.`,
    parameters: {
      type: 'object',
      properties: {
        query: { type: 'string', description: 'words to look for' },
        limit: {
          type: 'integer',
          minimum: 1,
          maximum: TOOL_SEARCH_MAX,
          description: `how many memories at most (default ${TOOL_SEARCH_DEFAULT})`,
        },
      },
      required: ['query'],
      additionalProperties: false,
    },
    async run(raw) {
      const args = argumentsOf('memory_search', raw, ['query', 'limit'], expected);
      if (isOutcome(args)) return args;
      const { query, limit } = args;
      if (typeof query !== 'string' || query.trim() === '')
        return refused(
          `Invalid arguments for memory_search: "query" must be a non-empty string. Expected ${expected}.`,
        );
      if (limit !== undefined && (!Number.isInteger(limit) || (limit as number) < 1))
        return refused(
          `Invalid arguments for memory_search: "limit" must be a positive integer. Expected ${expected}.`,
        );
      const n = Math.min((limit as number | undefined) ?? TOOL_SEARCH_DEFAULT, TOOL_SEARCH_MAX);
      const hits = await memories.searchForTask(ctx.teamId, ctx.agentId, query.slice(0, MAX_QUERY_CHARS), n);
      if (hits.length === 0) return { ok: true, output: 'no memory matches that query' };
      const text = JSON.stringify(
        hits.map((h) => ({ id: h.id, content: h.content, created_at: h.createdAt.toISOString() })),
        null,
        1,
      );
      return { ok: true, ...cutOutput(text, 'head', '; search with a smaller limit to see whole memories') };
    },
  };
}

function saveTool(memories: MemoriesService, ctx: ToolSourceContext): LoopTool {
  const expected = '{"content": string}';
  return {
    name: 'memory_save',
    description: `Save one memory for this agent's later tasks (at most ${MAX_CONTENT_CHARS} characters). Secrets in it are replaced before it is stored.`,
    parameters: {
      type: 'object',
      properties: {
        content: { type: 'string', maxLength: MAX_CONTENT_CHARS, description: 'the text to remember' },
      },
      required: ['content'],
      additionalProperties: false,
    },
    async run(raw) {
      const args = argumentsOf('memory_save', raw, ['content'], expected);
      if (isOutcome(args)) return args;
      if (typeof args.content !== 'string' || args.content.trim() === '')
        return refused(
          `Invalid arguments for memory_save: "content" must be a non-empty string. Expected ${expected}.`,
        );
      // The task's secrets never reach the memory, which later tasks (and the API) read.
      const content = ctx.redactor.redact(args.content);
      if (content.length > MAX_CONTENT_CHARS)
        return refused(
          `The memory is ${content.length} characters; one holds at most ${MAX_CONTENT_CHARS}. Save a shorter one (or several).`,
        );
      const row = await memories.saveFromTask(ctx.teamId, ctx.agentId, ctx.taskId, content);
      await ctx.event('memory', { action: 'saved', memory_id: row.id, chars: content.length });
      return { ok: true, output: `saved as memory ${row.id}` };
    },
  };
}

/** memory_search and memory_save, for the tasks of agents whose definition has memory_enabled. */
export function memoryToolSource(memories: MemoriesService): ToolSource {
  return {
    name: 'memory',
    async open(ctx) {
      if (!ctx.agent.definition.memory_enabled) return undefined;
      return { tools: [searchTool(memories, ctx), saveTool(memories, ctx)], promptLines: PROMPT_LINES };
    },
  };
}
