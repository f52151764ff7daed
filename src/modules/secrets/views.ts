import type { SecretRow } from './repo.ts';

/** What the API shows of a value, always: eight bullets (U+2022), as Vonzio does. */
export const REDACTED_VALUE = '••••••••' as const;

/** Never the value nor its sealed form. */
export function secretView(row: SecretRow) {
  return {
    id: row.id,
    team_id: row.teamId,
    name: row.name,
    value: REDACTED_VALUE,
    scope: row.scope,
    agent_ids: row.agentIds,
    created_at: row.createdAt.toISOString(),
    updated_at: row.updatedAt.toISOString(),
  };
}
export type SecretView = ReturnType<typeof secretView>;
