import type { Principal } from '../identity/principal.ts';
import type { PolicyRow, PolicyVersionRow } from './repo.ts';
import { applyDefaults, type PolicySpec } from './spec.ts';

// The JSON policies and their versions are answered as (snake_case, ISO times, USD).

/** Who wrote a change, as policy rows and versions record it (Rungate's `changed_by`). */
export function actorLabel(principal: Principal): string {
  if (principal.userId) return principal.userId;
  if (principal.apiKeyId) return `api_key:${principal.apiKeyId}`;
  if (principal.agentId) return `agent:${principal.agentId}`;
  return 'system';
}

/** Money is stored in micro-dollars and answered in USD. */
export const usd = (micros: number) => Math.round(micros) / 1_000_000;
export const toNumber = (v: string | number | null | undefined) =>
  v === null || v === undefined ? null : Number(v);
export const iso = (d: Date | null) => (d === null ? null : d.toISOString());

export function policyView(row: PolicyRow) {
  return {
    id: row.id,
    team_id: row.teamId,
    name: row.name,
    ...applyDefaults(row.spec),
    version: row.version,
    created_by: row.createdBy,
    updated_by: row.updatedBy,
    created_at: row.createdAt.toISOString(),
    updated_at: row.updatedAt.toISOString(),
  };
}
export type PolicyView = ReturnType<typeof policyView>;

export function versionView(v: PolicyVersionRow) {
  return {
    id: v.id,
    policy_id: v.policyId,
    version: v.version,
    snapshot: v.snapshot,
    changed_by: v.changedBy,
    changed_fields: v.changedFields,
    created_at: v.createdAt.toISOString(),
  };
}

/** The full state a version snapshot records. */
export function snapshotOf(name: string, spec: PolicySpec): Record<string, unknown> {
  return { name, ...spec };
}
