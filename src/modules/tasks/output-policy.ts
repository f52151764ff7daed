import type { Definition } from '../agents/definition.ts';

/**
 * Whether the files a task left in /workspace/outputs (paths relative to it)
 * satisfy its agent's output policy; a message naming what is wrong, or
 * undefined when they do.
 */
export function checkOutputs(
  policy: Definition['output_policy'],
  paths: readonly string[],
): string | undefined {
  switch (policy.mode) {
    case 'any':
      return undefined;
    case 'none':
      return paths.length === 0
        ? undefined
        : `the agent's output policy is none, but the task left ${paths.length} file(s) in /workspace/outputs: ${list(paths)}`;
    case 'at_least_one':
      return paths.length > 0
        ? undefined
        : "the agent's output policy needs at least one file in /workspace/outputs, and the task left none";
    case 'named': {
      const missing = policy.files.map((f) => f.name).filter((name) => !paths.includes(name));
      return missing.length === 0
        ? undefined
        : `the agent's output policy names files the task did not leave in /workspace/outputs: ${list(missing)}`;
    }
  }
}

function list(names: readonly string[]): string {
  const shown = names.slice(0, 10).join(', ');
  return names.length > 10 ? `${shown} and ${names.length - 10} more` : shown;
}
