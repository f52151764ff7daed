/**
 * A read-through cache for lookups the proxy makes on every call (the agent
 * behind a key, the agent, its policy, its provider keys). An entry is
 * trusted for `ttlMs` from the moment its load started. In the last
 * `refreshAheadMs` of that time a read still answers from the entry and
 * reloads it in the background, so steady traffic never waits on the
 * database — and nothing older than `ttlMs` is ever served, as without the
 * refresh. Reads that miss the same key at once share one load. `clear()`
 * (a change made on this server) drops everything at once, and a load that
 * was running meanwhile neither refills the cache nor answers later reads.
 */
export interface ReadThroughOptions {
  ttlMs: number;
  refreshAheadMs: number;
  /** Past this many entries the cache starts over (a bound, not an LRU: the working set is small). */
  max: number;
  now?: () => number;
}

interface Entry<V> {
  value: V;
  loadedAt: number;
}

export class ReadThroughCache<V> {
  private readonly entries = new Map<string, Entry<V>>();
  private readonly loading = new Map<string, Promise<V>>();
  private generation = 0;
  private readonly now: () => number;

  constructor(private readonly options: ReadThroughOptions) {
    this.now = options.now ?? Date.now;
  }

  get size(): number {
    return this.entries.size;
  }

  /** The cached value for `key`, or what `load` gives (which is then cached; a rejection is not). */
  get(key: string, load: () => Promise<V>): Promise<V> {
    const hit = this.entries.get(key);
    if (hit) {
      const age = this.now() - hit.loadedAt;
      if (age < this.options.ttlMs - this.options.refreshAheadMs) return Promise.resolve(hit.value);
      if (age < this.options.ttlMs) {
        // A failed refresh leaves the entry to expire; the read after that waits and sees the error.
        this.load(key, load).catch(() => undefined);
        return Promise.resolve(hit.value);
      }
    }
    return this.load(key, load);
  }

  clear(): void {
    this.generation++;
    this.entries.clear();
    this.loading.clear();
  }

  private load(key: string, load: () => Promise<V>): Promise<V> {
    const running = this.loading.get(key);
    if (running) return running;
    const generation = this.generation;
    const startedAt = this.now();
    const promise = load().then(
      (value) => {
        if (generation === this.generation) {
          if (this.entries.size >= this.options.max && !this.entries.has(key)) this.entries.clear();
          this.entries.set(key, { value, loadedAt: startedAt });
        }
        this.settled(key, promise);
        return value;
      },
      (err: unknown) => {
        this.settled(key, promise);
        throw err;
      },
    );
    this.loading.set(key, promise);
    return promise;
  }

  private settled(key: string, promise: Promise<V>): void {
    if (this.loading.get(key) === promise) this.loading.delete(key);
  }
}
