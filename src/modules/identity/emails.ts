import { escapeHtml } from '../mail/html.ts';
import type { OutgoingMail } from '../mail/service.ts';

// The words of identity's e-mails. Every link points at the server's public
// address (PADDOCK_PUBLIC_URL) and carries its token in the query string;
// Paddock's own log never writes query strings.

function link(base: string, path: string, token: string): string {
  return `${base.replace(/\/+$/, '')}${path}?token=${encodeURIComponent(token)}`;
}

function mail(
  to: string,
  kind: OutgoingMail['kind'],
  subject: string,
  lines: string[],
  action: { label: string; url: string },
  after: string,
): OutgoingMail {
  const text = [...lines, '', `${action.label}: ${action.url}`, '', after].join('\n');
  const html = [
    ...lines.map((l) => `<p>${escapeHtml(l)}</p>`),
    `<p><a href="${escapeHtml(action.url)}">${escapeHtml(action.label)}</a></p>`,
    `<p>${escapeHtml(after)}</p>`,
  ].join('\n');
  return { to, kind, subject, text, html };
}

export function invitationMail(
  base: string,
  invitation: { email: string; teamName: string; role: string; inviterName: string | null },
  token: string,
): OutgoingMail {
  const who = invitation.inviterName ?? 'A team admin';
  return mail(
    invitation.email,
    'invitation',
    `You are invited to join ${invitation.teamName} on Paddock`,
    [`${who} invited you to join the team ${invitation.teamName} on Paddock as ${invitation.role}.`],
    { label: 'Accept the invitation', url: link(base, '/accept-invitation', token) },
    'The invitation expires in 7 days. If you did not expect it, ignore this e-mail.',
  );
}

export function passwordResetMail(base: string, email: string, token: string): OutgoingMail {
  return mail(
    email,
    'password_reset',
    'Reset your Paddock password',
    ['Someone (we hope you) asked to reset the password of your Paddock account.'],
    { label: 'Choose a new password', url: link(base, '/reset-password', token) },
    'The link works once and expires in 30 minutes. If you did not ask, ignore this e-mail: your password stays as it is.',
  );
}

export function magicLinkMail(base: string, email: string, token: string): OutgoingMail {
  return mail(
    email,
    'magic_link',
    'Your Paddock sign-in link',
    ['Use this link to sign in to Paddock.'],
    { label: 'Sign in', url: link(base, '/magic-link', token) },
    'The link works once and expires in 15 minutes. If you did not ask for it, ignore this e-mail.',
  );
}
