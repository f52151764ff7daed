import {
  AppError,
  BadRequestError,
  ConflictError,
  NotFoundError,
  PayloadTooLargeError,
  ValidationError,
} from '../../core/errors.ts';
import { type CapsuleId, type HostId, idOrNotFound } from '../../core/ids.ts';
import { DriverError } from './drivers/types.ts';
import { envProblems } from './envs.ts';
import type * as repo from './repo.ts';

// What the capsule services share: the JSON a capsule is shown as, and the
// errors a host's refusal and a bad environment become.

/** Wrenn: "positive values below 60 are silently clamped to 60". */
export function effectiveTimeoutSec(requested: number | undefined): number {
  const t = requested ?? 0;
  return t > 0 && t < 60 ? 60 : t;
}

export function view(c: repo.CapsuleRow, now: Date) {
  const running = c.runningSince ? Math.floor((now.getTime() - c.runningSince.getTime()) / 1000) : 0;
  return {
    id: c.id,
    team_id: c.teamId,
    status: c.status,
    status_reason: c.statusReason,
    template: c.template,
    vcpus: c.vcpus,
    memory_mb: c.memoryMb,
    disk_size_mb: c.diskSizeMb,
    timeout_sec: c.timeoutSec,
    network: c.networkAllow ? { allow: c.networkAllow } : null,
    metadata: c.metadata,
    isolation: c.isolation,
    host_id: c.hostId,
    active_seconds: c.activeSeconds + Math.max(0, running),
    created_at: c.createdAt.toISOString(),
    started_at: c.startedAt?.toISOString() ?? null,
    last_active_at: c.lastActiveAt?.toISOString() ?? null,
    ended_at: c.endedAt?.toISOString() ?? null,
  };
}
export type CapsuleView = ReturnType<typeof view>;

/** A driver's refusal as the error a user can act on. */
export function fromDriver(err: unknown, path?: string): never {
  if (err instanceof DriverError) {
    switch (err.code) {
      case 'not_found':
        throw new NotFoundError(path ? 'file' : 'capsule', path ?? 'capsule');
      case 'too_large':
        throw new PayloadTooLargeError(err.message);
      case 'no_space':
        throw new AppError(507, 'no_space', err.message);
      case 'invalid_path':
        throw new BadRequestError('invalid_path', err.message, path ? { path } : undefined);
      case 'exists':
        throw new ConflictError('already_exists', err.message, path ? { path } : undefined);
      case 'not_a_directory':
        throw new BadRequestError('not_a_directory', err.message, path ? { path } : undefined);
      case 'invalid':
        throw new ValidationError(err.message);
      default:
        throw new AppError(502, 'host_error', err.message);
    }
  }
  throw err;
}

/** The environment rules (envs.ts) past the schema's: the total size. */
export function checkEnvs(envs: Record<string, string> | undefined): void {
  const refused = envs && envProblems(envs);
  if (refused) {
    throw new ValidationError(
      `envs are not allowed: ${Object.entries(refused)
        .map((e) => e.join(' '))
        .join('; ')}`,
      refused,
    );
  }
}

/** A capsule id from a path or a body; anything else names no capsule (404, as an unknown id). */
export function capsuleIdOf(raw: string): CapsuleId {
  return idOrNotFound(raw, 'cap', 'capsule');
}

/** A host id from a path; anything else names no host (404, as an unknown id). */
export function hostIdOf(raw: string): HostId {
  return idOrNotFound(raw, 'hst', 'host');
}
