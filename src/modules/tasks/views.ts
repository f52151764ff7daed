import type { LogEventRow } from './event-log-repo.ts';
import type { TaskFileRow, TaskRow } from './repo.ts';

const iso = (d: Date | null) => (d === null ? null : d.toISOString());
const usd = (micros: number) => micros / 1_000_000;

export function taskView(t: TaskRow) {
  return {
    id: t.id,
    team_id: t.teamId,
    agent_id: t.agentId,
    agent_version: t.agentVersion,
    environment_version_id: t.environmentVersionId,
    model: t.model,
    prompt: t.prompt,
    mode: t.mode,
    workspace_id: t.workspaceId,
    status: t.status,
    max_turns: t.maxTurns,
    max_budget_usd: t.maxBudgetMicros === null ? null : usd(t.maxBudgetMicros),
    timeout_sec: t.timeoutSec,
    output_schema: t.outputSchema ?? null,
    allowed_tools: t.allowedTools ?? null,
    input_file_ids: t.inputFileIds,
    metadata: t.metadata,
    result: t.result ?? null,
    error: t.error ?? null,
    run_id: t.runId,
    runner: t.runnerQueue === null ? null : { queue: t.runnerQueue },
    turns: t.turns,
    input_tokens: t.inputTokens,
    output_tokens: t.outputTokens,
    cost_usd: usd(t.costMicros),
    sandbox_seconds: t.sandboxMs / 1000,
    attempt: t.attempt,
    created_by: t.createdBy,
    created_at: t.createdAt.toISOString(),
    started_at: iso(t.startedAt),
    finished_at: iso(t.finishedAt),
    updated_at: t.updatedAt.toISOString(),
  };
}
export type TaskView = ReturnType<typeof taskView>;

export function taskEventView(e: Pick<LogEventRow, 'seq' | 'type' | 'payload' | 'createdAt'>) {
  return { seq: e.seq, type: e.type, payload: e.payload, created_at: e.createdAt.toISOString() };
}
export type TaskEventView = ReturnType<typeof taskEventView>;

export function taskFileView(f: TaskFileRow) {
  return { file_id: f.fileId, path: f.path, size_bytes: f.sizeBytes, created_at: f.createdAt.toISOString() };
}
