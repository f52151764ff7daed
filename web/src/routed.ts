import { type UseQueryOptions, useQuery } from '@tanstack/react-query';
import { useRef } from 'react';
import { useParams, useSearchParams } from 'react-router';

/**
 * The object a page's `:id` names, read once the route has one: `/skills/new` has none (the
 * form starts empty), `/skills/{id}` edits the one it names. `refetchInterval` and the like pass
 * through.
 */
export function useRoutedItem<T>(
  kind: string,
  get: (id: string) => Promise<T>,
  options: Omit<UseQueryOptions<T>, 'queryKey' | 'queryFn' | 'enabled'> = {},
) {
  const { id } = useParams();
  const query = useQuery({
    ...options,
    queryKey: [kind, id],
    queryFn: () => get(id!),
    enabled: id !== undefined,
  });
  return { id, query };
}

/**
 * The page's query string, and a way to change it that builds on the change
 * before, even one the page has not re-rendered with yet. React-router's own
 * functional update starts from the params of the last render, so two
 * pickers changed in quick succession (a metric, then a range) would lose
 * the first.
 */
export function useAddressParams(options: { replace?: boolean } = {}) {
  const [params, setParams] = useSearchParams();
  const rendered = useRef(params);
  const latest = useRef(params);
  // A new address (ours arriving, or the user's back button) is the one to build on from here.
  if (rendered.current !== params) {
    rendered.current = params;
    latest.current = params;
  }
  const change = (edit: (next: URLSearchParams) => void) => {
    const next = new URLSearchParams(latest.current);
    edit(next);
    latest.current = next;
    setParams(next, { replace: options.replace ?? false });
  };
  return [params, change] as const;
}

/** Sets `key` to `value`, or removes it when `value` is empty or undefined. */
export function setOrDelete(params: URLSearchParams, key: string, value: string | undefined): void {
  if (value) params.set(key, value);
  else params.delete(key);
}
