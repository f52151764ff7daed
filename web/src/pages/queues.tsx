import { useMutation, useQueries, useQuery, useQueryClient } from '@tanstack/react-query';
import { type FormEvent, useState } from 'react';
import { Link, useNavigate, useParams } from 'react-router';
import { api, unwrap, when } from '../api.ts';
import {
  Board,
  Button,
  DataTable,
  Empty,
  ErrorNote,
  Page,
  Section,
  Stat,
  TextArea,
  TextField,
} from '../ui.tsx';

const STATUSES = ['queued', 'active', 'completed', 'failed', 'cancelled'] as const;
type Status = (typeof STATUSES)[number];

export function QueuesPage() {
  const queues = useQuery({
    queryKey: ['queues'],
    queryFn: () => unwrap(api.GET('/v1/queues', { params: { query: { limit: 200 } } })),
    refetchInterval: 5_000,
  });
  return (
    <Page title="Queues">
      <p className="muted lead">
        The team's work queues: jobs that workers (agent keys, or team keys with the queue scope) claim, work
        on under a lease and complete. A queue exists once a job is in it.
      </p>
      <Section title="Queues">
        <DataTable
          list={queues}
          what="queues"
          rowKey={(q) => q.name}
          empty={
            <Empty title="No queues yet.">
              Submit a job below (or with POST /v1/queues/&#123;name&#125;/jobs) and its queue appears here.
            </Empty>
          }
          columns={[
            {
              header: 'Queue',
              cell: (q) => <Link to={`/queues/${encodeURIComponent(q.name)}`}>{q.name}</Link>,
            },
            ...STATUSES.map((s) => ({ header: s, cell: (q: { [k in Status]: number }) => q[s] })),
          ]}
        />
      </Section>
      <SubmitJob />
    </Page>
  );
}

function SubmitJob(props: { queue?: string }) {
  const client = useQueryClient();
  const navigate = useNavigate();
  const [queue, setQueue] = useState(props.queue ?? '');
  const [type, setType] = useState('');
  const [payload, setPayload] = useState('{}');
  const [priority, setPriority] = useState('0');
  const [bad, setBad] = useState<string>();
  const submit = useMutation({
    mutationFn: (body: Record<string, unknown>) =>
      unwrap(
        api.POST('/v1/queues/{name}/jobs', {
          params: { path: { name: queue } },
          body: { type, payload: body, priority: Number(priority) },
        }),
      ),
    onSuccess: (job) => {
      void client.invalidateQueries({ queryKey: ['queues'] });
      void client.invalidateQueries({ queryKey: ['queue-jobs', job.queue] });
      setType('');
      if (!props.queue) void navigate(`/queues/${encodeURIComponent(job.queue)}`);
    },
  });
  const onSubmit = (e: FormEvent) => {
    e.preventDefault();
    let body: unknown;
    try {
      body = JSON.parse(payload);
    } catch (err) {
      setBad(`The payload is not JSON: ${(err as Error).message}`);
      return;
    }
    if (body === null || typeof body !== 'object' || Array.isArray(body)) {
      setBad('The payload is a JSON object, e.g. {"to": "a@example.com"}.');
      return;
    }
    setBad(undefined);
    submit.mutate(body as Record<string, unknown>);
  };
  return (
    <Section title="Submit a job">
      <form onSubmit={onSubmit}>
        <div className="grid-form">
          {props.queue ? null : (
            <TextField
              label="Queue"
              required
              placeholder="emails"
              hint="Letters, digits, . _ -"
              value={queue}
              onChange={(e) => setQueue(e.target.value)}
            />
          )}
          <TextField
            label="Job type"
            required
            placeholder="email.send"
            value={type}
            onChange={(e) => setType(e.target.value)}
          />
          <TextField
            label="Priority"
            type="number"
            min={-1000}
            max={1000}
            hint="Higher is claimed first."
            value={priority}
            onChange={(e) => setPriority(e.target.value)}
          />
        </div>
        <TextArea
          label="Payload (JSON)"
          rows={3}
          value={payload}
          onChange={(e) => setPayload(e.target.value)}
        />
        {bad ? (
          <div className="note note-error" role="alert">
            {bad}
          </div>
        ) : null}
        <ErrorNote error={submit.error} />
        <Button type="submit" variant="primary" busy={submit.isPending}>
          Submit job
        </Button>
      </form>
    </Section>
  );
}

type Job = Awaited<ReturnType<typeof listJobs>>['data'][number];
const listJobs = (name: string, status: Status) =>
  unwrap(api.GET('/v1/queues/{name}/jobs', { params: { path: { name }, query: { status, limit: 50 } } }));

export function QueuePage() {
  const name = useParams().name!;
  const client = useQueryClient();
  const stats = useQuery({
    queryKey: ['queue-jobs', name, 'stats'],
    queryFn: () => unwrap(api.GET('/v1/queues/{name}/stats', { params: { path: { name } } })),
    refetchInterval: 5_000,
  });
  // One list per column, so a long tail of completed jobs does not push the waiting ones out.
  const columns = useQueries({
    queries: STATUSES.map((status) => ({
      queryKey: ['queue-jobs', name, status],
      queryFn: () => listJobs(name, status),
      refetchInterval: 5_000,
    })),
  });
  const cancel = useMutation({
    mutationFn: (id: string) =>
      unwrap(api.POST('/v1/queues/{name}/jobs/{id}/cancel', { params: { path: { name, id } } })),
    onSuccess: () => client.invalidateQueries({ queryKey: ['queue-jobs', name] }),
  });
  const s = stats.data;
  const failedLoad = columns.find((c) => c.error)?.error;
  return (
    <Page title={`Queue ${name}`}>
      <ErrorNote error={stats.error ?? failedLoad ?? cancel.error} />
      {s ? (
        <div className="stats">
          <Stat label="Claimable now" value={s.depth} hint={`${s.scheduled} scheduled later`} />
          <Stat
            label="Oldest waiting"
            value={s.oldest_waiting_sec === null ? '—' : `${Math.round(s.oldest_waiting_sec)} s`}
          />
          <Stat
            label="Throughput"
            value={`${s.throughput_per_min.toFixed(1)}/min`}
            hint="completed, last hour"
          />
          <Stat label="Failed, last hour" value={s.failed_last_hour} />
        </div>
      ) : null}
      <Board
        itemKey={(j: Job) => j.id}
        columns={STATUSES.map((status, i) => ({
          key: status,
          title: status[0]!.toUpperCase() + status.slice(1),
          items: columns[i]?.data?.data ?? [],
        }))}
        card={(j) => (
          <>
            <p>
              <strong>{j.type}</strong>
            </p>
            <p className="hint">
              <code>{j.id}</code>
            </p>
            <p className="hint">
              priority {j.priority} · attempt {j.attempts} of {j.max_attempts}
              {j.worker_id ? ` · ${j.worker_id}` : ''} · {when(j.created_at)}
            </p>
            {j.error ? <p className="hint bad">{j.error}</p> : null}
            {j.status === 'queued' || j.status === 'active' ? (
              <Button
                variant="danger"
                aria-label={`Cancel job ${j.id}`}
                busy={cancel.isPending && cancel.variables === j.id}
                onClick={() => cancel.mutate(j.id)}
              >
                Cancel
              </Button>
            ) : null}
          </>
        )}
      />
      <SubmitJob queue={name} />
      <Link to="/queues">All queues</Link>
    </Page>
  );
}
