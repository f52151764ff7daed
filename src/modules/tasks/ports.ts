import type { AgentId, RunId, TeamId } from '../../core/ids.ts';
import type { DbOrTx } from '../../db/client.ts';
import type { Definition } from '../agents/definition.ts';
import type { FileDownload } from '../files/service.ts';
import type { ProxyRequest, ProxyResult } from '../gateway/service.ts';
import type { TaskRow } from './repo.ts';
import type { WorkspaceEvents } from './sessions.ts';
import type { ToolCapsule } from './tools.ts';

/** The agent version a task runs. */
export interface AgentForTask {
  id: AgentId;
  name: string;
  description: string | null;
  status: 'active' | 'disabled';
  policyId: string;
  version: number;
  definition: Definition;
}

/** The environment version a task's capsule starts from. */
export interface EnvironmentForTask {
  id: string;
  status: 'queued' | 'building' | 'ready' | 'failed';
  /** The template its build made (ready only). */
  template: string | null;
  envVars: Record<string, string>;
  networkAllow: string[];
  error: { code: string; message: string } | null;
}

/** A running capsule the runner drives, and how to end it. */
export interface TaskCapsule {
  id: string;
  tools: ToolCapsule;
  /** vCPUs and memory, for pricing its time. */
  vcpus: number;
  memoryMb: number;
}

/**
 * What the tasks module needs from the others: each port is one call of
 * another module's service (wired in app.ts), so tasks depend on no other
 * module's tables.
 */
export interface TaskPorts {
  /** The agent and the version asked (default: its current one); undefined when either is not the team's. */
  agent(teamId: TeamId, agentId: string, version?: number): Promise<AgentForTask | undefined>;
  /** The team's max_concurrent_tasks, set by a platform admin; undefined: no limit but its agents'. */
  teamTaskLimit(teamId: TeamId): Promise<number | undefined>;
  /** The provider keys the agent can call through now (none: a task could make no model call). */
  usableKeyCount(teamId: TeamId, agentId: AgentId): Promise<number>;
  environment(teamId: TeamId, versionId: string): Promise<EnvironmentForTask | undefined>;
  /** The ids among `ids` that are no ready file of the team. */
  unknownFiles(teamId: TeamId, ids: readonly string[]): Promise<string[]>;
  /** A ready file's name; undefined when it is not a ready file of the team. */
  fileName(teamId: TeamId, fileId: string): Promise<string | undefined>;
  /** A ready file's name and bytes. */
  readFile(teamId: TeamId, fileId: string): Promise<{ name: string; data: Buffer }>;
  /** A file of the team as the files module serves it. */
  openFile(teamId: TeamId, fileId: string): Promise<FileDownload>;
  /** Stores bytes as a new file of the team; answers its id. */
  writeFile(teamId: TeamId, actor: string, file: { name: string; data: Buffer }): Promise<string>;
  /** The agent's secrets, opened, for its tool processes' environment only. */
  secrets(teamId: TeamId, agentId: AgentId): Promise<Array<{ name: string; value: string }>>;
  /** A family alias (sonnet, gpt-…) as the full model id it stands for now; a full id as it is. */
  resolveModel(model: string): string;
  /** Why the agent's policy refuses `model` (a resolved id), or undefined when it allows it. */
  modelRefusal(teamId: TeamId, policyId: string, model: string): Promise<string | undefined>;
  policy(teamId: TeamId, policyId: string): Promise<{ id: string; name: string; spec: object } | undefined>;
  /** The gateway's governed path: the same one an agent's own HTTP call takes after its key is checked. */
  callModel(req: ProxyRequest): Promise<ProxyResult>;
  runs: {
    /** Starts the task's run under `id` (the task row names it first); a run of that id already there is kept. */
    start(
      input: {
        id: RunId;
        teamId: TeamId;
        agent: { id: string; name: string };
        policy: { id: string; name: string; spec: object };
        name: string;
        metadata: Record<string, unknown>;
        maxBudgetMicros: number | null;
        /** `id` was made for this start: no run of it can exist, so none is looked for. */
        isNew?: boolean;
      },
      tx: DbOrTx,
    ): Promise<RunId>;
    /** Ends the run with its task; answers its totals with every step written. */
    end(
      teamId: TeamId,
      runId: RunId,
      outcome: 'success' | 'failed',
      reason: string,
    ): Promise<{ costMicros: number; inputTokens: number; outputTokens: number; status: string } | undefined>;
    /** A workspace's turn ended, its run goes on: the steps queued so far written. */
    flushSteps(): Promise<void>;
    /** Charges capsule time to the run's ledger (a sandbox entry); answers what it cost. */
    chargeSandbox(input: {
      teamId: TeamId;
      runId: RunId;
      agentId: string;
      capsuleId: string;
      seconds: number;
      vcpus: number;
      memoryMb: number;
    }): Promise<{ costMicros: number }>;
  };
  capsules: {
    /** Starts a capsule from a template and waits until it runs; `created` hears its id before the wait. */
    start(
      teamId: TeamId,
      actor: string,
      input: {
        template: string;
        networkAllow: string[];
        metadata: Record<string, string>;
        timeoutMs: number;
      },
      created: (id: string) => Promise<void>,
    ): Promise<TaskCapsule>;
    /**
     * A workspace's capsule again: resumed when paused, waited for until it
     * runs; undefined when it is gone (removed, stopped, failed).
     */
    reuse(
      teamId: TeamId,
      actor: string,
      id: string,
      timeoutMs: number,
    ): Promise<(TaskCapsule & { resumed: boolean }) | undefined>;
    /** Its size (for pricing its time); undefined when it is gone. */
    describe(
      teamId: TeamId,
      actor: string,
      id: string,
    ): Promise<{ vcpus: number; memoryMb: number } | undefined>;
    /**
     * Pauses it (a workspace gone idle) if `onlyIf`, asked in the pause's own
     * transaction, still wants it; a capsule not running is left as it is.
     */
    pause(teamId: TeamId, actor: string, id: string, onlyIf: (tx: DbOrTx) => Promise<boolean>): Promise<void>;
    /** Stops it (its processes with it); a capsule already gone is fine. */
    destroy(teamId: TeamId, actor: string, id: string): Promise<void>;
  };
  approvals: {
    /** pending | approved | rejected | expired | consumed; undefined when not found. */
    status(teamId: TeamId, approvalId: string): Promise<string | undefined>;
  };
}

/** What the runner gives the service: a way to tell it about a cancel, and to start work. */
export interface TaskWorkers {
  /**
   * A slot on this server for a task about to be inserted (its claim goes in
   * the task's transaction); undefined when there is none (then: dispatch).
   */
  reserve(teamId: TeamId, agentId: string, agentVersion: number): Promise<LocalStart | undefined>;
  /** Starts the queued task whose row just committed: here at once, or as a job. */
  dispatch(task: TaskRow): Promise<void>;
  /** A task this server may be running was cancelled: stop it now. */
  cancelled(taskId: string): void;
}

/** A slot reserved on this server for one task being submitted: exactly one of committed and rolledBack follows. */
export interface LocalStart {
  /**
   * In the task's transaction, right after its insert: queued → running and
   * logged from its queued status on, after the workspace's own events of
   * its turn's begin (`ahead`): the claimed row; or undefined when its agent
   * or team is at its limit (the task stays queued, nothing logged).
   */
  claim(tx: DbOrTx, task: TaskRow, ahead: WorkspaceEvents): Promise<TaskRow | undefined>;
  /** After the commit: the claimed task runs here, an unclaimed one is sent as a job. */
  committed(task: TaskRow): void;
  /** The transaction did not commit: the slot is free again. */
  rolledBack(): void;
}

/** The queue runner's side (queue-runner.ts): a task sent to a work queue instead of a capsule. */
export interface TaskQueueRunner {
  /** Writes the task's job in the task's transaction; `concurrencyLimit`: the pinned agent version's, held when workers claim. */
  send(
    tx: DbOrTx,
    task: TaskRow,
    inputFiles: Array<{ id: string; name: string }>,
    concurrencyLimit: number,
  ): Promise<void>;
  /** After the task's commit. */
  sent(task: TaskRow): void;
  /** The task was cancelled in `tx`: so is its job. */
  cancel(tx: DbOrTx, task: TaskRow): Promise<void>;
  /** After an end committed: the task's run ends, its totals on the task. */
  ended(task: TaskRow): Promise<void>;
}
