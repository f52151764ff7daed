import { useQuery } from '@tanstack/react-query';
import { useParams } from 'react-router';
import { api, unwrap, when } from '../api.ts';
import { useMe } from '../shell.tsx';
import { ButtonLink, DataTable, Empty, Json, NotLoaded, Page, Section, ShownValue } from '../ui.tsx';

type Version = Awaited<ReturnType<typeof listVersions>>['data'][number];
interface Change {
  field: string;
  before: unknown;
  after: unknown;
}

function listVersions(id: string) {
  return unwrap(api.GET('/v1/policies/{id}/versions', { params: { path: { id }, query: { limit: 200 } } }));
}

const isObject = (v: unknown): v is Record<string, unknown> =>
  v !== null && typeof v === 'object' && !Array.isArray(v);

/**
 * What changed between two snapshots, field by field: down into objects
 * (budget.hard_limit_usd), lists and values whole.
 */
export function changesBetween(before: unknown, after: unknown, field = ''): Change[] {
  if (isObject(before) && isObject(after)) {
    const keys = [...new Set([...Object.keys(before), ...Object.keys(after)])].sort();
    return keys.flatMap((k) => changesBetween(before[k], after[k], field ? `${field}.${k}` : k));
  }
  return JSON.stringify(before) === JSON.stringify(after) ? [] : [{ field, before, after }];
}

/**
 * A policy's versions, newest first: who changed it, when, and each field's
 * value before and after (version 1 is its creation; a deletion is the last).
 */
export function PolicyHistoryPage() {
  const { id } = useParams();
  const versions = useQuery({ queryKey: ['policies', id, 'versions'], queryFn: () => listVersions(id!) });
  if (!versions.isSuccess)
    return (
      <NotLoaded
        query={versions}
        what="the policy's history"
        title="Policy history"
        back={{ to: '/policies', label: 'Back to the policies' }}
      />
    );
  const list = versions.data.data;
  const last = list.at(-1);
  const deleted = last?.changed_fields.includes('_deleted') ?? false;
  const name = typeof last?.snapshot['name'] === 'string' ? last.snapshot['name'] : id;
  return (
    <Page
      title={`History of ${name}`}
      actions={deleted ? null : <ButtonLink to={`/policies/${id}`}>Back to the policy</ButtonLink>}
    >
      <p className="muted lead">
        Every change to a policy is a new version, kept even after the policy is deleted. A run is governed by
        the policy as it is when each call is made.
      </p>
      {list.length === 0 ? (
        <Empty title="No versions.">A policy has its first version when it is created.</Empty>
      ) : null}
      {list
        .map((version, i) => <VersionCard key={version.id} version={version} previous={list[i - 1]} />)
        .reverse()}
    </Page>
  );
}

function VersionCard(props: { version: Version; previous: Version | undefined }) {
  const v = props.version;
  const created = v.changed_fields.includes('_created');
  const deleted = v.changed_fields.includes('_deleted');
  const changes =
    props.previous && !created && !deleted ? changesBetween(props.previous.snapshot, v.snapshot) : [];
  return (
    <Section title={`Version ${v.version}${created ? ': created' : ''}${deleted ? ': deleted' : ''}`}>
      <p className="muted">
        {when(v.created_at)} by <Author id={v.changed_by} />
        {created || deleted ? null : ` · changed ${v.changed_fields.join(', ')}`}
      </p>
      {created || deleted ? (
        <details>
          <summary>The policy as {created ? 'created' : 'it was deleted'}</summary>
          <Json value={v.snapshot} />
        </details>
      ) : (
        <DataTable
          list={{ isPending: false, error: null, data: { data: changes } }}
          what="changes"
          rowKey={(c) => c.field}
          empty={<p className="muted">Saved with no change to its fields.</p>}
          columns={[
            { header: 'Field', cell: (c) => <code>{c.field}</code> },
            { header: `Version ${v.version - 1}`, cell: (c) => <ShownValue value={c.before} />, wrap: true },
            { header: `Version ${v.version}`, cell: (c) => <ShownValue value={c.after} />, wrap: true },
          ]}
        />
      )}
    </Section>
  );
}

/** Who made a change: you, an API key, or the account's id. */
function Author(props: { id: string | null }) {
  const me = useMe();
  if (props.id === null) return <>someone unknown</>;
  if (me.data && 'user' in me.data && props.id === me.data.user.id) return <>you</>;
  if (props.id.startsWith('api_key:'))
    return (
      <>
        the API key <code>{props.id.slice(8)}</code>
      </>
    );
  return <code>{props.id}</code>;
}
