import { randomBytes } from 'node:crypto';
import type { ServerResponse } from 'node:http';
import type OpenAI from 'openai';
import { type MockFormat, type MockStep, mockPromptTokens, mockTextTokens } from './mock-llm.ts';

/**
 * The mock provider's endpoints beside chat, in the providers' wire formats:
 * OpenAI's embeddings and legacy completions (JSON, and SSE for completions),
 * and Anthropic's token count. A step's `text`/`chunks` is a completion's
 * text; `usage.input` overrides the prompt's token count (a string's length
 * over 4, a token id one token), `usage.output` the completion's.
 */
export interface MockEndpoint {
  format: MockFormat;
  /** What a real provider would refuse in the body: `{status, message}`. */
  check(body: Record<string, unknown> | undefined): { status: number; message: string } | undefined;
  answer(
    res: ServerResponse,
    body: Record<string, unknown>,
    step: MockStep,
    headers: Record<string, string>,
  ): void;
}

/** The dimensions of a mock embedding when the request names none. */
export const MOCK_EMBEDDING_DIMENSIONS = 8;
const DEFAULT_COMPLETION = ' and that is the mock completing.';

export const MOCK_ENDPOINTS: ReadonlyMap<string, MockEndpoint> = new Map<string, MockEndpoint>([
  ['/v1/embeddings', { format: 'openai', check: checkEmbeddings, answer: answerEmbeddings }],
  ['/v1/completions', { format: 'openai', check: checkCompletions, answer: answerCompletions }],
  ['/v1/messages/count_tokens', { format: 'anthropic', check: checkCountTokens, answer: answerCountTokens }],
]);

const bad = (message: string) => ({ status: 400, message });

/** A string, strings, token ids or arrays of token ids, as OpenAI takes them; undefined when none of those. */
function inputsOf(value: unknown): Array<string | number[]> | undefined {
  if (typeof value === 'string') return [value];
  if (!Array.isArray(value) || value.length === 0) return undefined;
  if (value.every((v) => typeof v === 'number')) return [value as number[]];
  if (value.every((v) => typeof v === 'string')) return value as string[];
  if (value.every((v) => Array.isArray(v) && v.length > 0 && v.every((n) => typeof n === 'number')))
    return value as number[][];
  return undefined;
}

const tokensOf = (input: string | number[]) =>
  typeof input === 'string' ? mockTextTokens(input) : input.length;

// --- embeddings ----------------------------------------------------------------------------------

function checkEmbeddings(body: Record<string, unknown> | undefined) {
  if (body === undefined) return bad('The request body is not a JSON object.');
  if (typeof body.model !== 'string' || body.model === '') return bad('model: Field required');
  const inputs = inputsOf(body.input);
  if (!inputs || inputs.some((i) => i === '')) return bad("'$.input' is invalid.");
  if (
    body.encoding_format !== undefined &&
    body.encoding_format !== 'float' &&
    body.encoding_format !== 'base64'
  )
    return bad("encoding_format: must be 'float' or 'base64'");
  return undefined;
}

/** A deterministic unit-ish vector for an input: the same input always embeds the same. */
function vectorOf(input: string | number[], dimensions: number): number[] {
  const seed =
    typeof input === 'string' ? input.length + input.charCodeAt(0) : input.length + (input[0] ?? 0);
  return Array.from({ length: dimensions }, (_, i) => Math.round(Math.sin(seed + i) * 1e6) / 1e6);
}

function answerEmbeddings(
  res: ServerResponse,
  body: Record<string, unknown>,
  step: MockStep,
  headers: Record<string, string>,
): void {
  const inputs = inputsOf(body.input)!;
  const dimensions = typeof body.dimensions === 'number' ? body.dimensions : MOCK_EMBEDDING_DIMENSIONS;
  const base64 = body.encoding_format === 'base64';
  const prompt = step.usage?.input ?? inputs.reduce((n, i) => n + tokensOf(i), 0);
  const data = inputs.map((input, index) => {
    const vector = vectorOf(input, dimensions);
    const embedding = base64 ? Buffer.from(new Float32Array(vector).buffer).toString('base64') : vector;
    return { object: 'embedding', index, embedding };
  });
  const answer = {
    object: 'list',
    data,
    model: step.model ?? (body.model as string),
    usage: { prompt_tokens: prompt, total_tokens: prompt },
  };
  sendJson(res, answer, headers);
}

// --- legacy completions --------------------------------------------------------------------------

function checkCompletions(body: Record<string, unknown> | undefined) {
  if (body === undefined) return bad('The request body is not a JSON object.');
  if (typeof body.model !== 'string' || body.model === '') return bad('model: Field required');
  if (!inputsOf(body.prompt) && body.prompt !== '') return bad("'$.prompt' is invalid.");
  return undefined;
}

type Completion = OpenAI.Completion;

function answerCompletions(
  res: ServerResponse,
  body: Record<string, unknown>,
  step: MockStep,
  headers: Record<string, string>,
): void {
  const prompts = body.prompt === '' ? [''] : inputsOf(body.prompt)!;
  const text = step.chunks?.join('') ?? step.text ?? DEFAULT_COMPLETION;
  const chunks = step.chunks ?? text.match(/\S*\s*/g)?.filter((c) => c !== '') ?? [];
  const n = typeof body.n === 'number' ? body.n : 1;
  const echo = body.echo === true;
  const usage = {
    prompt_tokens: step.usage?.input ?? prompts.reduce((sum, p) => sum + tokensOf(p), 0),
    completion_tokens: step.usage?.output ?? mockTextTokens(text) * n * prompts.length,
    total_tokens: 0,
  };
  usage.total_tokens = usage.prompt_tokens + usage.completion_tokens;
  const base = {
    id: `cmpl-${randomBytes(12).toString('hex')}`,
    object: 'text_completion' as const,
    created: Math.floor(Date.now() / 1000),
    model: step.model ?? (body.model as string),
    system_fingerprint: 'fp_mock',
  };
  // One choice per candidate of each prompt, as OpenAI orders them.
  const indices = Array.from({ length: prompts.length * n }, (_, i) => i);
  const echoed = (i: number) => {
    const p = prompts[Math.floor(i / n)]!;
    return echo && typeof p === 'string' ? p : '';
  };
  if (body.stream !== true) {
    const completion: Completion = {
      ...base,
      choices: indices.map((index) => ({
        index,
        text: echoed(index) + text,
        logprobs: null,
        finish_reason: 'stop',
      })),
      usage,
    };
    sendJson(res, completion, headers);
    return;
  }
  const includeUsage =
    typeof body.stream_options === 'object' &&
    body.stream_options !== null &&
    (body.stream_options as Record<string, unknown>).include_usage === true;
  const chunk = (choices: Completion['choices'], u?: Completion['usage']) =>
    `data: ${JSON.stringify({ ...base, choices, ...(includeUsage ? { usage: u ?? null } : {}) })}\n\n`;
  const events: string[] = [];
  for (const index of indices) {
    const pieces = echoed(index) === '' ? chunks : [echoed(index), ...chunks];
    for (const piece of pieces)
      events.push(chunk([{ index, text: piece, logprobs: null, finish_reason: null as never }]));
    events.push(chunk([{ index, text: '', logprobs: null, finish_reason: 'stop' }]));
  }
  if (includeUsage) events.push(chunk([], usage));
  events.push('data: [DONE]\n\n');
  res.writeHead(200, {
    'content-type': 'text/event-stream; charset=utf-8',
    'cache-control': 'no-cache',
    ...headers,
  });
  res.end(events.join(''));
}

// --- Anthropic's token count ---------------------------------------------------------------------

function checkCountTokens(body: Record<string, unknown> | undefined) {
  if (body === undefined) return bad('The request body is not a JSON object.');
  if (typeof body.model !== 'string' || body.model === '') return bad('model: Field required');
  if (!Array.isArray(body.messages) || body.messages.length === 0)
    return bad('messages: at least one message is required');
  // The count takes no generation settings: the API refuses them as extra inputs.
  for (const field of ['max_tokens', 'stream', 'temperature'])
    if (body[field] !== undefined) return bad(`${field}: Extra inputs are not permitted`);
  return undefined;
}

function answerCountTokens(
  res: ServerResponse,
  body: Record<string, unknown>,
  step: MockStep,
  headers: Record<string, string>,
): void {
  sendJson(res, { input_tokens: step.usage?.input ?? mockPromptTokens(body) }, headers);
}

function sendJson(res: ServerResponse, value: unknown, headers: Record<string, string>): void {
  const json = JSON.stringify(value);
  res.writeHead(200, {
    'content-type': 'application/json',
    'content-length': Buffer.byteLength(json),
    ...headers,
  });
  res.end(json);
}
