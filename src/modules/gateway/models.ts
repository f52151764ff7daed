import { MINUTE_MS } from '../../core/clock.ts';
import type { Context } from '../../core/context.ts';
import type { ProviderKeyId, TeamId } from '../../core/ids.ts';
import { aliasesOf } from './model-aliases.ts';
import type { KeyForCall } from './ports.ts';
import type { PriceTable } from './pricing.ts';
import { headersFor, modelsEndpointOf, type Provider } from './provider-call.ts';
import { isObject } from './translation-common.ts';
import { classify, readBody, type UpstreamClient, UpstreamError } from './upstream.ts';

/** A key whose models are asked for (its secret is opened only to fetch the list). */
export interface KeyToList {
  id: ProviderKeyId;
  provider: Provider;
}

/** One model a key can use; `catalog` when the provider's own list could not be had. */
export interface ListedModel {
  id: string;
  provider: Provider;
  provider_key_id: ProviderKeyId;
  /** The family aliases (model-aliases.ts) that resolve to this id. */
  aliases: string[];
  source: 'provider' | 'catalog';
}

export interface ModelListOptions {
  /** A provider's list is trusted this long; older, it is still served while a refresh runs. */
  ttlMs: number;
  /** After a failed fetch, the next try waits this long (the catalog, or the old list, is served meanwhile). */
  retryAfterFailureMs: number;
  connectTimeoutMs: number;
  timeoutMs: number;
  maxBodyBytes: number;
  /** Anthropic pages its list: at most this many pages of 1000 are read. */
  maxPages: number;
  /** Past this many keys the cache starts over (a bound, not an LRU). */
  maxEntries: number;
}

const DEFAULTS: ModelListOptions = {
  ttlMs: 10 * MINUTE_MS,
  retryAfterFailureMs: MINUTE_MS,
  connectTimeoutMs: 5_000,
  timeoutMs: 15_000,
  maxBodyBytes: 8 * 1024 * 1024,
  maxPages: 10,
  maxEntries: 10_000,
};

/** A model id as the lists carry it; anything longer or stranger is left out. */
const MODEL_ID = /^[\x21-\x7e]{1,256}$/;

interface Cached {
  /** The provider's list, or null while no fetch has succeeded. */
  ids: readonly string[] | null;
  /** When the fetch that gave `ids` started (clock ms). */
  fetchedAt: number;
  /** When the last fetch failed, or null after a success. */
  failedAt: number | null;
}

interface ModelListPorts {
  /** The team's key opened for one call, or undefined when it is not usable (any more). */
  open(teamId: TeamId, keyId: ProviderKeyId): Promise<KeyForCall | undefined>;
  prices: Pick<PriceTable, 'catalogModels'>;
}

/**
 * What models each provider key can use, from the provider's own list
 * (`GET /v1/models`), fetched through the proxy's upstream client (so the
 * outbound-address guard) and cached per key in this process. A cached list
 * older than the TTL is still served while one background fetch per key
 * replaces it, so only a key's first request ever waits. While no fetch has
 * succeeded, the price table's models for the provider are served, marked
 * `catalog`, and the fetch is tried again after `retryAfterFailureMs`.
 * A rotated key or a new base_url shows within the TTL.
 */
export class ModelLists {
  private readonly cache = new Map<ProviderKeyId, Cached>();
  private readonly inFlight = new Map<ProviderKeyId, Promise<void>>();
  private readonly closing = new AbortController();
  private readonly options: ModelListOptions;

  constructor(
    private readonly ctx: Context,
    private readonly upstream: UpstreamClient,
    private readonly ports: ModelListPorts,
    options: Partial<ModelListOptions> = {},
  ) {
    this.options = { ...DEFAULTS, ...options };
  }

  /** The models of `keys`, sorted by id then key, one entry per (key, id). */
  async list(teamId: TeamId, keys: readonly KeyToList[]): Promise<ListedModel[]> {
    const unique = [...new Map(keys.map((k) => [k.id, k])).values()];
    const perKey = await Promise.all(
      unique.map(async (key) => ({ key, ...(await this.forKey(teamId, key)) })),
    );
    const out: ListedModel[] = [];
    for (const { key, ids, source } of perKey) {
      for (const id of new Set(ids)) {
        out.push({
          id,
          provider: key.provider,
          provider_key_id: key.id,
          aliases: [...aliasesOf(id)],
          source,
        });
      }
    }
    return out.sort((a, b) => compare(a.id, b.id) || compare(a.provider_key_id, b.provider_key_id));
  }

  /** Resolves once no fetch is running (tests; shutdown). */
  async settled(): Promise<void> {
    while (this.inFlight.size > 0) await Promise.all(this.inFlight.values());
  }

  /** Aborts the fetches still running. */
  async close(): Promise<void> {
    this.closing.abort();
    await this.settled();
  }

  private now(): number {
    return this.ctx.clock.now().getTime();
  }

  private mayTry(entry: Cached, now: number): boolean {
    return entry.failedAt === null || now - entry.failedAt >= this.options.retryAfterFailureMs;
  }

  private async forKey(
    teamId: TeamId,
    key: KeyToList,
  ): Promise<{ ids: readonly string[]; source: ListedModel['source'] }> {
    const now = this.now();
    const cached = this.cache.get(key.id);
    if (cached?.ids) {
      if (now - cached.fetchedAt >= this.options.ttlMs && this.mayTry(cached, now)) {
        void this.refresh(teamId, key);
      }
      return { ids: cached.ids, source: 'provider' };
    }
    if (!cached || this.mayTry(cached, now)) await this.refresh(teamId, key);
    const after = this.cache.get(key.id);
    if (after?.ids) return { ids: after.ids, source: 'provider' };
    return { ids: this.ports.prices.catalogModels(key.provider), source: 'catalog' };
  }

  /** One fetch per key at a time. Never rejects: a failure is noted on the entry (and logged). */
  private refresh(teamId: TeamId, key: KeyToList): Promise<void> {
    const running = this.inFlight.get(key.id);
    if (running) return running;
    const startedAt = this.now();
    const done = this.fetch(teamId, key)
      .then(
        (ids) => this.store(key.id, { ids, fetchedAt: startedAt, failedAt: null }),
        (err: unknown) => {
          const failure = classify(err, { signal: this.closing.signal });
          this.ctx.log.warn(
            { provider_key_id: key.id, team_id: teamId, kind: failure.kind, reason: failure.message },
            "could not fetch a provider key's model list",
          );
          const previous = this.cache.get(key.id);
          this.store(key.id, {
            ids: previous?.ids ?? null,
            fetchedAt: previous?.fetchedAt ?? startedAt,
            failedAt: this.now(),
          });
        },
      )
      .finally(() => this.inFlight.delete(key.id));
    this.inFlight.set(key.id, done);
    return done;
  }

  private store(keyId: ProviderKeyId, entry: Cached): void {
    if (this.cache.size >= this.options.maxEntries && !this.cache.has(keyId)) this.cache.clear();
    this.cache.set(keyId, entry);
  }

  private async fetch(teamId: TeamId, key: KeyToList): Promise<string[]> {
    const opened = await this.ports.open(teamId, key.id);
    if (!opened) throw new UpstreamError('unknown', 'the provider key is no longer usable');
    // No content-type: a GET has no body.
    const { 'content-type': _none, ...headers } = headersFor(opened.provider, opened.apiKey, false);
    const ids: string[] = [];
    let after: string | undefined;
    for (let page = 0; page < this.options.maxPages; page++) {
      const url = new URL(modelsEndpointOf(opened.baseUrl));
      // Anthropic pages by id (default 20 a page, at most 1000); OpenAI answers everything at once.
      if (opened.provider === 'anthropic') {
        url.searchParams.set('limit', '1000');
        if (after !== undefined) url.searchParams.set('after_id', after);
      }
      const list = parseModelList(await this.get(url.toString(), headers));
      ids.push(...list.ids);
      if (opened.provider !== 'anthropic' || !list.hasMore || list.lastId === undefined) break;
      after = list.lastId;
    }
    return ids;
  }

  private async get(url: string, headers: Record<string, string>): Promise<string> {
    const res = await this.upstream.call({
      method: 'GET',
      url,
      headers,
      connectTimeoutMs: this.options.connectTimeoutMs,
      timeoutMs: this.options.timeoutMs,
      firstByteTimeoutMs: this.options.timeoutMs,
      signal: this.closing.signal,
    });
    const text = await readBody(res.body, this.options.maxBodyBytes);
    if (res.status !== 200) {
      throw new UpstreamError('http_error', `the provider answered ${res.status}`, res.status);
    }
    return text;
  }
}

/**
 * The ids of a model list in either wire format: OpenAI's
 * `{object: "list", data: [{id, …}]}`, Anthropic's `{data: [{id, …}],
 * has_more, last_id}`. A body of another shape is a failure.
 */
export function parseModelList(text: string): { ids: string[]; hasMore: boolean; lastId?: string } {
  let body: unknown;
  try {
    body = JSON.parse(text);
  } catch {
    throw new UpstreamError('stream_processing_error', 'the model list is not JSON');
  }
  const data = isObject(body) ? body.data : undefined;
  if (!Array.isArray(data))
    throw new UpstreamError('stream_processing_error', 'the model list has no data array');
  const ids: string[] = [];
  for (const item of data) {
    const id = isObject(item) ? item.id : undefined;
    if (typeof id === 'string' && MODEL_ID.test(id)) ids.push(id);
  }
  const b = body as Record<string, unknown>;
  const lastId = typeof b.last_id === 'string' ? b.last_id : undefined;
  return { ids, hasMore: b.has_more === true, ...(lastId !== undefined ? { lastId } : {}) };
}

function compare(a: string, b: string): number {
  return a < b ? -1 : a > b ? 1 : 0;
}
