import { useMutation, useQueries, useQuery, useQueryClient } from '@tanstack/react-query';
import { type FormEvent, type KeyboardEvent, type ReactNode, useEffect, useState } from 'react';
import { Link, useParams } from 'react-router';
import { followWorkspaceEvents, type LogEvent } from '../../../sdk/src/index.ts';
import { api, unwrap, when } from '../api.ts';
import { Badge, Button, ConfirmButton, ErrorNote, Json, Loading, Page, Stat, TextArea } from '../ui.tsx';
import './pages-extra.css';
import { WorkspaceFiles } from './workspace-files.tsx';
import { StarButton, WorkspaceSettings } from './workspace-settings.tsx';

const ENDED = new Set(['expired', 'terminated']);
type Connection = 'connecting' | 'live' | 'ended' | 'failed';

/**
 * The workspace's event log, live, through the SDK's SSE follower (it resumes
 * after the last seq when the connection drops, so nothing shows twice).
 */
function useWorkspaceEvents(workspaceId: string) {
  const client = useQueryClient();
  const [events, setEvents] = useState<LogEvent[]>([]);
  const [connection, setConnection] = useState<Connection>('connecting');
  const [error, setError] = useState<unknown>(null);
  useEffect(() => {
    const stop = new AbortController();
    setEvents([]);
    setConnection('connecting');
    setError(null);
    const refresh = () => client.invalidateQueries({ queryKey: ['workspaces', workspaceId] });
    void (async () => {
      try {
        for await (const event of followWorkspaceEvents(
          { baseUrl: window.location.origin, signal: stop.signal },
          workspaceId,
        )) {
          setConnection('live');
          setEvents((previous) => [...previous, event]);
          if (event.type === 'workspace' || event.type === 'status' || event.type === 'model_call')
            void refresh();
        }
        if (!stop.signal.aborted) setConnection('ended');
      } catch (err) {
        setError(err);
        setConnection('failed');
      }
    })();
    return () => stop.abort();
  }, [workspaceId, client]);
  return { events, connection, error };
}

export function WorkspacePage() {
  const { id } = useParams();
  const workspace = useQuery({
    queryKey: ['workspaces', id],
    queryFn: () => unwrap(api.GET('/v1/workspaces/{id}', { params: { path: { id: id! } } })),
  });
  const { events, connection, error } = useWorkspaceEvents(id!);
  if (workspace.isPending) return <Loading what="the conversation" />;
  if (workspace.isError)
    return (
      <Page title="Conversation">
        <ErrorNote error={workspace.error} />
        <Link to="/workspaces">Back to the workspaces</Link>
      </Page>
    );
  const w = workspace.data;
  return (
    <Page
      title={w.name ?? 'Untitled conversation'}
      actions={
        <>
          <StarButton id={w.id} name={w.name ?? 'this conversation'} starred={w.starred} />
          <CancelTurn taskId={w.current_task_id} />
          {ENDED.has(w.status) ? null : <EndConversation workspaceId={w.id} name={w.name ?? w.id} />}
        </>
      }
    >
      <div className="status-line" role="status" aria-live="polite">
        <Badge status={w.status} />
        {w.status === 'active' ? <span className="spinner" aria-hidden="true" /> : null}
        <span className="muted">{describeStatus(w.status, connection)}</span>
      </div>
      <ErrorNote error={error} />
      <Conversation events={events} />
      {ENDED.has(w.status) ? (
        <p className="note">
          This conversation has ended (its sandbox is gone; the history stays).{' '}
          <Link to="/workspaces">Start a new one</Link>.
        </p>
      ) : (
        <SendMessage workspaceId={w.id} busy={w.status === 'active'} />
      )}
      <div className="stats">
        <Stat label="Turns" value={w.turns} />
        <Stat label="Model" value={w.model_override ?? w.last_run_model ?? '—'} />
        <Stat label="Last active" value={when(w.last_active_at)} />
      </div>
      {ENDED.has(w.status) ? null : (
        <WorkspaceFiles
          workspaceId={w.id}
          turns={w.turns}
          started={w.capsule_id !== null && (w.turns > 0 || w.status === 'idle')}
          paused={w.status === 'paused'}
        />
      )}
      <WorkspaceSettings workspace={w} />
      <dl className="facts">
        <dt>Workspace</dt>
        <dd>
          <code>{w.id}</code>
        </dd>
        <dt>Sandbox</dt>
        <dd>{w.capsule_id ? <Link to={`/capsules/${w.capsule_id}`}>{w.capsule_id}</Link> : '—'}</dd>
        <dt>Goes paused after</dt>
        <dd>{w.idle_timeout_sec} s idle</dd>
      </dl>
    </Page>
  );
}

function describeStatus(status: string, connection: Connection): string {
  const live = connection === 'live' ? 'following live' : connection;
  switch (status) {
    case 'active':
      return `the agent is answering · ${live}`;
    case 'idle':
      return `waiting for your message · ${live}`;
    case 'paused':
      return 'paused: your next message resumes its sandbox';
    default:
      return 'ended';
  }
}

function CancelTurn(props: { taskId: string | null }) {
  const client = useQueryClient();
  const cancel = useMutation({
    mutationFn: (taskId: string) =>
      unwrap(api.POST('/v1/tasks/{id}/cancel', { params: { path: { id: taskId } } })),
    onSuccess: () => client.invalidateQueries({ queryKey: ['workspaces'] }),
  });
  if (!props.taskId) return null;
  const taskId = props.taskId;
  return (
    <>
      <ErrorNote error={cancel.error} />
      <Button variant="danger" busy={cancel.isPending} onClick={() => cancel.mutate(taskId)}>
        Cancel turn
      </Button>
    </>
  );
}

function EndConversation(props: { workspaceId: string; name: string }) {
  const client = useQueryClient();
  const end = useMutation({
    mutationFn: () =>
      unwrap(api.DELETE('/v1/workspaces/{id}', { params: { path: { id: props.workspaceId } } })),
    onSuccess: () => client.invalidateQueries({ queryKey: ['workspaces'] }),
  });
  return (
    <>
      <ErrorNote error={end.error} />
      <ConfirmButton
        label="End"
        name={props.name}
        question="End this conversation? A running turn is cancelled and its sandbox removed; the history stays."
        busy={end.isPending}
        onConfirm={() => end.mutate()}
      />
    </>
  );
}

function SendMessage(props: { workspaceId: string; busy: boolean }) {
  const client = useQueryClient();
  const [content, setContent] = useState('');
  const send = useMutation({
    mutationFn: () =>
      unwrap(
        api.POST('/v1/workspaces/{id}/messages', {
          params: { path: { id: props.workspaceId } },
          body: { content },
        }),
      ),
    onSuccess: (task) => {
      client.setQueryData(['tasks', task.id], task);
      setContent('');
      void client.invalidateQueries({ queryKey: ['workspaces'] });
    },
  });
  const submit = (e?: FormEvent) => {
    e?.preventDefault();
    if (content.trim() !== '' && !props.busy) send.mutate();
  };
  // Enter sends, Shift+Enter is a new line (as chat boxes do).
  const onKeyDown = (e: KeyboardEvent<HTMLTextAreaElement>) => {
    if (e.key === 'Enter' && !e.shiftKey) submit(e);
  };
  return (
    <form className="composer" onSubmit={submit}>
      <TextArea
        label="Message"
        rows={3}
        hint="Enter sends; Shift+Enter starts a new line."
        placeholder={
          props.busy ? 'The agent is answering… cancel the turn to say something else.' : 'Say what next'
        }
        value={content}
        onChange={(e) => setContent(e.target.value)}
        onKeyDown={onKeyDown}
      />
      <ErrorNote error={send.error} />
      <Button
        type="submit"
        variant="primary"
        busy={send.isPending}
        disabled={props.busy || content.trim() === ''}
      >
        Send
      </Button>
    </form>
  );
}

const str = (value: unknown) => (typeof value === 'string' ? value : JSON.stringify(value));

interface Turn {
  taskId: string;
  items: Array<{ key: string; node: ReactNode }>;
}

/**
 * The log as a chat: each turn (a session task) is your message (the task's
 * prompt) and then the agent's text, joined from its deltas as they stream,
 * and its tool calls with their output.
 */
function Conversation(props: { events: LogEvent[] }) {
  const turns: Turn[] = [];
  const byTask = new Map<string, Turn>();
  const texts = new Map<string, { text: string; final: boolean; index: number; turn: Turn }>();
  const results = new Map<string, LogEvent>();
  for (const e of props.events) if (e.type === 'tool_result') results.set(str(e.payload['id']), e);
  for (const e of props.events) {
    const taskId = e.task_id ?? str(e.payload['task_id'] ?? '');
    if (!taskId) continue;
    let turn = byTask.get(taskId);
    if (!turn) {
      turn = { taskId, items: [] };
      byTask.set(taskId, turn);
      turns.push(turn);
    }
    if (e.type === 'text_delta' || e.type === 'text') {
      // The deltas joined are the model call's text; the `text` event after them is that text whole.
      const key = `${taskId}:${str(e.payload['turn'])}`;
      let text = texts.get(key);
      if (!text || text.final) {
        text = { text: '', final: false, index: turn.items.length, turn };
        texts.set(key, text);
        turn.items.push({ key: String(e.seq), node: null });
      }
      if (e.type === 'text') {
        text.text = str(e.payload['text']);
        text.final = true;
      } else text.text += str(e.payload['text']);
      turn.items[text.index] = {
        key: turn.items[text.index]!.key,
        node: <AgentText text={text.text} streaming={!text.final} />,
      };
      continue;
    }
    if (e.type === 'tool_call') {
      turn.items.push({
        key: String(e.seq),
        node: <ToolCall call={e} result={results.get(str(e.payload['id']))} />,
      });
    } else if (e.type === 'status' && ['failed', 'cancelled'].includes(str(e.payload['status']))) {
      const message = (e.payload['error'] as { message?: unknown } | undefined)?.message;
      turn.items.push({
        key: String(e.seq),
        node: (
          <p className="chat-note">
            <Badge status={str(e.payload['status'])} /> {message ? str(message) : null}
          </p>
        ),
      });
    }
  }
  const prompts = useTurnPrompts(turns.map((t) => t.taskId));
  if (turns.length === 0) return <Loading what="the conversation" />;
  return (
    <ol className="chat" aria-label="Conversation">
      {turns.map((turn) => (
        <li key={turn.taskId} className="chat-turn">
          <div className="chat-user">
            <p className="event-label">You</p>
            <p className="message">{prompts.get(turn.taskId) ?? '…'}</p>
          </div>
          {turn.items.map((item) => (
            <div key={item.key}>{item.node}</div>
          ))}
        </li>
      ))}
    </ol>
  );
}

/** Your side of each turn: the session task's prompt (the log holds the agent's side). */
function useTurnPrompts(taskIds: string[]): Map<string, string> {
  const tasks = useQueries({
    queries: taskIds.map((id) => ({
      queryKey: ['tasks', id],
      queryFn: () => unwrap(api.GET('/v1/tasks/{id}', { params: { path: { id } } })),
      staleTime: Number.POSITIVE_INFINITY,
    })),
  });
  const prompts = new Map<string, string>();
  for (const task of tasks) if (task.data) prompts.set(task.data.id, task.data.prompt);
  return prompts;
}

function AgentText(props: { text: string; streaming: boolean }) {
  return (
    <div className="chat-agent" aria-busy={props.streaming || undefined}>
      <p className="event-label">Agent</p>
      <p className="message">{props.text}</p>
    </div>
  );
}

function ToolCall(props: { call: LogEvent; result: LogEvent | undefined }) {
  const p = props.call.payload;
  const result = props.result?.payload;
  return (
    <details className="chat-tool" open>
      <summary>
        Tool <code>{str(p['name'])}</code>
        {result ? (
          <span className={result['ok'] ? 'ok' : 'bad'}>
            {result['ok'] ? ' succeeded' : ' failed'}
            {result['exit_code'] !== undefined ? ` (exit ${str(result['exit_code'])})` : ''}
          </span>
        ) : (
          <span className="muted"> running…</span>
        )}
      </summary>
      <Json value={p['arguments']} />
      {result ? <pre className="output">{str(result['output'])}</pre> : null}
    </details>
  );
}
