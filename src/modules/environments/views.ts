import type { EnvironmentRow, VersionRow } from './repo.ts';

const iso = (d: Date | null) => (d === null ? null : d.toISOString());

export function versionView(v: VersionRow) {
  return {
    id: v.id,
    environment_id: v.environmentId,
    version: v.version,
    base: v.base,
    setup_commands: v.setupCommands,
    pip_packages: v.pipPackages,
    npm_packages: v.npmPackages,
    env_vars: v.envVars,
    network_allow: v.networkAllow,
    status: v.status,
    template: v.templateName,
    error: v.error ?? null,
    build_started_at: iso(v.buildStartedAt),
    build_finished_at: iso(v.buildFinishedAt),
    created_at: v.createdAt.toISOString(),
  };
}
export type VersionView = ReturnType<typeof versionView>;

export function environmentView(e: EnvironmentRow, current: VersionRow) {
  return {
    id: e.id,
    team_id: e.teamId as string | null,
    name: e.name,
    description: e.description,
    platform: false,
    forked_from: e.forkedFrom,
    current_version: versionView(current),
    archived: e.archivedAt !== null,
    created_at: e.createdAt.toISOString(),
    updated_at: e.updatedAt.toISOString(),
  };
}
export type EnvironmentView = ReturnType<typeof environmentView>;

const PLATFORM_CREATED = new Date('2026-01-01T00:00:00Z');

/**
 * The platform's environments: read-only, forkable, ready without a build.
 * `minimal` is the platform template of that name: the host's tools under a
 * read-only /usr, an empty home, nothing installed.
 */
export const PLATFORM_ENVIRONMENTS: readonly EnvironmentView[] = [
  {
    id: 'env_minimal',
    team_id: null,
    name: 'minimal',
    description: 'The host’s tools under a read-only /usr, an empty home; nothing installed',
    platform: true,
    forked_from: null,
    current_version: {
      id: 'envv_minimal',
      environment_id: 'env_minimal',
      version: 1,
      base: 'minimal',
      setup_commands: [],
      pip_packages: [],
      npm_packages: [],
      env_vars: {},
      network_allow: [],
      status: 'ready',
      template: 'minimal',
      error: null,
      build_started_at: null,
      build_finished_at: null,
      created_at: PLATFORM_CREATED.toISOString(),
    },
    archived: false,
    created_at: PLATFORM_CREATED.toISOString(),
    updated_at: PLATFORM_CREATED.toISOString(),
  },
];
