import { useQuery } from '@tanstack/react-query';
import { type FormEvent, useState } from 'react';
import { Link, useParams, useSearchParams } from 'react-router';
import { api, unwrap, when } from '../api.ts';
import {
  Badge,
  Button,
  ButtonLink,
  DataTable,
  Empty,
  ErrorNote,
  Json,
  Loading,
  Page,
  Section,
  SelectField,
  ShownValue,
} from '../ui.tsx';
import './agents-extra.css';
import { useAgent } from './agents.tsx';

type Version = Awaited<ReturnType<typeof listVersions>>['data'][number];

function listVersions(id: string) {
  return unwrap(api.GET('/v1/agents/{id}/versions', { params: { path: { id }, query: { limit: 200 } } }));
}

/** A version number from the address, if it is one. */
function versionParam(text: string | null): number | undefined {
  const n = Number(text);
  return Number.isInteger(n) && n > 0 ? n : undefined;
}

/**
 * An agent's definition versions (each change to what it runs is a new one;
 * a task runs the version current when it was submitted), and what changed
 * between two of them (`?from=&to=` in the address).
 */
export function AgentVersionsPage() {
  const { id } = useParams();
  const agent = useAgent(id);
  const [params, setParams] = useSearchParams();
  const from = versionParam(params.get('from'));
  const to = versionParam(params.get('to'));
  const versions = useQuery({ queryKey: ['agents', id, 'versions'], queryFn: () => listVersions(id!) });
  const compare = (a: number, b: number) => setParams({ from: String(a), to: String(b) });
  if (agent.isPending) return <Loading what="the agent" />;
  if (agent.isError) return <ErrorNote error={agent.error} />;
  const current = agent.data.version;
  return (
    <Page
      title={`Versions of ${agent.data.name}`}
      actions={<ButtonLink to={`/agents/${agent.data.id}`}>Back to the agent</ButtonLink>}
    >
      <p className="muted lead">
        A change to what the agent runs (model, prompt, tools, limits, environment…) makes a new version; a
        task runs the version that was current when it was submitted. Name, policy and provider keys change in
        place.
      </p>
      {from !== undefined && to !== undefined ? <Diff agentId={agent.data.id} from={from} to={to} /> : null}
      <Section title="Versions">
        {versions.data && versions.data.data.length > 1 ? (
          <CompareForm
            versions={versions.data.data.map((v) => v.version)}
            from={from ?? current - 1}
            to={to ?? current}
            onCompare={compare}
          />
        ) : null}
        <DataTable
          list={versions}
          what="versions"
          rowKey={(v) => String(v.version)}
          empty={<Empty title="No versions.">Save the agent once to make its first version.</Empty>}
          columns={[
            {
              header: 'Version',
              cell: (v) => (
                <>
                  {v.version} {v.version === current ? <Badge status="current" /> : null}
                </>
              ),
            },
            { header: 'Model', cell: (v) => v.model ?? 'server default' },
            { header: 'Tools', cell: (v) => v.tools.join(', '), wrap: true },
            { header: 'Environment', cell: (v) => `${v.environment_id} v${v.environment_version}` },
            { header: 'Created', cell: (v) => when(v.created_at) },
            {
              header: 'Details',
              cell: (v) => <VersionDetails version={v} onCompare={compare} />,
            },
          ]}
        />
      </Section>
    </Page>
  );
}

function VersionDetails(props: { version: Version; onCompare: (from: number, to: number) => void }) {
  const v = props.version;
  return (
    <div className="actions">
      {v.version > 1 ? (
        <Button
          aria-label={`Compare version ${v.version} with version ${v.version - 1}`}
          onClick={() => props.onCompare(v.version - 1, v.version)}
        >
          Compare
        </Button>
      ) : null}
      <details>
        <summary>Definition of version {v.version}</summary>
        <Json value={v} />
      </details>
    </div>
  );
}

function CompareForm(props: {
  versions: number[];
  from: number;
  to: number;
  onCompare: (from: number, to: number) => void;
}) {
  const [from, setFrom] = useState(String(props.from));
  const [to, setTo] = useState(String(props.to));
  const options = props.versions.map((n) => ({ value: String(n), label: `version ${n}` }));
  const submit = (e: FormEvent) => {
    e.preventDefault();
    props.onCompare(Number(from), Number(to));
  };
  return (
    <form className="filter-row" onSubmit={submit}>
      <SelectField label="From" options={options} value={from} onChange={(e) => setFrom(e.target.value)} />
      <SelectField label="To" options={options} value={to} onChange={(e) => setTo(e.target.value)} />
      <Button type="submit">Compare</Button>
    </form>
  );
}

function Diff(props: { agentId: string; from: number; to: number }) {
  const diff = useQuery({
    queryKey: ['agents', props.agentId, 'diff', props.from, props.to],
    queryFn: () =>
      unwrap(
        api.GET('/v1/agents/{id}/versions/diff', {
          params: { path: { id: props.agentId }, query: { from: String(props.from), to: String(props.to) } },
        }),
      ),
  });
  const rows = diff.data ? { data: diff.data.changes } : undefined;
  return (
    <Section title={`Changes from version ${props.from} to version ${props.to}`}>
      <DataTable
        list={{ isPending: diff.isPending, error: diff.error, data: rows }}
        what="the changes"
        rowKey={(c) => c.field}
        empty={
          <Empty title="No differences.">
            These two versions run the same definition. Pick two others above, or see{' '}
            <Link to={`/agents/${props.agentId}`}>the agent</Link>.
          </Empty>
        }
        columns={[
          { header: 'Field', cell: (c) => <code>{c.field}</code> },
          { header: `Version ${props.from}`, cell: (c) => <ShownValue value={c.from} />, wrap: true },
          { header: `Version ${props.to}`, cell: (c) => <ShownValue value={c.to} />, wrap: true },
        ]}
      />
    </Section>
  );
}
