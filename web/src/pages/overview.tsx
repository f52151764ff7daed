import { useQuery } from '@tanstack/react-query';
import { Link } from 'react-router';
import { api, unwrap, usd } from '../api.ts';
import { Chart, clockLabel } from '../chart.tsx';
import { Badge, Empty, ErrorNote, Loading, Page, Section, Stat } from '../ui.tsx';
import { useAgents } from './agents.tsx';
import { SpendChart, useRange } from './analytics.tsx';
import { CreditFigures, useCredits } from './billing.tsx';
import { usePolicies } from './policies.tsx';
import { useProviderKeys } from './provider-keys.tsx';

/** Midnight UTC on the first of this month: the analytics' periods are UTC. */
function monthStart(): string {
  const now = new Date();
  return new Date(Date.UTC(now.getUTCFullYear(), now.getUTCMonth(), 1)).toISOString();
}

export function OverviewPage() {
  const from = monthStart();
  const range = useRange('30d');
  const today = useQuery({
    queryKey: ['overview', 'stats'],
    queryFn: () => unwrap(api.GET('/v1/overview/stats')),
  });
  const month = useQuery({
    queryKey: ['analytics', 'costs', from],
    queryFn: () => unwrap(api.GET('/v1/analytics/costs', { params: { query: { from } } })),
  });
  const tasks = useQuery({
    queryKey: ['analytics', 'tasks', from],
    queryFn: () => unwrap(api.GET('/v1/analytics/tasks', { params: { query: { from } } })),
  });
  const pending = useQuery({
    queryKey: ['approvals', 'pending'],
    queryFn: () => unwrap(api.GET('/v1/approvals', { params: { query: { status: 'pending', limit: 200 } } })),
  });
  const monthSpend = month.data?.data.reduce((sum, row) => sum + row.total_cost_usd, 0);
  const byStatus = Object.entries(tasks.data?.data.by_status ?? {}).filter(([, n]) => n > 0);
  return (
    <Page title="Overview">
      <GettingStarted />
      <ErrorNote error={today.error ?? month.error ?? tasks.error ?? pending.error} />
      <div className="stats">
        <Stat label="Spend today (UTC)" value={today.data ? usd(today.data.data.total_spend_today) : '…'} />
        <Stat label="Spend this month" value={monthSpend === undefined ? '…' : usd(monthSpend)} />
        <Stat label="Model calls today" value={today.data?.data.total_runs_today ?? '…'} />
        <Stat label="Tasks this month" value={tasks.data?.data.total_tasks ?? '…'} />
      </div>
      <Section title="Spend, last 30 days" actions={<Link to="/analytics">Analytics</Link>}>
        <SpendChart range={range} title="Spend per day, last 30 days: model calls and sandboxes" />
      </Section>
      <Credits />
      <ActiveSandboxes />
      <div className="two-col">
        <Section title="Tasks this month by status">
          {tasks.isPending ? <Loading /> : null}
          {tasks.data && byStatus.length === 0 ? (
            <p className="muted">
              No tasks this month. <Link to="/tasks">Submit one</Link>.
            </p>
          ) : null}
          <ul className="plain">
            {byStatus.map(([status, count]) => (
              <li key={status}>
                <Link to={`/tasks?status=${status}`}>
                  <Badge status={status} /> {count}
                </Link>
              </li>
            ))}
          </ul>
        </Section>
        <Section title="Pending approvals">
          {pending.isPending ? <Loading /> : null}
          {pending.data?.data.length === 0 ? (
            <p className="muted">Nothing is waiting for a decision.</p>
          ) : null}
          <ul className="plain">
            {pending.data?.data.slice(0, 5).map((a) => (
              <li key={a.id}>
                <Link to="/approvals">
                  <code>{a.tool_name}</code> asked {new Date(a.created_at).toLocaleTimeString()}
                </Link>
              </li>
            ))}
          </ul>
          {(pending.data?.data.length ?? 0) > 5 ? (
            <Link to="/approvals">All {pending.data?.data.length}</Link>
          ) : null}
        </Section>
      </div>
    </Page>
  );
}

/** The balance, when this server counts credits (PADDOCK_CREDITS track or enforce). */
function Credits() {
  const account = useCredits();
  if (!account.data || account.data.mode === 'off') return <ErrorNote error={account.error} />;
  return (
    <Section title="Credits" actions={<Link to="/billing">Credits and billing</Link>}>
      <CreditFigures account={account.data} />
    </Section>
  );
}

/** The team's live sandboxes now, and how many ran over the last day (sampled each minute). */
function ActiveSandboxes() {
  const stats = useQuery({
    queryKey: ['capsules', 'stats', '24h'],
    queryFn: () => unwrap(api.GET('/v1/capsules/stats', { params: { query: { range: '24h' } } })),
    refetchInterval: 60_000,
  });
  return (
    <Section title="Sandboxes" actions={<Link to="/capsules">All sandboxes</Link>}>
      <ErrorNote error={stats.error} />
      {stats.isPending ? <Loading what="sandboxes" /> : null}
      {stats.data ? (
        <>
          <div className="stats">
            <Stat label="Running now" value={stats.data.current.running_count} />
            <Stat
              label="Reserved now"
              value={`${stats.data.current.vcpus_reserved} vCPU`}
              hint={`${stats.data.current.memory_mb_reserved} MB`}
            />
            <Stat label="30-day peak" value={stats.data.peaks.running_count} hint="sandboxes at once" />
          </div>
          <Chart
            title="Sandboxes running, last 24 hours"
            kind="area"
            labels={stats.data.series.labels}
            series={[{ name: 'running', values: stats.data.series.running }]}
            yLabel="sandboxes"
            xLabel="Time"
            format={(v) => String(Math.round(v))}
            formatLabel={clockLabel}
            empty={
              <Empty title="No sandbox was running when sampled (each minute) in the last 24 hours.">
                Tasks start them, or <Link to="/capsules">start one</Link> yourself.
              </Empty>
            }
          />
        </>
      ) : null}
    </Section>
  );
}

/** The first steps, until they are done: a key, a policy, an agent, a task. */
function GettingStarted() {
  const keys = useProviderKeys();
  const policies = usePolicies();
  const agents = useAgents();
  if (!keys.data || !policies.data || !agents.data) return null;
  const steps = [
    {
      done: keys.data.data.length > 0,
      to: '/provider-keys',
      text: 'Add a provider key (OpenAI, Anthropic or a compatible endpoint)',
    },
    {
      done: policies.data.data.length > 0,
      to: '/policies/new',
      text: 'Create a policy: a budget, model rules, approvals',
    },
    {
      done: agents.data.data.length > 0,
      to: '/agents/new',
      text: 'Create an agent: a model, a prompt and its tools',
    },
    { done: false, to: '/tasks', text: 'Submit a task and watch it run' },
  ];
  if (steps[2]!.done) return null;
  return (
    <Section title="Get started">
      <ol className="steps">
        {steps.map((step) => (
          <li key={step.to} className={step.done ? 'done' : ''}>
            {step.done ? (
              <span>
                {step.text} <span className="ok">(done)</span>
              </span>
            ) : (
              <Link to={step.to}>{step.text}</Link>
            )}
          </li>
        ))}
      </ol>
    </Section>
  );
}
