import { useMutation, useQuery, useQueryClient } from '@tanstack/react-query';
import { type FormEvent, useState } from 'react';
import { Link, useNavigate } from 'react-router';
import { api, unwrap, usd } from '../api.ts';
import { Badge, Button, ErrorNote, Json, Section, ShownOnce, TextArea, TextField } from '../ui.tsx';
import './agents-extra.css';

interface AgentRef {
  id: string;
  name: string;
  api_key_prefix: string;
}

const ENDED = new Set(['completed', 'failed', 'cancelled']);

/**
 * "Try it": a prompt submitted as a task to this agent, followed here until
 * it ends (the task page shows every step live).
 */
export function TryIt(props: { agent: AgentRef }) {
  const [prompt, setPrompt] = useState('');
  const submit = useMutation({
    mutationFn: () => unwrap(api.POST('/v1/tasks', { body: { agent_id: props.agent.id, prompt } })),
  });
  const onSubmit = (e: FormEvent) => {
    e.preventDefault();
    submit.mutate();
  };
  return (
    <Section title="Try it">
      <form onSubmit={onSubmit}>
        <TextArea
          label={`Prompt for ${props.agent.name}`}
          required
          rows={3}
          placeholder="What should the agent do?"
          hint="Runs as a task of its current version, in a sandbox, under its policy."
          value={prompt}
          onChange={(e) => setPrompt(e.target.value)}
        />
        <ErrorNote error={submit.error} />
        <Button type="submit" variant="primary" busy={submit.isPending}>
          Run task
        </Button>
      </form>
      {submit.data ? <TaskOutcome taskId={submit.data.id} key={submit.data.id} /> : null}
    </Section>
  );
}

function TaskOutcome(props: { taskId: string }) {
  const task = useQuery({
    queryKey: ['tasks', props.taskId],
    queryFn: () => unwrap(api.GET('/v1/tasks/{id}', { params: { path: { id: props.taskId } } })),
    refetchInterval: (query) => (ENDED.has(query.state.data?.status ?? '') ? false : 1_000),
  });
  const t = task.data;
  return (
    <div className="try-outcome">
      <div className="status-line" role="status" aria-live="polite">
        {t ? <Badge status={t.status} /> : null}
        {t && !ENDED.has(t.status) ? <span className="spinner" aria-hidden="true" /> : null}
        <Link to={`/tasks/${props.taskId}`}>Open the live task page</Link>
        {t && ENDED.has(t.status) ? <span className="muted">cost {usd(t.cost_usd)}</span> : null}
      </div>
      <ErrorNote error={task.error} />
      {t?.error ? <div className="note note-error">{t.error.message}</div> : null}
      {t && t.result !== null && t.result !== undefined ? (
        typeof t.result === 'string' ? (
          <p className="result">{t.result}</p>
        ) : (
          <Json value={t.result} />
        )
      ) : null}
    </div>
  );
}

/** The agent's key (rotate: a new one shown once, the old one stops at once) and a fork of it. */
export function KeyAndFork(props: { agent: AgentRef }) {
  const client = useQueryClient();
  const navigate = useNavigate();
  const [shown, setShown] = useState<{ label: string; value: string; next?: string }>();
  const [forkName, setForkName] = useState('');
  const rotate = useMutation({
    mutationFn: () =>
      unwrap(api.POST('/v1/agents/{id}/rotate-key', { params: { path: { id: props.agent.id } } })),
    onSuccess: async (key) => {
      setShown({ label: `The new key of ${props.agent.name}`, value: key.api_key });
      await client.invalidateQueries({ queryKey: ['agents'] });
    },
  });
  const fork = useMutation({
    mutationFn: () =>
      unwrap(
        api.POST('/v1/agents/{id}/fork', {
          params: { path: { id: props.agent.id } },
          body: forkName.trim() ? { name: forkName.trim() } : {},
        }),
      ),
    onSuccess: async (copy) => {
      setShown({ label: `The key of ${copy.name}, the new fork`, value: copy.api_key, next: copy.id });
      setForkName('');
      await client.invalidateQueries({ queryKey: ['agents'] });
    },
  });
  const onFork = (e: FormEvent) => {
    e.preventDefault();
    fork.mutate();
  };
  return (
    <Section title="Key and fork">
      {shown ? (
        <ShownOnce
          label={shown.label}
          value={shown.value}
          onDone={() => {
            setShown(undefined);
            if (shown.next) void navigate(`/agents/${shown.next}`);
          }}
        />
      ) : null}
      <p className="muted">
        The agent key <code>{props.agent.api_key_prefix}…</code> lets an agent that runs elsewhere call
        Paddock as this agent.
      </p>
      <ErrorNote error={rotate.error} />
      <Button
        busy={rotate.isPending}
        onClick={() => {
          if (window.confirm(`Rotate the key of ${props.agent.name}? The current key stops working at once.`))
            rotate.mutate();
        }}
      >
        Rotate key
      </Button>
      <form onSubmit={onFork} className="fork-form">
        <TextField
          label="Name of the fork"
          placeholder={`${props.agent.name}-2`}
          hint="A new agent with this one's definition, policy and provider keys, and a key of its own."
          value={forkName}
          onChange={(e) => setForkName(e.target.value)}
        />
        <ErrorNote error={fork.error} />
        <Button type="submit" busy={fork.isPending}>
          Fork agent
        </Button>
      </form>
    </Section>
  );
}
