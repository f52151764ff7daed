import { type QueryKey, useInfiniteQuery } from '@tanstack/react-query';

// A list the API pages with a cursor (`{data, next_cursor}`, `?cursor=`): the
// first page, then the next one each time the reader asks (DataTable's "Load
// more"). A refetch (the list's interval, or a write that invalidates it)
// fetches the loaded pages again in order, each after the cursor of the fresh
// page before it, so a row that moved up is neither shown twice nor lost.

/** What DataTable's "Load more" needs: whether there is more, and how to get it. */
export interface Pager {
  hasMore: boolean;
  loading: boolean;
  /** Pages loaded so far. */
  pages: number;
  loadMore(): void;
}

export interface PagedList<T> {
  isPending: boolean;
  error: unknown;
  data: { data: T[] } | undefined;
  pager: Pager;
}

export interface Page<T> {
  data: T[];
  next_cursor: string | null;
}

export function usePaged<T>(options: {
  queryKey: QueryKey;
  /** One page: the first when `cursor` is undefined. */
  page: (cursor: string | undefined) => Promise<Page<T>>;
  refetchInterval?: number;
}): PagedList<T> {
  const query = useInfiniteQuery({
    queryKey: options.queryKey,
    queryFn: ({ pageParam }) => options.page(pageParam),
    initialPageParam: undefined as string | undefined,
    getNextPageParam: (last: Page<T>) => last.next_cursor ?? undefined,
    ...(options.refetchInterval ? { refetchInterval: options.refetchInterval } : {}),
  });
  const pages = query.data?.pages ?? [];
  return {
    isPending: query.isPending,
    error: query.error,
    data: query.data ? { data: pages.flatMap((p) => p.data) } : undefined,
    pager: {
      hasMore: query.hasNextPage,
      loading: query.isFetchingNextPage,
      pages: pages.length,
      loadMore: () => {
        if (!query.isFetchingNextPage) void query.fetchNextPage();
      },
    },
  };
}
