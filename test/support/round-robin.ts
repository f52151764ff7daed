import net from 'node:net';

/**
 * A TCP load balancer in front of several servers on this machine, as a
 * deployment puts one in front of its API servers: each connection goes to
 * the next backend in turn, and to the one after when that refuses (a killed
 * server). It works below HTTP, so keep-alive, SSE and WebSocket upgrades pass
 * as they are; a connection whose backend dies is cut, as a real balancer
 * would cut it.
 */
export interface RoundRobin {
  url: string;
  /** Connections each backend took, by its address. */
  readonly taken: ReadonlyMap<string, number>;
  close(): Promise<void>;
}

export async function startRoundRobin(
  backends: ReadonlyArray<{ host: string; port: number }>,
): Promise<RoundRobin> {
  let next = 0;
  const taken = new Map<string, number>();
  const open = new Set<net.Socket>();
  const server = net.createServer((client) => {
    open.add(client);
    client.on('close', () => open.delete(client));
    client.on('error', () => undefined);
    client.pause();
    const tryBackend = (left: number) => {
      if (left === 0) {
        client.destroy();
        return;
      }
      const target = backends[next++ % backends.length]!;
      const upstream = net.connect(target.port, target.host);
      let connected = false;
      upstream.once('connect', () => {
        connected = true;
        const key = `${target.host}:${target.port}`;
        taken.set(key, (taken.get(key) ?? 0) + 1);
        open.add(upstream);
        upstream.on('close', () => open.delete(upstream));
        client.pipe(upstream);
        upstream.pipe(client);
        client.resume();
      });
      upstream.on('error', () => {
        if (!connected) tryBackend(left - 1);
        else client.destroy();
      });
      upstream.on('close', () => {
        if (connected) client.destroy();
      });
      client.on('close', () => upstream.destroy());
    };
    tryBackend(backends.length);
  });
  await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
  const { port } = server.address() as net.AddressInfo;
  return {
    url: `http://127.0.0.1:${port}`,
    taken,
    async close() {
      for (const s of open) s.destroy();
      await new Promise<void>((resolve) => server.close(() => resolve()));
    },
  };
}
