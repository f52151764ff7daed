import type { ProviderKeyId, TeamId } from '../../core/ids.ts';
import type { Db } from '../../db/client.ts';
import * as repo from './reports-repo.ts';

export type { RunWindow } from './reports-repo.ts';

/**
 * The runs module's answers to other modules' questions about runs: policies
 * (stats, cost trend) and providers (what uses a key) reach the runs table
 * only through these, by a port.
 */
export class RunReports {
  constructor(private readonly db: Db) {}

  /** Aggregates over the policy's runs started in the window; money in micro-dollars. */
  policyStats(teamId: TeamId, policyId: string, window: repo.RunWindow) {
    return repo.policyRunStats(this.db, teamId, policyId, window);
  }

  /** The latest `limit` ended runs of the policy in the window, and how many there are. */
  endedRunsOfPolicy(teamId: TeamId, policyId: string, window: repo.RunWindow, limit: number) {
    return repo.endedRunsOfPolicy(this.db, teamId, policyId, window, limit);
  }

  /** How many of these agents' runs are running. */
  runningRunCount(teamId: TeamId, agentIds: string[]) {
    return repo.runningRunCount(this.db, teamId, agentIds);
  }

  /** Runs with at least one step made with the key since `since`. */
  runsUsingKeySince(teamId: TeamId, keyId: ProviderKeyId, since: Date) {
    return repo.runsUsingKeySince(this.db, teamId, keyId, since);
  }
}
