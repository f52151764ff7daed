// Prints how long a memory search takes on an agent holding BENCH_MEMORIES
// (100 000) memories: GET /v1/memories/search over real HTTP, one request at a
// time, p50 / p95 / p99, on PGlite and again on a fresh Postgres database when
// BENCH_DATABASE_URL is set. The server is built in this process (buildApp, as
// `paddock serve` builds it) so the memories can be seeded straight into its
// database in bulk (multi-row inserts, BENCH_SEED_BATCH a statement) rather
// than through 100 000 POSTs; the searches themselves go through the API.
// The memories are synthetic text: 8 to 30 words each, drawn from a vocabulary
// of 5 000 made-up words with Zipf frequencies (as words in text are), so some
// words are in thousands of memories and most in a few dozen. Each query is
// 1 to 3 words drawn the same way. The same searches are then timed as the
// memory_search tool makes them (the service's query alone: no HTTP, no auth).
import os from 'node:os';
import { sql } from 'drizzle-orm';
import { type AgentId, newId } from '../src/core/ids.ts';
import type { Database } from '../src/db/client.ts';
import { memories } from '../src/db/schema/index.ts';
import { onEachDatabase, withPaddock } from './in-process.ts';
import { percentile } from './load.ts';
import { api, positive, str } from './paddock.ts';

const MEMORIES = positive('BENCH_MEMORIES', 100_000);
const SEARCHES = positive('BENCH_SEARCHES', 500);
const WARMUP = 50;
const SEED_BATCH = positive('BENCH_SEED_BATCH', 2_000);
const LIMIT = positive('BENCH_SEARCH_LIMIT', 10);
const TARGET_P95_MS = 20;
const VOCABULARY = 5_000;

/** A deterministic generator, so every run searches the same memories with the same queries. */
function random(seed: number): () => number {
  let s = seed >>> 0;
  return () => {
    s = (s + 0x6d2b79f5) >>> 0;
    let t = s;
    t = Math.imul(t ^ (t >>> 15), t | 1);
    t ^= t + Math.imul(t ^ (t >>> 7), t | 61);
    return ((t ^ (t >>> 14)) >>> 0) / 2 ** 32;
  };
}

const SYLLABLES = [
  'ka',
  'lo',
  'mi',
  'ru',
  'te',
  'zan',
  'vor',
  'pel',
  'dis',
  'nu',
  'gra',
  'fo',
  'ben',
  'sil',
  'tar',
];

/** Made-up words (no English stop word among them), most frequent first. */
function vocabulary(rand: () => number): string[] {
  const words = new Set<string>();
  while (words.size < VOCABULARY) {
    const n = 2 + Math.floor(rand() * 3);
    let w = '';
    for (let i = 0; i < n; i++) w += SYLLABLES[Math.floor(rand() * SYLLABLES.length)];
    words.add(w);
  }
  return [...words];
}

/** Draws word ranks with Zipf frequencies (rank r with weight 1/(r+10): no one word is in every memory). */
function zipf(rand: () => number): () => number {
  const cumulative = new Float64Array(VOCABULARY);
  let sum = 0;
  for (let r = 0; r < VOCABULARY; r++) {
    sum += 1 / (r + 10);
    cumulative[r] = sum;
  }
  return () => {
    const x = rand() * sum;
    let lo = 0;
    let hi = VOCABULARY - 1;
    while (lo < hi) {
      const mid = (lo + hi) >> 1;
      if (cumulative[mid]! < x) lo = mid + 1;
      else hi = mid;
    }
    return lo;
  };
}

function sentence(words: string[], rank: () => number, rand: () => number, min: number, max: number): string {
  const n = min + Math.floor(rand() * (max - min + 1));
  return Array.from({ length: n }, () => words[rank()]).join(' ');
}

interface Figures {
  database: string;
  seedMs: number;
  latencies: Float64Array;
  hits: number[];
  p95NoHits: number;
  /** The same searches, as the memory_search tool makes them (the service's query, no HTTP or auth). */
  direct: Float64Array;
}

async function measure(label: string, database: Database): Promise<Figures> {
  return withPaddock('memories', database, async ({ built, base, token, teamId }) => {
    const policy = await api(base, 'POST', '/v1/policies', token, { name: 'bench-memories' });
    const agent = await api(base, 'POST', '/v1/agents', token, {
      name: 'bench-memories',
      policy_id: str(policy.id, 'policy id'),
    });
    const agentId = str(agent.id, 'agent id') as AgentId;

    const rand = random(13);
    const words = vocabulary(rand);
    const rank = zipf(rand);
    const seedStarted = performance.now();
    const now = new Date();
    for (let done = 0; done < MEMORIES; done += SEED_BATCH) {
      const rows = Array.from({ length: Math.min(SEED_BATCH, MEMORIES - done) }, () => ({
        id: newId('mem'),
        teamId,
        agentId,
        content: sentence(words, rank, rand, 8, 30),
        metadata: {},
        createdAt: now,
        updatedAt: now,
      }));
      await database.db.insert(memories).values(rows);
    }
    const seedMs = performance.now() - seedStarted;
    // As a server that has been running would: the planner's statistics are current.
    await database.db.execute(sql`analyze memories`);

    const queries = Array.from({ length: WARMUP + SEARCHES }, () => sentence(words, rank, rand, 1, 3));
    const latencies = new Float64Array(SEARCHES);
    const hits: number[] = [];
    for (let i = 0; i < queries.length; i++) {
      const q = new URLSearchParams({ agent_id: agentId, q: queries[i]!, limit: String(LIMIT) });
      const started = performance.now();
      const res = await fetch(`${base}/v1/memories/search?${q}`, {
        headers: { authorization: `Bearer ${token}` },
      });
      const body = (await res.json()) as { data?: unknown[] };
      const ms = performance.now() - started;
      if (res.status !== 200) throw new Error(`search answered ${res.status}: ${JSON.stringify(body)}`);
      if (i < WARMUP) continue;
      latencies[i - WARMUP] = ms;
      hits.push(body.data?.length ?? 0);
    }
    // A query of words no memory holds: the index answers at once.
    const none = new Float64Array(50);
    for (let i = 0; i < none.length; i++) {
      const q = new URLSearchParams({ agent_id: agentId, q: `unheardof${i} neverwritten${i}` });
      const started = performance.now();
      const res = await fetch(`${base}/v1/memories/search?${q}`, {
        headers: { authorization: `Bearer ${token}` },
      });
      await res.arrayBuffer();
      none[i] = performance.now() - started;
    }
    const direct = new Float64Array(SEARCHES);
    for (let i = 0; i < SEARCHES; i++) {
      const started = performance.now();
      await built.services.memories.searchForTask(teamId, agentId, queries[WARMUP + i]!, LIMIT);
      direct[i] = performance.now() - started;
    }
    return {
      database: label,
      direct: direct.sort(),
      seedMs,
      latencies: latencies.sort(),
      hits,
      p95NoHits: percentile(none.sort(), 95),
    };
  });
}

const f1 = (n: number) => n.toFixed(1);

async function main(): Promise<number> {
  const results = await onEachDatabase('memories', measure, {
    pglite: 'PGlite (embedded)',
    postgres: 'Postgres (a fresh database on BENCH_DATABASE_URL)',
  });
  if (!results) return 1;
  console.log('');
  console.log(
    `GET /v1/memories/search?limit=${LIMIT} on one agent's ${MEMORIES} memories, ${SEARCHES} searches one at a time (after ${WARMUP} not counted):`,
  );
  console.log('');
  console.log(
    '| database | seed (bulk insert) s | p50 ms | p95 ms | p99 ms | max ms | results p50 | p95 ms, no match | query alone p50 / p95 ms |',
  );
  console.log('|---|---|---|---|---|---|---|---|---|');
  for (const f of results) {
    const hits = [...f.hits].sort((a, b) => a - b);
    console.log(
      `| ${f.database} | ${f1(f.seedMs / 1000)} | ${f1(percentile(f.latencies, 50))} | ${f1(percentile(f.latencies, 95))} | ` +
        `${f1(percentile(f.latencies, 99))} | ${f1(f.latencies.at(-1)!)} | ${hits[Math.floor(hits.length / 2)]} | ${f1(f.p95NoHits)} | ` +
        `${f1(percentile(f.direct, 50))} / ${f1(percentile(f.direct, 95))} |`,
    );
  }
  console.log('');
  for (const f of results) {
    const p95 = percentile(f.latencies, 95);
    console.log(
      `${f.database}: p95 ${f1(p95)} ms, target under ${TARGET_P95_MS} ms: ${p95 < TARGET_P95_MS ? 'met' : 'MISSED'}`,
    );
  }
  console.log(`load average ${os.loadavg().map(f1).join(' ')} at the end`);
  return 0;
}

process.exitCode = await main();
