import { randomBytes } from 'node:crypto';
import { createServer, type IncomingHttpHeaders, type IncomingMessage, type ServerResponse } from 'node:http';
import type { AddressInfo } from 'node:net';
import type Anthropic from '@anthropic-ai/sdk';
import type OpenAI from 'openai';
import { MOCK_ENDPOINTS } from './mock-endpoints.ts';
import {
  hexId,
  responsesBodyProblem,
  responsesErrorEvent,
  responsesEvents,
  responsesJson,
  responsesPromptChars,
} from './mock-responses.ts';

/**
 * The one stand-in for model providers in Paddock's tests and benchmarks: a
 * real HTTP server speaking the OpenAI Chat Completions, OpenAI Responses
 * (mock-responses.ts) and Anthropic Messages wire formats (JSON and SSE) as
 * the official SDKs parse them, and
 * both providers' model lists (`GET /v1/models`), with scripted failures.
 * Payloads are checked against the SDKs' own types.
 */

export type MockFormat = 'openai' | 'anthropic' | 'responses';
/** The formats whose model lists the mock serves (`GET /v1/models` is the same path for both). */
type ListFormat = 'openai' | 'anthropic';

/**
 * Tokens in Paddock's buckets (`input` excludes cached input). Rendered in each
 * provider's form: OpenAI's prompt_tokens includes cacheRead and, having no
 * cache-write bucket, cacheCreation too (OpenAI bills cache writes as input).
 */
export interface MockUsage {
  input?: number;
  output?: number;
  cacheRead?: number;
  cacheCreation?: number;
}

export interface MockToolCall {
  name: string;
  arguments?: Record<string, unknown>;
  /** Defaults to a fresh `call_…` (OpenAI) or `toolu_…` (Anthropic). */
  id?: string;
}

/** How to answer one request. Fields combine: `{ delayMs: 50, chunks: [...], cutAfterEvents: 3 }`. */
export interface MockStep {
  /** The answer's text (default: a fixed sentence, or '' when toolCalls are given). */
  text?: string;
  /** The text as the stream's deltas (default: one delta a word). Implies `text`. */
  chunks?: readonly string[];
  toolCalls?: readonly MockToolCall[];
  /** Missing buckets: input from the prompt, output from the answer (see mockPromptTokens), cache 0. */
  usage?: MockUsage;
  /** The model named in the answer (default: the request's). */
  model?: string;
  /** Extra response headers. */
  headers?: Record<string, string>;
  /** Answer with this error status (400–599) in the provider's error shape. */
  status?: number;
  /** Sends `retry-after` (seconds) with the error. */
  retryAfterSec?: number;
  /** The error's message (errors and in-stream error events). */
  message?: string;
  /** Replaces the error body: objects as JSON, strings verbatim (an HTML 502 from a proxy). */
  body?: unknown;
  /** Wait before the headers. */
  delayMs?: number;
  /** Read the request, never answer; ends when the client or close() drops the connection. */
  hang?: boolean;
  /** Destroy the socket without answering. */
  destroy?: boolean;
  /** Send this many events, then destroy the socket. JSON answers: half the body, then destroy. */
  cutAfterEvents?: number;
  /** 200 with the headers, then end with no event (JSON answers: an empty body). */
  emptyStream?: boolean;
  /** Pause before each event after the first (JSON answers: between headers and body). */
  stallBetweenEventsMs?: number;
  /** With stallMs: pause once after this many events (JSON answers: between headers and body). */
  stallAfterEvents?: number;
  stallMs?: number;
  /** Streams, with stallAfterEvents instead of stallMs: pause there until this settles (the test's gate). */
  holdUntil?: Promise<unknown>;
  /** Send this many events, then the provider's in-stream error event, then end. Streams only. */
  errorEventAfter?: number;
  /**
   * Send this many events, then one whose data no SDK can parse (`malformedData`, default
   * `{not json`), then the rest of the stream. Streams only.
   */
  malformedEventAfter?: number;
  malformedData?: string;
  /** How many requests this step answers (default 1; Infinity until reset()). */
  times?: number;
  /**
   * Called as the answer starts, after delayMs and just before its first
   * bytes are written: when the upstream really answered (a benchmark takes
   * the upstream's own time off what it measures).
   */
  answering?: () => void;
}

/**
 * Which requests a queued step may answer; all given fields must match. A
 * model list (`GET /v1/models`, `/models`) takes only steps queued for its
 * path, e.g. `replyFor({ path: '/v1/models' }, { status: 503 })`, of which
 * it honours the failures (status, message, body, headers, retryAfterSec,
 * delayMs, hang, destroy).
 */
export interface MockMatch {
  path?: string;
  format?: MockFormat;
  apiKey?: string;
  model?: string;
}

export interface MockRequest {
  method: string;
  /** Without the query string. */
  path: string;
  format: MockFormat | null;
  headers: IncomingHttpHeaders;
  /** Parsed JSON, or the raw text when it is not JSON. */
  body: unknown;
  /** The Bearer token (OpenAI); x-api-key, else the Bearer token (Anthropic). */
  apiKey: string | undefined;
  model: string | undefined;
  stream: boolean;
  /** Date.now() when the body had arrived. */
  at: number;
  /** The queued or computed step that answered; undefined for the default answer or a refused request. */
  step: MockStep | undefined;
}

/** What `respond` sees of a model call: its format and parsed body (with a non-empty `messages`; Responses: `input`). */
export interface MockCall {
  format: MockFormat;
  body: Record<string, unknown>;
  apiKey: string | undefined;
}

export interface MockLlmOptions {
  port?: number;
  /** Answer 401 (provider's shape) unless the request's key is this one (or one of these). */
  requireKey?: string | readonly string[];
  /** Keep every request in `requests` (default true; benchmarks turn it off). */
  record?: boolean;
  /**
   * Computes the answer to a model call no queued step matches, from the call
   * itself (undefined: the default answer). A conversation keyed on its last
   * message plays an agent without a queue, however many run at once: see
   * bench/tasks.ts. Called once per call, when its body has arrived.
   */
  respond?: (call: MockCall) => MockStep | undefined;
  /** The answer when no queued step matches (default: a normal text answer). */
  defaultStep?: MockStep;
  /** The ids `GET /v1/models` lists, in both formats (default: a few of each provider's; see setModels). */
  models?: readonly string[];
}

export interface MockLlm {
  /** `http://127.0.0.1:PORT`: a provider key's base_url (with or without `/v1`). */
  readonly url: string;
  readonly port: number;
  readonly requests: readonly MockRequest[];
  /** Requests received, recorded or not. */
  readonly requestCount: number;
  /** Queued answers not yet used (an Infinity step counts as Infinity). */
  readonly queued: number;
  /** Queue steps for the next requests, in order. */
  reply(steps: MockStep | readonly MockStep[]): void;
  /** Queue steps only for requests that match, e.g. `{ apiKey: 'sk-a' }`. */
  replyFor(match: MockMatch, steps: MockStep | readonly MockStep[]): void;
  /** The ids the model list answers with from now on: in one format, or both when none is named. */
  setModels(ids: readonly string[], format?: ListFormat): void;
  /** Forget queued steps and recorded requests. */
  reset(): void;
  /** Stop listening and drop every connection, hanging ones included. */
  close(): Promise<void>;
}

const FORMAT_BY_PATH = new Map<string, MockFormat>([
  ['/v1/chat/completions', 'openai'],
  ['/v1/messages', 'anthropic'],
  ['/v1/responses', 'responses'],
  ['/responses', 'responses'],
]);
const MODEL_LIST_PATHS = new Set(['/v1/models', '/models']);
const DEFAULT_MODELS: Record<ListFormat, readonly string[]> = {
  openai: ['gpt-4o', 'gpt-4o-2024-08-06', 'gpt-4o-mini'],
  anthropic: ['claude-sonnet-4-6', 'claude-haiku-4-5-20251001'],
};
/** When every listed model was "released" (a fixed instant keeps answers comparable). */
const MODELS_CREATED_AT = new Date('2025-01-01T00:00:00Z');
const DEFAULT_TEXT = 'This is the mock model answering.';
const FINGERPRINT = 'fp_mock';
const ARG_SLICE = 8;

/** About 4 characters a token, at least 1: the mock's deterministic count for unreported text. */
export function mockTextTokens(text: string): number {
  return Math.max(1, Math.ceil(text.length / 4));
}

/**
 * The default input tokens for a request body: the text of its system prompt
 * and messages (Responses: its instructions and input items).
 */
export function mockPromptTokens(body: unknown): number {
  if (!isRecord(body)) return 1;
  let chars = textLength(body.system) + responsesPromptChars(body, textLength);
  if (Array.isArray(body.messages))
    for (const m of body.messages) if (isRecord(m)) chars += textLength(m.content);
  return Math.max(1, Math.ceil(chars / 4));
}

/** A URL where nothing listens: a port bound and released, for "connection refused". */
export async function unusedPortUrl(): Promise<string> {
  const server = createServer();
  await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
  const { port } = server.address() as AddressInfo;
  await new Promise<void>((resolve) => server.close(() => resolve()));
  return `http://127.0.0.1:${port}`;
}

interface Queued {
  step: MockStep;
  match: MockMatch | undefined;
  left: number;
}

export async function startMockLlm(options: MockLlmOptions = {}): Promise<MockLlm> {
  const queue: Queued[] = [];
  const requests: MockRequest[] = [];
  const record = options.record ?? true;
  const keys = options.requireKey === undefined ? undefined : new Set([options.requireKey].flat());
  const defaultStep = checkStep(options.defaultStep ?? {});
  const models: Record<ListFormat, readonly string[]> = options.models
    ? { openai: [...options.models], anthropic: [...options.models] }
    : { ...DEFAULT_MODELS };
  let requestCount = 0;
  let closed = false;

  const take = (
    path: string,
    format: MockFormat,
    apiKey: string | undefined,
    model: string | undefined,
    listing = false,
  ) => {
    for (let i = 0; i < queue.length; i++) {
      const q = queue[i]!;
      const m = q.match;
      if (listing ? m?.path !== path : m?.path !== undefined && m.path !== path) continue;
      if (m?.format !== undefined && m.format !== format) continue;
      if (m?.apiKey !== undefined && m.apiKey !== apiKey) continue;
      if (m?.model !== undefined && m.model !== model) continue;
      q.left -= 1;
      if (q.left <= 0) queue.splice(i, 1);
      return q.step;
    }
    return undefined;
  };

  const handle = async (req: IncomingMessage, res: ServerResponse): Promise<void> => {
    const raw = await readBody(req);
    requestCount += 1;
    const url = req.url ?? '/';
    const q = url.indexOf('?');
    const path = q === -1 ? url : url.slice(0, q);
    const method = req.method ?? 'GET';
    const listing = method === 'GET' && MODEL_LIST_PATHS.has(path);
    // Embeddings, legacy completions, count_tokens: mock-endpoints.ts answers them.
    const endpoint = method === 'POST' ? MOCK_ENDPOINTS.get(path) : undefined;
    // Both providers list models at the same path: Anthropic's clients send its version header.
    const format = listing
      ? guessFormat(req.headers)
      : method === 'POST'
        ? (FORMAT_BY_PATH.get(path) ?? endpoint?.format)
        : undefined;
    const body = parseJson(raw);
    const obj = isRecord(body) ? body : undefined;
    const apiKey = keyOf(format, req.headers);
    const model = typeof obj?.model === 'string' ? obj.model : undefined;
    const stream = obj?.stream === true;
    const entry: MockRequest | undefined = record
      ? {
          method,
          path,
          format: format ?? null,
          headers: req.headers,
          body,
          apiKey,
          model,
          stream,
          at: Date.now(),
          step: undefined,
        }
      : undefined;
    if (entry) requests.push(entry);

    if (format === undefined) {
      return sendError(res, guessFormat(req.headers), {
        status: 404,
        message: `No such endpoint: ${method} ${path}`,
      });
    }
    if (listing) {
      const refused = checkAuth(format, req.headers, apiKey, keys);
      if (refused) return sendError(res, format, refused);
      const step = take(path, format, apiKey, undefined, true);
      if (entry) entry.step = step;
      if (step && (await failAsScripted(req, res, format, step))) return;
      return listModels(
        res,
        format as ListFormat,
        models[format as ListFormat],
        new URLSearchParams(q === -1 ? '' : url.slice(q + 1)),
      );
    }
    const refusal =
      checkAuth(format, req.headers, apiKey, keys) ??
      (endpoint ? endpoint.check(obj) : checkBody(format, obj));
    if (refusal) return sendError(res, format, refusal);
    if (endpoint) {
      const queued = take(path, format, apiKey, model);
      if (entry) entry.step = queued;
      const step = queued ?? defaultStep;
      if (await failAsScripted(req, res, format, step)) return;
      return endpoint.answer(res, obj!, step, { ...requestIdHeader(format), ...step.headers });
    }
    const computed = (): MockStep | undefined => {
      const s = options.respond?.({ format, body: obj!, apiKey });
      return s === undefined ? undefined : checkStep(s);
    };
    const step = take(path, format, apiKey, model) ?? computed();
    if (entry) entry.step = step;
    await answer(req, res, format, obj!, step ?? defaultStep);
  };

  const server = createServer((req, res) => {
    handle(req, res).catch((err: unknown) => {
      req.socket.destroy();
      // A bug in the mock must not pass for a provider failure unnoticed.
      process.emitWarning(`mock-llm could not answer ${req.method} ${req.url}: ${String(err)}`);
    });
  });
  // Longer than clients' idle timeouts, so a client never reuses a socket the mock is closing.
  server.keepAliveTimeout = 60_000;
  await new Promise<void>((resolve, reject) => {
    server.once('error', reject);
    server.listen(options.port ?? 0, '127.0.0.1', () => resolve());
  });
  const { port } = server.address() as AddressInfo;

  const enqueue = (match: MockMatch | undefined, steps: MockStep | readonly MockStep[]) => {
    for (const step of [steps].flat()) queue.push({ step: checkStep(step), match, left: step.times ?? 1 });
  };

  return {
    url: `http://127.0.0.1:${port}`,
    port,
    requests,
    get requestCount() {
      return requestCount;
    },
    get queued() {
      return queue.reduce((n, q) => n + q.left, 0);
    },
    reply: (steps) => enqueue(undefined, steps),
    replyFor: (match, steps) => enqueue(match, steps),
    setModels(ids, format) {
      for (const f of format ? [format] : (['openai', 'anthropic'] as const)) models[f] = [...ids];
    },
    reset() {
      queue.length = 0;
      requests.length = 0;
    },
    close() {
      if (closed) return Promise.resolve();
      closed = true;
      return new Promise<void>((resolve) => {
        server.close(() => resolve());
        server.closeAllConnections();
      });
    },
  };
}

// --- requests ------------------------------------------------------------------------------------

interface Refusal {
  status: number;
  message: string;
  code?: string;
}

function checkAuth(
  format: MockFormat,
  headers: IncomingHttpHeaders,
  apiKey: string | undefined,
  keys: Set<string> | undefined,
): Refusal | undefined {
  if (apiKey === undefined || apiKey === '') {
    return format !== 'anthropic'
      ? { status: 401, message: 'Missing API key: send Authorization: Bearer <key>.' }
      : { status: 401, message: 'x-api-key or Authorization header is required' };
  }
  if (format === 'anthropic' && headers['anthropic-version'] === undefined) {
    return { status: 400, message: 'anthropic-version: header is required' };
  }
  if (keys !== undefined && !keys.has(apiKey)) {
    return {
      status: 401,
      message: `Incorrect API key provided: ${apiKey.slice(0, 6)}…`,
      code: 'invalid_api_key',
    };
  }
  return undefined;
}

/** The checks a real provider makes that catch a translation bug: required fields and roles. */
function checkBody(format: MockFormat, body: Record<string, unknown> | undefined): Refusal | undefined {
  const bad = (message: string): Refusal => ({ status: 400, message });
  if (body === undefined) return bad('The request body is not a JSON object.');
  if (format === 'responses') {
    const problem = responsesBodyProblem(body);
    return problem === undefined ? undefined : bad(problem);
  }
  if (typeof body.model !== 'string' || body.model === '') return bad('model: Field required');
  if (!Array.isArray(body.messages) || body.messages.length === 0)
    return bad('messages: at least one message is required');
  if (format === 'anthropic') {
    if (!Number.isInteger(body.max_tokens) || (body.max_tokens as number) < 1)
      return bad('max_tokens: Field required');
    for (const [i, m] of body.messages.entries()) {
      const role = isRecord(m) ? m.role : undefined;
      if (role !== 'user' && role !== 'assistant')
        return bad(`messages.${i}.role: Input should be 'user' or 'assistant'`);
    }
  }
  return undefined;
}

function guessFormat(headers: IncomingHttpHeaders): ListFormat {
  return headers['x-api-key'] !== undefined || headers['anthropic-version'] !== undefined
    ? 'anthropic'
    : 'openai';
}

function keyOf(format: MockFormat | undefined, headers: IncomingHttpHeaders): string | undefined {
  const xKey = headers['x-api-key'];
  const bearer = /^Bearer (.*)$/i.exec(headers.authorization ?? '')?.[1];
  if (format === 'openai' || format === 'responses') return bearer;
  // Anthropic takes x-api-key; its SDK (1.x) sends the key as a Bearer token instead.
  return typeof xKey === 'string' ? xKey : bearer;
}

// --- answers -------------------------------------------------------------------------------------

/** One answer, whatever its wire format (mock-responses.ts renders the Responses API's). */
export interface Answer {
  id: string;
  created: number;
  model: string;
  text: string;
  chunks: readonly string[];
  tools: Array<{ id: string; name: string; input: Record<string, unknown>; json: string }>;
  usage: Required<MockUsage>;
}

async function answer(
  req: IncomingMessage,
  res: ServerResponse,
  format: MockFormat,
  body: Record<string, unknown>,
  step: MockStep,
): Promise<void> {
  if (await failAsScripted(req, res, format, step)) return;

  const a = buildAnswer(format, body, step);
  const headers = { ...requestIdHeader(format), ...step.headers };
  const stream = body.stream === true;
  const simple =
    step.cutAfterEvents === undefined &&
    step.stallBetweenEventsMs === undefined &&
    step.stallAfterEvents === undefined &&
    step.errorEventAfter === undefined &&
    step.malformedEventAfter === undefined &&
    !step.emptyStream;

  if (!stream) {
    const json =
      format === 'openai'
        ? openAiCompletion(a)
        : format === 'responses'
          ? responsesJson(a, body)
          : JSON.stringify(anthropicMessage(a, false));
    const bytes = Buffer.from(json);
    step.answering?.();
    res.writeHead(200, {
      'content-type': 'application/json',
      'content-length': step.emptyStream ? 0 : bytes.length,
      ...headers,
    });
    if (step.emptyStream) return void res.end();
    if (simple || step.errorEventAfter !== undefined) return void res.end(bytes);
    res.flushHeaders();
    const stallMs = step.stallMs ?? step.stallBetweenEventsMs ?? 0;
    if (stallMs > 0 && !(await pause(stallMs, res))) return;
    if (step.cutAfterEvents !== undefined) {
      await write(res, bytes.subarray(0, bytes.length >> 1));
      return void req.socket.destroy();
    }
    return void res.end(bytes);
  }

  step.answering?.();
  res.writeHead(200, {
    'content-type': 'text/event-stream; charset=utf-8',
    'cache-control': 'no-cache',
    ...headers,
  });
  if (step.emptyStream) return void res.end();
  const includeUsage = isRecord(body.stream_options) && body.stream_options.include_usage === true;
  const events =
    format === 'openai'
      ? openAiChunks(a, includeUsage)
      : format === 'responses'
        ? responsesEvents(a, body, slices)
        : anthropicEvents(a);
  if (simple) return void res.end(events.join(''));

  res.flushHeaders();
  for (let i = 0; i <= events.length; i++) {
    if (i === step.cutAfterEvents) {
      // An empty socket write calls back once the headers ahead of it are out, so a cut at 0 is still a 200.
      await new Promise<void>((resolve) => req.socket.write('', () => resolve()));
      return void req.socket.destroy();
    }
    if (i === step.errorEventAfter)
      return void res.end(
        format === 'responses'
          ? responsesErrorEvent(a, body, i, step.message)
          : errorEvent(format, step.message),
      );
    if (i === step.malformedEventAfter) {
      const data = step.malformedData ?? '{not json';
      await write(
        res,
        format === 'openai'
          ? `data: ${data}\n\n`
          : `event: ${format === 'responses' ? 'response.output_text.delta' : 'content_block_delta'}\ndata: ${data}\n\n`,
      );
    }
    if (i > 0 && step.stallBetweenEventsMs && !(await pause(step.stallBetweenEventsMs, res))) return;
    if (i === step.stallAfterEvents && !(await pause(step.stallMs ?? 0, res))) return;
    if (i === step.stallAfterEvents && step.holdUntil && !(await holdOpen(step.holdUntil, res))) return;
    const event = events[i];
    if (event === undefined) break;
    // Waiting for the write to reach the socket keeps the events before a cut from being dropped with it.
    await write(res, event);
    if (res.destroyed) return;
  }
  res.end();
}

/** A step's delay, then its failure (dropped socket, no answer, error status); true when it failed. */
async function failAsScripted(
  req: IncomingMessage,
  res: ServerResponse,
  format: MockFormat,
  step: MockStep,
): Promise<boolean> {
  if (step.delayMs && !(await pause(step.delayMs, res))) return true;
  if (step.destroy) {
    req.socket.destroy();
    return true;
  }
  if (step.hang) return true;
  if (step.status === undefined) return false;
  sendError(res, format, { status: step.status, message: step.message }, step);
  return true;
}

function buildAnswer(format: MockFormat, body: Record<string, unknown>, step: MockStep): Answer {
  const text = step.chunks?.join('') ?? step.text ?? (step.toolCalls?.length ? '' : DEFAULT_TEXT);
  const tools = (step.toolCalls ?? []).map((t) => {
    const input = t.arguments ?? {};
    const id = t.id ?? (format === 'anthropic' ? randomId('toolu_01', 22) : randomId('call_', 24));
    return { id, name: t.name, input, json: JSON.stringify(input) };
  });
  const u = step.usage ?? {};
  return {
    id:
      format === 'openai'
        ? randomId('chatcmpl-', 29)
        : format === 'responses'
          ? hexId('resp_')
          : randomId('msg_01', 22),
    created: Math.floor(Date.now() / 1000),
    model: step.model ?? (body.model as string),
    text,
    chunks: step.chunks ?? text.match(/\S*\s*/g)?.filter((c) => c !== '') ?? [],
    tools,
    usage: {
      input: u.input ?? mockPromptTokens(body),
      output: u.output ?? mockTextTokens(text + tools.map((t) => t.name + t.json).join('')),
      cacheRead: u.cacheRead ?? 0,
      cacheCreation: u.cacheCreation ?? 0,
    },
  };
}

// --- OpenAI --------------------------------------------------------------------------------------

type ChunkDelta = OpenAI.ChatCompletionChunk['choices'][number]['delta'];
type FinishReason = OpenAI.ChatCompletion['choices'][number]['finish_reason'];

function openAiUsage(u: Required<MockUsage>): OpenAI.CompletionUsage {
  const prompt = u.input + u.cacheRead + u.cacheCreation;
  return {
    prompt_tokens: prompt,
    completion_tokens: u.output,
    total_tokens: prompt + u.output,
    prompt_tokens_details: { cached_tokens: u.cacheRead, audio_tokens: 0 },
    completion_tokens_details: {
      reasoning_tokens: 0,
      audio_tokens: 0,
      accepted_prediction_tokens: 0,
      rejected_prediction_tokens: 0,
    },
  };
}

function openAiCompletion(a: Answer): string {
  const calls = a.tools.map((t) => ({
    id: t.id,
    type: 'function' as const,
    function: { name: t.name, arguments: t.json },
  }));
  const completion: OpenAI.ChatCompletion = {
    id: a.id,
    object: 'chat.completion',
    created: a.created,
    model: a.model,
    choices: [
      {
        index: 0,
        message: {
          role: 'assistant',
          content: a.text === '' && calls.length > 0 ? null : a.text,
          refusal: null,
          annotations: [],
          ...(calls.length > 0 ? { tool_calls: calls } : {}),
        },
        logprobs: null,
        finish_reason: calls.length > 0 ? 'tool_calls' : 'stop',
      },
    ],
    usage: openAiUsage(a.usage),
    service_tier: 'default',
    system_fingerprint: FINGERPRINT,
  };
  return JSON.stringify(completion);
}

/**
 * Role chunk, one chunk per text delta, per tool call a chunk with id and name
 * then argument slices, the finish chunk; with include_usage every chunk
 * carries `usage: null` and a last `choices: []` chunk the usage; then [DONE].
 */
function openAiChunks(a: Answer, includeUsage: boolean): string[] {
  const chunk = (choices: OpenAI.ChatCompletionChunk['choices'], usage?: OpenAI.CompletionUsage): string => {
    const c: OpenAI.ChatCompletionChunk = {
      id: a.id,
      object: 'chat.completion.chunk',
      created: a.created,
      model: a.model,
      service_tier: 'default',
      system_fingerprint: FINGERPRINT,
      choices,
      ...(includeUsage ? { usage: usage ?? null } : {}),
    };
    return `data: ${JSON.stringify(c)}\n\n`;
  };
  const delta = (d: ChunkDelta, finish: FinishReason | null = null) =>
    chunk([{ index: 0, delta: d, logprobs: null, finish_reason: finish }]);

  const out = [
    delta({ role: 'assistant', content: a.text === '' && a.tools.length > 0 ? null : '', refusal: null }),
  ];
  for (const text of a.chunks) out.push(delta({ content: text }));
  for (const [index, t] of a.tools.entries()) {
    out.push(
      delta({
        tool_calls: [{ index, id: t.id, type: 'function', function: { name: t.name, arguments: '' } }],
      }),
    );
    for (const part of slices(t.json))
      out.push(delta({ tool_calls: [{ index, function: { arguments: part } }] }));
  }
  out.push(delta({}, a.tools.length > 0 ? 'tool_calls' : 'stop'));
  if (includeUsage) out.push(chunk([], openAiUsage(a.usage)));
  out.push('data: [DONE]\n\n');
  return out;
}

// --- Anthropic -----------------------------------------------------------------------------------

function anthropicMessage(a: Answer, start: boolean): Anthropic.Message {
  const content: Anthropic.ContentBlock[] = [];
  if (!start) {
    if (a.text !== '' || a.tools.length === 0) content.push({ type: 'text', text: a.text, citations: null });
    for (const t of a.tools) {
      content.push({ type: 'tool_use', id: t.id, name: t.name, input: t.input, caller: { type: 'direct' } });
    }
  }
  const u = a.usage;
  return {
    id: a.id,
    type: 'message',
    role: 'assistant',
    model: a.model,
    content,
    stop_reason: start ? null : a.tools.length > 0 ? 'tool_use' : 'end_turn',
    stop_sequence: null,
    stop_details: null,
    container: null,
    diagnostics: null,
    usage: {
      input_tokens: u.input,
      cache_creation_input_tokens: u.cacheCreation,
      cache_read_input_tokens: u.cacheRead,
      cache_creation: { ephemeral_5m_input_tokens: u.cacheCreation, ephemeral_1h_input_tokens: 0 },
      // The real API reports a token or so of output at message_start; message_delta has the total.
      output_tokens: start ? 1 : u.output,
      output_tokens_details: null,
      server_tool_use: null,
      service_tier: 'standard',
      inference_geo: null,
      speed: null,
    },
  };
}

const sse = (e: Anthropic.RawMessageStreamEvent | { type: 'ping' }): string =>
  `event: ${e.type}\ndata: ${JSON.stringify(e)}\n\n`;

/**
 * message_start; per block content_block_start, deltas (a tool's input as
 * input_json_delta, first an empty one as the API does), content_block_stop,
 * with a ping after the first start; message_delta with the totals; message_stop.
 */
function anthropicEvents(a: Answer): string[] {
  const out = [sse({ type: 'message_start', message: anthropicMessage(a, true) })];
  let index = 0;
  if (a.text !== '' || a.tools.length === 0) {
    out.push(
      sse({ type: 'content_block_start', index, content_block: { type: 'text', text: '', citations: null } }),
    );
    out.push(sse({ type: 'ping' }));
    for (const text of a.chunks) {
      out.push(sse({ type: 'content_block_delta', index, delta: { type: 'text_delta', text } }));
    }
    out.push(sse({ type: 'content_block_stop', index }));
    index += 1;
  }
  for (const t of a.tools) {
    const block = {
      type: 'tool_use' as const,
      id: t.id,
      name: t.name,
      input: {},
      caller: { type: 'direct' as const },
    };
    out.push(sse({ type: 'content_block_start', index, content_block: block }));
    if (index === 0) out.push(sse({ type: 'ping' }));
    for (const partial_json of ['', ...slices(t.json)]) {
      out.push(
        sse({ type: 'content_block_delta', index, delta: { type: 'input_json_delta', partial_json } }),
      );
    }
    out.push(sse({ type: 'content_block_stop', index }));
    index += 1;
  }
  const u = a.usage;
  out.push(
    sse({
      type: 'message_delta',
      delta: {
        stop_reason: a.tools.length > 0 ? 'tool_use' : 'end_turn',
        stop_sequence: null,
        stop_details: null,
        container: null,
      },
      // Cumulative totals, as the API sends them: a client must overwrite, not add.
      usage: {
        input_tokens: u.input,
        cache_creation_input_tokens: u.cacheCreation,
        cache_read_input_tokens: u.cacheRead,
        output_tokens: u.output,
        output_tokens_details: null,
        server_tool_use: null,
      },
    }),
  );
  out.push(sse({ type: 'message_stop' }));
  return out;
}

// --- model lists ---------------------------------------------------------------------------------

/**
 * OpenAI answers every model at once (`object: "list"`); Anthropic pages by
 * id (`limit` 1–1000, default 20; `after_id` / `before_id`) with `has_more`,
 * `first_id` and `last_id`.
 */
function listModels(
  res: ServerResponse,
  format: ListFormat,
  ids: readonly string[],
  query: URLSearchParams,
): void {
  let json: string;
  if (format === 'openai') {
    const data: OpenAI.Model[] = ids.map((id) => ({
      id,
      object: 'model',
      created: Math.floor(MODELS_CREATED_AT.getTime() / 1000),
      owned_by: 'system',
    }));
    json = JSON.stringify({ object: 'list', data });
  } else {
    const limit = Number(query.get('limit') ?? 20);
    if (!Number.isInteger(limit) || limit < 1 || limit > 1000)
      return void sendError(res, format, {
        status: 400,
        message: 'limit: Input should be between 1 and 1000',
      });
    const after = query.get('after_id');
    const before = query.get('before_id');
    let start = after === null ? 0 : ids.indexOf(after) + 1;
    let end = before === null ? ids.length : Math.max(0, ids.indexOf(before));
    if (before !== null && after === null) start = Math.max(0, end - limit);
    end = Math.min(end, start + limit);
    const page = ids.slice(start, end);
    const data: Anthropic.ModelInfo[] = page.map((id) => ({
      type: 'model',
      id,
      display_name: id,
      created_at: MODELS_CREATED_AT.toISOString(),
      capabilities: null,
      deprecated_at: null,
      lifecycle: 'active',
      line: null,
      max_input_tokens: null,
      max_tokens: null,
      retires_at: null,
    }));
    const hasMore = before !== null && after === null ? start > 0 : end < ids.length;
    json = JSON.stringify({
      data,
      has_more: hasMore,
      first_id: page[0] ?? null,
      last_id: page.at(-1) ?? null,
    });
  }
  res.writeHead(200, {
    ...requestIdHeader(format),
    'content-type': 'application/json',
    'content-length': Buffer.byteLength(json),
  });
  res.end(json);
}

// --- errors --------------------------------------------------------------------------------------

function errorType(format: MockFormat, status: number): string {
  if (format !== 'anthropic')
    return status === 429 ? 'requests' : status >= 500 ? 'server_error' : 'invalid_request_error';
  const types: Record<number, string> = {
    400: 'invalid_request_error',
    401: 'authentication_error',
    402: 'billing_error',
    403: 'permission_error',
    404: 'not_found_error',
    409: 'conflict_error',
    413: 'request_too_large',
    429: 'rate_limit_error',
    503: 'overloaded_error',
    504: 'timeout_error',
    529: 'overloaded_error',
  };
  return types[status] ?? (status >= 500 ? 'api_error' : 'invalid_request_error');
}

function sendError(
  res: ServerResponse,
  format: MockFormat,
  refusal: Partial<Refusal>,
  step?: MockStep,
): void {
  const status = refusal.status ?? 500;
  const headers: Record<string, string | number> = { ...requestIdHeader(format), ...step?.headers };
  if (step?.retryAfterSec !== undefined) headers['retry-after'] = String(step.retryAfterSec);
  let text: string;
  if (typeof step?.body === 'string') {
    text = step.body;
    headers['content-type'] = text.trimStart().startsWith('<') ? 'text/html; charset=utf-8' : 'text/plain';
  } else {
    const message = refusal.message ?? `The mock answered ${status}.`;
    const type = errorType(format, status);
    const code = refusal.code ?? (format !== 'anthropic' && status === 429 ? 'rate_limit_exceeded' : null);
    const shaped =
      format !== 'anthropic'
        ? { error: { message, type, param: null, code } }
        : { type: 'error', error: { type, message }, request_id: headers['request-id'] };
    text = JSON.stringify(step?.body ?? shaped);
    headers['content-type'] = 'application/json';
  }
  headers['content-length'] = Buffer.byteLength(text);
  res.writeHead(status, headers);
  res.end(text);
}

/** OpenAI puts a mid-stream failure in a data-only event; Anthropic names it `event: error`. */
function errorEvent(format: ListFormat, message?: string): string {
  if (format === 'openai') {
    const error = {
      message: message ?? 'The server had an error while streaming.',
      type: 'server_error',
      param: null,
      code: null,
    };
    return `data: ${JSON.stringify({ error })}\n\n`;
  }
  const body = { type: 'error', error: { type: 'overloaded_error', message: message ?? 'Overloaded' } };
  return `event: error\ndata: ${JSON.stringify(body)}\n\n`;
}

// --- plumbing ------------------------------------------------------------------------------------

function checkStep(step: MockStep): MockStep {
  const fail = (why: string) => {
    throw new TypeError(`mock-llm step ${JSON.stringify(step)}: ${why}`);
  };
  if (step.chunks !== undefined && step.text !== undefined && step.chunks.join('') !== step.text) {
    fail('text differs from chunks joined');
  }
  if (
    (step.stallAfterEvents === undefined) !==
    (step.stallMs === undefined && step.holdUntil === undefined)
  ) {
    fail('stallAfterEvents and stallMs (or holdUntil) go together');
  }
  if (step.status !== undefined && (step.status < 400 || step.status > 599))
    fail('status is for errors (400–599)');
  const counts = [
    step.delayMs,
    step.cutAfterEvents,
    step.stallBetweenEventsMs,
    step.stallAfterEvents,
    step.stallMs,
  ];
  if (counts.some((n) => n !== undefined && !(n >= 0))) fail('counts and durations must be ≥ 0');
  if (step.errorEventAfter !== undefined && !(step.errorEventAfter >= 0)) fail('errorEventAfter must be ≥ 0');
  if (step.malformedEventAfter !== undefined && !(step.malformedEventAfter >= 0))
    fail('malformedEventAfter must be ≥ 0');
  if (step.times !== undefined && !(step.times >= 1)) fail('times must be ≥ 1');
  return step;
}

/** Waits, unless the connection closes first; says whether it is still open. */
function pause(ms: number, res: ServerResponse): Promise<boolean> {
  return new Promise((resolve) => {
    if (res.destroyed) return resolve(false);
    const onClose = () => {
      clearTimeout(timer);
      resolve(false);
    };
    const timer = setTimeout(() => {
      res.off('close', onClose);
      resolve(!res.destroyed);
    }, ms);
    res.once('close', onClose);
  });
}

/** Waits for the gate, unless the connection closes first; says whether it is still open. */
function holdOpen(gate: Promise<unknown>, res: ServerResponse): Promise<boolean> {
  return new Promise((resolve) => {
    if (res.destroyed) return resolve(false);
    const onClose = () => resolve(false);
    res.once('close', onClose);
    const open = () => {
      res.off('close', onClose);
      resolve(!res.destroyed);
    };
    gate.then(open, open);
  });
}

function write(res: ServerResponse, chunk: string | Uint8Array): Promise<void> {
  return new Promise((resolve) => {
    if (res.destroyed) return resolve();
    res.write(chunk, () => resolve());
  });
}

function readBody(req: IncomingMessage): Promise<string> {
  return new Promise((resolve, reject) => {
    const parts: Buffer[] = [];
    req.on('data', (c: Buffer) => parts.push(c));
    req.on('end', () => resolve(Buffer.concat(parts).toString('utf8')));
    req.on('error', reject);
  });
}

function parseJson(text: string): unknown {
  try {
    return JSON.parse(text);
  } catch {
    return text;
  }
}

function requestIdHeader(format: MockFormat): Record<string, string> {
  return format !== 'anthropic'
    ? { 'x-request-id': randomId('req_', 32) }
    : { 'request-id': randomId('req_01', 22) };
}

const ALPHABET = '0123456789ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz';

function randomId(prefix: string, length: number): string {
  let id = prefix;
  for (const b of randomBytes(length)) id += ALPHABET.charAt(b % ALPHABET.length);
  return id;
}

/** Splits a tool's JSON arguments into the small pieces providers stream them in. */
function slices(text: string): string[] {
  const out: string[] = [];
  for (let i = 0; i < text.length; i += ARG_SLICE) out.push(text.slice(i, i + ARG_SLICE));
  return out;
}

function textLength(value: unknown): number {
  if (typeof value === 'string') return value.length;
  if (Array.isArray(value)) return value.reduce((n: number, v) => n + textLength(v), 0);
  if (isRecord(value)) return textLength(value.text) + textLength(value.content);
  return 0;
}

function isRecord(value: unknown): value is Record<string, unknown> {
  return typeof value === 'object' && value !== null && !Array.isArray(value);
}
