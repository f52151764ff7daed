import { BadRequestError, ConflictError, NotFoundError, RateLimitedError } from '../../core/errors.ts';
import { type RateLimitStore, slidingWindow } from '../../core/rate-limit.ts';
import type { PlaybookRuns } from './runs.ts';
import { HOOK_BODY_MAX_BYTES } from './schemas.ts';
import type { PlaybooksService } from './service.ts';

export interface HookLimits {
  /** Requests per token in `windowSec`, counted whether or not the token is known. */
  perToken: number;
  windowSec: number;
}

export const HOOK_LIMITS: HookLimits = { perToken: 30, windowSec: 60 };

/** Counts one token lookup by a client address (429 past its limit); `refund` when the token was known. */
export type HookAddressThrottle = (ipAddress: string | null) => Promise<{ refund(): Promise<void> }>;

/**
 * The public webhook trigger: POST /v1/hooks/playbooks/{token}. The token is
 * the credential; the throttle counts by the token's keyed hash before the
 * lookup, so guessing tokens is as slow as using one, and failed lookups
 * count per client address, so guessing many tokens is slow too.
 */
export class PlaybookHooks {
  private readonly window;

  constructor(
    private readonly playbooks: PlaybooksService,
    private readonly runs: PlaybookRuns,
    private readonly store: RateLimitStore,
    private readonly fromAddress: HookAddressThrottle,
    private readonly limits: HookLimits = HOOK_LIMITS,
  ) {
    this.window = slidingWindow(limits.windowSec);
  }

  async fire(token: string, body: unknown, ipAddress: string | null) {
    // Failed lookups per client address: random tokens each cost a hash, a lookup and a throttle row.
    const attempt = await this.fromAddress(ipAddress);
    const decision = await this.store.hit(
      `playbook_hook:${this.playbooks.tokenKey(token)}`,
      this.window,
      { maxHits: this.limits.perToken, maxUnits: null },
      0,
    );
    if (!decision.ok)
      throw new RateLimitedError(
        `too many requests for this webhook; retry in ${decision.retryAfterSec} s`,
        decision.retryAfterSec,
        { limit: 'playbook_webhook' },
      );
    const pb = await this.playbooks.byToken(token).catch(async (err: unknown) => {
      // A known token of a paused team is no failed lookup.
      if (err instanceof ConflictError) await attempt.refund();
      throw err;
    });
    await attempt.refund();
    const given = body === undefined || body === null ? undefined : body;
    if (given !== undefined && Buffer.byteLength(JSON.stringify(given)) > HOOK_BODY_MAX_BYTES)
      throw new BadRequestError(
        'body_too_large',
        `a webhook body is at most ${HOOK_BODY_MAX_BYTES} bytes of JSON`,
      );
    const context = given === undefined ? undefined : JSON.stringify(given, null, 2);
    const run = await this.runs.fire(pb, {
      firedBy: 'webhook',
      actor: { actorKind: 'system', actorId: 'playbook_webhook' },
      ...(context !== undefined ? { context } : {}),
    });
    // Deleted (or turned away from webhook) at the same moment: as an unknown token.
    if (!run) throw new NotFoundError('webhook');
    this.playbooks.startSoon(run, pb);
    return run;
  }
}
