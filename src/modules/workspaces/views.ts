import type { LogEventRow } from '../tasks/event-log-repo.ts';
import type { WorkspaceRow } from './repo.ts';

const iso = (d: Date | null) => (d === null ? null : d.toISOString());

export function workspaceView(w: WorkspaceRow) {
  return {
    id: w.id,
    team_id: w.teamId,
    agent_id: w.agentId,
    agent_version: w.agentVersion,
    name: w.name,
    status: w.status,
    capsule_id: w.capsuleId,
    run_id: w.runId,
    current_task_id: w.currentTaskId,
    turns: w.turns,
    messages: w.messages.length,
    model_override: w.modelOverride,
    last_run_model: w.lastRunModel,
    starred: w.starred,
    archived: w.archived,
    idle_timeout_sec: w.idleTimeoutSec,
    session_ttl_sec: w.sessionTtlSec,
    last_active_at: w.lastActiveAt.toISOString(),
    paused_at: iso(w.pausedAt),
    ended_at: iso(w.endedAt),
    created_by: w.createdBy,
    created_at: w.createdAt.toISOString(),
    updated_at: w.updatedAt.toISOString(),
  };
}

/** An event of the workspace's log: the same JSON over pages, SSE and the WebSocket. */
export function workspaceEventView(e: LogEventRow) {
  return {
    seq: e.seq,
    type: e.type,
    task_id: e.taskId,
    payload: e.payload,
    created_at: e.createdAt.toISOString(),
  };
}
