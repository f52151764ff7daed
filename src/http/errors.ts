import type { FastifyError, FastifyInstance, FastifyReply, FastifyRequest } from 'fastify';
import { AppError } from '../core/errors.ts';
import { fieldErrors } from './validation.ts';

export interface ErrorBody {
  error: { code: string; message: string; details?: Record<string, unknown> };
}

export function errorBody(code: string, message: string, details?: Record<string, unknown>): ErrorBody {
  return { error: details ? { code, message, details } : { code, message } };
}

// Fastify's own 4xx errors, named for people.
const FASTIFY_ERRORS: Record<string, [number, string, string?]> = {
  FST_ERR_CTP_BODY_TOO_LARGE: [413, 'payload_too_large'],
  FST_ERR_CTP_INVALID_MEDIA_TYPE: [415, 'unsupported_media_type', 'send the body as application/json'],
  FST_ERR_CTP_INVALID_CONTENT_LENGTH: [400, 'invalid_content_length'],
  FST_ERR_CTP_EMPTY_JSON_BODY: [400, 'invalid_json', 'the body is empty; send a JSON object'],
  FST_ERR_CTP_INVALID_JSON_BODY: [400, 'invalid_json'],
  FST_ERR_INVALID_URL: [400, 'invalid_url'],
  // @fastify/multipart's limits and refusals.
  FST_PARTS_LIMIT: [413, 'too_many_parts', 'the upload has more parts than allowed'],
  FST_FILES_LIMIT: [413, 'too_many_parts', 'the upload has more than one file'],
  FST_FIELDS_LIMIT: [413, 'too_many_parts', 'the upload has more fields than allowed'],
  FST_REQ_FILE_TOO_LARGE: [413, 'file_too_large', 'the uploaded file is larger than allowed'],
  FST_PROTO_VIOLATION: [400, 'invalid_multipart', 'a multipart field is named like a prototype property'],
  FST_INVALID_MULTIPART_CONTENT_TYPE: [415, 'unsupported_media_type', 'send the body as multipart/form-data'],
  FST_MP_PREMATURE_CLOSE: [400, 'invalid_multipart', 'the upload ended before its multipart body did'],
};

/**
 * Fastify's `frameworkErrors`: what its router rejects before any hook or the
 * error handler runs (a broken URL, an over-long path segment), in the error
 * shape and with the request id, instead of Fastify's own body.
 */
export function answerFrameworkError(
  error: FastifyError,
  request: FastifyRequest,
  reply: FastifyReply,
): void {
  reply.header('x-request-id', request.id);
  if (error.code === 'FST_ERR_MAX_PARAM_LENGTH') {
    reply
      .status(414)
      .send(errorBody('path_too_long', 'a path segment is longer than the limit of 100 characters'));
  } else if (error.code === 'FST_ERR_BAD_URL') {
    reply.status(400).send(errorBody('invalid_url', 'the URL is not valid; check its percent-encoding'));
  } else {
    request.log.error({ err: error }, 'router error');
    reply
      .status(500)
      .send(
        errorBody(
          'internal_error',
          `something went wrong on the server; quote request id ${request.id} when reporting it`,
        ),
      );
  }
}

declare module 'fastify' {
  interface FastifyContextConfig {
    /** Routes that speak another wire format (the LLM proxy) render their own error bodies. */
    renderError?: ProxyErrorRenderer;
  }
  interface FastifyRequest {
    /** The error code the request was answered with, for its audit entry. */
    errorCode: string | undefined;
  }
}

export type ProxyErrorRenderer = (
  request: FastifyRequest,
  status: number,
  code: string,
  message: string,
  details?: Record<string, unknown>,
) => unknown;

/**
 * The one place errors become responses. Domain errors carry their status and
 * code; validation errors list the bad fields; anything unknown is logged with
 * the request id and answered as a bare 500, never with its message or stack.
 */
export function registerErrorHandling(
  app: FastifyInstance,
  bodyLimitBytes: number,
  /** Answers a request no route took before the JSON 404 does (the dashboard's pages); undefined: it declined. */
  pageFallback?: (request: FastifyRequest, reply: FastifyReply) => FastifyReply | undefined,
): void {
  app.decorateRequest('errorCode', undefined);
  app.setErrorHandler(
    (error: FastifyError | AppError | Error, request: FastifyRequest, reply: FastifyReply) => {
      const render = (status: number, code: string, message: string, details?: Record<string, unknown>) => {
        request.errorCode = code;
        const renderer = request.routeOptions.config?.renderError;
        return reply
          .status(status)
          .send(
            renderer ? renderer(request, status, code, message, details) : errorBody(code, message, details),
          );
      };

      if (error instanceof AppError) {
        if (error.headers) reply.headers(error.headers);
        return render(error.statusCode, error.code, error.message, error.details);
      }
      const fe = error as FastifyError;
      if (fe.validation) {
        const fields = fieldErrors(fe.validation as never, fe.validationContext);
        const where =
          fe.validationContext === 'body' ? 'the request body' : `the ${fe.validationContext ?? 'request'}`;
        const summary = Object.entries(fields)
          .map(([f, m]) => `${f} ${m}`)
          .join('; ');
        return render(400, 'validation_failed', `${where} is invalid: ${summary}`, { fields });
      }
      const known = fe.code ? FASTIFY_ERRORS[fe.code] : undefined;
      if (known) {
        const [status, code, hint] = known;
        const message =
          code === 'payload_too_large'
            ? `the request body is larger than the limit of ${bodyLimitBytes} bytes`
            : (hint ?? fe.message);
        return render(
          status,
          code,
          message,
          code === 'payload_too_large' ? { limit_bytes: bodyLimitBytes } : undefined,
        );
      }
      if (typeof fe.statusCode === 'number' && fe.statusCode >= 400 && fe.statusCode < 500) {
        return render(fe.statusCode, 'bad_request', fe.message);
      }
      request.log.error({ err: error }, 'unhandled error');
      return render(
        500,
        'internal_error',
        `something went wrong on the server; quote request id ${request.id} when reporting it`,
      );
    },
  );

  app.setNotFoundHandler((request, reply) => {
    if (pageFallback?.(request, reply)) return;
    reply
      .status(404)
      .send(errorBody('route_not_found', `there is no route ${request.method} ${request.url.split('?')[0]}`));
  });
}
