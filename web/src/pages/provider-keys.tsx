import { useMutation, useQuery, useQueryClient } from '@tanstack/react-query';
import { type FormEvent, useState } from 'react';
import { api, unwrap, when } from '../api.ts';
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
  TextField,
} from '../ui.tsx';

const PROVIDERS = [
  { value: 'openai', label: 'OpenAI (or an OpenAI-compatible endpoint)' },
  { value: 'anthropic', label: 'Anthropic (or an Anthropic-compatible endpoint)' },
  { value: 'openai_compatible', label: 'OpenAI-compatible (base URL required)' },
] as const;
type Provider = (typeof PROVIDERS)[number]['value'];

export function useProviderKeys() {
  return useQuery({
    queryKey: ['provider-keys'],
    queryFn: () =>
      unwrap(api.GET('/v1/provider-keys', { params: { query: { status: 'active', limit: 200 } } })),
  });
}

export function ProviderKeysPage() {
  const keys = useProviderKeys();
  const client = useQueryClient();
  const remove = useMutation({
    mutationFn: (id: string) => unwrap(api.DELETE('/v1/provider-keys/{id}', { params: { path: { id } } })),
    onSuccess: () => client.invalidateQueries({ queryKey: ['provider-keys'] }),
  });
  return (
    <Page title="Provider keys">
      <p className="muted lead">
        Your agents' model calls go to a provider with one of these keys. Keys are sealed on the server and
        never shown again; only their last characters are.
      </p>
      <NewProviderKey />
      <Section title="Keys">
        <ErrorNote error={remove.error} />
        <DataTable
          list={keys}
          what="keys"
          rowKey={(key) => key.id}
          empty={
            <Empty title="No provider keys yet.">
              Add one above: the provider, its API key and, for a compatible endpoint or a proxy, its base
              URL. Then create a policy and an agent that uses it.
            </Empty>
          }
          columns={[
            { header: 'Name', cell: (key) => key.name },
            { header: 'Provider', cell: (key) => key.provider },
            { header: 'Key', cell: (key) => <code>{key.api_key}</code> },
            { header: 'Base URL', cell: (key) => key.base_url ?? 'provider default', wrap: true },
            { header: 'Status', cell: (key) => <Badge status={key.status} /> },
            { header: 'Created', cell: (key) => when(key.created_at) },
            {
              header: 'Actions',
              quietHeader: true,
              cell: (key) => (
                <ConfirmButton
                  label="Delete"
                  name={key.name}
                  question={`Delete the provider key ${key.name}?`}
                  busy={remove.isPending && remove.variables === key.id}
                  onConfirm={() => remove.mutate(key.id)}
                />
              ),
            },
          ]}
        />
      </Section>
    </Page>
  );
}

function NewProviderKey() {
  const client = useQueryClient();
  const [name, setName] = useState('');
  const [provider, setProvider] = useState<Provider>('openai');
  const [apiKey, setApiKey] = useState('');
  const [baseUrl, setBaseUrl] = useState('');
  const create = useMutation({
    mutationFn: () =>
      unwrap(
        api.POST('/v1/provider-keys', {
          body: { name, provider, api_key: apiKey, ...(baseUrl.trim() ? { base_url: baseUrl.trim() } : {}) },
        }),
      ),
    onSuccess: () => {
      setName('');
      setApiKey('');
      setBaseUrl('');
      return client.invalidateQueries({ queryKey: ['provider-keys'] });
    },
  });
  const submit = (e: FormEvent) => {
    e.preventDefault();
    create.mutate();
  };
  return (
    <Section title="Add a provider key">
      <form onSubmit={submit} className="grid-form">
        <TextField label="Name" required value={name} onChange={(e) => setName(e.target.value)} />
        <SelectField
          label="Provider"
          options={[...PROVIDERS]}
          value={provider}
          onChange={(e) => setProvider(e.target.value as Provider)}
        />
        <TextField
          label="API key"
          type="password"
          autoComplete="off"
          required
          value={apiKey}
          onChange={(e) => setApiKey(e.target.value)}
        />
        <TextField
          label="Base URL"
          type="url"
          placeholder="https://api.openai.com/v1"
          hint="Optional for OpenAI and Anthropic; the endpoint of any compatible server."
          value={baseUrl}
          onChange={(e) => setBaseUrl(e.target.value)}
        />
        <div className="form-end">
          <ErrorNote error={create.error} />
          <Button type="submit" variant="primary" busy={create.isPending}>
            Add key
          </Button>
        </div>
      </form>
    </Section>
  );
}
