import { useMutation, useQueryClient } from '@tanstack/react-query';
import { type FormEvent, useState } from 'react';
import { Link, useNavigate } from 'react-router';
import { api, unwrap } from '../api.ts';
import { Button, ErrorNote, TextField } from '../ui.tsx';

function AuthFrame(props: { title: string; children: React.ReactNode }) {
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

/** After signing in: the cookies are set; whatever was cached belonged to no one or someone else. */
function useSignedIn() {
  const client = useQueryClient();
  const navigate = useNavigate();
  return () => {
    client.clear();
    void navigate('/');
  };
}

export function LoginPage() {
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
        <TextField
          label="Email"
          type="email"
          autoComplete="email"
          required
          value={email}
          onChange={(e) => setEmail(e.target.value)}
        />
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
        No account yet? <Link to="/signup">Create one</Link>.
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
        <TextField
          label="Name"
          autoComplete="name"
          required
          value={name}
          onChange={(e) => setName(e.target.value)}
        />
        <TextField
          label="Email"
          type="email"
          autoComplete="email"
          required
          value={email}
          onChange={(e) => setEmail(e.target.value)}
        />
        <TextField
          label="Password"
          type="password"
          autoComplete="new-password"
          hint="At least 8 characters."
          required
          minLength={8}
          value={password}
          onChange={(e) => setPassword(e.target.value)}
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
