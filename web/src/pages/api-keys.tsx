import { useMutation, useQuery, useQueryClient } from '@tanstack/react-query';
import { type FormEvent, useState } from 'react';
import { api, unwrap, when } from '../api.ts';
import {
  Badge,
  Button,
  Checkboxes,
  ConfirmButton,
  DataTable,
  Empty,
  ErrorNote,
  Page,
  Section,
  ShownOnce,
  TextField,
} from '../ui.tsx';

const SCOPES = ['read', 'write', 'admin', 'queue'] as const;
type Scope = (typeof SCOPES)[number];

export function ApiKeysPage() {
  const client = useQueryClient();
  const keys = useQuery({
    queryKey: ['api-keys'],
    queryFn: () => unwrap(api.GET('/v1/api-keys', { params: { query: { limit: 200 } } })),
  });
  const revoke = useMutation({
    mutationFn: (id: string) => unwrap(api.POST('/v1/api-keys/{id}/revoke', { params: { path: { id } } })),
    onSuccess: () => client.invalidateQueries({ queryKey: ['api-keys'] }),
  });
  return (
    <Page title="API keys">
      <p className="muted lead">
        Team API keys (pdk_…) let scripts, the CLI and the SDK call Paddock as this team. A key is shown once,
        when it is created.
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
            { header: 'Name', cell: (key) => key.name },
            { header: 'Key', cell: (key) => <code>{key.key_prefix}…</code> },
            { header: 'Scopes', cell: (key) => key.scopes.join(', ') },
            { header: 'Status', cell: (key) => <Badge status={key.status} /> },
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
