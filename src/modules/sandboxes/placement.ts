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
  // A host this server could not reach a moment ago is passed over while another will do: a host
  // that died has the fewest live capsules (they went to error), and would otherwise get every
  // create until its silence makes it unreachable.
  const answering = candidates.filter((h) => !states.host(h.id)!.failing?.(FAILING_FOR_MS));
  const choice = answering.length > 0 ? answering : candidates;
  if (choice.length > 1) {
    const load = await repo.countLiveByHost(states.db);
    choice.sort((a, b) => (load.get(a.id) ?? 0) - (load.get(b.id) ?? 0) || a.id.localeCompare(b.id));
  }
  return states.host(choice[0]!.id)!;
}

/** How long a failed request keeps a host out of placement (unless no other host will do). */
const FAILING_FOR_MS = 30_000;

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
