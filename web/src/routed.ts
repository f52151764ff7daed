import { type UseQueryOptions, useQuery } from '@tanstack/react-query';
import { useParams } from 'react-router';

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
