import http from 'node:http';
import type { AddressInfo } from 'node:net';
import os from 'node:os';
import { Agent, request } from 'undici';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { ConfigError, loadConfig } from '../../src/config.ts';
import { classifyAddress } from '../../src/core/ip-address.ts';
import { AllowList, OutboundGuard, OutboundRefusedError } from '../../src/core/outbound-guard.ts';
import { EgressProxy } from '../../src/modules/sandboxes/host-side/egress.ts';
import { scriptedDns } from '../support/dns.ts';

// The outbound-address guard on its own: the address classifier over every
// special range and encoding, the platform admin's allow-list, and the
// connector that connects only to the address it checked (DNS rebinding).
// test/security/ssrf.test.ts drives the same guard through the API.

const allowing = (...entries: string[]) => AllowList.parse(entries).list;

describe('the address classifier', () => {
  it.each([
    ['0.0.0.0', 'unspecified'],
    ['0.1.2.3', 'unspecified'],
    ['127.0.0.1', 'loopback'],
    ['127.255.255.254', 'loopback'],
    ['10.0.0.1', 'private'],
    ['10.255.255.255', 'private'],
    ['172.16.0.1', 'private'],
    ['172.31.255.255', 'private'],
    ['192.168.1.1', 'private'],
    ['100.64.0.1', 'shared'],
    ['100.127.255.255', 'shared'],
    ['169.254.169.254', 'link_local'],
    ['224.0.0.1', 'multicast'],
    ['239.255.255.250', 'multicast'],
    ['192.0.0.8', 'reserved'],
    ['192.0.2.1', 'reserved'],
    ['192.88.99.1', 'reserved'],
    ['198.18.0.1', 'reserved'],
    ['198.19.255.255', 'reserved'],
    ['198.51.100.1', 'reserved'],
    ['203.0.113.1', 'reserved'],
    ['240.0.0.1', 'reserved'],
    ['255.255.255.255', 'reserved'],
    // Just outside the ranges.
    ['1.0.0.1', 'public'],
    ['8.8.8.8', 'public'],
    ['11.0.0.1', 'public'],
    ['100.63.255.255', 'public'],
    ['100.128.0.1', 'public'],
    ['126.255.255.255', 'public'],
    ['128.0.0.1', 'public'],
    ['169.253.255.255', 'public'],
    ['172.15.255.255', 'public'],
    ['172.32.0.1', 'public'],
    ['198.17.255.255', 'public'],
    ['198.20.0.1', 'public'],
    ['223.255.255.255', 'public'],
  ])('IPv4 %s is %s', (address, kind) => {
    expect(classifyAddress(address)).toBe(kind);
  });

  it.each([
    ['::', 'unspecified'],
    ['::1', 'loopback'],
    ['[::1]', 'loopback'],
    ['0:0:0:0:0:0:0:1', 'loopback'],
    // IPv4-mapped: what a dual-stack socket reaches is the IPv4 address.
    ['::ffff:127.0.0.1', 'loopback'],
    ['::ffff:7f00:1', 'loopback'],
    ['[::ffff:127.0.0.1]', 'loopback'],
    ['::ffff:169.254.169.254', 'link_local'],
    ['::ffff:10.0.0.1', 'private'],
    ['::ffff:0.0.0.0', 'unspecified'],
    ['::ffff:8.8.8.8', 'public'],
    // NAT64 (well-known prefix) and 6to4 carry an IPv4 address too.
    ['64:ff9b::127.0.0.1', 'loopback'],
    ['64:ff9b::a9fe:a9fe', 'link_local'],
    ['64:ff9b::808:808', 'public'],
    ['64:ff9b:1::1', 'private'],
    ['2002:7f00:1::1', 'loopback'],
    ['2002:c0a8:101::1', 'private'],
    ['2002:808:808::1', 'public'],
    ['fc00::1', 'private'],
    ['fd12:3456::1', 'private'],
    ['fec0::1', 'private'],
    ['fe80::1', 'link_local'],
    ['fe80::1%eth0', 'link_local'],
    ['ff02::1', 'multicast'],
    ['100::1', 'reserved'],
    ['2001::1', 'reserved'],
    ['2001:db8::1', 'reserved'],
    ['3fff::1', 'reserved'],
    ['5f00::1', 'reserved'],
    // Deprecated IPv4-compatible and SIIT forms, and anything outside global unicast (2000::/3).
    ['::127.0.0.1', 'reserved'],
    ['::ffff:0:7f00:1', 'reserved'],
    ['4000::1', 'reserved'],
    ['2606:4700:4700::1111', 'public'],
    ['2a00:1450:4001::1', 'public'],
  ])('IPv6 %s is %s', (address, kind) => {
    expect(classifyAddress(address)).toBe(kind);
  });

  it('is the egress proxy’s definition of private too', async () => {
    const egress = new EgressProxy();
    for (const address of ['100.64.0.1', '198.18.0.1', '240.0.0.1', '64:ff9b::7f00:1', '2002:7f00:1::1']) {
      expect(await egress.decide([address], address), address).toMatchObject({ ok: false, status: 403 });
    }
    expect(await egress.decide(['8.8.8.8'], '8.8.8.8')).toMatchObject({ ok: true });
  });
});

describe('the allow-list (PADDOCK_ALLOW_PRIVATE_UPSTREAMS)', () => {
  it('lets exactly the listed hosts, addresses and ranges through', () => {
    const guard = new OutboundGuard({
      allow: allowing('127.0.0.1', '10.0.0.0/8', 'fd00::/8', 'models.lan', '*.corp.example'),
      localAddresses: () => [],
    });
    expect(guard.refusal('127.0.0.1')).toBeUndefined();
    expect(guard.refusal('::ffff:127.0.0.1')).toBeUndefined();
    expect(guard.refusal('127.0.0.2')).toBe('loopback');
    expect(guard.refusal('::1')).toBe('loopback');
    expect(guard.refusal('10.200.0.1')).toBeUndefined();
    expect(guard.refusal('192.168.0.1')).toBe('private');
    expect(guard.refusal('fd00::5')).toBeUndefined();
    expect(guard.refusal('fc00::5')).toBe('private');
    // A listed name may resolve to anything; an unlisted one may not.
    expect(guard.refusal('192.168.0.7', 'models.lan')).toBeUndefined();
    expect(guard.refusal('192.168.0.7', 'MODELS.LAN.')).toBeUndefined();
    expect(guard.refusal('192.168.0.7', 'other.lan')).toBe('private');
    expect(guard.refusal('192.168.0.7', 'gpu.corp.example')).toBeUndefined();
    expect(guard.refusal('192.168.0.7', 'corp.example')).toBe('private');
    expect(guard.refusal('192.168.0.7', 'evilcorp.example')).toBe('private');
  });

  it('names the variable and every bad entry at start', () => {
    const ok = loadConfig({
      PADDOCK_ALLOW_PRIVATE_UPSTREAMS: '127.0.0.1, 10.0.0.0/8 models.lan,[::1],fd00::/8',
    });
    expect(ok.allowPrivateUpstreams).toEqual(['127.0.0.1', '10.0.0.0/8', 'models.lan', '[::1]', 'fd00::/8']);
    expect(loadConfig({}).allowPrivateUpstreams).toEqual([]);
    let error: unknown;
    try {
      loadConfig({ PADDOCK_ALLOW_PRIVATE_UPSTREAMS: 'http://x.example,10.0.0.0/33,1.2.3.4/x,ok.example' });
    } catch (err) {
      error = err;
    }
    expect(error).toBeInstanceOf(ConfigError);
    const problems = (error as ConfigError).problems;
    expect(problems).toHaveLength(3);
    for (const entry of ['http://x.example', '10.0.0.0/33', '1.2.3.4/x']) {
      expect(problems.some((p) => p.includes('PADDOCK_ALLOW_PRIVATE_UPSTREAMS') && p.includes(entry))).toBe(
        true,
      );
    }
  });
});

describe('resolving and checking a host', () => {
  it('treats localhost names as loopback without asking DNS, and normalises numeric IPv4 forms', async () => {
    const dns = scriptedDns({ 'localhost.example': [['8.8.8.8']] });
    const guard = new OutboundGuard({ resolve: dns.resolve, localAddresses: () => [] });
    for (const host of [
      'localhost',
      'LOCALHOST.',
      'api.localhost',
      '0x7f.1',
      '2130706433',
      '0177.0.0.1',
      '127.1',
      '[::ffff:127.0.0.1]',
    ]) {
      const err = await guard.resolve(host).catch((e: unknown) => e);
      expect(err, host).toBeInstanceOf(OutboundRefusedError);
      expect((err as OutboundRefusedError).reason, host).toBe('loopback');
    }
    expect(dns.asked).toEqual([]);
    expect(await guard.resolve('localhost.example')).toEqual([{ address: '8.8.8.8', family: 4 }]);
  });

  it('keeps only the usable answers of a name, and refuses one with none', async () => {
    const dns = scriptedDns({
      'mixed.example': [['10.0.0.1', '93.184.216.34', '::1']],
      'inside.example': [['169.254.169.254', 'fd00::1']],
    });
    const guard = new OutboundGuard({ resolve: dns.resolve, localAddresses: () => [] });
    expect(await guard.resolve('mixed.example')).toEqual([{ address: '93.184.216.34', family: 4 }]);
    await expect(guard.resolve('inside.example')).rejects.toThrow(
      'inside.example resolves to a link-local address',
    );
    // Checked ahead of time: a refusal is a message; a name that does not resolve (yet) passes.
    expect(await guard.checkUrl('http://inside.example/v1')).toMatch(/link-local/);
    expect(await guard.checkUrl('https://nowhere.example/v1')).toBeUndefined();
  });

  it("refuses this machine's own interface addresses, whatever their class", () => {
    const guard = new OutboundGuard({ localAddresses: () => ['93.184.216.34', 'fe80::1'] });
    expect(guard.refusal('93.184.216.34')).toBe('this_machine');
    expect(guard.refusal('93.184.216.35')).toBeUndefined();
    // By default the guard asks the OS.
    const mine = Object.values(os.networkInterfaces())
      .flatMap((list) => list ?? [])
      .map((i) => i.address);
    const real = new OutboundGuard();
    for (const address of mine) expect(real.refusal(address), address).toBeDefined();
  });

  it("refuses Paddock's own port on this machine even where the allow-list covers the address", () => {
    const guard = new OutboundGuard({ allow: allowing('127.0.0.0/8'), localAddresses: () => ['192.0.2.2'] });
    guard.protectOwnPort(8080);
    expect(guard.refusal('127.0.0.1', '127.0.0.1', 8081)).toBeUndefined();
    expect(guard.refusal('127.0.0.1', '127.0.0.1', 8080)).toBe('paddock_itself');
    expect(guard.refusal('0.0.0.0', '0.0.0.0', 8080)).toBe('paddock_itself');
    expect(guard.refusal('192.0.2.2', 'me.example', 8080)).toBe('paddock_itself');
  });
});

describe('connections through the guard', () => {
  // "Private": a service on this machine's loopback. "Public": a stand-in on 127.0.0.2 that the
  // allow-list admits, since a test cannot reach a real public address.
  let privateServer: http.Server;
  let publicServer: http.Server;
  let port: number;
  const hits = { private: 0, public: 0 };

  beforeAll(async () => {
    privateServer = http.createServer((_req, res) => {
      hits.private += 1;
      res.end('the private answer');
    });
    await new Promise<void>((resolve) => privateServer.listen(0, '127.0.0.1', resolve));
    port = (privateServer.address() as AddressInfo).port;
    publicServer = http.createServer((_req, res) => {
      hits.public += 1;
      res.end('the public answer');
    });
    await new Promise<void>((resolve) => publicServer.listen(port, '127.0.0.2', resolve));
  });
  afterAll(async () => {
    await new Promise((resolve) => privateServer.close(resolve));
    await new Promise((resolve) => publicServer.close(resolve));
  });

  async function fetchVia(guard: OutboundGuard, url: string): Promise<string> {
    const agent = new Agent({ connect: guard.undiciConnector({ timeoutMs: 2000 }) });
    try {
      const res = await request(url, { dispatcher: agent });
      return await res.body.text();
    } finally {
      await agent.close();
    }
  }

  it('connects to exactly the address it checked (DNS rebinding gets nowhere)', async () => {
    // Each question gets the other answer: a guard that resolved once to check and again to
    // connect would check 127.0.0.2 and connect to 127.0.0.1.
    const dns = scriptedDns({
      'rebind.example': [['127.0.0.2'], ['127.0.0.1'], ['127.0.0.2'], ['127.0.0.1']],
    });
    const guard = new OutboundGuard({ allow: allowing('127.0.0.2'), resolve: dns.resolve });
    const before = { ...hits };

    expect(await fetchVia(guard, `http://rebind.example:${port}/`)).toBe('the public answer');
    expect(dns.asked).toHaveLength(1);
    await expect(fetchVia(guard, `http://rebind.example:${port}/`)).rejects.toThrow(
      'rebind.example resolves to a loopback address',
    );
    expect(hits.private).toBe(before.private);
    expect(hits.public).toBe(before.public + 1);
  });

  it('refuses every encoding of a loopback literal before connecting', async () => {
    const guard = new OutboundGuard();
    const before = hits.private;
    for (const host of ['127.0.0.1', 'localhost', '[::ffff:127.0.0.1]', '0x7f.1', '2130706433', '0.0.0.0']) {
      await expect(fetchVia(guard, `http://${host}:${port}/`), host).rejects.toBeInstanceOf(
        OutboundRefusedError,
      );
    }
    expect(hits.private).toBe(before);
    // The same server, allowed by the admin: reached (so the refusals above were the guard's).
    expect(
      await fetchVia(new OutboundGuard({ allow: allowing('127.0.0.1') }), `http://localhost:${port}/`),
    ).toBe('the private answer');
  });

  it('guards http.request connections through its http.Agent', async () => {
    const guard = new OutboundGuard();
    const before = hits.private;
    const error = await new Promise<Error>((resolve) => {
      const req = http.request({ agent: guard.httpAgent(), hostname: 'localhost', port, path: '/' }, () =>
        resolve(new Error('answered')),
      );
      req.on('error', resolve);
      req.end();
    });
    expect(error).toBeInstanceOf(OutboundRefusedError);
    expect(hits.private).toBe(before);
  });
});
