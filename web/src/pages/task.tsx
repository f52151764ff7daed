import { useMutation, useQuery, useQueryClient } from '@tanstack/react-query';
import { useEffect, useState } from 'react';
import { Link, useParams } from 'react-router';
import { api, unwrap, usd, when } from '../api.ts';
import { Badge, Button, ErrorNote, Json, Loading, Page, Section, Stat } from '../ui.tsx';
import { TaskFiles } from './task-files.tsx';

interface TaskEvent {
  seq: number;
  type: string;
  payload: Record<string, unknown>;
  created_at: string;
}

/** The event types a task's stream names (docs/tasks.md "The event log"); `end` closes it. */
const EVENT_TYPES = [
  'status',
  'capsule',
  'model_call',
  'text',
  'text_delta',
  'tool_call',
  'tool_result',
  'output_files',
  'memory',
  'delegation',
];
const ENDED = new Set(['completed', 'failed', 'cancelled']);

type Connection = 'connecting' | 'live' | 'ended' | 'reconnecting';

/**
 * The task's event log, live: the SSE stream sends the log so far and then
 * each new event as it is written, until the task ends. EventSource resumes
 * after the last seq (Last-Event-ID) when the connection drops.
 */
function useTaskEvents(taskId: string) {
  const client = useQueryClient();
  const [events, setEvents] = useState<TaskEvent[]>([]);
  const [connection, setConnection] = useState<Connection>('connecting');
  useEffect(() => {
    setEvents([]);
    setConnection('connecting');
    const source = new EventSource(`/v1/tasks/${encodeURIComponent(taskId)}/events`);
    let lastSeq = 0;
    const refreshTask = () => client.invalidateQueries({ queryKey: ['tasks', taskId] });
    const onEvent = (message: MessageEvent<string>) => {
      const event = JSON.parse(message.data) as TaskEvent;
      if (event.seq <= lastSeq) return;
      lastSeq = event.seq;
      setEvents((previous) => [...previous, event]);
      if (event.type === 'status' || event.type === 'model_call') void refreshTask();
    };
    for (const type of EVENT_TYPES) source.addEventListener(type, onEvent);
    source.addEventListener('end', () => {
      source.close();
      setConnection('ended');
      void refreshTask();
    });
    source.onopen = () => setConnection('live');
    source.onerror = () => setConnection(source.readyState === EventSource.CLOSED ? 'ended' : 'reconnecting');
    return () => source.close();
  }, [taskId, client]);
  return { events, connection };
}

export function TaskPage() {
  const { id } = useParams();
  const client = useQueryClient();
  const task = useQuery({
    queryKey: ['tasks', id],
    queryFn: () => unwrap(api.GET('/v1/tasks/{id}', { params: { path: { id: id! } } })),
  });
  const { events, connection } = useTaskEvents(id!);
  const agentId = task.data?.agent_id;
  const agent = useQuery({
    queryKey: ['agents', agentId],
    queryFn: () => unwrap(api.GET('/v1/agents/{id}', { params: { path: { id: agentId! } } })),
    enabled: agentId !== undefined,
  });
  const cancel = useMutation({
    mutationFn: () => unwrap(api.POST('/v1/tasks/{id}/cancel', { params: { path: { id: id! } } })),
    onSuccess: () => client.invalidateQueries({ queryKey: ['tasks', id] }),
  });
  if (task.isPending) return <Loading what="the task" />;
  if (task.isError)
    return (
      <Page title="Task">
        <ErrorNote error={task.error} />
        <Link to="/tasks">Back to the tasks</Link>
      </Page>
    );
  const t = task.data;
  const ended = ENDED.has(t.status);
  return (
    <Page
      title="Task"
      actions={
        ended ? null : (
          <Button variant="danger" busy={cancel.isPending} onClick={() => cancel.mutate()}>
            Cancel task
          </Button>
        )
      }
    >
      <p className="prompt">{t.prompt}</p>
      <div className="status-line" role="status" aria-live="polite">
        <Badge status={t.status} />
        {ended ? null : <span className="spinner" aria-hidden="true" />}
        <span className="muted">{describeProgress(t, connection)}</span>
        {t.status === 'awaiting_approval' ? <Link to="/approvals">Decide in Approvals</Link> : null}
      </div>
      <ErrorNote error={cancel.error} />
      <div className="stats">
        <Stat label="Cost" value={usd(t.cost_usd)} />
        <Stat label="Tokens" value={`${t.input_tokens} in / ${t.output_tokens} out`} />
        <Stat label="Turns" value={`${t.turns} of ${t.max_turns}`} />
        <Stat label="Model" value={t.model} />
      </div>
      {t.error ? (
        <div className="note note-error" role="alert">
          <strong>{t.error.code}</strong>: {t.error.message}
        </div>
      ) : null}
      {t.status === 'completed' ? (
        <Section title="Result">
          {typeof t.result === 'string' ? <p className="result">{t.result}</p> : <Json value={t.result} />}
        </Section>
      ) : null}
      <TaskFiles taskId={t.id} ended={ended} />
      <Section title="Activity">
        {events.length === 0 ? <Loading what="events" /> : <Timeline events={events} />}
      </Section>
      <dl className="facts">
        <dt>Task</dt>
        <dd>
          <code>{t.id}</code>
        </dd>
        <dt>Agent</dt>
        <dd>
          <Link to={`/agents/${t.agent_id}`}>{agent.data?.name ?? t.agent_id}</Link> (version{' '}
          {t.agent_version})
        </dd>
        <dt>Created</dt>
        <dd>{when(t.created_at)}</dd>
        <dt>Finished</dt>
        <dd>{when(t.finished_at)}</dd>
      </dl>
    </Page>
  );
}

function describeProgress(
  task: { status: string; turns: number; started_at: string | null; finished_at: string | null },
  connection: Connection,
): string {
  const { status, turns } = task;
  if (ENDED.has(status)) {
    if (!task.started_at || !task.finished_at) return '';
    const seconds = (Date.parse(task.finished_at) - Date.parse(task.started_at)) / 1000;
    return seconds > 0 ? `in ${seconds.toFixed(1)} s` : '';
  }
  const live = connection === 'live' ? 'following live' : connection;
  if (status === 'queued') return `waiting for a worker · ${live}`;
  if (status === 'awaiting_approval') return `waiting for a person to approve a tool · ${live}`;
  return `turn ${turns + 1} · ${live}`;
}

const str = (value: unknown) => (typeof value === 'string' ? value : JSON.stringify(value));
const num = (value: unknown) => (typeof value === 'number' ? value : 0);

/** The log as a reader follows it: a tool call shows its output beneath, streamed text joins up. */
function Timeline(props: { events: TaskEvent[] }) {
  const results = new Map<string, TaskEvent>();
  for (const e of props.events) if (e.type === 'tool_result') results.set(str(e.payload['id']), e);
  const items: Array<{ key: number; node: React.ReactNode }> = [];
  let streamed: { key: number; text: string } | undefined;
  for (const e of props.events) {
    if (e.type === 'text_delta') {
      if (!streamed) {
        streamed = { key: e.seq, text: '' };
        items.push({ key: e.seq, node: null });
      }
      streamed.text += str(e.payload['text']);
      const at = items.findIndex((i) => i.key === streamed!.key);
      items[at] = { key: streamed.key, node: <Message text={streamed.text} /> };
      continue;
    }
    streamed = undefined;
    if (e.type === 'tool_result') continue;
    items.push({ key: e.seq, node: <EventItem event={e} result={results.get(str(e.payload['id']))} /> });
  }
  return (
    <ol className="timeline">
      {items.map((item) => (
        <li key={item.key}>{item.node}</li>
      ))}
    </ol>
  );
}

function Message(props: { text: string }) {
  return (
    <div className="event event-text">
      <p className="event-label">Agent</p>
      <p className="message">{props.text}</p>
    </div>
  );
}

function EventItem(props: { event: TaskEvent; result: TaskEvent | undefined }) {
  const p = props.event.payload;
  switch (props.event.type) {
    case 'status':
      return (
        <div className="event event-status">
          <Badge status={str(p['status'])} />
          {p['error'] ? (
            <span className="muted"> {str((p['error'] as { message?: unknown }).message)}</span>
          ) : null}
        </div>
      );
    case 'text':
      return <Message text={str(p['text'])} />;
    case 'model_call':
      return (
        <div className="event event-model muted">
          Model call to {str(p['model'])}: {num(p['input_tokens'])} tokens in, {num(p['output_tokens'])} out,{' '}
          {usd(num(p['cost_usd']))}
        </div>
      );
    case 'tool_call': {
      const result = props.result?.payload;
      return (
        <div className="event event-tool">
          <p className="event-label">
            Tool <code>{str(p['name'])}</code>
            {result ? (
              <span className={result['ok'] ? 'ok' : 'bad'}>
                {result['ok'] ? ' succeeded' : ' failed'}
                {result['exit_code'] !== undefined ? ` (exit ${str(result['exit_code'])})` : ''}
              </span>
            ) : (
              <span className="muted"> running…</span>
            )}
          </p>
          <Json value={p['arguments']} />
          {result ? <pre className="output">{str(result['output'])}</pre> : null}
        </div>
      );
    }
    case 'capsule':
      return <div className="event muted">Sandbox {str(p['capsule_id'])} started</div>;
    default:
      return (
        <div className="event">
          <p className="event-label">{props.event.type.replace('_', ' ')}</p>
          <Json value={p} />
        </div>
      );
  }
}
