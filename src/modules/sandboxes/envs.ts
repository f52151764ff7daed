import { Type } from 'typebox';

// The one rule for environment variables a caller hands a capsule process
// (exec, background processes, the exec and terminal WebSockets, and the
// driver itself as the last check). The variables reach only the process
// inside the capsule, after its privileges are dropped (drivers/nsproc.ts);
// the rule keeps them plain on top of that.

/**
 * Upper case, digits and "_", not starting with a digit — and never LD_*:
 * the dynamic loader reads LD_PRELOAD, LD_LIBRARY_PATH, LD_AUDIT … in every
 * process it starts, so no caller may set them anywhere.
 */
export const ENV_NAME_PATTERN = '^(?!LD_)[A-Z_][A-Z0-9_]*$';
const ENV_NAME = new RegExp(ENV_NAME_PATTERN);
export const MAX_NAME_LENGTH = 200;
export const MAX_VALUE_LENGTH = 32_768;
const MAX_ENVS = 200;
/** Names and values together: the kernel refuses to start a process whose environment is much larger. */
export const MAX_ENVS_BYTES = 256 * 1024;

export const NAME_RULE = 'upper-case letters, digits and "_", not starting with a digit, and not LD_*';

export const EnvsSchema = Type.Record(Type.String(), Type.String({ maxLength: MAX_VALUE_LENGTH }), {
  maxProperties: MAX_ENVS,
  propertyNames: Type.String({
    minLength: 1,
    maxLength: MAX_NAME_LENGTH,
    pattern: ENV_NAME_PATTERN,
    description: NAME_RULE,
  }),
  description: `environment variables of the process: names ${NAME_RULE}; at most ${MAX_ENVS}, ${MAX_ENVS_BYTES / 1024} KiB in all`,
});

/** What is wrong with `envs`, by field (`envs.NAME`); null when nothing is. */
export function envProblems(envs: Record<string, unknown>, field = 'envs'): Record<string, string> | null {
  const problems: Record<string, string> = {};
  const entries = Object.entries(envs);
  if (entries.length > MAX_ENVS) problems[field] = `must have at most ${MAX_ENVS} variables`;
  let bytes = 0;
  for (const [name, value] of entries) {
    if (name.length > MAX_NAME_LENGTH || !ENV_NAME.test(name)) {
      problems[`${field}.${name}`] = `is not an allowed name: ${NAME_RULE}`;
    } else if (typeof value !== 'string') {
      problems[`${field}.${name}`] = 'must be a string';
    } else if (value.length > MAX_VALUE_LENGTH) {
      problems[`${field}.${name}`] = `must be at most ${MAX_VALUE_LENGTH} characters`;
    } else if (value.includes('\0')) {
      problems[`${field}.${name}`] = 'must not contain a NUL character';
    } else {
      bytes += Buffer.byteLength(name) + Buffer.byteLength(value) + 2;
    }
  }
  if (bytes > MAX_ENVS_BYTES) problems[field] = `must be at most ${MAX_ENVS_BYTES / 1024} KiB in all`;
  return Object.keys(problems).length > 0 ? problems : null;
}

/** envProblems as one line ("envs.X is not …; envs …"), or null when there are none. */
export function envRefusal(envs: Record<string, unknown>): string | null {
  const problems = envProblems(envs);
  if (!problems) return null;
  return Object.entries(problems)
    .map(([field, problem]) => `${field} ${problem}`)
    .join('; ');
}
