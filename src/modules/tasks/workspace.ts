import { CapsuleRefused, type ToolCapsule } from './tool-capsule.ts';
import { WORKSPACE } from './tool-definitions.ts';

// A task's files in its capsule: the inputs it starts with in /workspace, and
// what it leaves in /workspace/outputs. Every capsule's layer has /workspace,
// owned by the capsule's user (the bwrap driver's skeleton, drivers/layer.ts);
// directories and files made through the file API belong to that user too, so
// the agent's own commands can change them.

export const OUTPUTS_DIR = `${WORKSPACE}/outputs`;
/** How deep collectOutputs looks below /workspace/outputs. */
export const OUTPUTS_DEPTH = 32;

/** Why a task's workspace or outputs cannot be used (the runner fails the task with `code`). */
export class WorkspaceError extends Error {
  constructor(
    readonly code:
      | 'workspace_not_writable'
      | 'invalid_input_name'
      | 'outputs_not_a_directory'
      | 'too_many_output_files'
      | 'outputs_too_large',
    message: string,
  ) {
    super(message);
    this.name = 'WorkspaceError';
  }
}

export interface WorkspaceFile {
  /** Relative to /workspace/outputs (`report.md`, `charts/a.png`). */
  path: string;
  name: string;
  data: Buffer;
}

async function ensureDir(capsule: ToolCapsule, dir: string): Promise<void> {
  await capsule.mkdir(dir).catch((err: unknown) => {
    if (!(err instanceof CapsuleRefused && err.reason === 'exists')) throw err;
  });
}

/** A plain file name: no directory, not "." or "..", not the outputs directory. */
function checkInputName(name: string): void {
  if (
    name === '' ||
    name.length > 255 ||
    name === '.' ||
    name === '..' ||
    name === 'outputs' ||
    /[/\\\0]/.test(name)
  ) {
    throw new WorkspaceError('invalid_input_name', `${JSON.stringify(name)} cannot be an input file's name`);
  }
}

/**
 * Makes /workspace and /workspace/outputs (where a template may have left
 * them out), checks that the capsule's user can write in both, and writes
 * each input into /workspace under its name.
 */
export async function prepareWorkspace(
  capsule: ToolCapsule,
  inputs: readonly { name: string; data: Buffer }[],
): Promise<void> {
  const names = new Set<string>();
  for (const input of inputs) {
    checkInputName(input.name);
    if (names.has(input.name)) {
      throw new WorkspaceError(
        'invalid_input_name',
        `two input files are named ${JSON.stringify(input.name)}`,
      );
    }
    names.add(input.name);
  }
  await ensureDir(capsule, WORKSPACE);
  await ensureDir(capsule, OUTPUTS_DIR);
  // A template made from another capsule may have a /workspace of root's: the agent could not write there.
  // Paths relative to the capsule's root: the process driver maps a cwd into the capsule, not an argument.
  const probe = await capsule.exec({
    cmd: 'test',
    args: ['-w', WORKSPACE.slice(1), '-a', '-w', OUTPUTS_DIR.slice(1)],
    cwd: '/',
    timeoutSec: 30,
  });
  if (probe.exit_code !== 0) {
    throw new WorkspaceError(
      'workspace_not_writable',
      `the capsule's user cannot write in ${WORKSPACE} and ${OUTPUTS_DIR}`,
    );
  }
  for (const input of inputs) await capsule.writeFile(`${WORKSPACE}/${input.name}`, input.data);
}

/**
 * Every regular file below /workspace/outputs, up to OUTPUTS_DEPTH levels
 * down (symlinks are not followed, and other special files are skipped);
 * none when the directory is not there, a WorkspaceError when it is not a
 * directory. More than `maxFiles` files, or more
 * than `maxBytes` in all, is a WorkspaceError.
 */
export async function collectOutputs(
  capsule: ToolCapsule,
  limits: { maxFiles: number; maxBytes: number },
): Promise<WorkspaceFile[]> {
  // The file API follows a symlink at the listed path itself: /workspace/outputs must be a directory.
  const top = await capsule.list(WORKSPACE, 1).catch((err: unknown) => {
    if (err instanceof CapsuleRefused && (err.reason === 'not_found' || err.reason === 'not_a_directory')) {
      return [];
    }
    throw err;
  });
  const dir = top.find((e) => e.name === 'outputs');
  if (!dir) return [];
  if (dir.type !== 'directory') {
    throw new WorkspaceError('outputs_not_a_directory', `${OUTPUTS_DIR} is a ${dir.type}, not a directory`);
  }
  const entries = await capsule.list(OUTPUTS_DIR, OUTPUTS_DEPTH);
  const files = entries.filter((e) => e.type === 'file');
  if (files.length > limits.maxFiles) {
    throw new WorkspaceError(
      'too_many_output_files',
      `${OUTPUTS_DIR} holds ${files.length} files; at most ${limits.maxFiles} are kept`,
    );
  }
  const listedBytes = files.reduce((sum, f) => sum + f.size, 0);
  if (listedBytes > limits.maxBytes) {
    throw new WorkspaceError(
      'outputs_too_large',
      `the files in ${OUTPUTS_DIR} hold ${listedBytes} bytes; at most ${limits.maxBytes} are kept`,
    );
  }
  const out: WorkspaceFile[] = [];
  let total = 0;
  for (const f of files) {
    // Read with the room that is left: a file may have grown since it was listed.
    const data = await capsule.readFile(f.path, limits.maxBytes - total).catch((err: unknown) => {
      // A FIFO or socket is listed as a file but is not one; one removed meanwhile is not there.
      if (err instanceof CapsuleRefused && (err.reason === 'invalid_path' || err.reason === 'not_found')) {
        return null;
      }
      throw err;
    });
    if (data === null) continue;
    total += data.length;
    if (total > limits.maxBytes) {
      throw new WorkspaceError(
        'outputs_too_large',
        `the files in ${OUTPUTS_DIR} hold more than ${limits.maxBytes} bytes; at most that is kept`,
      );
    }
    out.push({ path: f.path.slice(OUTPUTS_DIR.length + 1), name: f.name, data });
  }
  return out;
}
