import { createServer, type Server } from 'node:http';
import type { AddressInfo } from 'node:net';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { EgressProxy, hostAllowed } from '../../src/modules/sandboxes/host-side/egress.ts';
import { createTestApp } from '../support/app.ts';
import { waitForCapsule } from '../support/capsules.ts';
import type { Json } from '../support/factories.ts';

// Capsules created with network.allow reach the network only through
// Paddock's egress proxy, which lets through the allowed names and never the
// host's loopback or private addresses (unless the operator allows them).

/** curl through the capsule's proxy (its no_proxy exempts localhost, which these tests use as the name). */
const VIA = "curl --noproxy '' -s -m 5";

let target: Server;
let port: number;
beforeAll(async () => {
  // A service on the host's loopback: what a capsule must not reach by default.
  target = createServer((req, res) => res.end(`target saw ${req.method} ${req.headers.host}${req.url}`));
  await new Promise<void>((resolve) => target.listen(0, '127.0.0.1', resolve));
  port = (target.address() as AddressInfo).port;
});
afterAll(() => new Promise<void>((resolve) => target.close(() => resolve())));

describe('allow rules', () => {
  it('matches exact names and *.domain subdomains, case-insensitively', () => {
    const allow = ['api.example.com', '*.pypi.org'];
    expect(hostAllowed(allow, 'api.example.com')).toBe(true);
    expect(hostAllowed(allow, 'API.Example.com.')).toBe(true);
    expect(hostAllowed(allow, 'files.pypi.org')).toBe(true);
    expect(hostAllowed(allow, 'a.b.pypi.org')).toBe(true);
    expect(hostAllowed(allow, 'pypi.org')).toBe(false);
    expect(hostAllowed(allow, 'evilpypi.org')).toBe(false);
    expect(hostAllowed(allow, 'example.com')).toBe(false);
    expect(hostAllowed(allow, 'api.example.com.evil.net')).toBe(false);
  });

  it('refuses loopback, private and link-local addresses even for allowed names', async () => {
    const proxy = new EgressProxy();
    for (const host of ['localhost', '127.0.0.1', '10.1.2.3', '169.254.169.254', '192.168.1.1', '[::1]']) {
      const d = await proxy.decide([host.replace(/^\[|\]$/g, '')], host);
      expect(d, host).toMatchObject({ ok: false, status: 403 });
    }
    expect(await proxy.decide(['93.184.216.34'], '93.184.216.34')).toMatchObject({ ok: true });
    expect(await proxy.decide(['a.example'], 'b.example')).toMatchObject({ ok: false, status: 403 });
    const lan = new EgressProxy({ allowPrivate: true });
    expect(await lan.decide(['localhost'], 'localhost')).toMatchObject({ ok: true });
  });
});

async function capsuleApp(env: NodeJS.ProcessEnv = {}) {
  const t = await createTestApp({ start: new Date(), env: { PADDOCK_SANDBOX_DRIVER: 'bwrap', ...env } });
  const u = await t.signup();
  const api = (method: string, url: string, body?: unknown) =>
    t.call(method, url, { token: u.token, ...(body !== undefined ? { body } : {}) });
  const running = async (body: Record<string, unknown>): Promise<Json> => {
    const res = await api('POST', '/v1/capsules', { memory_mb: 256, disk_size_mb: 64, ...body });
    expect(res.status, JSON.stringify(res.body)).toBe(202);
    return waitForCapsule(t, u.token, res.body.id, 'running');
  };
  const sh = async (id: string, cmd: string) => (await api('POST', `/v1/capsules/${id}/exec`, { cmd })).body;
  return { t, u, api, running, sh };
}

describe('capsules with network.allow (bwrap)', () => {
  let a: Awaited<ReturnType<typeof capsuleApp>>;
  beforeAll(async () => {
    a = await capsuleApp();
  });
  afterAll(() => a.t.close());

  it('has no proxy and no way out without network', async () => {
    const c = await a.running({});
    expect(c.network).toBeNull();
    const out = await a.sh(c.id, `echo "[$HTTP_PROXY]"; curl -sS -m 3 http://127.0.0.1:${port}/`);
    expect(out.stdout).toContain('[]');
    expect(out.exit_code).not.toBe(0);
    expect(out.stdout).not.toContain('target saw');
  });

  it("refuses names off the list and never reaches the host's loopback, even by an allowed name", async () => {
    const c = await a.running({ network: { allow: ['localhost', '*.example.test'] } });
    expect(c.network).toEqual({ allow: ['localhost', '*.example.test'] });
    const env = await a.sh(c.id, 'echo $HTTPS_PROXY');
    expect(env.stdout).toMatch(/^http:\/\/127\.0\.0\.1:\d+\n$/);
    // Plain HTTP through the proxy: the allowed name resolves to loopback, so it is refused.
    const plain = await a.sh(c.id, `${VIA} -o /dev/null -w '%{http_code}' http://localhost:${port}/`);
    expect(plain.stdout).toBe('403');
    // A tunnel to it is refused the same way.
    const tunnel = await a.sh(c.id, `${VIA} -S -p http://localhost:${port}/ 2>&1`);
    expect(tunnel.exit_code).not.toBe(0);
    expect(tunnel.stdout).toMatch(/403/);
    // Not on the list at all.
    const other = await a.sh(c.id, `${VIA} -o /dev/null -w '%{http_code}' http://127.0.0.1:${port}/`);
    expect(other.stdout).toBe('403');
    // Around the proxy there is nothing.
    const direct = await a.sh(c.id, `curl -sS -m 3 --noproxy '*' http://127.0.0.1:${port}/`);
    expect(direct.exit_code).not.toBe(0);
    expect(direct.stdout).not.toContain('target saw');
  });
});

describe('capsules with network.allow where private addresses are allowed', () => {
  let a: Awaited<ReturnType<typeof capsuleApp>>;
  beforeAll(async () => {
    a = await capsuleApp({ PADDOCK_SANDBOX_EGRESS_PRIVATE: 'true' });
  });
  afterAll(() => a.t.close());

  it('reaches an allowed name by plain HTTP and through a CONNECT tunnel, and nothing else', async () => {
    const c = await a.running({ network: { allow: ['localhost'] } });
    const plain = await a.sh(c.id, `${VIA} -S http://localhost:${port}/hello?x=1`);
    expect(plain.stdout).toBe(`target saw GET localhost:${port}/hello?x=1`);
    const tunnel = await a.sh(c.id, `${VIA} -S -p -X POST -d hi http://localhost:${port}/t`);
    expect(tunnel.stdout).toBe(`target saw POST localhost:${port}/t`);
    const off = await a.sh(c.id, `${VIA} -o /dev/null -w '%{http_code}' http://127.0.0.1:${port}/`);
    expect(off.stdout).toBe('403');
    // A second capsule's list is its own.
    const d = await a.running({ network: { allow: ['example.test'] } });
    const denied = await a.sh(d.id, `${VIA} -o /dev/null -w '%{http_code}' http://localhost:${port}/`);
    expect(denied.stdout).toBe('403');
  });
});
