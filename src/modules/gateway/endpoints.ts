import type { WireFormat } from './provider-call.ts';

// What differs between the gateway's endpoints once a call is admitted: the
// output a call may produce (for its budget reservation), and what a step
// keeps of an answer.

/** OpenAI's `max_tokens` for a legacy completion that sets none (Paddock sends it explicitly). */
export const COMPLETIONS_DEFAULT_MAX_TOKENS = 16;

/**
 * The most output tokens a call may be billed for: none for embeddings; for
 * legacy completions `max_tokens` (16 when unset) for each of the
 * max(`n`, `best_of`) candidates of each prompt of a batch; for chat,
 * `max_tokens` / `max_completion_tokens`, for the Responses API
 * `max_output_tokens`, else the server's default (which a Responses call is
 * then sent as its limit: attempts.ts).
 */
export function outputAllowance(format: WireFormat, body: Record<string, unknown>, fallback: number): number {
  if (format === 'embeddings') return 0;
  if (format === 'completions') {
    const each = wholeOrUndefined(body.max_tokens, 0) ?? COMPLETIONS_DEFAULT_MAX_TOKENS;
    const candidates = Math.max(wholeOrUndefined(body.n, 1) ?? 1, wholeOrUndefined(body.best_of, 1) ?? 1);
    return each * candidates * promptCount(body.prompt);
  }
  // The Responses API's limit is max_output_tokens alone: a max_tokens beside it is not what the
  // provider is sent, so it must not be what the budget reserves for.
  if (format === 'responses') return wholeOrUndefined(body.max_output_tokens, 1) ?? fallback;
  return wholeOrUndefined(body.max_tokens, 1) ?? wholeOrUndefined(body.max_completion_tokens, 1) ?? fallback;
}

/**
 * How many prompts a legacy completion's `prompt` holds: a string or one
 * array of token ids is one; an array of strings or of token arrays is a batch.
 */
export function promptCount(prompt: unknown): number {
  if (!Array.isArray(prompt) || prompt.length === 0) return 1;
  return prompt.every((p) => typeof p === 'number') ? 1 : prompt.length;
}

/**
 * What a step records of a successful answer (when content is logged): an
 * embeddings answer without its vectors — thousands of numbers an item, which
 * nobody reads in a run's history — but with each item's length.
 */
export function recordedResponse(format: WireFormat, body: unknown): unknown {
  if (format !== 'embeddings' || body === null || typeof body !== 'object') return body;
  const { data, ...rest } = body as Record<string, unknown>;
  if (!Array.isArray(data)) return body;
  return {
    ...rest,
    data: data.map((item) => {
      if (item === null || typeof item !== 'object') return item;
      const { embedding, ...fields } = item as Record<string, unknown>;
      // base64 is the vector's float32 bytes: four a dimension.
      const dimensions = Array.isArray(embedding)
        ? embedding.length
        : typeof embedding === 'string'
          ? Math.floor(Buffer.byteLength(embedding, 'base64') / 4)
          : null;
      return { ...fields, dimensions, encoding: typeof embedding === 'string' ? 'base64' : 'float' };
    }),
  };
}

function wholeOrUndefined(v: unknown, min: number): number | undefined {
  return typeof v === 'number' && Number.isFinite(v) && v >= min ? Math.floor(v) : undefined;
}
