import { useMutation, useQuery, useQueryClient } from '@tanstack/react-query';
import { type FormEvent, useState } from 'react';
import { Link, useNavigate, useParams } from 'react-router';
import { api, splitList, unwrap, when } from '../api.ts';
import { EventTypesField } from '../event-types.tsx';
import {
  Badge,
  Button,
  ConfirmButton,
  DataTable,
  Empty,
  ErrorNote,
  NotLoaded,
  Page,
  Section,
  ShownOnce,
  TextField,
} from '../ui.tsx';

type Webhook = Awaited<ReturnType<typeof getWebhook>>;
const getWebhook = (id: string) => unwrap(api.GET('/v1/webhooks/{id}', { params: { path: { id } } }));

export function WebhooksPage() {
  const hooks = useQuery({
    queryKey: ['webhooks'],
    queryFn: () => unwrap(api.GET('/v1/webhooks', { params: { query: { limit: 200 } } })),
  });
  return (
    <Page title="Webhooks">
      <p className="muted lead">
        A webhook POSTs each event it subscribes to, to your endpoint, signed with its secret (Standard
        Webhooks), and retries until the endpoint answers 2xx.
      </p>
      <NewWebhook />
      <Section title="Webhooks">
        <DataTable
          list={hooks}
          what="webhooks"
          rowKey={(h) => h.id}
          empty={
            <Empty title="No webhooks yet.">
              Add an endpoint above and choose its events, e.g. task.* for every task's changes.
            </Empty>
          }
          columns={[
            { header: 'Endpoint', cell: (h) => <Link to={`/webhooks/${h.id}`}>{h.url}</Link>, wrap: true },
            { header: 'Events', cell: (h) => h.event_types.join(', '), wrap: true },
            { header: 'Status', cell: (h) => <Badge status={h.status} /> },
            { header: 'Failures in a row', cell: (h) => h.failure_count },
            { header: 'Created', cell: (h) => when(h.created_at) },
          ]}
        />
      </Section>
    </Page>
  );
}

/** The fields a webhook is made of, for create and edit alike. */
function WebhookFields(props: {
  url: string;
  setUrl: (v: string) => void;
  events: string;
  setEvents: (v: string) => void;
  description: string;
  setDescription: (v: string) => void;
}) {
  return (
    <>
      <TextField
        label="Endpoint URL"
        type="url"
        required
        placeholder="https://example.com/hooks/paddock"
        hint="https; http only for a host the platform admin allows."
        value={props.url}
        onChange={(e) => props.setUrl(e.target.value)}
      />
      <EventTypesField
        placeholder="task.completed, task.failed, approval.*"
        value={props.events}
        onChange={props.setEvents}
      />
      <TextField
        label="Description"
        value={props.description}
        onChange={(e) => props.setDescription(e.target.value)}
      />
    </>
  );
}

function NewWebhook() {
  const client = useQueryClient();
  const [url, setUrl] = useState('');
  const [events, setEvents] = useState('');
  const [description, setDescription] = useState('');
  const [secret, setSecret] = useState<string>();
  const create = useMutation({
    mutationFn: () =>
      unwrap(
        api.POST('/v1/webhooks', {
          body: { url, event_types: splitList(events), description: description || null },
        }),
      ),
    onSuccess: (hook) => {
      setSecret(hook.secret);
      setUrl('');
      setEvents('');
      setDescription('');
      return client.invalidateQueries({ queryKey: ['webhooks'] });
    },
  });
  const submit = (e: FormEvent) => {
    e.preventDefault();
    create.mutate();
  };
  return (
    <Section title="Add a webhook">
      {secret ? (
        <ShownOnce label="The signing secret" value={secret} onDone={() => setSecret(undefined)} />
      ) : null}
      <form onSubmit={submit}>
        <WebhookFields
          url={url}
          setUrl={setUrl}
          events={events}
          setEvents={setEvents}
          description={description}
          setDescription={setDescription}
        />
        <ErrorNote error={create.error} />
        <Button type="submit" variant="primary" busy={create.isPending}>
          Add webhook
        </Button>
      </form>
    </Section>
  );
}

export function WebhookPage() {
  const { id } = useParams();
  const hook = useQuery({ queryKey: ['webhooks', id], queryFn: () => getWebhook(id!) });
  if (!hook.data)
    return (
      <NotLoaded
        query={hook}
        what="the webhook"
        title="Webhook"
        back={{ to: '/webhooks', label: 'Back to the webhooks' }}
      />
    );
  return <WebhookView hook={hook.data} key={hook.data.updated_at} />;
}

function WebhookView(props: { hook: Webhook }) {
  const h = props.hook;
  const client = useQueryClient();
  const navigate = useNavigate();
  const path = { params: { path: { id: h.id } } };
  const [secret, setSecret] = useState<string>();
  const changed = () => client.invalidateQueries({ queryKey: ['webhooks'] });
  const setStatus = useMutation({
    mutationFn: (to: 'enable' | 'disable') =>
      unwrap(
        to === 'enable'
          ? api.POST('/v1/webhooks/{id}/enable', path)
          : api.POST('/v1/webhooks/{id}/disable', path),
      ),
    onSuccess: changed,
  });
  const rotate = useMutation({
    mutationFn: () => unwrap(api.POST('/v1/webhooks/{id}/rotate-secret', path)),
    onSuccess: (rotated) => {
      setSecret(rotated.secret);
      return changed();
    },
  });
  const remove = useMutation({
    mutationFn: () => unwrap(api.DELETE('/v1/webhooks/{id}', path)),
    // The list only: this page's own webhook is gone, and asking for it again would be a 404.
    onSuccess: () => {
      void client.invalidateQueries({ queryKey: ['webhooks'], exact: true });
      void navigate('/webhooks');
    },
  });
  return (
    <Page
      title="Webhook"
      actions={
        <>
          {h.status === 'active' ? (
            <Button busy={setStatus.isPending} onClick={() => setStatus.mutate('disable')}>
              Pause
            </Button>
          ) : (
            <Button busy={setStatus.isPending} onClick={() => setStatus.mutate('enable')}>
              Resume
            </Button>
          )}
          <Button busy={rotate.isPending} onClick={() => rotate.mutate()}>
            Rotate secret
          </Button>
          <ConfirmButton
            label="Delete"
            name={h.url}
            question={`Delete the webhook to ${h.url}? Its deliveries and their log go with it.`}
            busy={remove.isPending}
            onConfirm={() => remove.mutate()}
          />
        </>
      }
    >
      <div className="status-line">
        <Badge status={h.status} />
        <code>{h.url}</code>
        {h.failure_count > 0 ? <span className="bad">{h.failure_count} failed in a row</span> : null}
      </div>
      {secret ? (
        <ShownOnce
          label="The new signing secret (the old one also signs for 10 minutes)"
          value={secret}
          onDone={() => setSecret(undefined)}
        />
      ) : null}
      <ErrorNote error={setStatus.error ?? rotate.error ?? remove.error} />
      <SendTest hookId={h.id} />
      <Deliveries hookId={h.id} />
      <EditWebhook hook={h} />
    </Page>
  );
}

function SendTest(props: { hookId: string }) {
  const client = useQueryClient();
  const test = useMutation({
    mutationFn: () => unwrap(api.POST('/v1/webhooks/{id}/test', { params: { path: { id: props.hookId } } })),
    onSuccess: () => client.invalidateQueries({ queryKey: ['webhook-deliveries', props.hookId] }),
  });
  const sent = test.data;
  return (
    <Section title="Send a test event">
      <p className="muted">
        Sends one <code>webhook.test</code> event to the endpoint now, whatever the webhook's status, and
        shows how it answered.
      </p>
      <Button variant="primary" busy={test.isPending} onClick={() => test.mutate()}>
        Send test event
      </Button>
      <ErrorNote error={test.error} />
      {sent ? (
        <div
          className={`note ${sent.delivery_status === 'succeeded' ? 'note-ok' : 'note-error'}`}
          role="status"
        >
          {sent.status_code === null
            ? `Not delivered: ${sent.error ?? 'no answer'}`
            : `The endpoint answered HTTP ${sent.status_code} in ${sent.duration_ms} ms.`}
        </div>
      ) : null}
    </Section>
  );
}

const listAttempts = (id: string) =>
  unwrap(api.GET('/v1/webhooks/{id}/deliveries', { params: { path: { id }, query: { limit: 100 } } }));

function Deliveries(props: { hookId: string }) {
  const client = useQueryClient();
  const attempts = useQuery({
    queryKey: ['webhook-deliveries', props.hookId],
    queryFn: () => listAttempts(props.hookId),
    // A delivery still pending is retried on its own.
    refetchInterval: (query) =>
      query.state.data?.data.some((a) => a.delivery_status === 'pending') ? 2_000 : 10_000,
  });
  const redeliver = useMutation({
    mutationFn: (deliveryId: string) =>
      unwrap(
        api.POST('/v1/webhooks/{id}/deliveries/{delivery_id}/redeliver', {
          params: { path: { id: props.hookId, delivery_id: deliveryId } },
        }),
      ),
    onSuccess: () => client.invalidateQueries({ queryKey: ['webhook-deliveries', props.hookId] }),
  });
  // Newest first: a delivery's first row is its latest attempt, where its redeliver button goes.
  const seen = new Set<string>();
  const latestIds = new Set<string>();
  for (const a of attempts.data?.data ?? []) {
    if (seen.has(a.delivery_id)) continue;
    seen.add(a.delivery_id);
    latestIds.add(a.id);
  }
  return (
    <Section title="Deliveries">
      <ErrorNote error={redeliver.error} />
      <DataTable
        list={attempts}
        what="deliveries"
        rowKey={(a) => a.id}
        empty={
          <Empty title="Nothing delivered yet.">
            Each event the webhook subscribes to is one delivery here, with every attempt. Send a test event
            above to try the endpoint.
          </Empty>
        }
        columns={[
          { header: 'When', cell: (a) => when(a.created_at) },
          { header: 'Event', cell: (a) => a.event_type },
          { header: 'Attempt', cell: (a) => a.attempt },
          {
            header: 'Response',
            cell: (a) => (a.status_code === null ? '—' : `HTTP ${a.status_code} · ${a.duration_ms} ms`),
          },
          { header: 'Delivery', cell: (a) => <Badge status={a.delivery_status} /> },
          { header: 'Error', cell: (a) => a.error ?? '', wrap: true },
          {
            header: 'Actions',
            quietHeader: true,
            cell: (a) =>
              latestIds.has(a.id) && a.delivery_status !== 'pending' ? (
                <Button
                  aria-label={`Redeliver ${a.event_type} (${a.delivery_id})`}
                  busy={redeliver.isPending && redeliver.variables === a.delivery_id}
                  onClick={() => redeliver.mutate(a.delivery_id)}
                >
                  Redeliver
                </Button>
              ) : null,
          },
        ]}
      />
    </Section>
  );
}

function EditWebhook(props: { hook: Webhook }) {
  const h = props.hook;
  const client = useQueryClient();
  const [url, setUrl] = useState(h.url);
  const [events, setEvents] = useState(h.event_types.join(', '));
  const [description, setDescription] = useState(h.description ?? '');
  const save = useMutation({
    mutationFn: () =>
      unwrap(
        api.PATCH('/v1/webhooks/{id}', {
          params: { path: { id: h.id } },
          body: { url, event_types: splitList(events), description: description || null },
        }),
      ),
    onSuccess: () => client.invalidateQueries({ queryKey: ['webhooks'] }),
  });
  const submit = (e: FormEvent) => {
    e.preventDefault();
    save.mutate();
  };
  return (
    <Section title="Edit">
      <form onSubmit={submit}>
        <WebhookFields
          url={url}
          setUrl={setUrl}
          events={events}
          setEvents={setEvents}
          description={description}
          setDescription={setDescription}
        />
        <ErrorNote error={save.error} />
        <Button type="submit" busy={save.isPending}>
          Save webhook
        </Button>
      </form>
    </Section>
  );
}
