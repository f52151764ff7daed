import type { ProviderKeyRow } from './repo.ts';

const iso = (d: Date | null) => (d === null ? null : d.toISOString());

/** The masked form of a secret: "…" and its last 4 characters; null once deleted (scrubbed). */
export function maskedKey(row: Pick<ProviderKeyRow, 'status' | 'keyHint'>): string | null {
  if (row.status === 'deleted') return null;
  return `…${row.keyHint ?? ''}`;
}

/**
 * The last 4 characters shown of a secret. A very short secret (a local
 * endpoint's placeholder) shows none: 4 of 6 characters would be most of it.
 */
export function keyHintOf(secret: string): string {
  return secret.length >= 12 ? secret.slice(-4) : '';
}

/** Never the secret nor its sealed form: only the masked hint. */
export function providerKeyView(k: ProviderKeyRow) {
  return {
    id: k.id,
    team_id: k.teamId,
    name: k.name,
    provider: k.provider,
    api_key: maskedKey(k),
    status: k.status,
    base_url: k.baseUrl,
    price_overrides: (k.priceOverrides ?? null) as PriceOverrides | null,
    last_used_at: iso(k.lastUsedAt),
    rotated_at: iso(k.rotatedAt),
    created_at: k.createdAt.toISOString(),
    updated_at: k.updatedAt.toISOString(),
  };
}
export type ProviderKeyView = ReturnType<typeof providerKeyView>;

/** model glob → USD per million tokens. */
export type PriceOverrides = Record<
  string,
  { input: number; output: number; cache_read?: number; cache_write?: number }
>;
