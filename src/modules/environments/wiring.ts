import { NotFoundError } from '../../core/errors.ts';
import { isId, type TeamId } from '../../core/ids.ts';
import { systemPrincipal } from '../identity/principal.ts';
import type { CapsulesService } from '../sandboxes/service.ts';
import type { SnapshotsService } from '../sandboxes/snapshots.ts';
import type { BuildCapsules } from './builder.ts';

function capsuleId(id: string) {
  if (!isId(id, 'cap')) throw new Error(`not a capsule id: ${id}`);
  return id;
}

/** The builder's capsules, through the sandboxes module's services (as the team's system principal). */
export function buildCapsules(capsules: CapsulesService, snapshots: SnapshotsService): BuildCapsules {
  return {
    async create(principal, input) {
      const c = await capsules.create(principal, {
        template: input.template,
        ...(input.networkAllow.length > 0 ? { network: { allow: input.networkAllow } } : {}),
        metadata: input.metadata,
      });
      return c.id;
    },
    async waitRunning(principal, id, timeoutMs) {
      const c = await capsules.get(principal, capsuleId(id), {
        statuses: ['running'],
        timeoutMs,
      });
      return c.status;
    },
    async exec(principal, id, input) {
      const r = await capsules.io.exec(principal, capsuleId(id), {
        cmd: input.cmd,
        args: input.args,
        envs: input.envs,
        timeout_sec: input.timeoutSec,
      });
      if (r.background) throw new Error('a build step ran in the background');
      return r.body;
    },
    async snapshot(principal, id, name) {
      await snapshots.remove(principal, name).catch((err: unknown) => {
        if (!(err instanceof NotFoundError)) throw err;
      });
      await snapshots.create(principal, { sandbox_id: id, name });
    },
    async destroy(principal, id) {
      await capsules.remove(principal, capsuleId(id));
    },
  };
}

/** Whether `name` is a template the team may start a capsule from. */
export function templateExists(snapshots: SnapshotsService) {
  return async (teamId: TeamId, name: string): Promise<boolean> => {
    try {
      await snapshots.get(systemPrincipal(teamId, 'environments'), name);
      return true;
    } catch (err) {
      if (err instanceof NotFoundError) return false;
      throw err;
    }
  };
}
