import { Ajv, type ErrorObject, type Options, type ValidateFunction } from 'ajv';
import addFormats from 'ajv-formats';
import type { FastifySchemaCompiler } from 'fastify';

const base: Options = {
  allErrors: true,
  // Unknown fields are refused rather than silently dropped: a typo in a
  // field name should be an error the caller sees, not a setting ignored.
  removeAdditional: false,
  useDefaults: true,
  strict: false,
  // Errors carry their schema: a refused key is explained by its schema's description.
  verbose: true,
  // strict: false would let Infinity (JSON's 1e999, a query's "1e999") pass as a number.
  strictNumbers: true,
};

function makeAjv(options: Options): Ajv {
  const ajv = new Ajv({ ...base, ...options });
  addFormats.default(ajv);
  return ajv;
}

// Bodies are JSON: a wrong type is an error, never coerced ("1" is not 1).
// Query strings, params and headers are text, so they are coerced.
const bodyAjv = makeAjv({ coerceTypes: false });
const textAjv = makeAjv({ coerceTypes: 'array' });

/**
 * Each route's validator is compiled on the route's first request, not at
 * start: compiling every route's schemas up front took about a second of the
 * server's start. The wrapper passes Fastify what Ajv's own function carries
 * (`errors` after a call, `schemaEnv` so Fastify hands it the parent to change).
 */
export const validatorCompiler: FastifySchemaCompiler<unknown> = ({ schema, httpPart }) => {
  let compiled: ValidateFunction | undefined;
  const compile = () => {
    compiled ??= (httpPart === 'body' ? bodyAjv : textAjv).compile(schema as object);
    return compiled;
  };
  const validate = (data: unknown, context?: Parameters<ValidateFunction>[1]) => {
    const fn = compile();
    const ok = fn(data, context);
    validate.errors = fn.errors;
    if (!ok || httpPart === 'body') return ok;
    validate.errors = nonFinite(data);
    return validate.errors === null;
  };
  validate.errors = null as ValidateFunction['errors'];
  Object.defineProperty(validate, 'schemaEnv', { get: () => compile().schemaEnv });
  return validate;
};

/**
 * Text coerced to a number must be a finite one: Ajv turns "1e999" into
 * Infinity and lets it pass (strictNumbers does not look after coercion), so
 * a query, path or header value of that kind is refused here, as a JSON
 * body's Infinity is by Ajv itself.
 */
function nonFinite(data: unknown): ErrorObject[] | null {
  if (data === null || typeof data !== 'object') return null;
  const errors: ErrorObject[] = [];
  for (const [key, value] of Object.entries(data)) {
    for (const v of Array.isArray(value) ? value : [value]) {
      if (typeof v === 'number' && !Number.isFinite(v))
        errors.push({
          instancePath: `/${key}`,
          schemaPath: '',
          keyword: 'type',
          params: { type: 'a finite number' },
          message: 'must be a finite number',
        });
    }
  }
  return errors.length > 0 ? errors : null;
}

/** `{"name": "must be a string", "email": "is required"}` from Ajv's errors. */
export function fieldErrors(errors: ErrorObject[], context: string | undefined): Record<string, string> {
  // No prototype: a field named "__proto__" must be listed, not swallowed by the setter.
  const fields: Record<string, string> = Object.create(null);
  for (const e of errors) {
    let field = e.instancePath.replace(/^\//, '').replaceAll('/', '.');
    let message = e.message ?? 'is invalid';
    if (e.propertyName !== undefined) {
      // A key refused by propertyNames: name it, and say what keys may be.
      if (e.keyword === 'propertyNames') continue;
      field = [field, e.propertyName].filter(Boolean).join('.');
      const rule = (e.parentSchema as { description?: unknown } | undefined)?.description;
      message = typeof rule === 'string' ? `is not an allowed name: ${rule}` : 'is not an allowed name';
    } else if (e.keyword === 'required') {
      field = [field, String(e.params.missingProperty)].filter(Boolean).join('.');
      message = 'is required';
    } else if (e.keyword === 'additionalProperties') {
      field = [field, String(e.params.additionalProperty)].filter(Boolean).join('.');
      message = 'is not a known field';
    } else if (e.keyword === 'enum') {
      message = `must be one of ${(e.params.allowedValues as unknown[]).map(String).join(', ')}`;
    } else if (e.keyword === 'const') {
      // A union of literals (TypeBox's enums) fails once per literal: list them all.
      const allowed = new Set(
        errors
          .filter((o) => o.keyword === 'const' && o.instancePath === e.instancePath)
          .map((o) => String(o.params.allowedValue)),
      );
      message = `must be one of ${[...allowed].join(', ')}`;
    } else if (e.keyword === 'type') {
      message = `must be ${e.params.type}`;
    }
    const key = field === '' ? (context ?? 'body') : field;
    // Keep the first message per field: later ones (anyOf branches) say less.
    fields[key] ??= message;
  }
  return fields;
}
