import type { Context } from '../../core/context.ts';
import { AppError } from '../../core/errors.ts';
import { type Admitted, type ProxyResult, providerRefusal, settleCall, spokenFormat, ZERO } from './call.ts';
import { COMPLETIONS_DEFAULT_MAX_TOKENS } from './endpoints.ts';
import { ProviderFailure } from './errors.ts';
import type { Attempt, AttemptPlan, AttemptRecord, GatewayPorts, KeyForCall } from './ports.ts';
import { endpointOf, headersFor, type WireFormat } from './provider-call.ts';
import type { RateLimiter } from './rate-limit.ts';
import type { Relay } from './relay.ts';
import { responsesUpstreamBody } from './responses-passthrough.ts';
import { recordFailedAttempt } from './tracing.ts';
import type { Translator } from './translation.ts';
import { classify, type FailureKind, readBody, type UpstreamClient } from './upstream.ts';
import type { Usage } from './usage.ts';

/** The longest a rate-limited attempt waits before its retry (a longer Retry-After fails over instead). */
const MAX_BACKOFF_MS = 10_000;

/**
 * The routing plan carried out: each attempt in order, retries and backoff on
 * the statuses the plan names, failover to the next key, until one answer
 * reaches the relay. Every way out settles the reservation, except an error
 * before any provider saw the request, which GatewayService releases.
 */
export class Attempts {
  constructor(
    private readonly ctx: Context,
    private readonly ports: Pick<GatewayPorts, 'health' | 'price'>,
    private readonly translator: Translator,
    private readonly limiter: RateLimiter,
    private readonly upstream: UpstreamClient,
    private readonly relay: Relay,
    private readonly defaultMaxTokens: number,
  ) {}

  async execute(a: Admitted, plan: AttemptPlan, keys: Map<string, KeyForCall>): Promise<ProxyResult> {
    const attempts = [...plan.attempts];
    const retryOn = plan.retryOn;
    const attempted: AttemptRecord[] = [];
    // Keys whose base_url the outbound guard refused: a configuration problem, so never tried
    // again in this call (other keys of the plan still are).
    const refusedKeys = new Set<string>();
    const fail = (at: Attempt, kind: FailureKind, status: number | null, message: string) => {
      attempted.push({
        provider: at.provider,
        provider_key_id: at.keyId,
        status,
        error: message.slice(0, 1000),
        kind,
      });
      if (kind === 'address_refused') refusedKeys.add(at.keyId);
      this.ports.health.failure(at.keyId, kind);
      recordFailedAttempt(a, at, kind, status);
    };
    for (let i = 0; i < attempts.length; i++) {
      const at = attempts[i]!;
      if (a.req.signal.aborted) break;
      if (refusedKeys.has(at.keyId)) continue;
      const key = keys.get(at.keyId);
      if (!key) {
        fail(at, 'unknown', null, 'the provider key is disabled or gone');
        continue;
      }
      // Throws before anything reached a provider: the caller releases the reservation.
      const format = spokenFormat(a, key.provider);
      const body = this.upstreamBody(a, format, at.model);
      const callStarted = performance.now();
      try {
        const res = await this.upstream.call({
          url: endpointOf(key.baseUrl, format),
          headers: headersFor(key.provider, key.apiKey, a.stream),
          body: JSON.stringify(body),
          connectTimeoutMs: at.connectTimeoutMs,
          timeoutMs: at.timeoutMs,
          firstByteTimeoutMs: at.timeoutMs,
          signal: a.req.signal,
          stream: a.stream,
        });
        if (res.status >= 400) {
          const text = await readBody(res.body, 1024 * 1024).catch(() => '');
          const message = providerMessage(text) ?? `HTTP ${res.status}`;
          if (retryOn.includes(res.status)) {
            fail(at, 'http_error', res.status, message);
            // backoff_first: a rate-limited key is waited for (Retry-After, bounded) and tried
            // again before the plan moves on; the retry takes the place of the plan's last attempt.
            const waitMs =
              res.status === 429 && plan.onRateLimit === 'backoff_first' ? this.backoffMs(res.headers) : 0;
            if (
              waitMs > 0 &&
              i + 1 < attempts.length &&
              (await this.sleepUnlessAborted(waitMs, a.req.signal))
            ) {
              attempts.splice(i + 1, 0, at);
              attempts.pop();
            }
            continue;
          }
          // Not retryable (the request itself is wrong): the client hears the provider.
          this.ports.health.success(at.keyId, performance.now() - callStarted);
          this.relay.noteFailover(a, attempted, key.provider, at.model);
          throw providerRefusal(a, this.limiter, key, at.model, res.status, text, {
            errorMessage: message,
            attempted,
          });
        }
        if (!a.stream) return await this.relay.json(a, at, key, res.body, attempted, callStarted);
        const opened = await this.relay.openStream(a, key, res.body);
        if ('failure' in opened) {
          if (opened.failure.kind === 'client_disconnect') this.clientLeft(a, at, key, attempted);
          fail(at, opened.failure.kind, res.status, opened.failure.message);
          continue;
        }
        this.relay.noteFailover(a, attempted, key.provider, at.model);
        return this.relay.stream(a, at, key, opened, attempted, performance.now() - callStarted);
      } catch (err) {
        if (err instanceof AppError) throw err;
        const e = classify(err, { signal: a.req.signal });
        if (e.kind === 'client_disconnect') this.clientLeft(a, at, key, attempted);
        fail(at, e.kind, e.status ?? null, e.message);
      }
    }
    // Every attempt failed: nothing was produced, so nothing is charged.
    this.relay.noteFailover(a, attempted, null, null);
    settleCall(a, this.limiter, {
      status: 'error',
      provider: null,
      model: a.model,
      keyId: null,
      usage: ZERO,
      costMicros: 0,
      errorKind: attempted.at(-1)?.kind ?? 'unknown',
      errorMessage: 'every provider failed',
      attempted,
    });
    throw new ProviderFailure(
      attempted.length === 0
        ? 'no provider is available for this model'
        : attempted.every((t) => t.kind === 'address_refused')
          ? "the routing chain's provider keys point at addresses Paddock does not connect to (see details.attempts)"
          : 'every provider in the routing chain failed',
      a.runId,
      attempted.map((t) => ({ provider: t.provider, status: t.status, message: `${t.kind}: ${t.error}` })),
      { ...a.headers, 'x-paddock-step-id': a.stepId },
    );
  }

  /**
   * The client went away while an attempt was out. That is no failure of the
   * provider's (no failover row, no exhaustion), but the provider had the
   * prompt: its input is charged, as for any disconnect (never zero).
   */
  private clientLeft(a: Admitted, at: Attempt, key: KeyForCall, attempted: AttemptRecord[]): never {
    this.relay.noteFailover(a, attempted, key.provider, at.model);
    const usage: Usage = { ...ZERO, input: a.inputEstimate };
    const message = 'the client went away before the provider answered';
    settleCall(a, this.limiter, {
      status: 'error',
      provider: key.provider,
      model: at.model,
      keyId: key.id,
      usage,
      costMicros: this.ports.price.costMicros(key.provider, at.model, usage, key.priceOverrides),
      errorKind: 'client_disconnect',
      errorMessage: message,
      attempted,
    });
    // Nobody reads this answer; 499 is the usual "client closed the request".
    throw new AppError(499, 'client_disconnect', message, { run_id: a.runId });
  }

  private upstreamBody(a: Admitted, providerFormat: WireFormat, model: string): Record<string, unknown> {
    // Only a Responses client is spoken to OpenAI in the Responses API: a passthrough.
    // A Responses call that sets no limit is sent the one its reservation assumed, as Anthropic
    // calls are: reasoning models could otherwise produce more than the budget held for them.
    if (providerFormat === 'responses') {
      const body = responsesUpstreamBody(a.req.body, model, a.stream);
      body.max_output_tokens ??= this.defaultMaxTokens;
      return body;
    }
    const body =
      providerFormat === a.req.format
        ? { ...a.req.body }
        : this.translator.request(a.req.format, providerFormat, a.req.body);
    body.model = model;
    if (providerFormat === 'anthropic' && body.max_tokens === undefined)
      body.max_tokens = this.defaultMaxTokens;
    if (a.req.format === 'responses' && providerFormat === 'openai' && body.max_completion_tokens == null)
      body.max_completion_tokens = this.defaultMaxTokens;
    // OpenAI's default, said outright: a self-hosted server's own default could pass the reservation.
    if (providerFormat === 'completions' && body.max_tokens == null)
      body.max_tokens = COMPLETIONS_DEFAULT_MAX_TOKENS;
    if (a.stream) {
      body.stream = true;
      // Ask for the usage event even when the client did not: budgets settle from it.
      if (providerFormat === 'openai' || providerFormat === 'completions')
        body.stream_options = { ...(body.stream_options as object | undefined), include_usage: true };
    }
    return body;
  }

  /** Retry-After (seconds or an HTTP date) in ms; 1 s when absent; 0 when longer than MAX_BACKOFF_MS. */
  private backoffMs(headers: Record<string, string>): number {
    const raw = headers['retry-after'];
    let ms = 1000;
    if (raw !== undefined) {
      const seconds = Number(raw);
      ms = Number.isFinite(seconds) ? seconds * 1000 : Date.parse(raw) - this.ctx.clock.now().getTime();
      if (!Number.isFinite(ms)) ms = 1000;
    }
    return ms > MAX_BACKOFF_MS ? 0 : Math.max(0, ms);
  }

  /** True after `ms`; false at once if the client went away meanwhile. */
  private sleepUnlessAborted(ms: number, signal: AbortSignal): Promise<boolean> {
    return this.ctx.timers.sleep(ms, signal).then(
      () => true,
      () => false,
    );
  }
}

function providerMessage(text: string): string | undefined {
  try {
    const body = JSON.parse(text) as { error?: { message?: unknown } | string; message?: unknown };
    if (typeof body.error === 'string') return body.error;
    if (typeof body.error?.message === 'string') return body.error.message;
    if (typeof body.message === 'string') return body.message;
  } catch {
    // not JSON: the text itself is the message
  }
  return text ? text.slice(0, 300) : undefined;
}
