import { useMutation, useQuery, useQueryClient } from '@tanstack/react-query';
import { Cron } from 'croner';
import { type FormEvent, useState } from 'react';
import { Link, useNavigate } from 'react-router';
import { api, unwrap, usd, when } from '../api.ts';
import { useRoutedItem } from '../routed.ts';
import {
  Badge,
  Button,
  ButtonLink,
  ConfirmButton,
  DataTable,
  Empty,
  ErrorNote,
  Loading,
  Page,
  Section,
  SelectField,
  ShownOnce,
  TextArea,
  TextField,
} from '../ui.tsx';
import { useAgents } from './agents.tsx';
import './pages-extra.css';

type Trigger = 'cron' | 'interval' | 'manual' | 'webhook';

function usePlaybooks() {
  return useQuery({
    queryKey: ['playbooks'],
    queryFn: () => unwrap(api.GET('/v1/playbooks', { params: { query: { limit: 200 } } })),
  });
}

function describeTiming(p: { trigger?: string; schedule: string | null; interval_seconds: number | null }) {
  if (p.schedule) return `cron ${p.schedule}`;
  if (p.interval_seconds) return `every ${p.interval_seconds} s`;
  return p.trigger ?? 'by hand';
}

export function PlaybooksPage() {
  const playbooks = usePlaybooks();
  const agents = useAgents();
  const agentName = (id: string) => agents.data?.data.find((a) => a.id === id)?.name ?? id;
  return (
    <Page title="Playbooks" actions={<ButtonLink to="/playbooks/new">New playbook</ButtonLink>}>
      <Section title="Playbooks">
        <DataTable
          list={playbooks}
          what="playbooks"
          rowKey={(p) => p.id}
          empty={
            <Empty
              title="No playbooks yet."
              action={
                <ButtonLink to="/playbooks/new" variant="primary">
                  New playbook
                </ButtonLink>
              }
            >
              A playbook gives an agent one prompt again and again: on a schedule, by hand or from a webhook.
            </Empty>
          }
          columns={[
            { header: 'Name', cell: (p) => <Link to={`/playbooks/${p.id}`}>{p.name}</Link>, wrap: true },
            { header: 'Agent', cell: (p) => agentName(p.agent_id) },
            { header: 'Timing', cell: (p) => describeTiming(p) },
            { header: 'Enabled', cell: (p) => (p.enabled ? 'yes' : 'no') },
            { header: 'Next run', cell: (p) => when(p.next_run_at) },
            { header: 'Last run', cell: (p) => when(p.last_run_at) },
          ]}
        />
      </Section>
    </Page>
  );
}

/** The next five times a 5-field cron expression fires in its zone, as the server's croner reads it. */
export function nextRuns(schedule: string, timezone: string): { times: Date[] } | { error: string } {
  const fields = schedule.trim().split(/\s+/);
  if (fields.length !== 5)
    return { error: `A schedule has 5 fields (minute hour day month weekday), not ${fields.length}.` };
  try {
    const cron = new Cron(schedule.trim(), { timezone, paused: true, mode: '5-part' } as never);
    return { times: cron.nextRuns(5) };
  } catch (err) {
    return { error: (err as Error).message };
  }
}

function NextRuns(props: { schedule: string; timezone: string }) {
  const next = nextRuns(props.schedule, props.timezone);
  if ('error' in next) return <p className="hint bad">{next.error}</p>;
  return (
    <div className="field" aria-live="polite">
      <p className="hint">Next five runs (in your browser's time):</p>
      <ol className="runs-next">
        {next.times.map((t) => (
          <li key={t.toISOString()}>{t.toLocaleString()}</li>
        ))}
      </ol>
    </div>
  );
}

type Playbook = Awaited<ReturnType<typeof getPlaybook>>;
const getPlaybook = (id: string) => unwrap(api.GET('/v1/playbooks/{id}', { params: { path: { id } } }));

export function PlaybookFormPage() {
  const { id, query: playbook } = useRoutedItem('playbooks', getPlaybook);
  if (id === undefined) return <PlaybookForm />;
  if (playbook.isPending) return <Loading what="the playbook" />;
  if (playbook.isError)
    return (
      <Page title="Playbook">
        <ErrorNote error={playbook.error} />
        <Link to="/playbooks">Back to the playbooks</Link>
      </Page>
    );
  return <PlaybookForm existing={playbook.data} key={playbook.data.updated_at} />;
}

function PlaybookForm(props: { existing?: Playbook }) {
  const p = props.existing;
  const client = useQueryClient();
  const navigate = useNavigate();
  const agents = useAgents();
  const active = agents.data?.data.filter((a) => a.status === 'active') ?? [];
  const [agentId, setAgentId] = useState(p?.agent_id ?? '');
  const [name, setName] = useState(p?.name ?? '');
  const [prompt, setPrompt] = useState(p?.prompt ?? '');
  const [trigger, setTrigger] = useState<Trigger>(
    p
      ? p.schedule
        ? 'cron'
        : p.interval_seconds
          ? 'interval'
          : p.webhook_token_prefix
            ? 'webhook'
            : 'manual'
      : 'cron',
  );
  const [schedule, setSchedule] = useState(p?.schedule ?? '0 9 * * 1-5');
  const [timezone, setTimezone] = useState(p?.timezone ?? 'UTC');
  const [interval, setInterval] = useState(String(p?.interval_seconds ?? 3600));
  const [enabled, setEnabled] = useState(p?.enabled ?? false);
  const [maxChains, setMaxChains] = useState(String(p?.chain_config.max_chains ?? 3));
  const [budget, setBudget] = useState(String(p?.chain_config.budget_cap_usd ?? 5));
  const [token, setToken] = useState<string | null>(null);
  const chosenAgent = agentId || active[0]?.id || '';
  const body = {
    name,
    prompt,
    trigger,
    schedule: trigger === 'cron' ? schedule : null,
    timezone,
    interval_seconds: trigger === 'interval' ? Number(interval) : null,
    enabled,
    chain_config: { max_chains: Number(maxChains), budget_cap_usd: Number(budget) },
  };
  const save = useMutation({
    mutationFn: () =>
      p
        ? unwrap(api.PATCH('/v1/playbooks/{id}', { params: { path: { id: p.id } }, body }))
        : unwrap(api.POST('/v1/playbooks', { body: { ...body, agent_id: chosenAgent } })),
    onSuccess: (saved) => {
      void client.invalidateQueries({ queryKey: ['playbooks'] });
      const shown = (saved as { webhook_token?: string }).webhook_token;
      if (shown) setToken(shown);
      else if (!p) void navigate(`/playbooks/${saved.id}`);
    },
  });
  const remove = useMutation({
    mutationFn: () => unwrap(api.DELETE('/v1/playbooks/{id}', { params: { path: { id: p!.id } } })),
    onSuccess: () => {
      void client.invalidateQueries({ queryKey: ['playbooks'] });
      void navigate('/playbooks');
    },
  });
  const onSubmit = (e: FormEvent) => {
    e.preventDefault();
    save.mutate();
  };
  if (!p && agents.data && active.length === 0)
    return (
      <Page title="New playbook">
        <Empty title="No agent to run it." action={<ButtonLink to="/agents/new">Create an agent</ButtonLink>}>
          A playbook gives an agent a prompt on a schedule. Create an agent first.
        </Empty>
      </Page>
    );
  return (
    <Page
      title={p ? p.name : 'New playbook'}
      actions={
        p ? (
          <>
            <FireNow playbookId={p.id} />
            <ConfirmButton
              label="Delete"
              name={p.name}
              question={`Delete the playbook ${p.name}? A run in flight is cancelled, and its runs go too.`}
              busy={remove.isPending}
              onConfirm={() => remove.mutate()}
            />
          </>
        ) : null
      }
    >
      {token ? (
        <ShownOnce
          label="The webhook token"
          value={token}
          onDone={() => (p ? setToken(null) : void navigate('/playbooks'))}
        />
      ) : null}
      <ErrorNote error={remove.error} />
      <Section title={p ? 'Edit' : 'Playbook'}>
        <form onSubmit={onSubmit}>
          {p ? null : (
            <SelectField
              label="Agent"
              options={active.map((a) => ({ value: a.id, label: `${a.name} (${a.model})` }))}
              value={chosenAgent}
              onChange={(e) => setAgentId(e.target.value)}
            />
          )}
          <TextField label="Name" required value={name} onChange={(e) => setName(e.target.value)} />
          <TextArea
            label="Prompt"
            required
            hint="The first message of every run."
            value={prompt}
            onChange={(e) => setPrompt(e.target.value)}
          />
          <SelectField
            label="Trigger"
            options={[
              { value: 'cron', label: 'On a schedule (cron)' },
              { value: 'interval', label: 'Every N seconds' },
              { value: 'manual', label: 'By hand only' },
              { value: 'webhook', label: 'From a webhook' },
            ]}
            value={trigger}
            onChange={(e) => setTrigger(e.target.value as Trigger)}
          />
          {trigger === 'cron' ? (
            <>
              <TextField
                label="Schedule"
                hint="5 fields: minute hour day-of-month month day-of-week, e.g. 0 9 * * 1-5"
                value={schedule}
                onChange={(e) => setSchedule(e.target.value)}
              />
              <TextField label="Time zone" value={timezone} onChange={(e) => setTimezone(e.target.value)} />
              <NextRuns schedule={schedule} timezone={timezone} />
            </>
          ) : null}
          {trigger === 'interval' ? (
            <TextField
              label="Every (seconds)"
              type="number"
              min={60}
              value={interval}
              onChange={(e) => setInterval(e.target.value)}
            />
          ) : null}
          {trigger === 'cron' || trigger === 'interval' ? (
            <label className="check">
              <input type="checkbox" checked={enabled} onChange={(e) => setEnabled(e.target.checked)} />{' '}
              Enabled (the scheduler fires it)
            </label>
          ) : null}
          <div className="grid-form">
            <TextField
              label="Chains per run"
              type="number"
              min={1}
              max={20}
              value={maxChains}
              onChange={(e) => setMaxChains(e.target.value)}
            />
            <TextField
              label="Budget per run (USD)"
              type="number"
              step="0.1"
              min={0.1}
              value={budget}
              onChange={(e) => setBudget(e.target.value)}
            />
          </div>
          <ErrorNote error={save.error} />
          <Button type="submit" variant="primary" busy={save.isPending}>
            {p ? 'Save playbook' : 'Create playbook'}
          </Button>
        </form>
      </Section>
      {p ? <Runs playbookId={p.id} /> : null}
    </Page>
  );
}

function FireNow(props: { playbookId: string }) {
  const client = useQueryClient();
  const fire = useMutation({
    mutationFn: () =>
      unwrap(api.POST('/v1/playbooks/{id}/run', { params: { path: { id: props.playbookId } } })),
    onSuccess: () => client.invalidateQueries({ queryKey: ['playbook-runs', props.playbookId] }),
  });
  return (
    <>
      <ErrorNote error={fire.error} />
      <Button variant="primary" busy={fire.isPending} onClick={() => fire.mutate()}>
        Fire now
      </Button>
    </>
  );
}

const ACTIVE_RUN = new Set(['queued', 'running']);

function Runs(props: { playbookId: string }) {
  const runs = useQuery({
    queryKey: ['playbook-runs', props.playbookId],
    queryFn: () =>
      unwrap(
        api.GET('/v1/playbooks/{id}/runs', {
          params: { path: { id: props.playbookId }, query: { limit: 50 } },
        }),
      ),
    // A run in flight moves on its own.
    refetchInterval: (query) =>
      query.state.data?.data.some((r) => ACTIVE_RUN.has(r.status)) ? 2_000 : 10_000,
  });
  return (
    <Section title="Runs">
      <DataTable
        list={runs}
        what="runs"
        rowKey={(r) => r.id}
        empty={<Empty title="No runs yet.">Fire it now above, or enable its schedule.</Empty>}
        columns={[
          {
            header: 'Run',
            cell: (r: RunRow) =>
              r.workspace_id ? (
                <Link to={`/workspaces/${r.workspace_id}`}>{when(r.created_at)}</Link>
              ) : (
                when(r.created_at)
              ),
          },
          { header: 'Fired by', cell: (r) => r.fired_by },
          { header: 'Status', cell: (r) => <Badge status={r.status} /> },
          { header: 'Decision', cell: (r) => r.decision ?? '—' },
          { header: 'Chains', cell: (r) => r.chains_used },
          { header: 'Cost', cell: (r) => usd(r.cost_usd) },
          { header: 'Error', cell: (r) => r.error?.message ?? '', wrap: true },
        ]}
      />
    </Section>
  );
}

type RunRow = Awaited<ReturnType<typeof listRuns>>['data'][number];
const listRuns = (id: string) => unwrap(api.GET('/v1/playbooks/{id}/runs', { params: { path: { id } } }));
