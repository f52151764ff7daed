import { AppError } from '../../core/errors.ts';
import type { Admissions } from './admission.ts';
import {
  type Admitted,
  type ProxyRequest,
  type ProxyResult,
  providerRefusal,
  resultHeaders,
  settleCall,
  ZERO,
} from './call.ts';
import type { Attempt, KeyForCall } from './ports.ts';
import { countTokensEndpointOf, headersFor } from './provider-call.ts';
import type { RateLimiter } from './rate-limit.ts';
import { readBody, type UpstreamClient } from './upstream.ts';

/** Fields Anthropic's count_tokens takes (it refuses others, such as max_tokens or stream). */
const COUNTED_FIELDS = ['messages', 'system', 'tools', 'tool_choice', 'thinking', 'mcp_servers'] as const;

/**
 * `POST /v1/messages/count_tokens`: the input tokens of a Messages request.
 * Governed as a call that costs nothing — the agent, its policy, the run,
 * the model rules and the request rate limit (no tokens) apply; nothing is
 * reserved — and recorded as a `count_tokens` step without tokens or cost.
 * Where the plan's first key is Anthropic's, Anthropic counts; otherwise (and
 * when Anthropic cannot be reached, or the policy is a dry run) the count is
 * the gateway's own input estimate, the figure its budget reserves for.
 */
export class TokenCounter {
  constructor(
    private readonly admissions: Admissions,
    private readonly limiter: RateLimiter,
    private readonly upstream: UpstreamClient,
  ) {}

  async count(req: ProxyRequest): Promise<ProxyResult> {
    const { call, plan, keys } = await this.admissions.admit({ ...req, free: true });
    try {
      await this.admissions.check(call);
      const at = plan.attempts[0];
      const key = at ? keys.get(at.keyId) : undefined;
      if (at && key?.provider === 'anthropic' && !call.policy.spec.dry_run) {
        const counted = await this.askAnthropic(call, at, key);
        if (counted !== undefined) return this.answer(call, at, key, counted, 'provider');
      }
      return this.answer(call, at, key, call.inputEstimate, 'estimate');
    } finally {
      if (call.reservation.held) await call.reservation.release();
    }
  }

  /** Anthropic's count, undefined when it could not be had (the estimate answers); its refusal is thrown. */
  private async askAnthropic(a: Admitted, at: Attempt, key: KeyForCall): Promise<number | undefined> {
    const body: Record<string, unknown> = { model: at.model };
    for (const f of COUNTED_FIELDS) if (a.req.body[f] !== undefined) body[f] = a.req.body[f];
    let status: number;
    let text: string;
    try {
      const res = await this.upstream.call({
        url: countTokensEndpointOf(key.baseUrl),
        headers: headersFor(key.provider, key.apiKey, false),
        body: JSON.stringify(body),
        connectTimeoutMs: at.connectTimeoutMs,
        timeoutMs: at.timeoutMs,
        firstByteTimeoutMs: at.timeoutMs,
        signal: a.req.signal,
      });
      status = res.status;
      text = await readBody(res.body, 1024 * 1024);
    } catch (err) {
      if (err instanceof AppError) throw err;
      return undefined;
    }
    if (status === 200) {
      return inputTokensOf(text);
    }
    // Overloaded, rate-limited or failing: the estimate answers. A refusal of the request is the client's.
    if (status === 408 || status === 429 || status >= 500) return undefined;
    throw providerRefusal(a, this.limiter, key, at.model, status, text, { type: 'count_tokens' });
  }

  private answer(
    a: Admitted,
    at: Attempt | undefined,
    key: KeyForCall | undefined,
    inputTokens: number,
    source: 'provider' | 'estimate',
  ): ProxyResult {
    const model = at?.model ?? a.model;
    settleCall(a, this.limiter, {
      status: 'success',
      provider: key?.provider ?? null,
      model,
      keyId: key?.id ?? null,
      usage: ZERO,
      costMicros: 0,
      type: 'count_tokens',
      // Kept where the policy logs content, as any answer.
      response: { input_tokens: inputTokens, source },
    });
    return {
      kind: 'json',
      status: 200,
      headers: {
        ...resultHeaders(a, key?.provider ?? 'none', model, ZERO, 0),
        'x-paddock-token-count': source,
      },
      body: { input_tokens: inputTokens },
    };
  }
}

function inputTokensOf(text: string): number | undefined {
  try {
    const n = (JSON.parse(text) as { input_tokens?: unknown }).input_tokens;
    return typeof n === 'number' && Number.isInteger(n) && n >= 0 ? n : undefined;
  } catch {
    return undefined;
  }
}
