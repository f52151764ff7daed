import { useAgents } from './pages/agents.tsx';
import { useMembers } from './pages/team.tsx';
import { useMe } from './shell.tsx';

/**
 * Who did something, by name where the dashboard can tell: the team's members and agents
 * (the same queries as their own pages, so mostly cached); anyone else, a system actor or an
 * API key, by kind and id.
 */
export function useActorName(): (kind: string, id: string | null) => string {
  const me = useMe();
  const members = useMembers(me.data && 'user' in me.data ? me.data.team?.id : undefined);
  const agents = useAgents();
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
