import { randomBytes } from 'node:crypto';
import type { Readable } from 'node:stream';
import { BadRequestError, ConflictError } from '../../core/errors.ts';
import type { CapsuleId } from '../../core/ids.ts';
import { type Principal, systemPrincipal } from '../identity/principal.ts';
import { capsuleIdOf } from '../sandboxes/capsule-view.ts';
import type { CapsulesService } from '../sandboxes/service.ts';
import type { WorkspacesService } from './service.ts';

// A workspace's files: what is in its capsule's /workspace, listed, uploaded,
// downloaded, deleted and archived through the sandboxes module's capsule
// I/O as the team's system principal. Every path is relative to /workspace
// and must stay inside it: `..`, absolute paths and symlinks that lead out
// are refused (the capsule resolves the path, so its own symlinks count).

export const ROOT = '/workspace';
/** How deep the listing looks below /workspace. */
const LIST_DEPTH = 16;

/** A path as given, made relative to /workspace ('' is /workspace itself); 400 when it is not one. */
export function relativePath(raw: string): string {
  if (raw.startsWith('/') || /[\0\\]/.test(raw))
    throw new BadRequestError('invalid_path', 'give a path relative to /workspace, without backslashes');
  const parts = raw.split('/').filter((p) => p !== '');
  if (parts.some((p) => p === '..' || p === '.'))
    throw new BadRequestError('invalid_path', 'a path may not hold "." or ".." segments');
  return parts.join('/');
}

export class WorkspaceFiles {
  constructor(
    private readonly workspaces: WorkspacesService,
    private readonly capsules: CapsulesService,
  ) {}

  private async open(principal: Principal, id: string, need: 'read' | 'write') {
    const { teamId, workspace, capsuleId } = await this.workspaces.running(principal, id, need);
    return {
      as: systemPrincipal(teamId, `workspace:${workspace.id}`),
      capsule: capsuleIdOf(capsuleId),
      workspace,
    };
  }

  /** The absolute path of `rel`, once the capsule has resolved it (symlinks followed) to inside /workspace. */
  private async inside(as: Principal, capsule: CapsuleId, rel: string): Promise<string> {
    const path = rel === '' ? ROOT : `${ROOT}/${rel}`;
    const r = await this.capsules.io.exec(as, capsule, {
      cmd: 'realpath',
      args: ['-m', '--', path],
      timeout_sec: 10,
    });
    const resolved = r.background ? '' : r.body.stdout.trim();
    if (resolved !== ROOT && !resolved.startsWith(`${ROOT}/`))
      throw new BadRequestError('path_outside_workspace', `${rel} leads outside /workspace`);
    return path;
  }

  async list(principal: Principal, id: string) {
    const { as, capsule } = await this.open(principal, id, 'read');
    const { entries } = await this.capsules.io.listFiles(as, capsule, ROOT, LIST_DEPTH);
    return {
      data: entries
        .map((e) => ({ path: e.path.slice(ROOT.length + 1), type: e.type, size_bytes: e.size }))
        .sort((a, b) => a.path.localeCompare(b.path)),
    };
  }

  async upload(principal: Principal, id: string, dir: string, filename: string, data: Readable) {
    const { as, capsule } = await this.open(principal, id, 'write');
    const rel = relativePath(dir === '' ? filename : `${dir}/${filename}`);
    const path = await this.inside(as, capsule, rel);
    await this.capsules.io.writeFile(as, capsule, path, data, true);
    return { path: rel };
  }

  async download(principal: Principal, id: string, raw: string) {
    const { as, capsule } = await this.open(principal, id, 'read');
    const rel = relativePath(raw);
    if (rel === '') throw new BadRequestError('invalid_path', 'name a file under /workspace');
    const path = await this.inside(as, capsule, rel);
    return { name: rel.split('/').at(-1)!, body: await this.capsules.io.readStream(as, capsule, path) };
  }

  async remove(principal: Principal, id: string, raw: string): Promise<void> {
    const { as, capsule } = await this.open(principal, id, 'write');
    const rel = relativePath(raw);
    if (rel === '') throw new BadRequestError('invalid_path', 'name a file or directory under /workspace');
    const path = await this.inside(as, capsule, rel);
    await this.capsules.io.removeFile(as, capsule, path);
  }

  /** /workspace as a tar.gz, made in the capsule's /tmp and streamed from there (removed once read). */
  async archive(principal: Principal, id: string) {
    const { as, capsule, workspace } = await this.open(principal, id, 'read');
    const tmp = `/tmp/paddock-archive-${randomBytes(8).toString('hex')}.tar.gz`;
    const made = await this.capsules.io.exec(as, capsule, {
      cmd: 'tar',
      args: ['-czf', tmp, '-C', ROOT, '.'],
      timeout_sec: 300,
    });
    if (made.background || made.body.exit_code !== 0)
      throw new ConflictError(
        'archive_failed',
        `tar could not archive /workspace: ${made.background ? '' : made.body.stderr.slice(-300)}`,
      );
    const body = await this.capsules.io.readStream(as, capsule, tmp);
    body.once('close', () => {
      void this.capsules.io.removeFile(as, capsule, tmp).catch(() => undefined);
    });
    return { name: `${workspace.id}.tar.gz`, body };
  }
}
