import type { Context } from '../../core/context.ts';
import { ConflictError, ForbiddenError, NotFoundError } from '../../core/errors.ts';
import { newId } from '../../core/ids.ts';
import type { Db } from '../../db/client.ts';
import { isUniqueViolation } from '../../db/errors.ts';
import type { EventsService } from '../events/service.ts';
import { activeTeam, actorOf, type Principal, requireScope } from '../identity/principal.ts';
import type { CapsuleStates } from './capsule-states.ts';
import { capsuleIdOf } from './capsule-view.ts';
import * as repo from './repo.ts';

export function templateView(t: repo.TemplateRow) {
  return {
    name: t.name,
    type: t.type,
    vcpus: t.vcpus,
    memory_mb: t.memoryMb,
    size_bytes: t.sizeBytes,
    platform: t.teamId === null,
    source_capsule_id: t.sourceCapsuleId,
    host_id: t.hostId,
    metadata: t.metadata,
    created_at: t.createdAt.toISOString(),
  };
}

/** `snap-` and a time-sortable suffix, when the caller gives no name (Wrenn: "auto-generated"). */
function autoName(): string {
  return `snap-${newId('tpl').slice(4).toLowerCase()}`;
}

/**
 * Snapshots and templates (Wrenn's /v1/snapshots): a running capsule's
 * filesystem copied, under a brief freeze, into a named template on the
 * capsule's host. Names are identifiers: immutable, one per team, and never
 * the name of a platform template.
 */
export class SnapshotsService {
  constructor(
    private readonly db: Db,
    private readonly ctx: Context,
    private readonly events: EventsService,
    /** The capsules' shared state: a running capsule within a team, and the hosts. */
    private readonly states: CapsuleStates,
  ) {}

  async create(principal: Principal, input: { sandbox_id: string; name?: string }) {
    const { c, host } = await this.states.running(principal, capsuleIdOf(input.sandbox_id), 'write');
    const name = input.name ?? autoName();
    if (await repo.findTemplate(this.db, c.teamId, name)) {
      throw new ConflictError('name_taken', `a template named ${name} exists; snapshot names are immutable`, {
        name,
      });
    }
    const id = newId('tpl');
    const tree = await host.snapshot(c.id, id);
    try {
      const row = await this.db.transaction(async (tx) => {
        const inserted = await repo.insertTemplate(tx, {
          id,
          teamId: c.teamId,
          name,
          type: 'snapshot',
          sourceCapsuleId: c.id,
          vcpus: c.vcpus,
          memoryMb: c.memoryMb,
          sizeBytes: tree.sizeBytes,
          hostId: host.id,
          path: tree.path,
          metadata: {},
          createdAt: this.ctx.clock.now(),
        });
        await this.events.record(tx, {
          teamId: c.teamId,
          ...actorOf(principal),
          subjectId: c.id,
          type: 'snapshot.created',
          data: { name, source_capsule_id: c.id, size_bytes: tree.sizeBytes },
        });
        return inserted;
      });
      return templateView(row);
    } catch (err) {
      await host
        .removeTemplate(tree.path)
        .catch((cleanup: unknown) =>
          this.ctx.log.warn(
            { err: cleanup, capsule_id: c.id, template_id: id },
            "a failed snapshot's files could not be removed",
          ),
        );
      if (isUniqueViolation(err)) {
        throw new ConflictError('name_taken', `a template named ${name} exists`, { name });
      }
      throw err;
    }
  }

  async list(principal: Principal, type?: 'base' | 'snapshot') {
    const teamId = activeTeam(principal);
    requireScope(principal, 'read');
    const rows = await repo.listTemplates(this.db, teamId, type);
    return { data: rows.map(templateView), next_cursor: null };
  }

  async get(principal: Principal, name: string) {
    const teamId = activeTeam(principal);
    requireScope(principal, 'read');
    const row = await repo.findTemplate(this.db, teamId, name);
    if (!row) throw new NotFoundError('template', name);
    return templateView(row);
  }

  /** Removes the template's files and record. Capsules started from it keep their own copy. */
  async remove(principal: Principal, name: string): Promise<void> {
    const teamId = activeTeam(principal);
    requireScope(principal, 'write');
    const found = await repo.findTemplate(this.db, teamId, name);
    if (!found) throw new NotFoundError('template', name);
    if (found.teamId === null) {
      throw new ForbiddenError('platform_template', `${name} is a platform template; it cannot be deleted`);
    }
    const row = await this.db.transaction(async (tx) => {
      const deleted = await repo.deleteTeamTemplate(tx, teamId, name);
      if (deleted) {
        await this.events.record(tx, {
          teamId,
          ...actorOf(principal),
          subjectId: deleted.sourceCapsuleId ?? deleted.id,
          type: 'snapshot.deleted',
          data: { name },
        });
      }
      return deleted;
    });
    if (!row) throw new NotFoundError('template', name);
    const host = row.hostId ? this.states.host(row.hostId) : undefined;
    if (host && row.path) await host.removeTemplate(row.path);
  }
}
