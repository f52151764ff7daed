import type { FastifyInstance } from 'fastify';
import { AppError, ValidationError } from '../core/errors.ts';
import {
  jsonMayHoldUnsafeText,
  jsonNestingExceeds,
  MAX_JSON_DEPTH,
  storableText,
  unsafeTextFields,
} from '../core/input-guard.ts';

declare module 'fastify' {
  interface FastifyContextConfig {
    /**
     * A body Paddock passes on (a model call): NUL and lone surrogates in it are
     * replaced with U+FFFD instead of refused — an agent's tool output may hold them.
     */
    repairText?: boolean;
  }
}

/**
 * What every request's input passes before validation: JSON bodies parsed
 * strictly (nesting bounded first, prototype keys refused, no NUL or lone
 * surrogate in any key or value, or replaced on routes that pass bodies on)
 * and the same text rule for path
 * parameters and query strings. Register before the routes.
 */
export function registerInputGuards(app: FastifyInstance): void {
  // Fastify's own JSON parser (secure-json-parse: "__proto__" and "constructor.prototype" keys
  // refused, escaped or not) under our rules: an empty body is "no body" (POST /v1/auth/logout
  // with a Content-Type header), nesting is bounded before anything parses, and broken JSON is
  // a 400 that says where.
  const fastifyJson = app.getDefaultJsonParser('error', 'error');
  app.removeContentTypeParser('application/json');
  app.addContentTypeParser('application/json', { parseAs: 'string' }, (request, body, done) => {
    const text = body as string;
    if (text.trim() === '') return done(null, undefined);
    if (jsonNestingExceeds(text, MAX_JSON_DEPTH)) {
      return done(
        new AppError(
          400,
          'json_too_deep',
          `the request body nests arrays and objects deeper than ${MAX_JSON_DEPTH} levels`,
          { max_depth: MAX_JSON_DEPTH },
        ),
        undefined,
      );
    }
    fastifyJson(request, text, (err, parsed) => {
      if (err) return done(invalidJson(text), undefined);
      if (jsonMayHoldUnsafeText(text)) {
        if (request.routeOptions.config?.repairText) return done(null, storableText(parsed));
        const fields = unsafeTextFields(parsed);
        if (Object.keys(fields).length > 0) return done(invalidText('the request body', fields), undefined);
      }
      done(null, parsed);
    });
  });

  // Path parameters and query strings arrive percent-decoded: %00 is a NUL by now. A callback
  // hook, not an async one: it runs on every request (each proxied call among them) and never
  // waits, so it costs no promise.
  app.addHook('preValidation', (request, _reply, done) => {
    done(unsafePart('path', request.params) ?? unsafePart('query string', request.query));
  });
}

/** The 400 for a path or query string holding unsafe text, or undefined when it holds none (or nothing). */
function unsafePart(part: 'path' | 'query string', value: unknown): ValidationError | undefined {
  if (value === null || typeof value !== 'object' || isEmpty(value)) return undefined;
  const fields = unsafeTextFields(value, part);
  return Object.keys(fields).length > 0 ? invalidText(`the ${part}`, fields) : undefined;
}

function isEmpty(value: object): boolean {
  for (const _ in value) return false;
  return true;
}

function invalidText(where: string, fields: Record<string, string>): ValidationError {
  const summary = Object.entries(fields)
    .map(([f, m]) => `${f} ${m}`)
    .join('; ');
  return new ValidationError(`${where} is invalid: ${summary}`, fields);
}

/**
 * Fastify's parser says only "invalid JSON": parse again (on this failure path only) for where
 * it broke, or, when plain JSON.parse takes it, name the prototype key that was refused.
 */
function invalidJson(text: string): AppError {
  try {
    JSON.parse(text);
  } catch (err) {
    return new AppError(400, 'invalid_json', `the request body is not valid JSON: ${(err as Error).message}`);
  }
  return new AppError(
    400,
    'invalid_json',
    'the request body is not valid JSON: a "__proto__" key, or a "constructor" key holding "prototype", is not allowed',
  );
}
