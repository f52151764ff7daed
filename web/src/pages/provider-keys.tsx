import { useMutation, useQuery, useQueryClient } from '@tanstack/react-query';
import { type FormEvent, useState } from 'react';
import { api, unwrap, usd, when } from '../api.ts';
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
      <KeyHealth />
      <ProviderReliability />
    </Page>
  );
}

const ms = (v: number | null) => (v === null ? '—' : `${Math.round(v)} ms`);

/** Each key's circuit breaker and latency, as this server's gateway sees them (GET /v1/providers/health). */
function KeyHealth() {
  const health = useQuery({
    queryKey: ['providers', 'health'],
    queryFn: () => unwrap(api.GET('/v1/providers/health')),
    refetchInterval: 10_000,
  });
  return (
    <Section title="Health">
      <p className="muted">
        A key's circuit opens after consecutive failures (its policy's circuit breaker): calls then go to the
        next key in the chain until a probe succeeds. As this server has seen since it started.
      </p>
      <DataTable
        list={health}
        what="key health"
        rowKey={(h) => h.provider_key_id}
        empty={
          <Empty title="No health figures yet.">
            A key shows here once a model call has used it: its circuit, failures and latency.
          </Empty>
        }
        columns={[
          { header: 'Key', cell: (h) => h.name },
          { header: 'Provider', cell: (h) => h.provider },
          { header: 'Circuit', cell: (h) => <Badge status={h.state} /> },
          { header: 'Failures in a row', cell: (h) => h.failure_count },
          { header: 'Last failure', cell: (h) => when(h.last_failure_at) },
          { header: 'Last success', cell: (h) => when(h.last_success_at) },
          {
            header: 'Next probe',
            cell: (h) => (h.state === 'closed' ? '—' : when(h.recovery_at)),
          },
          { header: 'Latency p50', cell: (h) => ms(h.p50_latency_ms) },
        ]}
      />
    </Section>
  );
}

/** Success, errors and failovers per provider over 30 days, from the recorded calls. */
function ProviderReliability() {
  const report = useQuery({
    queryKey: ['analytics', 'provider-reliability'],
    queryFn: () => unwrap(api.GET('/v1/analytics/provider-reliability')),
  });
  return (
    <Section title="Reliability, last 30 days">
      <DataTable
        list={report}
        what="reliability"
        rowKey={(r) => r.provider}
        empty={
          <Empty title="No calls in the last 30 days.">Figures appear once agents make model calls.</Empty>
        }
        columns={[
          { header: 'Provider', cell: (r) => r.provider },
          { header: 'Calls', cell: (r) => r.total_requests },
          { header: 'Success', cell: (r) => `${r.success_rate_pct.toFixed(1)}%` },
          { header: 'Errors', cell: (r) => r.error_count },
          { header: 'Failovers', cell: (r) => r.failover_count },
          { header: 'Latency p50 / p95', cell: (r) => `${ms(r.p50_latency_ms)} / ${ms(r.p95_latency_ms)}` },
          { header: 'Spend', cell: (r) => usd(r.total_cost_usd) },
        ]}
      />
    </Section>
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
