import type { IncomingMessage, Server, ServerResponse } from 'node:http';
import type { TypeBoxTypeProvider } from '@fastify/type-provider-typebox';
import type { FastifyBaseLogger, FastifyInstance, FastifyRequest } from 'fastify';
import type { RequestContext } from '../core/request-context.ts';
import { requestContextOf } from './audit.ts';
import { deviceCookieOf } from './device-cookie.ts';

/** The Fastify instance every module registers its routes on. */
export type App = FastifyInstance<
  Server,
  IncomingMessage,
  ServerResponse,
  FastifyBaseLogger,
  TypeBoxTypeProvider
>;

export function requestMeta(request: FastifyRequest): {
  userAgent: string | null;
  ipAddress: string | null;
  deviceToken: string | null;
  request: RequestContext;
} {
  const ua = request.headers['user-agent'];
  return {
    userAgent: typeof ua === 'string' ? ua : null,
    ipAddress: request.ip ?? null,
    deviceToken: deviceCookieOf(request),
    // The one the audit hook reads: a sign-in's entry marks this request audited.
    request: requestContextOf(request),
  };
}
