import { useMutation, useQuery, useQueryClient } from '@tanstack/react-query';
import { type FormEvent, useState } from 'react';
import { Link, useNavigate, useParams } from 'react-router';
import { api, splitList, unwrap, usd, when } from '../api.ts';
import {
  Button,
  ButtonLink,
  DataTable,
  Empty,
  ErrorNote,
  Loading,
  Page,
  Section,
  TextField,
} from '../ui.tsx';

type PolicyOf = Awaited<ReturnType<typeof getPolicy>>;

function getPolicy(id: string) {
  return unwrap(api.GET('/v1/policies/{id}', { params: { path: { id } } }));
}

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
        A policy governs every model call an agent makes: budgets, which models and tools it may use, and
        which tools need a person's approval first.
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

/** A number field's text as the API wants it: a number, or null for "no limit". */
function numberOrNull(text: string): number | null {
  return text.trim() === '' ? null : Number(text);
}

export function PolicyFormPage() {
  const { id } = useParams();
  const policy = useQuery({
    queryKey: ['policies', id],
    queryFn: () => getPolicy(id!),
    enabled: id !== undefined,
  });
  if (id === undefined) return <PolicyForm />;
  if (policy.isPending) return <Loading what="the policy" />;
  if (policy.isError) return <ErrorNote error={policy.error} />;
  return <PolicyForm policy={policy.data} key={`${policy.data.id}-${policy.data.version}`} />;
}

function PolicyForm(props: { policy?: PolicyOf }) {
  const existing = props.policy;
  const client = useQueryClient();
  const navigate = useNavigate();
  const [name, setName] = useState(existing?.name ?? '');
  const [runLimit, setRunLimit] = useState(String(existing?.budget.hard_limit_usd ?? ''));
  const [hourLimit, setHourLimit] = useState(String(existing?.budget.max_cost_per_hour_usd ?? ''));
  const [allowedModels, setAllowedModels] = useState(existing?.allowed_models.join(', ') ?? '');
  const [blockedModels, setBlockedModels] = useState(existing?.blocked_models.join(', ') ?? '');
  const [blockedTools, setBlockedTools] = useState(existing?.blocked_tools.join(', ') ?? '');
  const [approval, setApproval] = useState(existing?.require_approval.join(', ') ?? '');
  const save = useMutation({
    mutationFn: async (): Promise<unknown> => {
      const body = {
        name,
        budget: { hard_limit_usd: numberOrNull(runLimit), max_cost_per_hour_usd: numberOrNull(hourLimit) },
        allowed_models: splitList(allowedModels),
        blocked_models: splitList(blockedModels),
        blocked_tools: splitList(blockedTools),
        require_approval: splitList(approval),
      };
      return existing
        ? unwrap(api.PUT('/v1/policies/{id}', { params: { path: { id: existing.id } }, body }))
        : unwrap(api.POST('/v1/policies', { body }));
    },
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
    <Page title={existing ? `Policy ${existing.name}` : 'New policy'}>
      <form onSubmit={submit}>
        <Section title="Policy">
          <TextField label="Name" required value={name} onChange={(e) => setName(e.target.value)} />
        </Section>
        <Section title="Budget">
          <div className="grid-form">
            <TextField
              label="Limit per run (USD)"
              type="number"
              min={0}
              step="any"
              hint="A run (a task) stops when it would spend more. Empty: no limit."
              value={runLimit}
              onChange={(e) => setRunLimit(e.target.value)}
            />
            <TextField
              label="Limit per hour (USD)"
              type="number"
              min={0}
              step="any"
              hint="A rolling cap per agent under this policy. Empty: no limit."
              value={hourLimit}
              onChange={(e) => setHourLimit(e.target.value)}
            />
          </div>
        </Section>
        <Section title="Model and tool rules">
          <div className="grid-form">
            <TextField
              label="Allowed models"
              placeholder="gpt-4o*, claude-*"
              hint="Comma-separated globs. Empty: every model."
              value={allowedModels}
              onChange={(e) => setAllowedModels(e.target.value)}
            />
            <TextField
              label="Blocked models"
              hint="Comma-separated globs; they win over the allowed ones."
              value={blockedModels}
              onChange={(e) => setBlockedModels(e.target.value)}
            />
            <TextField
              label="Blocked tools"
              placeholder="bash"
              hint="Comma-separated tool globs an agent may not use."
              value={blockedTools}
              onChange={(e) => setBlockedTools(e.target.value)}
            />
          </div>
        </Section>
        <Section title="Approvals">
          <TextField
            label="Tools that need approval"
            placeholder="bash, write_file"
            hint="Comma-separated tool globs. A call offering one waits in Approvals until a person decides."
            value={approval}
            onChange={(e) => setApproval(e.target.value)}
          />
        </Section>
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
