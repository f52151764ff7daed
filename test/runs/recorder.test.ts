import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { newId } from '../../src/core/ids.ts';
import { isTransientDbError, StepRecorder } from '../../src/modules/runs/recorder.ts';
import { createTestApp, type SignedUpUser, type TestApp } from '../support/app.ts';
import { agentWithPolicy, ledgerRows, runRow, stepRows } from './setup.ts';

const quietLog = { warn: () => {}, error: () => {} };

describe('StepRecorder', () => {
  it('writes jobs one at a time, in order, and flush waits for all of them', async () => {
    const recorder = new StepRecorder({ maxAttempts: 3, baseDelayMs: 1 });
    recorder.useLog(quietLog);
    const written: number[] = [];
    let concurrent = 0;
    let maxConcurrent = 0;
    for (let i = 0; i < 20; i++) {
      recorder.enqueue(`job ${i}`, async () => {
        concurrent++;
        maxConcurrent = Math.max(maxConcurrent, concurrent);
        await new Promise((r) => setTimeout(r, (20 - i) % 3));
        written.push(i);
        concurrent--;
      });
    }
    await recorder.flush();
    expect(written).toEqual(Array.from({ length: 20 }, (_, i) => i));
    expect(maxConcurrent).toBe(1);
    expect(recorder.pending).toBe(0);
  });

  it('never strands a job enqueued while the queue is draining its last one', async () => {
    const recorder = new StepRecorder({ maxAttempts: 1, baseDelayMs: 1 });
    let done = 0;
    for (let ticks = 0; ticks < 12; ticks++) {
      recorder.enqueue('first', async () => {
        done++;
      });
      for (let i = 0; i < ticks; i++) await Promise.resolve();
      recorder.enqueue('second', async () => {
        done++;
      });
      await recorder.flush();
      expect(recorder.pending).toBe(0);
    }
    expect(done).toBe(24);
  });

  it('retries transient database errors, keeps the order, and gives up on other errors', async () => {
    const recorder = new StepRecorder({ maxAttempts: 4, baseDelayMs: 1 });
    const errors: string[] = [];
    recorder.useLog({ warn: () => {}, error: (_obj, msg) => errors.push(msg) });
    const written: string[] = [];
    let failures = 2;
    recorder.enqueue('flaky', async () => {
      if (failures-- > 0) throw Object.assign(new Error('serialization failure'), { code: '40001' });
      written.push('flaky');
    });
    recorder.enqueue('broken', async () => {
      throw Object.assign(new Error('violates foreign key'), { code: '23503' });
    });
    recorder.enqueue('after', async () => {
      written.push('after');
    });
    await recorder.flush();
    expect(written).toEqual(['flaky', 'after']);
    expect(errors).toEqual(['step write failed; giving up']);
  });

  it('knows a transient error through a wrapper', () => {
    expect(isTransientDbError({ message: 'query failed', cause: { code: '08006' } })).toBe(true);
    expect(isTransientDbError(Object.assign(new Error('x'), { code: 'ECONNRESET' }))).toBe(true);
    expect(isTransientDbError(Object.assign(new Error('x'), { code: '23505' }))).toBe(false);
    expect(isTransientDbError(new Error('plain'))).toBe(false);
  });
});

describe('write-behind recording through the runs service', () => {
  let t: TestApp;
  let u: SignedUpUser;
  beforeAll(async () => {
    t = await createTestApp();
    u = await t.signup();
  });
  afterAll(() => t.close());

  it('records a failover transition, the call it led to and a blocked request, in order, after flush', async () => {
    const g = await agentWithPolicy(t, u);
    const runs = t.services.runs;
    const run = await runs.resolveRun({ teamId: g.teamId, agent: g.agent, policy: g.policy });
    const r = await runs.reserve({
      teamId: g.teamId,
      runId: run.id,
      agentId: g.agent.id,
      policyId: g.policy.id,
      amountMicros: 9_000,
      tokens: 300,
      model: 'gpt-4o',
    });
    if (!r.ok) throw new Error(r.message);
    runs.recordFailoverTransition({
      teamId: g.teamId,
      runId: run.id,
      agentId: g.agent.id,
      attempted: [
        {
          provider: 'openai',
          provider_key_id: 'pkey_a',
          status: 503,
          error: 'x'.repeat(1500),
          kind: 'http_error',
        },
      ],
      resolvedProvider: 'anthropic',
      resolvedModel: 'claude-sonnet-4-5',
      originalModel: 'gpt-4o',
    });
    t.clock.advance(1);
    runs.settleLater(r.reservationId, {
      stepId: newId('stp'),
      type: 'llm_call',
      status: 'success',
      provider: 'anthropic',
      model: 'claude-sonnet-4-5',
      providerKeyId: 'pkey_b',
      streaming: true,
      usage: { input: 100, output: 50, cacheRead: 20, cacheCreation: 10 },
      costMicros: 4_321,
      latencyMs: 850,
      routedFrom: 'gpt-4o',
      failoverAttempts: 1,
    });
    t.clock.advance(1);
    runs.recordBlocked({
      teamId: g.teamId,
      runId: run.id,
      agentId: g.agent.id,
      status: 'policy_blocked',
      code: 'model_not_allowed',
      message: 'gpt-5 is not allowed',
      model: 'gpt-5',
    });
    // Nothing is written until the queue runs.
    expect((await runRow(t, run.id)).stepCount).toBe(0);
    await runs.flush();

    // Written in the order given (the transition before the call it led to).
    const steps = await stepRows(t, run.id);
    const byWrite = [...steps].sort((a, b) => a.createdAt.getTime() - b.createdAt.getTime());
    expect(byWrite.map((s) => [s.type, s.status])).toEqual([
      ['failover_transition', 'success'],
      ['llm_call', 'success'],
      ['llm_call', 'policy_blocked'],
    ]);
    const [transition, call, blocked] = byWrite;
    expect(transition!.failoverAttempts).toBe(1);
    const ctx = transition!.failoverContext as {
      attempted: Array<{ error: string }>;
    } & Record<string, unknown>;
    expect(ctx).toMatchObject({
      resolved_provider: 'anthropic',
      resolved_model: 'claude-sonnet-4-5',
      original_model: 'gpt-4o',
    });
    expect(ctx.attempted[0]).toMatchObject({ provider: 'openai', status: 503, kind: 'http_error' });
    expect(ctx.attempted[0]?.error).toHaveLength(1000);
    expect(call).toMatchObject({
      id: expect.stringMatching(/^stp_/),
      streaming: true,
      inputTokens: 100,
      outputTokens: 50,
      cacheReadTokens: 20,
      cacheCreationTokens: 10,
      costMicros: 4_321,
      routedFrom: 'gpt-4o',
      failoverAttempts: 1,
    });
    expect(blocked).toMatchObject({ errorKind: 'model_not_allowed', model: 'gpt-5', costMicros: 0 });

    const row = await runRow(t, run.id);
    expect(row).toMatchObject({
      hadFailover: true,
      hasGovernanceBlock: true,
      stepCount: 1,
      costMicros: 4_321,
      reservedMicros: 0,
      primaryModel: 'claude-sonnet-4-5',
    });
    const ledger = await ledgerRows(t, run.id);
    expect(ledger).toHaveLength(1);
    expect(ledger[0]).toMatchObject({ stepId: call!.id, costMicros: 4_321, providerKeyId: 'pkey_b' });
  });

  it('primary_model is the model most steps used', async () => {
    const g = await agentWithPolicy(t, u);
    const runs = t.services.runs;
    const run = await runs.resolveRun({ teamId: g.teamId, agent: g.agent, policy: g.policy, newRun: true });
    for (const model of ['gpt-4o', 'claude-haiku-4-5', 'claude-haiku-4-5', 'gpt-4o', 'claude-haiku-4-5']) {
      const r = await runs.reserve({
        teamId: g.teamId,
        runId: run.id,
        agentId: g.agent.id,
        policyId: g.policy.id,
        amountMicros: 10,
        tokens: 10,
      });
      if (!r.ok) throw new Error(r.message);
      runs.settleLater(r.reservationId, {
        type: 'llm_call',
        status: 'success',
        provider: 'x',
        model,
        usage: { input: 1, output: 1, cacheRead: 0, cacheCreation: 0 },
        costMicros: 1,
      });
    }
    await runs.flush();
    expect((await runRow(t, run.id)).primaryModel).toBe('claude-haiku-4-5');
  });
});
