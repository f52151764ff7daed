import { type Id, type IdPrefix, isId } from '../../core/ids.ts';
import type { AgentsService } from '../agents/service.ts';
import type { ApprovalsService } from '../approvals/service.ts';
import type { PoliciesService } from '../policies/service.ts';
import type { ProvidersService } from '../providers/service.ts';
import type { RunsService } from '../runs/service.ts';
import type { ProviderHealthRegistry } from './circuit-breaker.ts';
import type { GatewayPorts } from './ports.ts';
import type { PriceTable } from './pricing.ts';
import { Router } from './routing.ts';

/** A stored id as its typed kind; one that is not is corrupt data, not a caller's mistake. */
function storedId<P extends IdPrefix>(prefix: P, value: string): Id<P> {
  if (!isId(value, prefix)) throw new Error(`stored id ${JSON.stringify(value)} is not a ${prefix} id`);
  return value;
}

export interface GatewayModules {
  agents: AgentsService;
  policies: PoliciesService;
  providers: ProvidersService;
  runs: RunsService;
  approvals: ApprovalsService;
  health: ProviderHealthRegistry;
  prices: PriceTable;
}

/**
 * The proxy's view of the other modules: each port calls one service method,
 * so the gateway depends on no module's tables or internals.
 */
export function gatewayPorts(m: GatewayModules, now: () => Date): GatewayPorts {
  const router = new Router({
    health: m.health,
    // routing_preference "cost": the list price of a million tokens in and out.
    priceOf: (provider, model) => {
      const p = m.prices.priceOf(provider, model, null);
      return p.input + p.output;
    },
  });
  return {
    async agent(agentId) {
      const row = await m.agents.getForCall(agentId);
      if (!row) return undefined;
      return {
        id: storedId('agt', row.id),
        teamId: storedId('team', row.teamId),
        name: row.name,
        status: row.status,
        policyId: storedId('pol', row.policyId),
        allowedPolicies: row.allowedPolicies ?? null,
        providerKeys: row.providerKeys,
        routingOverride: row.routingOverride ?? null,
      };
    },
    async policy(teamId, idOrName) {
      const p = await m.policies.findForTeam(teamId, idOrName);
      return p ? { id: storedId('pol', p.id), name: p.name, spec: p.spec } : undefined;
    },
    keys: (teamId, keyIds) => m.providers.keysForCall(teamId, keyIds),
    runs: {
      resolve: async (args) => {
        const run = await m.runs.resolveRun({
          teamId: args.teamId,
          agent: {
            id: args.agent.id,
            name: args.agent.name,
            policyId: args.agent.policyId,
            allowedPolicies: args.agent.allowedPolicies,
          },
          policy: args.policy,
          ...(args.runId !== undefined ? { runId: args.runId } : {}),
          newRun: args.newRun,
          ...(args.runName !== undefined ? { runName: args.runName } : {}),
          ...(args.runMetadata !== undefined ? { runMetadata: args.runMetadata } : {}),
        });
        return { id: storedId('run', run.id), stepCount: run.stepCount };
      },
      reserve: (args) => m.runs.reserve(args),
      release: async (reservationId) => {
        await m.runs.release(reservationId);
      },
      settleLater: (reservationId, outcome) => m.runs.settleLater(reservationId, outcome),
      recordBlocked: (b) => m.runs.recordBlocked(b),
      recordFailover: (f) => m.runs.recordFailoverTransition(f),
    },
    approvals: {
      request: (args) =>
        m.approvals.request({
          teamId: args.teamId,
          runId: args.runId,
          agentId: args.agentId,
          policyId: args.policyId,
          toolNames: args.tools,
          requestHash: args.requestHash,
          requestSnapshot: args.requestSnapshot,
          expiresAt: new Date(now().getTime() + args.expiryMs),
        }),
      consume: (args) => m.approvals.consume(args.teamId, args.approvalId, args.agentId, args.requestHash),
    },
    plan: ({ agent, policy, model, isKeyUsable }) =>
      router.plan({
        routing: policy.spec.routing,
        override: agent.routingOverride,
        bindings: agent.providerKeys,
        model,
        modelMapping: policy.spec.model_mapping,
        agentId: agent.id,
        isKeyUsable,
      }),
    health: {
      success: (keyId, latencyMs) => {
        m.health.recordSuccess(keyId, latencyMs);
        m.providers.markUsed(keyId);
      },
      failure: (keyId, kind) => m.health.recordFailure(keyId, kind),
    },
    price: m.prices,
  };
}
