import type { FastifyInstance } from 'fastify';
import { AppError, ValidationError } from '../core/errors.ts';
import {
  jsonMayHoldUnsafeText,
  jsonNestingExceeds,
  MAX_JSON_DEPTH,
  unsafeTextFields,
} from '../core/input-guard.ts';

/**
 * What every request's input passes before validation: JSON bodies parsed
 * strictly (nesting bounded first, prototype keys refused, no NUL or lone
 * surrogate in any key or value) and the same text rule for path
 * parameters and query strings. Register before the routes.
 */
export function registerInputGuards(app: FastifyInstance): void {
  // An empty body is "no body" (POST /v1/auth/logout with a Content-Type header),
  // and broken JSON is a 400 that says where.
  app.removeContentTypeParser('application/json');
  app.addContentTypeParser('application/json', { parseAs: 'string' }, (_request, body, done) => {
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
    let parsed: unknown;
    try {
      parsed = parseRefusingPoisonedKeys(text);
    } catch (err) {
      return done(
        new AppError(400, 'invalid_json', `the request body is not valid JSON: ${(err as Error).message}`),
        undefined,
      );
    }
    if (jsonMayHoldUnsafeText(text)) {
      const fields = unsafeTextFields(parsed);
      if (Object.keys(fields).length > 0) return done(invalidText('the request body', fields), undefined);
    }
    done(null, parsed);
  });

  // Path parameters and query strings arrive percent-decoded: %00 is a NUL by now.
  app.addHook('preValidation', async (request) => {
    for (const [part, value] of [
      ['path', request.params],
      ['query string', request.query],
    ] as const) {
      if (value === null || typeof value !== 'object') continue;
      const fields = unsafeTextFields(value, part);
      if (Object.keys(fields).length > 0) throw invalidText(`the ${part}`, fields);
    }
  });
}

function invalidText(where: string, fields: Record<string, string>): ValidationError {
  const summary = Object.entries(fields)
    .map(([f, m]) => `${f} ${m}`)
    .join('; ');
  return new ValidationError(`${where} is invalid: ${summary}`, fields);
}

/** Fastify's own parser refuses prototype-poisoning keys; so does this one. */
function parseRefusingPoisonedKeys(text: string): unknown {
  // The reviver is slower, so it runs only when such a key could be there (\u escapes too).
  const guarded = text.includes('__proto__') || text.includes('prototype') || text.includes('\\u');
  if (!guarded) return JSON.parse(text);
  return JSON.parse(text, (key: string, value: unknown) => {
    if (
      key === '__proto__' ||
      (key === 'constructor' &&
        typeof value === 'object' &&
        value !== null &&
        Object.hasOwn(value, 'prototype'))
    ) {
      throw new SyntaxError(`"${key}" is not allowed as a key`);
    }
    return value;
  });
}
