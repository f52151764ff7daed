import type { AgentId, PolicyId, ProviderKeyId, RunId, StepId, TeamId } from '../../core/ids.ts';
import type { PolicySpec } from '../policies/spec.ts';
import type { KeyForCall } from '../providers/service.ts';
import type { ReserveResult } from '../runs/service.ts';
import type { Provider } from './provider-call.ts';
import type { Attempt as RoutingAttempt, RoutingOverride, AttemptPlan as RoutingPlan } from './routing.ts';
import type { FailureKind } from './upstream.ts';
import type { Usage } from './usage.ts';

// What the proxy needs from the other modules. app.ts adapts each module's
// service to these, so the gateway depends on no other module's internals.

export interface AgentForCall {
  id: AgentId;
  teamId: TeamId;
  name: string;
  status: 'active' | 'disabled';
  policyId: PolicyId;
  allowedPolicies: string[] | null;
  providerKeys: Record<string, ProviderKeyId | Array<{ key_id: ProviderKeyId; weight: number }>>;
  routingOverride: RoutingOverride | null;
}

export interface PolicyForCall {
  id: PolicyId;
  name: string;
  /** The complete document, defaults applied (modules/policies owns its schema). */
  spec: PolicySpec;
}

/** A provider key opened for one call (modules/providers declares it; it holds the plaintext secret). */
export type { KeyForCall } from '../providers/service.ts';

export interface RunForCall {
  id: RunId;
  stepCount: number;
  /** The run's own agent and policy: another agent's when a sub-agent's call joined its task run. */
  agentId: AgentId;
  policyId: PolicyId;
}

export interface StepOutcome {
  stepId: StepId;
  type: 'llm_call' | 'dry_run' | 'count_tokens';
  status: 'success' | 'error' | 'timeout';
  provider: string | null;
  model: string | null;
  providerKeyId: ProviderKeyId | null;
  streaming: boolean;
  request: unknown;
  response: unknown;
  usage: Usage;
  costMicros: number;
  latencyMs: number;
  routedFrom: string | null;
  failoverAttempts: number;
  errorKind: FailureKind | null;
  errorMessage: string | null;
}

export interface AttemptRecord {
  provider: string;
  provider_key_id: ProviderKeyId;
  status: number | null;
  error: string;
  kind: FailureKind;
}

/** One attempt of routing's plan, as the proxy carries it out. */
export type Attempt = Omit<RoutingAttempt, 'repeat'>;

export interface AttemptPlan extends Pick<RoutingPlan, 'retryOn' | 'onRateLimit'> {
  attempts: Attempt[];
}

export interface GatewayPorts {
  agent(agentId: AgentId): Promise<AgentForCall | undefined>;
  policy(teamId: TeamId, idOrName: string): Promise<PolicyForCall | undefined>;
  /** The team's usable keys among `keyIds` (enabled, secret opened); one lookup per call. */
  keys(teamId: TeamId, keyIds: readonly ProviderKeyId[]): Promise<Map<string, KeyForCall>>;
  runs: {
    resolve(args: {
      teamId: TeamId;
      agent: AgentForCall;
      policy: PolicyForCall;
      runId?: string;
      newRun: boolean;
      runName?: string;
      runMetadata?: Record<string, unknown>;
      /** A sub-agent's call: the agent whose task run it may join (see ProxyRequest.delegation). */
      delegateOf?: AgentId;
    }): Promise<RunForCall>;
    reserve(args: {
      teamId: TeamId;
      runId: RunId;
      /** The calling agent and its policy (the step's, the hour's cap). */
      agentId: AgentId;
      policyId: PolicyId;
      /** The run's own agent and policy when they are not the caller's (a sub-agent's call). */
      runOwner?: { agentId: AgentId; policyId: PolicyId };
      amountMicros: number;
      tokens: number;
      model: string;
      maxCostPerHourMicros: number | null;
    }): Promise<ReserveResult>;
    release(reservationId: string): Promise<void>;
    /** Settles after the response went out: never loses the step (write-behind). The reservation knows its run. */
    settleLater(reservationId: string, outcome: StepOutcome): void;
    recordBlocked(args: {
      teamId: TeamId;
      runId: RunId;
      agentId: AgentId;
      status: 'budget_blocked' | 'policy_blocked';
      code: string;
      message: string;
      model: string | null;
    }): void;
    recordFailover(args: {
      teamId: TeamId;
      runId: RunId;
      agentId: AgentId;
      attempted: AttemptRecord[];
      resolvedProvider: string | null;
      resolvedModel: string | null;
      originalModel: string;
    }): void;
  };
  approvals: {
    request(args: {
      teamId: TeamId;
      runId: RunId;
      agentId: AgentId;
      policyId: PolicyId;
      tools: string[];
      requestHash: string;
      requestSnapshot: unknown;
      expiryMs: number;
    }): Promise<Array<{ id: string; tool: string }>>;
    consume(args: {
      teamId: TeamId;
      approvalId: string;
      agentId: AgentId;
      requestHash: string;
    }): Promise<{ ok: true } | { ok: false; message: string }>;
  };
  plan(args: {
    agent: AgentForCall;
    policy: PolicyForCall;
    model: string;
    isKeyUsable: (keyId: ProviderKeyId) => boolean;
  }): AttemptPlan;
  health: {
    success(keyId: ProviderKeyId, latencyMs: number): void;
    failure(keyId: ProviderKeyId, kind: FailureKind): void;
  };
  price: {
    /** The most a call can cost: estimated input plus max_tokens of output, in micro-USD. */
    maxCostMicros(
      provider: Provider,
      model: string,
      inputTokens: number,
      maxOutputTokens: number,
      overrides: KeyForCall['priceOverrides'],
    ): number;
    costMicros(
      provider: Provider,
      model: string,
      usage: Usage,
      overrides: KeyForCall['priceOverrides'],
    ): number;
  };
}
