import { useMutation, useQuery, useQueryClient } from '@tanstack/react-query';
import { type FormEvent, useState } from 'react';
import { Link, useParams } from 'react-router';
import { api, splitList, unwrap, when } from '../api.ts';
import {
  Badge,
  Button,
  DataTable,
  Empty,
  ErrorNote,
  NotLoaded,
  Page,
  Section,
  SelectField,
  ShownOnce,
  Stat,
  TextField,
} from '../ui.tsx';

type Host = Awaited<ReturnType<typeof getHost>>;
const getHost = (id: string) => unwrap(api.GET('/v1/hosts/{id}', { params: { path: { id } } }));

function capacity(h: Pick<Host, 'cpu_cores' | 'memory_mb' | 'disk_gb'>): string {
  if (h.cpu_cores === null && h.memory_mb === null) return 'not reported yet';
  const parts = [
    h.cpu_cores === null ? null : `${h.cpu_cores} CPU`,
    h.memory_mb === null ? null : `${Math.round(h.memory_mb / 1024)} GB RAM`,
    h.disk_gb === null ? null : `${h.disk_gb} GB disk`,
  ];
  return parts.filter((p) => p !== null).join(' · ');
}

export function HostsPage() {
  const hosts = useQuery({
    queryKey: ['hosts'],
    queryFn: () => unwrap(api.GET('/v1/hosts')),
    // Heartbeats move the status and the last-heard time.
    refetchInterval: 10_000,
  });
  return (
    <Page title="Hosts">
      <p className="muted lead">
        The machines that run sandboxes: the server's own local host, shared hosts a platform admin runs, and
        a team's own (BYOC) hosts. A host heartbeats every 5 s; silent for 30 s, it is unreachable.
      </p>
      <Section title="Hosts">
        <DataTable
          list={hosts}
          what="hosts"
          rowKey={(h) => h.id}
          empty={
            <Empty title="No hosts of this team.">
              Shared hosts are listed for platform admins only. To run sandboxes on your own machine, add a
              BYOC host below and start <code>paddock host</code> there with its token.
            </Empty>
          }
          columns={[
            { header: 'Host', cell: (h) => <Link to={`/hosts/${h.id}`}>{h.id}</Link> },
            { header: 'Type', cell: (h) => h.type },
            { header: 'Status', cell: (h) => <Badge status={h.status} /> },
            { header: 'Capacity', cell: capacity },
            { header: 'Tags', cell: (h) => h.tags.join(', ') || '—' },
            {
              header: 'Last heartbeat',
              cell: (h) => (h.type === 'local' ? 'in process' : when(h.last_heartbeat_at)),
            },
          ]}
        />
      </Section>
      <NewHost />
    </Page>
  );
}

function NewHost() {
  const client = useQueryClient();
  const [type, setType] = useState<'byoc' | 'regular'>('byoc');
  const [tags, setTags] = useState('');
  const [token, setToken] = useState<string>();
  const create = useMutation({
    mutationFn: () => unwrap(api.POST('/v1/hosts', { body: { type, tags: splitList(tags) } })),
    onSuccess: (made) => {
      setToken(made.registration_token);
      setTags('');
      return client.invalidateQueries({ queryKey: ['hosts'] });
    },
  });
  const submit = (e: FormEvent) => {
    e.preventDefault();
    create.mutate();
  };
  return (
    <Section title="Add a host">
      {token ? (
        <>
          <ShownOnce
            label="The registration token (valid for 1 hour)"
            value={token}
            onDone={() => setToken(undefined)}
          />
          <p className="muted">
            On the machine:{' '}
            <code>
              paddock host --control-plane {window.location.origin} --token {token}
            </code>
          </p>
        </>
      ) : null}
      <form onSubmit={submit}>
        <div className="grid-form">
          <SelectField
            label="Kind"
            hint="BYOC: this team's own machine (team owners). Shared: for every team (platform admins)."
            options={[
              { value: 'byoc', label: "This team's own (BYOC)" },
              { value: 'regular', label: 'Shared' },
            ]}
            value={type}
            onChange={(e) => setType(e.target.value as 'byoc' | 'regular')}
          />
          <TextField
            label="Tags"
            placeholder="gpu, eu-west"
            hint="Comma-separated; capsules ask for them with host_tags."
            value={tags}
            onChange={(e) => setTags(e.target.value)}
          />
        </div>
        <ErrorNote error={create.error} />
        <Button type="submit" busy={create.isPending}>
          Add host
        </Button>
      </form>
    </Section>
  );
}

export function HostPage() {
  const { id } = useParams();
  const host = useQuery({ queryKey: ['hosts', id], queryFn: () => getHost(id!), refetchInterval: 10_000 });
  if (!host.data)
    return (
      <NotLoaded
        query={host}
        what="the host"
        title="Host"
        back={{ to: '/hosts', label: 'Back to the hosts' }}
      />
    );
  return <HostView host={host.data} />;
}

function HostView(props: { host: Host }) {
  const h = props.host;
  const client = useQueryClient();
  const drain = useMutation({
    mutationFn: () => {
      const path = { params: { path: { id: h.id } } };
      return unwrap(
        h.status === 'draining'
          ? api.POST('/v1/hosts/{id}/activate', path)
          : api.POST('/v1/hosts/{id}/drain', path),
      );
    },
    onSuccess: () => client.invalidateQueries({ queryKey: ['hosts'] }),
  });
  // The team's capsules say where they run; the API has no per-host capsule list for a team.
  const capsules = useQuery({
    queryKey: ['capsules', 'on-host', h.id],
    queryFn: async () => {
      const all = await unwrap(api.GET('/v1/capsules', { params: { query: { limit: 200 } } }));
      return { data: all.data.filter((c) => c.host_id === h.id) };
    },
    refetchInterval: 5_000,
  });
  const manageable = h.type !== 'local' && (h.status === 'online' || h.status === 'draining');
  return (
    <Page
      title={`Host ${h.id}`}
      actions={
        manageable ? (
          <Button busy={drain.isPending} onClick={() => drain.mutate()}>
            {h.status === 'draining' ? 'Activate' : 'Drain'}
          </Button>
        ) : null
      }
    >
      <div className="status-line">
        <Badge status={h.status} />
        <span className="muted">
          {h.type} host{h.tags.length > 0 ? ` · tags ${h.tags.join(', ')}` : ''}
        </span>
      </div>
      <ErrorNote error={drain.error} />
      <div className="stats">
        <Stat label="CPU cores" value={h.cpu_cores ?? '—'} hint={h.arch ?? undefined} />
        <Stat label="Memory" value={h.memory_mb === null ? '—' : `${Math.round(h.memory_mb / 1024)} GB`} />
        <Stat label="Disk" value={h.disk_gb === null ? '—' : `${h.disk_gb} GB`} />
        <Stat
          label="Last heartbeat"
          value={h.type === 'local' ? 'in process' : when(h.last_heartbeat_at)}
          hint={h.isolation ? `isolation: ${h.isolation}` : undefined}
        />
      </div>
      <Section title="This team's capsules on it">
        <DataTable
          list={capsules}
          what="capsules"
          rowKey={(c) => c.id}
          empty={
            <Empty title="None of this team's capsules run here.">
              Start a sandbox in Sandboxes; it is placed on the least-loaded online host.
            </Empty>
          }
          columns={[
            { header: 'Capsule', cell: (c) => <Link to={`/capsules/${c.id}`}>{c.id}</Link> },
            { header: 'Template', cell: (c) => c.template },
            { header: 'Status', cell: (c) => <Badge status={c.status} /> },
            { header: 'Size', cell: (c) => `${c.vcpus} vCPU · ${c.memory_mb} MB` },
            { header: 'Created', cell: (c) => when(c.created_at) },
          ]}
        />
      </Section>
      <dl className="facts">
        <dt>Address</dt>
        <dd>{h.address ?? '—'}</dd>
        <dt>Provider</dt>
        <dd>{h.provider ?? '—'}</dd>
        <dt>Zone</dt>
        <dd>{h.availability_zone ?? '—'}</dd>
        <dt>Added</dt>
        <dd>{when(h.created_at)}</dd>
      </dl>
    </Page>
  );
}
