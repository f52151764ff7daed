import { Link } from 'react-router';
import { api, unwrap, when } from '../api.ts';
import { useActorName } from '../names.ts';
import { usePaged } from '../paged.ts';
import { DataTable, Empty, Page, Section } from '../ui.tsx';

/** The dashboard page of a Paddock resource an activity line links to, when it has one. */
const PAGES: Record<string, string> = {
  task: '/tasks',
  run: '/runs',
  workspace: '/workspaces',
  agent: '/agents',
  policy: '/policies',
  playbook: '/playbooks',
  capsule: '/capsules',
};

export function ActivityPage() {
  const actorName = useActorName();
  const activity = usePaged({
    queryKey: ['activity', 'list'],
    page: (cursor) =>
      unwrap(api.GET('/v1/activity', { params: { query: { limit: 100, ...(cursor ? { cursor } : {}) } } })),
    refetchInterval: 10_000,
  });
  return (
    <Page title="Activity">
      <Section title="What happened">
        <DataTable
          list={activity}
          what="activity"
          rowKey={(a) => a.id}
          empty={
            <Empty title="Nothing has happened yet.">
              Each change in the team (an agent made, a task finished, a key revoked) shows here. Create an
              agent to begin.
            </Empty>
          }
          columns={[
            { header: 'When', cell: (a) => when(a.created_at) },
            { header: 'What', cell: (a) => a.summary, wrap: true },
            {
              header: 'Who',
              cell: (a) => actorName(a.actor_type, a.actor_id),
              wrap: true,
            },
            {
              header: 'About',
              cell: (a) => (
                <ul className="plain">
                  {a.resource_type && a.resource_id && PAGES[a.resource_type] ? (
                    <li>
                      <ActivityLink link={{ type: a.resource_type, id: a.resource_id }} />
                    </li>
                  ) : null}
                  {a.links.map((link) => (
                    <li key={`${link.type}:${link.id ?? link.url}`}>
                      <ActivityLink link={link} />
                    </li>
                  ))}
                </ul>
              ),
              wrap: true,
            },
          ]}
        />
      </Section>
    </Page>
  );
}

function ActivityLink(props: { link: { type: string; id?: string; title?: string; url?: string } }) {
  const { type, id, title, url } = props.link;
  const label = title ?? (type === 'url' ? url : `${type} ${id ?? ''}`);
  if (type === 'url' && url)
    return (
      <a href={url} rel="noreferrer noopener" target="_blank">
        {label}
      </a>
    );
  const base = PAGES[type];
  if (base && id) return <Link to={`${base}/${id}`}>{label}</Link>;
  return <span>{label}</span>;
}
