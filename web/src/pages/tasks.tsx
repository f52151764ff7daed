import { useMutation } from '@tanstack/react-query';
import { type FormEvent, useState } from 'react';
import { Link, useNavigate, useSearchParams } from 'react-router';
import { api, unwrap, usd, when } from '../api.ts';
import { usePaged } from '../paged.ts';
import {
  Badge,
  Button,
  ButtonLink,
  DataTable,
  Empty,
  ErrorNote,
  Page,
  Section,
  SelectField,
  TextArea,
} from '../ui.tsx';
import { useAgents } from './agents.tsx';

const STATUSES = ['queued', 'running', 'awaiting_approval', 'completed', 'failed', 'cancelled'] as const;
type Status = (typeof STATUSES)[number];

export function TasksPage() {
  const [params, setParams] = useSearchParams();
  const status = (STATUSES as readonly string[]).includes(params.get('status') ?? '')
    ? (params.get('status') as Status)
    : undefined;
  const agents = useAgents();
  const tasks = usePaged({
    queryKey: ['tasks', 'list', status ?? 'all'],
    page: (cursor) =>
      unwrap(
        api.GET('/v1/tasks', {
          params: { query: { limit: 100, ...(cursor ? { cursor } : {}), ...(status ? { status } : {}) } },
        }),
      ),
    // Tasks move on their own: keep the list current while it is on screen.
    refetchInterval: 3_000,
  });
  const agentName = (id: string) => agents.data?.data.find((a) => a.id === id)?.name ?? id;
  return (
    <Page title="Tasks">
      <SubmitTask />
      <Section
        title="Recent tasks"
        actions={
          <div className="filter">
            <SelectField
              label="Status"
              options={[
                { value: '', label: 'Any' },
                ...STATUSES.map((s) => ({ value: s, label: s.replace('_', ' ') })),
              ]}
              value={status ?? ''}
              onChange={(e) => setParams(e.target.value ? { status: e.target.value } : {})}
            />
          </div>
        }
      >
        <DataTable
          list={tasks}
          what="tasks"
          rowKey={(task) => task.id}
          empty={
            <Empty title={status ? `No ${status.replace('_', ' ')} tasks.` : 'No tasks yet.'}>
              {status
                ? 'Choose another status, or submit a task above.'
                : 'Pick an agent above, say what to do and submit.'}
            </Empty>
          }
          columns={[
            {
              header: 'Task',
              cell: (task) => <Link to={`/tasks/${task.id}`}>{task.prompt.slice(0, 80) || task.id}</Link>,
              wrap: true,
            },
            { header: 'Agent', cell: (task) => agentName(task.agent_id) },
            { header: 'Status', cell: (task) => <Badge status={task.status} /> },
            { header: 'Cost', cell: (task) => usd(task.cost_usd) },
            { header: 'Created', cell: (task) => when(task.created_at) },
          ]}
        />
      </Section>
    </Page>
  );
}

function SubmitTask() {
  const navigate = useNavigate();
  const agents = useAgents();
  const [agentId, setAgentId] = useState('');
  const [prompt, setPrompt] = useState('');
  const list = agents.data?.data.filter((a) => a.status === 'active') ?? [];
  const chosen = agentId || list[0]?.id || '';
  const submit = useMutation({
    mutationFn: () => unwrap(api.POST('/v1/tasks', { body: { agent_id: chosen, prompt } })),
    onSuccess: (task) => void navigate(`/tasks/${task.id}`),
  });
  const onSubmit = (e: FormEvent) => {
    e.preventDefault();
    submit.mutate();
  };
  if (agents.data && list.length === 0) {
    return (
      <Section title="Submit a task">
        <Empty
          title="No agent to run a task."
          action={<ButtonLink to="/agents/new">Create an agent</ButtonLink>}
        >
          A task is work for an agent. Create one first (it needs a provider key and a policy).
        </Empty>
      </Section>
    );
  }
  return (
    <Section title="Submit a task">
      <form onSubmit={onSubmit}>
        <SelectField
          label="Agent"
          options={list.map((a) => ({ value: a.id, label: `${a.name} (${a.model})` }))}
          value={chosen}
          onChange={(e) => setAgentId(e.target.value)}
        />
        <TextArea
          label="Prompt"
          required
          placeholder="What should the agent do?"
          value={prompt}
          onChange={(e) => setPrompt(e.target.value)}
        />
        <ErrorNote error={submit.error} />
        <Button type="submit" variant="primary" busy={submit.isPending} disabled={!chosen}>
          Submit task
        </Button>
      </form>
    </Section>
  );
}
