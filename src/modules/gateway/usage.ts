import type { WireFormat } from './provider-call.ts';

/** Tokens in Rungate's four buckets. `input` excludes cached input on both providers. */
export interface Usage {
  input: number;
  output: number;
  cacheRead: number;
  cacheCreation: number;
}

export const ZERO_USAGE: Usage = { input: 0, output: 0, cacheRead: 0, cacheCreation: 0 };

export function totalTokens(u: Usage): number {
  return u.input + u.output + u.cacheRead + u.cacheCreation;
}

const n = (v: unknown): number => (typeof v === 'number' && Number.isFinite(v) && v > 0 ? Math.floor(v) : 0);

/**
 * OpenAI `usage`: prompt_tokens counts cached tokens too, so the cached part
 * moves from input to cache_read. (OpenAI bills no separate cache writes.)
 */
export function usageFromOpenAi(usage: unknown): Usage | undefined {
  if (usage === null || typeof usage !== 'object') return undefined;
  const u = usage as Record<string, unknown>;
  return openAiBuckets(u.prompt_tokens, u.prompt_tokens_details, u.completion_tokens);
}

/**
 * OpenAI Responses `usage`: the same accounting under other names
 * (input_tokens counts input_tokens_details.cached_tokens too; output_tokens
 * already counts reasoning tokens).
 */
export function usageFromResponses(usage: unknown): Usage | undefined {
  if (usage === null || typeof usage !== 'object') return undefined;
  const u = usage as Record<string, unknown>;
  return openAiBuckets(u.input_tokens, u.input_tokens_details, u.output_tokens);
}

function openAiBuckets(input: unknown, inputDetails: unknown, output: unknown): Usage {
  const cached = n((inputDetails as Record<string, unknown> | null | undefined)?.cached_tokens);
  return { input: Math.max(0, n(input) - cached), output: n(output), cacheRead: cached, cacheCreation: 0 };
}

/** A provider's `usage` in its wire format (Chat Completions' shape for embeddings and completions too). */
export function usageIn(format: WireFormat, usage: unknown): Usage | undefined {
  if (format === 'anthropic') return usageFromAnthropic(usage);
  return format === 'responses' ? usageFromResponses(usage) : usageFromOpenAi(usage);
}

/** Anthropic `usage`: input_tokens already excludes the cache buckets. */
export function usageFromAnthropic(usage: unknown): Usage | undefined {
  if (usage === null || typeof usage !== 'object') return undefined;
  const u = usage as Record<string, unknown>;
  return {
    input: n(u.input_tokens),
    output: n(u.output_tokens),
    cacheRead: n(u.cache_read_input_tokens),
    cacheCreation: n(u.cache_creation_input_tokens),
  };
}

/**
 * A rough count for text whose tokens nobody reported (admission estimates,
 * streams cut off before their usage event): about 4 characters a token.
 */
export function estimateTokens(text: string): number {
  return Math.ceil(text.length / 4);
}
