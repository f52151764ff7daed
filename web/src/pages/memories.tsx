import { useMutation, useQuery, useQueryClient } from '@tanstack/react-query';
import { type FormEvent, useState } from 'react';
import { Link } from 'react-router';
import { api, unwrap, when } from '../api.ts';
import {
  Button,
  ButtonLink,
  ConfirmButton,
  DataTable,
  Empty,
  ErrorNote,
  Page,
  Section,
  SelectField,
  TextArea,
  TextField,
} from '../ui.tsx';
import './agents-extra.css';
import { setOrDelete, useAddressParams } from '../routed.ts';
import { useAgents } from './agents.tsx';

type Memory = Awaited<ReturnType<typeof listMemories>>['data'][number];

function listMemories(agentId: string) {
  return unwrap(
    api.GET('/v1/memories', { params: { query: { limit: 200, ...(agentId ? { agent_id: agentId } : {}) } } }),
  );
}

/**
 * What agents remember across tasks (an agent with memory on saves and
 * searches them itself; people can add, find and delete them here). The
 * agent and the words searched are kept in the address.
 */
export function MemoriesPage() {
  const client = useQueryClient();
  const agents = useAgents();
  const [params, change] = useAddressParams();
  const agentId = params.get('agent') ?? '';
  const q = params.get('q') ?? '';
  const [words, setWords] = useState(q);
  const searching = agentId !== '' && q !== '';
  const memories = useQuery({
    queryKey: ['memories', agentId, q],
    queryFn: (): Promise<{ data: Memory[] }> =>
      searching
        ? unwrap(api.GET('/v1/memories/search', { params: { query: { agent_id: agentId, q, limit: 50 } } }))
        : listMemories(agentId),
  });
  const remove = useMutation({
    mutationFn: (id: string) => unwrap(api.DELETE('/v1/memories/{id}', { params: { path: { id } } })),
    onSuccess: () => client.invalidateQueries({ queryKey: ['memories'] }),
  });
  const list = agents.data?.data ?? [];
  const agentName = (id: string) => list.find((a) => a.id === id)?.name ?? id;
  // Words are searched in one agent's memories: no agent, no words.
  const show = (next: { agent?: string; q?: string }) =>
    change((p) => {
      if (next.agent !== undefined) setOrDelete(p, 'agent', next.agent);
      if (next.q !== undefined) setOrDelete(p, 'q', next.q);
      if (!p.get('agent')) p.delete('q');
    });
  const search = (e: FormEvent) => {
    e.preventDefault();
    show({ q: words.trim() });
  };
  if (agents.data && list.length === 0)
    return (
      <Page title="Memories">
        <Empty title="No agents yet." action={<ButtonLink to="/agents/new">Create an agent</ButtonLink>}>
          Memories belong to an agent. Create one and turn its memory on, or add memories for it here.
        </Empty>
      </Page>
    );
  return (
    <Page title="Memories">
      <p className="muted lead">
        What an agent remembers from one task to the next. An agent with memory on saves and searches them
        itself; add the facts it should know, find what it kept, delete what is wrong.
      </p>
      <NewMemory agents={list} agentId={agentId} />
      <Section title={searching ? `Memories of ${agentName(agentId)} matching “${q}”` : 'Memories'}>
        <form className="filter-row" onSubmit={search}>
          <SelectField
            label="Agent"
            options={[
              { value: '', label: 'Every agent' },
              ...list.map((a) => ({ value: a.id, label: a.name })),
            ]}
            value={agentId}
            onChange={(e) => show({ agent: e.target.value })}
          />
          <TextField
            label="Search"
            type="search"
            disabled={agentId === ''}
            hint={agentId === '' ? 'Choose an agent to search its memories.' : undefined}
            value={words}
            onChange={(e) => setWords(e.target.value)}
          />
          <Button type="submit" disabled={agentId === ''}>
            Search
          </Button>
        </form>
        <ErrorNote error={remove.error} />
        <DataTable
          list={memories}
          what="memories"
          rowKey={(m) => m.id}
          empty={
            <Empty title={searching ? 'Nothing matches.' : 'No memories yet.'}>
              {searching
                ? 'Try other words: a memory matches when it holds any of them.'
                : 'Add one above, or turn memory on for an agent and it will save what it learns.'}
            </Empty>
          }
          columns={[
            { header: 'Memory', cell: (m) => <span className="message">{m.content}</span>, wrap: true },
            {
              header: 'Agent',
              cell: (m) => <Link to={`/agents/${m.agent_id}`}>{agentName(m.agent_id)}</Link>,
            },
            {
              header: 'From',
              cell: (m) => (m.task_id ? <Link to={`/tasks/${m.task_id}`}>a task</Link> : 'added by hand'),
            },
            { header: 'Saved', cell: (m) => when(m.created_at) },
            {
              header: 'Actions',
              quietHeader: true,
              cell: (m) => (
                <ConfirmButton
                  label="Delete"
                  name={`memory “${m.content.slice(0, 40)}”`}
                  question="Delete this memory? The agent forgets it."
                  busy={remove.isPending && remove.variables === m.id}
                  onConfirm={() => remove.mutate(m.id)}
                />
              ),
            },
          ]}
        />
      </Section>
    </Page>
  );
}

function NewMemory(props: { agents: Array<{ id: string; name: string }>; agentId: string }) {
  const client = useQueryClient();
  const [agentId, setAgentId] = useState('');
  const [content, setContent] = useState('');
  const chosen = agentId || props.agentId || props.agents[0]?.id || '';
  const create = useMutation({
    mutationFn: () => unwrap(api.POST('/v1/memories', { body: { agent_id: chosen, content } })),
    onSuccess: () => {
      setContent('');
      return client.invalidateQueries({ queryKey: ['memories'] });
    },
  });
  const submit = (e: FormEvent) => {
    e.preventDefault();
    create.mutate();
  };
  return (
    <Section title="Add a memory">
      <form onSubmit={submit}>
        <SelectField
          label="For agent"
          options={props.agents.map((a) => ({ value: a.id, label: a.name }))}
          value={chosen}
          onChange={(e) => setAgentId(e.target.value)}
        />
        <TextArea
          label="What it should remember"
          required
          rows={3}
          value={content}
          onChange={(e) => setContent(e.target.value)}
        />
        <ErrorNote error={create.error} />
        <Button type="submit" variant="primary" busy={create.isPending} disabled={!chosen}>
          Add memory
        </Button>
      </form>
    </Section>
  );
}
