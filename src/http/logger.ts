import type { FastifyServerOptions } from 'fastify';
import { type Logger, pino } from 'pino';
import type { Config } from '../config.ts';
import { serializeError } from '../core/error-log.ts';

/** Where log lines go instead of stdout (tests read them back). */
export interface LogDestination {
  write(line: string): void;
}

/**
 * The server's logger (Fastify's pino): JSON lines at the configured level,
 * credentials redacted from request headers, paths without query strings,
 * and errors through serializeError, so no database parameter reaches a log.
 */
export function loggerOptions(config: Pick<Config, 'logLevel'>, destination?: LogDestination) {
  return {
    level: config.logLevel,
    redact: ['req.headers.authorization', 'req.headers.cookie', 'req.headers["x-api-key"]'],
    serializers: {
      // Paths only: query strings can carry tokens (invitation lookups).
      req: (req: { method: string; url: string; id: string }) => ({
        method: req.method,
        path: loggablePath(req.url),
        request_id: req.id,
      }),
      err: (err: unknown) => serializeError(err),
    },
    hooks: {
      // pino makes an Error given alone the line's message too (`log.error(err)`): keep its words out.
      logMethod(this: unknown, args: unknown[], method: (...a: unknown[]) => void) {
        if (args[0] instanceof Error) {
          const message = typeof args[1] === 'string' ? args[1] : 'error';
          return method.apply(this, [{ err: args[0] }, message]);
        }
        return method.apply(this, args);
      },
    },
    ...(destination ? { stream: destination } : {}),
  } as unknown as FastifyServerOptions['logger'];
}

/**
 * The one logger a server writes through, made before anything else so every
 * service gets it in its context (Fastify uses the same instance): `false`
 * is silent, options as loggerOptions gives them.
 */
export function createLogger(setting: FastifyServerOptions['logger']): Logger {
  if (setting === false || setting === undefined) return pino({ enabled: false });
  if (setting === true) return pino();
  const { stream, ...options } = setting as { stream?: LogDestination } & Record<string, unknown>;
  return stream ? pino(options, stream as never) : pino(options);
}

/**
 * Routes whose path itself is the credential (a playbook's webhook trigger,
 * `/v1/hooks/playbooks/<token>`): the token's segment is masked.
 */
const SECRET_PATH = /^(\/v1\/hooks\/[^/]+\/)[^/]+/;

/** A request's path for the log: no query string, no token in a path. */
export function loggablePath(url: string): string {
  return url.split('?')[0]!.replace(SECRET_PATH, '$1…');
}
