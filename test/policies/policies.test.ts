import { and, eq } from 'drizzle-orm';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { newId, type TeamId } from '../../src/core/ids.ts';
import { events, runs } from '../../src/db/schema/index.ts';
import { POLICY_DEFAULTS } from '../../src/modules/policies/spec.ts';
import { createTestApp, type SignedUpUser, type TestApp } from '../support/app.ts';
import { createAgent, createPolicy } from '../support/factories.ts';

let t: TestApp;
let u: SignedUpUser;
beforeAll(async () => {
  t = await createTestApp();
  u = await t.signup();
});
afterAll(() => t.close());

function put(url: string, body: unknown, token = u.token) {
  return t.call('PUT', url, { token, body });
}

describe('creating a policy', () => {
  it('applies the defaults to every field not sent and writes version 1', async () => {
    const res = await t.call('POST', '/v1/policies', {
      token: u.token,
      body: { name: 'defaults', budget: { hard_limit_usd: 5 }, allowed_models: ['claude-*'] },
    });
    expect(res.status, JSON.stringify(res.body)).toBe(201);
    const p = res.body;
    expect(p.id).toMatch(/^pol_/);
    expect(p).toMatchObject({
      name: 'defaults',
      team_id: u.team.id,
      version: 1,
      created_by: u.user.id,
      budget: {
        hard_limit_usd: 5,
        hard_limit_tokens: null,
        alert_threshold_usd: null,
        alert_threshold_tokens: null,
        max_cost_per_hour_usd: null,
        on_alert_threshold: 'continue_and_alert',
      },
      allowed_models: ['claude-*'],
      blocked_models: [],
      allowed_tools: [],
      blocked_tools: [],
      require_approval: [],
      approval_expiry_ms: 28_800_000,
      rate_limits: { max_requests_per_minute: null, max_tokens_per_minute: null },
      routing: {
        default_chain: [],
        model_routes: [],
        timeout_ms: 120_000,
        connect_timeout_ms: 10_000,
        retry_on: [429, 500, 502, 503, 504, 529],
        max_retries: 3,
        on_rate_limit: 'failover_first',
        load_balancing: 'failover',
        circuit_breaker: {
          failure_threshold: 5,
          recovery_timeout_ms: 30_000,
          max_recovery_timeout_ms: 600_000,
        },
        routing_preference: 'default',
      },
      model_mapping: {},
      default_model: null,
      model_override: null,
      runaway_prevention: { enabled: false, max_steps_per_run: null },
      implicit_run_grouping: {
        time_window_seconds: 300,
        run_idle_timeout_seconds: 300,
        force_stop_cooldown_minutes: 60,
      },
      outcome_defaults: null,
      dry_run: false,
      content_logging: 'default',
    });
    const versions = await t.call('GET', `/v1/policies/${p.id}/versions`, { token: u.token });
    expect(versions.body.data).toHaveLength(1);
    expect(versions.body.data[0]).toMatchObject({ version: 1, changed_fields: ['_created'] });
    expect(versions.body.data[0].snapshot).toMatchObject({ name: 'defaults', budget: { hard_limit_usd: 5 } });
  });

  it('answers every field of the document, and only those', async () => {
    const p = await createPolicy(t, u.token);
    const fields = Object.keys(p).filter(
      (k) =>
        ![
          'id',
          'team_id',
          'name',
          'version',
          'created_by',
          'updated_by',
          'created_at',
          'updated_at',
        ].includes(k),
    );
    expect(fields.sort()).toEqual(Object.keys(POLICY_DEFAULTS).sort());
  });

  it('refuses a name already used in the team (409)', async () => {
    await createPolicy(t, u.token, { name: 'dup' });
    const res = await t.call('POST', '/v1/policies', { token: u.token, body: { name: 'dup' } });
    expect(res.status).toBe(409);
    expect(res.body.error.code).toBe('policy_name_taken');
  });

  it('lets exactly one of concurrent creates of a name win', async () => {
    const results = await Promise.all(
      Array.from({ length: 4 }, () =>
        t.call('POST', '/v1/policies', { token: u.token, body: { name: 'racing' } }),
      ),
    );
    expect(results.map((r) => r.status).sort()).toEqual([201, 409, 409, 409]);
    const upserts = await Promise.all(
      Array.from({ length: 3 }, (_, i) =>
        put('/v1/policies/by-name/racing-upsert', { approval_expiry_ms: 60_000 * (i + 1) }),
      ),
    );
    expect(upserts.map((r) => r.status).sort()).toEqual([200, 200, 201]);
    const versions = await t.call('GET', `/v1/policies/${upserts[0]!.body.id}/versions`, { token: u.token });
    expect(versions.body.data.map((v: { version: number }) => v.version)).toEqual([1, 2, 3]);
  });

  it('records policy.created and policy.version_created in the outbox', async () => {
    const p = await createPolicy(t, u.token);
    const rows = await t.database.db.select().from(events).where(eq(events.subjectId, p.id));
    expect(rows.map((r) => r.type).sort()).toEqual(['policy.created', 'policy.version_created']);
    expect(rows.every((r) => r.teamId === u.team.id && r.actorId === u.user.id)).toBe(true);
  });
});

describe('validation', () => {
  const cases: Array<[string, Record<string, unknown>, string, RegExp?]> = [
    ['a bad enum', { budget: { on_alert_threshold: 'explode' } }, 'budget.on_alert_threshold', /one of/],
    ['a negative limit', { budget: { hard_limit_usd: -1 } }, 'budget.hard_limit_usd'],
    ['a negative token limit', { budget: { alert_threshold_tokens: -5 } }, 'budget.alert_threshold_tokens'],
    ['an unknown top-level field', { budgett: {} }, 'budgett', /not a known field/],
    ['an unknown nested field', { routing: { retries: 2 } }, 'routing.retries', /not a known field/],
    ['a provider that does not exist', { routing: { default_chain: ['gemini'] } }, 'routing.default_chain.0'],
    ['approval_expiry_ms below its minimum', { approval_expiry_ms: 1000 }, 'approval_expiry_ms'],
    [
      'idle timeout above a day',
      { implicit_run_grouping: { run_idle_timeout_seconds: 86_401 } },
      'implicit_run_grouping.run_idle_timeout_seconds',
    ],
    [
      'a cooldown above 1440 minutes',
      { implicit_run_grouping: { force_stop_cooldown_minutes: 1441 } },
      'implicit_run_grouping.force_stop_cooldown_minutes',
    ],
    [
      'an unknown outcome_defaults key',
      { outcome_defaults: { whenever: 'success' } },
      'outcome_defaults.whenever',
    ],
    [
      'a string where a number goes',
      { rate_limits: { max_requests_per_minute: '10' } },
      'rate_limits.max_requests_per_minute',
    ],
    ['null on a field that is not nullable', { dry_run: null }, 'dry_run'],
    [
      'connect_timeout_ms above timeout_ms',
      { routing: { timeout_ms: 30_000, connect_timeout_ms: 60_000 } },
      'routing.connect_timeout_ms',
      /timeout_ms/,
    ],
    [
      'connect_timeout_ms above the default timeout_ms',
      { routing: { connect_timeout_ms: 300_000 } },
      'routing.connect_timeout_ms',
    ],
    [
      'a recovery timeout above its cap',
      { routing: { circuit_breaker: { recovery_timeout_ms: 700_000 } } },
      'routing.circuit_breaker.recovery_timeout_ms',
    ],
    [
      'runaway prevention with no step limit',
      { runaway_prevention: { enabled: true } },
      'runaway_prevention.max_steps_per_run',
    ],
  ];
  for (const [what, body, field, message] of cases) {
    it(`refuses ${what} (400, naming ${field})`, async () => {
      const res = await t.call('POST', '/v1/policies', {
        token: u.token,
        body: { name: 'invalid', ...body },
      });
      expect(res.status, JSON.stringify(res.body)).toBe(400);
      expect(res.body.error.code).toBe('validation_failed');
      expect(Object.keys(res.body.error.details.fields)).toContain(field);
      if (message) expect(res.body.error.details.fields[field]).toMatch(message);
    });
  }

  it('refuses a name with a slash, and a missing name', async () => {
    const slash = await t.call('POST', '/v1/policies', { token: u.token, body: { name: 'a/b' } });
    expect(slash.status).toBe(400);
    expect(slash.body.error.details.fields).toHaveProperty('name');
    const missing = await t.call('POST', '/v1/policies', { token: u.token, body: {} });
    expect(missing.status).toBe(400);
    expect(missing.body.error.details.fields.name).toBe('is required');
  });

  it('refuses prototype keys in maps, and leaves Object.prototype alone', async () => {
    const p = await createPolicy(t, u.token);
    const raw = '{"model_mapping": {"__proto__": {"openai": "gpt-4o"}}}';
    const res = await t.call('PUT', `/v1/policies/${p.id}`, {
      token: u.token,
      body: raw,
      headers: { 'content-type': 'application/json' },
    });
    expect(res.status).toBe(400);
    expect(({} as Record<string, unknown>).openai).toBeUndefined();
    const nested = await t.call('PUT', `/v1/policies/${p.id}`, {
      token: u.token,
      body: '{"budget": {"__proto__": {"polluted": true}}}',
      headers: { 'content-type': 'application/json' },
    });
    expect(nested.status).toBe(400);
    expect(({} as Record<string, unknown>).polluted).toBeUndefined();
    const after = await t.call('GET', `/v1/policies/${p.id}`, { token: u.token });
    expect(after.body.version).toBe(1);
  });

  it('checks cross-field rules on the merged document (PUT)', async () => {
    const p = await createPolicy(t, u.token, { routing: { connect_timeout_ms: 20_000 } });
    const res = await put(`/v1/policies/${p.id}`, { routing: { timeout_ms: 15_000 } });
    expect(res.status).toBe(400);
    expect(res.body.error.details.fields).toHaveProperty(['routing.connect_timeout_ms']);
    const unchanged = await t.call('GET', `/v1/policies/${p.id}`, { token: u.token });
    expect(unchanged.body.routing.timeout_ms).toBe(120_000);
    expect(unchanged.body.version).toBe(1);
  });
});

describe('PUT /v1/policies/{id} (deep merge)', () => {
  it('keeps omitted fields, merges objects, replaces arrays, and bumps the version', async () => {
    const p = await createPolicy(t, u.token, {
      budget: { hard_limit_usd: 10, alert_threshold_usd: 5 },
      allowed_models: ['gpt-*', 'claude-*'],
      routing: { retry_on: [500], max_retries: 2 },
      rate_limits: { max_requests_per_minute: 60 },
    });
    const res = await put(`/v1/policies/${p.id}`, {
      budget: { hard_limit_usd: 20 },
      allowed_models: ['claude-*'],
      routing: { circuit_breaker: { failure_threshold: 0 } },
    });
    expect(res.status, JSON.stringify(res.body)).toBe(200);
    const q = res.body;
    expect(q.version).toBe(2);
    expect(q.budget).toMatchObject({ hard_limit_usd: 20, alert_threshold_usd: 5 });
    expect(q.allowed_models).toEqual(['claude-*']);
    expect(q.routing).toMatchObject({
      retry_on: [500],
      max_retries: 2,
      timeout_ms: 120_000,
      circuit_breaker: {
        failure_threshold: 0,
        recovery_timeout_ms: 30_000,
        max_recovery_timeout_ms: 600_000,
      },
    });
    expect(q.rate_limits.max_requests_per_minute).toBe(60);
    expect(q.name).toBe(p.name);
    const v2 = await t.call('GET', `/v1/policies/${p.id}/versions/2`, { token: u.token });
    expect(v2.body.changed_fields).toEqual(['allowed_models', 'budget', 'routing']);
    expect(v2.body.snapshot.budget.hard_limit_usd).toBe(20);
  });

  it('clears a nullable field with null', async () => {
    const p = await createPolicy(t, u.token, {
      budget: { hard_limit_usd: 3, alert_threshold_usd: 1 },
      default_model: 'claude-sonnet-4-5',
      outcome_defaults: { idle_timeout: 'failed' },
    });
    const res = await put(`/v1/policies/${p.id}`, {
      budget: { alert_threshold_usd: null },
      default_model: null,
    });
    expect(res.status).toBe(200);
    expect(res.body.budget).toMatchObject({ hard_limit_usd: 3, alert_threshold_usd: null });
    expect(res.body.default_model).toBeNull();
    const merged = await put(`/v1/policies/${p.id}`, { outcome_defaults: { admin_stopped: 'partial' } });
    expect(merged.body.outcome_defaults).toEqual({ idle_timeout: 'failed', admin_stopped: 'partial' });
    const cleared = await put(`/v1/policies/${p.id}`, { outcome_defaults: null });
    expect(cleared.body.outcome_defaults).toBeNull();
    const notNullable = await put(`/v1/policies/${p.id}`, { budget: null });
    expect(notNullable.status).toBe(400);
    expect(notNullable.body.error.details.fields).toHaveProperty('budget');
  });

  it('merges model_mapping by source model; a null entry removes one', async () => {
    const p = await createPolicy(t, u.token, {
      model_mapping: {
        'gpt-4o': { anthropic: 'claude-sonnet-4-5' },
        'gpt-4o-mini': { anthropic: 'claude-haiku-4-5' },
      },
    });
    const res = await put(`/v1/policies/${p.id}`, {
      model_mapping: { 'gpt-4o': { openai_compatible: 'llama3' }, 'gpt-4o-mini': null },
    });
    expect(res.status, JSON.stringify(res.body)).toBe(200);
    expect(res.body.model_mapping).toEqual({
      'gpt-4o': { anthropic: 'claude-sonnet-4-5', openai_compatible: 'llama3' },
    });
    const badProvider = await put(`/v1/policies/${p.id}`, { model_mapping: { x: { gemini: 'y' } } });
    expect(badProvider.status).toBe(400);
  });

  it('writes no version when nothing changes', async () => {
    const p = await createPolicy(t, u.token, { budget: { hard_limit_usd: 2 } });
    const res = await put(`/v1/policies/${p.id}`, { budget: { hard_limit_usd: 2 }, name: p.name });
    expect(res.status).toBe(200);
    expect(res.body.version).toBe(1);
    const versions = await t.call('GET', `/v1/policies/${p.id}/versions`, { token: u.token });
    expect(versions.body.data).toHaveLength(1);
  });

  it('renames, refusing a name in use (409)', async () => {
    const a = await createPolicy(t, u.token);
    const b = await createPolicy(t, u.token);
    const renamed = await put(`/v1/policies/${a.id}`, { name: `${a.name}-renamed` });
    expect(renamed.status).toBe(200);
    expect(renamed.body.name).toBe(`${a.name}-renamed`);
    const v2 = await t.call('GET', `/v1/policies/${a.id}/versions/2`, { token: u.token });
    expect(v2.body.changed_fields).toEqual(['name']);
    const clash = await put(`/v1/policies/${a.id}`, { name: b.name });
    expect(clash.status).toBe(409);
    expect(clash.body.error.code).toBe('policy_name_taken');
  });

  it('is 404 for an unknown id', async () => {
    const res = await put('/v1/policies/pol_01J00000000000000000000000', { dry_run: true });
    expect(res.status).toBe(404);
  });
});

describe('PUT /v1/policies/by-name/{name}', () => {
  it('creates with defaults (201), then deep-merges (200)', async () => {
    const created = await put('/v1/policies/by-name/iac-policy', { budget: { hard_limit_usd: 1 } });
    expect(created.status, JSON.stringify(created.body)).toBe(201);
    expect(created.body).toMatchObject({
      name: 'iac-policy',
      version: 1,
      budget: { hard_limit_usd: 1, on_alert_threshold: 'continue_and_alert' },
      approval_expiry_ms: 28_800_000,
    });
    const updated = await put('/v1/policies/by-name/iac-policy', {
      rate_limits: { max_requests_per_minute: 10 },
    });
    expect(updated.status).toBe(200);
    expect(updated.body.id).toBe(created.body.id);
    expect(updated.body.version).toBe(2);
    expect(updated.body.budget.hard_limit_usd).toBe(1);
    expect(updated.body.rate_limits.max_requests_per_minute).toBe(10);
    const again = await put('/v1/policies/by-name/iac-policy', {
      rate_limits: { max_requests_per_minute: 10 },
    });
    expect(again.status).toBe(200);
    expect(again.body.version).toBe(2);
  });

  it('takes the name from the URL only, and validates like POST', async () => {
    const withName = await put('/v1/policies/by-name/named', { name: 'other' });
    expect(withName.status).toBe(400);
    expect(withName.body.error.details.fields.name).toMatch(/not a known field/);
    const bad = await put('/v1/policies/by-name/named', { routing: { connect_timeout_ms: 500 } });
    expect(bad.status).toBe(400);
  });
});

describe('versions', () => {
  it('lists oldest first, reads one, and refuses bad numbers', async () => {
    const p = await createPolicy(t, u.token);
    await put(`/v1/policies/${p.id}`, { dry_run: true });
    await put(`/v1/policies/${p.id}`, { content_logging: 'disabled' });
    const list = await t.call('GET', `/v1/policies/${p.id}/versions`, { token: u.token });
    expect(list.status).toBe(200);
    expect(list.body.data.map((v: { version: number }) => v.version)).toEqual([1, 2, 3]);
    expect(list.body.data.map((v: { changed_fields: string[] }) => v.changed_fields)).toEqual([
      ['_created'],
      ['dry_run'],
      ['content_logging'],
    ]);
    expect(list.body.data[1].changed_by).toBe(u.user.id);
    const paged = await t.call('GET', `/v1/policies/${p.id}/versions?limit=2`, { token: u.token });
    expect(paged.body.data.map((v: { version: number }) => v.version)).toEqual([1, 2]);
    const rest = await t.call(
      'GET',
      `/v1/policies/${p.id}/versions?limit=2&cursor=${paged.body.next_cursor}`,
      {
        token: u.token,
      },
    );
    expect(rest.body.data.map((v: { version: number }) => v.version)).toEqual([3]);
    expect(rest.body.next_cursor).toBeNull();

    const v2 = await t.call('GET', `/v1/policies/${p.id}/versions/2`, { token: u.token });
    expect(v2.status).toBe(200);
    expect(v2.body).toMatchObject({
      policy_id: p.id,
      version: 2,
      snapshot: { dry_run: true, content_logging: 'default' },
    });
    for (const n of ['0', '-1', 'abc', '1.5']) {
      const bad = await t.call('GET', `/v1/policies/${p.id}/versions/${n}`, { token: u.token });
      expect(bad.status, n).toBe(400);
    }
    const missing = await t.call('GET', `/v1/policies/${p.id}/versions/4`, { token: u.token });
    expect(missing.status).toBe(404);
  });
});

describe('deleting a policy', () => {
  it('is 409 policy_in_use while an agent has it, then deletes once the agent moves', async () => {
    const p = await createPolicy(t, u.token);
    const other = await createPolicy(t, u.token);
    const agent = await createAgent(t, u.token, { policy_id: p.id });
    const refused = await t.call('DELETE', `/v1/policies/${p.id}`, { token: u.token });
    expect(refused.status).toBe(409);
    expect(refused.body.error.code).toBe('policy_in_use');
    expect(refused.body.error.details.agent_ids).toEqual([agent.id]);

    const moved = await t.call('PATCH', `/v1/agents/${agent.id}`, {
      token: u.token,
      body: { policy_id: other.id },
    });
    expect(moved.status).toBe(200);
    const deleted = await t.call('DELETE', `/v1/policies/${p.id}`, { token: u.token });
    expect(deleted.status).toBe(204);

    expect((await t.call('GET', `/v1/policies/${p.id}`, { token: u.token })).status).toBe(404);
    expect((await t.call('DELETE', `/v1/policies/${p.id}`, { token: u.token })).status).toBe(404);
    const list = await t.call('GET', `/v1/policies?name=${encodeURIComponent(p.name)}`, { token: u.token });
    expect(list.body.data).toEqual([]);

    // Versions outlive the policy; the deletion is the last one.
    const versions = await t.call('GET', `/v1/policies/${p.id}/versions`, { token: u.token });
    expect(versions.status).toBe(200);
    expect(versions.body.data.at(-1)).toMatchObject({ version: 2, changed_fields: ['_deleted'] });
    expect((await t.call('GET', `/v1/policies/${p.id}/versions/2`, { token: u.token })).status).toBe(200);

    // A deleted policy cannot be given to an agent, and its name is free again.
    const assign = await t.call('PATCH', `/v1/agents/${agent.id}`, {
      token: u.token,
      body: { policy_id: p.id },
    });
    expect(assign.status).toBe(400);
    expect(assign.body.error.code).toBe('invalid_policy');
    const reuse = await t.call('POST', '/v1/policies', { token: u.token, body: { name: p.name } });
    expect(reuse.status).toBe(201);
    expect(reuse.body.id).not.toBe(p.id);
  });

  it('does not count deleted agents', async () => {
    const p = await createPolicy(t, u.token);
    const agent = await createAgent(t, u.token, { policy_id: p.id });
    expect((await t.call('DELETE', `/v1/agents/${agent.id}`, { token: u.token })).status).toBe(204);
    expect((await t.call('DELETE', `/v1/policies/${p.id}`, { token: u.token })).status).toBe(204);
    const types = (
      await t.database.db.select({ type: events.type }).from(events).where(eq(events.subjectId, p.id))
    ).map((r) => r.type);
    expect(types).toContain('policy.deleted');
  });
});

describe('listing', () => {
  it('filters by name substring (case-insensitive) and pages with a cursor', async () => {
    const owner = await t.signup();
    for (const name of ['alpha-prod', 'beta-prod', 'gamma-dev', 'delta-PROD', 'epsilon_x']) {
      await createPolicy(t, owner.token, { name });
    }
    const prod = await t.call('GET', '/v1/policies?name=prod', { token: owner.token });
    expect(prod.body.data.map((p: { name: string }) => p.name).sort()).toEqual([
      'alpha-prod',
      'beta-prod',
      'delta-PROD',
    ]);
    // LIKE wildcards in the filter are literal.
    const underscore = await t.call('GET', '/v1/policies?name=_', { token: owner.token });
    expect(underscore.body.data.map((p: { name: string }) => p.name)).toEqual(['epsilon_x']);

    const seen: string[] = [];
    let cursor: string | null = null;
    let pages = 0;
    do {
      const res: { status: number; body: { data: Array<{ name: string }>; next_cursor: string | null } } =
        await t.call('GET', `/v1/policies?limit=2${cursor ? `&cursor=${cursor}` : ''}`, {
          token: owner.token,
        });
      expect(res.status).toBe(200);
      expect(res.body.data.length).toBeLessThanOrEqual(2);
      seen.push(...res.body.data.map((p) => p.name));
      cursor = res.body.next_cursor;
      pages++;
    } while (cursor);
    expect(pages).toBe(3);
    expect(seen).toEqual(['epsilon_x', 'delta-PROD', 'gamma-dev', 'beta-prod', 'alpha-prod']);
    const badCursor = await t.call('GET', '/v1/policies?cursor=%25%25', { token: owner.token });
    expect(badCursor.status).toBe(400);
  });
});

describe('stats and cost trend', () => {
  async function insertRun(
    policyId: string,
    agentId: string,
    run: {
      status: 'running' | 'completed' | 'failed' | 'budget_exceeded' | 'force_stopped';
      costMicros: number;
      steps: number;
      startedAt: string;
      durationMs?: number;
      outcome?: 'success' | 'partial' | 'failed';
      hardLimitMicros?: number;
      name?: string;
      teamId?: TeamId;
    },
  ) {
    const started = new Date(run.startedAt);
    const id = newId('run');
    await t.database.db.insert(runs).values({
      id,
      teamId: run.teamId ?? u.team.id,
      agentId,
      policyId,
      policyName: 'p',
      policySnapshot: {},
      name: run.name ?? null,
      status: run.status,
      creationMethod: 'implicit',
      metadata: {},
      costMicros: run.costMicros,
      stepCount: run.steps,
      outcome: run.outcome ?? null,
      hardLimitMicros: run.hardLimitMicros ?? null,
      startedAt: started,
      endedAt: run.durationMs === undefined ? null : new Date(started.getTime() + run.durationMs),
      updatedAt: started,
    });
    return id;
  }

  it('answers zeros and nulls with no runs', async () => {
    const p = await createPolicy(t, u.token);
    const res = await t.call('GET', `/v1/policies/${p.id}/stats`, { token: u.token });
    expect(res.status).toBe(200);
    expect(res.body).toEqual({
      total_runs: 0,
      total_spend_usd: 0,
      avg_cost_per_run_usd: null,
      avg_steps_per_run: null,
      avg_duration_ms: null,
      success_rate: null,
      budget_utilization: null,
    });
    const trend = await t.call('GET', `/v1/policies/${p.id}/cost-trend`, { token: u.token });
    expect(trend.body).toEqual({ data: [], total: 0 });
  });

  it('aggregates the policy’s runs in the window, converting micro-dollars to USD', async () => {
    const p = await createPolicy(t, u.token);
    const agent = await createAgent(t, u.token, { policy_id: p.id });
    const r1 = await insertRun(p.id, agent.id, {
      status: 'completed',
      costMicros: 1_500_000,
      steps: 4,
      startedAt: '2026-01-01T10:00:00Z',
      durationMs: 2000,
      hardLimitMicros: 3_000_000,
      name: 'first',
    });
    const r2 = await insertRun(p.id, agent.id, {
      status: 'failed',
      costMicros: 500_000,
      steps: 1,
      startedAt: '2026-01-02T10:00:00Z',
      durationMs: 4000,
      outcome: 'failed',
    });
    const r3 = await insertRun(p.id, agent.id, {
      status: 'completed',
      costMicros: 250_000,
      steps: 2,
      startedAt: '2026-01-03T10:00:00Z',
      durationMs: 6000,
      outcome: 'success',
      hardLimitMicros: 1_000_000,
    });
    await insertRun(p.id, agent.id, {
      status: 'running',
      costMicros: 750_000,
      steps: 9,
      startedAt: '2026-01-04T10:00:00Z',
    });
    // Another policy's run does not count.
    const other = await createPolicy(t, u.token);
    await insertRun(other.id, agent.id, {
      status: 'completed',
      costMicros: 9_000_000,
      steps: 1,
      startedAt: '2026-01-02T00:00:00Z',
      durationMs: 1,
    });

    const all = await t.call('GET', `/v1/policies/${p.id}/stats`, { token: u.token });
    expect(all.status).toBe(200);
    expect(all.body.total_runs).toBe(4);
    expect(all.body.total_spend_usd).toBeCloseTo(3.0, 6);
    expect(all.body.avg_cost_per_run_usd).toBeCloseTo(0.75, 6);
    expect(all.body.avg_steps_per_run).toBe(4); // (4+1+2+9)/4
    expect(all.body.avg_duration_ms).toBe(4000); // ended runs only
    expect(all.body.success_rate).toBeCloseTo(2 / 3, 6);
    expect(all.body.budget_utilization).toBeCloseTo((0.5 + 0.25) / 2, 6);

    const window = await t.call(
      'GET',
      `/v1/policies/${p.id}/stats?since=2026-01-02T00:00:00Z&until=2026-01-03T00:00:00Z`,
      { token: u.token },
    );
    expect(window.body).toMatchObject({
      total_runs: 1,
      total_spend_usd: 0.5,
      success_rate: 0,
      avg_duration_ms: 4000,
    });

    const trend = await t.call('GET', `/v1/policies/${p.id}/cost-trend`, { token: u.token });
    expect(trend.status).toBe(200);
    expect(trend.body.total).toBe(3);
    expect(trend.body.data).toEqual([
      { run_id: r1, name: 'first', cost_usd: 1.5, step_count: 4, started_at: '2026-01-01T10:00:00.000Z' },
      { run_id: r2, name: null, cost_usd: 0.5, step_count: 1, started_at: '2026-01-02T10:00:00.000Z' },
      { run_id: r3, name: null, cost_usd: 0.25, step_count: 2, started_at: '2026-01-03T10:00:00.000Z' },
    ]);
    const latest = await t.call('GET', `/v1/policies/${p.id}/cost-trend?limit=2`, { token: u.token });
    expect(latest.body.data.map((e: { run_id: string }) => e.run_id)).toEqual([r2, r3]);
    expect(latest.body.total).toBe(3);
    const tooMany = await t.call('GET', `/v1/policies/${p.id}/cost-trend?limit=501`, { token: u.token });
    expect(tooMany.status).toBe(400);
    const backwards = await t.call(
      'GET',
      `/v1/policies/${p.id}/stats?since=2026-01-03T00:00:00Z&until=2026-01-02T00:00:00Z`,
      { token: u.token },
    );
    expect(backwards.status).toBe(400);
  });
});

describe('tenancy and scopes', () => {
  it("never shows or changes another team's policy (404 on every route)", async () => {
    const p = await createPolicy(t, u.token, { name: 'team-a-secret' });
    const b = await t.signup();
    const bKey = (await t.apiKey(b.token, ['admin'])).key;
    for (const token of [b.token, bKey]) {
      const routes: Array<[string, string, unknown?]> = [
        ['GET', `/v1/policies/${p.id}`],
        ['PUT', `/v1/policies/${p.id}`, { dry_run: true }],
        ['DELETE', `/v1/policies/${p.id}`],
        ['GET', `/v1/policies/${p.id}/versions`],
        ['GET', `/v1/policies/${p.id}/versions/1`],
        ['GET', `/v1/policies/${p.id}/stats`],
        ['GET', `/v1/policies/${p.id}/cost-trend`],
      ];
      for (const [method, url, body] of routes) {
        const res = await t.call(method, url, { token, ...(body ? { body } : {}) });
        expect(res.status, `${method} ${url}`).toBe(404);
        expect(JSON.stringify(res.body)).not.toContain('team-a-secret');
      }
      const list = await t.call('GET', '/v1/policies?name=team-a', { token });
      expect(list.status).toBe(200);
      expect(list.body.data).toEqual([]);
    }
    // The same name in B is B's own policy; A's is untouched.
    const mine = await put('/v1/policies/by-name/team-a-secret', { dry_run: true }, b.token);
    expect(mine.status).toBe(201);
    expect(mine.body.id).not.toBe(p.id);
    const still = await t.call('GET', `/v1/policies/${p.id}`, { token: u.token });
    expect(still.body).toMatchObject({ version: 1, dry_run: false });
    expect(await t.services.policies.findForTeam(b.team.id, p.id)).toBeUndefined();
  });

  it('lets a read key read and not write; refuses agent keys', async () => {
    const p = await createPolicy(t, u.token);
    const readKey = (await t.apiKey(u.token, ['read'])).key;
    expect((await t.call('GET', `/v1/policies/${p.id}`, { token: readKey })).status).toBe(200);
    const write = await put(`/v1/policies/${p.id}`, { dry_run: true }, readKey);
    expect(write.status).toBe(403);
    expect(write.body.error.code).toBe('insufficient_scope');
    const agent = await createAgent(t, u.token, { policy_id: p.id });
    const asAgent = await t.call('GET', `/v1/policies/${p.id}`, { token: agent.api_key });
    expect(asAgent.status).toBe(403);
    expect(asAgent.body.error.code).toBe('agent_key_not_allowed');
  });
});

describe('findForTeam (for the gateway)', () => {
  it('finds a live policy by id or name, defaults applied, and sees updates at once', async () => {
    const p = await createPolicy(t, u.token, { budget: { hard_limit_usd: 4 } });
    const byId = await t.services.policies.findForTeam(u.team.id, p.id);
    expect(byId).toMatchObject({ id: p.id, name: p.name, version: 1 });
    expect(byId!.spec.budget.hard_limit_usd).toBe(4);
    expect(byId!.spec.routing.connect_timeout_ms).toBe(10_000);
    expect(Object.isFrozen(byId!.spec.routing)).toBe(true);
    const byName = await t.services.policies.findForTeam(u.team.id, p.name);
    expect(byName?.id).toBe(p.id);

    await put(`/v1/policies/${p.id}`, { budget: { hard_limit_usd: 8 } });
    const after = await t.services.policies.findForTeam(u.team.id, p.id);
    expect(after).toMatchObject({ version: 2, spec: { budget: { hard_limit_usd: 8 } } });

    expect((await t.call('DELETE', `/v1/policies/${p.id}`, { token: u.token })).status).toBe(204);
    expect(await t.services.policies.findForTeam(u.team.id, p.id)).toBeUndefined();
    expect(await t.services.policies.findForTeam(u.team.id, 'no-such-policy')).toBeUndefined();
  });

  it('records the outbox rows of an update in the same transaction', async () => {
    const p = await createPolicy(t, u.token);
    await put(`/v1/policies/${p.id}`, { dry_run: true });
    const rows = await t.database.db
      .select()
      .from(events)
      .where(and(eq(events.subjectId, p.id), eq(events.type, 'policy.updated')));
    expect(rows).toHaveLength(1);
    expect(rows[0]!.data).toMatchObject({ version: 2, changed_fields: ['dry_run'] });
  });
});
