import { useMutation } from '@tanstack/react-query';
import { type FormEvent, useState } from 'react';
import { Link, useSearchParams } from 'react-router';
import { api, unwrap } from '../api.ts';
import { Button, ErrorNote, TextField } from '../ui.tsx';
import { AuthFrame, EmailLinkRequest } from './auth.tsx';
import './pages-extra.css';

/** "Forgot password?": asks for a reset link by e-mail (POST /v1/auth/password-reset/start). */
export function PasswordResetRequest(props: { onBack: () => void }) {
  return (
    <EmailLinkRequest
      title="Reset your password"
      intro="We e-mail you a link where you choose a new password."
      lifetime="30 minutes"
      askLabel="E-mail me a reset link"
      send={(email) => unwrap(api.POST('/v1/auth/password-reset/start', { body: { email } }))}
      back={{ label: 'Back to sign in', onClick: props.onBack }}
    />
  );
}

/**
 * Where the e-mailed reset link lands (/reset-password?token=pdpw_…): a new
 * password, twice. Setting it ends every session of the account, so the page
 * then leads to the sign-in page.
 */
export function ResetPasswordPage() {
  const [params] = useSearchParams();
  const token = params.get('token') ?? '';
  const [password, setPassword] = useState('');
  const [again, setAgain] = useState('');
  const [mismatch, setMismatch] = useState(false);
  const complete = useMutation({
    mutationFn: () => unwrap(api.POST('/v1/auth/password-reset/complete', { body: { token, password } })),
  });
  const submit = (e: FormEvent) => {
    e.preventDefault();
    setMismatch(password !== again);
    if (password === again) complete.mutate();
  };
  if (complete.isSuccess)
    return (
      <AuthFrame title="Password changed">
        <div className="note note-ok" role="status">
          Your new password is set, and every session of your account has ended.
        </div>
        <p>
          <Link to="/login">Sign in with your new password</Link>
        </p>
      </AuthFrame>
    );
  return (
    <AuthFrame title="Choose a new password">
      {token === '' ? (
        <div className="note note-error" role="alert">
          This page needs the link from your e-mail, with its token. Open the link again, or ask for a new
          one.
        </div>
      ) : (
        <form onSubmit={submit}>
          <TextField
            label="New password"
            type="password"
            autoComplete="new-password"
            hint="At least 8 characters."
            required
            minLength={8}
            value={password}
            onChange={(e) => setPassword(e.target.value)}
          />
          <TextField
            label="New password again"
            type="password"
            autoComplete="new-password"
            required
            value={again}
            onChange={(e) => setAgain(e.target.value)}
          />
          {mismatch ? (
            <div className="note note-error" role="alert">
              The two passwords differ.
            </div>
          ) : null}
          <ErrorNote error={complete.error} />
          <Button type="submit" variant="primary" busy={complete.isPending}>
            Set password
          </Button>
        </form>
      )}
      <p className="muted">
        <Link to="/login?with=reset">Ask for a new link</Link> or <Link to="/login">sign in</Link>.
      </p>
    </AuthFrame>
  );
}
