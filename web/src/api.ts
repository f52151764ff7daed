import { QueryCache, QueryClient } from '@tanstack/react-query';
import { createClient, PaddockError, unwrap } from '../../sdk/src/index.ts';

export type { components } from '../../sdk/src/index.ts';
export { PaddockError, unwrap };

export function cookie(name: string): string | undefined {
  for (const part of document.cookie.split(';')) {
    const [key, ...value] = part.trim().split('=');
    if (key === name) return decodeURIComponent(value.join('='));
  }
  return undefined;
}

/**
 * The `/v1` API as this page's session: the browser sends the HttpOnly session
 * cookie, and writes echo the readable CSRF cookie in `x-csrf-token`.
 */
export const api = createClient({ baseUrl: window.location.origin, csrf: () => cookie('paddock_csrf') });

/** What to show for a failed call: the API's own message. */
export function errorMessage(error: unknown): string {
  if (error instanceof PaddockError) return error.message;
  if (error instanceof TypeError) return 'Could not reach the server. Is `paddock serve` running?';
  return error instanceof Error ? error.message : String(error);
}

export function isUnauthenticated(error: unknown): boolean {
  return error instanceof PaddockError && error.status === 401;
}

export function createQueryClient(onSignedOut: () => void): QueryClient {
  return new QueryClient({
    queryCache: new QueryCache({
      onError: (error) => {
        if (isUnauthenticated(error)) onSignedOut();
      },
    }),
    defaultOptions: {
      queries: {
        staleTime: 5_000,
        // A 4xx will answer the same again; only a lost connection or a 5xx is worth retrying.
        retry: (count, error) => !(error instanceof PaddockError && error.status < 500) && count < 2,
        refetchOnWindowFocus: true,
      },
    },
  });
}

/** Money as the API reports it (USD), with cents below a dollar kept readable. */
export function usd(value: number | null | undefined): string {
  if (value === null || value === undefined) return '—';
  if (value === 0 || value >= 1) return `$${value.toFixed(2)}`;
  // A model call costs fractions of a cent: keep its digits, drop the trailing zeros.
  return `$${value.toFixed(value < 0.01 ? 6 : 4).replace(/0+$/, '')}`;
}

export function when(iso: string | null | undefined): string {
  if (!iso) return '—';
  return new Date(iso).toLocaleString();
}

/** "a, b , c" → ["a", "b", "c"]. */
export function splitList(text: string): string[] {
  return text
    .split(/[,\n]/)
    .map((s) => s.trim())
    .filter((s) => s !== '');
}

/**
 * A multipart upload as the SDK sends it: the fields in order (a file part
 * last), the body handed to fetch as it is so the browser writes its boundary.
 */
export function multipart(fields: Array<[string, string | Blob]>) {
  const form = new FormData();
  for (const [name, value] of fields) form.append(name, value);
  return { body: form as never, bodySerializer: (body: unknown) => body as FormData };
}
