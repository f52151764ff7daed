import { useMutation, useQuery, useQueryClient } from '@tanstack/react-query';
import { type FormEvent, type ReactNode, useState } from 'react';
import { useSearchParams } from 'react-router';
import { api, unwrap, when } from '../api.ts';
import { useMe } from '../shell.tsx';
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
import './pages-extra.css';

// The platform admin's pages (/v1/admin/…): every account and every team of the
// server. The API answers anyone else 403 platform_admin_required, shown as is.

const STATUSES = ['active', 'deactivated', 'deleted'] as const;
type AccountStatus = (typeof STATUSES)[number];

/** The filters of a page, kept in its address; a value of '' drops the filter. */
function useFilters() {
  const [params, setParams] = useSearchParams();
  const set = (next: Record<string, string>) => {
    const merged = { ...Object.fromEntries(params), ...next };
    setParams(Object.fromEntries(Object.entries(merged).filter(([, v]) => v !== '')));
  };
  return { get: (name: string) => params.get(name) ?? '', set };
}

/** A search box applied on Enter, beside the page's other filters. */
function SearchForm(props: { label: string; placeholder: string; children?: ReactNode }) {
  const filters = useFilters();
  const [text, setText] = useState(filters.get('q'));
  const submit = (e: FormEvent) => {
    e.preventDefault();
    filters.set({ q: text.trim() });
  };
  return (
    <form className="file-actions" onSubmit={submit}>
      <TextField
        label={props.label}
        type="search"
        placeholder={props.placeholder}
        value={text}
        onChange={(e) => setText(e.target.value)}
      />
      <Button type="submit">Search</Button>
      {props.children}
    </form>
  );
}

/** When the list is longer than one page: say so rather than show a part as the whole. */
function MoreNote(props: { nextCursor: string | null | undefined }) {
  if (!props.nextCursor) return null;
  return <p className="hint">Only the first 200 are shown: narrow the search to find the rest.</p>;
}

export function AdminUsersPage() {
  const filters = useFilters();
  const me = useMe();
  const myId = me.data && 'user' in me.data ? me.data.user.id : undefined;
  const q = filters.get('q');
  const status = (STATUSES as readonly string[]).includes(filters.get('status'))
    ? (filters.get('status') as AccountStatus)
    : undefined;
  const admin = filters.get('admin');
  const users = useQuery({
    queryKey: ['admin-users', q, status ?? '', admin],
    queryFn: () =>
      unwrap(
        api.GET('/v1/admin/users', {
          params: {
            query: {
              limit: 200,
              ...(q ? { q } : {}),
              ...(status ? { status } : {}),
              ...(admin === 'true' || admin === 'false' ? { admin: admin === 'true' } : {}),
            },
          },
        }),
      ),
  });
  const client = useQueryClient();
  const change = useMutation({
    mutationFn: (change: { id: string; what: 'active' | 'admin' | 'delete'; on?: boolean }) => {
      const path = { params: { path: { id: change.id } } };
      if (change.what === 'delete') return unwrap(api.DELETE('/v1/admin/users/{id}', path));
      if (change.what === 'active')
        return unwrap(
          api.PUT('/v1/admin/users/{id}/active', { ...path, body: { active: change.on === true } }),
        );
      return unwrap(api.PUT('/v1/admin/users/{id}/admin', { ...path, body: { admin: change.on === true } }));
    },
    onSuccess: () => client.invalidateQueries({ queryKey: ['admin-users'] }),
  });
  const busy = (id: string, what: string) =>
    change.isPending && change.variables?.id === id && change.variables.what === what;
  const filtered = q !== '' || status !== undefined || admin !== '';
  return (
    <Page title="Users">
      <p className="muted lead">
        Every account on this server. Deactivating one ends its sessions and stops the API keys it created
        until it is reactivated; deleting one erases its personal data for good.
      </p>
      <Section
        title="Accounts"
        actions={
          <SearchForm label="Search" placeholder="e-mail or name">
            <SelectField
              label="Status"
              options={[{ value: '', label: 'Any' }, ...STATUSES.map((s) => ({ value: s, label: s }))]}
              value={status ?? ''}
              onChange={(e) => filters.set({ status: e.target.value })}
            />
            <SelectField
              label="Who"
              options={[
                { value: '', label: 'Anyone' },
                { value: 'true', label: 'Platform admins' },
                { value: 'false', label: 'Everyone else' },
              ]}
              value={admin}
              onChange={(e) => filters.set({ admin: e.target.value })}
            />
          </SearchForm>
        }
      >
        <ErrorNote error={change.error} />
        <DataTable
          list={users}
          what="accounts"
          rowKey={(u) => u.id}
          empty={
            <Empty title={filtered ? 'No account matches.' : 'No accounts yet.'}>
              {filtered
                ? 'Change the search or the filters above.'
                : 'People sign up, or join by invitation.'}
            </Empty>
          }
          columns={[
            { header: 'Name', cell: (u) => (u.id === myId ? `${u.name} (you)` : u.name) },
            { header: 'Email', cell: (u) => u.email, wrap: true },
            { header: 'Status', cell: (u) => <Badge status={u.status} /> },
            { header: 'Platform admin', cell: (u) => (u.is_admin ? 'yes' : 'no') },
            { header: 'Created', cell: (u) => when(u.created_at) },
            {
              header: 'Actions',
              quietHeader: true,
              cell: (u) =>
                u.status === 'deleted' ? null : (
                  <div className="actions">
                    {u.id === myId ? null : u.status === 'active' ? (
                      <ConfirmButton
                        label="Deactivate"
                        name={u.email}
                        question={`Deactivate ${u.email}? Their sessions end and the API keys they created stop until you reactivate them.`}
                        busy={busy(u.id, 'active')}
                        onConfirm={() => change.mutate({ id: u.id, what: 'active', on: false })}
                      />
                    ) : (
                      <Button
                        aria-label={`Reactivate ${u.email}`}
                        busy={busy(u.id, 'active')}
                        onClick={() => change.mutate({ id: u.id, what: 'active', on: true })}
                      >
                        Reactivate
                      </Button>
                    )}
                    <Button
                      aria-label={`${u.is_admin ? 'Remove admin from' : 'Make admin'} ${u.email}`}
                      busy={busy(u.id, 'admin')}
                      onClick={() => change.mutate({ id: u.id, what: 'admin', on: !u.is_admin })}
                    >
                      {u.is_admin ? 'Remove admin' : 'Make admin'}
                    </Button>
                    <ConfirmButton
                      label="Delete"
                      name={u.email}
                      question={`Delete ${u.email} for good? Their personal data is erased; this cannot be undone.`}
                      busy={busy(u.id, 'delete')}
                      onConfirm={() => change.mutate({ id: u.id, what: 'delete' })}
                    />
                  </div>
                ),
            },
          ]}
        />
        <MoreNote nextCursor={users.data?.next_cursor} />
      </Section>
    </Page>
  );
}

export function AdminTeamsPage() {
  const filters = useFilters();
  const q = filters.get('q');
  const teams = useQuery({
    queryKey: ['admin-teams', q],
    queryFn: () =>
      unwrap(api.GET('/v1/admin/teams', { params: { query: { limit: 200, ...(q ? { q } : {}) } } })),
  });
  return (
    <Page title="Teams">
      <p className="muted lead">
        Every team on this server, with its owner and limits. A team's limit on concurrent tasks counts the
        tasks running at once over all its agents; empty means no team limit.
      </p>
      <Section title="Teams" actions={<SearchForm label="Search" placeholder="name or slug" />}>
        <DataTable
          list={teams}
          what="teams"
          rowKey={(t) => t.id}
          empty={
            <Empty title={q ? 'No team matches.' : 'No teams yet.'}>
              {q ? 'Change the search above.' : 'Every account gets a team of its own when it signs up.'}
            </Empty>
          }
          columns={[
            { header: 'Name', cell: (t) => t.name },
            { header: 'Slug', cell: (t) => <code>{t.slug}</code> },
            { header: 'Members', cell: (t) => t.member_count },
            { header: 'Owner', cell: (t) => t.owner?.email ?? '—', wrap: true },
            {
              header: 'Max concurrent tasks',
              cell: (t) => (
                <TeamLimit key={t.updated_at} id={t.id} name={t.name} value={t.limits.max_concurrent_tasks} />
              ),
            },
            { header: 'Created', cell: (t) => when(t.created_at) },
          ]}
        />
        <MoreNote nextCursor={teams.data?.next_cursor} />
      </Section>
    </Page>
  );
}

/** A team's max_concurrent_tasks, edited in its row (empty: no limit). */
function TeamLimit(props: { id: string; name: string; value: number | null }) {
  const client = useQueryClient();
  const [text, setText] = useState(props.value === null ? '' : String(props.value));
  const save = useMutation({
    mutationFn: () =>
      unwrap(
        api.PATCH('/v1/admin/teams/{id}', {
          params: { path: { id: props.id } },
          body: { limits: { max_concurrent_tasks: text.trim() === '' ? null : Number(text) } },
        }),
      ),
    onSuccess: () => client.invalidateQueries({ queryKey: ['admin-teams'] }),
  });
  const submit = (e: FormEvent) => {
    e.preventDefault();
    save.mutate();
  };
  return (
    <form className="file-actions limit-form" onSubmit={submit}>
      <TextField
        label={`Max concurrent tasks of ${props.name}`}
        quietLabel
        type="number"
        min={1}
        step={1}
        placeholder="no limit"
        value={text}
        onChange={(e) => setText(e.target.value)}
      />
      <Button type="submit" aria-label={`Save the limit of ${props.name}`} busy={save.isPending}>
        Save
      </Button>
      <ErrorNote error={save.error} />
    </form>
  );
}
