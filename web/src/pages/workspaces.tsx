import { useMutation, useQuery } from '@tanstack/react-query';
import { type FormEvent, useState } from 'react';
import { Link, useNavigate } from 'react-router';
import { api, unwrap, when } from '../api.ts';
import {
  Badge,
  Button,
  ButtonLink,
  CheckField,
  DataTable,
  Empty,
  ErrorNote,
  Page,
  Section,
  SelectField,
  TextArea,
} from '../ui.tsx';
import { useAgents } from './agents.tsx';
import { StarButton } from './workspace-settings.tsx';

export function WorkspacesPage() {
  const agents = useAgents();
  const [archived, setArchived] = useState(false);
  const workspaces = useQuery({
    queryKey: ['workspaces', 'list', archived],
    queryFn: () =>
      unwrap(
        api.GET('/v1/workspaces', {
          params: { query: { limit: 100, ...(archived ? {} : { archived: false }) } },
        }),
      ),
    // A workspace goes idle, paused and expired on its own.
    refetchInterval: 5_000,
  });
  const agentName = (id: string) => agents.data?.data.find((a) => a.id === id)?.name ?? id;
  return (
    <Page title="Workspaces">
      <StartConversation />
      <Section title="Conversations">
        <CheckField label="Show archived conversations" checked={archived} onChange={setArchived} />
        <DataTable
          list={workspaces}
          what="workspaces"
          rowKey={(w) => w.id}
          empty={
            <Empty title="No conversations yet.">
              A workspace is a conversation with an agent that keeps its sandbox between messages. Start one
              above.
            </Empty>
          }
          columns={[
            {
              header: 'Conversation',
              cell: (w) => (
                <>
                  <Link to={`/workspaces/${w.id}`}>{w.name ?? 'Untitled conversation'}</Link>
                  {w.archived ? <span className="muted"> (archived)</span> : null}
                </>
              ),
              wrap: true,
            },
            {
              header: 'Star',
              quietHeader: true,
              cell: (w) => (
                <StarButton id={w.id} name={w.name ?? 'Untitled conversation'} starred={w.starred} />
              ),
            },
            { header: 'Agent', cell: (w) => agentName(w.agent_id) },
            { header: 'Status', cell: (w) => <Badge status={w.status} /> },
            { header: 'Turns', cell: (w) => w.turns },
            { header: 'Last active', cell: (w) => when(w.last_active_at) },
          ]}
        />
      </Section>
    </Page>
  );
}

function StartConversation() {
  const navigate = useNavigate();
  const agents = useAgents();
  const [agentId, setAgentId] = useState('');
  const [prompt, setPrompt] = useState('');
  const list = agents.data?.data.filter((a) => a.status === 'active') ?? [];
  const chosen = agentId || list[0]?.id || '';
  const start = useMutation({
    mutationFn: () => unwrap(api.POST('/v1/tasks', { body: { agent_id: chosen, prompt, mode: 'session' } })),
    onSuccess: (task) => void navigate(`/workspaces/${task.workspace_id}`),
  });
  const onSubmit = (e: FormEvent) => {
    e.preventDefault();
    start.mutate();
  };
  if (agents.data && list.length === 0) {
    return (
      <Section title="Start a conversation">
        <Empty
          title="No agent to talk to."
          action={<ButtonLink to="/agents/new">Create an agent</ButtonLink>}
        >
          A conversation is with an agent. Create one first (it needs a provider key and a policy).
        </Empty>
      </Section>
    );
  }
  return (
    <Section title="Start a conversation">
      <form onSubmit={onSubmit}>
        <SelectField
          label="Agent"
          options={list.map((a) => ({ value: a.id, label: `${a.name} (${a.model})` }))}
          value={chosen}
          onChange={(e) => setAgentId(e.target.value)}
        />
        <TextArea
          label="First message"
          required
          placeholder="What should the agent do first?"
          value={prompt}
          onChange={(e) => setPrompt(e.target.value)}
        />
        <ErrorNote error={start.error} />
        <Button type="submit" variant="primary" busy={start.isPending} disabled={!chosen}>
          Start conversation
        </Button>
      </form>
    </Section>
  );
}
