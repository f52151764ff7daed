import { statusAt } from '../../core/expiry.ts';
import type { Role } from './principal.ts';
import type { InvitationRow, SessionRow, TeamRow, UserRow } from './repo.ts';

// The JSON each identity object is answered as (snake_case, ISO times).

export function iso(d: Date): string;
export function iso(d: Date | null): string | null;
export function iso(d: Date | null): string | null {
  return d === null ? null : d.toISOString();
}

export function userView(u: UserRow) {
  return { id: u.id, email: u.email, name: u.name, is_admin: u.isAdmin, created_at: iso(u.createdAt) };
}
export type UserView = ReturnType<typeof userView>;

export function teamView(t: TeamRow, role: Role | null) {
  return {
    id: t.id,
    name: t.name,
    slug: t.slug,
    role,
    created_at: iso(t.createdAt),
    updated_at: iso(t.updatedAt),
  };
}
export type TeamView = ReturnType<typeof teamView>;

export function memberView(m: { user: UserRow; role: Role; joinedAt: Date }) {
  return {
    user_id: m.user.id,
    email: m.user.email,
    name: m.user.name,
    role: m.role,
    joined_at: iso(m.joinedAt),
  };
}

export function sessionView(s: SessionRow, currentId: string | undefined) {
  return {
    id: s.id,
    team_id: s.teamId,
    user_agent: s.userAgent,
    ip_address: s.ipAddress,
    created_at: iso(s.createdAt),
    last_seen_at: iso(s.lastSeenAt),
    expires_at: iso(s.expiresAt),
    current: s.id === currentId,
  };
}

export function invitationView(i: InvitationRow, now: Date) {
  return {
    id: i.id,
    team_id: i.teamId,
    email: i.email,
    role: i.role,
    status: statusAt(i, now),
    invited_by: i.invitedBy,
    expires_at: iso(i.expiresAt),
    accepted_at: iso(i.acceptedAt),
    created_at: iso(i.createdAt),
  };
}
