import { ATTR, type Span, type Tracer } from '../../core/tracing.ts';
import type { Admitted, CallEnd, ProxyRequest } from './call.ts';
import type { Attempt } from './ports.ts';
import type { WireFormat } from './provider-call.ts';
import type { FailureKind } from './upstream.ts';

// A gateway call's span (GenAI semantic conventions): its operation and the
// model asked for when it starts, the provider, the model that answered and
// the provider's token counts when it settles, and each failed attempt of
// the routing plan as an event. Never the messages, the answer or a key.

const OPERATION: Record<WireFormat, string> = {
  openai: 'chat',
  anthropic: 'chat',
  responses: 'chat',
  embeddings: 'embeddings',
  completions: 'text_completion',
};

/** Starts the span of a call to the gateway: `chat gpt-4o-mini`, a child of the caller's current span. */
export function gatewaySpan(tracer: Tracer, req: ProxyRequest): Span {
  const operation = OPERATION[req.format];
  const model = typeof req.body.model === 'string' ? req.body.model.slice(0, 200) : undefined;
  return tracer.start(model ? `${operation} ${model}` : operation, {
    kind: 'client',
    attributes: {
      [ATTR.genAiOperationName]: operation,
      [ATTR.genAiRequestModel]: model,
      [ATTR.genAiRequestStream]: req.body.stream === true,
      'paddock.agent.id': req.agentId,
    },
  });
}

/** What the call came to, on its span; a stream's span ends here (its call settles when the stream ends). */
export function recordCallEnd(a: Admitted, r: CallEnd): void {
  const span = a.span;
  if (!span) return;
  span.set({
    // gen_ai.system is the name before gen_ai.provider.name replaced it: both, for either reader.
    [ATTR.genAiProviderName]: r.provider ?? undefined,
    [ATTR.genAiSystem]: r.provider ?? undefined,
    [ATTR.genAiResponseModel]: r.model ?? undefined,
    [ATTR.genAiUsageInputTokens]: r.usage.input,
    [ATTR.genAiUsageOutputTokens]: r.usage.output,
    'paddock.run.id': a.runId,
    'paddock.step.id': a.stepId,
    'paddock.cost_usd': r.costMicros / 1e6,
    'paddock.gateway.routed_from': a.routedFrom ?? undefined,
    'paddock.gateway.failed_attempts': r.attempted?.length ?? 0,
  });
  if (r.status !== 'success') span.fail(r.errorKind ?? r.status);
  if (a.stream) span.end();
}

/** An attempt of the routing plan that failed (the plan goes on to the next, or retries it). */
export function recordFailedAttempt(
  a: Admitted,
  at: Attempt,
  kind: FailureKind,
  status: number | null,
): void {
  a.span?.event('paddock.gateway.attempt_failed', {
    [ATTR.genAiProviderName]: at.provider,
    [ATTR.genAiRequestModel]: at.model,
    'paddock.provider_key.id': at.keyId,
    [ATTR.httpResponseStatusCode]: status ?? undefined,
    [ATTR.errorType]: kind,
  });
}
