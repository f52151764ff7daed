import { afterAll, beforeAll, beforeEach, describe, expect, it } from 'vitest';
import { silentLog, systemContext } from '../../src/core/context.ts';
import { AllowList, OutboundGuard } from '../../src/core/outbound-guard.ts';
import { MemoryRateLimitStore } from '../../src/core/rate-limit.ts';
import { ProviderFailure } from '../../src/modules/gateway/errors.ts';
import type {
  GatewayPorts,
  KeyForCall,
  PolicyForCall,
  StepOutcome,
} from '../../src/modules/gateway/ports.ts';
import type { Provider } from '../../src/modules/gateway/provider-call.ts';
import { RateLimiter } from '../../src/modules/gateway/rate-limit.ts';
import { GatewayService, type ProxyRequest, type ProxyResult } from '../../src/modules/gateway/service.ts';
import { type Translator, WireTranslator } from '../../src/modules/gateway/translation.ts';
import { UpstreamClient } from '../../src/modules/gateway/upstream.ts';
import { POLICY_DEFAULTS } from '../../src/modules/policies/spec.ts';
import { type MockLlm, startMockLlm, unusedPortUrl } from '../support/mock-llm.ts';

// The money path: every reservation the gateway takes ends exactly once —
// settled with its step, or released when no provider saw the request —
// whatever the provider or the relay does. The ports keep a ledger of
// reservations; a test fails if one is left held or ended twice.

interface Ledger {
  held: Set<string>;
  settled: Map<string, StepOutcome>;
  released: Set<string>;
  /** Settlements or releases of a reservation that had already ended (the first one holds). */
  twice: string[];
}

let mock: MockLlm;
let ledger: Ledger;
let deadUrl: string;
let seq = 0;
beforeAll(async () => {
  mock = await startMockLlm();
  deadUrl = await unusedPortUrl();
});
afterAll(() => mock.close());
beforeEach(() => {
  mock.reset();
  ledger = { held: new Set(), settled: new Map(), released: new Set(), twice: [] };
});

function ports(policy: Partial<PolicyForCall['spec']>, keys: KeyForCall[]): GatewayPorts {
  const end = (id: string) => {
    if (!ledger.held.delete(id)) ledger.twice.push(id);
  };
  return {
    agent: async (agentId) => ({
      id: agentId,
      teamId: 'team_1',
      name: 'a',
      status: 'active',
      policyId: 'pol_1',
      allowedPolicies: null,
      providerKeys: Object.fromEntries(keys.map((k) => [k.provider, [{ key_id: k.id, weight: 1 }]])),
      routingOverride: null,
    }),
    policy: async () => ({ id: 'pol_1', name: 'p', spec: { ...POLICY_DEFAULTS, ...policy } }),
    keys: async () => new Map(keys.map((k) => [k.id, k])),
    runs: {
      resolve: async () => ({ id: 'run_1', stepCount: 0, agentId: 'agt_1', policyId: 'pol_1' }),
      reserve: async () => {
        const id = `res_${++seq}`;
        ledger.held.add(id);
        return { ok: true, reservationId: id, remainingMicros: null, remainingTokens: null };
      },
      release: async (id) => {
        end(id);
        ledger.released.add(id);
      },
      settleLater: (id, outcome) => {
        end(id);
        ledger.settled.set(id, outcome);
      },
      recordBlocked: () => {},
      recordFailover: () => {},
    },
    approvals: {
      request: async () => [{ id: 'apr_1', tool: 'bash' }],
      consume: async () => ({ ok: false, message: 'no' }),
    },
    plan: () => ({
      attempts: keys.map((k) => ({
        provider: k.provider,
        keyId: k.id,
        model: 'gpt-4o',
        timeoutMs: 2000,
        connectTimeoutMs: 1000,
      })),
      retryOn: [500],
      onRateLimit: 'failover_first',
    }),
    health: { success: () => {}, failure: () => {} },
    price: { maxCostMicros: () => 1000, costMicros: () => 10 },
  };
}

const key = (provider: Provider, baseUrl = mock.url): KeyForCall => ({
  id: `pkey_${provider}_${baseUrl.length}`,
  provider,
  baseUrl,
  apiKey: 'sk-test',
  priceOverrides: null,
});

function gateway(p: GatewayPorts, translator: Translator = new WireTranslator()): GatewayService {
  const guard = new OutboundGuard({ allow: AllowList.parse(['127.0.0.1']).list });
  return new GatewayService(
    systemContext(silentLog),
    p,
    translator,
    new RateLimiter(new MemoryRateLimitStore(() => Date.now()), silentLog),
    { defaultMaxTokens: 100, logContentByDefault: false },
    new UpstreamClient(guard),
  );
}

function request(body: Record<string, unknown> = {}): ProxyRequest {
  return {
    format: 'openai',
    agentId: 'agt_1',
    headers: {},
    body: { model: 'gpt-4o', messages: [{ role: 'user', content: 'hi' }], ...body },
    signal: new AbortController().signal,
  };
}

async function drain(result: ProxyResult): Promise<string> {
  if (result.kind !== 'stream') return '';
  let text = '';
  for await (const chunk of result.chunks) text += chunk;
  return text;
}

/** Every reservation ended once: none held, none ended twice. */
function expectBalanced(): void {
  expect([...ledger.held]).toEqual([]);
  expect(ledger.twice).toEqual([]);
}

describe('every reservation ends exactly once', () => {
  it('settles a call every provider failed, with no charge', async () => {
    mock.reply({ status: 500, times: 2 });
    const g = gateway(ports({}, [key('openai'), key('openai', deadUrl)]));
    await expect(g.handle(request())).rejects.toBeInstanceOf(ProviderFailure);
    expectBalanced();
    expect([...ledger.settled.values()].map((o) => [o.status, o.costMicros])).toEqual([['error', 0]]);
  });

  it('settles a call the provider refused (not retryable) before the error reaches the client', async () => {
    mock.reply({ status: 400, message: 'bad request' });
    const g = gateway(ports({}, [key('openai')]));
    await expect(g.handle(request())).rejects.toMatchObject({ code: 'upstream_error' });
    expectBalanced();
    expect(ledger.settled.size).toBe(1);
  });

  it('releases the money when the request cannot be translated for the provider (nothing was sent)', async () => {
    const translator = new WireTranslator();
    translator.request = () => {
      throw new Error('untranslatable');
    };
    const g = gateway(ports({}, [key('anthropic')]), translator);
    await expect(g.handle(request())).rejects.toThrow('untranslatable');
    expectBalanced();
    expect(ledger.released.size).toBe(1);
    expect(mock.requests.length).toBe(0);
  });

  it('settles once when the stream relay throws, and fails over past it', async () => {
    const translator = new WireTranslator();
    translator.stream = () => {
      throw new Error('relay broke');
    };
    const g = gateway(ports({}, [key('anthropic')]), translator);
    await expect(g.handle(request({ stream: true }))).rejects.toBeInstanceOf(ProviderFailure);
    expectBalanced();
    expect(ledger.settled.size).toBe(1);
  });

  it('settles a relayed stream when it ends, not before', async () => {
    const g = gateway(ports({}, [key('openai')]));
    const result = await g.handle(request({ stream: true }));
    expect([...ledger.held]).toHaveLength(1);
    expect(await drain(result)).toContain('[DONE]');
    expectBalanced();
    expect([...ledger.settled.values()][0]?.status).toBe('success');
  });

  it('settles a stream the client abandons midway', async () => {
    mock.reply({ chunks: ['a ', 'b ', 'c ', 'd'], stallBetweenEventsMs: 20 });
    const g = gateway(ports({}, [key('openai')]));
    const result = await g.handle(request({ stream: true }));
    if (result.kind !== 'stream') throw new Error('expected a stream');
    await result.chunks.next();
    await result.chunks.return(undefined);
    expectBalanced();
    expect(ledger.settled.size).toBe(1);
  });

  it('settles a stream the client abandons before reading it, as a disconnect', async () => {
    const g = gateway(ports({}, [key('openai')]));
    const result = await g.handle(request({ stream: true }));
    if (result.kind !== 'stream') throw new Error('expected a stream');
    await result.chunks.return(undefined);
    expectBalanced();
    expect([...ledger.settled.values()].map((o) => [o.status, o.errorKind])).toEqual([
      ['error', 'client_disconnect'],
    ]);
    // Ended once: reading it afterwards changes nothing.
    expect(await result.chunks.next()).toEqual({ done: true, value: undefined });
    expectBalanced();
  });

  it('settles a JSON answer, and one cut off halfway fails over and settles once', async () => {
    mock.reply({ cutAfterEvents: 1 });
    const g = gateway(ports({}, [key('openai')]));
    await g.handle(request()).catch(() => undefined);
    await g.handle(request());
    expectBalanced();
    expect(ledger.settled.size).toBe(2);
  });

  it('releases the money of a call refused after the reservation, or waiting for approval', async () => {
    const blocked = gateway(ports({ blocked_tools: ['bash'] }, [key('openai')]));
    const tools = { tools: [{ type: 'function', function: { name: 'bash', parameters: {} } }] };
    await expect(blocked.handle(request(tools))).rejects.toMatchObject({ code: 'tool_blocked' });
    const approval = gateway(ports({ require_approval: ['bash'] }, [key('openai')]));
    const answer = await approval.handle(request(tools));
    expect(answer).toMatchObject({ kind: 'json', status: 202 });
    expectBalanced();
    expect(ledger.released.size).toBe(2);
    expect(mock.requests.length).toBe(0);
  });
});
