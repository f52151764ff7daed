import type { ChildProcess } from 'node:child_process';
import { existsSync, readFileSync } from 'node:fs';
import { describe, expect, it } from 'vitest';
import { RemotePglite } from '../../src/db/pglite-remote.ts';

const SCHED_OTHER = 0;
const SCHED_BATCH = 3;
const hasChrt = ['/usr/bin/chrt', '/bin/chrt'].some((p) => existsSync(p));

/** The scheduling policy of a process (field 41 of /proc/<pid>/stat). */
function policyOf(pid: number): number {
  const stat = readFileSync(`/proc/${pid}/stat`, 'utf8');
  const fields = stat.slice(stat.lastIndexOf(')') + 2).split(' ');
  return Number(fields[41 - 3]);
}

describe('the embedded database process', () => {
  // A cold initdb: seconds, or tens of them on a busy machine; only a hang reaches this bound.
  it('answers statements, and runs under SCHED_BATCH where chrt can set it', {
    timeout: 180_000,
  }, async () => {
    const db = await RemotePglite.create();
    try {
      const result = await db.query('select $1::int + 1 as n', [41]);
      expect(result.rows).toEqual([{ n: 42 }]);
      expect(db.pid).toBeGreaterThan(0);
      expect(policyOf(db.pid!)).toBe(hasChrt ? SCHED_BATCH : SCHED_OTHER);
    } finally {
      await db.close();
    }
  });

  // The server's end of the channel closing is what its death looks like to the database process.
  it('goes away with its server, even while a transaction the server began is open', {
    timeout: 180_000,
  }, async () => {
    const db = await RemotePglite.create();
    const pid = db.pid!;
    let begun!: () => void;
    const inTx = new Promise<void>((resolve) => {
      begun = resolve;
    });
    const held = db
      .transaction(async (tx) => {
        await tx.query('create table held (n int)');
        begun();
        await new Promise(() => {}); // never commits: the server died inside it
      })
      .catch(() => undefined);
    await inTx;
    (db as unknown as { worker: ChildProcess }).worker.disconnect();
    const alive = () => {
      try {
        process.kill(pid, 0);
        return true;
      } catch {
        return false;
      }
    };
    for (let i = 0; i < 150 && alive(); i++) await new Promise((r) => setTimeout(r, 100));
    expect(alive()).toBe(false);
    void held;
  });

  // Seen in CI: a server that went away mid-statement made the answer's send fail (EPIPE), and the
  // database process died of the unhandled error instead of closing the database.
  it('drops an answer its server is no longer there to take, and closes the database as it goes', {
    timeout: 180_000,
  }, async () => {
    const db = await RemotePglite.create();
    const worker = (db as unknown as { worker: ChildProcess }).worker;
    const exited = new Promise<number | null>((resolve) => worker.once('exit', (code) => resolve(code)));
    const slow = db.query('select pg_sleep(1)').catch((err: Error) => err);
    await new Promise((r) => setTimeout(r, 300));
    worker.disconnect();
    expect(await exited).toBe(0);
    expect(await slow).toBeInstanceOf(Error);
  });
});
