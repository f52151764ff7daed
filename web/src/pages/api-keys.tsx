import { useMutation, useQuery, useQueryClient } from '@tanstack/react-query';
import { type FormEvent, useState } from 'react';
import { Link, useParams } from 'react-router';
import { api, unwrap, when } from '../api.ts';
import {
  Badge,
  Button,
  ButtonLink,
  Checkboxes,
  ConfirmButton,
  DataTable,
  Empty,
  ErrorNote,
  Loading,
  Page,
  Section,
  ShownOnce,
  TextField,
} from '../ui.tsx';
import './pages-extra.css';

const SCOPES = ['read', 'write', 'admin', 'queue'] as const;
type Scope = (typeof SCOPES)[number];

function useRevoke() {
  const client = useQueryClient();
  return useMutation({
    mutationFn: (id: string) => unwrap(api.POST('/v1/api-keys/{id}/revoke', { params: { path: { id } } })),
    onSuccess: () => client.invalidateQueries({ queryKey: ['api-keys'] }),
  });
}

export function ApiKeysPage() {
  const keys = useQuery({
    queryKey: ['api-keys'],
    queryFn: () => unwrap(api.GET('/v1/api-keys', { params: { query: { limit: 200 } } })),
  });
  const revoke = useRevoke();
  return (
    <Page title="API keys">
      <p className="muted lead">
        Team API keys (pdk_…) let scripts, the CLI and the SDK call Paddock as this team. A key is shown once,
        when it is created; open a key to rotate it or see what it was used for.
      </p>
      <NewApiKey />
      <Section title="Keys">
        <ErrorNote error={revoke.error} />
        <DataTable
          list={keys}
          what="keys"
          rowKey={(key) => key.id}
          empty={
            <Empty title="No API keys yet.">
              Create one above for a script or the CLI; the browser does not need one.
            </Empty>
          }
          columns={[
            { header: 'Name', cell: (key) => <Link to={`/api-keys/${key.id}`}>{key.name}</Link> },
            { header: 'Key', cell: (key) => <code>{key.key_prefix}…</code> },
            { header: 'Scopes', cell: (key) => key.scopes.join(', ') },
            { header: 'Status', cell: (key) => <Badge status={key.status} /> },
            { header: 'Last used', cell: (key) => when(key.last_used_at) },
            { header: 'Created', cell: (key) => when(key.created_at) },
            {
              header: 'Actions',
              quietHeader: true,
              cell: (key) =>
                key.status === 'revoked' ? null : (
                  <ConfirmButton
                    label="Revoke"
                    name={key.name}
                    question={`Revoke ${key.name}? Whatever uses it stops working.`}
                    busy={revoke.isPending && revoke.variables === key.id}
                    onConfirm={() => revoke.mutate(key.id)}
                  />
                ),
            },
          ]}
        />
      </Section>
    </Page>
  );
}

function NewApiKey() {
  const client = useQueryClient();
  const [name, setName] = useState('');
  const [scopes, setScopes] = useState<string[]>(['write']);
  const [secret, setSecret] = useState<string>();
  const create = useMutation({
    mutationFn: () => unwrap(api.POST('/v1/api-keys', { body: { name, scopes: scopes as Scope[] } })),
    onSuccess: (key) => {
      setSecret(key.key);
      setName('');
      return client.invalidateQueries({ queryKey: ['api-keys'] });
    },
  });
  const submit = (e: FormEvent) => {
    e.preventDefault();
    create.mutate();
  };
  return (
    <Section title="Create an API key">
      {secret ? (
        <ShownOnce label="The new API key" value={secret} onDone={() => setSecret(undefined)} />
      ) : null}
      <form onSubmit={submit}>
        <TextField label="Name" required value={name} onChange={(e) => setName(e.target.value)} />
        <Checkboxes
          legend="Scopes"
          hint="read < write < admin; queue: a worker that only claims and completes work-queue jobs."
          choices={SCOPES}
          value={scopes}
          onChange={setScopes}
        />
        <ErrorNote error={create.error} />
        <Button type="submit" variant="primary" busy={create.isPending}>
          Create key
        </Button>
      </form>
    </Section>
  );
}

/** One key: its facts, rotate (the old secret kept for a grace period) or roll (stopped at once), its usage. */
export function ApiKeyPage() {
  const { id } = useParams();
  const key = useQuery({
    queryKey: ['api-keys', id],
    queryFn: () => unwrap(api.GET('/v1/api-keys/{id}', { params: { path: { id: id! } } })),
  });
  const usage = useQuery({
    queryKey: ['api-keys', id, 'usage'],
    queryFn: () =>
      unwrap(api.GET('/v1/api-keys/{id}/usage', { params: { path: { id: id! }, query: { limit: 200 } } })),
  });
  const revoke = useRevoke();
  if (key.isPending) return <Loading what="the key" />;
  if (key.isError) return <ErrorNote error={key.error} />;
  const k = key.data;
  return (
    <Page
      title={`API key “${k.name}”`}
      actions={
        k.status === 'revoked' ? null : (
          <ConfirmButton
            label="Revoke"
            name={k.name}
            question={`Revoke ${k.name}? Whatever uses it stops working.`}
            busy={revoke.isPending}
            onConfirm={() => revoke.mutate(k.id)}
          />
        )
      }
    >
      <ErrorNote error={revoke.error} />
      <dl className="facts">
        <dt>Key</dt>
        <dd>
          <code>{k.key_prefix}…</code>
        </dd>
        <dt>Status</dt>
        <dd>
          <Badge status={k.status} />
        </dd>
        <dt>Scopes</dt>
        <dd>{k.scopes.join(', ')}</dd>
        <dt>Last used</dt>
        <dd>{when(k.last_used_at)}</dd>
        <dt>Expires</dt>
        <dd>{k.expires_at ? when(k.expires_at) : 'never'}</dd>
        {k.previous_key_expires_at ? (
          <>
            <dt>Previous secret</dt>
            <dd>works until {when(k.previous_key_expires_at)}</dd>
          </>
        ) : null}
        <dt>Created</dt>
        <dd>{when(k.created_at)}</dd>
      </dl>
      {k.status === 'revoked' ? null : <RotateApiKey id={k.id} name={k.name} />}
      <Section title="Usage">
        <DataTable
          list={usage}
          what="the key's usage"
          rowKey={(u) => u.id}
          empty={
            <Empty title="Not used yet.">Each request made with this key is listed here, newest first.</Empty>
          }
          columns={[
            { header: 'When', cell: (u) => when(u.created_at) },
            {
              header: 'Request',
              cell: (u) => (
                <code>
                  {u.method} {u.path}
                </code>
              ),
              wrap: true,
            },
            { header: 'Status', cell: (u) => u.status_code },
            { header: 'Secret', cell: (u) => u.key_version },
            { header: 'From', cell: (u) => u.ip_address ?? '—' },
          ]}
        />
      </Section>
      <ButtonLink to="/api-keys">All API keys</ButtonLink>
    </Page>
  );
}

function RotateApiKey(props: { id: string; name: string }) {
  const client = useQueryClient();
  const [graceHours, setGraceHours] = useState('24');
  const [secret, setSecret] = useState<string>();
  const shown = (key: { key: string }) => {
    setSecret(key.key);
    return client.invalidateQueries({ queryKey: ['api-keys'] });
  };
  const path = { params: { path: { id: props.id } } };
  const rotate = useMutation({
    mutationFn: () =>
      unwrap(api.POST('/v1/api-keys/{id}/rotate', { ...path, body: { grace_hours: Number(graceHours) } })),
    onSuccess: shown,
  });
  const roll = useMutation({
    mutationFn: () => unwrap(api.POST('/v1/api-keys/{id}/roll', path)),
    onSuccess: shown,
  });
  const submit = (e: FormEvent) => {
    e.preventDefault();
    rotate.mutate();
  };
  return (
    <Section title="Rotate or roll">
      {secret ? (
        <ShownOnce label="The new secret" value={secret} onDone={() => setSecret(undefined)} />
      ) : null}
      <p className="muted">
        Rotate gives the key a new secret and keeps the old one working for a grace period, so whatever uses
        it can switch without downtime. Roll gives a new secret and stops the old one at once (a leaked key).
      </p>
      <form onSubmit={submit} className="file-actions">
        <TextField
          label="Grace period (hours)"
          type="number"
          min={0}
          max={720}
          step={1}
          required
          value={graceHours}
          onChange={(e) => setGraceHours(e.target.value)}
        />
        <Button type="submit" variant="primary" busy={rotate.isPending}>
          Rotate
        </Button>
        <ConfirmButton
          label="Roll"
          name={props.name}
          question={`Roll ${props.name}? Its current secret stops working at once.`}
          busy={roll.isPending}
          onConfirm={() => roll.mutate()}
        />
      </form>
      <ErrorNote error={rotate.error ?? roll.error} />
    </Section>
  );
}
