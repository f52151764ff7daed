import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { type CallResult, uniqueEmail } from '../support/app.ts';
import { waitForCapsule } from '../support/capsules.ts';
import { expectError } from '../support/errors.ts';
import { createPolicy, type Json } from '../support/factories.ts';
import { type GatewayFixture, startGateway } from '../support/gateway.ts';

/**
 * Finding 7 of the security review: input the schemas let through failed
 * deep inside (a NUL in a statement, a lone surrogate in jsonb, recursion
 * over a 5 000-deep body, 1e300 in a budget) and answered 500. Each is a 400
 * that names the field, in the proxy's own shape on the proxy routes, and
 * writes nothing.
 */

let g: GatewayFixture;
let runId: string;
beforeAll(async () => {
  g = await startGateway({ env: { PADDOCK_ALLOW_PRIVATE_UPSTREAMS: '127.0.0.1' } });
  const call = await chat({ messages: [{ role: 'user', content: 'hello' }] });
  expect(call.status).toBe(200);
  runId = String(call.headers['x-paddock-run-id']);
}, 60_000);
afterAll(() => g?.close());

const session = () => ({ token: g.user.token });

function chat(body: Record<string, unknown>, headers?: Record<string, string>): Promise<CallResult> {
  return g.t.call('POST', '/v1/chat/completions', {
    token: g.agent.api_key,
    body: { model: 'gpt-4o-mini', max_tokens: 16, ...body },
    ...(headers ? { headers } : {}),
  });
}

function messages(body: Record<string, unknown>): Promise<CallResult> {
  return g.t.call('POST', '/v1/messages', {
    token: g.agent.api_key,
    body: { model: 'claude-3-5-haiku-latest', max_tokens: 16, ...body },
  });
}

function raw(method: string, url: string, text: string, token: string): Promise<CallResult> {
  return g.t.call(method, url, { token, body: text, headers: { 'content-type': 'application/json' } });
}

/** The OpenAI SDK's error shape, with Paddock's code and the bad fields. */
function expectOpenAiError(res: CallResult, code: string): Json {
  expect(res.status, JSON.stringify(res.body)).toBe(400);
  expect(res.body.error).toMatchObject({ type: 'invalid_request_error', code, param: null });
  return res.body.error;
}

function expectAnthropicError(res: CallResult, code: string): Json {
  expect(res.status, JSON.stringify(res.body)).toBe(400);
  expect(res.body.type).toBe('error');
  expect(res.body.error).toMatchObject({ type: 'invalid_request_error', code });
  return res.body.error;
}

async function run(): Promise<Json> {
  await g.t.services.runs.flush();
  const res = await g.t.call('GET', `/v1/runs/${runId}`, session());
  expect(res.status).toBe(200);
  return res.body;
}

async function stepCount(): Promise<number> {
  await g.t.services.runs.flush();
  const res = await g.t.call('GET', `/v1/runs/${runId}/steps`, { ...session(), query: { limit: '200' } });
  expect(res.status).toBe(200);
  return res.body.data.length;
}

const NUL_OR_SURROGATE = /NUL|surrogate/;

describe('NUL and lone surrogates', () => {
  it('signup with a NUL or a lone surrogate in the name is 400 naming it, and makes no user', async () => {
    for (const name of ['Eve\u0000', 'Eve\ud800', '\udfffEve']) {
      const email = uniqueEmail('nul');
      const res = await g.t.call('POST', '/v1/auth/signup', {
        body: { email, password: 'a long password', name },
      });
      expectError(res, 400, 'validation_failed');
      expect(Object.keys(res.body.error.details.fields)).toEqual(['name']);
      expect(res.body.error.details.fields.name).toMatch(NUL_OR_SURROGATE);
      // No such user: signing in fails as for any unknown email.
      const login = await g.t.call('POST', '/v1/auth/login', {
        body: { email, password: 'a long password' },
      });
      expectError(login, 401, 'invalid_credentials');
    }
  });

  it('metadata with NUL or a lone surrogate in a key or a value is 400 naming it, and the run is untouched', async () => {
    const cases: Array<[Record<string, unknown>, string]> = [
      [{ team: 'a\u0000b' }, 'metadata.team'],
      [{ 'te\u0000am': 'x' }, 'metadata.te\uFFFDam'],
      [{ team: '\ud800' }, 'metadata.team'],
      [{ '\udc00': 'x' }, 'metadata.\uFFFD'],
      [{ deep: [{ ok: 'fine', bad: 'x\u0000' }] }, 'metadata.deep.0.bad'],
    ];
    for (const [metadata, field] of cases) {
      const res = await g.t.call('POST', `/v1/runs/${runId}/complete`, { ...session(), body: { metadata } });
      expectError(res, 400, 'validation_failed');
      expect(Object.keys(res.body.error.details.fields)).toEqual([field]);
      expect(res.body.error.details.fields[field]).toMatch(NUL_OR_SURROGATE);
    }
    const after = await run();
    expect(after.status).toBe('running');
    expect(after.metadata ?? {}).toEqual({});
  });

  it('%00 or an encoded lone surrogate in a path parameter or a query string is 400 naming it', async () => {
    for (const id of ['%00', 'agt%00x']) {
      for (const method of ['GET', 'DELETE'] as const) {
        const res = await g.t.call(method, `/v1/agents/${id}`, session());
        expectError(res, 400, 'validation_failed');
        expect(Object.keys(res.body.error.details.fields)).toEqual(['id']);
      }
    }
    // The agent is still there.
    expect((await g.t.call('GET', `/v1/agents/${g.agent.id}`, session())).status).toBe(200);
    for (const query of ['name=%00', 'name=x%00', `cursor=${'%00'.repeat(3)}`]) {
      const res = await g.t.call('GET', `/v1/policies?${query}`, session());
      expectError(res, 400, 'validation_failed');
      expect(Object.keys(res.body.error.details.fields)).toEqual([query.split('=')[0]]);
    }
    // A lone surrogate cannot be percent-encoded as valid UTF-8: the router refuses it as a bad URL.
    expectError(await g.t.call('GET', '/v1/agents/%ED%A0%80', session()), 400, 'invalid_url');
  });

  it('a NUL or a lone surrogate in a proxied message reaches the provider as U+FFFD; in a run control it is 400', async () => {
    // Tool output of a binary file, or text cut mid-emoji: the call goes through, repaired.
    const openai = await chat({ messages: [{ role: 'user', content: 'hi\u0000there' }] });
    expect(openai.status, JSON.stringify(openai.body)).toBe(200);
    expect(g.mock.requests.at(-1)!.body).toMatchObject({ messages: [{ content: 'hi\uFFFDthere' }] });
    const anthropic = await messages({
      messages: [{ role: 'user', content: [{ type: 'text', text: 'a\ud800' }] }],
    });
    expect(anthropic.status, JSON.stringify(anthropic.body)).toBe(200);
    expect(g.mock.requests.at(-1)!.body).toMatchObject({ messages: [{ content: [{ text: 'a\uFFFD' }] }] });
    // A run control in a header, JSON with an escaped NUL in it, is Paddock's own input.
    const before = g.mock.requestCount;
    const steps = await stepCount();
    const header = await chat(
      { messages: [{ role: 'user', content: 'hi' }] },
      { 'x-paddock-run-metadata': '{"team": "a\\u0000b"}' },
    );
    expectOpenAiError(header, 'invalid_run_control');
    expect(g.mock.requestCount).toBe(before);
    expect(await stepCount()).toBe(steps);
  });

  it('a NUL in step JSON is 400 naming it, and no step is written', async () => {
    const steps = await stepCount();
    for (const [body, field] of [
      [{ request: { query: 'a\u0000' } }, 'request.query'],
      [{ response: ['ok', '\udfff'] }, 'response.1'],
      [{ name: 'grep\u0000' }, 'name'],
    ] as const) {
      const res = await g.t.call('POST', `/v1/runs/${runId}/steps`, {
        token: g.agent.api_key,
        body: { type: 'tool_call', name: 'grep', status: 'success', ...body },
      });
      expectError(res, 400, 'validation_failed');
      expect(Object.keys(res.body.error.details.fields)).toEqual([field]);
    }
    expect(await stepCount()).toBe(steps);
  });
});

describe('nesting', () => {
  const deepArray = (depth: number) => `${'['.repeat(depth)}${']'.repeat(depth)}`;
  const deepObject = (depth: number) => `${'{"a":'.repeat(depth)}1${'}'.repeat(depth)}`;

  it('a 5 000-deep body is 400 json_too_deep on API and proxy routes, and the server carries on', async () => {
    const steps = await stepCount();
    for (const text of [deepArray(5000), deepObject(5000)]) {
      const team = await raw('POST', '/v1/teams', text, g.user.token);
      expectError(team, 400, 'json_too_deep');
      expect(team.body.error.details).toEqual({ max_depth: 64 });
      const step = await raw(
        'POST',
        `/v1/runs/${runId}/steps`,
        `{"type": "tool_call", "name": "x", "status": "success", "request": ${text}}`,
        g.agent.api_key,
      );
      expectError(step, 400, 'json_too_deep');
      const proxied = await raw(
        'POST',
        '/v1/chat/completions',
        `{"model": "gpt-4o-mini", "messages": ${text}}`,
        g.agent.api_key,
      );
      expectOpenAiError(proxied, 'json_too_deep');
    }
    expect(await stepCount()).toBe(steps);
    expect((await g.t.call('GET', '/ready')).status).toBe(200);
  });

  it('64 levels are taken, 65 are not', async () => {
    const steps = await stepCount();
    const body = (depth: number) =>
      `{"type": "tool_call", "name": "deep", "status": "success", "request": ${deepArray(depth - 1)}}`;
    expectError(
      await raw('POST', `/v1/runs/${runId}/steps`, body(65), g.agent.api_key),
      400,
      'json_too_deep',
    );
    const ok = await raw('POST', `/v1/runs/${runId}/steps`, body(64), g.agent.api_key);
    expect(ok.status, JSON.stringify(ok.body)).toBe(201);
    expect(await stepCount()).toBe(steps + 1);
  });
});

describe('numbers', () => {
  it('max_tokens past any model (1e300, -1e300, 1e-300, 1e999, 2^53+1) is 400 in the provider’s shape, and reserves nothing', async () => {
    const before = g.mock.requestCount;
    const cost = (await run()).cost_usd;
    const values = ['1e300', '-1e300', '1e-300', '1e999', String(Number.MAX_SAFE_INTEGER + 2), '1.5', '0'];
    for (const value of values) {
      for (const field of ['max_tokens', 'max_completion_tokens']) {
        const res = await raw(
          'POST',
          '/v1/chat/completions',
          `{"model": "gpt-4o-mini", "messages": [{"role": "user", "content": "hi"}], "${field}": ${value}}`,
          g.agent.api_key,
        );
        const error = expectOpenAiError(res, 'validation_failed');
        expect(Object.keys(error.details.fields), `${field}=${value}`).toEqual([field]);
      }
      const anthropic = await raw(
        'POST',
        '/v1/messages',
        `{"model": "claude-3-5-haiku-latest", "messages": [{"role": "user", "content": "hi"}], "max_tokens": ${value}}`,
        g.agent.api_key,
      );
      expectAnthropicError(anthropic, 'validation_failed');
    }
    for (const temperature of ['1e300', '-1e300', '1e999']) {
      const res = await raw(
        'POST',
        '/v1/chat/completions',
        `{"model": "gpt-4o-mini", "messages": [{"role": "user", "content": "hi"}], "temperature": ${temperature}}`,
        g.agent.api_key,
      );
      expectOpenAiError(res, 'validation_failed');
    }
    expect(g.mock.requestCount).toBe(before);
    const after = await run();
    expect(Number.isFinite(after.cost_usd)).toBe(true);
    expect(after.cost_usd).toBe(cost);
  });

  it('policy limits past any real budget are 400 naming the field, and change nothing', async () => {
    const policy = await createPolicy(g.t, g.user.token);
    const cases: Array<[Record<string, unknown>, string]> = [
      [{ budget: { hard_limit_usd: 1e300 } }, 'budget.hard_limit_usd'],
      [{ budget: { max_cost_per_hour_usd: 1e300 } }, 'budget.max_cost_per_hour_usd'],
      [{ budget: { hard_limit_tokens: Number.MAX_SAFE_INTEGER + 2 } }, 'budget.hard_limit_tokens'],
      [{ budget: { alert_threshold_tokens: 1e300 } }, 'budget.alert_threshold_tokens'],
      [{ rate_limits: { max_tokens_per_minute: 1e300 } }, 'rate_limits.max_tokens_per_minute'],
      [
        { runaway_prevention: { enabled: true, max_steps_per_run: 1e300 } },
        'runaway_prevention.max_steps_per_run',
      ],
    ];
    for (const [body, field] of cases) {
      const created = await g.t.call('POST', '/v1/policies', {
        ...session(),
        body: { name: 'huge', ...body },
      });
      expectError(created, 400, 'validation_failed');
      expect(Object.keys(created.body.error.details.fields)).toEqual([field]);
      const updated = await g.t.call('PUT', `/v1/policies/${policy.id}`, { ...session(), body });
      expectError(updated, 400, 'validation_failed');
    }
    const after = await g.t.call('GET', `/v1/policies/${policy.id}`, session());
    expect(after.body.version).toBe(policy.version);
    const listed = await g.t.call('GET', '/v1/policies', { ...session(), query: { name: 'huge' } });
    expect(listed.body.data).toEqual([]);
  });
});

describe('multipart uploads', () => {
  it('no boundary, cut short, bad parameters or too many parts are 400 in the error shape, and write no file', async () => {
    const capsule = await g.t.call('POST', '/v1/capsules', { ...session(), body: {} });
    expect(capsule.status).toBe(202);
    await waitForCapsule(g.t, g.user.token, capsule.body.id, 'running');
    const b = 'paddockboundary';
    const part = (name: string, value: string, filename?: string) =>
      `--${b}\r\nContent-Disposition: form-data; name="${name}"${filename ? `; filename="${filename}"` : ''}\r\n\r\n${value}\r\n`;
    const whole = `${part('path', '/tmp/upload.txt')}${part('file', 'hello world', 'upload.txt')}--${b}--\r\n`;
    const cases: Array<[string, string, string, number, string]> = [
      ['no boundary', 'multipart/form-data', whole, 400, 'invalid_multipart'],
      ['an empty boundary', 'multipart/form-data; boundary=', whole, 400, 'invalid_multipart'],
      ['another boundary', 'multipart/form-data; boundary=other', whole, 400, 'invalid_multipart'],
      [
        'cut short in a field',
        `multipart/form-data; boundary=${b}`,
        whole.slice(0, 40),
        400,
        'invalid_multipart',
      ],
      [
        'cut short in the file',
        `multipart/form-data; boundary=${b}`,
        whole.slice(0, -20),
        400,
        'invalid_multipart',
      ],
      [
        // Fields past the limit (10) are not read: the path among them is not seen.
        'too many fields',
        `multipart/form-data; boundary=${b}`,
        `${part('x', 'y').repeat(20)}${whole}`,
        400,
        'path_required',
      ],
      [
        'a broken part header',
        `multipart/form-data; boundary=${b}`,
        `--${b}\r\nnonsense\r\n\r\nx\r\n--${b}--\r\n`,
        400,
        'file_required',
      ],
      [
        'a NUL in the path',
        `multipart/form-data; boundary=${b}`,
        whole.replace('/tmp/upload.txt', '/tmp/a\u0000b'),
        400,
        'validation_failed',
      ],
    ];
    for (const route of ['files/write', 'files/stream/write']) {
      for (const [label, contentType, body, status, code] of cases) {
        const res = await g.t.call('POST', `/v1/capsules/${capsule.body.id}/${route}`, {
          ...session(),
          body,
          headers: { 'content-type': contentType },
        });
        expect(res.status, `${route}: ${label}: ${JSON.stringify(res.body)}`).toBe(status);
        expectError(res, status, code);
      }
    }
    const read = await g.t.call('POST', `/v1/capsules/${capsule.body.id}/files/read`, {
      ...session(),
      body: { path: '/tmp/upload.txt' },
    });
    expectError(read, 404, 'not_found');
    // A well-formed upload still works.
    const ok = await g.t.call('POST', `/v1/capsules/${capsule.body.id}/files/write`, {
      ...session(),
      body: whole,
      headers: { 'content-type': `multipart/form-data; boundary=${b}` },
    });
    expect(ok.status).toBe(204);
  });
});
