import type { Provider } from './provider-call.ts';

/**
 * Family aliases an agent definition's `model` may name instead of a full id,
 * resolved when a task runs. Each points at a dated id the price table
 * (data/prices.json) prices and lists, so a task on an alias is priced
 * exactly and keeps running the same model until this table moves it.
 *
 * Maintained by hand: when a provider ships a new model of a family, point
 * the alias at its dated id (and add the id to the price table's `models`);
 * test/agents/models.test.ts checks that every target is priced and listed.
 */
export interface ModelAlias {
  alias: string;
  provider: Extract<Provider, 'anthropic' | 'openai'>;
  model: string;
}

export const MODEL_ALIASES: readonly ModelAlias[] = [
  // Anthropic: the newest model of each family that the price table prices as itself (from 4.6 on,
  // Anthropic's full ids carry no date). Opus 4.6 and later have no entry of their own (they would
  // be priced as Opus 4) and Claude 5 none at all: move an alias once its model is priced.
  { alias: 'opus', provider: 'anthropic', model: 'claude-opus-4-5-20251101' },
  { alias: 'sonnet', provider: 'anthropic', model: 'claude-sonnet-4-6' },
  { alias: 'haiku', provider: 'anthropic', model: 'claude-haiku-4-5-20251001' },
  // OpenAI: its own undated names, pinned to the snapshot they pointed at when this table was written.
  { alias: 'gpt-5', provider: 'openai', model: 'gpt-5-2025-08-07' },
  { alias: 'gpt-5-mini', provider: 'openai', model: 'gpt-5-mini-2025-08-07' },
  { alias: 'gpt-5-nano', provider: 'openai', model: 'gpt-5-nano-2025-08-07' },
  { alias: 'gpt-4.1', provider: 'openai', model: 'gpt-4.1-2025-04-14' },
  { alias: 'gpt-4.1-mini', provider: 'openai', model: 'gpt-4.1-mini-2025-04-14' },
  { alias: 'gpt-4.1-nano', provider: 'openai', model: 'gpt-4.1-nano-2025-04-14' },
  { alias: 'gpt-4o', provider: 'openai', model: 'gpt-4o-2024-08-06' },
  { alias: 'gpt-4o-mini', provider: 'openai', model: 'gpt-4o-mini-2024-07-18' },
];

const BY_ALIAS = new Map(MODEL_ALIASES.map((a) => [a.alias, a]));
const BY_MODEL = new Map<string, string[]>();
for (const a of MODEL_ALIASES) BY_MODEL.set(a.model, [...(BY_MODEL.get(a.model) ?? []), a.alias]);

/**
 * The full model id `model` stands for: an alias (matched without regard to
 * case) gives its target and its name; anything else is taken as a full id
 * and passes through unchanged, with `alias: null`.
 */
export function resolveModelAlias(model: string): { model: string; alias: string | null } {
  const entry = BY_ALIAS.get(model.toLowerCase());
  return entry ? { model: entry.model, alias: entry.alias } : { model, alias: null };
}

/** The aliases that resolve to `modelId`, in table order (none for most ids). */
export function aliasesOf(modelId: string): readonly string[] {
  return BY_MODEL.get(modelId) ?? [];
}
