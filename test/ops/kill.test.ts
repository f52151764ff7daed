import { createServer, type Server } from 'node:http';
import type { AddressInfo } from 'node:net';
import pg from 'pg';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import type { Json } from '../support/factories.ts';
import { type MockCall, type MockLlm, type MockStep, startMockLlm } from '../support/mock-llm.ts';
import { type RunningServer, scratchDatabase, serverCall } from '../support/process.ts';
import { type Deployment, deployment, eventually, startRole, startSandboxHost } from '../support/roles.ts';
import { type RoundRobin, startRoundRobin } from '../support/round-robin.ts';

// The kill test: one deployment on one Postgres — 2 api servers behind a
// round-robin balancer written here, 2 workers, a scheduler and 2 sandbox
// hosts — under a mixed load: three agents of one team calling the gateway
// against one small credit balance (one of them under a rate limit), while
// another team runs tasks with tool calls in capsules, a playbook, and a
// webhook subscriber. In the middle, one api server, one worker and one host
// are SIGKILLed. Afterwards: every task ended, none charged twice, the
// balance overspent by at most one reservation per server, the rate limit
// held across servers, every task event reached the webhook, and the killed
// host's capsules are missing. Postgres only: the embedded database belongs
// to one process.

const PG_URL = process.env.PADDOCK_TEST_DATABASE_URL;
const STARTUP_MS = 180_000;
/** The balance the gateway agents share, in credits ($0.01 each): some 180 calls of the mock's usage. */
const GRANT_CREDITS = 20;
/** The rate-limited agent's calls a minute (a sliding minute: the whole test is inside one). */
const RATE_LIMIT = 20;
/** gpt-4o, $2.50 / $10 per million tokens: a call reserves its input (tokenised high) and max_tokens of output. */
const MAX_TOKENS = 100;
const INPUT_USD_PER_TOKEN = 2.5e-6;
const OUTPUT_USD_PER_TOKEN = 10e-6;
/** An upper bound on one call's reservation: far more input tokens than the short prompt can count. */
const ONE_RESERVATION_CREDITS = (200 * INPUT_USD_PER_TOKEN + MAX_TOKENS * OUTPUT_USD_PER_TOKEN) * 100;
const GATEWAY_AGENTS = ['limited', 'open-a', 'open-b'] as const;
const TASKS_BEFORE = 6;
const TASKS_AFTER = 4;
const TASK_PROMPT = 'kill test task';
const ENDED = new Set(['completed', 'failed', 'cancelled']);

/** A task's first call runs a command in its capsule, the next submits; gateway calls get a short text. */
function respond({ body }: MockCall): MockStep {
  const messages = (body.messages ?? []) as Array<{ role: string; content: unknown }>;
  const prompt = String(messages.find((m) => m.role === 'user')?.content ?? '');
  if (prompt.startsWith('gw '))
    return { text: 'noted', usage: { input: 20, output: MAX_TOKENS }, delayMs: 100 };
  if (messages.at(-1)?.role === 'tool')
    return { toolCalls: [{ name: 'submit_result', arguments: { result: 'survived' } }] };
  return { toolCalls: [{ name: 'bash', arguments: { command: 'sleep 1; echo ran' } }] };
}

/** Receives webhook deliveries: the events' ids, however many times each came. */
async function webhookReceiver(): Promise<{
  url: string;
  ids: Set<string>;
  deliveries: () => number;
  close: () => Promise<void>;
}> {
  const ids = new Set<string>();
  let count = 0;
  const server: Server = createServer((req, res) => {
    let body = '';
    req.on('data', (c) => {
      body += c;
    });
    req.on('end', () => {
      count++;
      try {
        const id = (JSON.parse(body) as { data?: { id?: string } }).data?.id;
        if (id) ids.add(id);
      } catch {
        // not JSON: counted, not an event
      }
      res.writeHead(204).end();
    });
  });
  await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
  return {
    url: `http://127.0.0.1:${(server.address() as AddressInfo).port}/hook`,
    ids,
    deliveries: () => count,
    close: () => new Promise((resolve) => server.close(() => resolve())),
  };
}

describe.runIf(PG_URL)('the kill test', { timeout: 6 * STARTUP_MS }, () => {
  let scratch: Awaited<ReturnType<typeof scratchDatabase>>;
  let db: pg.Client;
  let d: Deployment;
  let mock: MockLlm;
  let proxy: RoundRobin;
  let hook: Awaited<ReturnType<typeof webhookReceiver>>;
  const processes: RunningServer[] = [];
  const front = () => ({ url: proxy.url });
  // A client of a balancer whose server died: a request on a kept-alive
  // connection to the dead server fails, and the client tries again (each
  // failure uses up one such connection; a new one goes to a live server). A
  // POST whose answer was lost may have happened: the checks below read what
  // exists rather than trusting the answers.
  const call = async (token: string | null, method: string, path: string, body?: unknown) => {
    for (let attempt = 1; ; attempt++) {
      try {
        return await serverCall(front(), token, method, path, body);
      } catch (err) {
        if (attempt === 8) throw err;
      }
    }
  };

  beforeAll(async () => {
    scratch = await scratchDatabase(PG_URL!, 'kill');
    db = new pg.Client({ connectionString: scratch.url });
    mock = await startMockLlm({ respond });
    hook = await webhookReceiver();
    d = deployment(scratch.url, {
      PADDOCK_ALLOW_PRIVATE_UPSTREAMS: '127.0.0.1',
      PADDOCK_CREDITS: 'enforce',
      PADDOCK_GATEWAY_RATE_LIMIT_STORE: 'postgres',
      // A killed worker's tasks start again this soon; a silent host is unreachable this soon.
      PADDOCK_TASK_LOST_AFTER_SEC: '4',
      PADDOCK_HOST_UNREACHABLE_AFTER_SEC: '3',
    });
    // The first server migrates the new database; the rest start on it side by side.
    processes.push(await startRole('api', d, {}, STARTUP_MS));
    processes.push(
      ...(await Promise.all([
        startRole('api', d, {}, STARTUP_MS),
        startRole('worker', d, {}, STARTUP_MS),
        startRole('worker', d, {}, STARTUP_MS),
        startRole('scheduler', d, {}, STARTUP_MS),
      ])),
    );
    proxy = await startRoundRobin(
      processes.slice(0, 2).map((s) => {
        const u = new URL(s.url);
        return { host: u.hostname, port: Number(u.port) };
      }),
    );
    await db.connect();
  }, 4 * STARTUP_MS);

  afterAll(async () => {
    // What the processes said (warnings and errors: PADDOCK_LOG_LEVEL=warn), for a failure's reader.
    if (process.env.PADDOCK_KILL_TEST_LOGS)
      for (const p of processes) console.log(`--- ${p.url}\n${p.output().slice(-6000)}`);
    for (const p of processes) if (p.child.exitCode === null) p.child.kill('SIGKILL');
    await proxy?.close();
    await hook?.close();
    await mock?.close();
    await db?.end().catch(() => undefined);
    await scratch?.drop();
  });

  it('keeps every promise when an api server, a worker and a host are killed under load', async () => {
    const [apiA, , workerA] = processes as [RunningServer, RunningServer, RunningServer];
    // -- the two teams, through the balancer ---------------------------------------------------
    const signup = async (email: string) => {
      const res = await call(null, 'POST', '/v1/auth/signup', {
        email,
        password: 'a long password',
        name: email,
      });
      expect(res.status, JSON.stringify(res.body)).toBe(201);
      return [res.body.session_token as string, res.body.team.id as string] as const;
    };
    const [admin, adminTeam] = await signup('kill-admin@example.com'); // the first user: platform admin
    const [spender, spenderTeam] = await signup('kill-spender@example.com');
    const grant = async (team: string, amount: number) =>
      expect(
        (
          await call(admin, 'POST', `/v1/admin/teams/${team}/credits`, {
            type: 'grant',
            amount,
            reason: 'kill test',
          })
        ).status,
      ).toBe(201);
    await grant(spenderTeam, GRANT_CREDITS);
    await grant(adminTeam, 1_000);

    // -- two sandbox hosts, heartbeating through the balancer ------------------------------------
    const hosts = [];
    for (const tag of ['a', 'b']) {
      const created = await call(admin, 'POST', '/v1/hosts', { type: 'regular', tags: [`kill-${tag}`] });
      expect(created.status, JSON.stringify(created.body)).toBe(201);
      const host = await startSandboxHost(proxy.url, created.body.registration_token);
      processes.push(host);
      hosts.push(host);
    }
    const [hostA] = hosts as [RunningServer & { hostId: string }];

    // -- the spender team's gateway agents: one policy, one of them rate-limited -----------------
    const providerKey = async (token: string) =>
      (
        await call(token, 'POST', '/v1/provider-keys', {
          name: 'mock',
          provider: 'openai',
          api_key: 'sk-kill',
          base_url: mock.url,
        })
      ).body.id as string;
    const spenderKey = await providerKey(spender);
    const open = await call(spender, 'POST', '/v1/policies', { name: 'open' });
    const limited = await call(spender, 'POST', '/v1/policies', {
      name: 'limited',
      rate_limits: { max_requests_per_minute: RATE_LIMIT },
    });
    const agents: Record<string, { id: string; key: string }> = {};
    for (const name of GATEWAY_AGENTS) {
      const a = await call(spender, 'POST', '/v1/agents', {
        name,
        policy_id: name === 'limited' ? limited.body.id : open.body.id,
        provider_keys: { openai: spenderKey },
      });
      expect(a.status, JSON.stringify(a.body)).toBe(201);
      agents[name] = { id: a.body.id, key: a.body.api_key };
    }

    // -- the admin team's task agent, playbook and webhook --------------------------------------
    const adminKey = await providerKey(admin);
    const taskPolicy = await call(admin, 'POST', '/v1/policies', { name: 'tasks' });
    const runner = await call(admin, 'POST', '/v1/agents', {
      name: 'runner',
      policy_id: taskPolicy.body.id,
      provider_keys: { openai: adminKey },
      model: 'gpt-4o-mini',
    });
    expect(runner.status, JSON.stringify(runner.body)).toBe(201);
    const webhook = await call(admin, 'POST', '/v1/webhooks', { url: hook.url, event_types: ['task.*'] });
    expect(webhook.status, JSON.stringify(webhook.body)).toBe(201);
    const playbook = await call(admin, 'POST', '/v1/playbooks', {
      agent_id: runner.body.id,
      name: 'kill playbook',
      prompt: `${TASK_PROMPT} (playbook)`,
      trigger: 'manual',
    });
    expect(playbook.status, JSON.stringify(playbook.body)).toBe(201);

    // -- the load ---------------------------------------------------------------------------------
    const outcomes = new Map<string, Map<number, number>>(GATEWAY_AGENTS.map((n) => [n, new Map()]));
    let stop = false;
    const gatewayLoop = async (name: (typeof GATEWAY_AGENTS)[number], loop: number) => {
      for (let n = 0; !stop; n++) {
        const res = await fetch(`${proxy.url}/v1/chat/completions`, {
          method: 'POST',
          headers: { 'content-type': 'application/json', authorization: `Bearer ${agents[name]!.key}` },
          body: JSON.stringify({
            model: 'gpt-4o',
            max_tokens: MAX_TOKENS,
            stream: n % 2 === 1,
            messages: [{ role: 'user', content: `gw ${name} ${loop}.${n}` }],
          }),
        }).catch(() => undefined);
        // A connection the killed server cut has no status: 0.
        const status = res?.status ?? 0;
        await res?.text().catch(() => undefined);
        const seen = outcomes.get(name)!;
        seen.set(status, (seen.get(status) ?? 0) + 1);
        // Refused calls come back at once: pace them, as a client backing off would.
        if (status !== 200) await new Promise((r) => setTimeout(r, 50));
      }
    };
    const submit = async (i: number) => {
      const res = await call(admin, 'POST', '/v1/tasks', {
        agent_id: runner.body.id,
        prompt: `${TASK_PROMPT} ${i}`,
      });
      expect(res.status, JSON.stringify(res.body)).toBe(202);
      return res.body.id as string;
    };
    const loops = GATEWAY_AGENTS.flatMap((name) => [0, 1, 2].map((i) => gatewayLoop(name, i)));
    const taskIds: string[] = [];
    for (let i = 0; i < TASKS_BEFORE; i++) taskIds.push(await submit(i));
    const playbookRun = await call(admin, 'POST', `/v1/playbooks/${playbook.body.id}/run`);
    expect(playbookRun.status, JSON.stringify(playbookRun.body)).toBe(202);

    // A capsule of its own on host A (no task will stop it), and tasks' capsules there: then the kill.
    const pinned = await call(admin, 'POST', '/v1/capsules', {
      memory_mb: 256,
      disk_size_mb: 64,
      host_tags: ['kill-a'],
    });
    expect(pinned.status, JSON.stringify(pinned.body)).toBe(202);
    // The pinned one itself running too: one still starting when its host dies fails to start
    // (error), it does not go missing.
    await eventually('capsules running on host A, the pinned one among them', async () => {
      const { rows } = await db.query(
        `select count(*)::int as n, count(*) filter (where id = $2)::int as pinned
           from capsules where host_id = $1 and status = 'running'`,
        [hostA.hostId, pinned.body.id],
      );
      return rows[0].n > 1 && rows[0].pinned === 1 ? true : undefined;
    });
    for (const victim of [apiA, workerA, hostA]) victim.child.kill('SIGKILL');
    const killedAt = Date.now();
    for (let i = TASKS_BEFORE; i < TASKS_BEFORE + TASKS_AFTER; i++) taskIds.push(await submit(i));
    // The gateway load goes on a few seconds past the kills, through the surviving api server, and
    // until the credits ran out (a 402), however slowly a loaded machine made its calls: the
    // overspend bound below is then tested, not idle.
    const refusedForCredits = () => [...outcomes.values()].reduce((n, m) => n + (m.get(402) ?? 0), 0);
    await eventually(
      'the gateway load to spend the credits',
      async () => (Date.now() >= killedAt + 4_000 && refusedForCredits() > 0 ? true : undefined),
      180_000,
    );
    stop = true;
    await Promise.all(loops);

    // -- every task ended, with a reason when it failed ---------------------------------------------
    const tasks = await eventually(
      'every task to end',
      async () => {
        // Every task the agent has (a submit whose answer was lost, the playbook's), not only those answered.
        const all: Json[] = (await call(admin, 'GET', `/v1/tasks?agent_id=${runner.body.id}&limit=200`)).body
          .data;
        return all.length >= taskIds.length && all.every((t) => ENDED.has(String(t.status)))
          ? all
          : undefined;
      },
      240_000,
    );
    for (const t of tasks) {
      expect(['completed', 'failed'], `${t.id}: ${JSON.stringify(t.error)}`).toContain(t.status);
      if (t.status === 'failed') expect(t.error?.code, t.id).toMatch(/^[a-z_]+$/);
    }
    // The tasks sent after the kills ran on what was left.
    const after = tasks.filter((t) => taskIds.indexOf(String(t.id)) >= TASKS_BEFORE);
    expect(
      after.filter((t) => t.status === 'completed').length,
      JSON.stringify(tasks.map((t) => [t.status, t.error?.code, t.error?.message])),
    ).toBeGreaterThan(0);
    const run = await eventually(
      'the playbook run to end',
      async () => {
        const r = (await call(admin, 'GET', `/v1/playbook-runs/${playbookRun.body.id}`)).body;
        return ['completed', 'failed', 'cancelled'].includes(r.status) ? r : undefined;
      },
      240_000,
    );
    expect(['completed', 'failed']).toContain(run.status);

    // -- no call charged twice; credits overspent by at most a reservation per server --------------
    const charged = await eventually('every settled call to be written', async () => {
      const { rows } = await db.query(
        `select agent_id, count(*)::int as steps, count(distinct id)::int as distinct_steps
           from steps where team_id = $1 and type = 'llm_call' and status = 'success' group by agent_id`,
        [spenderTeam],
      );
      return rows.length > 0 ? rows : undefined;
    });
    const seenByProvider = (name: string) =>
      mock.requests.filter((r) => JSON.stringify(r.body).includes(`gw ${name} `)).length;
    for (const row of charged) {
      const name = GATEWAY_AGENTS.find((n) => agents[n]!.id === row.agent_id)!;
      expect(row.steps).toBe(row.distinct_steps);
      // At most one charged step per call the provider received (a call the kill cut may have none).
      expect(row.steps, name).toBeLessThanOrEqual(seenByProvider(name));
    }
    const { rows: doubled } = await db.query(
      `select step_id from ledger_entries where team_id = $1 group by step_id having count(*) > 1`,
      [spenderTeam],
    );
    expect(doubled).toEqual([]);
    const credits = await eventually(
      'no credits held for calls in flight',
      async () => {
        const c = (await call(spender, 'GET', '/v1/credits')).body;
        return c.held === 0 ? c : undefined;
      },
      // The killed server's leases are charged once a sweep finds them a minute unrenewed.
      240_000,
    );
    const { rows: abandoned } = await db.query(
      `select count(*)::int as n, coalesce(sum(-amount), 0)::bigint as micro_credits from credit_transactions
        where team_id = $1 and reason like 'a budget lease left by a server that stopped%'`,
      [spenderTeam],
    );
    const apiServers = 2;
    expect(credits.balance).toBeGreaterThanOrEqual(-apiServers * ONE_RESERVATION_CREDITS);
    // The load spent what was available (it ran until a 402, above): the bound was tested, not
    // idle. What is left is what the killed server held and the sweep gave back unspent.

    // -- the rate limit held across both api servers ---------------------------------------------
    const limitedAdmitted = seenByProvider('limited');
    expect(limitedAdmitted).toBeLessThanOrEqual(RATE_LIMIT + apiServers);
    expect(outcomes.get('limited')!.get(429) ?? 0).toBeGreaterThan(0);

    // -- every task event reached the webhook ------------------------------------------------------
    const { rows: taskEvents } = await db.query(
      `select id from events where team_id = $1 and type like 'task.%'`,
      [adminTeam],
    );
    expect(taskEvents.length).toBeGreaterThan(taskIds.length);
    await eventually(
      'every task event delivered',
      async () => (taskEvents.every((e) => hook.ids.has(e.id)) ? true : undefined),
      240_000,
    ).catch(() => {
      const missed = taskEvents.filter((e) => !hook.ids.has(e.id)).map((e) => e.id);
      throw new Error(
        `${missed.length} of ${taskEvents.length} task events never reached the webhook: ${missed.slice(0, 5).join(', ')}`,
      );
    });

    // -- the killed host's capsules are missing ------------------------------------------------------
    const hostRow = await eventually('host A unreachable', async () => {
      const h = (await call(admin, 'GET', `/v1/hosts/${hostA.hostId}`)).body;
      return h.status === 'unreachable' ? h : undefined;
    });
    expect(hostRow.status).toBe('unreachable');
    const { rows: onA } = await db.query(`select status from capsules where host_id = $1`, [hostA.hostId]);
    expect(onA.length).toBeGreaterThan(0);
    expect(onA.filter((c) => ['running', 'starting', 'paused'].includes(c.status))).toEqual([]);
    // Tasks' capsules there ended with their tasks (stopped) or failed to start (error); the one
    // nothing stopped went missing with its host.
    const lost = (await call(admin, 'GET', `/v1/capsules/${pinned.body.id}`)).body;
    expect(lost).toMatchObject({ status: 'missing', status_reason: 'host_unreachable' });

    console.log(
      `kill test: ${tasks.length} tasks (${tasks.filter((t) => t.status === 'completed').length} completed, ` +
        `${
          tasks
            .filter((t) => t.status === 'failed')
            .map((t) => t.error?.code)
            .join(', ') || 'none'
        } failed), ` +
        `playbook run ${run.status}; gateway calls ${JSON.stringify(Object.fromEntries([...outcomes].map(([k, v]) => [k, Object.fromEntries(v)])))}, ` +
        `provider saw ${GATEWAY_AGENTS.map((n) => `${n} ${seenByProvider(n)}`).join(', ')}; ` +
        `balance ${credits.balance} credits of ${GRANT_CREDITS} (bound -${(apiServers * ONE_RESERVATION_CREDITS).toFixed(3)}; ` +
        `${abandoned[0].n} abandoned leases consumed ${Number(abandoned[0].micro_credits) / 1e6} credits); ` +
        `rate-limited agent admitted ${limitedAdmitted} of ${RATE_LIMIT}/min; ` +
        `${taskEvents.length} task events, ${hook.ids.size} delivered (${hook.deliveries()} deliveries); ` +
        `host A capsules ${onA.map((c) => c.status).join(', ')}`,
    );
  });
});
