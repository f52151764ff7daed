import { useMutation, useQuery, useQueryClient } from '@tanstack/react-query';
import { type FormEvent, useState } from 'react';
import { useSearchParams } from 'react-router';
import { api, unwrap, when } from '../api.ts';
import { useMe } from '../shell.tsx';
import {
  Badge,
  Button,
  ButtonLink,
  ConfirmButton,
  DataTable,
  EmailField,
  Empty,
  ErrorNote,
  Page,
  Section,
  SelectField,
  ShownOnce,
} from '../ui.tsx';
import './pages-extra.css';

const ROLES = ['admin', 'member', 'viewer'] as const;
type InvitableRole = (typeof ROLES)[number];
const ROLE_HINT = 'admin: everything, members and keys included; member: build and run; viewer: read only.';
const INVITATION_STATUSES = ['pending', 'accepted', 'revoked', 'expired'] as const;
type InvitationStatus = (typeof INVITATION_STATUSES)[number];

/** The active team, and whether the signed-in user may manage its people (owner or admin). */
function useActiveTeam() {
  const me = useMe();
  const signedIn = me.data && 'user' in me.data ? me.data : undefined;
  const role = signedIn?.role ?? null;
  return {
    team: signedIn?.team ?? null,
    userId: signedIn?.user.id,
    canManage: role === 'owner' || role === 'admin',
  };
}

export function useMembers(teamId: string | undefined) {
  return useQuery({
    queryKey: ['members', teamId],
    queryFn: () =>
      unwrap(api.GET('/v1/teams/{id}/members', { params: { path: { id: teamId! }, query: { limit: 200 } } })),
    enabled: teamId !== undefined,
  });
}

function NoTeam() {
  return (
    <Empty title="No active team.">
      Choose a team in the switcher at the top, or accept an invitation to one.
    </Empty>
  );
}

export function MembersPage() {
  const { team, userId, canManage } = useActiveTeam();
  const client = useQueryClient();
  const members = useMembers(team?.id);
  const invalidate = () => client.invalidateQueries({ queryKey: ['members', team?.id] });
  const changeRole = useMutation({
    mutationFn: (change: { userId: string; role: InvitableRole }) =>
      unwrap(
        api.PATCH('/v1/teams/{id}/members/{user_id}', {
          params: { path: { id: team!.id, user_id: change.userId } },
          body: { role: change.role },
        }),
      ),
    onSuccess: invalidate,
  });
  const remove = useMutation({
    mutationFn: (memberId: string) =>
      unwrap(
        api.DELETE('/v1/teams/{id}/members/{user_id}', {
          params: { path: { id: team!.id, user_id: memberId } },
        }),
      ),
    onSuccess: invalidate,
  });
  if (!team)
    return (
      <Page title="Members">
        <NoTeam />
      </Page>
    );
  return (
    <Page
      title="Members"
      actions={
        canManage ? (
          <ButtonLink to="/invitations" variant="primary">
            Invite someone
          </ButtonLink>
        ) : null
      }
    >
      <p className="muted lead">
        The people of {team.name} and what each may do. {ROLE_HINT} The owner's role changes only by a
        transfer of ownership.
      </p>
      {canManage ? null : (
        <p className="note">Only the team's owner and admins can change roles or remove members.</p>
      )}
      <Section title="Members">
        <ErrorNote error={changeRole.error ?? remove.error} />
        <DataTable
          list={members}
          what="members"
          rowKey={(m) => m.user_id}
          empty={
            <Empty title="No members.">Invite people from the Invitations page to work in this team.</Empty>
          }
          columns={[
            { header: 'Name', cell: (m) => (m.user_id === userId ? `${m.name} (you)` : m.name) },
            { header: 'Email', cell: (m) => m.email, wrap: true },
            {
              header: 'Role',
              cell: (m) =>
                canManage && m.role !== 'owner' && m.user_id !== userId ? (
                  <SelectField
                    label={`Role of ${m.name}`}
                    quietLabel
                    options={ROLES.map((r) => ({ value: r, label: r }))}
                    value={m.role}
                    disabled={changeRole.isPending && changeRole.variables?.userId === m.user_id}
                    onChange={(e) =>
                      changeRole.mutate({ userId: m.user_id, role: e.target.value as InvitableRole })
                    }
                  />
                ) : (
                  m.role
                ),
            },
            { header: 'Joined', cell: (m) => when(m.joined_at) },
            {
              header: 'Actions',
              quietHeader: true,
              cell: (m) =>
                canManage && m.role !== 'owner' && m.user_id !== userId ? (
                  <ConfirmButton
                    label="Remove"
                    name={m.name}
                    question={`Remove ${m.name} (${m.email}) from ${team.name}? They lose access at once.`}
                    busy={remove.isPending && remove.variables === m.user_id}
                    onConfirm={() => remove.mutate(m.user_id)}
                  />
                ) : null,
            },
          ]}
        />
      </Section>
    </Page>
  );
}

export function InvitationsPage() {
  const { team, canManage } = useActiveTeam();
  const client = useQueryClient();
  const [params, setParams] = useSearchParams();
  const given = params.get('status') ?? 'pending';
  const status = (INVITATION_STATUSES as readonly string[]).includes(given)
    ? (given as InvitationStatus)
    : undefined;
  const members = useMembers(team?.id);
  const invitations = useQuery({
    queryKey: ['invitations', team?.id, status ?? 'any'],
    queryFn: () =>
      unwrap(
        api.GET('/v1/invitations', { params: { query: { limit: 200, ...(status ? { status } : {}) } } }),
      ),
    enabled: team !== null,
  });
  const [link, setLink] = useState<{ email: string; url: string }>();
  const showLink = (invitation: { email: string; token: string }) => {
    setLink({ email: invitation.email, url: acceptUrl(invitation.token) });
    return client.invalidateQueries({ queryKey: ['invitations'] });
  };
  const resend = useMutation({
    mutationFn: (id: string) => unwrap(api.POST('/v1/invitations/{id}/resend', { params: { path: { id } } })),
    onSuccess: showLink,
  });
  const revoke = useMutation({
    mutationFn: (id: string) => unwrap(api.POST('/v1/invitations/{id}/revoke', { params: { path: { id } } })),
    onSuccess: () => client.invalidateQueries({ queryKey: ['invitations'] }),
  });
  const inviter = (id: string) =>
    id.startsWith('api_key:') ? 'an API key' : (members.data?.data.find((m) => m.user_id === id)?.name ?? id);
  if (!team)
    return (
      <Page title="Invitations">
        <NoTeam />
      </Page>
    );
  return (
    <Page title="Invitations">
      <p className="muted lead">
        Invite people to {team.name} by e-mail. An invitation's link works for 7 days; whoever opens it signs
        in (or creates an account) and joins with the role you chose.
      </p>
      {link ? (
        <ShownOnce
          label={`The invitation link for ${link.email}`}
          value={link.url}
          onDone={() => setLink(undefined)}
        />
      ) : null}
      {canManage ? (
        <NewInvitation onCreated={showLink} />
      ) : (
        <p className="note">Only the team's owner and admins can invite people.</p>
      )}
      <Section
        title="Invitations"
        actions={
          <div className="filter">
            <SelectField
              label="Status"
              options={[
                { value: 'any', label: 'Any' },
                ...INVITATION_STATUSES.map((s) => ({ value: s, label: s })),
              ]}
              value={status ?? 'any'}
              onChange={(e) => setParams(e.target.value === 'pending' ? {} : { status: e.target.value })}
            />
          </div>
        }
      >
        <ErrorNote error={resend.error ?? revoke.error} />
        <DataTable
          list={invitations}
          what="invitations"
          rowKey={(i) => i.id}
          empty={
            <Empty title={status ? `No ${status} invitations.` : 'No invitations yet.'}>
              {canManage
                ? 'Invite someone above: they get an e-mail with a link, and you get the link to share.'
                : 'Owners and admins invite people to the team.'}
            </Empty>
          }
          columns={[
            { header: 'Email', cell: (i) => i.email, wrap: true },
            { header: 'Role', cell: (i) => i.role },
            { header: 'Status', cell: (i) => <Badge status={i.status} /> },
            { header: 'Invited by', cell: (i) => inviter(i.invited_by) },
            { header: 'Sent', cell: (i) => when(i.created_at) },
            {
              header: 'Expires',
              cell: (i) => (i.status === 'accepted' ? `accepted ${when(i.accepted_at)}` : when(i.expires_at)),
            },
            {
              header: 'Actions',
              quietHeader: true,
              cell: (i) =>
                canManage && i.status === 'pending' ? (
                  <div className="actions">
                    <Button
                      aria-label={`Resend ${i.email}`}
                      busy={resend.isPending && resend.variables === i.id}
                      onClick={() => resend.mutate(i.id)}
                    >
                      Resend
                    </Button>
                    <ConfirmButton
                      label="Revoke"
                      name={i.email}
                      question={`Revoke the invitation for ${i.email}? Its link stops working.`}
                      busy={revoke.isPending && revoke.variables === i.id}
                      onConfirm={() => revoke.mutate(i.id)}
                    />
                  </div>
                ) : null,
            },
          ]}
        />
      </Section>
    </Page>
  );
}

/** The page an invitation's e-mail links to, on this server. */
function acceptUrl(token: string): string {
  return `${window.location.origin}/accept-invitation?token=${encodeURIComponent(token)}`;
}

function NewInvitation(props: { onCreated: (invitation: { email: string; token: string }) => unknown }) {
  const [email, setEmail] = useState('');
  const [role, setRole] = useState<InvitableRole>('member');
  const create = useMutation({
    mutationFn: () => unwrap(api.POST('/v1/invitations', { body: { email, role } })),
    onSuccess: (invitation) => {
      setEmail('');
      return props.onCreated(invitation);
    },
  });
  const submit = (e: FormEvent) => {
    e.preventDefault();
    create.mutate();
  };
  return (
    <Section title="Invite someone">
      <form onSubmit={submit} className="grid-form">
        <EmailField autoComplete="off" value={email} onChange={setEmail} />
        <SelectField
          label="Role"
          hint={ROLE_HINT}
          options={ROLES.map((r) => ({ value: r, label: r }))}
          value={role}
          onChange={(e) => setRole(e.target.value as InvitableRole)}
        />
        <div className="form-end">
          <p className="hint">
            The server e-mails the link when it can send mail (PADDOCK_SMTP_URL); the link is also shown here
            once, to share yourself.
          </p>
          <ErrorNote error={create.error} />
          <Button type="submit" variant="primary" busy={create.isPending}>
            Send invitation
          </Button>
        </div>
      </form>
    </Section>
  );
}
