import { AppError } from '../../core/errors.ts';
import type { Provider } from './provider-call.ts';

/** What a provider said about its own error: OpenAI `{error: {message, type, code, param}}`, Anthropic `{error: {type, message}}`. */
export interface ProviderErrorBody {
  message: string | undefined;
  code: string | undefined;
  type: string | undefined;
}

const str = (v: unknown): string | undefined => (typeof v === 'string' && v !== '' ? v : undefined);

/** Reads a provider's error body (JSON in either format, or text such as a proxy's HTML page). */
export function readProviderError(text: string): ProviderErrorBody {
  try {
    const body = JSON.parse(text) as { error?: unknown; message?: unknown };
    if (typeof body.error === 'string') return { message: body.error, code: undefined, type: undefined };
    if (body.error && typeof body.error === 'object') {
      const e = body.error as Record<string, unknown>;
      return { message: str(e.message) ?? str(body.message), code: str(e.code), type: str(e.type) };
    }
    if (typeof body.message === 'string') return { message: body.message, code: undefined, type: undefined };
  } catch {
    // not JSON
  }
  return { message: text ? text.slice(0, 300) : undefined, code: undefined, type: undefined };
}

/**
 * Codes for a provider refusing Paddock's own provider key (401) or its account (403): the
 * agent can do nothing about those, and they must not read like Paddock refusing the agent's
 * key (401 `invalid_agent_key`) or its policy (403 `governance_block`).
 */
const KEY_FAILURES: Record<number, string> = {
  401: 'upstream_auth_failed',
  403: 'upstream_permission_denied',
};

/**
 * The client's answer to a provider error that is not retried: the provider's own status
 * (5xx as 502), and its `code` and `type` as the error's code and type, so the official SDKs'
 * APIError carries them (OpenAI's `code`/`type`; Anthropic's `type`, and `details.error_code`
 * as its `errorCode`). A refused provider key is a 502 of its own (see KEY_FAILURES), the
 * provider's code and type in `details`.
 */
export function upstreamHttpError(
  provider: Provider,
  status: number,
  text: string,
  runId: string,
  headers: Record<string, string>,
): AppError {
  const said = readProviderError(text);
  const keyFailure = KEY_FAILURES[status];
  const code = keyFailure ?? said.code ?? 'upstream_error';
  const message = `${provider} answered ${status}: ${said.message ?? `HTTP ${status}`}`;
  return new AppError(
    keyFailure || status >= 500 ? 502 : status,
    code,
    keyFailure ? `${message} (the provider refused Paddock's ${provider} key, not the agent's)` : message,
    {
      run_id: runId,
      error_type: keyFailure ? 'provider_error' : (said.type ?? 'provider_error'),
      provider,
      provider_status: status,
      provider_code: said.code ?? null,
      provider_type: said.type ?? null,
      error_code: code,
    },
    headers,
  );
}
