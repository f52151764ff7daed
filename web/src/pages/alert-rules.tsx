import { useMutation, useQuery, useQueryClient } from '@tanstack/react-query';
import { type FormEvent, useState } from 'react';
import { Link, useNavigate } from 'react-router';
import { api, splitList, unwrap, when } from '../api.ts';
import { useRoutedItem } from '../routed.ts';
import {
  Badge,
  Button,
  ButtonLink,
  ConfirmButton,
  DataTable,
  Empty,
  ErrorNote,
  NotLoaded,
  Page,
  Section,
  SelectField,
  TextField,
} from '../ui.tsx';
import { useAgents } from './agents.tsx';

type ConditionType =
  | 'cost_threshold'
  | 'error_rate'
  | 'rate_limit_approaching'
  | 'approval_pending_timeout'
  | 'failover_rate'
  | 'task_failure_rate';

interface ConfigKey {
  key: string;
  label: string;
  optional?: boolean;
  hint?: string;
}

const PCT: ConfigKey = { key: 'threshold_pct', label: 'Threshold (%)', hint: 'Fires at or above it.' };

/** Each condition's config keys (docs/alerts.md, "The six conditions"). */
const CONDITIONS: Record<ConditionType, { label: string; keys: ConfigKey[] }> = {
  cost_threshold: {
    label: 'Cost in the window',
    keys: [
      { key: 'threshold_usd', label: 'Threshold (USD)', hint: 'Fires when the window costs this much.' },
    ],
  },
  error_rate: {
    label: 'Model-call error rate',
    keys: [
      PCT,
      { key: 'min_requests', label: 'At least this many calls', optional: true, hint: 'Default 10.' },
    ],
  },
  rate_limit_approaching: {
    label: 'Rate limit approaching (one agent)',
    keys: [{ ...PCT, hint: "Of the agent's policy rate limit, in its busiest minute." }],
  },
  approval_pending_timeout: {
    label: 'Approval left waiting',
    keys: [{ key: 'timeout_seconds', label: 'Waiting longer than (seconds)' }],
  },
  failover_rate: {
    label: 'Failover rate',
    keys: [
      PCT,
      { key: 'min_requests', label: 'At least this many calls', optional: true, hint: 'Default 10.' },
    ],
  },
  task_failure_rate: {
    label: 'Task failure rate',
    keys: [PCT, { key: 'min_tasks', label: 'At least this many tasks', optional: true, hint: 'Default 10.' }],
  },
};

type Rule = Awaited<ReturnType<typeof getRule>>;
const getRule = (id: string) => unwrap(api.GET('/v1/alert-rules/{id}', { params: { path: { id } } }));

function describe(rule: Pick<Rule, 'condition_type' | 'condition_config'>): string {
  const condition = CONDITIONS[rule.condition_type as ConditionType];
  // In the form's order (the stored JSON keeps no order of its own).
  const keys = condition?.keys.map((k) => k.key) ?? Object.keys(rule.condition_config);
  const parts = keys
    .filter((k) => rule.condition_config[k] !== undefined)
    .map((k) => `${k.replace(/_/g, ' ')} ${String(rule.condition_config[k])}`);
  return `${condition?.label ?? rule.condition_type}: ${parts.join(', ')}`;
}

function seconds(n: number): string {
  if (n % 3600 === 0) return `${n / 3600} h`;
  if (n % 60 === 0) return `${n / 60} min`;
  return `${n} s`;
}

export function AlertRulesPage() {
  const rules = useQuery({
    queryKey: ['alert-rules'],
    queryFn: () => unwrap(api.GET('/v1/alert-rules', { params: { query: { limit: 200 } } })),
  });
  const firings = useQuery({
    queryKey: ['alerts'],
    queryFn: () => unwrap(api.GET('/v1/alerts', { params: { query: { limit: 20 } } })),
    refetchInterval: 15_000,
  });
  const agents = useAgents();
  const agentName = (id: string | null) =>
    id === null ? 'every agent' : (agents.data?.data.find((a) => a.id === id)?.name ?? id);
  return (
    <Page
      title="Alert rules"
      actions={
        <ButtonLink to="/alert-rules/new" variant="primary">
          New alert rule
        </ButtonLink>
      }
    >
      <p className="muted lead">
        A rule watches cost, errors, rate limits, waiting approvals, failovers or task failures over a window;
        when it fires, the event alert.triggered goes to webhooks and channels, and the members listed get an
        e-mail.
      </p>
      <Section title="Rules">
        <DataTable
          list={rules}
          what="alert rules"
          rowKey={(r) => r.id}
          empty={
            <Empty
              title="No alert rules yet."
              action={<ButtonLink to="/alert-rules/new">Create an alert rule</ButtonLink>}
            >
              Start with the cost of an hour: a rule that fires when the team spends more than you expect.
            </Empty>
          }
          columns={[
            { header: 'Name', cell: (r) => <Link to={`/alert-rules/${r.id}`}>{r.name}</Link> },
            { header: 'Condition', cell: describe, wrap: true },
            { header: 'Agent', cell: (r) => agentName(r.agent_id) },
            { header: 'Window', cell: (r) => seconds(r.window_seconds) },
            { header: 'Status', cell: (r) => <Badge status={r.status} /> },
            { header: 'Last fired', cell: (r) => when(r.last_triggered_at) },
          ]}
        />
      </Section>
      <Section title="Recent firings">
        <DataTable
          list={firings}
          what="firings"
          rowKey={(f) => f.id}
          empty={<Empty title="Nothing has fired.">A firing shows here with what was measured.</Empty>}
          columns={[
            { header: 'When', cell: (f) => when(f.fired_at) },
            { header: 'Rule', cell: (f) => f.rule_name },
            {
              header: 'Measured',
              cell: (f) => `${String(f.evidence.value)} (threshold ${String(f.evidence.threshold)})`,
            },
          ]}
        />
      </Section>
    </Page>
  );
}

export function AlertRuleFormPage() {
  const { id, query: rule } = useRoutedItem('alert-rules', getRule);
  if (id === undefined) return <AlertRuleForm />;
  if (!rule.data)
    return (
      <NotLoaded
        query={rule}
        what="the alert rule"
        title="Alert rule"
        back={{ to: '/alert-rules', label: 'Back to the alert rules' }}
      />
    );
  return <AlertRuleForm rule={rule.data} key={rule.data.updated_at} />;
}

function AlertRuleForm(props: { rule?: Rule }) {
  const r = props.rule;
  const client = useQueryClient();
  const navigate = useNavigate();
  const agents = useAgents();
  const [name, setName] = useState(r?.name ?? '');
  const [description, setDescription] = useState(r?.description ?? '');
  const [type, setType] = useState<ConditionType>((r?.condition_type as ConditionType) ?? 'cost_threshold');
  const [config, setConfig] = useState<Record<string, string>>(
    Object.fromEntries(Object.entries(r?.condition_config ?? {}).map(([k, v]) => [k, String(v)])),
  );
  const [agentId, setAgentId] = useState(r?.agent_id ?? '');
  const [windowSec, setWindowSec] = useState(String(r?.window_seconds ?? 3600));
  const [cooldownSec, setCooldownSec] = useState(String(r?.cooldown_seconds ?? 300));
  const [emails, setEmails] = useState(r?.notify_emails.join(', ') ?? '');
  const keys = CONDITIONS[type].keys;
  const body = {
    name,
    description: description || null,
    condition_type: type,
    condition_config: Object.fromEntries(
      keys.filter((k) => (config[k.key] ?? '') !== '').map((k) => [k.key, Number(config[k.key])]),
    ),
    agent_id: agentId || null,
    window_seconds: Number(windowSec),
    cooldown_seconds: Number(cooldownSec),
    notify_emails: splitList(emails),
  };
  const done = async () => {
    await client.invalidateQueries({ queryKey: ['alert-rules'] });
    void navigate('/alert-rules');
  };
  const save = useMutation({
    mutationFn: (): Promise<unknown> =>
      r
        ? unwrap(api.PATCH('/v1/alert-rules/{id}', { params: { path: { id: r.id } }, body }))
        : unwrap(api.POST('/v1/alert-rules', { body })),
    onSuccess: done,
  });
  const toggle = useMutation({
    mutationFn: () => {
      const path = { params: { path: { id: r!.id } } };
      return unwrap(
        r!.status === 'active'
          ? api.POST('/v1/alert-rules/{id}/disable', path)
          : api.POST('/v1/alert-rules/{id}/enable', path),
      );
    },
    onSuccess: () => client.invalidateQueries({ queryKey: ['alert-rules'] }),
  });
  const remove = useMutation({
    mutationFn: () => unwrap(api.DELETE('/v1/alert-rules/{id}', { params: { path: { id: r!.id } } })),
    // The list only: this page's own rule is gone, and asking for it again would be a 404.
    onSuccess: () => {
      void client.invalidateQueries({ queryKey: ['alert-rules'], exact: true });
      void navigate('/alert-rules');
    },
  });
  const submit = (e: FormEvent) => {
    e.preventDefault();
    save.mutate();
  };
  return (
    <Page
      title={r ? `Alert rule ${r.name}` : 'New alert rule'}
      actions={
        r ? (
          <>
            <Badge status={r.status} />
            <Button busy={toggle.isPending} onClick={() => toggle.mutate()}>
              {r.status === 'active' ? 'Disable' : 'Enable'}
            </Button>
            <ConfirmButton
              label="Delete"
              name={r.name}
              question={`Delete the alert rule ${r.name}? Its firings stay listed.`}
              busy={remove.isPending}
              onConfirm={() => remove.mutate()}
            />
          </>
        ) : null
      }
    >
      <ErrorNote error={toggle.error ?? remove.error} />
      <form onSubmit={submit}>
        <Section title="Rule">
          <div className="grid-form">
            <TextField label="Name" required value={name} onChange={(e) => setName(e.target.value)} />
            <TextField
              label="Description"
              value={description}
              onChange={(e) => setDescription(e.target.value)}
            />
          </div>
        </Section>
        <Section title="Condition">
          <div className="grid-form">
            <SelectField
              label="Condition"
              options={Object.entries(CONDITIONS).map(([value, c]) => ({ value, label: c.label }))}
              value={type}
              onChange={(e) => setType(e.target.value as ConditionType)}
            />
            <SelectField
              label="Agent"
              hint={type === 'rate_limit_approaching' ? 'This condition needs one agent.' : undefined}
              options={[
                { value: '', label: 'Every agent' },
                ...(agents.data?.data ?? []).map((a) => ({ value: a.id, label: a.name })),
              ]}
              value={agentId}
              onChange={(e) => setAgentId(e.target.value)}
            />
            {keys.map((k) => (
              <TextField
                key={`${type}-${k.key}`}
                label={k.label}
                type="number"
                min={0}
                step="any"
                required={!k.optional}
                hint={k.hint}
                value={config[k.key] ?? ''}
                onChange={(e) => setConfig({ ...config, [k.key]: e.target.value })}
              />
            ))}
            <TextField
              label="Window (seconds)"
              type="number"
              min={60}
              max={604800}
              hint="The span measured at each evaluation: 60 s to 7 days."
              value={windowSec}
              onChange={(e) => setWindowSec(e.target.value)}
            />
            <TextField
              label="Cooldown (seconds)"
              type="number"
              min={0}
              hint="The least time between two firings."
              value={cooldownSec}
              onChange={(e) => setCooldownSec(e.target.value)}
            />
          </div>
        </Section>
        <Section title="Who hears of it">
          <TextField
            label="E-mail these members"
            placeholder="oncall@example.com"
            hint="Comma-separated addresses of team members (at most 20). Webhooks and channels on alert.triggered hear of it too."
            value={emails}
            onChange={(e) => setEmails(e.target.value)}
          />
        </Section>
        <ErrorNote error={save.error} />
        <div className="actions">
          <Button type="submit" variant="primary" busy={save.isPending}>
            {r ? 'Save changes' : 'Create alert rule'}
          </Button>
          <ButtonLink to="/alert-rules">Cancel</ButtonLink>
        </div>
      </form>
    </Page>
  );
}
