import { BadRequestError, UnauthorizedError } from '../../core/errors.ts';
import { newId, type ProviderKeyId } from '../../core/ids.ts';
import type { Admitted, ProxyRequest, ProxyResult } from './call.ts';
import { ControlError, type RunControls, takeControls } from './controls.ts';
import { outputAllowance } from './endpoints.ts';
import { GovernanceBlock } from './errors.ts';
import { checkModel, checkTools, requestHash, toolNames } from './governance.ts';
import type { AgentForCall, Attempt, AttemptPlan, GatewayPorts, KeyForCall, PolicyForCall } from './ports.ts';
import { type Provider, providerFormatFor, type WireFormat } from './provider-call.ts';
import type { RateLimiter } from './rate-limit.ts';
import { Reservation } from './reservation.ts';
import { hostedToolTypes } from './responses-passthrough.ts';
import { PromptTokens, type TokenBacklog } from './tokens.ts';

export interface AdmissionOptions {
  /** max_tokens assumed for the budget reservation when a request sets none. */
  defaultMaxTokens: number;
  /** Content logging when a policy says "default". */
  logContentByDefault: boolean;
}

/** An admitted call, its routing plan and the keys the plan may use. */
export interface Admission {
  call: Admitted;
  plan: AttemptPlan;
  keys: Map<string, KeyForCall>;
}

/**
 * Who may call and what the call may cost, in the order auth → policy → run
 * state → budget → rate limits → model rules → tool rules/approval. `admit`
 * ends with the budget reserved; `check` runs the rules after it, and its
 * caller holds the reservation (and releases it) whatever `check` throws.
 */
export class Admissions {
  constructor(
    private readonly ports: Omit<GatewayPorts, 'health'>,
    private readonly limiter: RateLimiter,
    private readonly options: AdmissionOptions,
    private readonly backlog: TokenBacklog,
  ) {}

  /** Auth, policy, run state and the budget reservation; throws the block when refused. */
  async admit(req: ProxyRequest): Promise<Admission> {
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

    // Unset controls go as undefined (no spreads on the hot path); the resolver reads them so.
    const run = await this.ports.runs.resolve({
      teamId: agent.teamId,
      agent,
      policy,
      runId: controls.runId || undefined,
      newRun: controls.newRun,
      runName: controls.runName || undefined,
      runMetadata: controls.runMetadata || undefined,
      delegateOf: req.delegation?.runOwnerId,
    });
    headers['x-paddock-run-id'] = run.id;

    const runaway = spec.runaway_prevention;
    if (runaway?.enabled && runaway.max_steps_per_run != null && run.stepCount >= runaway.max_steps_per_run) {
      throw this.block(
        { agent, runId: run.id, headers },
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

    const prompt = new PromptTokens(req.body, this.backlog);
    const maxOut = req.free ? 0 : outputAllowance(req.format, req.body, this.options.defaultMaxTokens);

    // Budget: reserve the most this call can cost, on every attempt the plan may make.
    const keys = await this.ports.keys(agent.teamId, boundKeyIds(agent.providerKeys));
    const providerOf = (a: Attempt) => keys.get(a.keyId)?.provider ?? a.provider;
    const plan = servable(
      this.ports.plan({ agent, policy, model, isKeyUsable: (id) => keys.has(id) }),
      req.format,
      providerOf,
      req.format === 'responses' ? hostedToolTypes(req.body) : [],
    );
    const loading = prompt.load(plan.attempts.map((a) => ({ provider: providerOf(a), model: a.model })));
    if (loading) await loading;
    const costs = plan.attempts.map((a) =>
      this.ports.price.maxCostMicros(
        providerOf(a),
        a.model,
        prompt.for(providerOf(a), a.model),
        maxOut,
        keys.get(a.keyId)?.priceOverrides ?? null,
      ),
    );
    // A free call (count_tokens) reserves nothing, but still needs a reservation to write its step.
    const maxCost = req.free ? 0 : Math.max(0, ...costs);
    const inputEstimate = prompt.max();
    const hourCap = spec.budget?.max_cost_per_hour_usd;
    const reserved = await this.ports.runs.reserve({
      teamId: agent.teamId,
      runId: run.id,
      agentId: agent.id,
      policyId: policy.id,
      runOwner: run.agentId === agent.id ? undefined : { agentId: run.agentId, policyId: run.policyId },
      amountMicros: maxCost,
      tokens: req.free ? 0 : inputEstimate + maxOut,
      model,
      maxCostPerHourMicros: hourCap != null ? Math.round(hourCap * 1_000_000) : null,
    });
    if (!reserved.ok) {
      if (reserved.reason === 'run_not_running') {
        throw new GovernanceBlock(403, 'run_not_running', reserved.message, run.id, undefined, headers);
      }
      throw this.block({ agent, runId: run.id, headers }, 402, reserved.reason, reserved.message, model);
    }

    const call: Admitted = {
      req,
      agent,
      policy,
      runId: run.id,
      stepId: newId('stp'),
      model,
      routedFrom,
      stream: req.body.stream === true,
      inputEstimate,
      reservation: new Reservation(
        this.ports.runs,
        reserved.reservationId,
        maxCost,
        reserved.remainingMicros,
      ),
      rateKey: `${agent.id}:${policy.id}`,
      rateCounted: false,
      logContent:
        spec.content_logging === 'enabled' ||
        (spec.content_logging !== 'disabled' && this.options.logContentByDefault),
      headers,
      started: performance.now(),
    };
    return { call, plan, keys };
  }

  /**
   * Rate limits, model rules and tool rules on an admitted call. Throws the
   * block, returns the 202 awaiting-approval answer, or undefined to go on.
   */
  async check(a: Admitted): Promise<ProxyResult | undefined> {
    const spec = a.policy.spec;
    const limits = {
      maxRequestsPerMinute: spec.rate_limits?.max_requests_per_minute ?? null,
      maxTokensPerMinute: spec.rate_limits?.max_tokens_per_minute ?? null,
    };
    // A free call counts as a request, with no tokens.
    const pending = this.limiter.admit(a.rateKey, limits, a.req.free ? 0 : a.inputEstimate);
    // The memory store answers synchronously: awaiting only a promise keeps the hot path free of a microtask.
    const rl = pending instanceof Promise ? await pending : pending;
    if (!rl.ok) {
      throw this.block(
        a,
        429,
        'rate_limited',
        `the policy allows no more ${rl.limit} this minute; retry in ${rl.retryAfterSec} s`,
        a.model,
        { 'retry-after': String(rl.retryAfterSec) },
        { limit: rl.limit, retry_after_sec: rl.retryAfterSec },
      );
    }
    a.rateCounted =
      !a.req.free && (limits.maxRequestsPerMinute !== null || limits.maxTokensPerMinute !== null);
    if (!spec.model_override) {
      const ruling = checkModel(spec, a.model);
      if (!ruling.ok)
        throw this.block(a, 403, 'model_not_allowed', ruling.message, a.model, undefined, { model: a.model });
    }
    // Counting tokens runs no tool: tool rules and approvals are for the call itself.
    if (a.req.free) return undefined;
    const tools = checkTools(spec, toolNames(a.req.format, a.req.body));
    if (tools.blocked.length > 0) {
      const names = tools.blocked.map((b) => b.tool).join(', ');
      throw this.block(
        a,
        403,
        'tool_blocked',
        `the policy does not allow the tool(s) ${names}`,
        a.model,
        undefined,
        {
          tools: tools.blocked,
        },
      );
    }
    if (tools.needApproval.length > 0) return this.approve(a, tools.needApproval);
    return undefined;
  }

  /** Records the refusal on the run and returns the error to throw. */
  private block(
    a: Pick<Admitted, 'agent' | 'runId' | 'headers'>,
    status: 402 | 403 | 429,
    code: string,
    message: string,
    model: string | null,
    extra?: Record<string, string>,
    details?: Record<string, unknown>,
  ): GovernanceBlock {
    this.ports.runs.recordBlocked({
      teamId: a.agent.teamId,
      runId: a.runId,
      agentId: a.agent.id,
      status: status === 402 ? 'budget_blocked' : 'policy_blocked',
      code,
      message,
      model,
    });
    return new GovernanceBlock(status, code, message, a.runId, details, { ...a.headers, ...extra });
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
      expiryMs: a.policy.spec.approval_expiry_ms,
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
}

/**
 * The plan without the attempts whose provider cannot serve this endpoint
 * (embeddings on an Anthropic key) or the request's hosted tools (only
 * OpenAI runs web_search and the like); a plan left with none of its attempts
 * is the caller's mistake, not a provider failure: 400 naming the endpoint or
 * the tools.
 */
export function servable(
  plan: AttemptPlan,
  format: WireFormat,
  providerOf: (a: Attempt) => Provider,
  hostedTools: readonly string[] = [],
): AttemptPlan {
  const attempts = plan.attempts.filter(
    (a) =>
      providerFormatFor(providerOf(a), format) !== null &&
      (hostedTools.length === 0 || providerOf(a) === 'openai'),
  );
  if (attempts.length === plan.attempts.length) return plan;
  const providers = [...new Set(plan.attempts.map(providerOf))];
  // Only a Responses request names hosted tools, and every provider serves those otherwise.
  if (attempts.length === 0 && hostedTools.length > 0)
    throw new BadRequestError(
      'hosted_tool_not_supported',
      `only OpenAI runs the tool type(s) ${hostedTools.join(', ')}; the providers this agent may use for this model (${providers.join(', ')}) cannot`,
      { tool_types: hostedTools, providers },
    );
  if (attempts.length === 0)
    throw new BadRequestError(
      'endpoint_not_supported',
      `no provider this agent may use serves this endpoint (${providers.join(', ')} cannot)`,
    );
  return { ...plan, attempts };
}

/** The provider keys an agent's bindings name, in their order. */
export function boundKeyIds(bindings: AgentForCall['providerKeys']): ProviderKeyId[] {
  const ids: ProviderKeyId[] = [];
  for (const b of Object.values(bindings)) {
    if (typeof b === 'string') ids.push(b);
    else for (const k of b) ids.push(k.key_id);
  }
  return ids;
}
