import type { MemoryHit, MemoryRow } from './repo.ts';

export function memoryView(row: MemoryRow) {
  return {
    id: row.id,
    team_id: row.teamId,
    agent_id: row.agentId,
    content: row.content,
    metadata: row.metadata,
    task_id: row.taskId ?? null,
    created_at: row.createdAt.toISOString(),
    updated_at: row.updatedAt.toISOString(),
  };
}
export type MemoryView = ReturnType<typeof memoryView>;

export function memoryHitView(hit: MemoryHit) {
  return { ...memoryView(hit), score: hit.rank };
}
