import { Ajv, type ErrorObject, type ValidateFunction } from 'ajv';
import { type Static, type TSchema, Type } from 'typebox';
import type { BUILT_IN_TOOLS } from '../agents/definition.ts';
import { toolParameterSchema } from './output-schema.ts';

// What the model is told about the built-in tools (their JSON schemas and
// descriptions) and how the arguments it sends are checked before a tool
// runs; tools.ts runs them.

export type BuiltInTool = (typeof BUILT_IN_TOOLS)[number];

export const WORKSPACE = '/workspace';
/** What the model is shown of one tool call's output. */
export const OUTPUT_LIMIT_CHARS = 20_000;
/** read_file reads at most this much of a file; edit_file edits files up to this size. */
export const READ_LIMIT_BYTES = 1024 * 1024;
export const DEFAULT_BASH_TIMEOUT_SEC = 120;
export const GREP_TIMEOUT_SEC = 60;
export const GREP_MAX_LINES = 200;
export const GREP_LINE_CHARS = 500;
export const LIST_DEPTH = 2;
export const LIST_MAX_ENTRIES = 500;

// -- definitions -----------------------------------------------------------------------

const FilePath = Type.String({
  minLength: 1,
  maxLength: 4096,
  pattern: '^[^\\u0000]*$',
  description: 'absolute, or relative to /workspace',
});

export const ARGUMENTS = {
  bash: Type.Object(
    {
      command: Type.String({ minLength: 1, maxLength: 100_000, description: 'a bash command line' }),
      timeout_sec: Type.Optional(
        Type.Integer({
          minimum: 1,
          maximum: 86_400,
          description: `seconds before the command is killed (default ${DEFAULT_BASH_TIMEOUT_SEC}; capped by the task's limit)`,
        }),
      ),
    },
    { additionalProperties: false },
  ),
  read_file: Type.Object({ path: FilePath }, { additionalProperties: false }),
  write_file: Type.Object(
    { path: FilePath, content: Type.String({ description: 'the whole new content of the file' }) },
    { additionalProperties: false },
  ),
  edit_file: Type.Object(
    {
      path: FilePath,
      old_text: Type.String({
        minLength: 1,
        description: 'text that occurs exactly once in the file, whitespace included',
      }),
      new_text: Type.String({ description: 'what replaces old_text' }),
    },
    { additionalProperties: false },
  ),
  list_files: Type.Object(
    { path: Type.Optional({ ...FilePath, description: 'a directory (default /workspace)' }) },
    { additionalProperties: false },
  ),
  grep: Type.Object(
    {
      pattern: Type.String({
        minLength: 1,
        maxLength: 10_000,
        description: 'an extended regular expression',
      }),
      path: Type.Optional({ ...FilePath, description: 'a file or directory (default /workspace)' }),
    },
    { additionalProperties: false },
  ),
  submit_result: Type.Object(
    { result: Type.Unknown({ description: "the task's result, as JSON" }) },
    { additionalProperties: false },
  ),
} satisfies Record<BuiltInTool, TSchema>;

const DESCRIPTIONS: Record<BuiltInTool, string> = {
  bash: `Runs a command with bash -c in /workspace and returns its exit code, stdout and stderr. Times out after ${DEFAULT_BASH_TIMEOUT_SEC} s unless timeout_sec says otherwise. The task's secrets are in its environment variables.`,
  read_file: `Returns a text file's content (at most ${READ_LIMIT_BYTES / 1024} KiB of it; binary files are refused).`,
  write_file: 'Writes a file, replacing it if it exists and creating its parent directories.',
  edit_file:
    'Replaces old_text with new_text in a file. old_text must occur exactly once: include enough surrounding text to make it unique.',
  list_files: `Lists a directory ${LIST_DEPTH} levels deep, with each entry's type and size.`,
  grep: `Searches files for an extended regular expression (grep -rnIH -E), recursively; shows up to ${GREP_MAX_LINES} matching lines as path:line:text.`,
  submit_result:
    'Submits the final result of the task and ends it. Call it once, when the work is done; files to hand back go in /workspace/outputs.',
};

/** The tools `names` in OpenAI Chat Completions' `tools` format; submit_result's `result` takes `outputSchema` when given. */
export function toolDefinitions(names: readonly BuiltInTool[], outputSchema?: object | null) {
  return names.map((name) => {
    let parameters: object = ARGUMENTS[name];
    if (name === 'submit_result' && outputSchema) {
      parameters = {
        type: 'object',
        properties: {
          result: toolParameterSchema(outputSchema as Record<string, unknown>, '/properties/result'),
        },
        required: ['result'],
        additionalProperties: false,
      };
    }
    // A plain copy: the schema objects carry TypeBox's symbols, and callers may change what they get.
    return {
      type: 'function' as const,
      function: { name, description: DESCRIPTIONS[name], parameters: structuredClone(parameters) },
    };
  });
}

// -- arguments -------------------------------------------------------------------------

const ajv = new Ajv({ allErrors: true, strict: false, coerceTypes: false, useDefaults: false });
const checkers = new Map<BuiltInTool, ValidateFunction>();

export function isBuiltIn(name: string): name is BuiltInTool {
  return Object.hasOwn(ARGUMENTS, name);
}

/** `{"path": string, "timeout_sec"?: integer}`: what the model should have sent. */
function signature(name: BuiltInTool): string {
  const schema = ARGUMENTS[name] as { properties: Record<string, { type?: string }>; required?: string[] };
  const required = new Set(schema.required ?? []);
  const fields = Object.entries(schema.properties).map(
    ([field, s]) => `"${field}"${required.has(field) ? '' : '?'}: ${s.type ?? 'any JSON'}`,
  );
  return `{${fields.join(', ')}}`;
}

function problemOf(e: ErrorObject): string {
  const field = e.instancePath.replace(/^\//, '').replaceAll('/', '.');
  switch (e.keyword) {
    case 'required':
      return `missing field "${String(e.params.missingProperty)}"`;
    case 'additionalProperties':
      return `unknown field "${String(e.params.additionalProperty)}"`;
    case 'type':
      return field
        ? `"${field}" must be ${e.params.type === 'integer' ? 'an integer' : `a ${e.params.type}`}`
        : 'the arguments must be a JSON object';
    case 'minLength':
      return `"${field}" must not be empty`;
    case 'pattern':
      return `"${field}" must not contain NUL characters`;
    default:
      return `"${field}" ${e.message ?? 'is invalid'}`;
  }
}

/** The arguments, or the message telling the model what to send instead. */
export function parseArguments<N extends BuiltInTool>(
  name: N,
  raw: string,
): { args: Static<(typeof ARGUMENTS)[N]> } | { refused: string } {
  let value: unknown;
  try {
    // Some models send nothing at all for a call without arguments.
    value = raw.trim() === '' ? {} : JSON.parse(raw);
  } catch (err) {
    return {
      refused: `The arguments of ${name} are not valid JSON (${(err as Error).message}). Send a JSON object: ${signature(name)}.`,
    };
  }
  let check = checkers.get(name);
  if (!check) {
    check = ajv.compile(ARGUMENTS[name]);
    checkers.set(name, check);
  }
  if (check(value)) return { args: value as Static<(typeof ARGUMENTS)[N]> };
  const problems = [...new Set((check.errors ?? []).map(problemOf))];
  return { refused: `Invalid arguments for ${name}: ${problems.join('; ')}. Expected ${signature(name)}.` };
}
