import type { RunId, TeamId } from '../../core/ids.ts';
import type { DbOrTx } from '../../db/client.ts';
import type { ConversationMessage } from '../../db/schema/workspaces.ts';
import type { AgentForTask } from './ports.ts';

/**
 * What a session task (a turn of a workspace) needs from the workspaces
 * module, which attaches it to the tasks service: the workspace's run, its
 * conversation and its capsule before the turn, and the turn's end after it.
 */
export interface SessionHooks {
  /** POST /v1/tasks {mode: session}: opens a workspace for the task, in the task's transaction. */
  open(
    tx: DbOrTx,
    input: {
      teamId: TeamId;
      taskId: string;
      agent: AgentForTask;
      createdBy: string | null;
      /** The opening task's: every later turn keeps it. */
      allowedTools: string[] | null;
    },
  ): Promise<SessionTurn>;
  /** Before a turn's loop: the conversation so far and the capsule to reuse (null: none yet). */
  turnStarts(
    teamId: TeamId,
    workspaceId: string,
    taskId: string,
  ): Promise<{ messages: ConversationMessage[]; capsuleId: string | null }>;
  /** The turn started a capsule (the workspace's first, or a new one for a removed one). */
  capsuleStarted(teamId: TeamId, workspaceId: string, capsuleId: string): Promise<void>;
  /** After a turn, whatever its end: the conversation to keep (undefined: the turn failed), the model it ran. */
  turnEnded(
    teamId: TeamId,
    workspaceId: string,
    turn: {
      taskId: string;
      prompt: string;
      status: 'completed' | 'failed' | 'cancelled';
      error?: { code: string; message: string };
      messages?: ConversationMessage[];
      model: string;
    },
  ): Promise<void>;
}

/** The workspace a session task belongs to, and the one gateway run of all its turns. */
export interface SessionTurn {
  workspaceId: string;
  runId: RunId;
}

/**
 * A message's turn, known before its statements run: they (the workspace's
 * move to its next turn) are sent beside the task's insert, which needs none
 * of their answers. `begin` fails, and with it the transaction, when the
 * workspace takes no turn now; else it answers the move's events for the
 * workspace's log, which the task's first append writes ahead of its own
 * (one statement, in the same transaction).
 */
export interface NextTurn extends SessionTurn {
  begin: () => Promise<WorkspaceEvents>;
}

/** A workspace's own events (its status changes): in its log, tagged with no task. */
export type WorkspaceEvents = ReadonlyArray<{ type: 'workspace'; payload: Record<string, unknown> }>;
