import { useQuery } from '@tanstack/react-query';
import { Link, useParams } from 'react-router';
import { api, unwrap, usd, when } from '../api.ts';
import { usePaged } from '../paged.ts';
import { setOrDelete, useAddressParams } from '../routed.ts';
import { Badge, DataTable, Empty, ErrorNote, Loading, Page, Section, SelectField, Stat } from '../ui.tsx';
import { useAgents } from './agents.tsx';

const STATUSES = ['running', 'completed', 'failed', 'budget_exceeded', 'force_stopped'] as const;
type Status = (typeof STATUSES)[number];

export function RunsPage() {
  const [params, change] = useAddressParams();
  const status = (STATUSES as readonly string[]).includes(params.get('status') ?? '')
    ? (params.get('status') as Status)
    : undefined;
  const failover = params.get('failover') === 'yes';
  const filter = (next: { status?: string; failover?: boolean }) =>
    change((p) => {
      if (next.status !== undefined) setOrDelete(p, 'status', next.status);
      if (next.failover !== undefined) setOrDelete(p, 'failover', next.failover ? 'yes' : undefined);
    });
  const agents = useAgents();
  const runs = usePaged({
    queryKey: ['runs', 'list', status ?? 'all', failover],
    page: (cursor) =>
      unwrap(
        api.GET('/v1/runs', {
          params: {
            query: {
              limit: 100,
              ...(cursor ? { cursor } : {}),
              ...(status ? { status } : {}),
              ...(failover ? { had_failover: true } : {}),
            },
          },
        }),
      ),
    refetchInterval: 5_000,
  });
  const agentName = (id: string) => agents.data?.data.find((a) => a.id === id)?.name ?? id;
  return (
    <Page title="Runs">
      <p className="muted">
        A run is the gateway's record of one piece of work: every model call, tool cost and sandbox interval
        it was charged, under the policy it started with.
      </p>
      <Section
        title="Recent runs"
        actions={
          <div className="filter">
            <SelectField
              label="Status"
              options={[
                { value: '', label: 'Any' },
                ...STATUSES.map((s) => ({ value: s, label: s.replace('_', ' ') })),
              ]}
              value={status ?? ''}
              onChange={(e) => filter({ status: e.target.value })}
            />
            <SelectField
              label="Failover"
              options={[
                { value: '', label: 'Any' },
                { value: 'yes', label: 'Failed over' },
              ]}
              value={failover ? 'yes' : ''}
              onChange={(e) => filter({ failover: e.target.value === 'yes' })}
            />
          </div>
        }
      >
        <DataTable
          list={runs}
          what="runs"
          rowKey={(r) => r.id}
          empty={
            <Empty
              title={
                status || failover
                  ? `No ${status ? `${status.replace('_', ' ')} ` : ''}runs${failover ? ' that failed over' : ''}.`
                  : 'No runs yet.'
              }
            >
              {status || failover
                ? 'Choose another filter.'
                : 'A task, a conversation or a playbook starts one: submit a task.'}
            </Empty>
          }
          columns={[
            { header: 'Run', cell: (r) => <Link to={`/runs/${r.id}`}>{r.name ?? r.id}</Link>, wrap: true },
            { header: 'Agent', cell: (r) => agentName(r.agent_id) },
            { header: 'Status', cell: (r) => <Badge status={r.status} /> },
            { header: 'Model', cell: (r) => r.primary_model ?? '—' },
            { header: 'Cost', cell: (r) => usd(r.cost_usd) },
            { header: 'Notes', cell: (r) => <RunNotes run={r} /> },
            { header: 'Started', cell: (r) => when(r.started_at) },
          ]}
        />
      </Section>
    </Page>
  );
}

export function RunPage() {
  const { id } = useParams();
  const path = { params: { path: { id: id! } } };
  const run = useQuery({
    queryKey: ['runs', id],
    queryFn: () => unwrap(api.GET('/v1/runs/{id}', path)),
    refetchInterval: (query) => (query.state.data?.status === 'running' ? 3_000 : false),
  });
  const steps = useQuery({
    queryKey: ['runs', id, 'steps'],
    queryFn: () =>
      unwrap(api.GET('/v1/runs/{id}/steps', { params: { ...path.params, query: { limit: 200 } } })),
  });
  const ledger = useQuery({
    queryKey: ['runs', id, 'ledger'],
    queryFn: () =>
      unwrap(api.GET('/v1/runs/{id}/ledger', { params: { ...path.params, query: { limit: 200 } } })),
  });
  if (run.isPending) return <Loading what="the run" />;
  if (run.isError)
    return (
      <Page title="Run">
        <ErrorNote error={run.error} />
        <Link to="/runs">Back to the runs</Link>
      </Page>
    );
  const r = run.data;
  return (
    <Page title={r.name ?? `Run ${r.id}`}>
      <div className="status-line">
        <Badge status={r.status} />
        <span className="muted">
          policy {r.policy_name}
          {r.ended_reason ? ` · ${r.ended_reason}` : ''}
        </span>
      </div>
      <div className="stats">
        <Stat label="Cost" value={usd(r.cost_usd)} hint={`of which sandbox ${usd(r.sandbox_cost_usd)}`} />
        <Stat label="Model" value={r.primary_model ?? '—'} />
        <Stat label="Started" value={when(r.started_at)} />
        <Stat label="Ended" value={when(r.ended_at)} />
      </div>
      <Section title="Steps">
        <DataTable
          list={steps}
          what="steps"
          rowKey={(s) => s.id}
          empty={
            <Empty title="No steps yet.">Each model call, tool cost and sandbox interval is a step.</Empty>
          }
          columns={[
            { header: 'Type', cell: (s) => s.type.replace(/_/g, ' ') },
            {
              header: 'Status',
              cell: (s) => <Badge status={s.status === 'success' ? 'completed' : s.status} />,
            },
            {
              header: 'Model',
              cell: (s) => (
                <>
                  {s.model ?? s.name ?? '—'}
                  {s.provider ? <span className="muted"> · {s.provider}</span> : null}
                  {s.routed_from ? <span className="muted"> (asked for {s.routed_from})</span> : null}
                </>
              ),
              wrap: true,
            },
            {
              header: 'Tokens',
              cell: (s) => (s.type === 'llm_call' ? `${s.tokens.input} in / ${s.tokens.output} out` : '—'),
            },
            { header: 'Latency', cell: (s) => (s.latency_ms === null ? '—' : `${s.latency_ms} ms`) },
            { header: 'Cost', cell: (s) => usd(s.cost_usd) },
            { header: 'Error', cell: (s) => s.error_message ?? '', wrap: true },
            { header: 'Failover', cell: (s) => <Failover step={s} />, wrap: true },
          ]}
        />
      </Section>
      <Section title="Ledger">
        <DataTable
          list={ledger}
          what="the ledger"
          rowKey={(e) => e.id}
          empty={<Empty title="Nothing charged yet.">A charged step writes one entry here.</Empty>}
          columns={[
            { header: 'Kind', cell: (e) => e.kind },
            {
              header: 'What',
              cell: (e) =>
                e.sandbox
                  ? `${e.sandbox.seconds} s of ${e.sandbox.capsule_id}`
                  : `${e.model ?? '—'}${e.tokens ? ` · ${e.tokens.input} in / ${e.tokens.output} out` : ''}`,
              wrap: true,
            },
            { header: 'Cost', cell: (e) => usd(e.cost_usd) },
            { header: 'When', cell: (e) => when(e.created_at) },
          ]}
        />
      </Section>
      <dl className="facts">
        <dt>Run</dt>
        <dd>
          <code>{r.id}</code>
        </dd>
        <dt>Started by</dt>
        <dd>{r.creation_method}</dd>
      </dl>
    </Page>
  );
}

type RunRow = { has_governance_block: boolean; had_failover: boolean };
type StepRow = { failover_attempts: number; failover_context?: unknown };

/** What sets a run apart in the list: a governance block, a failover. */
function RunNotes(props: { run: RunRow }) {
  const notes = [
    ...(props.run.has_governance_block ? ['blocked'] : []),
    ...(props.run.had_failover ? ['failover'] : []),
  ];
  return notes.length === 0 ? null : <span className="muted">{notes.join(', ')}</span>;
}

interface Attempted {
  provider: string;
  status: number | null;
  error: string;
}

/** A step that needed other providers first: how many failed, and for a transition, which and why. */
function Failover(props: { step: StepRow }) {
  const s = props.step;
  if (s.failover_attempts === 0) return null;
  const context = s.failover_context as { attempted?: Attempted[] } | null;
  const tried = context?.attempted ?? [];
  const summary = `after ${s.failover_attempts} failed attempt${s.failover_attempts === 1 ? '' : 's'}`;
  if (tried.length === 0) return <span className="muted">{summary}</span>;
  return (
    <details>
      <summary>{summary}</summary>
      <p className="failed-attempts">
        {tried.map((a) => `${a.provider}: ${a.status ?? 'no answer'} ${a.error}`).join('; ')}
      </p>
    </details>
  );
}
