import vm from 'node:vm';
import { Ajv2020, type ErrorObject, type ValidateFunction } from 'ajv/dist/2020.js';
import addFormats from 'ajv-formats';

// A task's output_schema: a JSON Schema (draft 2020-12) that submit_result's
// `result` must match. The schema is checked when a task is created
// (checkOutputSchema) and each result against it when the agent submits
// (validateResult), with messages the model can act on.

export const SCHEMA_DIALECT = 'https://json-schema.org/draft/2020-12/schema';
/** As JSON text. */
export const MAX_SCHEMA_BYTES = 64 * 1024;
/** Objects and arrays inside one another. */
export const MAX_SCHEMA_DEPTH = 32;
const MAX_REPORTED_ERRORS = 10;
const CACHE_SIZE = 500;
/** The longest one result's check may take (see checkBounded). */
export const VALIDATE_TIMEOUT_MS = 1000;

const ajv = new Ajv2020({
  allErrors: true,
  // A misspelt keyword ("tpye") would otherwise be ignored and accept anything: it is refused.
  strictSchema: true,
  strictTypes: false,
  strictTuples: false,
  strictRequired: false,
  strictNumbers: true,
  coerceTypes: false,
  useDefaults: false,
  // Nothing is fetched: a $ref must point inside the schema.
  logger: false,
});
addFormats.default(ajv);

const compiled = new Map<string, ValidateFunction>();

/**
 * Compiles `schema` and leaves nothing of it in Ajv's own registry: every
 * task brings its own object (Ajv would keep each one), and two tasks'
 * schemas may carry the same $id.
 */
function compile(schema: object): ValidateFunction {
  try {
    return ajv.compile(schema);
  } finally {
    ajv.removeSchema(schema);
  }
}

function depthOf(value: unknown, limit: number): number {
  if (value === null || typeof value !== 'object') return 0;
  let deepest = 0;
  for (const child of Object.values(value)) {
    deepest = Math.max(deepest, depthOf(child, limit));
    if (deepest >= limit) break;
  }
  return deepest + 1;
}

function schemaProblem(e: ErrorObject): string {
  const at = e.instancePath === '' ? 'the schema' : `at ${e.instancePath}`;
  if (e.keyword === 'enum') {
    return `${at}: must be one of ${(e.params.allowedValues as unknown[]).map((v) => JSON.stringify(v)).join(', ')}`;
  }
  return `${at}: ${e.message ?? 'is invalid'}`;
}

/**
 * null when `schema` is a JSON Schema (draft 2020-12) Paddock can check
 * results against; otherwise what is wrong with it. `$schema`, when given,
 * must be draft 2020-12's; references must point inside the schema; unknown
 * keywords and formats are refused.
 */
export function checkOutputSchema(schema: unknown): string | null {
  if (schema === null || typeof schema !== 'object' || Array.isArray(schema)) {
    return 'output_schema must be a JSON Schema object';
  }
  const text = JSON.stringify(schema);
  if (Buffer.byteLength(text) > MAX_SCHEMA_BYTES) {
    return `output_schema is over ${MAX_SCHEMA_BYTES} bytes as JSON`;
  }
  if (depthOf(schema, MAX_SCHEMA_DEPTH + 1) > MAX_SCHEMA_DEPTH) {
    return `output_schema is nested more than ${MAX_SCHEMA_DEPTH} levels deep`;
  }
  const dialect = (schema as { $schema?: unknown }).$schema;
  if (dialect !== undefined && dialect !== SCHEMA_DIALECT && dialect !== `${SCHEMA_DIALECT}#`) {
    return `output_schema's $schema must be ${SCHEMA_DIALECT} (JSON Schema draft 2020-12), or left out`;
  }
  if (!ajv.validateSchema(schema)) {
    const problems = [...new Set((ajv.errors ?? []).map(schemaProblem))].slice(0, 3);
    return `output_schema is not a valid JSON Schema: ${problems.join('; ')}`;
  }
  try {
    remember(text, compile(structuredClone(schema)));
  } catch (err) {
    return `output_schema cannot be used: ${(err as Error).message}`;
  }
  return null;
}

function remember(key: string, validate: ValidateFunction): ValidateFunction {
  if (compiled.size >= CACHE_SIZE) compiled.clear();
  compiled.set(key, validate);
  return validate;
}

/** `result.items[0].name` from the JSON pointer `/items/0/name`. */
function fieldOf(pointer: string, extra?: string): string {
  const parts = pointer === '' ? [] : pointer.slice(1).split('/');
  if (extra !== undefined) parts.push(extra);
  let out = 'result';
  for (const raw of parts) {
    const part = raw.replaceAll('~1', '/').replaceAll('~0', '~');
    if (/^\d+$/.test(part)) out += `[${part}]`;
    else if (/^[A-Za-z_$][\w$]*$/.test(part)) out += `.${part}`;
    else out += `[${JSON.stringify(part)}]`;
  }
  return out;
}

function resultProblem(e: ErrorObject): string {
  switch (e.keyword) {
    case 'required':
      return `${fieldOf(e.instancePath, String(e.params.missingProperty))} is required`;
    case 'additionalProperties':
    case 'unevaluatedProperties': {
      const extra = e.params.additionalProperty ?? e.params.unevaluatedProperty;
      return `${fieldOf(e.instancePath, String(extra))} is not allowed`;
    }
    case 'enum':
      return `${fieldOf(e.instancePath)} must be one of ${(e.params.allowedValues as unknown[]).map((v) => JSON.stringify(v)).join(', ')}`;
    case 'const':
      return `${fieldOf(e.instancePath)} must be ${JSON.stringify(e.params.allowedValue)}`;
    default:
      return `${fieldOf(e.instancePath)} ${e.message ?? 'is invalid'}`;
  }
}

// A schema's `pattern` is the task author's regular expression and the
// result the model's string: one that backtracks badly (`^(a+)+$` against
// "aaa…b") would hold the server's thread for minutes. The check runs under
// a vm timeout, which interrupts any JavaScript running on the thread.
const bounded = vm.createContext({ validate: null, value: null });
const runCheck = new vm.Script('validate(value)');

function checkBounded(validate: ValidateFunction, value: unknown): boolean | 'timeout' {
  bounded.validate = validate;
  bounded.value = value;
  try {
    return runCheck.runInContext(bounded, { timeout: VALIDATE_TIMEOUT_MS }) === true;
  } catch (err) {
    if ((err as { code?: string }).code === 'ERR_SCRIPT_EXECUTION_TIMEOUT') return 'timeout';
    throw err;
  } finally {
    bounded.validate = null;
    bounded.value = null;
  }
}

/**
 * Whether `value` matches `schema` (one checkOutputSchema accepted); when
 * not, which fields are wrong and how, for the model to submit again.
 */
export function validateResult(
  schema: object,
  value: unknown,
): { ok: true } | { ok: false; message: string } {
  const key = JSON.stringify(schema);
  const validate = compiled.get(key) ?? remember(key, compile(structuredClone(schema)));
  const valid = checkBounded(validate, value);
  if (valid === 'timeout') {
    return {
      ok: false,
      message: `The result could not be checked against the task's output schema within ${VALIDATE_TIMEOUT_MS} ms (a pattern in the schema takes too long on it). Submit a shorter or simpler result.`,
    };
  }
  if (valid) return { ok: true };
  const all = [...new Set((validate.errors ?? []).map(resultProblem))];
  const shown = all.slice(0, MAX_REPORTED_ERRORS);
  const more = all.length > shown.length ? `; and ${all.length - shown.length} more` : '';
  return {
    ok: false,
    message: `The result does not match the task's output schema: ${shown.join('; ')}${more}. Call submit_result again with a corrected result.`,
  };
}

/** Keywords whose values are data, not schemas: a "$ref" key in them is left alone. */
const DATA_KEYWORDS = new Set(['const', 'enum', 'default', 'examples']);
/** Keywords whose values map names (which may be anything, "enum" too) to schemas. */
const NAMED_SCHEMAS = new Set([
  'properties',
  'patternProperties',
  '$defs',
  'definitions',
  'dependentSchemas',
]);

/**
 * The output schema as a property of submit_result's parameters, at
 * `pointer` (`/properties/result`): its `$schema` dropped and its local
 * references (`#/$defs/x`) moved there, so a model's tool schema still
 * resolves. A schema with its own `$id` keeps its references (they resolve
 * against that id), and so does a resource nested with an `$id`.
 */
export function toolParameterSchema(
  schema: Record<string, unknown>,
  pointer: string,
): Record<string, unknown> {
  const { $schema: _dialect, ...root } = structuredClone(schema);
  if (typeof root.$id === 'string') return root;
  const moveSchema = (node: unknown): void => {
    if (Array.isArray(node)) {
      for (const item of node) moveSchema(item);
      return;
    }
    if (node === null || typeof node !== 'object') return;
    const o = node as Record<string, unknown>;
    if (o !== root && typeof o.$id === 'string') return;
    for (const [key, child] of Object.entries(o)) {
      if (key === '$ref' && typeof child === 'string' && (child === '#' || child.startsWith('#/'))) {
        o.$ref = `#${pointer}${child.slice(1)}`;
      } else if (NAMED_SCHEMAS.has(key) && child !== null && typeof child === 'object') {
        for (const named of Object.values(child)) moveSchema(named);
      } else if (!DATA_KEYWORDS.has(key)) {
        moveSchema(child);
      }
    }
  };
  moveSchema(root);
  return root;
}
