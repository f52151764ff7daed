import http from 'node:http';
import type { AddressInfo } from 'node:net';
import OpenAI from 'openai';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { AllowList, OutboundGuard } from '../../src/core/outbound-guard.ts';
import type { ExecRequest } from '../../src/modules/sandboxes/host.ts';
import { RemoteHost } from '../../src/modules/sandboxes/remote-host.ts';
import { createTestApp, type SignedUpUser, type TestApp } from '../support/app.ts';
import { scriptedDns } from '../support/dns.ts';
import { createAgent, createPolicy, createProviderKey, type Json } from '../support/factories.ts';
import { type MockLlm, startMockLlm } from '../support/mock-llm.ts';

// Server-side request forgery: Paddock must not become a way into its own
// machine or network. A provider key's base_url and a BYOC host's address are
// user input; whatever their spelling or their DNS says, Paddock neither
// saves one it can tell is private nor connects to a private address at call
// time, and a private answer never reaches the agent. The mock provider
// listens on loopback: its request count proves nothing got through.

let mock: MockLlm;
/** No allow-list; DNS scripted (this machine has none for the internet). */
let strict: TestApp;
let admin: SignedUpUser;
/** The platform admin allows the mock's loopback address and 10.0.0.0/8. */
let lenient: TestApp;
let lenientUser: SignedUpUser;
const dns = scriptedDns({
  // Public when the key is saved, private when the proxy connects (DNS rebinding).
  'llm.rebind.test': [['93.184.216.34'], ['127.0.0.1']],
  'mapped.rebind.test': [['93.184.216.34'], ['::ffff:127.0.0.1']],
  'zero.rebind.test': [['93.184.216.34'], ['0.0.0.0']],
  'metadata.rebind.test': [['93.184.216.34'], ['169.254.169.254']],
  'byoc.rebind.test': [['93.184.216.34'], ['127.0.0.1']],
  // Names that resolve to private addresses when the key is saved.
  'internal.example': [['127.0.0.1']],
  'intranet.example': [['10.1.2.3', 'fd00::7']],
  'metadata.example': [['169.254.169.254']],
  'public.example': [['93.184.216.34']],
});

/** Hooks that start apps: each start takes a while on a loaded two-core machine. */
const APP_START_MS = 90_000;

beforeAll(async () => {
  mock = await startMockLlm();
  strict = await createTestApp({ start: new Date(), resolveHost: dns.resolve });
  admin = await strict.signup(); // the first user: platform admin
  lenient = await createTestApp({
    start: new Date(),
    env: { PADDOCK_ALLOW_PRIVATE_UPSTREAMS: '127.0.0.1,10.0.0.0/8' },
  });
  lenientUser = await lenient.signup();
}, 2 * APP_START_MS);
afterAll(async () => {
  await strict.close();
  await lenient.close();
  await mock.close();
});

/** A rejected promise's error (fails the test when it resolves). */
async function rejection(p: Promise<unknown>): Promise<unknown> {
  try {
    await p;
  } catch (err) {
    return err;
  }
  throw new Error('expected the call to fail');
}

describe('provider key base URLs', () => {
  const forbidden = () => [
    `http://127.0.0.1:${mock.port}`,
    `http://127.0.0.2:${mock.port}`,
    `http://localhost:${mock.port}/v1`,
    `http://LOCALHOST.:${mock.port}`,
    `http://api.localhost:${mock.port}`,
    `http://[::1]:${mock.port}`,
    `http://[::ffff:127.0.0.1]:${mock.port}`,
    `http://[64:ff9b::7f00:1]:${mock.port}`,
    `http://[2002:7f00:1::1]:${mock.port}`,
    `http://0.0.0.0:${mock.port}`,
    `http://0:${mock.port}`,
    `http://2130706433:${mock.port}`,
    `http://0x7f.0.0.1:${mock.port}`,
    `http://0177.0.0.1:${mock.port}`,
    `http://127.1:${mock.port}`,
    `http://127.0.0.1.:${mock.port}`,
    'http://169.254.169.254/latest/meta-data',
    'http://[fd00:ec2::254]/latest',
    'https://10.0.0.1/v1',
    'https://172.16.5.4/v1',
    'https://192.168.1.10/v1',
    'https://100.64.0.1/v1',
    'https://198.18.0.1/v1',
    'https://240.0.0.1/v1',
    'https://224.0.0.1/v1',
    'https://[fe80::1]/v1',
    `http://internal.example:${mock.port}`,
    'https://intranet.example/v1',
    'http://metadata.example/latest',
  ];

  it('refuses every spelling of a private address when a key is created, changed or upserted', async () => {
    const existing = await createProviderKey(strict, admin.token, {
      provider: 'openai_compatible',
      base_url: 'https://llm.example.com/v1',
    });
    for (const base_url of forbidden()) {
      const created = await strict.call('POST', '/v1/provider-keys', {
        token: admin.token,
        body: { name: `k-${Math.random()}`, provider: 'openai_compatible', api_key: 'sk-x', base_url },
      });
      expect(created.status, `${base_url}: ${JSON.stringify(created.body)}`).toBe(400);
      expect(created.body.error.code).toBe('validation_failed');
      expect(created.body.error.details.fields.base_url, base_url).toMatch(/refused/);

      const changed = await strict.call('PUT', `/v1/provider-keys/${existing.id}`, {
        token: admin.token,
        body: { base_url, api_key: 'sk-new' },
      });
      expect(changed.status, base_url).toBe(400);
      expect(changed.body.error.details.fields.base_url, base_url).toMatch(/refused/);

      const upserted = await strict.call('PUT', '/v1/provider-keys/by-name/upserted', {
        token: admin.token,
        body: { provider: 'openai_compatible', api_key: 'sk-x', base_url },
      });
      expect(upserted.status, base_url).toBe(400);
    }
    const after = await strict.call('GET', `/v1/provider-keys/${existing.id}`, { token: admin.token });
    expect(after.body.base_url).toBe('https://llm.example.com/v1');
    const list = await strict.call('GET', '/v1/provider-keys', { token: admin.token });
    expect(list.body.data.map((k: Json) => k.id)).toEqual([existing.id]);
    expect(mock.requestCount).toBe(0);
  });

  it('accepts public addresses and names that do not resolve yet (checked again at every call)', async () => {
    for (const base_url of [
      'https://public.example/v1',
      'https://93.184.216.34/v1',
      'https://nowhere.example',
    ]) {
      const res = await strict.call('POST', '/v1/provider-keys', {
        token: admin.token,
        body: { name: `ok-${Math.random()}`, provider: 'openai', api_key: 'sk-x', base_url },
      });
      expect(res.status, `${base_url}: ${JSON.stringify(res.body)}`).toBe(201);
    }
  });

  it('refuses at call time, without retrying, when the name resolves to a private address then', async () => {
    const keys = [];
    for (const host of ['llm', 'mapped', 'zero', 'metadata']) {
      keys.push(
        await createProviderKey(strict, admin.token, {
          provider: 'openai',
          api_key: `sk-${host}`,
          base_url: `http://${host}.rebind.test:${mock.port}`,
        }),
      );
    }
    const policy = await createPolicy(strict, admin.token, { routing: { max_retries: 6 } });
    const agent = await createAgent(strict, admin.token, {
      policy_id: policy.id,
      provider_keys: { openai: keys.map((k) => ({ key_id: k.id, weight: 1 })) },
    });

    const res = await strict.call('POST', '/v1/chat/completions', {
      token: agent.api_key,
      body: { model: 'gpt-4o', messages: [{ role: 'user', content: 'hi' }] },
    });

    expect(res.status).toBe(502);
    expect(res.body.error).toMatchObject({ type: 'provider_error', code: 'provider_error' });
    expect(res.body.error.message).toMatch(/addresses Paddock does not connect to/);
    // One attempt per key, though the plan had six: a refused key is not tried again.
    const attempts = res.body.error.details.attempts as Json[];
    expect(attempts).toHaveLength(4);
    for (const a of attempts) {
      expect(a).toMatchObject({ provider: 'openai', status: null });
      expect(a.message).toMatch(
        /^address_refused: the provider key's base_url: \w+\.rebind\.test resolves to/,
      );
    }
    expect(JSON.stringify(res.body)).not.toContain('mock model');
    expect(mock.requestCount).toBe(0);

    await strict.services.runs.flush();
    const steps = await strict.call('GET', `/v1/runs/${res.body.error.run_id}/steps`, { token: admin.token });
    const call = steps.body.data.find((s: Json) => s.type === 'llm_call');
    expect(call).toMatchObject({ status: 'error', error_kind: 'address_refused', cost_usd: 0 });
  });
});

describe('keys saved while a private address was allowed', () => {
  // Keys made on a server whose admin allowed the mock's address (or before the guard existed),
  // then called through a server that does not allow it: refused at connect time.
  let server: TestApp;
  let url: string;
  let agent: Json & { api_key: string };

  beforeAll(async () => {
    const keys = {
      openai: await createProviderKey(lenient, lenientUser.token, { provider: 'openai', base_url: mock.url }),
      anthropic: await createProviderKey(lenient, lenientUser.token, {
        provider: 'anthropic',
        base_url: mock.url,
      }),
    };
    const policy = await createPolicy(lenient, lenientUser.token, { routing: { max_retries: 3 } });
    agent = await createAgent(lenient, lenientUser.token, {
      policy_id: policy.id,
      provider_keys: { openai: keys.openai.id, anthropic: keys.anthropic.id },
    });
    server = await createTestApp({ shareWith: lenient });
    await server.app.listen({ port: 0, host: '127.0.0.1' });
    url = `http://127.0.0.1:${(server.app.server.address() as AddressInfo).port}`;
  }, APP_START_MS);
  afterAll(() => server.close());

  it('answers the agent in the SDK’s error shape, records the step, and relays nothing', async () => {
    const before = mock.requestCount;
    const openai = new OpenAI({ baseURL: `${url}/v1`, apiKey: agent.api_key, maxRetries: 0 });
    const err = await rejection(
      openai.chat.completions.create({ model: 'gpt-4o', messages: [{ role: 'user', content: 'hi' }] }),
    );
    expect(err).toBeInstanceOf(OpenAI.APIError);
    const e = err as InstanceType<typeof OpenAI.APIError>;
    expect(e.status).toBe(502);
    expect(e.code).toBe('provider_error');
    const body = e.error as Json;
    expect(body.details.attempts).toEqual([
      {
        provider: 'openai',
        status: null,
        message: expect.stringMatching(/^address_refused: .*127\.0\.0\.1 is a loopback address/),
      },
    ]);
    expect(mock.requestCount).toBe(before);

    await server.services.runs.flush();
    const steps = await server.call('GET', `/v1/runs/${body.run_id}/steps`, { token: lenientUser.token });
    expect(steps.body.data.find((s: Json) => s.type === 'llm_call')).toMatchObject({
      status: 'error',
      error_kind: 'address_refused',
    });
  });

  it("refuses a key pointed at Paddock's own port even where the allow-list covers its address", async () => {
    await lenient.app.listen({ port: 0, host: '127.0.0.1' });
    const port = (lenient.app.server.address() as AddressInfo).port;
    for (const base_url of [`http://127.0.0.1:${port}/v1`, `http://localhost:${port}`]) {
      const res = await lenient.call('POST', '/v1/provider-keys', {
        token: lenientUser.token,
        body: { name: `self-${Math.random()}`, provider: 'openai', api_key: 'sk-x', base_url },
      });
      expect(res.status, base_url).toBe(400);
      expect(res.body.error.details.fields.base_url).toMatch(/is Paddock itself/);
    }
    // The allow-list admits its address on other ports.
    const other = await lenient.call('POST', '/v1/provider-keys', {
      token: lenientUser.token,
      body: { name: 'ollama', provider: 'openai_compatible', api_key: 'sk-x', base_url: mock.url },
    });
    expect(other.status).toBe(201);
  });
});

describe('changing where a key sends its secret', () => {
  it('needs the api_key in the same request; without it nothing changes', async () => {
    const secret = 'sk-original-secret-1234';
    const key = await createProviderKey(strict, admin.token, {
      name: 'moving',
      provider: 'openai',
      api_key: secret,
      base_url: 'https://llm.example.com/v1',
    });
    const listBefore = await strict.call('GET', '/v1/provider-keys', { token: admin.token });

    for (const [method, path] of [
      ['PUT', `/v1/provider-keys/${key.id}`],
      ['PUT', '/v1/provider-keys/by-name/moving'],
    ] as const) {
      for (const base_url of ['https://attacker.example.net/v1', null]) {
        const res = await strict.call(method, path, {
          token: admin.token,
          body: { base_url },
        });
        expect(res.status, `${path} ${base_url}`).toBe(400);
        expect(res.body.error.code).toBe('validation_failed');
        expect(Object.keys(res.body.error.details.fields)).toEqual(['api_key']);
      }
    }
    const unchanged = await strict.call('GET', `/v1/provider-keys/${key.id}`, { token: admin.token });
    expect(unchanged.body).toMatchObject({
      base_url: 'https://llm.example.com/v1',
      updated_at: key.updated_at,
      rotated_at: null,
    });
    const forCall = await strict.services.providers.keyForCall(admin.team.id, key.id);
    expect(forCall).toMatchObject({ apiKey: secret, baseUrl: 'https://llm.example.com/v1' });
    expect((await strict.call('GET', '/v1/provider-keys', { token: admin.token })).body).toEqual(
      listBefore.body,
    );

    // Sending the same base_url is no change; with the api_key a change goes through.
    const same = await strict.call('PUT', `/v1/provider-keys/${key.id}`, {
      token: admin.token,
      body: { base_url: 'https://llm.example.com/v1' },
    });
    expect(same.status).toBe(200);
    const moved = await strict.call('PUT', `/v1/provider-keys/${key.id}`, {
      token: admin.token,
      body: { base_url: 'https://other.example.net/v1', api_key: 'sk-for-the-new-host' },
    });
    expect(moved.status, JSON.stringify(moved.body)).toBe(200);
    expect(moved.body.base_url).toBe('https://other.example.net/v1');
    expect(await strict.services.providers.keyForCall(admin.team.id, key.id)).toMatchObject({
      apiKey: 'sk-for-the-new-host',
      baseUrl: 'https://other.example.net/v1',
    });
  });
});

describe('BYOC host addresses', () => {
  async function byocHost(app: TestApp, token: string) {
    const res = await app.call('POST', '/v1/hosts', { token, body: { type: 'byoc' } });
    expect(res.status, JSON.stringify(res.body)).toBe(201);
    return { id: res.body.host.id as string, registration: res.body.registration_token as string };
  }

  it('refuses a private address at registration (keeping the token) and in heartbeats', async () => {
    const host = await byocHost(strict, admin.token);
    for (const address of [
      '127.0.0.1:7000',
      'localhost:7000',
      'a.localhost:7000',
      '[::1]:7000',
      '[::ffff:7f00:1]:7000',
      '0.0.0.0:7000',
      '2130706433:7000',
      '0x7f.1:7000',
      '169.254.169.254:80',
      '10.0.0.5:7000',
      'internal.example:7000',
    ]) {
      const res = await strict.call('POST', '/v1/hosts/register', {
        body: { token: host.registration, address },
      });
      expect(res.status, `${address}: ${JSON.stringify(res.body)}`).toBe(400);
      expect(res.body.error.code).toBe('validation_failed');
      expect(res.body.error.details.fields.address, address).toMatch(/refused/);
    }
    expect((await strict.call('GET', `/v1/hosts/${host.id}`, { token: admin.token })).body.status).toBe(
      'pending',
    );

    // The token was not used up: a public address registers with it.
    const registered = await strict.call('POST', '/v1/hosts/register', {
      body: { token: host.registration, address: 'byoc.rebind.test:7000' },
    });
    expect(registered.status, JSON.stringify(registered.body)).toBe(201);
    const hostToken = registered.body.token as string;

    for (const address of ['127.0.0.1:7001', 'localhost:7001', '[::ffff:7f00:1]:7001']) {
      const beat = await strict.call('POST', `/v1/hosts/${host.id}/heartbeat`, {
        headers: { 'x-host-token': hostToken },
        body: { address },
      });
      expect(beat.status, address).toBe(400);
      expect(beat.body.error.details.fields.address).toMatch(/refused/);
    }
    const row = await strict.call('GET', `/v1/hosts/${host.id}`, { token: admin.token });
    expect(row.body).toMatchObject({ status: 'online', address: 'byoc.rebind.test:7000' });
  });

  it("leaves the platform admin's own (regular) hosts alone, and honours the allow-list for BYOC", async () => {
    const regular = await strict.call('POST', '/v1/hosts', { token: admin.token, body: { type: 'regular' } });
    const registered = await strict.call('POST', '/v1/hosts/register', {
      body: { token: regular.body.registration_token, address: '127.0.0.1:7002' },
    });
    expect(registered.status).toBe(201);

    const allowed = await byocHost(lenient, lenientUser.token);
    const ok = await lenient.call('POST', '/v1/hosts/register', {
      body: { token: allowed.registration, address: '10.0.0.5:7000' },
    });
    expect(ok.status, JSON.stringify(ok.body)).toBe(201);
    const refused = await byocHost(lenient, lenientUser.token);
    const no = await lenient.call('POST', '/v1/hosts/register', {
      body: { token: refused.registration, address: '192.168.0.5:7000' },
    });
    expect(no.status).toBe(400);
  });

  describe('the control plane’s connections to a BYOC host', () => {
    // Stands in for a service on the control plane's loopback that a team points its host at.
    let target: http.Server;
    let port: number;
    const seen: string[] = [];
    beforeAll(async () => {
      target = http.createServer((req, res) => {
        seen.push(`${req.method} ${req.url} ${req.headers.authorization}`);
        res.setHeader('content-type', 'application/json');
        res.end(
          JSON.stringify({
            result: {
              stdout: '',
              stderr: '',
              exit_code: 0,
              duration_ms: 1,
              encoding: 'utf-8',
              truncated: false,
              timed_out: false,
            },
          }),
        );
      });
      target.on('upgrade', (req, socket) => {
        seen.push(`upgrade ${req.url} ${req.headers.authorization}`);
        socket.destroy();
      });
      await new Promise<void>((resolve) => target.listen(0, '127.0.0.1', resolve));
      port = (target.address() as AddressInfo).port;
    });
    afterAll(() => new Promise<void>((resolve) => target.close(() => resolve())));

    const exec = { cmd: 'id' } as unknown as ExecRequest;

    it('never carry the control token to an address the guard refuses, HTTP or WebSocket', async () => {
      const rebinding = scriptedDns({ 'byoc.example': [['127.0.0.1']] });
      for (const [address, guard] of [
        [`127.0.0.1:${port}`, new OutboundGuard()],
        [`byoc.example:${port}`, new OutboundGuard({ resolve: rebinding.resolve })],
      ] as const) {
        const remote = new RemoteHost('hst_test', address, 'pdc_control_secret', 'none', [], { guard });
        await expect(remote.exec('cap_x', exec), address).rejects.toThrow(/loopback address/);
        await expect(remote.followed('cap_x', '1'), address).rejects.toThrow(/loopback address/);
        await remote.close();
      }
      expect(seen).toEqual([]);

      // The same host, allowed by the platform admin: reached, so the refusals were the guard's.
      const allowed = new RemoteHost('hst_test', `127.0.0.1:${port}`, 'pdc_control_secret', 'none', [], {
        guard: new OutboundGuard({ allow: AllowList.parse(['127.0.0.1']).list }),
      });
      await allowed.exec('cap_x', exec);
      await allowed.close();
      expect(seen).toEqual(['POST /host/rpc/exec Bearer pdc_control_secret']);
      seen.length = 0;
    });

    describe('a host registered while its address was allowed', () => {
      let hostId: string;
      let server: TestApp;
      beforeAll(async () => {
        const host = await byocHost(lenient, lenientUser.token);
        hostId = host.id;
        const registered = await lenient.call('POST', '/v1/hosts/register', {
          body: { token: host.registration, address: `127.0.0.1:${port}` },
        });
        expect(registered.status, JSON.stringify(registered.body)).toBe(201);
        const tagged = await lenient.call('POST', `/v1/hosts/${host.id}/tags`, {
          token: lenientUser.token,
          body: { tag: 'team-box' },
        });
        expect(tagged.status).toBe(204);
        // The same database, served without the allow-list (started after the host registered).
        server = await createTestApp({ shareWith: lenient });
      }, APP_START_MS);
      afterAll(() => server.close());

      it('is not reached once it is not: its capsules cannot start', async () => {
        const res = await server.call('POST', '/v1/capsules', {
          token: lenientUser.token,
          body: { host_tags: ['team-box'] },
        });
        expect(res.status, JSON.stringify(res.body)).toBe(202);
        expect(res.body.host_id).toBe(hostId);
        await server.services.capsules.settled();
        const capsule = await server.call('GET', `/v1/capsules/${res.body.id}`, { token: lenientUser.token });
        expect(capsule.body).toMatchObject({ status: 'error' });
        expect(capsule.body.status_reason).toMatch(/127\.0\.0\.1 is a loopback address/);
        expect(seen).toEqual([]);
      });
    });
  });
});
