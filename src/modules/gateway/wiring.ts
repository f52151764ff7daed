import { type Id, type IdPrefix, isId } from '../../core/ids.ts';
import type { AgentsService } from '../agents/service.ts';
import type { ApprovalsService } from '../approvals/service.ts';
import type { PoliciesService } from '../policies/service.ts';
import type { ProvidersService } from '../providers/service.ts';
import type { RunsService } from '../runs/service.ts';
import type { ProviderHealthRegistry } from './circuit-breaker.ts';
import type { AgentForCall, GatewayPorts, PolicyForCall } from './ports.ts';
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
  // The services' caches hand out the same row object until they reload it, so each row's view
  // for the proxy is made (and its ids checked) once per load, not on every call.
  const agentViews = new WeakMap<object, AgentForCall>();
  const policyViews = new WeakMap<object, PolicyForCall>();
  return {
    async agent(agentId) {
      const row = await m.agents.getForCall(agentId);
      if (!row) return undefined;
      let view = agentViews.get(row);
      if (!view) {
        view = {
          id: storedId('agt', row.id),
          teamId: storedId('team', row.teamId),
          name: row.name,
          status: row.status,
          policyId: storedId('pol', row.policyId),
          allowedPolicies: row.allowedPolicies ?? null,
          providerKeys: row.providerKeys,
          routingOverride: row.routingOverride ?? null,
        };
        agentViews.set(row, view);
      }
      return view;
    },
    async policy(teamId, idOrName) {
      const p = await m.policies.findForTeam(teamId, idOrName);
      if (!p) return undefined;
      let view = policyViews.get(p);
      if (!view) {
        view = { id: storedId('pol', p.id), name: p.name, spec: p.spec };
        policyViews.set(p, view);
      }
      return view;
    },
    keys: (teamId, keyIds) => m.providers.keysForCall(teamId, keyIds),
    runs: {
      resolve: async (args) => {
        // The proxy's arguments are the resolver's (an unset option is undefined, as the resolver reads it).
        const run = await m.runs.resolveRun(args);
        return {
          id: storedId('run', run.id),
          stepCount: run.stepCount,
          agentId: storedId('agt', run.agentId),
          policyId: storedId('pol', run.policyId),
        };
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
