import type { Provider } from './provider-call.ts';

/**
 * Input tokens of a request, counted before it is sent, for the budget
 * reservation and the rate limit. The reservation must not fall short of what
 * the provider will count, or concurrent calls together pass a hard limit:
 *
 * - OpenAI models are counted with OpenAI's own BPE tokenizers (gpt-tokenizer,
 *   pure JS): o200k_base for the GPT-4o/4.1/4.5/5 and o-series families,
 *   cl100k_base for GPT-4 and GPT-3.5. Every string of the system prompt,
 *   messages, tools and response format is counted, plus a token for each key,
 *   value and element of their JSON structure — more than the few tokens a
 *   message costs the provider, so the count errs high.
 * - Every other model (Anthropic's tokenizers for Claude 3 and later are not
 *   published; self-hosted models have their own) is counted as
 *   CONSERVATIVE_FACTOR times the o200k count (see docs/gateway.md).
 * - Base64 payloads (images, files) keep the old rule of 4 characters a token,
 *   far above what an image costs, so no tokenizer runs over megabytes of base64.
 *
 * The encoders load on first use (about 250 ms, ~60 MB for o200k; the first
 * proxied call waits for it) and stay loaded; counts of long strings are
 * cached, since an agent resends its whole conversation with every call.
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
  if (/^(gpt-4|gpt-3\.5)/.test(name)) return 'cl100k_base';
  return undefined;
}

/** Strings at least this long are cached by content. */
const CACHE_MIN_CHARS = 256;
/** The cache is dropped when it holds this many characters of keys. */
const CACHE_MAX_CHARS = 16 * 1024 * 1024;
const caches: Record<Encoding, Map<string, number>> = { o200k_base: new Map(), cl100k_base: new Map() };
let cachedChars = 0;

function countText(encoding: Encoding, text: string): number {
  const count = counters[encoding]!;
  if (text.length < CACHE_MIN_CHARS) return count(text);
  const cache = caches[encoding];
  let n = cache.get(text);
  if (n === undefined) {
    n = count(text);
    if (cachedChars + text.length > CACHE_MAX_CHARS) {
      for (const c of Object.values(caches)) c.clear();
      cachedChars = 0;
    }
    cache.set(text, n);
    cachedChars += text.length;
  }
  return n;
}

const BLOB_KEYS = new Set(['data', 'file_data']);

/** Tokens of a JSON value: its strings tokenized, one token per key, value and element besides. */
function countValue(encoding: Encoding, value: unknown, key: string | undefined): number {
  if (typeof value === 'string') {
    if ((key !== undefined && BLOB_KEYS.has(key)) || value.startsWith('data:'))
      return Math.ceil(value.length / 4);
    return countText(encoding, value) + 1;
  }
  if (Array.isArray(value)) {
    let n = 1;
    for (const v of value) n += countValue(encoding, v, undefined);
    return n;
  }
  if (value !== null && typeof value === 'object') {
    let n = 1;
    for (const k in value as Record<string, unknown>) {
      n += countText(encoding, k) + 1 + countValue(encoding, (value as Record<string, unknown>)[k], k);
    }
    return n;
  }
  return 1;
}

/** The input tokens of one request, per tokenizer, counted once each. */
export class PromptTokens {
  private readonly counted: Partial<Record<Encoding, number>> = {};
  private highest = 0;

  constructor(private readonly body: Record<string, unknown>) {}

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
    const n = encoding ? this.with(encoding) : Math.ceil(CONSERVATIVE_FACTOR * this.with('o200k_base'));
    if (n > this.highest) this.highest = n;
    return n;
  }

  /** The most any attempt counted (the conservative count when none was asked). */
  max(): number {
    return this.highest > 0 ? this.highest : Math.ceil(CONSERVATIVE_FACTOR * this.with('o200k_base'));
  }

  private with(encoding: Encoding): number {
    let n = this.counted[encoding];
    if (n === undefined) {
      const b = this.body;
      n =
        countValue(encoding, b.system ?? null, undefined) +
        countValue(encoding, b.messages ?? null, undefined) +
        countValue(encoding, b.tools ?? null, undefined) +
        (b.response_format !== undefined ? countValue(encoding, b.response_format, undefined) : 0);
      this.counted[encoding] = n;
    }
    return n;
  }
}
