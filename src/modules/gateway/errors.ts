import type { FastifyRequest } from 'fastify';
import { AppError } from '../../core/errors.ts';
import type { WireFormat } from './provider-call.ts';

/**
 * A request refused by governance: 402 budget, 403 rules, 429 rate limit.
 * Answered as `{error: {type: "governance_block", code, message, run_id, details}}`.
 */
export class GovernanceBlock extends AppError {
  constructor(
    status: 402 | 403 | 429,
    code: string,
    message: string,
    runId: string | null,
    details?: Record<string, unknown>,
    headers?: Record<string, string>,
  ) {
    super(status, code, message, { ...details, run_id: runId, error_type: 'governance_block' }, headers);
  }
}

/** Every provider in the plan failed (or none was usable): 502. */
export class ProviderFailure extends AppError {
  constructor(
    message: string,
    runId: string | null,
    attempts: Array<{ provider: string; status: number | null; message: string }>,
    headers?: Record<string, string>,
  ) {
    super(502, 'provider_error', message, { run_id: runId, error_type: 'provider_error', attempts }, headers);
  }
}

const TYPE_BY_STATUS: Record<number, string> = {
  400: 'invalid_request_error',
  401: 'authentication_error',
  403: 'permission_error',
  404: 'not_found_error',
  409: 'invalid_request_error',
  413: 'request_too_large',
  429: 'rate_limit_error',
  502: 'provider_error',
  503: 'overloaded_error',
};

/**
 * Renders an error in the shape the official SDKs parse: OpenAI
 * `{error: {type, code, message, param}}`, Anthropic `{type: "error", error: {type, message}}`,
 * both with Paddock's `code`, `run_id` and `details` alongside.
 */
export function proxyErrorRenderer(format: WireFormat) {
  return (
    _request: FastifyRequest,
    status: number,
    code: string,
    message: string,
    details?: Record<string, unknown>,
  ) => {
    const { error_type, run_id, ...rest } = (details ?? {}) as Record<string, unknown>;
    const error = {
      type: (error_type as string | undefined) ?? TYPE_BY_STATUS[status] ?? 'api_error',
      code,
      message,
      run_id: (run_id as string | null | undefined) ?? null,
      details: Object.keys(rest).length > 0 ? rest : null,
    };
    return format === 'anthropic' ? { type: 'error', error } : { error: { ...error, param: null } };
  };
}
