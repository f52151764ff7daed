import { sql } from 'drizzle-orm';
import { afterAll, beforeAll, describe, expect, it, vi } from 'vitest';
import { ManualTimers, silentLog, systemContext } from '../../src/core/context.ts';
import type { TeamId } from '../../src/core/ids.ts';
import type { Db } from '../../src/db/client.ts';
import { type LogOwner, TaskEventLog } from '../../src/modules/tasks/event-log.ts';
import type { LogEventRow } from '../../src/modules/tasks/event-log-repo.ts';
import type { TaskId } from '../../src/modules/tasks/repo.ts';
import type { Json } from '../support/factories.ts';
import { startTasks, type TaskFixture } from '../support/tasks.ts';

// A follower of an event log is handed what an append in its own process
// committed, without reading the log again; whatever it was not handed (a
// transaction's appends, another server's) it reads. Either way it gives each
// of its events once, in order.

let f: TaskFixture;
let teamId: TeamId;
let workspaceId: string;
/** Two turns of one workspace: their events share its log. */
let turns: [LogOwner, LogOwner];

beforeAll(async () => {
  f = await startTasks();
  teamId = f.user.team.id;
  const agent = await f.agent({ agent: { idle_timeout_sec: 60, session_ttl_sec: 600 } });
  f.mock.reset();
  f.script([{ text: 'first' }, { text: 'second' }]);
  const opening = await f.submit({ agent_id: agent.id, prompt: 'open', mode: 'session' });
  workspaceId = opening.workspace_id;
  await f.finished(opening.id);
  await idle();
  const second = await f.t.call('POST', `/v1/workspaces/${workspaceId}/messages`, {
    token: f.user.token,
    body: { content: 'again' },
  });
  expect(second.status).toBe(202);
  await f.finished(second.body.id);
  await idle();
  turns = [
    { id: opening.id as TaskId, workspaceId },
    { id: second.body.id as TaskId, workspaceId },
  ];
  // Followed as if still running: a turn's follower reads whether it has ended with its events.
  await setStatus('running');
});

async function setStatus(status: string, db = f.t.database.db, ids: string[] = turns.map((t) => t.id)) {
  await db.execute(sql`update tasks set status = ${status}, heartbeat_at = now() where id in ${ids}`);
}
afterAll(async () => {
  await f?.close();
});

async function idle(): Promise<void> {
  await vi.waitFor(
    async () => {
      const ws = (await f.t.call('GET', `/v1/workspaces/${workspaceId}`, { token: f.user.token }))
        .body as Json;
      expect([ws.status, ws.current_task_id]).toEqual(['idle', null]);
    },
    { timeout: 30_000, interval: 25 },
  );
}

/** The database, with a count of the statements run through it. */
function counted(db: Db): { db: Db; statements: () => number } {
  let n = 0;
  const proxy = new Proxy(db, {
    get(target, prop, receiver) {
      const value = Reflect.get(target, prop, receiver);
      if (prop !== 'execute' && prop !== 'select' && prop !== 'transaction') return value;
      return (...args: unknown[]) => {
        n += 1;
        return (value as (...a: unknown[]) => unknown).apply(target, args);
      };
    },
  });
  return { db: proxy, statements: () => n };
}

/** Follows a log into `got` until aborted; `ended` says false until told otherwise. */
function follower(rows: AsyncIterable<LogEventRow>) {
  const got: LogEventRow[] = [];
  const done = (async () => {
    for await (const row of rows) got.push(row);
  })();
  return { got, done };
}

const mark = (n: number) => [{ type: 'text' as const, payload: { n } }];
const marks = (rows: LogEventRow[]) => rows.map((r) => r.payload.n);

describe('a follower of a turn’s events', () => {
  it('is handed an append in its process without reading the log', async () => {
    const { db, statements } = counted(f.t.database.db);
    // Timers that never fire by themselves: a slow run must not meet the follower's 1 s poll (a read).
    const log = new TaskEventLog(db, { ...systemContext(silentLog), timers: new ManualTimers() });
    const abort = new AbortController();
    const [turn] = turns;
    const head = (await log.append(db, teamId, turn, mark(0))).at(-1)!.seq;
    const { got, done } = follower(log.followTask(teamId, turn, head, async () => false, abort.signal));
    // The append before it and its first read (whether the turn ended is asked of the test), then it waits.
    await vi.waitFor(() => expect(statements()).toBe(2));

    await log.append(db, teamId, turn, mark(1));
    await vi.waitFor(() => expect(marks(got)).toEqual([1]));
    await log.append(db, teamId, turn, mark(2));
    await vi.waitFor(() => expect(marks(got)).toEqual([1, 2]));
    await new Promise((r) => setTimeout(r, 50));
    // The two appends, and no read of what they appended.
    const run = statements();
    abort.abort();
    await done;
    expect(run).toBe(4);
  });

  it('gives its own events once, in order, however they were appended', async () => {
    const db = f.t.database.db;
    const log = new TaskEventLog(db, systemContext(silentLog));
    const abort = new AbortController();
    const [mine, other] = turns;
    const start = (await log.append(db, teamId, mine, mark(0))).at(-1)!.seq;
    // Never asked: the turn's read tells.
    const { got, done } = follower(log.followTask(teamId, mine, start, async () => false, abort.signal));

    // Handed over, between the workspace's own events and another turn's, which it skips.
    await log.append(db, teamId, mine, mark(1));
    await log.appendToWorkspace(db, teamId, workspaceId, [{ type: 'status', payload: { n: -1 } }]);
    await log.append(db, teamId, other, mark(-2));
    await log.append(db, teamId, mine, [...mark(2), ...mark(3)]);
    await vi.waitFor(() => expect(marks(got)).toEqual([1, 2, 3]));

    // A transaction's append: its rows are not handed over; the wake after its commit sends the follower to read.
    await db.transaction((tx) => log.append(tx, teamId, mine, mark(4)));
    log.wake(mine);
    await vi.waitFor(() => expect(marks(got)).toEqual([1, 2, 3, 4]));

    // Another server's appends (committed here without a wake) leave a gap before the next handed rows: it reads them.
    await db.transaction(async (tx) => {
      await log.append(tx, teamId, mine, mark(5));
      await log.append(tx, teamId, other, mark(-6));
    });
    await log.append(db, teamId, mine, mark(6));
    await vi.waitFor(() => expect(marks(got)).toEqual([1, 2, 3, 4, 5, 6]));

    // Handed rows arriving together with a read that already holds them are not given twice.
    await Promise.all([
      log.append(db, teamId, mine, mark(7)),
      (async () => {
        await db.transaction((tx) => log.append(tx, teamId, mine, mark(8)));
        log.wake(mine);
      })(),
      log.append(db, teamId, mine, mark(9)),
    ]);
    await vi.waitFor(() => expect(got).toHaveLength(9));
    await new Promise((r) => setTimeout(r, 50));
    expect([...marks(got)].sort()).toEqual([1, 2, 3, 4, 5, 6, 7, 8, 9]);
    const seqs = got.map((r) => r.seq);
    expect(seqs).toEqual([...seqs].sort((a, b) => a - b));
    expect(got.every((r) => r.taskId === mine.id)).toBe(true);

    // The end (committed with its last event, as a task's end is), seen by a woken read, ends the follow.
    await db.transaction(async (tx) => {
      await log.append(tx, teamId, mine, mark(10));
      await setStatus('completed', tx, [mine.id]);
    });
    log.wake(mine);
    await done;
    expect(marks(got).at(-1)).toBe(10);
    expect(got).toHaveLength(10);
  });

  it('holds at most a page of handed rows for a client that is behind, and reads the rest', async () => {
    await setStatus('running');
    const db = f.t.database.db;
    const log = new TaskEventLog(db, systemContext(silentLog));
    const abort = new AbortController();
    const [turn] = turns;
    const start = (await log.append(db, teamId, turn, mark(0))).at(-1)!.seq;
    const rows = log.followTask(teamId, turn, start, async () => false, abort.signal)[Symbol.asyncIterator]();
    // The client takes one event, then stops reading while 250 more are appended one by one.
    const first = rows.next();
    await log.append(db, teamId, turn, mark(1));
    expect((await first).value?.payload.n).toBe(1);
    for (let n = 2; n <= 251; n++) await log.append(db, teamId, turn, mark(n));
    const got: unknown[] = [];
    while (got.length < 250) got.push((await rows.next()).value?.payload.n);
    expect(got).toEqual(Array.from({ length: 250 }, (_, i) => i + 2));
    abort.abort();
    await rows.return(undefined);
  });

  it('gives a workspace follower every event of the log once, in order', async () => {
    const db = f.t.database.db;
    const log = new TaskEventLog(db, systemContext(silentLog));
    const abort = new AbortController();
    const [one, two] = turns;
    const start = (await log.append(db, teamId, one, mark(0))).at(-1)!.seq;
    const { got, done } = follower(
      log.followWorkspace(teamId, workspaceId, start, async () => false, abort.signal),
    );
    await log.append(db, teamId, one, mark(1));
    await log.append(db, teamId, two, mark(2));
    await db.transaction((tx) => log.appendToWorkspace(tx, teamId, workspaceId, mark(3)));
    await log.append(db, teamId, two, mark(4));
    await log.appendToWorkspace(db, teamId, workspaceId, mark(5));
    await vi.waitFor(() => expect(marks(got)).toEqual([1, 2, 3, 4, 5]));
    expect(got.map((r) => r.seq)).toEqual([1, 2, 3, 4, 5].map((i) => start + i));
    abort.abort();
    await done;
  });
});
