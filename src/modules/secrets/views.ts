import type { SecretRow, SecretVersionRow } from './repo.ts';

/** What the API shows of a value, always: eight bullets (U+2022), as Vonzio does. */
export const REDACTED_VALUE = '••••••••' as const;

/** Never the value nor its sealed form. */
export function secretView(row: SecretRow) {
  return {
    id: row.id,
    team_id: row.teamId,
    name: row.name,
    value: REDACTED_VALUE,
    value_version: row.valueVersion,
    scope: row.scope,
    agent_ids: row.agentIds,
    created_at: row.createdAt.toISOString(),
    updated_at: row.updatedAt.toISOString(),
  };
}
export type SecretView = ReturnType<typeof secretView>;

/** One version of a value: who set it and when, never the value or a hash of it. */
export function secretVersionView(row: SecretVersionRow, name: string) {
  return {
    secret_id: row.secretId,
    name,
    version: row.version,
    changed_by_kind: row.changedByKind,
    changed_by: row.changedBy,
    changed_at: row.changedAt.toISOString(),
  };
}
