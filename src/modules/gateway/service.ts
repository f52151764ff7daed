import { TextDecoder } from 'node:util';
import { MINUTE_MS } from '../../core/clock.ts';
import { AppError, BadRequestError, UnauthorizedError } from '../../core/errors.ts';
import { newId } from '../../core/ids.ts';
import { ControlError, type RunControls, takeControls } from './controls.ts';
import { GovernanceBlock, ProviderFailure } from './errors.ts';
import { checkModel, checkTools, requestHash, toolNames } from './governance.ts';
import type {
  AgentForCall,
  Attempt,
  AttemptPlan,
  AttemptRecord,
  GatewayPorts,
  KeyForCall,
  PolicyForCall,
  StepOutcome,
} from './ports.ts';
import { endpointOf, formatOf, headersFor, type WireFormat } from './provider-call.ts';
import { upstreamHttpError } from './provider-errors.ts';
import type { RateLimiter } from './rate-limit.ts';
import { formatSse, type SseEvent, SseParser } from './sse.ts';
import { isUsageOnlyChunk, MALFORMED_EVENT_MESSAGE, StreamTracker, streamErrorEvent } from './stream.ts';
import { PromptTokens } from './tokens.ts';
import type { Translator } from './translation.ts';
import { classify, type FailureKind, readBody, type UpstreamClient, UpstreamError } from './upstream.ts';
import { estimateTokens, totalTokens, type Usage, usageFromAnthropic, usageFromOpenAi } from './usage.ts';

export interface ProxyRequest {
  format: WireFormat;
  agentId: string;
  headers: Record<string, string | string[] | undefined>;
  body: Record<string, unknown>;
  /** Aborts when the client goes away. */
  signal: AbortSignal;
}

export type ProxyResult =
  | { kind: 'json'; status: number; headers: Record<string, string>; body: unknown }
  | { kind: 'stream'; headers: Record<string, string>; chunks: AsyncGenerator<string, void, undefined> };

export interface GatewayOptions {
  /** max_tokens assumed for the budget reservation when a request sets none. */
  defaultMaxTokens: number;
  /** Content logging when a policy says "default". */
  logContentByDefault: boolean;
}

/** Everything decided about a call before it goes to a provider. */
interface Admitted {
  req: ProxyRequest;
  agent: AgentForCall;
  policy: PolicyForCall;
  runId: string;
  stepId: string;
  model: string;
  routedFrom: string | null;
  stream: boolean;
  inputEstimate: number;
  reservationId: string;
  reservedMicros: number;
  remainingMicros: number | null;
  rateKey: string;
  /** Whether the call was counted against rate limits (and its token count needs correcting). */
  rateCounted: boolean;
  logContent: boolean;
  headers: Record<string, string>;
  started: number;
}

interface OpenedStream {
  iterator: AsyncIterator<unknown>;
  parser: SseParser;
  decoder: TextDecoder;
  tracker: StreamTracker;
  first: SseEvent[];
  raw: Parameters<typeof readBody>[0];
}

const usd = (micros: number) => (micros / 1_000_000).toFixed(6);

/**
 * The governed proxy. Checks run in the order auth → policy → run state →
 * budget → rate limits → model rules → tool rules/approval → routing; the
 * step and ledger are written after the response (write-behind), and a
 * reservation that is never settled is charged by the runs sweep.
 */
export class GatewayService {
  constructor(
    private readonly ports: GatewayPorts,
    private readonly translator: Translator,
    private readonly limiter: RateLimiter,
    private readonly options: GatewayOptions,
    private readonly upstream: UpstreamClient,
  ) {}

  async handle(req: ProxyRequest): Promise<ProxyResult> {
    const agent = await this.ports.agent(req.agentId);
    if (!agent) throw new UnauthorizedError('invalid_agent_key', 'this agent key is not valid');
    if (agent.status === 'disabled') {
      throw new GovernanceBlock(403, 'agent_disabled', `agent ${agent.name} is disabled`, null);
    }
    let controls: RunControls;
    try {
      controls = takeControls(req.headers, req.body);
    } catch (err) {
      if (err instanceof ControlError) throw new BadRequestError('invalid_run_control', err.message);
      throw err;
    }
    const headers: Record<string, string> = {};
    const policy = await this.choosePolicy(agent, controls, headers);
    const spec = policy.spec;

    const run = await this.ports.runs.resolve({
      teamId: agent.teamId,
      agent,
      policy,
      ...(controls.runId ? { runId: controls.runId } : {}),
      newRun: controls.newRun,
      ...(controls.runName ? { runName: controls.runName } : {}),
      ...(controls.runMetadata ? { runMetadata: controls.runMetadata } : {}),
    });
    headers['x-paddock-run-id'] = run.id;
    const block = (
      status: 402 | 403 | 429,
      code: string,
      message: string,
      model: string | null,
      extra?: Record<string, string>,
      details?: Record<string, unknown>,
    ) => {
      this.ports.runs.recordBlocked({
        teamId: agent.teamId,
        runId: run.id,
        agentId: agent.id,
        status: status === 402 ? 'budget_blocked' : 'policy_blocked',
        code,
        message,
        model,
      });
      return new GovernanceBlock(status, code, message, run.id, details, { ...headers, ...extra });
    };

    const runaway = spec.runaway_prevention;
    if (runaway?.enabled && runaway.max_steps_per_run != null && run.stepCount >= runaway.max_steps_per_run) {
      throw block(
        403,
        'runaway_prevention',
        `the run reached max_steps_per_run (${runaway.max_steps_per_run})`,
        null,
      );
    }

    const requested =
      typeof req.body.model === 'string' && req.body.model !== '' ? req.body.model : spec.default_model;
    if (!requested)
      throw new BadRequestError(
        'model_required',
        'the request names no model and the policy has no default_model',
      );
    const model = spec.model_override ?? requested;
    const routedFrom = spec.model_override && spec.model_override !== requested ? requested : null;
    if (routedFrom) headers['x-paddock-model-override'] = routedFrom;

    const stream = req.body.stream === true;
    const prompt = new PromptTokens(req.body);
    const maxOut =
      firstNumber(req.body.max_tokens, req.body.max_completion_tokens) ?? this.options.defaultMaxTokens;

    // Budget: reserve the most this call can cost, on every attempt the plan may make.
    const keys = await this.ports.keys(agent.teamId, boundKeyIds(agent.providerKeys));
    const plan = this.ports.plan({ agent, policy, model, isKeyUsable: (id) => keys.has(id) });
    const providerOf = (a: Attempt) => keys.get(a.keyId)?.provider ?? a.provider;
    const loading = prompt.load(plan.attempts.map((a) => ({ provider: providerOf(a), model: a.model })));
    if (loading) await loading;
    const maxCost = Math.max(
      0,
      ...plan.attempts.map((a) =>
        this.ports.price.maxCostMicros(
          providerOf(a),
          a.model,
          prompt.for(providerOf(a), a.model),
          maxOut,
          keys.get(a.keyId)?.priceOverrides ?? null,
        ),
      ),
    );
    const inputEstimate = prompt.max();
    const hourCap = spec.budget?.max_cost_per_hour_usd;
    const reservation = await this.ports.runs.reserve({
      teamId: agent.teamId,
      runId: run.id,
      agentId: agent.id,
      policyId: policy.id,
      amountMicros: maxCost,
      tokens: inputEstimate + maxOut,
      model,
      maxCostPerHourMicros: hourCap != null ? Math.round(hourCap * 1_000_000) : null,
    });
    if (!reservation.ok) {
      if (reservation.reason === 'run_not_running') {
        throw new GovernanceBlock(403, 'run_not_running', reservation.message, run.id, undefined, headers);
      }
      throw block(402, reservation.reason, reservation.message, model);
    }

    const admitted: Admitted = {
      req,
      agent,
      policy,
      runId: run.id,
      stepId: newId('stp'),
      model,
      routedFrom,
      stream,
      inputEstimate,
      reservationId: reservation.reservationId,
      reservedMicros: maxCost,
      remainingMicros: reservation.remainingMicros,
      rateKey: `${agent.id}:${policy.id}`,
      rateCounted: false,
      logContent:
        spec.content_logging === 'enabled' ||
        (spec.content_logging !== 'disabled' && this.options.logContentByDefault),
      headers,
      started: performance.now(),
    };
    try {
      const limits = {
        maxRequestsPerMinute: spec.rate_limits?.max_requests_per_minute ?? null,
        maxTokensPerMinute: spec.rate_limits?.max_tokens_per_minute ?? null,
      };
      const pending = this.limiter.admit(admitted.rateKey, limits, inputEstimate);
      // The memory store answers synchronously: awaiting only a promise keeps the hot path free of a microtask.
      const rl = pending instanceof Promise ? await pending : pending;
      if (!rl.ok) {
        throw block(
          429,
          'rate_limited',
          `the policy allows no more ${rl.limit} this minute; retry in ${rl.retryAfterSec} s`,
          model,
          {
            'retry-after': String(rl.retryAfterSec),
          },
          { limit: rl.limit, retry_after_sec: rl.retryAfterSec },
        );
      }
      admitted.rateCounted = limits.maxRequestsPerMinute !== null || limits.maxTokensPerMinute !== null;
      if (!spec.model_override) {
        const ruling = checkModel(spec, model);
        if (!ruling.ok) throw block(403, 'model_not_allowed', ruling.message, model, undefined, { model });
      }
      const tools = checkTools(spec, toolNames(req.format, req.body));
      if (tools.blocked.length > 0) {
        const names = tools.blocked.map((b) => b.tool).join(', ');
        throw block(403, 'tool_blocked', `the policy does not allow the tool(s) ${names}`, model, undefined, {
          tools: tools.blocked,
        });
      }
      if (tools.needApproval.length > 0) {
        const awaiting = await this.approve(admitted, tools.needApproval);
        if (awaiting) {
          await this.ports.runs.release(admitted.reservationId);
          return awaiting;
        }
      }
      if (spec.dry_run) return this.dryRun(admitted);
      // Returned, not awaited, so the catch below never sees execute's errors: from here the
      // reservation is execute's to settle, and a release here would beat its queued settlement.
      return this.execute(admitted, plan, keys);
    } catch (err) {
      // Nothing reached a provider on these paths: free the money now.
      if (!(err instanceof ProviderFailure)) await this.ports.runs.release(admitted.reservationId);
      throw err;
    }
  }

  private async choosePolicy(
    agent: AgentForCall,
    controls: RunControls,
    headers: Record<string, string>,
  ): Promise<PolicyForCall> {
    const fallback = await this.ports.policy(agent.teamId, agent.policyId);
    if (!fallback)
      throw new GovernanceBlock(403, 'policy_missing', `agent ${agent.name} has no usable policy`, null);
    if (!controls.runPolicy) return fallback;
    const chosen = await this.ports.policy(agent.teamId, controls.runPolicy);
    let reason: string | undefined;
    if (!chosen) reason = 'not_found';
    else if (
      chosen.id !== agent.policyId &&
      agent.allowedPolicies !== null &&
      !agent.allowedPolicies.includes(chosen.id)
    ) {
      reason = 'not_allowed';
    }
    if (reason === undefined && chosen) return chosen;
    headers['x-paddock-policy-fallback'] = fallback.name;
    headers['x-paddock-policy-fallback-reason'] = reason ?? 'not_found';
    return fallback;
  }

  /** Returns the 202 awaiting-approval answer, or undefined when a valid approval lets the call through. */
  private async approve(a: Admitted, tools: string[]): Promise<ProxyResult | undefined> {
    const hash = requestHash(a.req.body);
    const approvalId = a.req.headers['x-paddock-approval-id'];
    const given = typeof approvalId === 'string' ? approvalId : undefined;
    if (given) {
      const consumed = await this.ports.approvals.consume({
        teamId: a.agent.teamId,
        approvalId: given,
        agentId: a.agent.id,
        requestHash: hash,
      });
      if (consumed.ok) return undefined;
      throw new GovernanceBlock(
        403,
        'approval_invalid',
        consumed.message,
        a.runId,
        { approval_id: given },
        a.headers,
      );
    }
    const requests = await this.ports.approvals.request({
      teamId: a.agent.teamId,
      runId: a.runId,
      agentId: a.agent.id,
      policyId: a.policy.id,
      tools,
      requestHash: hash,
      requestSnapshot: a.logContent ? a.req.body : { redacted: true },
      expiryMs: a.policy.spec.approval_expiry_ms ?? 8 * 60 * MINUTE_MS,
    });
    return {
      kind: 'json',
      status: 202,
      headers: a.headers,
      body: {
        status: 'awaiting_approval',
        approval_requests: requests,
        run_id: a.runId,
        message: `the tool(s) ${tools.join(', ')} need approval; approve, then resend this request with x-paddock-approval-id`,
      },
    };
  }

  private dryRun(a: Admitted): ProxyResult {
    const text = '[dry run] governance checks passed; the request was not forwarded';
    this.settle(a, {
      status: 'success',
      provider: null,
      model: a.model,
      keyId: null,
      usage: ZERO,
      costMicros: 0,
      response: { dry_run: true },
      type: 'dry_run',
    });
    const headers = {
      ...a.headers,
      'x-paddock-step-id': a.stepId,
      'x-paddock-model': a.model,
      'x-paddock-cost-usd': usd(0),
    };
    if (!a.stream)
      return { kind: 'json', status: 200, headers, body: syntheticResponse(a.req.format, a.model, text) };
    const events = syntheticStream(a.req.format, a.model, text);
    return {
      kind: 'stream',
      headers,
      chunks: (async function* () {
        for (const e of events) yield formatSse(e);
      })(),
    };
  }

  /**
   * Tries the plan in order. Every path out of here settles the reservation
   * (written behind) or releases it; the caller must not release it again.
   */
  private async execute(a: Admitted, plan: AttemptPlan, keys: Map<string, KeyForCall>): Promise<ProxyResult> {
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
      const providerFormat = formatOf(key.provider);
      let body: Record<string, unknown>;
      try {
        body = this.upstreamBody(a, providerFormat, at.model);
      } catch (err) {
        // Nothing was settled and nothing reached a provider: free the money.
        await this.ports.runs.release(a.reservationId);
        throw err;
      }
      const callStarted = performance.now();
      try {
        const res = await this.upstream.call({
          url: endpointOf(key.provider, key.baseUrl),
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
              res.status === 429 && plan.onRateLimit === 'backoff_first' ? backoffMs(res.headers) : 0;
            if (waitMs > 0 && i + 1 < attempts.length && (await sleepUnlessAborted(waitMs, a.req.signal))) {
              attempts.splice(i + 1, 0, at);
              attempts.pop();
            }
            continue;
          }
          // Not retryable (the request itself is wrong): the client hears the provider.
          this.ports.health.success(at.keyId, performance.now() - callStarted);
          this.noteFailover(a, attempted, key.provider, at.model);
          this.settle(a, {
            status: 'error',
            provider: key.provider,
            model: at.model,
            keyId: key.id,
            usage: ZERO,
            costMicros: 0,
            errorKind: 'http_error',
            errorMessage: message,
            attempted,
          });
          throw upstreamHttpError(
            key.provider,
            res.status,
            text,
            a.runId,
            this.resultHeaders(a, key.provider, at.model, undefined, undefined),
          );
        }
        if (!a.stream) return await this.finishJson(a, at, key, res.body, attempted, callStarted);
        const opened = await this.openStream(a, key, res.body);
        if ('failure' in opened) {
          if (opened.failure.kind === 'client_disconnect') this.clientLeft(a, at, key, attempted);
          fail(at, opened.failure.kind, res.status, opened.failure.message);
          continue;
        }
        this.noteFailover(a, attempted, key.provider, at.model);
        return this.relay(a, at, key, opened, attempted, performance.now() - callStarted);
      } catch (err) {
        if (err instanceof AppError) throw err;
        const e = classify(err, { signal: a.req.signal });
        if (e.kind === 'client_disconnect') this.clientLeft(a, at, key, attempted);
        fail(at, e.kind, e.status ?? null, e.message);
      }
    }
    // Every attempt failed: nothing was produced, so nothing is charged.
    this.noteFailover(a, attempted, null, null);
    this.settle(a, {
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
    this.noteFailover(a, attempted, key.provider, at.model);
    const usage: Usage = { ...ZERO, input: a.inputEstimate };
    const message = 'the client went away before the provider answered';
    this.settle(a, {
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
    const body =
      providerFormat === a.req.format
        ? { ...a.req.body }
        : this.translator.request(a.req.format, providerFormat, a.req.body);
    body.model = model;
    if (providerFormat === 'anthropic' && body.max_tokens === undefined)
      body.max_tokens = this.options.defaultMaxTokens;
    if (a.stream) {
      body.stream = true;
      // Ask for the usage event even when the client did not: budgets settle from it.
      if (providerFormat === 'openai')
        body.stream_options = { ...(body.stream_options as object | undefined), include_usage: true };
    }
    return body;
  }

  private async finishJson(
    a: Admitted,
    at: Attempt,
    key: KeyForCall,
    raw: Parameters<typeof readBody>[0],
    attempted: AttemptRecord[],
    callStarted: number,
  ): Promise<ProxyResult> {
    const text = await readBody(raw);
    let json: Record<string, unknown>;
    try {
      json = JSON.parse(text) as Record<string, unknown>;
    } catch {
      throw new UpstreamError('stream_processing_error', 'the provider answered with invalid JSON');
    }
    this.ports.health.success(at.keyId, performance.now() - callStarted);
    const providerFormat = formatOf(key.provider);
    const usage = (providerFormat === 'anthropic'
      ? usageFromAnthropic(json.usage)
      : usageFromOpenAi(json.usage)) ?? {
      input: a.inputEstimate,
      output: estimateTokens(JSON.stringify(json)),
      cacheRead: 0,
      cacheCreation: 0,
    };
    const costMicros = this.ports.price.costMicros(key.provider, at.model, usage, key.priceOverrides);
    const body =
      providerFormat === a.req.format ? json : this.translator.response(providerFormat, a.req.format, json);
    this.noteFailover(a, attempted, key.provider, at.model);
    this.settle(a, {
      status: 'success',
      provider: key.provider,
      model: at.model,
      keyId: key.id,
      usage,
      costMicros,
      response: body,
      attempted,
    });
    return {
      kind: 'json',
      status: 200,
      headers: this.resultHeaders(a, key.provider, at.model, usage, costMicros),
      body,
    };
  }

  /** Waits for the first events: failover is still possible until one reaches the client. */
  private async openStream(
    a: Admitted,
    key: KeyForCall,
    raw: Parameters<typeof readBody>[0],
  ): Promise<OpenedStream | { failure: UpstreamError }> {
    const iterator = raw[Symbol.asyncIterator]();
    const parser = new SseParser();
    const decoder = new TextDecoder();
    const tracker = new StreamTracker(formatOf(key.provider), a.logContent);
    const first: SseEvent[] = [];
    try {
      while (first.length === 0) {
        const next = await iterator.next();
        if (next.done) {
          first.push(...parser.end());
          break;
        }
        first.push(...parser.push(decoder.decode(next.value as Buffer, { stream: true })));
      }
    } catch (err) {
      raw.destroy();
      return { failure: classify(err, { signal: a.req.signal, stream: true }) };
    }
    if (first.length === 0) {
      raw.destroy();
      return { failure: new UpstreamError('empty_stream', 'the provider ended the stream without an event') };
    }
    // Only the very first event decides: the events after it may or may not have come in the
    // same read, and whether a call fails over must not depend on how its bytes were split.
    tracker.observe(first[0]!);
    if (tracker.malformed) {
      raw.destroy();
      return { failure: new UpstreamError('stream_processing_error', MALFORMED_EVENT_MESSAGE) };
    }
    if (tracker.errorMessage !== undefined) {
      raw.destroy();
      return { failure: new UpstreamError('first_events_error', tracker.errorMessage) };
    }
    first.length = 1 + tracker.observeAll(first.slice(1)).length;
    return { iterator, parser, decoder, tracker, first, raw };
  }

  private relay(
    a: Admitted,
    at: Attempt,
    key: KeyForCall,
    s: OpenedStream,
    attempted: AttemptRecord[],
    firstEventMs: number,
  ): ProxyResult {
    const providerFormat = formatOf(key.provider);
    const translate =
      providerFormat === a.req.format
        ? undefined
        : this.translator.stream(providerFormat, a.req.format, at.model);
    const clientWantsUsage =
      a.req.format === 'anthropic' ||
      (a.req.body.stream_options as { include_usage?: unknown } | undefined)?.include_usage === true;
    const self = this;
    // The usage chunk was asked for on the client's behalf (budgets settle from it): pass it on only if wanted.
    const send = (out: SseEvent) => (clientWantsUsage || !isUsageOnlyChunk(out) ? formatSse(out) : '');
    function* emit(events: SseEvent[]): Generator<string> {
      for (const e of events) {
        for (const out of translate ? translate.push(e) : [e]) {
          const text = send(out);
          if (text !== '') yield text;
        }
      }
    }
    async function* chunks(): AsyncGenerator<string, void, undefined> {
      let errorKind: FailureKind | null = null;
      let errorMessage: string | null = null;
      try {
        yield* emit(s.first);
        // A malformed event ends the stream: what came before it goes on, then an error event.
        while (!s.tracker.malformed) {
          const next = await s.iterator.next();
          if (next.done) break;
          yield* emit(
            s.tracker.observeAll(s.parser.push(s.decoder.decode(next.value as Buffer, { stream: true }))),
          );
        }
        if (!s.tracker.malformed) yield* emit(s.tracker.observeAll(s.parser.end()));
        if (translate && !s.tracker.malformed)
          for (const out of translate.end()) {
            const text = send(out);
            if (text !== '') yield text;
          }
        if (s.tracker.malformed || s.tracker.errorMessage !== undefined || !s.tracker.completed) {
          errorKind = s.tracker.malformed ? 'stream_processing_error' : 'mid_stream_error';
          errorMessage = s.tracker.malformed
            ? MALFORMED_EVENT_MESSAGE
            : (s.tracker.errorMessage ?? 'the provider ended the stream before it finished');
          yield formatSse(streamErrorEvent(a.req.format, errorKind, errorMessage, a.runId));
        }
      } catch (err) {
        const e = classify(err, { signal: a.req.signal });
        errorKind = e.kind === 'client_disconnect' ? 'client_disconnect' : 'mid_stream_error';
        errorMessage = errorKind === 'client_disconnect' ? e.message : `the stream broke off: ${e.message}`;
        if (errorKind !== 'client_disconnect')
          yield formatSse(streamErrorEvent(a.req.format, errorKind, errorMessage, a.runId));
      } finally {
        // Runs on completion, on error, and when the client disconnects (return()).
        s.raw.destroy();
        if (errorKind === null && a.req.signal.aborted) errorKind = 'client_disconnect';
        // Judged when the stream ends, not at its first event: a key that keeps breaking its
        // streams midway must open its circuit, which a success per first event would prevent.
        if (errorKind === 'mid_stream_error' || errorKind === 'stream_processing_error')
          self.ports.health.failure(key.id, errorKind);
        else self.ports.health.success(key.id, firstEventMs);
        const usage = s.tracker.usage(a.inputEstimate);
        const costMicros = self.ports.price.costMicros(key.provider, at.model, usage, key.priceOverrides);
        self.settle(a, {
          status: errorKind === null ? 'success' : 'error',
          provider: key.provider,
          model: at.model,
          keyId: key.id,
          usage,
          costMicros,
          errorKind,
          errorMessage,
          response: { streamed: true, ...(a.logContent ? { text: s.tracker.producedText() } : {}) },
          attempted,
        });
      }
    }
    return {
      kind: 'stream',
      headers: this.resultHeaders(a, key.provider, at.model, undefined, undefined),
      chunks: chunks(),
    };
  }

  private noteFailover(
    a: Admitted,
    attempted: AttemptRecord[],
    provider: string | null,
    model: string | null,
  ): void {
    if (attempted.length === 0) return;
    this.ports.runs.recordFailover({
      teamId: a.agent.teamId,
      runId: a.runId,
      agentId: a.agent.id,
      attempted,
      resolvedProvider: provider,
      resolvedModel: model,
      originalModel: a.routedFrom ?? a.model,
    });
  }

  private resultHeaders(
    a: Admitted,
    provider: string,
    model: string,
    usage: Usage | undefined,
    costMicros: number | undefined,
  ) {
    const h: Record<string, string> = {
      ...a.headers,
      'x-paddock-step-id': a.stepId,
      'x-paddock-provider': provider,
      'x-paddock-model': model,
    };
    if (usage && costMicros !== undefined) {
      h['x-paddock-tokens-used'] = String(totalTokens(usage));
      h['x-paddock-cost-usd'] = usd(costMicros);
      if (a.remainingMicros !== null)
        h['x-paddock-budget-remaining-usd'] = usd(
          Math.max(0, a.remainingMicros + a.reservedMicros - costMicros),
        );
    }
    return h;
  }

  private settle(
    a: Admitted,
    r: {
      status: StepOutcome['status'];
      provider: string | null;
      model: string | null;
      keyId: string | null;
      usage: Usage;
      costMicros: number;
      type?: StepOutcome['type'];
      errorKind?: FailureKind | null;
      errorMessage?: string | null;
      response?: unknown;
      attempted?: AttemptRecord[];
    },
  ): void {
    if (a.rateCounted) this.limiter.adjustTokens(a.rateKey, totalTokens(r.usage) - a.inputEstimate);
    this.ports.runs.settleLater(a.reservationId, a.runId, {
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
}

const ZERO: Usage = { input: 0, output: 0, cacheRead: 0, cacheCreation: 0 };

/** The longest a rate-limited attempt waits before its retry (a longer Retry-After fails over instead). */
const MAX_BACKOFF_MS = 10_000;

/** Retry-After (seconds or an HTTP date) in ms; 1 s when absent; 0 when longer than MAX_BACKOFF_MS. */
function backoffMs(headers: Record<string, string>): number {
  const raw = headers['retry-after'];
  let ms = 1000;
  if (raw !== undefined) {
    const seconds = Number(raw);
    ms = Number.isFinite(seconds) ? seconds * 1000 : Date.parse(raw) - Date.now();
    if (!Number.isFinite(ms)) ms = 1000;
  }
  return ms > MAX_BACKOFF_MS ? 0 : Math.max(0, ms);
}

/** True after `ms`; false at once if the client went away meanwhile. */
function sleepUnlessAborted(ms: number, signal: AbortSignal): Promise<boolean> {
  if (signal.aborted) return Promise.resolve(false);
  return new Promise((resolve) => {
    const timer = setTimeout(() => {
      signal.removeEventListener('abort', onAbort);
      resolve(true);
    }, ms);
    const onAbort = () => {
      clearTimeout(timer);
      resolve(false);
    };
    signal.addEventListener('abort', onAbort, { once: true });
  });
}

function boundKeyIds(bindings: AgentForCall['providerKeys']): string[] {
  const ids: string[] = [];
  for (const b of Object.values(bindings)) {
    if (typeof b === 'string') ids.push(b);
    else for (const k of b) ids.push(k.key_id);
  }
  return ids;
}

function firstNumber(...values: unknown[]): number | undefined {
  for (const v of values) if (typeof v === 'number' && Number.isFinite(v) && v > 0) return Math.floor(v);
  return undefined;
}

function providerMessage(text: string): string | undefined {
  try {
    const body = JSON.parse(text) as { error?: { message?: unknown } | string; message?: unknown };
    if (typeof body.error === 'string') return body.error;
    if (typeof body.error?.message === 'string') return body.error.message;
    if (typeof body.message === 'string') return body.message;
  } catch {
    // not JSON
  }
  return text ? text.slice(0, 300) : undefined;
}

export function syntheticResponse(format: WireFormat, model: string, text: string): unknown {
  if (format === 'anthropic') {
    return {
      id: `msg_${newId('stp').slice(4)}`,
      type: 'message',
      role: 'assistant',
      model,
      content: [{ type: 'text', text }],
      stop_reason: 'end_turn',
      stop_sequence: null,
      usage: { input_tokens: 0, output_tokens: 0 },
    };
  }
  return {
    id: `chatcmpl-${newId('stp').slice(4)}`,
    object: 'chat.completion',
    created: Math.floor(Date.now() / 1000),
    model,
    choices: [
      {
        index: 0,
        message: { role: 'assistant', content: text, refusal: null },
        finish_reason: 'stop',
        logprobs: null,
      },
    ],
    usage: { prompt_tokens: 0, completion_tokens: 0, total_tokens: 0 },
  };
}

export function syntheticStream(format: WireFormat, model: string, text: string): SseEvent[] {
  if (format === 'anthropic') {
    const message = {
      id: `msg_${newId('stp').slice(4)}`,
      type: 'message',
      role: 'assistant',
      model,
      content: [],
      stop_reason: null,
      stop_sequence: null,
      usage: { input_tokens: 0, output_tokens: 0 },
    };
    const ev = (event: string, data: unknown): SseEvent => ({
      event,
      data: JSON.stringify({ type: event, ...(data as object) }),
    });
    return [
      ev('message_start', { message }),
      ev('content_block_start', { index: 0, content_block: { type: 'text', text: '' } }),
      ev('content_block_delta', { index: 0, delta: { type: 'text_delta', text } }),
      ev('content_block_stop', { index: 0 }),
      ev('message_delta', {
        delta: { stop_reason: 'end_turn', stop_sequence: null },
        usage: { output_tokens: 0 },
      }),
      ev('message_stop', {}),
    ];
  }
  const id = `chatcmpl-${newId('stp').slice(4)}`;
  const created = Math.floor(Date.now() / 1000);
  const chunk = (delta: unknown, finish: string | null) => ({
    event: undefined,
    data: JSON.stringify({
      id,
      object: 'chat.completion.chunk',
      created,
      model,
      choices: [{ index: 0, delta, finish_reason: finish, logprobs: null }],
    }),
  });
  return [
    chunk({ role: 'assistant', content: text }, null),
    chunk({}, 'stop'),
    { event: undefined, data: '[DONE]' },
  ];
}
