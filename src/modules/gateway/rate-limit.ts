/**
 * Requests and tokens per minute, counted per agent per policy (Rungate) over
 * a sliding 60-second window of one-second buckets. In-process: with several
 * API servers each enforces the limit on the traffic it sees (docs/gateway.md).
 */
const WINDOW_SEC = 60;

interface Window {
  /** Per second slot: the second it holds, requests and tokens. */
  seconds: Float64Array;
  requests: Float64Array;
  tokens: Float64Array;
}

export interface RateLimits {
  maxRequestsPerMinute: number | null;
  maxTokensPerMinute: number | null;
}

export type RateDecision = { ok: true } | { ok: false; limit: 'requests' | 'tokens'; retryAfterSec: number };

export class RateLimiter {
  private readonly windows = new Map<string, Window>();

  constructor(private readonly nowMs: () => number) {}

  private window(key: string): Window {
    let w = this.windows.get(key);
    if (!w) {
      w = {
        seconds: new Float64Array(WINDOW_SEC).fill(-1),
        requests: new Float64Array(WINDOW_SEC),
        tokens: new Float64Array(WINDOW_SEC),
      };
      this.windows.set(key, w);
    }
    return w;
  }

  /** Admits one request of `tokens` estimated tokens, or says how long to wait. */
  admit(key: string, limits: RateLimits, tokens: number): RateDecision {
    if (limits.maxRequestsPerMinute === null && limits.maxTokensPerMinute === null) return { ok: true };
    const now = Math.floor(this.nowMs() / 1000);
    const w = this.window(key);
    let requests = 0;
    let used = 0;
    for (let i = 0; i < WINDOW_SEC; i++) {
      if (w.seconds[i]! > now - WINDOW_SEC) {
        requests += w.requests[i]!;
        used += w.tokens[i]!;
      }
    }
    if (limits.maxRequestsPerMinute !== null && requests + 1 > limits.maxRequestsPerMinute) {
      return {
        ok: false,
        limit: 'requests',
        retryAfterSec: this.retryAfter(w, now, 'requests', requests + 1 - limits.maxRequestsPerMinute),
      };
    }
    if (limits.maxTokensPerMinute !== null && used + tokens > limits.maxTokensPerMinute && used > 0) {
      return {
        ok: false,
        limit: 'tokens',
        retryAfterSec: this.retryAfter(w, now, 'tokens', used + tokens - limits.maxTokensPerMinute),
      };
    }
    this.add(w, now, 1, tokens);
    return { ok: true };
  }

  /** Corrects the token count once the real usage is known. */
  adjustTokens(key: string, deltaTokens: number): void {
    const w = this.windows.get(key);
    if (!w || deltaTokens === 0) return;
    this.add(w, Math.floor(this.nowMs() / 1000), 0, deltaTokens);
  }

  private add(w: Window, now: number, requests: number, tokens: number): void {
    const slot = now % WINDOW_SEC;
    if (w.seconds[slot] !== now) {
      w.seconds[slot] = now;
      w.requests[slot] = 0;
      w.tokens[slot] = 0;
    }
    w.requests[slot]! += requests;
    w.tokens[slot] = Math.max(0, w.tokens[slot]! + tokens);
  }

  /** Seconds until enough of the oldest buckets leave the window to free `excess`. */
  private retryAfter(w: Window, now: number, what: 'requests' | 'tokens', excess: number): number {
    const live: Array<[number, number]> = [];
    for (let i = 0; i < WINDOW_SEC; i++) {
      if (w.seconds[i]! > now - WINDOW_SEC)
        live.push([w.seconds[i]!, what === 'requests' ? w.requests[i]! : w.tokens[i]!]);
    }
    live.sort((a, b) => a[0] - b[0]);
    let freed = 0;
    for (const [second, amount] of live) {
      freed += amount;
      if (freed >= excess) return Math.max(1, second + WINDOW_SEC - now);
    }
    return WINDOW_SEC;
  }
}
