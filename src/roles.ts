// What each `paddock serve --role` runs (docs/operations.md, "Roles"). One
// table, read by the composition root (app.ts) and the CLI (main.ts), so a
// piece of background work is placed in one place.

export const ROLES = ['all', 'api', 'worker', 'scheduler'] as const;
export type Role = (typeof ROLES)[number];

export interface RoleWork {
  /** The API, the gateway, SSE and WebSockets; without it only /health, /ready and /metrics answer. */
  http: boolean;
  /** Job workers: task runs, builds, mail, webhook and channel deliveries. */
  jobs: boolean;
  /** The leaders (playbook scheduler, alert evaluator) and the periodic sweeps. */
  sweeps: boolean;
  /**
   * A sandbox host inside this process. Only `all`: a capsule on it is
   * reachable through this process alone, so with several servers capsules
   * live on `paddock host`s, which every server reaches.
   */
  localHost: boolean;
}

const WORK: Record<Role, RoleWork> = {
  all: { http: true, jobs: true, sweeps: true, localHost: true },
  api: { http: true, jobs: false, sweeps: false, localHost: false },
  worker: { http: false, jobs: true, sweeps: false, localHost: false },
  scheduler: { http: false, jobs: false, sweeps: true, localHost: false },
};

export function roleWork(role: Role): RoleWork {
  return WORK[role];
}

/** The paths a server without the API role answers: probes and metrics. */
export const PROBE_PATHS: ReadonlySet<string> = new Set(['/health', '/ready', '/metrics']);

/**
 * The role's problems as config.ts lists them: an unknown name, or a role
 * other than `all` on the embedded database (one process owns its data dir).
 */
export function roleProblems(name: string, raw: string, databaseUrl: string | undefined): string[] {
  if (!(ROLES as readonly string[]).includes(raw))
    return [`${name}=${JSON.stringify(raw)} must be one of ${ROLES.join(', ')}`];
  if (raw !== 'all' && databaseUrl === undefined)
    return [
      `${name}=${raw} needs DATABASE_URL: on the embedded database one process owns the data dir, so it runs every role (all); set DATABASE_URL to split roles over processes`,
    ];
  return [];
}
