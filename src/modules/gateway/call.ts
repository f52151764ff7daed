import type { AppError } from '../../core/errors.ts';
import type { AgentId, ProviderKeyId, RunId, StepId } from '../../core/ids.ts';
import type { Span } from '../../core/tracing.ts';
import type { AgentForCall, AttemptRecord, KeyForCall, PolicyForCall, StepOutcome } from './ports.ts';
import { type Provider, providerFormatFor, type WireFormat } from './provider-call.ts';
import { upstreamHttpError } from './provider-errors.ts';
import type { RateLimiter } from './rate-limit.ts';
import type { Reservation } from './reservation.ts';
import { recordCallEnd } from './tracing.ts';
import type { FailureKind } from './upstream.ts';
import { totalTokens, type Usage } from './usage.ts';

export interface ProxyRequest {
  format: WireFormat;
  agentId: AgentId;
  headers: Record<string, string | string[] | undefined>;
  body: Record<string, unknown>;
  /** Aborts when the client goes away. */
  signal: AbortSignal;
  /** Told once the call is admitted, as it goes to a provider (the task runner starts the capsule then). */
  onAdmitted?: () => void;
  /**
   * A call that costs nothing (count_tokens): no money or tokens reserved, a
   * request (without tokens) for the rate limits, no tool rules.
   */
  free?: boolean;
  /**
   * Internal only, set by the task runner and never from an HTTP request (no
   * route copies it from a header or body): the caller is a sub-agent running
   * inside a task of `runOwnerId`, so its call may join that agent's task run
   * (the run named by x-paddock-run-id). Its own policy governs the call; the
   * step records the caller as its agent; the run's budget is the task's.
   */
  delegation?: Delegation;
  /**
   * Internal only, like `delegation`: told the call's usage and cost as its
   * step is settled (every attempt of a failover included), so the task
   * runner can count what a workspace's turn spent without reading the run.
   */
  onSettled?: (spent: { usage: Usage; costMicros: number }) => void;
}

/** A sub-agent's call inside its parent's task run (see ProxyRequest.delegation). */
export interface Delegation {
  /** The agent whose task run the call joins (the task's own agent). */
  runOwnerId: AgentId;
  /** 1 for a sub-agent of the task's agent, 2 for one of that sub-agent's, … */
  depth: number;
}

export type ProxyResult =
  | { kind: 'json'; status: number; headers: Record<string, string>; body: unknown }
  | {
      kind: 'stream';
      headers: Record<string, string>;
      chunks: AsyncGenerator<string, void, undefined>;
      /** What the call cost once its stream ended (its headers went out before it was known); undefined before. */
      costMicros?: () => number | undefined;
    };

/** Everything decided about a call before it goes to a provider. */
export interface Admitted {
  req: ProxyRequest;
  agent: AgentForCall;
  policy: PolicyForCall;
  runId: RunId;
  stepId: StepId;
  model: string;
  routedFrom: string | null;
  stream: boolean;
  inputEstimate: number;
  reservation: Reservation;
  rateKey: string;
  /** Whether the call was counted against rate limits (and its token count needs correcting). */
  rateCounted: boolean;
  logContent: boolean;
  headers: Record<string, string>;
  started: number;
  /** The call's trace span (gateway/tracing.ts), set once admitted. */
  span?: Span;
}

/** The format a provider is spoken to in for this call (admission dropped the attempts it cannot serve). */
export function spokenFormat(a: Admitted, provider: Provider): WireFormat {
  const format = providerFormatFor(provider, a.req.format);
  if (format === null)
    throw new Error(`${provider} cannot serve ${a.req.format}: admission should have dropped it`);
  return format;
}

export const ZERO: Usage = { input: 0, output: 0, cacheRead: 0, cacheCreation: 0 };

export const usd = (micros: number) => (micros / 1_000_000).toFixed(6);

export interface CallEnd {
  status: StepOutcome['status'];
  provider: string | null;
  model: string | null;
  keyId: ProviderKeyId | null;
  usage: Usage;
  costMicros: number;
  type?: StepOutcome['type'];
  errorKind?: FailureKind | null;
  errorMessage?: string | null;
  response?: unknown;
  attempted?: AttemptRecord[];
}

/** Settles the call's reservation with its step, and corrects the rate limit's token count. */
export function settleCall(a: Admitted, limiter: RateLimiter, r: CallEnd): void {
  recordCallEnd(a, r);
  a.req.onSettled?.({ usage: r.usage, costMicros: r.costMicros });
  if (a.rateCounted) limiter.adjustTokens(a.rateKey, totalTokens(r.usage) - a.inputEstimate);
  a.reservation.settle({
    stepId: a.stepId,
    type: r.type ?? 'llm_call',
    status: r.status,
    provider: r.provider,
    model: r.model,
    providerKeyId: r.keyId,
    streaming: a.stream,
    request: a.logContent ? a.req.body : { redacted: true },
    response: r.status === 'success' && !a.logContent ? { redacted: true } : (r.response ?? null),
    usage: r.usage,
    costMicros: r.costMicros,
    latencyMs: Math.round(performance.now() - a.started),
    routedFrom: a.routedFrom,
    failoverAttempts: r.attempted?.length ?? 0,
    errorKind: r.errorKind ?? null,
    errorMessage: r.errorMessage ?? null,
  });
}

/**
 * A provider's refusal of the request itself (a status not retried): the step
 * settles as an error without charge, and the client hears the provider.
 */
export function providerRefusal(
  a: Admitted,
  limiter: RateLimiter,
  key: Pick<KeyForCall, 'id' | 'provider'>,
  model: string,
  status: number,
  text: string,
  end: Partial<CallEnd>,
): AppError {
  settleCall(a, limiter, {
    status: 'error',
    provider: key.provider,
    model,
    keyId: key.id,
    usage: ZERO,
    costMicros: 0,
    errorKind: 'http_error',
    errorMessage: `HTTP ${status}`,
    ...end,
  });
  return upstreamHttpError(
    key.provider,
    status,
    text,
    a.runId,
    resultHeaders(a, key.provider, model, undefined, undefined),
  );
}

/** The x-paddock-* headers of an answer that a provider (or the dry run) produced. */
export function resultHeaders(
  a: Admitted,
  provider: string,
  model: string,
  usage: Usage | undefined,
  costMicros: number | undefined,
): Record<string, string> {
  const h: Record<string, string> = {
    ...a.headers,
    'x-paddock-step-id': a.stepId,
    'x-paddock-provider': provider,
    'x-paddock-model': model,
  };
  if (usage && costMicros !== undefined) {
    h['x-paddock-tokens-used'] = String(totalTokens(usage));
    h['x-paddock-cost-usd'] = usd(costMicros);
    const { remainingMicros, reservedMicros } = a.reservation;
    if (remainingMicros !== null)
      h['x-paddock-budget-remaining-usd'] = usd(Math.max(0, remainingMicros + reservedMicros - costMicros));
  }
  return h;
}
