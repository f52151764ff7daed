import { useMutation, useQuery, useQueryClient } from '@tanstack/react-query';
import { useEffect, useRef, useState } from 'react';
import { Navigate, NavLink, Outlet, useLocation, useNavigate } from 'react-router';
import { api, isUnauthenticated, unwrap } from './api.ts';
import { applyTheme, currentTheme, type Theme } from './theme.ts';
import { Button, ErrorNote, Loading } from './ui.tsx';

interface NavItem {
  to: string;
  label: string;
  end?: boolean;
}

/** The sidebar in groups: the work, what it is made of, what it left behind, and the team's settings. */
const NAV: Array<{ id: string; title: string | null; items: NavItem[] }> = [
  {
    id: 'work',
    title: null,
    items: [
      { to: '/', label: 'Overview', end: true },
      { to: '/tasks', label: 'Tasks' },
      { to: '/workspaces', label: 'Workspaces' },
      { to: '/approvals', label: 'Approvals' },
      { to: '/capsules', label: 'Sandboxes' },
      { to: '/playbooks', label: 'Playbooks' },
      { to: '/work-board', label: 'Work board' },
      { to: '/queues', label: 'Queues' },
    ],
  },
  {
    id: 'build',
    title: 'Build',
    items: [
      { to: '/agents', label: 'Agents' },
      { to: '/environments', label: 'Environments' },
      { to: '/skills', label: 'Skills' },
      { to: '/memories', label: 'Memories' },
      { to: '/secrets', label: 'Secrets' },
      { to: '/policies', label: 'Policies' },
      { to: '/provider-keys', label: 'Provider keys' },
    ],
  },
  {
    id: 'record',
    title: 'Records',
    items: [
      { to: '/runs', label: 'Runs' },
      { to: '/analytics', label: 'Analytics' },
      { to: '/activity', label: 'Activity' },
      { to: '/audit', label: 'Audit log' },
      { to: '/notifications', label: 'Inbox' },
    ],
  },
  {
    id: 'settings',
    title: 'Team',
    items: [
      { to: '/members', label: 'Members' },
      { to: '/invitations', label: 'Invitations' },
      { to: '/api-keys', label: 'API keys' },
      { to: '/billing', label: 'Credits and billing' },
      { to: '/webhooks', label: 'Webhooks' },
      { to: '/channels', label: 'Channels' },
      { to: '/alert-rules', label: 'Alert rules' },
      { to: '/hosts', label: 'Hosts' },
    ],
  },
];
/** Shown to platform admins only (the API refuses anyone else: 403 platform_admin_required). */
const ADMIN_NAV: NavItem[] = [
  { to: '/admin/users', label: 'Users' },
  { to: '/admin/teams', label: 'Teams' },
];

export function useMe() {
  return useQuery({ queryKey: ['me'], queryFn: () => unwrap(api.GET('/v1/me')), staleTime: 60_000 });
}

/** The signed-in frame: navigation, team switcher, theme and sign-out around each page. */
export function Shell() {
  const me = useMe();
  const main = useRef<HTMLElement>(null);
  const { pathname } = useLocation();
  const shown = useRef(pathname);
  // After a navigation, keyboard and screen-reader users start at the new page's content.
  useEffect(() => {
    if (shown.current === pathname) return;
    shown.current = pathname;
    main.current?.focus();
  }, [pathname]);
  if (me.isPending) return <Loading />;
  if (me.isError) {
    if (isUnauthenticated(me.error)) return <Navigate to="/login" replace />;
    return (
      <main className="narrow">
        <ErrorNote error={me.error} />
      </main>
    );
  }
  const signedIn = 'user' in me.data ? me.data : undefined;
  return (
    <div className="shell">
      <a className="skip" href="#main">
        Skip to content
      </a>
      <header className="topbar">
        <span className="brand">Paddock</span>
        <TeamSwitcher activeTeamId={signedIn?.team?.id ?? null} />
        <div className="topbar-end">
          <ThemeToggle />
          <span className="muted user">{signedIn?.user.email}</span>
          <SignOut />
        </div>
      </header>
      <nav className="sidebar" aria-label="Main">
        {NAV.map((group) => (
          <NavGroup key={group.id} id={group.id} title={group.title} items={group.items} />
        ))}
        {signedIn?.user.is_admin ? <NavGroup id="admin" title="Platform admin" items={ADMIN_NAV} /> : null}
      </nav>
      <main id="main" className="content" tabIndex={-1} ref={main}>
        <Outlet />
      </main>
    </div>
  );
}

function NavGroup(props: { id: string; title: string | null; items: NavItem[] }) {
  const heading = `nav-${props.id}`;
  return (
    <>
      {props.title ? (
        <p className="nav-group" id={heading}>
          {props.title}
        </p>
      ) : null}
      <ul aria-labelledby={props.title ? heading : undefined}>
        {props.items.map((item) => (
          <li key={item.to}>
            <NavLink to={item.to} end={item.end ?? false}>
              {item.label}
              {item.to === '/approvals' ? <PendingCount /> : null}
              {item.to === '/notifications' ? <UnreadCount /> : null}
            </NavLink>
          </li>
        ))}
      </ul>
    </>
  );
}

/** Beside a link: how many wait there (nothing when none). */
function Count(props: { count: number; what: string }) {
  if (props.count === 0) return null;
  return (
    <span className="count" title={`${props.count} ${props.what}`}>
      {props.count}
      <span className="visually-hidden"> {props.what}</span>
    </span>
  );
}

function PendingCount() {
  const pending = useQuery({
    queryKey: ['approvals', 'pending'],
    queryFn: () => unwrap(api.GET('/v1/approvals', { params: { query: { status: 'pending', limit: 200 } } })),
    refetchInterval: 5_000,
  });
  return <Count count={pending.data?.data.length ?? 0} what="pending" />;
}

/** The same query as the inbox's own count, so marking one read there updates it here. */
function UnreadCount() {
  const unread = useQuery({
    queryKey: ['notifications', 'unread-count'],
    queryFn: () => unwrap(api.GET('/v1/notifications/unread-count')),
    refetchInterval: 10_000,
  });
  return <Count count={unread.data?.unread ?? 0} what="unread" />;
}

function TeamSwitcher(props: { activeTeamId: string | null }) {
  const client = useQueryClient();
  const teams = useQuery({ queryKey: ['teams'], queryFn: () => unwrap(api.GET('/v1/teams')) });
  const switchTeam = useMutation({
    mutationFn: (teamId: string) => unwrap(api.POST('/v1/auth/switch-team', { body: { team_id: teamId } })),
    // Everything on screen belonged to the other team.
    onSuccess: () => client.resetQueries(),
  });
  if (!teams.data) return null;
  return (
    <div className="team-switcher">
      <label htmlFor="team-switcher" className="visually-hidden">
        Team
      </label>
      <select
        id="team-switcher"
        value={props.activeTeamId ?? ''}
        disabled={switchTeam.isPending}
        onChange={(e) => switchTeam.mutate(e.target.value)}
      >
        {props.activeTeamId === null ? <option value="">Choose a team</option> : null}
        {teams.data.data.map((team) => (
          <option key={team.id} value={team.id}>
            {team.name}
          </option>
        ))}
      </select>
      <ErrorNote error={switchTeam.error} />
    </div>
  );
}

function ThemeToggle() {
  const [theme, setTheme] = useState<Theme>(currentTheme());
  const next: Theme = theme === 'dark' ? 'light' : 'dark';
  return (
    <Button
      aria-label={`Switch to the ${next} theme`}
      onClick={() => {
        applyTheme(next);
        setTheme(next);
      }}
    >
      {theme === 'dark' ? 'Light' : 'Dark'} theme
    </Button>
  );
}

function SignOut() {
  const client = useQueryClient();
  const navigate = useNavigate();
  const signOut = useMutation({
    mutationFn: () => unwrap(api.POST('/v1/auth/logout')),
    onSuccess: () => {
      client.clear();
      void navigate('/login');
    },
  });
  return (
    <Button onClick={() => signOut.mutate()} busy={signOut.isPending}>
      Sign out
    </Button>
  );
}
