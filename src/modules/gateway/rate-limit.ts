import type { Log } from '../../core/context.ts';
import {
  type HitDecision,
  type MaybePromise,
  type RateLimitStore,
  type RateWindow,
  slidingWindow,
} from '../../core/rate-limit.ts';

/**
 * Requests and tokens per minute, counted per agent per policy (Rungate) over
 * a sliding 60-second window of one-second buckets, in the configured store
 * (PADDOCK_GATEWAY_RATE_LIMIT_STORE): this process's memory — synchronous, so
 * an admitted call takes no extra microtask — or the database shared by every
 * server (docs/gateway.md).
 */
const WINDOW: RateWindow = slidingWindow(60);

export interface RateLimits {
  maxRequestsPerMinute: number | null;
  maxTokensPerMinute: number | null;
}

export type RateDecision = { ok: true } | { ok: false; limit: 'requests' | 'tokens'; retryAfterSec: number };

const OK: RateDecision = Object.freeze({ ok: true });

function inGatewayTerms(decision: HitDecision): RateDecision {
  if (decision.ok) return OK;
  return {
    ok: false,
    limit: decision.limit === 'hits' ? 'requests' : 'tokens',
    retryAfterSec: decision.retryAfterSec,
  };
}

export class RateLimiter {
  constructor(
    private readonly store: RateLimitStore,
    private readonly log: Log,
  ) {}

  /** Admits one request of `tokens` estimated tokens, or says how long to wait. */
  admit(key: string, limits: RateLimits, tokens: number): MaybePromise<RateDecision> {
    if (limits.maxRequestsPerMinute === null && limits.maxTokensPerMinute === null) return OK;
    const decision = this.store.hit(
      `gateway:${key}`,
      WINDOW,
      { maxHits: limits.maxRequestsPerMinute, maxUnits: limits.maxTokensPerMinute },
      tokens,
    );
    return decision instanceof Promise ? decision.then(inGatewayTerms) : inGatewayTerms(decision);
  }

  /**
   * Corrects the token count once the real usage is known. Never fails (the
   * gateway does not wait for it): a lost correction leaves the window
   * counting the estimate, no reason to fail a call already answered.
   */
  adjustTokens(key: string, deltaTokens: number): MaybePromise<void> {
    const adjusted = this.store.adjust(`gateway:${key}`, WINDOW, 0, deltaTokens);
    if (!(adjusted instanceof Promise)) return;
    return adjusted.catch((err: unknown) =>
      this.log.warn({ err, key }, 'could not correct a rate-limit token count'),
    );
  }
}
