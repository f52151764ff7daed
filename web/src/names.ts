import { useQuery } from '@tanstack/react-query';
import { api, unwrap } from './api.ts';
import { useMe } from './shell.tsx';

/**
 * Who did something, by name where the dashboard can tell: the team's members and agents
 * (already read by other pages, so mostly cached); anyone else, a system actor or an API key,
 * by kind and id.
 */
export function useActorName(): (kind: string, id: string | null) => string {
  const me = useMe();
  const teamId = me.data && 'user' in me.data ? me.data.team?.id : undefined;
  const members = useQuery({
    queryKey: ['members', teamId],
    queryFn: () =>
      unwrap(api.GET('/v1/teams/{id}/members', { params: { path: { id: teamId! }, query: { limit: 200 } } })),
    enabled: teamId !== undefined,
    staleTime: 60_000,
  });
  const agents = useQuery({
    queryKey: ['agents'],
    queryFn: () => unwrap(api.GET('/v1/agents', { params: { query: { limit: 200 } } })),
    staleTime: 60_000,
  });
  return (kind, id) => {
    if (id === null) return kind;
    if (kind === 'user') {
      const m = members.data?.data.find((u) => u.user_id === id);
      if (m) return m.name || m.email;
    }
    if (kind === 'agent') {
      const a = agents.data?.data.find((x) => x.id === id);
      if (a) return `agent ${a.name}`;
    }
    return `${kind} ${id}`;
  };
}
