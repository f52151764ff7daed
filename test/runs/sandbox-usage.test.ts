import { and, eq } from 'drizzle-orm';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { ConfigError, DEFAULT_SANDBOX_PRICES, loadConfig } from '../../src/config.ts';
import { AppError } from '../../src/core/errors.ts';
import { events } from '../../src/db/schema/index.ts';
import { sandboxCostMicros } from '../../src/modules/runs/sandbox-usage.ts';
import type { SandboxUsageInput } from '../../src/modules/runs/service.ts';
import { createTestApp, type SignedUpUser, type TestApp } from '../support/app.ts';
import type { Json } from '../support/factories.ts';
import { type GatewayFixture, startGateway } from '../support/gateway.ts';
import {
  agentWithPolicy,
  type GatewayAgent,
  hourRows,
  leaseRows,
  ledgerRows,
  runRow,
  stepRows,
  usage,
} from './setup.ts';

// A task's capsule running time on its run's ledger: priced per vCPU-second
// and per GiB-second, written as a sandbox step with a ledger entry of kind
// sandbox, counted in the run's cost and against its budgets.

/** $0.00002 per vCPU-second and $0.000004 per GiB-second: whole micro-dollars for the sizes below. */
const PRICES = { PADDOCK_SANDBOX_USD_PER_VCPU_SEC: '0.00002', PADDOCK_SANDBOX_USD_PER_GB_SEC: '0.000004' };
/** 2 vCPUs × 30 s = 60 vCPU-s × 20 µ$ = 1200 µ$; 0.5 GiB × 30 s = 15 GiB-s × 4 µ$ = 60 µ$. */
const HALF_MINUTE = { seconds: 30, vcpus: 2, memoryMb: 512 };
const HALF_MINUTE_MICROS = 1260;

const micros = (usd: number) => Math.round(usd * 1e6);

describe('sandbox prices (config)', () => {
  it('defaults to public cloud list prices, takes 0 as free, and refuses negative or garbage values at start', () => {
    expect(loadConfig({}).sandboxPrices).toEqual(DEFAULT_SANDBOX_PRICES);
    expect(DEFAULT_SANDBOX_PRICES).toEqual({ usdPerVcpuSec: 0.000014, usdPerGbSec: 0.0000045 });
    expect(
      loadConfig({ PADDOCK_SANDBOX_USD_PER_VCPU_SEC: '0', PADDOCK_SANDBOX_USD_PER_GB_SEC: '2.5e-6' })
        .sandboxPrices,
    ).toEqual({ usdPerVcpuSec: 0, usdPerGbSec: 0.0000025 });
    for (const bad of ['-0.00001', 'abc', '0x10', 'Infinity', '5', '1e-5usd', ' ']) {
      let err: unknown;
      try {
        loadConfig({ PADDOCK_SANDBOX_USD_PER_VCPU_SEC: bad, PADDOCK_SANDBOX_USD_PER_GB_SEC: bad });
      } catch (e) {
        err = e;
      }
      expect(err, bad).toBeInstanceOf(ConfigError);
      const problems = (err as ConfigError).problems.join('\n');
      expect(problems).toContain('PADDOCK_SANDBOX_USD_PER_VCPU_SEC');
      expect(problems).toContain('PADDOCK_SANDBOX_USD_PER_GB_SEC');
    }
  });

  it('prices seconds × (vCPUs × per vCPU-second + GiB × per GiB-second) in whole micro-dollars', () => {
    const prices = { usdPerVcpuSec: 0.00002, usdPerGbSec: 0.000004 };
    expect(sandboxCostMicros(prices, HALF_MINUTE)).toBe(HALF_MINUTE_MICROS);
    // The defaults: an hour of 1 vCPU and 1 GiB is 3600 × (14 + 4.5) µ$ = $0.0666.
    expect(sandboxCostMicros(DEFAULT_SANDBOX_PRICES, { seconds: 3600, vcpus: 1, memoryMb: 1024 })).toBe(
      66_600,
    );
    expect(sandboxCostMicros({ usdPerVcpuSec: 0, usdPerGbSec: 0 }, HALF_MINUTE)).toBe(0);
    expect(sandboxCostMicros(prices, { seconds: 0, vcpus: 4, memoryMb: 4096 })).toBe(0);
  });
});

describe('recordSandboxUsage', () => {
  let t: TestApp;
  let u: SignedUpUser;
  beforeAll(async () => {
    t = await createTestApp({ env: PRICES });
    u = await t.signup();
  });
  afterAll(() => t.close());

  const runs = () => t.services.runs;
  const newRun = (g: GatewayAgent) =>
    runs().resolveRun({ teamId: g.teamId, agent: g.agent, policy: g.policy, newRun: true });
  const usageOf = (
    g: GatewayAgent,
    runId: string,
    extra: Partial<SandboxUsageInput> = {},
  ): SandboxUsageInput => ({
    teamId: g.teamId,
    runId,
    agentId: g.agent.id,
    capsuleId: 'cap_test1',
    ...HALF_MINUTE,
    ...extra,
  });

  it('writes a sandbox step and a ledger entry of kind sandbox, and adds the cost to the run', async () => {
    const g = await agentWithPolicy(t, u);
    const run = await newRun(g);
    const charged = await runs().recordSandboxUsage(usageOf(g, run.id));
    expect(charged).toMatchObject({
      costMicros: HALF_MINUTE_MICROS,
      ledgerEntryId: expect.stringMatching(/^led_/),
    });

    expect(await runRow(t, run.id)).toMatchObject({
      costMicros: HALF_MINUTE_MICROS,
      sandboxCostMicros: HALF_MINUTE_MICROS,
      // Sandbox time is not a step of the agent's work.
      stepCount: 0,
      inputTokens: 0,
      reservedMicros: 0,
    });
    const [step] = await stepRows(t, run.id);
    expect(step).toMatchObject({
      id: charged.stepId,
      type: 'sandbox',
      status: 'success',
      name: 'cap_test1',
      provider: null,
      costMicros: HALF_MINUTE_MICROS,
    });
    const [entry] = await ledgerRows(t, run.id);
    expect(entry).toMatchObject({
      id: charged.ledgerEntryId,
      stepId: charged.stepId,
      kind: 'sandbox',
      capsuleId: 'cap_test1',
      sandboxSeconds: 30,
      vcpus: 2,
      memoryMb: 512,
      provider: null,
      model: null,
      costMicros: HALF_MINUTE_MICROS,
    });
    // The hour's spend counts it too (max_cost_per_hour_usd).
    expect((await hourRows(t, g.agent.id))[0]).toMatchObject({ costMicros: HALF_MINUTE_MICROS });

    const ledger = await t.call('GET', `/v1/runs/${run.id}/ledger`, { token: u.token });
    expect(ledger.status).toBe(200);
    expect(ledger.body.data).toEqual([
      {
        id: charged.ledgerEntryId,
        run_id: run.id,
        step_id: charged.stepId,
        agent_id: g.agent.id,
        kind: 'sandbox',
        provider: null,
        model: null,
        provider_key_id: null,
        tokens: null,
        sandbox: {
          capsule_id: 'cap_test1',
          seconds: 30,
          vcpus: 2,
          memory_mb: 512,
          vcpu_seconds: 60,
          gb_seconds: 15,
        },
        cost_usd: 0.00126,
        created_at: expect.any(String),
      },
    ]);
    const view = await t.call('GET', `/v1/runs/${run.id}`, { token: u.token });
    expect(view.body).toMatchObject({ cost_usd: 0.00126, sandbox_cost_usd: 0.00126 });
    const steps = await t.call('GET', `/v1/runs/${run.id}/steps`, { token: u.token });
    expect(steps.body.data).toMatchObject([{ type: 'sandbox', name: 'cap_test1', cost_usd: 0.00126 }]);
  });

  it('charges each call its own interval (a long task charged as it goes, then at the stop)', async () => {
    const g = await agentWithPolicy(t, u);
    const run = await newRun(g);
    const first = await runs().recordSandboxUsage(usageOf(g, run.id));
    const second = await runs().recordSandboxUsage(usageOf(g, run.id));
    // The last interval is shorter: 10 s is a third of the price.
    const last = await runs().recordSandboxUsage(usageOf(g, run.id, { seconds: 10 }));
    expect(new Set([first.ledgerEntryId, second.ledgerEntryId, last.ledgerEntryId]).size).toBe(3);
    expect(last.costMicros).toBe(HALF_MINUTE_MICROS / 3);
    const total = 2 * HALF_MINUTE_MICROS + HALF_MINUTE_MICROS / 3;
    expect(await runRow(t, run.id)).toMatchObject({ costMicros: total, sandboxCostMicros: total });
    const ledger = await ledgerRows(t, run.id);
    expect(ledger.map((l) => l.sandboxSeconds).sort()).toEqual([10, 30, 30]);
    expect(ledger.reduce((sum, l) => sum + l.costMicros, 0)).toBe(total);
  });

  it('with a model call in flight: nothing counted twice, nothing left held, and the ledger sums to the cost', async () => {
    const g = await agentWithPolicy(t, u, { budget: { hard_limit_usd: 1, max_cost_per_hour_usd: 5 } });
    const run = await newRun(g);
    const reserved = await runs().reserve({
      teamId: g.teamId,
      runId: run.id,
      agentId: g.agent.id,
      policyId: g.policy.id,
      amountMicros: 50_000,
      tokens: 1000,
      model: 'claude-sonnet-4-5',
      maxCostPerHourMicros: 5_000_000,
    });
    if (!reserved.ok) throw new Error(`refused: ${reserved.message}`);
    // The sandbox charge comes while this process holds a lease with a call in flight.
    const charges = await Promise.all([
      runs().recordSandboxUsage(usageOf(g, run.id)),
      runs().recordSandboxUsage(usageOf(g, run.id, { capsuleId: 'cap_test2' })),
    ]);
    expect(charges.map((c) => c.costMicros)).toEqual([HALF_MINUTE_MICROS, HALF_MINUTE_MICROS]);
    await runs().settle(reserved.reservationId, {
      type: 'llm_call',
      status: 'success',
      provider: 'anthropic',
      model: 'claude-sonnet-4-5',
      usage: usage(100, 50),
      costMicros: 30_000,
    });
    await runs().flush();
    const row = await runRow(t, run.id);
    expect(row).toMatchObject({
      costMicros: 30_000 + 2 * HALF_MINUTE_MICROS,
      sandboxCostMicros: 2 * HALF_MINUTE_MICROS,
      reservedMicros: 0,
      reservedTokens: 0,
      stepCount: 1,
      status: 'running',
    });
    expect(await leaseRows(t, run.id)).toHaveLength(0);
    const ledger = await ledgerRows(t, run.id);
    expect(ledger.map((l) => l.kind).sort()).toEqual(['model', 'sandbox', 'sandbox']);
    expect(ledger.reduce((sum, l) => sum + l.costMicros, 0)).toBe(row.costMicros);
    expect(await hourRows(t, g.agent.id)).toMatchObject([{ costMicros: row.costMicros, reservedMicros: 0 }]);
  });

  it('ends the run as budget_exceeded (cost_limit) when a charge reaches the hard limit; later calls are refused', async () => {
    const g = await agentWithPolicy(t, u, { budget: { hard_limit_usd: 0.002 } });
    const run = await newRun(g);
    await runs().recordSandboxUsage(usageOf(g, run.id));
    expect((await runRow(t, run.id)).status).toBe('running');
    // 1260 + 1260 µ$ passes the $0.002 limit: spent money is charged, then the run ends.
    await runs().recordSandboxUsage(usageOf(g, run.id));
    expect(await runRow(t, run.id)).toMatchObject({
      status: 'budget_exceeded',
      endedReason: 'cost_limit',
      costMicros: 2 * HALF_MINUTE_MICROS,
    });
    const ended = await t.database.db
      .select()
      .from(events)
      .where(and(eq(events.subjectId, run.id), eq(events.type, 'run.budget_exceeded')));
    expect(ended).toHaveLength(1);
    const next = await runs().reserve({
      teamId: g.teamId,
      runId: run.id,
      agentId: g.agent.id,
      policyId: g.policy.id,
      amountMicros: 1,
      tokens: 1,
    });
    expect(next).toMatchObject({ ok: false, reason: 'budget_exceeded' });
    // Time the capsule ran after the end is still charged (fail closed on money); the run stays ended.
    await runs().recordSandboxUsage(usageOf(g, run.id, { seconds: 10 }));
    expect(await runRow(t, run.id)).toMatchObject({
      status: 'budget_exceeded',
      costMicros: 2 * HALF_MINUTE_MICROS + HALF_MINUTE_MICROS / 3,
    });
  });

  it('counts against the alert threshold and the policy’s hourly cap like model spend', async () => {
    const g = await agentWithPolicy(t, u, {
      budget: { alert_threshold_usd: 0.001, max_cost_per_hour_usd: 0.003 },
    });
    const run = await newRun(g);
    await runs().recordSandboxUsage(usageOf(g, run.id));
    expect(await runRow(t, run.id)).toMatchObject({ alertThresholdExceeded: true, status: 'running' });
    const alerts = await t.database.db
      .select()
      .from(events)
      .where(and(eq(events.subjectId, run.id), eq(events.type, 'run.alert_threshold')));
    expect(alerts).toHaveLength(1);
    await runs().recordSandboxUsage(usageOf(g, run.id));
    // 2520 µ$ of the hour's $0.003 are sandbox time: a call that may cost $0.001 no longer fits.
    const next = await runs().reserve({
      teamId: g.teamId,
      runId: run.id,
      agentId: g.agent.id,
      policyId: g.policy.id,
      amountMicros: 1000,
      tokens: 10,
      maxCostPerHourMicros: 3000,
    });
    expect(next).toMatchObject({ ok: false, reason: 'hourly_budget_exceeded' });
  });

  it('refuses bad usage (400), and an unknown run, another agent’s or another team’s run (404)', async () => {
    const g = await agentWithPolicy(t, u);
    const run = await newRun(g);
    const refusal = async (input: SandboxUsageInput) => {
      const err = await runs()
        .recordSandboxUsage(input)
        .then(() => undefined)
        .catch((e: unknown) => e);
      expect(err).toBeInstanceOf(AppError);
      return {
        status: (err as AppError).statusCode,
        code: (err as AppError).code,
        details: (err as AppError).details,
      };
    };
    const bad = await refusal(usageOf(g, run.id, { seconds: -1, vcpus: 0, memoryMb: 1.5 }));
    expect(bad).toMatchObject({ status: 400, code: 'validation_failed' });
    expect(Object.keys((bad.details as { fields: Record<string, string> }).fields).sort()).toEqual([
      'memory_mb',
      'seconds',
      'vcpus',
    ]);
    expect(await refusal(usageOf(g, run.id, { seconds: Number.NaN }))).toMatchObject({ status: 400 });
    expect(await refusal(usageOf(g, run.id, { capsuleId: '' }))).toMatchObject({ status: 400 });
    expect(await refusal(usageOf(g, run.id, { at: new Date(Number.NaN) }))).toMatchObject({ status: 400 });

    const notFound = { status: 404, code: 'not_found' };
    expect(await refusal(usageOf(g, 'run_01JUNKNOWNUNKNOWNUNKNOWNUN'))).toMatchObject(notFound);
    expect(await refusal(usageOf(g, 'task_not_a_run'))).toMatchObject(notFound);
    const otherAgent = await agentWithPolicy(t, u);
    expect(await refusal({ ...usageOf(g, run.id), agentId: otherAgent.agent.id })).toMatchObject(notFound);
    const stranger = await t.signup();
    expect(await refusal({ ...usageOf(g, run.id), teamId: stranger.team.id })).toMatchObject(notFound);

    await runs().flush();
    expect(await ledgerRows(t, run.id)).toHaveLength(0);
    expect(await runRow(t, run.id)).toMatchObject({ costMicros: 0 });
  });
});

describe('one ledger through the gateway', () => {
  let g: GatewayFixture;
  beforeAll(async () => {
    g = await startGateway({ env: PRICES });
  });
  afterAll(() => g.close());

  async function chat(agent: Json & { api_key: string }, headers: Record<string, string>) {
    const res = await fetch(`${g.url}/v1/chat/completions`, {
      method: 'POST',
      headers: { 'content-type': 'application/json', authorization: `Bearer ${agent.api_key}`, ...headers },
      body: JSON.stringify({
        model: 'gpt-4o',
        messages: [{ role: 'user', content: 'hello' }],
        max_tokens: 100,
      }),
    });
    return {
      status: res.status,
      runId: res.headers.get('x-paddock-run-id')!,
      body: (await res.json()) as Json,
    };
  }

  const charge = (agent: Json, runId: string, seconds = 30) =>
    g.t.services.runs.recordSandboxUsage({
      teamId: g.user.team.id,
      runId,
      agentId: agent.id as string,
      capsuleId: 'cap_task1',
      ...HALF_MINUTE,
      seconds,
    });

  it('a run’s cost is its model cost plus its sandbox cost, and its ledger sums to it', async () => {
    g.mock.reply({ text: 'ok', usage: { input: 2, output: 60 } });
    const call = await chat(g.agent, { 'x-paddock-new-run': 'true' });
    expect(call.status).toBe(200);
    await charge(g.agent, call.runId);

    const run = await g.run(call.runId);
    const ledger = await g.t.call('GET', `/v1/runs/${call.runId}/ledger`, { token: g.user.token });
    expect(ledger.status).toBe(200);
    const entries = ledger.body.data as Json[];
    expect(entries.map((e) => e.kind)).toEqual(['model', 'sandbox']);
    const [model, sandbox] = entries as [Json, Json];
    // gpt-4o at $2.50 / $10 per million: 2 in, 60 out.
    expect(micros(model.cost_usd as number)).toBe(5 + 600);
    expect(model).toMatchObject({
      provider: 'openai',
      model: 'gpt-4o',
      sandbox: null,
      tokens: { input: 2, output: 60 },
    });
    expect(sandbox).toMatchObject({
      provider: null,
      model: null,
      tokens: null,
      sandbox: { capsule_id: 'cap_task1' },
    });
    expect(micros(sandbox.cost_usd as number)).toBe(HALF_MINUTE_MICROS);
    expect(micros(run.cost_usd)).toBe(605 + HALF_MINUTE_MICROS);
    expect(micros(run.sandbox_cost_usd)).toBe(HALF_MINUTE_MICROS);
    expect(entries.reduce((sum, e) => sum + micros(e.cost_usd as number), 0)).toBe(micros(run.cost_usd));
    expect(run.step_count).toBe(1);
    expect((await g.steps(call.runId)).map((s) => s.type)).toEqual(['llm_call', 'sandbox']);
  });

  it('a sandbox charge that reaches the hard limit ends the run, and its next model call is refused with 402', async () => {
    const agent = await g.newAgent({ budget: { hard_limit_usd: 0.003 } });
    g.mock.reply({ text: 'ok', usage: { input: 2, output: 60 }, times: 2 });
    const first = await chat(agent, { 'x-paddock-new-run': 'true' });
    expect(first.status).toBe(200);
    // 605 µ$ spent; 2 × 1260 µ$ of sandbox time brings it to $0.003125, past the $0.003 limit.
    await charge(agent, first.runId);
    expect((await chat(agent, { 'x-paddock-run-id': first.runId })).status).toBe(200);
    await charge(agent, first.runId);
    const run = await g.run(first.runId);
    expect(run).toMatchObject({ status: 'budget_exceeded', ended_reason: 'cost_limit' });

    const refused = await chat(agent, { 'x-paddock-run-id': first.runId });
    expect(refused.status).toBe(402);
    expect(refused.body.error).toMatchObject({ type: 'governance_block', code: 'budget_exceeded' });
    expect(g.mock.requests).toHaveLength(3);
  });
});
