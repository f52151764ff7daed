import { useMutation, useQuery, useQueryClient } from '@tanstack/react-query';
import { type FormEvent, useState } from 'react';
import { Link, useNavigate } from 'react-router';
import { api, unwrap, usd, when } from '../api.ts';
import { useRoutedItem } from '../routed.ts';
import {
  Button,
  ButtonLink,
  ConfirmButton,
  DataTable,
  Empty,
  ErrorNote,
  Loading,
  Page,
  Section,
  TextField,
} from '../ui.tsx';
import {
  BudgetSection,
  defaultDoc,
  getPolicy,
  ModelsSection,
  type PolicyDoc,
  type PolicyOf,
  RateLimitsSection,
  RoutingSection,
  RunsSection,
  ToolsSection,
} from './policy-sections.tsx';

export function usePolicies() {
  return useQuery({
    queryKey: ['policies'],
    queryFn: () => unwrap(api.GET('/v1/policies', { params: { query: { limit: 200 } } })),
  });
}

function limits(policy: PolicyOf): string {
  const parts: string[] = [];
  if (policy.budget.hard_limit_usd !== null) parts.push(`${usd(policy.budget.hard_limit_usd)} a run`);
  if (policy.budget.max_cost_per_hour_usd !== null)
    parts.push(`${usd(policy.budget.max_cost_per_hour_usd)} an hour`);
  return parts.join(', ') || 'no budget limit';
}

export function PoliciesPage() {
  const policies = usePolicies();
  return (
    <Page
      title="Policies"
      actions={
        <ButtonLink to="/policies/new" variant="primary">
          New policy
        </ButtonLink>
      }
    >
      <p className="muted lead">
        A policy governs every model call an agent makes: budgets and rate limits, which models and tools it
        may use, which tools need a person's approval first, and how calls are routed when a provider fails.
      </p>
      <Section title="Policies">
        <DataTable
          list={policies}
          what="policies"
          rowKey={(policy) => policy.id}
          empty={
            <Empty
              title="No policies yet."
              action={<ButtonLink to="/policies/new">Create a policy</ButtonLink>}
            >
              Every agent runs under one. Start with a budget per run; you can tighten it later.
            </Empty>
          }
          columns={[
            { header: 'Name', cell: (policy) => <Link to={`/policies/${policy.id}`}>{policy.name}</Link> },
            { header: 'Budget', cell: limits },
            { header: 'Models', cell: (policy) => policy.allowed_models.join(', ') || 'any' },
            { header: 'Needs approval', cell: (policy) => policy.require_approval.join(', ') || 'nothing' },
            { header: 'Version', cell: (policy) => policy.version },
            { header: 'Updated', cell: (policy) => when(policy.updated_at) },
          ]}
        />
      </Section>
    </Page>
  );
}

export function PolicyFormPage() {
  const { id, query: policy } = useRoutedItem('policies', getPolicy);
  if (id === undefined) return <PolicyForm />;
  if (policy.isPending) return <Loading what="the policy" />;
  if (policy.isError) return <ErrorNote error={policy.error} />;
  return <PolicyForm policy={policy.data} key={`${policy.data.id}-${policy.data.version}`} />;
}

/** The document without its name and record-keeping. */
function docOf(policy: PolicyOf): PolicyDoc {
  const { id, team_id, name, version, created_by, updated_by, created_at, updated_at, ...doc } = policy;
  return structuredClone(doc);
}

/**
 * model_mapping as PUT wants it: the update is merged into the stored
 * document, so a mapping (or one provider's target) that is gone is sent as null.
 */
function mappingUpdate(before: PolicyDoc['model_mapping'], after: PolicyDoc['model_mapping']) {
  const out: Record<string, Record<string, string | null> | null> = { ...after };
  for (const [source, targets] of Object.entries(before)) {
    const kept = after[source];
    if (!kept) {
      out[source] = null;
      continue;
    }
    for (const provider of Object.keys(targets ?? {}))
      if (!(provider in kept)) out[source] = { ...out[source], [provider]: null };
  }
  return out;
}

function PolicyForm(props: { policy?: PolicyOf }) {
  const existing = props.policy;
  const client = useQueryClient();
  const navigate = useNavigate();
  const [name, setName] = useState(existing?.name ?? '');
  const [doc, setDoc] = useState<PolicyDoc>(() => (existing ? docOf(existing) : defaultDoc()));
  const change = (patch: Partial<PolicyDoc>) => setDoc((previous) => ({ ...previous, ...patch }));
  const save = useMutation({
    mutationFn: async (): Promise<unknown> =>
      existing
        ? unwrap(
            api.PUT('/v1/policies/{id}', {
              params: { path: { id: existing.id } },
              body: { name, ...doc, model_mapping: mappingUpdate(existing.model_mapping, doc.model_mapping) },
            }),
          )
        : unwrap(api.POST('/v1/policies', { body: { name, ...doc } })),
    onSuccess: async () => {
      await client.invalidateQueries({ queryKey: ['policies'] });
      void navigate('/policies');
    },
  });
  const remove = useMutation({
    mutationFn: (id: string) => unwrap(api.DELETE('/v1/policies/{id}', { params: { path: { id } } })),
    onSuccess: async () => {
      await client.invalidateQueries({ queryKey: ['policies'] });
      void navigate('/policies');
    },
  });
  const submit = (e: FormEvent) => {
    e.preventDefault();
    save.mutate();
  };
  return (
    <Page
      title={existing ? `Policy ${existing.name}` : 'New policy'}
      actions={
        existing ? (
          <>
            <ButtonLink to={`/policies/${existing.id}/history`}>
              History (version {existing.version})
            </ButtonLink>
            <ConfirmButton
              label="Delete"
              name={existing.name}
              question="Delete this policy? Its history stays readable; an agent that uses it must move first."
              busy={remove.isPending}
              onConfirm={() => remove.mutate(existing.id)}
            />
          </>
        ) : null
      }
    >
      <ErrorNote error={remove.error} />
      <form onSubmit={submit}>
        <Section title="Policy">
          <TextField label="Name" required value={name} onChange={(e) => setName(e.target.value)} />
        </Section>
        <BudgetSection doc={doc} change={change} />
        <RateLimitsSection doc={doc} change={change} />
        <ModelsSection doc={doc} change={change} />
        <ToolsSection doc={doc} change={change} />
        <RoutingSection doc={doc} change={change} />
        <RunsSection doc={doc} change={change} />
        <ErrorNote error={save.error} />
        <div className="actions">
          <Button type="submit" variant="primary" busy={save.isPending}>
            {existing ? 'Save changes' : 'Create policy'}
          </Button>
          <ButtonLink to="/policies">Cancel</ButtonLink>
        </div>
      </form>
    </Page>
  );
}
