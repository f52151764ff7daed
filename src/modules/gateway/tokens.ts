import type { Timers } from '../../core/context.ts';
import type { Provider } from './provider-call.ts';

/**
 * Input tokens of a request, counted before it is sent, for the budget
 * reservation and the rate limit. The reservation must not fall short of what
 * the provider will count, or concurrent calls together pass a hard limit:
 *
 * - OpenAI models are counted with OpenAI's own BPE tokenizers (gpt-tokenizer,
 *   pure JS): o200k_base for the GPT-4o/4.1/4.5/5 and o-series families,
 *   cl100k_base for GPT-4, GPT-3.5 and the embedding models. Every string of the system prompt,
 *   messages, tools, legacy functions and response format (for the Responses API:
 *   instructions, input items, tools and text format; the input of embeddings and
 *   legacy completions) is counted, plus a token for each key,
 *   value and element of their JSON structure — more than the few tokens a
 *   message costs the provider, so the count errs high.
 * - Every other model (Anthropic's tokenizers for Claude 3 and later are not
 *   published; self-hosted models have their own) is counted as
 *   CONSERVATIVE_FACTOR times the o200k count (see docs/gateway.md).
 * - Base64 payloads (images, files) keep the old rule of 4 characters a token,
 *   far above what an image costs, so no tokenizer runs over megabytes of base64.
 *
 * The encoders load on first use (about 250 ms, ~60 MB for o200k; the first
 * proxied call waits for it) and stay loaded. Tokenizing is about a microsecond
 * a character for text it has not seen, so a request tokenizes at most SYNC_CHARS
 * of new strings on its own path; new strings past that count as their UTF-8
 * bytes (a byte-level BPE token is at least one byte, so never too few) and are
 * tokenized in the background (TokenBacklog, on the injected timers), into a cache
 * by content — an agent resends its whole conversation with every call, and its
 * next call finds the count. Runs of 65+ characters without whitespace are
 * counted in 64-character pieces: BPE is quadratic in one pre-token's length
 * (100 000 `a`s took 42 s in one piece).
 */

/** Other models' tokens per o200k token, rounded up: see docs/gateway.md. */
export const CONSERVATIVE_FACTOR = 2;

type Encoding = 'o200k_base' | 'cl100k_base';
type Count = (text: string) => number;

const counters: Partial<Record<Encoding, Count>> = {};
const loading: Partial<Record<Encoding, Promise<void>>> = {};

function load(encoding: Encoding): Promise<void> | undefined {
  if (counters[encoding]) return undefined;
  loading[encoding] ??= (
    encoding === 'o200k_base'
      ? import('gpt-tokenizer/encoding/o200k_base')
      : import('gpt-tokenizer/encoding/cl100k_base')
  ).then((m) => {
    counters[encoding] = m.countTokens;
  });
  return loading[encoding];
}

/** The tokenizer of an OpenAI model by its name (a router's `openai/gpt-4o` too); undefined for others. */
export function encodingOf(provider: Provider, model: string): Encoding | undefined {
  if (provider === 'anthropic') return undefined;
  const name = (model.includes('/') ? model.slice(model.lastIndexOf('/') + 1) : model).toLowerCase();
  if (/^(gpt-4o|chatgpt-4o|gpt-4\.1|gpt-4\.5|gpt-5|gpt-oss|o[1-9](-|$))/.test(name)) return 'o200k_base';
  // The embedding models and the legacy completion models use GPT-4's encoding too.
  if (/^(gpt-4|gpt-3\.5|text-embedding-(3|ada)|davinci-002|babbage-002)/.test(name)) return 'cl100k_base';
  return undefined;
}

/** The cache is dropped when it holds this many characters of keys (and 32 more an entry). */
const CACHE_MAX_CHARS = 16 * 1024 * 1024;
/** Characters of new (uncached) strings one request may tokenize on its own path. */
const SYNC_CHARS = 8 * 1024;
/** Longer strings are never tokenized: they count as their UTF-8 bytes. */
const MAX_TOKENIZED_CHARS = 256 * 1024;
/** Tokenized in the background per turn of the event loop. */
const SLICE_CHARS = 8 * 1024;
/** BPE is quadratic in the length of one pre-token: longer runs without a space are cut. */
const LONG_RUN = /\S{65,}/g;
const caches: Record<Encoding, Map<string, number>> = { o200k_base: new Map(), cl100k_base: new Map() };
let cachedChars = 0;

/** Tokens of `text`, a run of 65+ characters without whitespace counted in 64-character pieces (one more each, for the cut). */
function tokenize(count: Count, text: string): number {
  LONG_RUN.lastIndex = 0;
  if (!LONG_RUN.test(text)) return count(text);
  let n = 0;
  let last = 0;
  for (const m of text.matchAll(LONG_RUN)) {
    n += count(text.slice(last, m.index));
    for (let i = 0; i < m[0].length; i += 64) n += count(m[0].slice(i, i + 64)) + 1;
    last = m.index + m[0].length;
  }
  return n + count(text.slice(last));
}

function remember(encoding: Encoding, text: string, n: number): void {
  if (cachedChars + text.length > CACHE_MAX_CHARS) {
    for (const c of Object.values(caches)) c.clear();
    cachedChars = 0;
  }
  caches[encoding].set(text, n);
  cachedChars += text.length + 32;
}

/** Strings waiting at most: a request of a hundred thousand short strings queues only these. */
const MAX_BACKLOG = 4096;

/**
 * Strings a request had no time for, tokenized between requests a slice at a time (cut
 * at whitespace) on the injected timers, so the agent's next call — which resends them —
 * finds their count. One per gateway; the counts go to the shared cache by content.
 */

export class TokenBacklog {
  private readonly jobs: Array<{ encoding: Encoding; text: string; at: number; n: number }> = [];
  private head = 0;
  private chars = 0;
  private readonly queued: Record<Encoding, Set<string>> = { o200k_base: new Set(), cl100k_base: new Set() };
  private draining = false;

  constructor(private readonly timers: Pick<Timers, 'after'>) {}

  add(encoding: Encoding, text: string): void {
    if (text.length > MAX_TOKENIZED_CHARS || this.chars + text.length > 4 * MAX_TOKENIZED_CHARS) return;
    if (this.jobs.length - this.head >= MAX_BACKLOG || this.queued[encoding].has(text)) return;
    this.jobs.push({ encoding, text, at: 0, n: 0 });
    this.queued[encoding].add(text);
    this.chars += text.length;
    if (!this.draining) {
      this.draining = true;
      this.timers.after(0, this.drainSlice);
    }
  }

  private readonly drainSlice = (): void => {
    // About SLICE_CHARS a turn: a piece of a long string, or several short ones.
    for (let budget = SLICE_CHARS; budget > 0; ) {
      const job = this.jobs[this.head];
      if (!job) {
        this.jobs.length = 0;
        this.head = 0;
        this.draining = false;
        return;
      }
      let end = Math.min(job.text.length, job.at + budget);
      if (end < job.text.length) {
        const space = job.text.lastIndexOf(' ', end);
        if (space > job.at) end = space;
      }
      job.n += tokenize(counters[job.encoding]!, job.text.slice(job.at, end));
      budget -= end - job.at;
      job.at = end;
      if (job.at < job.text.length) break;
      this.head += 1;
      this.chars -= job.text.length;
      this.queued[job.encoding].delete(job.text);
      remember(job.encoding, job.text, job.n);
    }
    this.timers.after(0, this.drainSlice);
  };
}

/** What one request counts: exactly (a tokenizer), and as an upper bound (UTF-8 bytes; base64 at 4 characters). */
interface Tally {
  exact: number;
  bound: number;
  /** Characters of new strings this request may still tokenize. */
  syncLeft: number;
  backlog: TokenBacklog;
}

function countText(encoding: Encoding, text: string, t: Tally): void {
  // Cached by content, short strings too: an agent resends the same system prompt, tool
  // definitions and earlier turns with every call, and a lookup costs a fraction of a count.
  const cached = caches[encoding].get(text);
  if (cached !== undefined) {
    t.exact += cached;
    return;
  }
  // Short strings count against the request's budget too: a body of a hundred thousand
  // distinct short strings must not hold the event loop for seconds.
  if (text.length <= t.syncLeft) {
    t.syncLeft -= text.length;
    const n = tokenize(counters[encoding]!, text);
    remember(encoding, text, n);
    t.exact += n;
    return;
  }
  // A byte-level BPE token is at least one byte: never fewer tokens than this.
  t.bound += Buffer.byteLength(text, 'utf8');
  t.backlog.add(encoding, text);
}

const BLOB_KEYS = new Set(['data', 'file_data']);

/** Tokens of a JSON value: its strings tokenized, one token per key, value and element besides. */
function countValue(encoding: Encoding, value: unknown, key: string | undefined, t: Tally): void {
  if (typeof value === 'string') {
    if ((key !== undefined && BLOB_KEYS.has(key)) || value.startsWith('data:'))
      t.bound += Math.ceil(value.length / 4);
    else countText(encoding, value, t);
    t.exact += 1;
    return;
  }
  t.exact += 1;
  if (Array.isArray(value)) {
    for (const v of value) countValue(encoding, v, undefined, t);
  } else if (value !== null && typeof value === 'object') {
    for (const k in value as Record<string, unknown>) {
      countText(encoding, k, t);
      t.exact += 1;
      countValue(encoding, (value as Record<string, unknown>)[k], k, t);
    }
  }
}

/** Request fields of the non-chat endpoints that are input to the model. */
const TEXT_FIELDS = ['input', 'prompt', 'suffix'] as const;

/** The input tokens of one request, per tokenizer, counted once each. */
export class PromptTokens {
  private readonly counted: Partial<Record<Encoding, Tally>> = {};
  private highest = 0;

  constructor(
    private readonly body: Record<string, unknown>,
    private readonly backlog: TokenBacklog,
  ) {}

  /** Loads the tokenizers these attempts need; undefined (no await) once they are loaded. */
  load(targets: Iterable<{ provider: Provider; model: string }>): Promise<unknown> | undefined {
    const pending: Array<Promise<void>> = [];
    const need = (e: Encoding) => {
      const p = load(e);
      if (p) pending.push(p);
    };
    need('o200k_base');
    for (const t of targets) {
      const e = encodingOf(t.provider, t.model);
      if (e && e !== 'o200k_base') need(e);
    }
    return pending.length > 0 ? Promise.all(pending) : undefined;
  }

  /** The tokens `provider` will count for `model` at most (its tokenizer, or the conservative factor). */
  for(provider: Provider, model: string): number {
    const encoding = encodingOf(provider, model);
    let n: number;
    if (encoding) {
      const t = this.with(encoding);
      n = t.exact + t.bound;
    } else {
      // The factor applies to what was tokenized; a bound in bytes already holds for any byte-level BPE.
      const t = this.with('o200k_base');
      n = Math.ceil(CONSERVATIVE_FACTOR * t.exact) + t.bound;
    }
    if (n > this.highest) this.highest = n;
    return n;
  }

  /** The most any attempt counted (the conservative count when none was asked). */
  max(): number {
    return this.highest > 0 ? this.highest : this.for('anthropic', '');
  }

  private with(encoding: Encoding): Tally {
    let t = this.counted[encoding];
    if (t === undefined) {
      t = { exact: 0, bound: 0, syncLeft: SYNC_CHARS, backlog: this.backlog };
      const b = this.body;
      countValue(encoding, b.system ?? null, undefined, t);
      countValue(encoding, b.messages ?? null, undefined, t);
      countValue(encoding, b.tools ?? null, undefined, t);
      if (b.functions !== undefined) countValue(encoding, b.functions, undefined, t);
      if (b.response_format !== undefined) countValue(encoding, b.response_format, undefined, t);
      // The Responses API's instructions and output format (text.format); its `input` items,
      // embeddings' `input`, legacy completions' `prompt` and `suffix` (token-id arrays count a token an id).
      if (b.instructions !== undefined) countValue(encoding, b.instructions, undefined, t);
      if (b.text !== undefined) countValue(encoding, b.text, undefined, t);
      for (const field of TEXT_FIELDS)
        if (b[field] !== undefined) countValue(encoding, b[field], undefined, t);
      this.counted[encoding] = t;
    }
    return t;
  }
}
