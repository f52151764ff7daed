import builtIn from './data/prices.json' with { type: 'json' };
import { globMatch } from './glob.ts';
import type { Provider } from './provider-call.ts';
import type { Usage } from './usage.ts';

/** USD per million tokens, per bucket. */
export interface Price {
  input: number;
  output: number;
  cacheRead: number;
  cacheWrite: number;
}

interface TableEntry {
  pattern: string;
  input: number;
  output: number;
  cache_read?: number;
  cache_write?: number;
  /** Ids the provider serves that this entry prices (the catalog offered when a key's list cannot be fetched). */
  models?: string[];
}

/** A provider key's `price_overrides`: model name or glob → USD per million tokens. */
export type PriceOverrides = Record<
  string,
  { input: number; output: number; cache_read?: number; cache_write?: number }
>;

export type PriceTableData = Partial<Record<'anthropic' | 'openai', TableEntry[]>>;

const FREE: Price = { input: 0, output: 0, cacheRead: 0, cacheWrite: 0 };

function toPrice(e: { input: number; output: number; cache_read?: number; cache_write?: number }): Price {
  // A bucket the entry does not price costs what plain input costs (never less: fail closed).
  return {
    input: e.input,
    output: e.output,
    cacheRead: e.cache_read ?? e.input,
    cacheWrite: e.cache_write ?? e.input,
  };
}

/**
 * Prices model calls from the built-in table (data/prices.json), a key's
 * overrides beating it. A model the table does not know is priced at the
 * provider's most expensive listed model (fail closed on money); on an
 * openai_compatible endpoint (Ollama, vLLM: self-hosted) it is free unless
 * the key's overrides price it.
 */
export class PriceTable {
  private readonly ceiling: Record<'anthropic' | 'openai', Price>;
  private readonly memo = new Map<string, Price>();
  private readonly catalog: Record<'anthropic' | 'openai', readonly string[]>;

  constructor(private readonly table: PriceTableData = builtIn as PriceTableData) {
    const max = (entries: TableEntry[] | undefined): Price =>
      (entries ?? []).map(toPrice).reduce(
        (m, p) => ({
          input: Math.max(m.input, p.input),
          output: Math.max(m.output, p.output),
          cacheRead: Math.max(m.cacheRead, p.cacheRead),
          cacheWrite: Math.max(m.cacheWrite, p.cacheWrite),
        }),
        FREE,
      );
    this.ceiling = { anthropic: max(table.anthropic), openai: max(table.openai) };
    const listed = (entries: TableEntry[] | undefined) => [
      ...new Set((entries ?? []).flatMap((e) => e.models ?? [])),
    ];
    this.catalog = { anthropic: listed(table.anthropic), openai: listed(table.openai) };
  }

  /**
   * The model ids the table lists for a provider: what a key of it can most
   * likely call. An openai_compatible endpoint serves whatever it hosts, so
   * the table knows none.
   */
  catalogModels(provider: Provider): readonly string[] {
    return provider === 'openai_compatible' ? [] : this.catalog[provider];
  }

  priceOf(provider: Provider, model: string, overrides: PriceOverrides | null): Price {
    if (overrides) {
      const exact = Object.hasOwn(overrides, model) ? overrides[model] : undefined;
      if (exact) return toPrice(exact);
      for (const [pattern, p] of Object.entries(overrides)) if (globMatch(pattern, model)) return toPrice(p);
    }
    const memoKey = `${provider}\u0000${model}`;
    let price = this.memo.get(memoKey);
    if (!price) {
      price = this.fromTable(provider, model);
      if (this.memo.size < 10_000) this.memo.set(memoKey, price);
    }
    return price;
  }

  private fromTable(provider: Provider, model: string): Price {
    const find = (family: 'anthropic' | 'openai', name: string) => {
      const e = this.table[family]?.find((entry) => globMatch(entry.pattern, name));
      return e ? toPrice(e) : undefined;
    };
    if (provider !== 'openai_compatible') return find(provider, model) ?? this.ceiling[provider];
    // Routers such as OpenRouter name models "vendor/model": price the model part when the table knows it.
    const bare = model.includes('/') ? model.slice(model.lastIndexOf('/') + 1) : model;
    return find('anthropic', bare) ?? find('openai', bare) ?? FREE;
  }

  /** What `usage` costs, in micro-USD (tokens × USD per million tokens = micro-USD), rounded up. */
  costMicros(provider: Provider, model: string, usage: Usage, overrides: PriceOverrides | null): number {
    const p = this.priceOf(provider, model, overrides);
    return Math.ceil(
      usage.input * p.input +
        usage.output * p.output +
        usage.cacheRead * p.cacheRead +
        usage.cacheCreation * p.cacheWrite,
    );
  }

  /**
   * The most a call can cost before it is made: every input token priced as
   * the dearest input bucket (a cache write costs more than plain input), and
   * the whole output allowance.
   */
  maxCostMicros(
    provider: Provider,
    model: string,
    inputTokens: number,
    maxOutputTokens: number,
    overrides: PriceOverrides | null,
  ): number {
    const p = this.priceOf(provider, model, overrides);
    const dearestInput = Math.max(p.input, p.cacheRead, p.cacheWrite);
    return Math.ceil(inputTokens * dearestInput + maxOutputTokens * p.output);
  }
}
