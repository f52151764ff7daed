import { ServiceUnavailableError } from '../../core/errors.ts';
import type { CapsuleId, HostId, TeamId } from '../../core/ids.ts';
import type { CapsuleStates } from './capsule-states.ts';
import type { HostCapsuleSpec, SandboxHost } from './host.ts';
import * as repo from './repo.ts';

/**
 * The host for a new capsule: among the online hosts this team may use
 * (shared ones and its own BYOC hosts) that carry every requested tag and
 * that this server can reach, the one with the fewest live capsules. A
 * capsule from a snapshot goes where the snapshot's files are (`pinned`).
 */
export async function placeCapsule(
  states: CapsuleStates,
  teamId: TeamId,
  tags: string[],
  pinned: HostId | null,
): Promise<SandboxHost> {
  const candidates = (await repo.onlineHosts(states.db, teamId)).filter(
    (h) => states.host(h.id) && tags.every((t) => h.tags.includes(t)) && (!pinned || h.id === pinned),
  );
  if (candidates.length === 0) {
    if (pinned) {
      throw new ServiceUnavailableError(
        'template_unavailable',
        'the host that holds this template is not online',
      );
    }
    throw new ServiceUnavailableError(
      'no_host',
      tags.length > 0 ? `no online host has the tags ${tags.join(', ')}` : 'no sandbox host is online',
    );
  }
  if (candidates.length > 1) {
    const load = await repo.countLiveByHost(states.db);
    candidates.sort((a, b) => (load.get(a.id) ?? 0) - (load.get(b.id) ?? 0) || a.id.localeCompare(b.id));
  }
  return states.host(candidates[0]!.id)!;
}

/** What the host is asked to start (every capsule process gets at most these). */
export function hostSpec(
  id: CapsuleId,
  teamId: TeamId,
  templatePath: string | null,
  limits: { memoryMb: number; vcpus: number; diskMb: number },
  networkAllow: string[] | null,
): HostCapsuleSpec {
  return {
    id,
    teamId,
    templatePath,
    limits: { ...limits, maxProcesses: 512, maxOpenFiles: 4096 },
    envs: {},
    networkAllow,
  };
}
