import { sql } from 'drizzle-orm';
import { afterAll, beforeAll, describe, expect, it, vi } from 'vitest';
import type { TaskPorts } from '../../src/modules/tasks/ports.ts';
import type { Json } from '../support/factories.ts';
import { startTasks, type TaskFixture } from '../support/tasks.ts';

let f: TaskFixture;

beforeAll(async () => {
  f = await startTasks();
});
afterAll(async () => {
  await f?.close();
});

const call = (method: string, url: string, body?: unknown, token = f.user.token) =>
  f.t.call(method, url, { token, ...(body !== undefined ? { body } : {}) });

/** Waits (real time) until the workspace has one of `statuses`. */
async function workspaceUntil(id: string, statuses: string[], timeoutMs = 30_000): Promise<Json> {
  const until = Date.now() + timeoutMs;
  for (;;) {
    const res = await call('GET', `/v1/workspaces/${id}`);
    if (statuses.includes(res.body.status) && res.body.current_task_id === null) return res.body;
    if (Date.now() > until) throw new Error(`workspace ${id} is still ${res.body.status}`);
    await new Promise((r) => setTimeout(r, 25));
  }
}

/**
 * Waits for an ended workspace's capsule to be stopping or stopped. The
 * capsule goes after the workspace's row moves, and the server's own sweep
 * (on real timers here) may be the one that ended it, still on its way to
 * the capsule when the test's call or sweep returns.
 */
async function capsuleGone(capsuleId: string): Promise<void> {
  await vi.waitFor(
    async () => {
      await f.t.services.capsules.settled();
      expect(['stopping', 'stopped']).toContain((await call('GET', `/v1/capsules/${capsuleId}`)).body.status);
    },
    { timeout: 10_000, interval: 50 },
  );
}

async function sessionAgent() {
  return f.agent({ agent: { idle_timeout_sec: 60, session_ttl_sec: 600 } });
}

/** The conversation a model request carried, as "role: content" lines (tool turns aside). */
const said = (body: unknown) =>
  ((body as { messages: Json[] }).messages ?? [])
    .filter((m) => m.role === 'user' || (m.role === 'assistant' && m.content))
    .map((m) => `${m.role}: ${m.content}`);

describe('a workspace (a session)', () => {
  it('a session of three messages keeps files and conversation across an idle pause and resume', async () => {
    const agent = await sessionAgent();
    f.mock.reset();
    f.script([
      { tool: 'write_file', args: { path: 'notes.txt', content: 'remember the lighthouse\n' } },
      { text: 'I wrote notes.txt.' },
      { text: '"Lighthouse notes."' },
    ]);
    const first = await f.submit({
      agent_id: agent.id,
      prompt: 'write down the lighthouse',
      mode: 'session',
    });
    expect(first).toMatchObject({ mode: 'session', status: 'running' });
    expect(first.workspace_id).toMatch(/^ws_/);
    const wsId = first.workspace_id;
    expect((await f.finished(first.id)).task).toMatchObject({
      status: 'completed',
      result: 'I wrote notes.txt.',
    });
    let ws = await workspaceUntil(wsId, ['idle']);
    // The title: one cheap call in the workspace's run, after the first answer.
    expect(ws).toMatchObject({ name: 'Lighthouse notes', turns: 1, agent_version: 1 });
    expect(ws.capsule_id).toMatch(/^cap_/);
    const capsuleId = ws.capsule_id;

    // The idle sweep pauses the capsule once the agent's idle timeout has passed.
    f.t.clock.advance(61_000);
    await f.t.services.workspaces.sweep();
    ws = await workspaceUntil(wsId, ['paused']);
    expect(ws.paused_at).not.toBeNull();
    await f.t.services.capsules.settled();
    expect((await call('GET', `/v1/capsules/${capsuleId}`)).body.status).toBe('paused');

    // Turn 2 resumes the same capsule: the file is still there, the model sees the earlier messages.
    f.script([
      { tool: 'read_file', args: { path: 'notes.txt' } },
      { text: 'It says: remember the lighthouse.' },
    ]);
    const second = await call('POST', `/v1/workspaces/${wsId}/messages`, { content: 'what did you write?' });
    expect(second.status).toBe(202);
    expect(second.body).toMatchObject({
      mode: 'session',
      workspace_id: wsId,
      run_id: first.run_id ?? ws.run_id,
    });
    const turn2 = await f.finished(second.body.id);
    expect(turn2.task.status).toBe('completed');
    const events2 = await f.events(second.body.id);
    expect(events2.find((e) => e.type === 'capsule')?.payload).toMatchObject({
      capsule_id: capsuleId,
      reused: true,
      resumed: true,
    });
    expect(events2.find((e) => e.type === 'tool_result')?.payload.output).toContain(
      'remember the lighthouse',
    );
    const turn2First = f.mock.requests.filter((r) => said(r.body).includes('user: what did you write?'))[0]!;
    expect(said(turn2First.body)).toEqual([
      'user: write down the lighthouse',
      'assistant: I wrote notes.txt.',
      'user: what did you write?',
    ]);

    // Paused again, and a third message.
    await workspaceUntil(wsId, ['idle']);
    f.t.clock.advance(61_000);
    await f.t.services.workspaces.sweep();
    await workspaceUntil(wsId, ['paused']);
    f.script([{ text: 'Third answer.' }]);
    const third = await call('POST', `/v1/workspaces/${wsId}/messages`, { content: 'and now?' });
    expect(third.status).toBe(202);
    expect((await f.finished(third.body.id)).task.status).toBe('completed');
    const last = f.mock.requests.at(-1)!;
    expect(said(last.body)).toEqual([
      'user: write down the lighthouse',
      'assistant: I wrote notes.txt.',
      'user: what did you write?',
      'assistant: It says: remember the lighthouse.',
      'user: and now?',
    ]);
    ws = await workspaceUntil(wsId, ['idle']);
    expect(ws).toMatchObject({ turns: 3, capsule_id: capsuleId, status: 'idle' });

    // One log: every turn's events, each tagged with its task; a task's own events are its part of it.
    const log = await call('GET', `/v1/workspaces/${wsId}/events?limit=1000`);
    expect(log.status).toBe(200);
    const seqs = log.body.data.map((e: Json) => e.seq);
    expect(seqs).toEqual(seqs.map((_: number, i: number) => i + 1));
    const byTask = new Set(log.body.data.map((e: Json) => e.task_id).filter(Boolean));
    expect([...byTask].sort()).toEqual([first.id, second.body.id, third.body.id].sort());
    expect(events2.map((e) => e.seq)).toEqual(
      log.body.data.filter((e: Json) => e.task_id === second.body.id).map((e: Json) => e.seq),
    );
    // A turn's own events page like a task's: a full page of an ended turn is not its last.
    const mine = log.body.data.filter((e: Json) => e.task_id === second.body.id);
    let after = 0;
    const paged: number[] = [];
    for (let done = false; !done; ) {
      const page = await call('GET', `/v1/tasks/${second.body.id}/events?limit=2&after_seq=${after}`);
      expect(page.status).toBe(200);
      paged.push(...page.body.data.map((e: Json) => e.seq));
      done = page.body.done;
      after = page.body.next_after_seq;
      if (!done) expect(page.body.data).toHaveLength(2);
    }
    expect(paged).toEqual(mine.map((e: Json) => e.seq));
    // Every turn streams: its answers' text came as deltas before each whole text.
    for (const id of [first.id, second.body.id, third.body.id]) {
      const mine = log.body.data.filter((e: Json) => e.task_id === id);
      const joined = (type: string) =>
        mine
          .filter((e: Json) => e.type === type)
          .map((e: Json) => e.payload.text)
          .join('');
      expect(joined('text_delta')).not.toBe('');
      expect(joined('text_delta')).toBe(joined('text'));
    }
    const paused = log.body.data.filter((e: Json) => e.type === 'workspace' && e.payload.status === 'paused');
    expect(paused).toHaveLength(2);
    // Each message's turn opens with the workspace's move to active (its own event, naming the
    // turn's task in its payload only), then the turn's own queued status.
    for (const id of [second.body.id, third.body.id]) {
      const at = log.body.data.findIndex(
        (e: Json) => e.type === 'workspace' && e.payload.status === 'active' && e.payload.task_id === id,
      );
      expect(log.body.data[at]).toMatchObject({ task_id: null, payload: { reason: 'message' } });
      expect(log.body.data[at + 1]).toMatchObject({
        task_id: id,
        type: 'status',
        payload: { status: 'queued' },
      });
    }

    // One run: every turn's model calls (and the title's) are in its ledger.
    await f.t.services.runs.flush();
    expect(turn2.task.run_id).toBe(ws.run_id);
    const ledger = await call('GET', `/v1/runs/${ws.run_id}/ledger?limit=200`);
    expect(ledger.status).toBe(200);
    const models = ledger.body.data.filter((e: Json) => e.kind !== 'sandbox');
    expect(models.length).toBe(6);
    expect(ledger.body.data.some((e: Json) => e.kind === 'sandbox')).toBe(true);
  });

  it('a turn costs what its own steps cost: the title’s call and the capsule’s idle time before it are the run’s alone', async () => {
    const agent = await sessionAgent();
    f.mock.reset();
    f.script([
      { tool: 'write_file', args: { path: 'a.txt', content: 'a\n' } },
      { text: 'Wrote a.txt.' },
      { text: 'Cost notes' },
    ]);
    const first = await f.submit({ agent_id: agent.id, prompt: 'write a.txt', mode: 'session' });
    const turn1 = (await f.finished(first.id)).task;
    await workspaceUntil(first.workspace_id, ['idle']);
    // Idle (not paused: the timeout is 60 s) for 45 s of the injected clock: the next message charges it.
    f.t.clock.advance(45_000);
    f.script([{ tool: 'read_file', args: { path: 'a.txt' } }, { text: 'It says a.' }]);
    const second = await call('POST', `/v1/workspaces/${first.workspace_id}/messages`, {
      content: 'read it',
    });
    expect(second.status).toBe(202);
    const turn2 = (await f.finished(second.body.id)).task;
    const ws = await workspaceUntil(first.workspace_id, ['idle']);
    expect(ws.name).toBe('Cost notes');
    await f.t.services.runs.flush();

    const entries: Json[] = (await call('GET', `/v1/runs/${ws.run_id}/ledger?limit=200`)).body.data;
    const micros = (e: Json) => Math.round(Number(e.cost_usd) * 1e6);
    let rest = [...entries];
    for (const turn of [turn1, turn2]) {
      // The turn's model calls, by the steps its events name, and its capsule's time while it ran.
      const steps = new Set(
        (await f.events(turn.id)).filter((e) => e.type === 'model_call').map((e) => e.payload.step_id),
      );
      expect(steps.size).toBe(2);
      const calls = rest.filter((e) => steps.has(e.step_id));
      expect(calls).toHaveLength(2);
      rest = rest.filter((e) => !steps.has(e.step_id));
      const capsuleTime = rest.find(
        (e) => e.kind === 'sandbox' && e.sandbox.seconds === turn.sandbox_seconds,
      );
      expect(capsuleTime, `turn ${turn.id}'s capsule time`).toBeDefined();
      rest = rest.filter((e) => e !== capsuleTime);
      expect(Math.round(turn.cost_usd * 1e6)).toBe(
        calls.reduce((sum, e) => sum + micros(e), 0) + micros(capsuleTime!),
      );
      expect(turn.input_tokens).toBe(calls.reduce((sum, e) => sum + e.tokens.input, 0));
      expect(turn.output_tokens).toBe(calls.reduce((sum, e) => sum + e.tokens.output, 0));
    }
    // What is left is the run's alone: the title's one call and the 45 s the capsule sat idle.
    expect(rest.map((e) => e.kind).sort()).toEqual(['model', 'sandbox']);
    const idle = rest.find((e) => e.kind === 'sandbox')!;
    expect(idle.sandbox.seconds).toBeGreaterThanOrEqual(45);
    expect(micros(idle)).toBeGreaterThan(0);
    const run = (await call('GET', `/v1/runs/${ws.run_id}`)).body;
    expect(Math.round(run.cost_usd * 1e6)).toBe(entries.reduce((sum, e) => sum + micros(e), 0));
  });

  it('a message that lands while the sweep pauses the workspace runs its turn in the capsule it found running', async () => {
    const agent = await sessionAgent();
    f.mock.reset();
    f.script([{ text: 'first' }]);
    const first = await f.submit({ agent_id: agent.id, prompt: 'open', mode: 'session' });
    await f.finished(first.id);
    const ws = await workspaceUntil(first.workspace_id, ['idle']);
    // The turn's tool call comes a moment after the sweep asked for the pause.
    f.script([
      {
        toolCalls: [{ name: 'write_file', arguments: { path: 'race.txt', content: 'still here\n' } }],
        delayMs: 500,
      },
      { text: 'wrote it' },
    ]);
    const ports = (f.t.services.workspaces as unknown as { ports: TaskPorts }).ports;
    const pause = ports.capsules.pause.bind(ports.capsules);
    let turnId = '';
    const spy = vi.spyOn(ports.capsules, 'pause').mockImplementationOnce(async (...args) => {
      // After the sweep committed the workspace paused, before its capsule's pause: a message
      // begins a turn, which finds the capsule running and takes it as it is.
      const sent = await call('POST', `/v1/workspaces/${ws.id}/messages`, { content: 'write it down' });
      expect(sent.status).toBe(202);
      turnId = sent.body.id;
      await f.untilEvent(turnId, (e) => e.type === 'capsule');
      return pause(...args);
    });
    try {
      f.t.clock.advance(61_000);
      await f.t.services.workspaces.sweep();
    } finally {
      spy.mockRestore();
    }
    expect(turnId, 'the sweep paused the workspace').not.toBe('');
    const turn = await f.finished(turnId);
    expect(turn.task.status, JSON.stringify(turn.task.error)).toBe('completed');
    const events = await f.events(turnId);
    expect(events.find((e) => e.type === 'capsule')?.payload).toMatchObject({
      capsule_id: ws.capsule_id,
      reused: true,
      resumed: false,
    });
    expect(events.find((e) => e.type === 'tool_result')?.payload).toMatchObject({
      name: 'write_file',
      ok: true,
    });
    await f.t.services.capsules.settled();
    expect((await call('GET', `/v1/capsules/${ws.capsule_id}`)).body.status).toBe('running');
  });

  it('POST generate-title names the workspace again from its first message, in its run', async () => {
    const agent = await sessionAgent();
    f.mock.reset();
    f.script([{ text: 'answered' }, { text: '"First title."' }]);
    const task = await f.submit({ agent_id: agent.id, prompt: 'plan the lighthouse tour', mode: 'session' });
    await f.finished(task.id);
    const ws = await workspaceUntil(task.workspace_id, ['idle']);
    expect(ws.name).toBe('First title');
    const steps = async () => (await call('GET', `/v1/runs/${ws.run_id}/steps?limit=100`)).body.data.length;
    await f.t.services.runs.flush();
    const before = await steps();

    f.script([{ text: 'Lighthouse tour plan.' }]);
    const named = await call('POST', `/v1/workspaces/${ws.id}/generate-title`);
    expect(named.status, JSON.stringify(named.body)).toBe(200);
    expect(named.body).toMatchObject({ id: ws.id, name: 'Lighthouse tour plan' });
    expect((await call('GET', `/v1/workspaces/${ws.id}`)).body.name).toBe('Lighthouse tour plan');
    const asked = f.mock.requests.at(-1)!.body as Json;
    expect(asked.messages.at(-1)).toEqual({ role: 'user', content: 'plan the lighthouse tour' });
    await f.t.services.runs.flush();
    expect(await steps()).toBe(before + 1);

    // A call the provider refuses leaves the name as it was: 422 with what the gateway answered.
    f.script([{ status: 400, message: 'no titles today' }]);
    const refused = await call('POST', `/v1/workspaces/${ws.id}/generate-title`);
    expect(refused.status, JSON.stringify(refused.body)).toBe(422);
    expect(refused.body.error).toMatchObject({
      code: 'title_failed',
      details: { status: 400, upstream_code: 'upstream_error' },
    });
    expect((await call('GET', `/v1/workspaces/${ws.id}`)).body.name).toBe('Lighthouse tour plan');

    // A workspace that keeps no message (its first turn failed) has nothing to title.
    await f.t.database.db.execute(sql`update workspaces set messages = '[]'::jsonb where id = ${ws.id}`);
    const empty = await call('POST', `/v1/workspaces/${ws.id}/generate-title`);
    expect(empty.status, JSON.stringify(empty.body)).toBe(409);
    expect(empty.body.error.code).toBe('workspace_empty');

    // Another team's workspace is not found; an ended one has no run to call in.
    const other = await f.t.signup();
    expect(
      (await call('POST', `/v1/workspaces/${ws.id}/generate-title`, undefined, other.token)).status,
    ).toBe(404);
    expect((await call('DELETE', `/v1/workspaces/${ws.id}`)).status).toBe(200);
    const ended = await call('POST', `/v1/workspaces/${ws.id}/generate-title`);
    expect(ended.status).toBe(409);
    expect(ended.body.error.code).toBe('workspace_expired');
  });

  it('refuses a message while a turn runs (workspace_busy) and after it expired (workspace_expired)', async () => {
    const agent = await sessionAgent();
    f.mock.reset();
    f.script([{ text: 'hello', delayMs: 300 }, { text: 'Greeting' }]);
    const first = await f.submit({ agent_id: agent.id, prompt: 'hello', mode: 'session' });
    const busy = await call('POST', `/v1/workspaces/${first.workspace_id}/messages`, { content: 'again' });
    expect(busy.status).toBe(409);
    expect(busy.body.error.code).toBe('workspace_busy');
    await f.finished(first.id);
    let ws = await workspaceUntil(first.workspace_id, ['idle']);

    // Messages sent at once: one turn begins, the others are refused whole (no task row is left of them).
    const tasksOf = async () =>
      (await call('GET', `/v1/tasks?agent_id=${agent.id}&limit=100`)).body.data.map((t: Json) => t.id);
    const before = await tasksOf();
    f.script([{ text: 'one of three', delayMs: 200 }]);
    const sent = await Promise.all(
      ['a', 'b', 'c'].map((content) =>
        call('POST', `/v1/workspaces/${first.workspace_id}/messages`, { content }),
      ),
    );
    const taken = sent.filter((r) => r.status === 202);
    expect(taken).toHaveLength(1);
    for (const r of sent.filter((r) => r.status !== 202)) {
      expect(r.status).toBe(409);
      expect(r.body.error.code).toBe('workspace_busy');
    }
    expect((await tasksOf()).sort()).toEqual([...before, taken[0]!.body.id].sort());
    await f.finished(taken[0]!.body.id);
    ws = await workspaceUntil(first.workspace_id, ['idle']);
    expect(ws.turns).toBe(2);

    f.t.clock.advance(61_000);
    await f.t.services.workspaces.sweep();
    await workspaceUntil(first.workspace_id, ['paused']);
    f.t.clock.advance(601_000);
    await f.t.services.workspaces.sweep();
    const expired = await workspaceUntil(first.workspace_id, ['expired']);
    expect(expired.ended_at).not.toBeNull();
    await capsuleGone(ws.capsule_id);
    const refused = await call('POST', `/v1/workspaces/${first.workspace_id}/messages`, { content: 'again' });
    expect(refused.status).toBe(409);
    expect(refused.body.error.code).toBe('workspace_expired');
    // The history stays.
    const log = await call('GET', `/v1/workspaces/${first.workspace_id}/events`);
    expect(log.body.data.some((e: Json) => e.type === 'text' && e.payload.text === 'hello')).toBe(true);
    expect(log.body.done).toBe(true);
    const run = await call('GET', `/v1/runs/${ws.run_id}`);
    expect(run.body.status).toBe('completed');
  });

  it('PATCH renames, stars, archives and sets or clears the model; DELETE removes the capsule and keeps the row', async () => {
    const agent = await sessionAgent();
    f.mock.reset();
    f.script([{ text: 'done' }]);
    const first = await f.submit({ agent_id: agent.id, prompt: 'a task', mode: 'session' });
    await f.finished(first.id);
    const ws = await workspaceUntil(first.workspace_id, ['idle']);
    const patched = await call('PATCH', `/v1/workspaces/${ws.id}`, {
      name: 'Mine',
      starred: true,
      archived: true,
      model_override: 'gpt-4o',
    });
    expect(patched.status).toBe(200);
    expect(patched.body).toMatchObject({
      name: 'Mine',
      starred: true,
      archived: true,
      model_override: 'gpt-4o',
    });
    const listed = await call('GET', `/v1/workspaces?archived=true&agent_id=${agent.id}`);
    expect(listed.body.data.map((w: Json) => w.id)).toEqual([ws.id]);
    expect((await call('GET', `/v1/workspaces?archived=false&agent_id=${agent.id}`)).body.data).toEqual([]);
    // The override is the next turn's model.
    f.script([{ text: 'with gpt-4o' }]);
    const turn = await call('POST', `/v1/workspaces/${ws.id}/messages`, { content: 'next' });
    expect(turn.body.model).toBe('gpt-4o');
    await f.finished(turn.body.id);
    expect(f.mock.requests.at(-1)!.model).toMatch(/^gpt-4o/);
    const cleared = await call('PATCH', `/v1/workspaces/${ws.id}`, { model_override: null });
    expect(cleared.body.model_override).toBeNull();
    const bad = await call('PATCH', `/v1/workspaces/${ws.id}`, { starred: 'yes' });
    expect(bad.status).toBe(400);

    await workspaceUntil(ws.id, ['idle']);
    const deleted = await call('DELETE', `/v1/workspaces/${ws.id}`);
    expect(deleted.status).toBe(200);
    expect(deleted.body).toMatchObject({ status: 'terminated' });
    await capsuleGone(ws.capsule_id);
    expect((await call('GET', `/v1/workspaces/${ws.id}`)).body.status).toBe('terminated');
    const after = await call('POST', `/v1/workspaces/${ws.id}/messages`, { content: 'more' });
    expect(after.body.error.code).toBe('workspace_expired');
  });

  it('DELETE ends a workspace whose turn ended after DELETE read it (it does not stay idle)', async () => {
    const agent = await sessionAgent();
    f.mock.reset();
    f.script([{ text: 'done' }]);
    const task = await f.submit({ agent_id: agent.id, prompt: 'a task', mode: 'session' });
    await f.finished(task.id);
    await workspaceUntil(task.workspace_id, ['idle']);
    // DELETE reads the workspace while its turn still runs; the turn ends (active → idle) before
    // the DELETE moves the row: the read it acts on is one status behind.
    const service = f.t.services.workspaces;
    const found = service.found.bind(service);
    const spy = vi
      .spyOn(service, 'found')
      .mockImplementationOnce(async (teamId, id) => ({ ...(await found(teamId, id)), status: 'active' }));
    try {
      const deleted = await call('DELETE', `/v1/workspaces/${task.workspace_id}`);
      expect(deleted.status).toBe(200);
      expect(deleted.body.status).toBe('terminated');
    } finally {
      spy.mockRestore();
    }
    const ws = (await call('GET', `/v1/workspaces/${task.workspace_id}`)).body;
    expect(ws.status).toBe('terminated');
    await capsuleGone(ws.capsule_id);
  });

  it('a turn started where its message was not taken (a later attempt, another server) reads the conversation from the row', async () => {
    const agent = await sessionAgent();
    f.mock.reset();
    f.script([{ text: 'The tide is out.' }, { text: 'Tides' }]);
    const first = await f.submit({ agent_id: agent.id, prompt: 'how is the tide?', mode: 'session' });
    await f.finished(first.id);
    const ws = await workspaceUntil(first.workspace_id, ['idle']);
    // The server that took a message keeps its turn's start for the turn's first attempt only;
    // asked again for the same turn, it reads the workspace's row.
    const again = await f.t.services.workspaces.turnStarts(f.user.team.id, ws.id, first.id);
    expect(again.capsuleId).toBe(ws.capsule_id);
    expect(said(again)).toEqual(['user: how is the tide?', 'assistant: The tide is out.']);
    f.script([{ text: 'Still out.' }]);
    const second = await call('POST', `/v1/workspaces/${ws.id}/messages`, { content: 'and now?' });
    expect((await f.finished(second.body.id)).task.status).toBe('completed');
    expect(said(f.mock.requests.at(-1)?.body)).toEqual([
      'user: how is the tide?',
      'assistant: The tide is out.',
      'user: and now?',
    ]);
  });

  it('another team’s workspace is a 404 everywhere', async () => {
    const agent = await sessionAgent();
    f.mock.reset();
    f.script([{ text: 'done' }, { text: 'Title' }]);
    const first = await f.submit({ agent_id: agent.id, prompt: 'mine', mode: 'session' });
    await f.finished(first.id);
    await workspaceUntil(first.workspace_id, ['idle']);
    const other = await f.t.signup();
    const id = first.workspace_id;
    for (const [method, url, body] of [
      ['GET', `/v1/workspaces/${id}`],
      ['PATCH', `/v1/workspaces/${id}`, { name: 'x' }],
      ['DELETE', `/v1/workspaces/${id}`],
      ['POST', `/v1/workspaces/${id}/messages`, { content: 'hi' }],
      ['GET', `/v1/workspaces/${id}/events`],
      ['GET', `/v1/workspaces/${id}/files`],
      ['GET', `/v1/workspaces/${id}/files/notes.txt`],
      ['GET', `/v1/workspaces/${id}/archive`],
    ] as Array<[string, string, unknown?]>) {
      const res = await call(method, url, body, other.token);
      expect(res.status, `${method} ${url}`).toBe(404);
    }
    expect((await call('GET', '/v1/workspaces', undefined, other.token)).body.data).toEqual([]);
    expect((await call('GET', `/v1/workspaces/${id}`)).body.status).toBe('idle');
  });
});
