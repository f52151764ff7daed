import { useMutation, useQuery, useQueryClient } from '@tanstack/react-query';
import { type FormEvent, useState } from 'react';
import { Link, useNavigate, useSearchParams } from 'react-router';
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
  Loading,
  Page,
  Section,
  TextArea,
  TextField,
} from '../ui.tsx';
import './agents-extra.css';

type Environment = Awaited<ReturnType<typeof getEnvironment>>;
type Version = Environment['current_version'];

const BUILDING = new Set(['queued', 'building']);

function getEnvironment(id: string) {
  return unwrap(api.GET('/v1/environments/{id}', { params: { path: { id } } }));
}

export function useEnvironments() {
  return useQuery({
    queryKey: ['environments'],
    queryFn: () => unwrap(api.GET('/v1/environments', { params: { query: { limit: 200 } } })),
  });
}

/** The choices of an environment field: the live environments, and the one already chosen if it is gone. */
export function environmentOptions(list: Array<{ id: string; name: string }> | undefined, chosen: string) {
  const options = (list ?? []).map((e) => ({ value: e.id, label: e.name }));
  return options.some((o) => o.value === chosen) ? options : [...options, { value: chosen, label: chosen }];
}

export function EnvironmentsPage() {
  const environments = useEnvironments();
  return (
    <Page
      title="Environments"
      actions={
        <ButtonLink to="/environments/new" variant="primary">
          New environment
        </ButtonLink>
      }
    >
      <p className="muted lead">
        An environment is what an agent's sandbox starts from: a base, packages, setup commands, variables and
        the hosts it may reach. Each change is a new version, built once; an agent pins the version it was
        given.
      </p>
      <Section title="Environments">
        <DataTable
          list={environments}
          what="environments"
          rowKey={(env) => env.id}
          empty={
            <Empty
              title="No environments."
              action={<ButtonLink to="/environments/new">Create an environment</ButtonLink>}
            >
              Create one with the packages your agents need, then choose it on an agent's page.
            </Empty>
          }
          columns={[
            { header: 'Name', cell: (env) => <Link to={`/environments/${env.id}`}>{env.name}</Link> },
            { header: 'Description', cell: (env) => env.description ?? '', wrap: true },
            { header: 'Owner', cell: (env) => (env.platform ? 'platform (read-only)' : 'team') },
            { header: 'Version', cell: (env) => env.current_version.version },
            { header: 'Build', cell: (env) => <Badge status={env.current_version.status} /> },
            { header: 'Updated', cell: (env) => when(env.updated_at) },
          ]}
        />
      </Section>
    </Page>
  );
}

export function EnvironmentPage() {
  const { id, query: env } = useRoutedItem('environments', getEnvironment, {
    // A build moves on its own.
    refetchInterval: (query) =>
      BUILDING.has(query.state.data?.current_version.status ?? '') ? 1_500 : false,
  });
  if (id === undefined)
    return (
      <Page title="New environment">
        <EnvironmentForm />
      </Page>
    );
  if (env.isPending) return <Loading what="the environment" />;
  if (env.isError) return <ErrorNote error={env.error} />;
  return <EnvironmentView env={env.data} />;
}

function EnvironmentView(props: { env: Environment }) {
  const env = props.env;
  const client = useQueryClient();
  const navigate = useNavigate();
  // After an archive only the list is fetched again: the environment's own query would answer 404.
  const done = async (to: string, archived: boolean) => {
    await client.invalidateQueries({ queryKey: ['environments'], exact: archived });
    void navigate(to);
  };
  const fork = useMutation({
    mutationFn: () =>
      unwrap(api.POST('/v1/environments/{id}/fork', { params: { path: { id: env.id } }, body: {} })),
    onSuccess: (copy) => done(`/environments/${copy.id}`, false),
  });
  const archive = useMutation({
    mutationFn: () => unwrap(api.DELETE('/v1/environments/{id}', { params: { path: { id: env.id } } })),
    onSuccess: () => done('/environments', true),
  });
  return (
    <Page
      title={`Environment ${env.name}`}
      actions={
        <>
          <Button busy={fork.isPending} onClick={() => fork.mutate()}>
            Fork
          </Button>
          {env.platform ? null : (
            <ConfirmButton
              label="Archive"
              name={env.name}
              question={`Archive ${env.name}? Agents that pin its versions keep them; no new agent can choose it.`}
              busy={archive.isPending}
              onConfirm={() => archive.mutate()}
            />
          )}
        </>
      }
    >
      <ErrorNote error={fork.error ?? archive.error} />
      {env.description ? <p className="muted lead">{env.description}</p> : null}
      <Section title={`Version ${env.current_version.version} (current)`}>
        <BuildStatus version={env.current_version} />
      </Section>
      {env.platform ? (
        <p className="note">A platform environment is read-only: fork it to make one of your own.</p>
      ) : (
        <Section title="Edit">
          <EnvironmentForm env={env} key={`${env.id}-${env.current_version.version}`} />
        </Section>
      )}
      <Versions env={env} />
    </Page>
  );
}

function BuildStatus(props: { version: Version }) {
  const v = props.version;
  return (
    <>
      <div className="status-line" role="status" aria-live="polite">
        <Badge status={v.status} />
        {BUILDING.has(v.status) ? <span className="spinner" aria-hidden="true" /> : null}
        <span className="muted">
          {v.status === 'ready' ? `template ${v.template}` : null}
          {BUILDING.has(v.status) ? 'building: a task needs a ready version' : null}
        </span>
      </div>
      {v.error ? <div className="note note-error">{v.error.message}</div> : null}
    </>
  );
}

function Versions(props: { env: Environment }) {
  const env = props.env;
  const [params, setParams] = useSearchParams();
  const shown = Number(params.get('version')) || env.current_version.version;
  const versions = useQuery({
    queryKey: ['environments', env.id, 'versions', env.current_version.status],
    queryFn: () =>
      unwrap(
        api.GET('/v1/environments/{id}/versions', {
          params: { path: { id: env.id }, query: { limit: 200 } },
        }),
      ),
  });
  return (
    <>
      <Section title="Versions">
        <DataTable
          list={versions}
          what="versions"
          rowKey={(v) => v.id}
          empty={<Empty title="No versions.">Save the environment to make its first version.</Empty>}
          columns={[
            { header: 'Version', cell: (v) => v.version },
            { header: 'Build', cell: (v) => <Badge status={v.status} /> },
            { header: 'Base', cell: (v) => v.base },
            {
              header: 'Packages',
              cell: (v) => [...v.pip_packages, ...v.npm_packages].join(', '),
              wrap: true,
            },
            { header: 'Setup', cell: (v) => `${v.setup_commands.length} commands` },
            { header: 'Built', cell: (v) => when(v.build_finished_at) },
            {
              header: 'Log',
              quietHeader: true,
              cell: (v) => (
                <Button
                  aria-label={`Build log of version ${v.version}`}
                  aria-pressed={v.version === shown}
                  onClick={() => setParams({ version: String(v.version) })}
                >
                  Build log
                </Button>
              ),
            },
          ]}
        />
      </Section>
      <BuildLog env={env} version={shown} />
    </>
  );
}

function BuildLog(props: { env: Environment; version: number }) {
  const building =
    props.version === props.env.current_version.version && BUILDING.has(props.env.current_version.status);
  const log = useQuery({
    queryKey: ['environments', props.env.id, 'log', props.version, building],
    queryFn: async () =>
      unwrap(
        api.GET('/v1/environments/{id}/versions/{n}/build-log', {
          params: { path: { id: props.env.id, n: props.version } },
          parseAs: 'text',
        }),
      ),
    // While it builds, each step's output is added as the step ends.
    refetchInterval: building ? 1_000 : false,
  });
  return (
    <Section title={`Build log of version ${props.version}`}>
      {log.isPending ? <Loading what="the build log" /> : null}
      <ErrorNote error={log.error} />
      {log.data ? <pre className="output build-log">{log.data}</pre> : null}
      {log.data === '' ? (
        <Empty title="No log.">
          {building
            ? 'Each step’s output shows here as the step ends.'
            : 'A platform environment is not built here; a version with nothing to install logs little.'}
        </Empty>
      ) : null}
    </Section>
  );
}

/** "KEY=value" lines → {KEY: "value"}. */
function parseVars(text: string): Record<string, string> {
  const vars: Record<string, string> = {};
  for (const line of text.split('\n')) {
    const at = line.indexOf('=');
    if (line.trim() === '') continue;
    if (at < 0) vars[line.trim()] = '';
    else vars[line.slice(0, at).trim()] = line.slice(at + 1);
  }
  return vars;
}

const lines = (text: string) =>
  text
    .split('\n')
    .map((l) => l.trim())
    .filter((l) => l !== '');

function EnvironmentForm(props: { env?: Environment }) {
  const existing = props.env;
  const v = existing?.current_version;
  const client = useQueryClient();
  const navigate = useNavigate();
  const [name, setName] = useState(existing?.name ?? '');
  const [description, setDescription] = useState(existing?.description ?? '');
  const [base, setBase] = useState(v?.base ?? 'minimal');
  const [setup, setSetup] = useState(v?.setup_commands.join('\n') ?? '');
  const [pip, setPip] = useState(v?.pip_packages.join(', ') ?? '');
  const [npm, setNpm] = useState(v?.npm_packages.join(', ') ?? '');
  const [vars, setVars] = useState(
    Object.entries(v?.env_vars ?? {})
      .map(([k, value]) => `${k}=${value}`)
      .join('\n'),
  );
  const [network, setNetwork] = useState(v?.network_allow.join(', ') ?? '');
  const save = useMutation({
    mutationFn: () => {
      const body = {
        name,
        description: description.trim() ? description : null,
        base: base.trim() || 'minimal',
        setup_commands: lines(setup),
        pip_packages: splitList(pip),
        npm_packages: splitList(npm),
        env_vars: parseVars(vars),
        network_allow: splitList(network),
      };
      return existing
        ? unwrap(api.PATCH('/v1/environments/{id}', { params: { path: { id: existing.id } }, body }))
        : unwrap(api.POST('/v1/environments', { body }));
    },
    onSuccess: async (saved) => {
      await client.invalidateQueries({ queryKey: ['environments'] });
      if (!existing) void navigate(`/environments/${saved.id}`);
    },
  });
  const submit = (e: FormEvent) => {
    e.preventDefault();
    save.mutate();
  };
  return (
    <form onSubmit={submit}>
      <div className="grid-form">
        <TextField label="Name" required value={name} onChange={(e) => setName(e.target.value)} />
        <TextField
          label="Base"
          hint="minimal (the platform's), or a template of your team."
          value={base}
          onChange={(e) => setBase(e.target.value)}
        />
        <TextField label="Description" value={description} onChange={(e) => setDescription(e.target.value)} />
        <TextField
          label="Hosts it may reach"
          placeholder="pypi.org, api.github.com"
          hint="Comma-separated. Empty: no network."
          value={network}
          onChange={(e) => setNetwork(e.target.value)}
        />
        <TextField
          label="pip packages"
          placeholder="requests==2.32.3, pandas"
          hint="Comma-separated, from the package index."
          value={pip}
          onChange={(e) => setPip(e.target.value)}
        />
        <TextField
          label="npm packages"
          placeholder="typescript@5"
          hint="Comma-separated."
          value={npm}
          onChange={(e) => setNpm(e.target.value)}
        />
      </div>
      <TextArea
        label="Setup commands"
        hint="One per line, run in order by bash in /workspace; the first that fails fails the build."
        value={setup}
        onChange={(e) => setSetup(e.target.value)}
      />
      <TextArea
        label="Variables"
        rows={3}
        hint="KEY=value, one per line. For secrets use Secrets instead: these are stored in plain text."
        value={vars}
        onChange={(e) => setVars(e.target.value)}
      />
      <ErrorNote error={save.error} />
      <div className="actions">
        <Button type="submit" variant="primary" busy={save.isPending}>
          {existing ? 'Save (builds a new version when what runs changed)' : 'Create and build'}
        </Button>
        {existing ? null : <ButtonLink to="/environments">Cancel</ButtonLink>}
      </div>
    </form>
  );
}
