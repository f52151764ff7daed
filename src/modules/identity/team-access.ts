import { NotFoundError } from '../../core/errors.ts';
import type { TeamId } from '../../core/ids.ts';
import type { DbOrTx } from '../../db/client.ts';
import { type Principal, type Role, requireScope, type Scope, scopeOfRole } from './principal.ts';
import * as repo from './repo.ts';

/**
 * What `principal` may do in `teamId` (teams and invitations ask it). Another
 * team's object is a 404, never a 403: a caller outside the team learns
 * nothing about it.
 */
export async function teamAccess(
  db: DbOrTx,
  principal: Principal,
  teamId: TeamId,
  need: Scope,
): Promise<{ team: repo.TeamRow; role: Role | null }> {
  let team: repo.TeamRow | undefined;
  let role: Role | null = null;
  let scope: Scope;
  if (principal.kind === 'session') {
    const membership = await repo.findMembership(db, teamId, principal.userId!);
    team = membership?.team;
    role = membership?.role ?? null;
    scope = role ? scopeOfRole(role) : 'read';
  } else {
    team = principal.teamId === teamId ? await repo.findLiveTeam(db, teamId) : undefined;
    scope = principal.scope;
  }
  if (!team) throw new NotFoundError('team', teamId);
  requireScope({ ...principal, role, scope }, need);
  return { team, role };
}
