import { useMutation, useQuery, useQueryClient } from '@tanstack/react-query';
import { type FormEvent, useState } from 'react';
import { api, splitList, unwrap, when } from '../api.ts';
import { useActorName } from '../names.ts';
import { useMe } from '../shell.tsx';
import {
  Board,
  Button,
  ErrorNote,
  Loading,
  Page,
  Section,
  SelectField,
  TextArea,
  TextField,
} from '../ui.tsx';
import { useAgents } from './agents.tsx';
import './ops.css';

type Status = 'todo' | 'in_progress' | 'review' | 'blocked' | 'done' | 'cancelled';
const STATUSES: Status[] = ['todo', 'in_progress', 'review', 'blocked', 'done', 'cancelled'];
const LABELS: Record<Status, string> = {
  todo: 'To do',
  in_progress: 'In progress',
  review: 'Review',
  blocked: 'Blocked',
  done: 'Done',
  cancelled: 'Cancelled',
};
const TYPES = ['other', 'feature', 'bug', 'research', 'ops', 'infra', 'content'] as const;
const PRIORITIES = ['low', 'medium', 'high', 'critical'] as const;

type Item = Awaited<ReturnType<typeof listItems>>['data'][number];
const listItems = () => unwrap(api.GET('/v1/work-items', { params: { query: { limit: 200 } } }));

export function WorkBoardPage() {
  const actorName = useActorName();
  const items = useQuery({ queryKey: ['work-items'], queryFn: listItems, refetchInterval: 5_000 });
  const agents = useAgents();
  const me = useMe();
  const myId = me.data && 'user' in me.data ? me.data.user.id : undefined;
  const assigneeName = (a: Item['assignee']) => {
    if (!a) return 'unassigned';
    if (a.type === 'user') return a.id === myId ? 'you' : actorName('user', a.id);
    return agents.data?.data.find((x) => x.id === a.id)?.name ?? a.id;
  };
  const rows = items.data?.data ?? [];
  return (
    <Page title="Work board">
      <p className="muted lead">
        The team's items of work, for people and agents alike: an agent asks for its next item, moves it along
        and comments on it through the API; you can do the same here.
      </p>
      <NewItem myId={myId} />
      {items.isPending ? <Loading what="the board" /> : null}
      <ErrorNote error={items.error} />
      {items.data && rows.length === 0 ? (
        <p className="muted">The board is empty: add the first item above.</p>
      ) : null}
      {rows.length > 0 ? (
        <Board
          itemKey={(i: Item) => i.id}
          columns={STATUSES.map((s) => ({
            key: s,
            title: LABELS[s],
            items: rows.filter((i) => i.status === s),
          }))}
          card={(i) => <ItemCard item={i} assignee={assigneeName(i.assignee)} />}
        />
      ) : null}
    </Page>
  );
}

function ItemCard(props: { item: Item; assignee: string }) {
  const i = props.item;
  const client = useQueryClient();
  // Every other status: the server knows which moves its table allows, and says so when one is not.
  const moves = STATUSES.filter((s) => s !== i.status);
  const [to, setTo] = useState<Status | ''>('');
  const move = useMutation({
    mutationFn: (status: Status) =>
      unwrap(
        api.POST('/v1/work-items/{id}/transition', { params: { path: { id: i.id } }, body: { status } }),
      ),
    onSuccess: () => client.invalidateQueries({ queryKey: ['work-items'] }),
  });
  const target = to || moves[0];
  return (
    <>
      <p>
        <strong>{i.title}</strong>
      </p>
      <p className="hint">
        {i.priority} · {i.type} · {props.assignee}
        {i.due_date ? ` · due ${when(i.due_date)}` : ''}
      </p>
      {i.labels.length > 0 ? <p className="hint">{i.labels.join(', ')}</p> : null}
      <form
        className="card-move"
        onSubmit={(e) => {
          e.preventDefault();
          if (target) move.mutate(target);
        }}
      >
        <SelectField
          label={`Move “${i.title}” to`}
          options={moves.map((m) => ({ value: m, label: LABELS[m] }))}
          value={target}
          onChange={(e) => setTo(e.target.value as Status)}
        />
        <Button type="submit" busy={move.isPending}>
          Move
        </Button>
      </form>
      <ErrorNote error={move.error} />
    </>
  );
}

function NewItem(props: { myId: string | undefined }) {
  const client = useQueryClient();
  const agents = useAgents();
  const [title, setTitle] = useState('');
  const [description, setDescription] = useState('');
  const [type, setType] = useState<(typeof TYPES)[number]>('other');
  const [priority, setPriority] = useState<(typeof PRIORITIES)[number]>('medium');
  const [assignee, setAssignee] = useState('');
  const [labels, setLabels] = useState('');
  const create = useMutation({
    mutationFn: () => {
      const [kind, id] = assignee.split(':');
      return unwrap(
        api.POST('/v1/work-items', {
          body: {
            title,
            description: description || null,
            type,
            priority,
            assignee: kind && id ? { type: kind as 'user' | 'agent', id } : null,
            labels: splitList(labels),
          },
        }),
      );
    },
    onSuccess: () => {
      setTitle('');
      setDescription('');
      setLabels('');
      return client.invalidateQueries({ queryKey: ['work-items'] });
    },
  });
  const submit = (e: FormEvent) => {
    e.preventDefault();
    create.mutate();
  };
  return (
    <Section title="Add an item">
      <form onSubmit={submit}>
        <div className="grid-form">
          <TextField label="Title" required value={title} onChange={(e) => setTitle(e.target.value)} />
          <SelectField
            label="Assignee"
            options={[
              { value: '', label: 'Nobody yet' },
              ...(props.myId ? [{ value: `user:${props.myId}`, label: 'Me' }] : []),
              ...(agents.data?.data ?? [])
                .filter((a) => a.status === 'active')
                .map((a) => ({ value: `agent:${a.id}`, label: `Agent ${a.name}` })),
            ]}
            value={assignee}
            onChange={(e) => setAssignee(e.target.value)}
          />
          <SelectField
            label="Type"
            options={TYPES.map((t) => ({ value: t, label: t }))}
            value={type}
            onChange={(e) => setType(e.target.value as (typeof TYPES)[number])}
          />
          <SelectField
            label="Priority"
            options={PRIORITIES.map((p) => ({ value: p, label: p }))}
            value={priority}
            onChange={(e) => setPriority(e.target.value as (typeof PRIORITIES)[number])}
          />
          <TextField
            label="Labels"
            hint="Comma-separated."
            value={labels}
            onChange={(e) => setLabels(e.target.value)}
          />
        </div>
        <TextArea
          label="Description"
          rows={2}
          value={description}
          onChange={(e) => setDescription(e.target.value)}
        />
        <ErrorNote error={create.error} />
        <Button type="submit" variant="primary" busy={create.isPending}>
          Add item
        </Button>
      </form>
    </Section>
  );
}
