import { idFloorAt } from '../../core/ids.ts';
import type { DbOrTx } from '../../db/client.ts';
import { systemClearStepContent } from './step-content-repo.ts';

/**
 * PADDOCK_STEP_CONTENT_RETENTION_DAYS, as the retention sweep's step
 * (events/retention.ts): the request and response of steps older than the
 * retention are cleared, batch by batch; the step itself (its type, status,
 * model, tokens, cost and latency), its run's totals, the ledger and the
 * analytics stay. The sweep remembers where it stopped, so each round reads
 * only steps that came of age since (after a restart, it walks the old ones
 * once more).
 */
export function stepContentClearer(): (db: DbOrTx, cutoff: Date, batch: number) => Promise<number> {
  let afterId = '';
  return async (db, cutoff, batch) => {
    const { passed, lastId } = await systemClearStepContent(
      db,
      idFloorAt('stp', cutoff.getTime()),
      afterId,
      batch,
    );
    if (lastId !== undefined) afterId = lastId;
    return passed;
  };
}
