// The gateway benchmark's two load generators: autocannon, and an open-loop
// scheduler on undici that times every request to the nanosecond.
import autocannon from 'autocannon';
import { Agent, request } from 'undici';

export interface Target {
  /** The full URL of POST /v1/chat/completions. */
  url: string;
  headers: Record<string, string>;
  body: string;
}

export interface LoadFigures {
  /**
   * Requests started; undefined for autocannon, whose count adds each
   * connection's per-second allowance when it connects.
   */
  sent: number | undefined;
  /** Responses received, any status. */
  completed: number;
  /** Requests that got no response: refused or reset connections, timeouts. */
  errors: number;
  non2xx: number;
  durationSec: number;
  p50Ms: number;
  p99Ms: number;
}

export interface LoadOptions {
  /** Requests a second; undefined = as fast as the server answers. */
  ratePerSec: number | undefined;
  durationSec: number;
  connections: number;
}

/**
 * autocannon records latencies in whole milliseconds. Its rate limit is not an
 * open-loop schedule: each connection sends its share of the second's requests
 * back to back, then waits for the next second. Its coordinated-omission
 * correction assumes a 1 ms interval whatever the rate, so it would add
 * made-up samples below the real ones; it is turned off.
 */
export async function runAutocannon(target: Target, options: LoadOptions): Promise<LoadFigures> {
  const result = await autocannon({
    url: target.url,
    method: 'POST',
    headers: target.headers,
    body: target.body,
    connections: options.connections,
    duration: options.durationSec,
    timeout: 10,
    ...(options.ratePerSec === undefined
      ? {}
      : { overallRate: options.ratePerSec, ignoreCoordinatedOmission: true }),
  });
  return {
    sent: undefined,
    completed: result.requests.total,
    errors: result.errors,
    non2xx: result.non2xx,
    durationSec: result.duration,
    p50Ms: result.latency.p50,
    p99Ms: result.latency.p99,
  };
}

export interface OpenLoopFigures extends LoadFigures {
  /** How late the scheduler sent requests (its own timer resolution and event loop), p99. */
  sendLagP99Ms: number;
}

/**
 * Sends request i at start + i / rate whether or not earlier ones have been
 * answered (open loop), over a keep-alive pool, and times each from the moment
 * it is handed to undici until its body has been read. Percentiles are exact
 * (sorted samples, nearest rank), not from a histogram.
 */
export async function runOpenLoop(
  target: Target,
  options: LoadOptions & { ratePerSec: number; drainTimeoutMs?: number },
): Promise<OpenLoopFigures> {
  const total = Math.round(options.ratePerSec * options.durationSec);
  const intervalNs = 1e9 / options.ratePerSec;
  const latenciesMs = new Float64Array(total);
  const lagsMs = new Float64Array(total);
  const dispatcher = new Agent({
    connections: options.connections,
    pipelining: 1,
    keepAliveTimeout: 30_000,
    keepAliveMaxTimeout: 30_000,
  });
  let answered = 0;
  let lastAnsweredAt: bigint | undefined;
  let errors = 0;
  let non2xx = 0;
  const inFlight = new Set<Promise<void>>();

  const send = (i: number, due: bigint): void => {
    const sentAt = process.hrtime.bigint();
    lagsMs[i] = Number(sentAt - due) / 1e6;
    const done = request(target.url, {
      method: 'POST',
      headers: target.headers,
      body: target.body,
      dispatcher,
      headersTimeout: 10_000,
      bodyTimeout: 10_000,
    })
      .then(async (res) => {
        await res.body.arrayBuffer();
        const now = process.hrtime.bigint();
        latenciesMs[answered] = Number(now - sentAt) / 1e6;
        answered += 1;
        lastAnsweredAt = now;
        if (res.statusCode < 200 || res.statusCode > 299) non2xx += 1;
      })
      .catch(() => {
        errors += 1;
      })
      .finally(() => inFlight.delete(done));
    inFlight.add(done);
  };

  const start = process.hrtime.bigint();
  let next = 0;
  while (next < total) {
    const now = process.hrtime.bigint();
    while (next < total) {
      const due = start + BigInt(Math.round(next * intervalNs));
      if (due > now) break;
      send(next, due);
      next += 1;
    }
    if (next >= total) break;
    // Sleep until the next request is due; timers fire ≥ 1 ms late, which the lag figure shows.
    const dueNs = Number(start + BigInt(Math.round(next * intervalNs)) - process.hrtime.bigint());
    await new Promise((resolve) => setTimeout(resolve, Math.max(0, Math.floor(dueNs / 1e6))));
  }
  // A server that cannot keep up has a backlog: give it a bounded time, then count the rest as errors.
  const sentAllAt = process.hrtime.bigint();
  const drained = Promise.all(inFlight).then(() => true);
  let timer: NodeJS.Timeout | undefined;
  const late = new Promise<false>((resolve) => {
    timer = setTimeout(() => resolve(false), options.drainTimeoutMs ?? 30_000);
  });
  const inTime = await Promise.race([drained, late]);
  clearTimeout(timer);
  await (inTime ? dispatcher.close() : dispatcher.destroy());
  await Promise.allSettled(inFlight);

  // Only answered requests have a latency (errors would be a time-out, not a measurement).
  const latencies = latenciesMs.subarray(0, answered).sort();
  const lags = lagsMs.subarray(0, next).sort();
  return {
    sent: total,
    completed: answered,
    errors,
    non2xx,
    // Until the last answer: a server that fell behind achieved less than the rate offered.
    durationSec: Number((lastAnsweredAt ?? sentAllAt) - start) / 1e9,
    p50Ms: percentile(latencies, 50),
    p99Ms: percentile(latencies, 99),
    sendLagP99Ms: percentile(lags, 99),
  };
}

/** Nearest rank on sorted samples; NaN when there are none. */
export function percentile(sorted: Float64Array, p: number): number {
  if (sorted.length === 0) return Number.NaN;
  const rank = Math.ceil((p / 100) * sorted.length);
  return sorted[Math.min(sorted.length, Math.max(1, rank)) - 1]!;
}
