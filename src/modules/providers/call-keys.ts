import type { Context, Timer } from '../../core/context.ts';
import type { Sealer } from '../../core/crypto.ts';
import type { ProviderKeyId, TeamId } from '../../core/ids.ts';
import { ReadThroughCache } from '../../core/read-through-cache.ts';
import type { Db } from '../../db/client.ts';
import * as repo from './repo.ts';
import type { PriceOverrides } from './views.ts';

// The proxy's side of provider keys: opening secrets for calls (cached) and
// recording their use (batched). Both sit on the hot path of every model call.

/** Where a key without base_url sends its calls. openai_compatible keys always carry one. */
export const DEFAULT_BASE_URLS: Partial<Record<repo.ProviderName, string>> = {
  anthropic: 'https://api.anthropic.com',
  openai: 'https://api.openai.com',
};

/** A key opened for one provider call. Holds the plaintext secret: never log or return it. */
export interface KeyForCall {
  id: ProviderKeyId;
  provider: repo.ProviderName;
  baseUrl: string;
  apiKey: string;
  priceOverrides: PriceOverrides | null;
}

/** The sealing context binds a sealed secret to its row: copied to another row, it does not open. */
export function sealContext(keyId: string): string {
  return `provider_key:${keyId}`;
}

const SECRET_CACHE_MAX = 10_000;
const USAGE_FLUSH_MS = 1000;
const LOOKUPS = { ttlMs: 2000, refreshAheadMs: 500, max: 10_000 };

/**
 * Opened secrets by key id, each valid while its row's updated_at is
 * unchanged (AES-GCM runs only when the row changed), and the answer for a
 * team's set of keys trusted for two seconds (reloaded in the background in
 * the last half second): the proxy asks on every
 * call, and a change made here (disable, rotate, delete) clears it at once;
 * one made on another server counts within that time.
 */
export class OpenedKeys {
  private readonly cache = new Map<string, { version: number; key: KeyForCall }>();
  private readonly lookups = new ReadThroughCache<Map<string, KeyForCall>>(LOOKUPS);

  constructor(
    private readonly ctx: Context,
    private readonly db: Db,
    private readonly sealer: Sealer,
  ) {}

  open(teamId: TeamId, keyIds: readonly ProviderKeyId[]): Promise<Map<string, KeyForCall>> {
    return this.lookups.get(`${teamId}\u0000${keyIds.join('\u0000')}`, () => this.openNow(teamId, keyIds));
  }

  private async openNow(teamId: TeamId, keyIds: readonly ProviderKeyId[]): Promise<Map<string, KeyForCall>> {
    const out = new Map<string, KeyForCall>();
    const rows = await repo.activeKeysForCall(this.db, teamId, [...new Set(keyIds)]);
    for (const row of rows) {
      const version = row.updatedAt.getTime();
      const hit = this.cache.get(row.id);
      if (hit && hit.version === version) {
        out.set(row.id, hit.key);
        continue;
      }
      const baseUrl = row.baseUrl ?? DEFAULT_BASE_URLS[row.provider];
      if (baseUrl === undefined || row.sealedKey === null) continue;
      let apiKey: string;
      try {
        apiKey = this.sealer.open(row.sealedKey, sealContext(row.id));
      } catch (err) {
        // Sealed under another master key or tampered with: unusable, so not routable.
        this.ctx.log.warn(
          { err, provider_key_id: row.id, team_id: teamId },
          'a provider key does not open with this master key; it is left out of routing',
        );
        continue;
      }
      const key: KeyForCall = {
        id: row.id,
        provider: row.provider,
        baseUrl,
        apiKey,
        priceOverrides: (row.priceOverrides ?? null) as PriceOverrides | null,
      };
      if (this.cache.size >= SECRET_CACHE_MAX) this.cache.clear();
      this.cache.set(row.id, { version, key });
      out.set(row.id, key);
    }
    return out;
  }

  /** Drops a key's plaintext as soon as it changed here (it would not be served anyway). */
  forget(keyId: string): void {
    this.cache.delete(keyId);
    this.lookups.clear();
  }
}

/**
 * last_used_at writes, batched: at most one per key per second, off the
 * caller's path; last_used_at only moves forward. A failed write is logged
 * and dropped (the value is informational).
 */
export class UsageBatcher {
  private readonly pending = new Map<ProviderKeyId, Date>();
  private timer: Timer | null = null;

  constructor(
    private readonly ctx: Context,
    private readonly db: Db,
  ) {}

  mark(keyId: ProviderKeyId, at: Date): void {
    const seen = this.pending.get(keyId);
    if (seen === undefined || seen < at) this.pending.set(keyId, at);
    if (this.timer === null) {
      this.timer = this.ctx.timers.after(USAGE_FLUSH_MS, () => {
        this.timer = null;
        void this.flush();
      });
    }
  }

  async flush(): Promise<void> {
    if (this.timer !== null) {
      this.timer.cancel();
      this.timer = null;
    }
    const batch = [...this.pending];
    this.pending.clear();
    for (const [keyId, at] of batch) {
      try {
        await repo.systemTouchLastUsed(this.db, keyId, at);
      } catch (err) {
        this.ctx.log.warn(
          { err, provider_key_id: keyId },
          'could not record when a provider key was last used',
        );
      }
    }
  }
}
