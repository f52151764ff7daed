import { useMutation, useQuery, useQueryClient } from '@tanstack/react-query';
import { type FormEvent, useState } from 'react';
import { useSearchParams } from 'react-router';
import { api, splitList, unwrap, when } from '../api.ts';
import { EventTypesField } from '../event-types.tsx';
import {
  Badge,
  Button,
  ConfirmButton,
  DataTable,
  Empty,
  ErrorNote,
  Page,
  Section,
  SelectField,
  ShownOnce,
  TextField,
} from '../ui.tsx';

type Provider = 'slack' | 'discord' | 'teams' | 'googlechat' | 'telegram' | 'matrix' | 'webhook' | 'in_app';

interface ConfigField {
  key: string;
  label: string;
  hint?: string;
  secret?: boolean;
}

const INCOMING: ConfigField[] = [
  { key: 'webhook_url', label: 'Incoming webhook URL', hint: 'The URL the chat gave you.', secret: true },
];

/** Each provider's config fields (docs/channels.md, "Providers"). */
const PROVIDERS: Record<Provider, { label: string; fields: ConfigField[] }> = {
  in_app: { label: 'In-app inbox (every member)', fields: [] },
  slack: { label: 'Slack', fields: INCOMING },
  discord: { label: 'Discord', fields: INCOMING },
  teams: { label: 'Microsoft Teams', fields: INCOMING },
  googlechat: { label: 'Google Chat', fields: INCOMING },
  telegram: {
    label: 'Telegram',
    fields: [
      { key: 'bot_token', label: 'Bot token', hint: 'From @BotFather.', secret: true },
      { key: 'chat_id', label: 'Chat id' },
    ],
  },
  matrix: {
    label: 'Matrix',
    fields: [
      { key: 'homeserver_url', label: 'Homeserver URL', hint: 'e.g. https://matrix.example.org' },
      { key: 'access_token', label: 'Access token', secret: true },
      { key: 'room_id', label: 'Room id', hint: '!room:server' },
    ],
  },
  webhook: {
    label: 'Signed webhook',
    fields: [
      { key: 'url', label: 'Endpoint URL', hint: 'Signed as webhooks are; the secret is made for you.' },
    ],
  },
};

const listChannels = () => unwrap(api.GET('/v1/channels', { params: { query: { limit: 200 } } }));
type Channel = Awaited<ReturnType<typeof listChannels>>['data'][number];

export function ChannelsPage() {
  const client = useQueryClient();
  const [params, setParams] = useSearchParams();
  const channels = useQuery({
    queryKey: ['channels'],
    queryFn: listChannels,
  });
  const remove = useMutation({
    mutationFn: (id: string) => unwrap(api.DELETE('/v1/channels/{id}', { params: { path: { id } } })),
    onSuccess: () => client.invalidateQueries({ queryKey: ['channels'] }),
  });
  const shownId = params.get('deliveries');
  const shown = channels.data?.data.find((c) => c.id === shownId);
  return (
    <Page title="Channels">
      <p className="muted lead">
        A channel posts a readable message for each event it subscribes to: to a chat (Slack, Discord, Teams,
        Google Chat, Telegram, Matrix), a signed endpoint, or the members' in-app inbox.
      </p>
      <NewChannel />
      <Section title="Channels">
        <ErrorNote error={remove.error} />
        <DataTable
          list={channels}
          what="channels"
          rowKey={(c) => c.id}
          empty={
            <Empty title="No channels yet.">
              Add one above: an in-app channel on approval.* puts every approval request in the members'
              inbox.
            </Empty>
          }
          columns={[
            { header: 'Name', cell: (c) => c.name },
            { header: 'Provider', cell: (c) => PROVIDERS[c.provider].label },
            { header: 'Events', cell: (c) => c.events.join(', '), wrap: true },
            { header: 'Created', cell: (c) => when(c.created_at) },
            {
              header: 'Actions',
              quietHeader: true,
              cell: (c) => (
                <div className="actions">
                  {c.provider === 'in_app' ? null : (
                    <Button
                      aria-label={`Deliveries of ${c.name}`}
                      onClick={() => setParams({ deliveries: c.id })}
                    >
                      Deliveries
                    </Button>
                  )}
                  <ConfirmButton
                    label="Delete"
                    name={c.name}
                    question={`Delete the channel ${c.name}? Its deliveries go with it.`}
                    busy={remove.isPending && remove.variables === c.id}
                    onConfirm={() => remove.mutate(c.id)}
                  />
                </div>
              ),
            },
          ]}
        />
      </Section>
      {shown ? <Deliveries channel={shown} onClose={() => setParams({})} /> : null}
    </Page>
  );
}

const listDeliveries = (id: string) =>
  unwrap(api.GET('/v1/channels/{id}/deliveries', { params: { path: { id }, query: { limit: 100 } } }));

/** A channel's deliveries, newest first: one row an event, with its attempts so far and its last answer. */
function Deliveries(props: { channel: Channel; onClose: () => void }) {
  const { channel } = props;
  const client = useQueryClient();
  const deliveries = useQuery({
    queryKey: ['channel-deliveries', channel.id],
    queryFn: () => listDeliveries(channel.id),
    // A delivery still pending is retried on its own.
    refetchInterval: (query) => (query.state.data?.data.some((d) => d.status === 'pending') ? 2_000 : 10_000),
  });
  const redeliver = useMutation({
    mutationFn: (deliveryId: string) =>
      unwrap(
        api.POST('/v1/channels/{id}/deliveries/{delivery_id}/redeliver', {
          params: { path: { id: channel.id, delivery_id: deliveryId } },
        }),
      ),
    onSuccess: () => client.invalidateQueries({ queryKey: ['channel-deliveries', channel.id] }),
  });
  return (
    <Section title={`Deliveries of ${channel.name}`} actions={<Button onClick={props.onClose}>Close</Button>}>
      <ErrorNote error={redeliver.error} />
      <DataTable
        list={deliveries}
        what="deliveries"
        rowKey={(d) => d.id}
        empty={
          <Empty title="Nothing delivered yet.">
            Each event the channel subscribes to is one delivery here, attempted until the receiver takes it.
          </Empty>
        }
        columns={[
          { header: 'When', cell: (d) => when(d.created_at) },
          { header: 'Event', cell: (d) => d.event_type },
          { header: 'Delivery', cell: (d) => <Badge status={d.status} /> },
          { header: 'Attempts', cell: (d) => `${d.attempts} of ${d.max_attempts}` },
          {
            header: 'Last answer',
            cell: (d) => (d.last_status_code === null ? '—' : `HTTP ${d.last_status_code}`),
          },
          {
            header: 'Next attempt',
            cell: (d) => (d.status === 'pending' && d.next_attempt_at ? when(d.next_attempt_at) : '—'),
          },
          { header: 'Error', cell: (d) => d.last_error ?? '', wrap: true },
          {
            header: 'Actions',
            quietHeader: true,
            cell: (d) =>
              d.status === 'pending' ? null : (
                <Button
                  aria-label={`Redeliver ${d.event_type} (${d.id})`}
                  busy={redeliver.isPending && redeliver.variables === d.id}
                  onClick={() => redeliver.mutate(d.id)}
                >
                  Redeliver
                </Button>
              ),
          },
        ]}
      />
    </Section>
  );
}

function NewChannel() {
  const client = useQueryClient();
  const [name, setName] = useState('');
  const [provider, setProvider] = useState<Provider>('in_app');
  const [events, setEvents] = useState('');
  const [config, setConfig] = useState<Record<string, string>>({});
  const [secret, setSecret] = useState<string>();
  const fields = PROVIDERS[provider].fields;
  const configBody = () => Object.fromEntries(fields.map((f) => [f.key, config[f.key] ?? '']));
  const create = useMutation({
    mutationFn: () =>
      unwrap(
        api.POST('/v1/channels', {
          body: { name, provider, config: configBody(), events: splitList(events) },
        }),
      ),
    onSuccess: (channel) => {
      if (channel.secret) setSecret(channel.secret);
      setName('');
      setEvents('');
      setConfig({});
      return client.invalidateQueries({ queryKey: ['channels'] });
    },
  });
  const test = useMutation({
    mutationFn: () => unwrap(api.POST('/v1/channels/test', { body: { provider, config: configBody() } })),
  });
  const submit = (e: FormEvent) => {
    e.preventDefault();
    create.mutate();
  };
  return (
    <Section title="Add a channel">
      {secret ? (
        <ShownOnce
          label="The webhook channel's signing secret"
          value={secret}
          onDone={() => setSecret(undefined)}
        />
      ) : null}
      <form onSubmit={submit}>
        <div className="grid-form">
          <TextField label="Name" required value={name} onChange={(e) => setName(e.target.value)} />
          <SelectField
            label="Provider"
            options={Object.entries(PROVIDERS).map(([value, p]) => ({ value, label: p.label }))}
            value={provider}
            onChange={(e) => {
              setProvider(e.target.value as Provider);
              test.reset();
            }}
          />
        </div>
        <EventTypesField placeholder="approval.*, task.failed" value={events} onChange={setEvents} />
        {fields.map((f) => (
          <TextField
            key={`${provider}-${f.key}`}
            label={f.label}
            required
            type={f.secret ? 'password' : 'text'}
            autoComplete="off"
            hint={f.hint}
            value={config[f.key] ?? ''}
            onChange={(e) => setConfig({ ...config, [f.key]: e.target.value })}
          />
        ))}
        <ErrorNote error={create.error ?? test.error} />
        {test.isSuccess ? (
          <div className="note note-ok" role="status">
            The test message was delivered.
          </div>
        ) : null}
        <div className="actions">
          <Button type="submit" variant="primary" busy={create.isPending}>
            Add channel
          </Button>
          <Button busy={test.isPending} onClick={() => test.mutate()}>
            Send a test message
          </Button>
        </div>
      </form>
    </Section>
  );
}

export function NotificationsPage() {
  const client = useQueryClient();
  const [params, setParams] = useSearchParams();
  const unreadOnly = params.get('show') !== 'all';
  const notifications = useQuery({
    queryKey: ['notifications', unreadOnly ? 'unread' : 'all'],
    queryFn: () =>
      unwrap(
        api.GET('/v1/notifications', {
          params: { query: { limit: 100, ...(unreadOnly ? { unread: true } : {}) } },
        }),
      ),
    refetchInterval: 10_000,
  });
  const unread = useQuery({
    queryKey: ['notifications', 'unread-count'],
    queryFn: () => unwrap(api.GET('/v1/notifications/unread-count')),
    refetchInterval: 10_000,
  });
  const changed = () => client.invalidateQueries({ queryKey: ['notifications'] });
  const markRead = useMutation({
    mutationFn: (id: string) => unwrap(api.POST('/v1/notifications/{id}/read', { params: { path: { id } } })),
    onSuccess: changed,
  });
  const markAll = useMutation({
    mutationFn: () => unwrap(api.POST('/v1/notifications/read-all')),
    onSuccess: changed,
  });
  const count = unread.data?.unread;
  return (
    <Page
      title="Inbox"
      actions={
        <Button busy={markAll.isPending} disabled={count === 0} onClick={() => markAll.mutate()}>
          Mark all read
        </Button>
      }
    >
      <p className="muted lead">
        Your notifications in this team, from its in-app channels.
        {count === undefined ? '' : ` ${count} unread.`}
      </p>
      <ErrorNote error={markRead.error ?? markAll.error} />
      <Section
        title={unreadOnly ? 'Unread' : 'All notifications'}
        actions={
          <div className="filter">
            <SelectField
              label="Show"
              options={[
                { value: 'unread', label: 'Unread' },
                { value: 'all', label: 'All' },
              ]}
              value={unreadOnly ? 'unread' : 'all'}
              onChange={(e) => setParams(e.target.value === 'all' ? { show: 'all' } : {})}
            />
          </div>
        }
      >
        <DataTable
          list={notifications}
          what="notifications"
          rowKey={(n) => n.id}
          empty={
            <Empty title={unreadOnly ? 'Nothing unread.' : 'No notifications yet.'}>
              {unreadOnly
                ? 'You are up to date. Show all to see the ones you read.'
                : 'Notifications come from in-app channels: add one in Channels with the events you want here.'}
            </Empty>
          }
          columns={[
            {
              header: 'Notification',
              cell: (n) => (
                <>
                  <strong>{n.title}</strong>
                  <p className="message">{n.message}</p>
                </>
              ),
              wrap: true,
            },
            { header: 'Event', cell: (n) => n.event_type },
            { header: 'When', cell: (n) => when(n.created_at) },
            { header: 'Status', cell: (n) => <Badge status={n.read ? 'read' : 'unread'} /> },
            {
              header: 'Actions',
              quietHeader: true,
              cell: (n) =>
                n.read ? null : (
                  <Button
                    aria-label={`Mark read: ${n.title}`}
                    busy={markRead.isPending && markRead.variables === n.id}
                    onClick={() => markRead.mutate(n.id)}
                  >
                    Mark read
                  </Button>
                ),
            },
          ]}
        />
      </Section>
    </Page>
  );
}
