import createFetchClient, { type Client, type Middleware } from 'openapi-fetch';
import type { paths } from './schema.d.ts';

export type { components, operations, paths } from './schema.d.ts';

/** The error body every `/v1` route answers with (DESIGN.md "Errors"). */
export interface ApiErrorBody {
  error: { code: string; message: string; details?: Record<string, unknown> };
}

/** A `/v1` call that did not succeed: the HTTP status and the API's own code and message. */
export class PaddockError extends Error {
  readonly status: number;
  readonly code: string;
  readonly details: Record<string, unknown> | undefined;

  constructor(status: number, body: unknown) {
    const error = isApiError(body) ? body.error : undefined;
    super(error?.message ?? `the server answered ${status}`);
    this.name = 'PaddockError';
    this.status = status;
    this.code = error?.code ?? 'http_error';
    this.details = error?.details;
  }
}

function isApiError(body: unknown): body is ApiErrorBody {
  const error = (body as { error?: unknown } | null)?.error as { code?: unknown } | undefined;
  return typeof error?.code === 'string';
}

export interface ClientOptions {
  /** The server's address, e.g. `http://127.0.0.1:8080` (no `/v1`). */
  baseUrl: string;
  /** A team API key (`pdk_`), agent key (`pda_`) or session token (`pds_`). Browsers leave it out and send the cookie. */
  token?: string;
  /** The CSRF token a browser session sends on every non-GET request (the `paddock_csrf` cookie's value). */
  csrf?: () => string | undefined;
  fetch?: typeof fetch;
}

export type PaddockClient = Client<paths>;

/**
 * A typed client of the whole `/v1` API: `client.GET('/v1/tasks/{id}', { params: { path: { id } } })`.
 * Every method's path, parameters, body and answer are checked against the server's schema.
 */
export function createClient(options: ClientOptions): PaddockClient {
  const client = createFetchClient<paths>({
    baseUrl: options.baseUrl.replace(/\/+$/, ''),
    ...(options.fetch ? { fetch: options.fetch } : {}),
    credentials: 'same-origin',
  });
  client.use(authenticate(options));
  return client;
}

function authenticate(options: ClientOptions): Middleware {
  return {
    onRequest({ request }) {
      if (options.token) request.headers.set('authorization', `Bearer ${options.token}`);
      const csrf = request.method === 'GET' || request.method === 'HEAD' ? undefined : options.csrf?.();
      if (csrf) request.headers.set('x-csrf-token', csrf);
      return request;
    },
  };
}

/**
 * The data of a call's answer, or its failure as a PaddockError:
 * `const task = await unwrap(client.GET('/v1/tasks/{id}', …))`.
 */
export async function unwrap<T>(
  call: Promise<{ data?: T; error?: unknown; response: Response }>,
): Promise<T> {
  const { data, error, response } = await call;
  if (!response.ok) throw new PaddockError(response.status, error);
  return data as T;
}

export {
  type FollowOptions,
  followTaskEvents,
  followWorkspaceEvents,
  type LogEvent,
  readSse,
} from './events.ts';
export {
  openPty,
  PtyError,
  type PtyOptions,
  type PtySession,
  type WebSocketClass,
  type WebSocketLike,
} from './pty.ts';
