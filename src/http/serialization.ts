import { SerializerSelector } from '@fastify/fast-json-stringify-compiler';
import type { FastifyServerOptions } from 'fastify';

type BuildSerializer = NonNullable<
  NonNullable<NonNullable<FastifyServerOptions['schemaController']>['compilersFactory']>['buildSerializer']
>;

const buildDefault = SerializerSelector();

/**
 * Fastify's own response serializers (fast-json-stringify), each compiled on
 * its route's first response instead of at start: compiling them all up front
 * took more than a second of the server's start.
 */
export const buildLazySerializer: BuildSerializer = (externalSchemas, options) => {
  const compiler = buildDefault(externalSchemas, options);
  return (route) => {
    let serialize: ((data: unknown) => string) | undefined;
    return (data: unknown) => {
      serialize ??= compiler(route) as (data: unknown) => string;
      return serialize(data);
    };
  };
};
