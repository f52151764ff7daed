import type { StateCount } from '../../core/metrics.ts';
import { type Db, rawQuery } from '../../db/client.ts';
import { CAPSULE_STATUSES, ENDED_STATUSES, hosts, TASK_STATUSES } from '../../db/schema/index.ts';

// The database's counts that /metrics reports, for the whole installation
// (every team: an operator's view, never shown to a team). One statement a
// scrape; each part reads only rows that have not ended, which the status
// indexes find without reading the ended ones (tasks_status_idx,
// capsules_live_idx, webhook_deliveries_pending_idx, queue_jobs_waiting_idx
// and _lease_idx), so its cost follows the work in flight, not the history.

const OPEN_TASKS = TASK_STATUSES.filter((s) => s !== 'completed' && s !== 'failed' && s !== 'cancelled');
const LIVE_CAPSULES = CAPSULE_STATUSES.filter((s) => !ENDED_STATUSES.includes(s));
const WAITING_JOBS = ['queued', 'active'];

/** Every state each kind reports, at 0 when nothing is in it: an alert needs its series to exist. */
const REPORTED: Array<[StateCount['kind'], readonly string[]]> = [
  ['tasks', OPEN_TASKS],
  ['capsules', LIVE_CAPSULES],
  ['hosts', hosts.status.enumValues],
  ['webhook_deliveries', ['pending']],
  ['work_queue_jobs', WAITING_JOBS],
];

const list = (values: readonly string[]) => values.map((v) => `'${v}'`).join(', ');
/** An aggregate's timestamp as epoch milliseconds: a plain number from both drivers. */
const epochMs = (aggregate: string) => `(extract(epoch from ${aggregate}) * 1000)::float8`;

const STATES = `
  select 'tasks' as kind, status as state, count(*)::int as n,
         ${epochMs(`min(created_at) filter (where status = 'queued')`)} as oldest
    from tasks where status in (${list(OPEN_TASKS)}) group by status
  union all
  select 'capsules', status, count(*)::int, null
    from capsules where status in (${list(LIVE_CAPSULES)}) group by status
  union all
  select 'hosts', status, count(*)::int, ${epochMs(`min(last_heartbeat_at) filter (where type <> 'local')`)}
    from hosts group by status
  union all
  select 'webhook_deliveries', status, count(*)::int, ${epochMs(`min(created_at)`)}
    from webhook_deliveries where status = 'pending' group by status
  union all
  select 'work_queue_jobs', status, count(*)::int, null
    from queue_jobs where status in (${list(WAITING_JOBS)}) group by status`;

/**
 * Open tasks, live capsules, hosts, pending webhook deliveries and waiting
 * work-queue jobs by state, each state present; with the oldest queued task,
 * pending delivery, and remote host's last heartbeat in each host state.
 */
export async function stateCounts(db: Db): Promise<StateCount[]> {
  const rows = await rawQuery(db, STATES, []);
  const found = new Map(rows.map((r) => [`${r.kind}:${r.state}`, r]));
  return REPORTED.flatMap(([kind, states]) =>
    states.map((state) => {
      const r = found.get(`${kind}:${state}`);
      const oldest = r?.oldest;
      return {
        kind,
        state,
        count: r ? Number(r.n) : 0,
        oldest: oldest === null || oldest === undefined ? null : new Date(Number(oldest)),
      };
    }),
  );
}
