import type { Context } from '../../core/context.ts';
import type { GatewayMetrics } from '../../core/gateway-metrics.ts';
import type { AgentId } from '../../core/ids.ts';
import { errorType, type Span } from '../../core/tracing.ts';
import { type AdmissionOptions, Admissions } from './admission.ts';
import { type ModelLister, type UsableModel, usableModels } from './agent-models.ts';
import { Attempts } from './attempts.ts';
import type { ProxyRequest, ProxyResult } from './call.ts';
import { TokenCounter } from './count-tokens.ts';
import type { GatewayPorts } from './ports.ts';
import type { RateLimiter } from './rate-limit.ts';
import { Relay } from './relay.ts';
import { dryRunAnswer } from './synthetic.ts';
import { TokenBacklog } from './tokens.ts';
import { gatewaySpan } from './tracing.ts';
import type { Translator } from './translation.ts';
import type { UpstreamClient } from './upstream.ts';

export type { ProxyRequest, ProxyResult } from './call.ts';
export type GatewayOptions = AdmissionOptions;

/**
 * The governed proxy: admission (auth, rules, the budget reservation), then
 * the attempts of the routing plan, then the relay of the answer. The step and
 * ledger are written after the response (write-behind), and a reservation that
 * is never settled is charged by the runs sweep.
 */
export class GatewayService {
  private readonly admissions: Admissions;
  private readonly attempts: Attempts;
  private readonly counter: TokenCounter;

  constructor(
    private readonly ctx: Context,
    private readonly ports: GatewayPorts,
    translator: Translator,
    private readonly limiter: RateLimiter,
    options: GatewayOptions,
    upstream: UpstreamClient,
  ) {
    ports = metered(ports, ctx.metrics?.gateway);
    this.admissions = new Admissions(ports, limiter, options, new TokenBacklog(ctx.timers));
    const relay = new Relay(ports, translator, limiter);
    this.attempts = new Attempts(ctx, ports, translator, limiter, upstream, relay, options.defaultMaxTokens);
    this.counter = new TokenCounter(this.admissions, limiter, upstream);
  }

  /** POST /v1/messages/count_tokens (see TokenCounter). */
  countTokens(req: ProxyRequest): Promise<ProxyResult> {
    return this.counter.count(req);
  }

  /** GET /v1/models for an agent key: what it may call (see usableModels). */
  models(agentId: AgentId, lister: ModelLister): Promise<UsableModel[]> {
    return usableModels(this.ports, lister, agentId);
  }

  handle(req: ProxyRequest): Promise<ProxyResult> {
    // Tracing off: straight to the call, without the span's frame (the proxy's hot path).
    return this.ctx.tracer.enabled ? this.traced(req) : this.governed(req);
  }

  /**
   * The call in its span: settleCall writes what the call came to on it, and
   * ends it when a stream settles after this returns; every other way out ends it here.
   */
  private async traced(req: ProxyRequest): Promise<ProxyResult> {
    const span = gatewaySpan(this.ctx.tracer, req);
    let streaming = false;
    try {
      const result = await this.governed(req, span);
      streaming = result.kind === 'stream';
      return result;
    } catch (err) {
      span.fail(errorType(err));
      throw err;
    } finally {
      if (!streaming) span.end();
    }
  }

  private async governed(req: ProxyRequest, span?: Span): Promise<ProxyResult> {
    const arrived = performance.now();
    const { call, plan, keys } = await this.admissions.admit(req);
    if (span) call.span = span;
    try {
      const early = await this.admissions.check(call);
      if (early) return early;
      if (call.policy.spec.dry_run) return dryRunAnswer(call, this.limiter, this.ctx.clock.now());
      req.onAdmitted?.();
      this.ctx.metrics?.gateway.overhead(performance.now() - arrived);
      return await this.attempts.execute(call, plan, keys);
    } finally {
      // The one place the money goes back: a path that settled the call, or handed it to a
      // stream that settles when it ends, leaves nothing to release; every other path (a
      // refusal after the reservation, an approval to wait for, an error before any provider
      // saw the request, a bug) releases it here.
      if (call.reservation.held) await call.reservation.release();
    }
  }
}

/**
 * The runs port, with every call's end counted on the way: each call the
 * gateway answers after admission settles or is recorded blocked through it,
 * and a failover is recorded there once per call.
 */
function metered(ports: GatewayPorts, metrics: GatewayMetrics | undefined): GatewayPorts {
  if (!metrics) return ports;
  const runs = ports.runs;
  return {
    ...ports,
    runs: {
      ...runs,
      settleLater: (reservationId, outcome) => {
        metrics.call(outcome);
        runs.settleLater(reservationId, outcome);
      },
      recordBlocked: (b) => {
        metrics.blocked(b.model, b.status);
        runs.recordBlocked(b);
      },
      recordFailover: (f) => {
        metrics.failover(f.attempted, f.resolvedProvider);
        runs.recordFailover(f);
      },
    },
  };
}
