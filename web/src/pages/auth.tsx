import { useMutation, useQueryClient } from '@tanstack/react-query';
import { type FormEvent, useState } from 'react';
import { Link, useNavigate, useSearchParams } from 'react-router';
import { api, unwrap } from '../api.ts';
import { Button, EmailField, ErrorNote, TextField } from '../ui.tsx';
import './pages-extra.css';
import { PasswordResetRequest } from './password-reset.tsx';

export function AuthFrame(props: { title: string; children: React.ReactNode }) {
  return (
    <main className="auth">
      <p className="brand">Paddock</p>
      <div className="card">
        <h1>{props.title}</h1>
        {props.children}
      </div>
    </main>
  );
}

/**
 * `next` as a place on this site, or `/`. Read as the browser would (so `//host`, `/\host` and
 * `https://…` all name another origin): a fresh session's user is never sent elsewhere.
 */
export function samePlace(next: string | null): string {
  if (!next?.startsWith('/')) return '/';
  const url = new URL(next, window.location.origin);
  return url.origin === window.location.origin ? `${url.pathname}${url.search}${url.hash}` : '/';
}

/**
 * After signing in: the cookies are set; whatever was cached belonged to no one or someone else.
 * `next` (a path of this site, e.g. an invitation waiting to be accepted) is where to go then.
 */
export function useSignedIn() {
  const client = useQueryClient();
  const navigate = useNavigate();
  const [params] = useSearchParams();
  const to = samePlace(params.get('next'));
  return () => {
    client.clear();
    void navigate(to);
  };
}

export function LoginPage() {
  const [params, setParams] = useSearchParams();
  const mode = params.get('with');
  const choose = (how: 'link' | 'reset' | null) => {
    const next = new URLSearchParams(params);
    if (how) next.set('with', how);
    else next.delete('with');
    setParams(next);
  };
  if (mode === 'link') return <MagicLinkRequest onPassword={() => choose(null)} />;
  if (mode === 'reset') return <PasswordResetRequest onBack={() => choose(null)} />;
  return <PasswordLogin onLink={() => choose('link')} onForgot={() => choose('reset')} />;
}

function PasswordLogin(props: { onLink: () => void; onForgot: () => void }) {
  const [email, setEmail] = useState('');
  const [password, setPassword] = useState('');
  const signedIn = useSignedIn();
  const login = useMutation({
    mutationFn: () => unwrap(api.POST('/v1/auth/login', { body: { email, password } })),
    onSuccess: signedIn,
  });
  const submit = (e: FormEvent) => {
    e.preventDefault();
    login.mutate();
  };
  return (
    <AuthFrame title="Sign in">
      <form onSubmit={submit}>
        <EmailField value={email} onChange={setEmail} />
        <TextField
          label="Password"
          type="password"
          autoComplete="current-password"
          required
          value={password}
          onChange={(e) => setPassword(e.target.value)}
        />
        <ErrorNote error={login.error} />
        <Button type="submit" variant="primary" busy={login.isPending}>
          Sign in
        </Button>
      </form>
      <p className="muted">
        <button type="button" className="link-button" onClick={props.onForgot}>
          Forgot password?
        </button>
      </p>
      <p className="muted">
        Rather not type it?{' '}
        <button type="button" className="link-button" onClick={props.onLink}>
          E-mail me a sign-in link
        </button>
      </p>
      <p className="muted">
        No account yet? <Link to="/signup">Create one</Link>.
      </p>
    </AuthFrame>
  );
}

/** The API's lower-case message as a sentence of the page. */
function sentence(message: string): string {
  return `${message.charAt(0).toUpperCase()}${message.slice(1)}.`;
}

/** Asks for a sign-in link by e-mail (POST /v1/auth/magic-link/start). */
function MagicLinkRequest(props: { onPassword: () => void }) {
  return (
    <EmailLinkRequest
      title="Sign in by e-mail"
      intro="We e-mail you a link that signs you in, no password needed."
      lifetime="15 minutes"
      askLabel="E-mail me a link"
      send={(email) => unwrap(api.POST('/v1/auth/magic-link/start', { body: { email } }))}
      back={{ label: 'Sign in with a password instead', onClick: props.onPassword }}
    />
  );
}

/**
 * A link asked for by e-mail (sign-in, password reset): the address, then the
 * API's answer, the same whether or not an account has it.
 */
export function EmailLinkRequest(props: {
  title: string;
  intro: string;
  lifetime: string;
  askLabel: string;
  send: (email: string) => Promise<{ message: string }>;
  back: { label: string; onClick: () => void };
}) {
  const [email, setEmail] = useState('');
  const start = useMutation({ mutationFn: () => props.send(email) });
  const submit = (e: FormEvent) => {
    e.preventDefault();
    start.mutate();
  };
  return (
    <AuthFrame title={props.title}>
      {start.isSuccess ? (
        <div className="note note-ok" role="status">
          <p>
            <strong>Check your inbox.</strong> {sentence(start.data.message)}
          </p>
          <p>The link works once, for {props.lifetime}.</p>
        </div>
      ) : (
        <p className="muted">{props.intro}</p>
      )}
      <form onSubmit={submit}>
        <EmailField value={email} onChange={setEmail} />
        <ErrorNote error={start.error} />
        <Button type="submit" variant="primary" busy={start.isPending}>
          {start.isSuccess ? 'Send another link' : props.askLabel}
        </Button>
      </form>
      <p className="muted">
        <button type="button" className="link-button" onClick={props.back.onClick}>
          {props.back.label}
        </button>
      </p>
    </AuthFrame>
  );
}

/**
 * Where the e-mailed link lands (/magic-link?token=pdml_…). Signing in takes a
 * click rather than happening on load: mail scanners that open links (and run
 * their pages) would otherwise spend the single-use token before its owner does.
 */
export function MagicLinkPage() {
  const [params] = useSearchParams();
  const token = params.get('token') ?? '';
  const signedIn = useSignedIn();
  const verify = useMutation({
    mutationFn: () => unwrap(api.POST('/v1/auth/magic-link/verify', { body: { token } })),
    onSuccess: signedIn,
  });
  return (
    <AuthFrame title="Sign in by e-mail">
      {token === '' ? (
        <div className="note note-error" role="alert">
          This page needs the link from your e-mail, with its token. Open the link again, or ask for a new
          one.
        </div>
      ) : (
        <>
          <p className="muted">You opened your sign-in link. It works once.</p>
          <ErrorNote error={verify.error} />
          <Button variant="primary" busy={verify.isPending} onClick={() => verify.mutate()}>
            Sign in to Paddock
          </Button>
        </>
      )}
      <p className="muted">
        <Link to="/login?with=link">Ask for a new link</Link> or{' '}
        <Link to="/login">sign in with a password</Link>.
      </p>
    </AuthFrame>
  );
}

export function SignupPage() {
  const [name, setName] = useState('');
  const [email, setEmail] = useState('');
  const [password, setPassword] = useState('');
  const signedIn = useSignedIn();
  const signup = useMutation({
    mutationFn: () => unwrap(api.POST('/v1/auth/signup', { body: { name, email, password } })),
    onSuccess: signedIn,
  });
  const submit = (e: FormEvent) => {
    e.preventDefault();
    signup.mutate();
  };
  return (
    <AuthFrame title="Create your account">
      <p className="muted">
        The first account on a server becomes its administrator. You get a team of your own.
      </p>
      <form onSubmit={submit}>
        <NewAccountFields
          name={[name, setName]}
          email={[email, setEmail]}
          password={[password, setPassword]}
        />
        <ErrorNote error={signup.error} />
        <Button type="submit" variant="primary" busy={signup.isPending}>
          Create account
        </Button>
      </form>
      <p className="muted">
        Already have an account? <Link to="/login">Sign in</Link>.
      </p>
    </AuthFrame>
  );
}

type Field = [string, (value: string) => void];

/** A new account's name, e-mail (unless it is already known: an invitation's) and password. */
export function NewAccountFields(props: { name: Field; email?: Field; password: Field }) {
  return (
    <>
      <TextField
        label="Name"
        autoComplete="name"
        required
        value={props.name[0]}
        onChange={(e) => props.name[1](e.target.value)}
      />
      {props.email ? <EmailField value={props.email[0]} onChange={props.email[1]} /> : null}
      <TextField
        label="Password"
        type="password"
        autoComplete="new-password"
        hint="At least 8 characters."
        required
        minLength={8}
        value={props.password[0]}
        onChange={(e) => props.password[1](e.target.value)}
      />
    </>
  );
}
