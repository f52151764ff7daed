import type { FastifyInstance, FastifyRequest } from 'fastify';
import { ATTR, type Span, type Tracer } from '../core/tracing.ts';

/**
 * A server span per request (HTTP semantic conventions), continuing the
 * caller's W3C traceparent when it sends one. The span is current from
 * preHandler on (after the body is read: a body's stream events run outside
 * the request's async context), so the handler's own spans are its children.
 * `continuedOnly`: spans only for requests that carry a traceparent (a sandbox
 * host records its part of a control plane's trace, and starts none).
 * With tracing off nothing is registered.
 */
export function registerRequestSpans(
  app: FastifyInstance,
  tracer: Tracer,
  options: { continuedOnly?: boolean } = {},
): void {
  if (!tracer.enabled) return;
  const spans = new WeakMap<FastifyRequest, Span>();
  app.addHook('onRequest', (request, _reply, done) => {
    const given = request.headers.traceparent;
    const parent = typeof given === 'string' ? given : undefined;
    if (options.continuedOnly && parent === undefined) return done();
    // The route's template, never the path: a playbook hook's path is its credential.
    const route = request.routeOptions.url;
    const span = tracer.start(route ? `${request.method} ${route}` : request.method, {
      kind: 'server',
      parent: parent ?? null,
      attributes: {
        [ATTR.httpRequestMethod]: request.method,
        [ATTR.httpRoute]: route,
        [ATTR.urlScheme]: request.protocol,
        'paddock.request_id': request.id,
      },
    });
    spans.set(request, span);
    done();
  });
  app.addHook('preHandler', (request, _reply, done) => {
    const span = spans.get(request);
    if (span) tracer.within(span, () => done());
    else done();
  });
  app.addHook('onResponse', (request, reply, done) => {
    const span = spans.get(request);
    if (span) {
      span.set({ [ATTR.httpResponseStatusCode]: reply.statusCode });
      // A server span fails on a 5xx only: a 4xx is the client's (the conventions' rule).
      if (reply.statusCode >= 500) span.fail(String(reply.statusCode));
      span.end();
    }
    done();
  });
  app.addHook('onRequestAbort', (request, done) => {
    const span = spans.get(request);
    if (span) {
      span.set({ 'paddock.client_aborted': true });
      span.end();
    }
    done();
  });
}
