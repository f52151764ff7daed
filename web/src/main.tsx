import { QueryClientProvider } from '@tanstack/react-query';
import { StrictMode } from 'react';
import { createRoot } from 'react-dom/client';
import { createBrowserRouter, type RouteObject, RouterProvider } from 'react-router';
import { createQueryClient } from './api.ts';
import { Shell } from './shell.tsx';
import { applyTheme, chosenTheme } from './theme.ts';
import { Loading } from './ui.tsx';
import './styles.css';

applyTheme(chosenTheme());

/** Each page is its own chunk, loaded when first visited (the first load carries only the shell). */
const page =
  <K extends string>(load: () => Promise<Record<K, () => React.ReactNode>>, name: K): RouteObject['lazy'] =>
  async () => ({ Component: (await load())[name] });

const routes: RouteObject[] = [
  { path: '/login', lazy: page(() => import('./pages/auth.tsx'), 'LoginPage') },
  { path: '/signup', lazy: page(() => import('./pages/auth.tsx'), 'SignupPage') },
  { path: '/magic-link', lazy: page(() => import('./pages/auth.tsx'), 'MagicLinkPage') },
  { path: '/reset-password', lazy: page(() => import('./pages/password-reset.tsx'), 'ResetPasswordPage') },
  {
    path: '/accept-invitation',
    lazy: page(() => import('./pages/accept-invitation.tsx'), 'AcceptInvitationPage'),
  },
  {
    path: '/',
    Component: Shell,
    HydrateFallback: () => <Loading />,
    children: [
      { index: true, lazy: page(() => import('./pages/overview.tsx'), 'OverviewPage') },
      { path: 'tasks', lazy: page(() => import('./pages/tasks.tsx'), 'TasksPage') },
      { path: 'tasks/:id', lazy: page(() => import('./pages/task.tsx'), 'TaskPage') },
      { path: 'approvals', lazy: page(() => import('./pages/approvals.tsx'), 'ApprovalsPage') },
      { path: 'agents', lazy: page(() => import('./pages/agents.tsx'), 'AgentsPage') },
      { path: 'agents/new', lazy: page(() => import('./pages/agents.tsx'), 'AgentFormPage') },
      { path: 'agents/:id', lazy: page(() => import('./pages/agents.tsx'), 'AgentFormPage') },
      {
        path: 'agents/:id/versions',
        lazy: page(() => import('./pages/agent-versions.tsx'), 'AgentVersionsPage'),
      },
      { path: 'environments', lazy: page(() => import('./pages/environments.tsx'), 'EnvironmentsPage') },
      { path: 'environments/new', lazy: page(() => import('./pages/environments.tsx'), 'EnvironmentPage') },
      { path: 'environments/:id', lazy: page(() => import('./pages/environments.tsx'), 'EnvironmentPage') },
      { path: 'secrets', lazy: page(() => import('./pages/secrets.tsx'), 'SecretsPage') },
      { path: 'skills', lazy: page(() => import('./pages/skills.tsx'), 'SkillsPage') },
      { path: 'skills/new', lazy: page(() => import('./pages/skills.tsx'), 'SkillFormPage') },
      { path: 'skills/:id', lazy: page(() => import('./pages/skills.tsx'), 'SkillFormPage') },
      { path: 'memories', lazy: page(() => import('./pages/memories.tsx'), 'MemoriesPage') },
      { path: 'policies', lazy: page(() => import('./pages/policies.tsx'), 'PoliciesPage') },
      { path: 'policies/new', lazy: page(() => import('./pages/policies.tsx'), 'PolicyFormPage') },
      { path: 'policies/:id', lazy: page(() => import('./pages/policies.tsx'), 'PolicyFormPage') },
      {
        path: 'policies/:id/history',
        lazy: page(() => import('./pages/policy-history.tsx'), 'PolicyHistoryPage'),
      },
      { path: 'provider-keys', lazy: page(() => import('./pages/provider-keys.tsx'), 'ProviderKeysPage') },
      { path: 'api-keys', lazy: page(() => import('./pages/api-keys.tsx'), 'ApiKeysPage') },
      { path: 'api-keys/:id', lazy: page(() => import('./pages/api-keys.tsx'), 'ApiKeyPage') },
      { path: 'members', lazy: page(() => import('./pages/team.tsx'), 'MembersPage') },
      { path: 'invitations', lazy: page(() => import('./pages/team.tsx'), 'InvitationsPage') },
      { path: 'admin/users', lazy: page(() => import('./pages/admin.tsx'), 'AdminUsersPage') },
      { path: 'admin/teams', lazy: page(() => import('./pages/admin.tsx'), 'AdminTeamsPage') },
      { path: 'workspaces', lazy: page(() => import('./pages/workspaces.tsx'), 'WorkspacesPage') },
      { path: 'workspaces/:id', lazy: page(() => import('./pages/workspace.tsx'), 'WorkspacePage') },
      { path: 'capsules', lazy: page(() => import('./pages/capsules.tsx'), 'CapsulesPage') },
      { path: 'capsules/:id', lazy: page(() => import('./pages/capsule.tsx'), 'CapsulePage') },
      { path: 'playbooks', lazy: page(() => import('./pages/playbooks.tsx'), 'PlaybooksPage') },
      { path: 'playbooks/new', lazy: page(() => import('./pages/playbooks.tsx'), 'PlaybookFormPage') },
      { path: 'playbooks/:id', lazy: page(() => import('./pages/playbooks.tsx'), 'PlaybookFormPage') },
      { path: 'runs', lazy: page(() => import('./pages/runs.tsx'), 'RunsPage') },
      { path: 'runs/:id', lazy: page(() => import('./pages/runs.tsx'), 'RunPage') },
      { path: 'activity', lazy: page(() => import('./pages/activity.tsx'), 'ActivityPage') },
      { path: 'audit', lazy: page(() => import('./pages/audit.tsx'), 'AuditPage') },
      { path: 'webhooks', lazy: page(() => import('./pages/webhooks.tsx'), 'WebhooksPage') },
      { path: 'webhooks/:id', lazy: page(() => import('./pages/webhooks.tsx'), 'WebhookPage') },
      { path: 'channels', lazy: page(() => import('./pages/channels.tsx'), 'ChannelsPage') },
      { path: 'notifications', lazy: page(() => import('./pages/channels.tsx'), 'NotificationsPage') },
      { path: 'alert-rules', lazy: page(() => import('./pages/alert-rules.tsx'), 'AlertRulesPage') },
      { path: 'alert-rules/new', lazy: page(() => import('./pages/alert-rules.tsx'), 'AlertRuleFormPage') },
      { path: 'alert-rules/:id', lazy: page(() => import('./pages/alert-rules.tsx'), 'AlertRuleFormPage') },
      { path: 'hosts', lazy: page(() => import('./pages/hosts.tsx'), 'HostsPage') },
      { path: 'hosts/:id', lazy: page(() => import('./pages/hosts.tsx'), 'HostPage') },
      { path: 'queues', lazy: page(() => import('./pages/queues.tsx'), 'QueuesPage') },
      { path: 'queues/:name', lazy: page(() => import('./pages/queues.tsx'), 'QueuePage') },
      { path: 'analytics', lazy: page(() => import('./pages/analytics.tsx'), 'AnalyticsPage') },
      { path: 'billing', lazy: page(() => import('./pages/billing.tsx'), 'BillingPage') },
      { path: 'work-board', lazy: page(() => import('./pages/work-board.tsx'), 'WorkBoardPage') },
      { path: '*', lazy: page(() => import('./pages/not-found.tsx'), 'NotFoundPage') },
    ],
  },
];

const router = createBrowserRouter(routes);
/** Pages that work signed out: a 401 there is no reason to leave them. */
const SIGNED_OUT_PAGES = ['/login', '/signup', '/magic-link', '/accept-invitation', '/reset-password'];
const queryClient = createQueryClient(() => {
  if (!SIGNED_OUT_PAGES.includes(window.location.pathname)) void router.navigate('/login');
});

createRoot(document.getElementById('root')!).render(
  <StrictMode>
    <QueryClientProvider client={queryClient}>
      <RouterProvider router={router} />
    </QueryClientProvider>
  </StrictMode>,
);
