import { useMutation, useQuery, useQueryClient } from '@tanstack/react-query';
import { type FormEvent, useState } from 'react';
import { useNavigate, useSearchParams } from 'react-router';
import { api, cookie, isUnauthenticated, unwrap, when } from '../api.ts';
import { Button, ButtonLink, ErrorNote, Loading } from '../ui.tsx';
import { AuthFrame, NewAccountFields, useSignedIn } from './auth.tsx';

type Lookup = Awaited<ReturnType<typeof lookUp>>;

function lookUp(token: string) {
  return unwrap(api.GET('/v1/invitations/lookup', { params: { query: { token } } }));
}

/**
 * Where an invitation's link lands (/accept-invitation?token=pdi_…): what the
 * invitation is for, then one of three ways in: signed in as the invitee, join;
 * the invitee has an account, sign in first and come back; no account yet,
 * create it (name and password) and join in one step.
 */
export function AcceptInvitationPage() {
  const [params] = useSearchParams();
  const token = params.get('token') ?? '';
  // Once joined, the token is spent: asking about it again (the cache is cleared on the way out) would be refused.
  const [joined, setJoined] = useState(false);
  const lookup = useQuery({
    queryKey: ['invitation-lookup', token],
    queryFn: () => lookUp(token),
    enabled: token !== '' && !joined,
    retry: false,
  });
  // Signed in or not: without the readable CSRF cookie there is no session to ask about.
  const me = useQuery({
    queryKey: ['me'],
    queryFn: () => unwrap(api.GET('/v1/me')),
    enabled: cookie('paddock_csrf') !== undefined && !joined,
    retry: false,
  });
  const onJoined = () => setJoined(true);
  return (
    <AuthFrame title="Join a team">
      {token === '' ? (
        <div className="note note-error" role="alert">
          This page needs the invitation link with its token. Open the link from the e-mail again.
        </div>
      ) : null}
      {lookup.isPending && token !== '' ? <Loading what="the invitation" /> : null}
      <ErrorNote error={lookup.error} />
      {lookup.data ? (
        <>
          <p>
            {lookup.data.invited_by ? lookup.data.invited_by.name : 'A team admin'} invited{' '}
            <strong>{lookup.data.email}</strong> to join <strong>{lookup.data.team.name}</strong> as{' '}
            {lookup.data.role}.
          </p>
          <p className="muted">The invitation expires {when(lookup.data.expires_at)}.</p>
          {me.isPending && me.fetchStatus !== 'idle' ? <Loading /> : null}
          {me.data && 'user' in me.data ? (
            <JoinSignedIn
              token={token}
              invitation={lookup.data}
              email={me.data.user.email}
              onJoined={onJoined}
            />
          ) : null}
          {(me.isPending && me.fetchStatus === 'idle') || isUnauthenticated(me.error) ? (
            <JoinSignedOut token={token} invitation={lookup.data} onJoined={onJoined} />
          ) : null}
          {me.error && !isUnauthenticated(me.error) ? <ErrorNote error={me.error} /> : null}
        </>
      ) : null}
    </AuthFrame>
  );
}

/** Signed in: join as this account, and make the team the active one. */
interface JoinProps {
  token: string;
  invitation: Lookup;
  onJoined: () => void;
}

function JoinSignedIn(props: JoinProps & { email: string }) {
  const client = useQueryClient();
  const navigate = useNavigate();
  const join = useMutation({
    mutationFn: async () => {
      const accepted = await unwrap(api.POST('/v1/invitations/accept', { body: { token: props.token } }));
      await unwrap(api.POST('/v1/auth/switch-team', { body: { team_id: accepted.team.id } }));
    },
    onSuccess: () => {
      props.onJoined();
      client.clear();
      void navigate('/');
    },
  });
  const signOut = useMutation({
    mutationFn: () => unwrap(api.POST('/v1/auth/logout')),
    onSuccess: () => client.resetQueries({ queryKey: ['me'] }),
  });
  if (props.email.toLowerCase() !== props.invitation.email.toLowerCase()) {
    return (
      <>
        <div className="note note-error" role="alert">
          You are signed in as {props.email}, but this invitation is for {props.invitation.email}. Sign out,
          then accept it as {props.invitation.email}.
        </div>
        <ErrorNote error={signOut.error} />
        <Button busy={signOut.isPending} onClick={() => signOut.mutate()}>
          Sign out
        </Button>
      </>
    );
  }
  return (
    <>
      <ErrorNote error={join.error} />
      <Button variant="primary" busy={join.isPending} onClick={() => join.mutate()}>
        Join {props.invitation.team.name}
      </Button>
    </>
  );
}

/** Signed out: sign in first (the account exists), or create the account and join at once. */
function JoinSignedOut(props: JoinProps) {
  const [name, setName] = useState('');
  const [password, setPassword] = useState('');
  const signedIn = useSignedIn();
  const accept = useMutation({
    mutationFn: () =>
      unwrap(api.POST('/v1/invitations/accept', { body: { token: props.token, name, password } })),
    onSuccess: () => {
      props.onJoined();
      signedIn();
    },
  });
  if (props.invitation.account_exists) {
    const back = `/accept-invitation?token=${encodeURIComponent(props.token)}`;
    return (
      <>
        <p className="muted">{props.invitation.email} has an account: sign in, then accept here.</p>
        <ButtonLink variant="primary" to={`/login?next=${encodeURIComponent(back)}`}>
          Sign in to accept
        </ButtonLink>
      </>
    );
  }
  const submit = (e: FormEvent) => {
    e.preventDefault();
    accept.mutate();
  };
  return (
    <form onSubmit={submit}>
      <p className="muted">Create your account for {props.invitation.email} to join.</p>
      <NewAccountFields name={[name, setName]} password={[password, setPassword]} />
      <ErrorNote error={accept.error} />
      <Button type="submit" variant="primary" busy={accept.isPending}>
        Create account and join
      </Button>
    </form>
  );
}
