import { sql } from 'drizzle-orm';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { DAY_MS, MINUTE_MS } from '../../src/core/clock.ts';
import { createTestApp, type SignedUpUser, type TestApp, uniqueEmail } from '../support/app.ts';

const PASSWORD = 'correct horse battery';
const SEVEN_DAYS_MS = 7 * DAY_MS;

let t: TestApp;
beforeAll(async () => {
  t = await createTestApp();
});
afterAll(() => t.close());

interface Invitation {
  id: string;
  team_id: string;
  email: string;
  role: string;
  status: string;
  invited_by: string;
  expires_at: string;
  accepted_at: string | null;
  created_at: string;
  token?: string;
}

async function invite(
  by: { token: string },
  email: string,
  role?: 'admin' | 'member' | 'viewer',
): Promise<Invitation & { token: string }> {
  const res = await t.call('POST', '/v1/invitations', {
    token: by.token,
    body: role ? { email, role } : { email },
  });
  expect(res.status).toBe(201);
  return res.body;
}

/** A fresh session (sessions end 24 h after sign-in, so tests that move the clock sign in again). */
async function login(user: SignedUpUser): Promise<SignedUpUser> {
  const res = await t.call('POST', '/v1/auth/login', {
    body: { email: user.user.email, password: PASSWORD },
  });
  expect(res.status).toBe(200);
  return { ...user, token: res.body.session_token, csrf: res.body.csrf_token };
}

async function getInvitation(by: { token: string }, id: string): Promise<Invitation> {
  const res = await t.call('GET', `/v1/invitations/${id}`, { token: by.token });
  expect(res.status).toBe(200);
  return res.body;
}

async function lookup(token: string) {
  return t.call('GET', '/v1/invitations/lookup', { query: { token } });
}

async function acceptAsNewUser(token: string, name = 'Invitee') {
  return t.call('POST', '/v1/invitations/accept', { body: { token, name, password: PASSWORD } });
}

function plusMs(iso: string | Date, ms: number): string {
  return new Date(new Date(iso).getTime() + ms).toISOString();
}

describe('POST /v1/invitations', () => {
  it('invites to the active team with a pdi_ token shown once, pending for 7 days', async () => {
    const admin = await t.signup({ name: 'Ada' });
    const email = uniqueEmail('invitee');
    const created = await invite(admin, email.toUpperCase());
    expect(created.token).toMatch(/^pdi_/);
    expect(created).toMatchObject({
      team_id: admin.team.id,
      email,
      role: 'member',
      status: 'pending',
      invited_by: admin.user.id,
      accepted_at: null,
      created_at: t.clock.now().toISOString(),
      expires_at: plusMs(t.clock.now(), SEVEN_DAYS_MS),
    });
    expect(created.id).toMatch(/^inv_/);

    const one = await getInvitation(admin, created.id);
    expect(one).not.toHaveProperty('token');
    expect(one).toMatchObject({ id: created.id, status: 'pending', email });
    const list = await t.call('GET', '/v1/invitations', { token: admin.token });
    expect(list.status).toBe(200);
    expect(list.body.data).toHaveLength(1);
    expect(list.body.data[0]).not.toHaveProperty('token');
    expect(JSON.stringify(list.body)).not.toContain(created.token);
  });

  it('takes the viewer and admin roles, never owner', async () => {
    const admin = await t.signup();
    expect((await invite(admin, uniqueEmail(), 'viewer')).role).toBe('viewer');
    expect((await invite(admin, uniqueEmail(), 'admin')).role).toBe('admin');
    const owner = await t.call('POST', '/v1/invitations', {
      token: admin.token,
      body: { email: uniqueEmail(), role: 'owner' },
    });
    expect(owner.status).toBe(400);
    expect(owner.body.error.code).toBe('validation_failed');
  });

  it('is for admins of the active team', async () => {
    const owner = await t.signup();
    const member = await t.signup();
    const viewer = await t.signup();
    for (const [who, role] of [
      [member, 'member'],
      [viewer, 'viewer'],
    ] as const) {
      const added = await t.call('POST', `/v1/teams/${owner.team.id}/members`, {
        token: owner.token,
        body: { email: who.user.email, role },
      });
      expect(added.status).toBe(201);
      const switched = await t.call('POST', '/v1/auth/switch-team', {
        token: who.token,
        body: { team_id: owner.team.id },
      });
      const res = await t.call('POST', '/v1/invitations', {
        token: switched.body.session_token,
        body: { email: uniqueEmail() },
      });
      expect(res.status).toBe(403);
      expect(res.body.error.code).toBe('insufficient_scope');
    }
    const list = await t.call('GET', '/v1/invitations', { token: owner.token });
    expect(list.body.data).toEqual([]);
  });

  it('works with an admin API key, naming the key as inviter', async () => {
    const owner = await t.signup();
    const key = await t.apiKey(owner.token, ['admin']);
    const created = await invite({ token: key.key }, uniqueEmail());
    expect(created.invited_by).toBe(`api_key:${key.id}`);
    expect(created.team_id).toBe(owner.team.id);
    const lookedUp = await lookup(created.token);
    expect(lookedUp.status).toBe(200);
    expect(lookedUp.body.invited_by).toBeNull();
    const write = await t.apiKey(owner.token, ['write']);
    const denied = await t.call('POST', '/v1/invitations', {
      token: write.key,
      body: { email: uniqueEmail() },
    });
    expect(denied.status).toBe(403);
  });

  it('refuses an email that is already a member with 409 already_member', async () => {
    const owner = await t.signup();
    const member = await t.signup();
    await t.call('POST', `/v1/teams/${owner.team.id}/members`, {
      token: owner.token,
      body: { email: member.user.email },
    });
    for (const email of [member.user.email, owner.user.email]) {
      const res = await t.call('POST', '/v1/invitations', { token: owner.token, body: { email } });
      expect(res.status).toBe(409);
      expect(res.body.error.code).toBe('already_member');
    }
  });

  it('refuses a second pending invitation to the same email with 409 invitation_pending', async () => {
    const owner = await t.signup();
    const email = uniqueEmail();
    const first = await invite(owner, email);
    const second = await t.call('POST', '/v1/invitations', {
      token: owner.token,
      body: { email: email.toUpperCase(), role: 'admin' },
    });
    expect(second.status).toBe(409);
    expect(second.body.error.code).toBe('invitation_pending');
    expect(second.body.error.details.invitation_id).toBe(first.id);
    // Another team may invite the same person.
    const other = await t.signup();
    await invite(other, email);
    const list = await t.call('GET', '/v1/invitations', { token: owner.token });
    expect(list.body.data).toHaveLength(1);
  });
});

describe('concurrent invitations', () => {
  it('creates one invitation when the same email is invited several times at once', async () => {
    const owner = await t.signup();
    const email = uniqueEmail();
    const results = await Promise.all(
      [1, 2, 3, 4].map(() => t.call('POST', '/v1/invitations', { token: owner.token, body: { email } })),
    );
    expect(results.map((r) => r.status).sort()).toEqual([201, 409, 409, 409]);
    const list = await t.call('GET', '/v1/invitations', { token: owner.token, query: { status: 'pending' } });
    expect(list.body.data).toHaveLength(1);
  });
});

describe('GET /v1/invitations', () => {
  it('filters by status: pending, accepted, revoked, expired', async () => {
    let owner = await t.signup();
    const expiring = await invite(owner, uniqueEmail('expiring'));
    t.clock.advance(6 * DAY_MS);
    owner = await login(owner);
    const accepted = await invite(owner, uniqueEmail('accepted'));
    const revoked = await invite(owner, uniqueEmail('revoked'));
    const pending = await invite(owner, uniqueEmail('pending'));
    expect((await acceptAsNewUser(accepted.token)).status).toBe(200);
    expect(
      (await t.call('POST', `/v1/invitations/${revoked.id}/revoke`, { token: owner.token })).status,
    ).toBe(200);
    t.clock.advance(DAY_MS + MINUTE_MS);
    owner = await login(owner);

    const ids = async (status?: string) => {
      const res = await t.call('GET', '/v1/invitations', {
        token: owner.token,
        ...(status ? { query: { status } } : {}),
      });
      expect(res.status).toBe(200);
      return res.body.data.map((i: Invitation) => [i.id, i.status]);
    };
    expect(await ids('pending')).toEqual([[pending.id, 'pending']]);
    expect(await ids('accepted')).toEqual([[accepted.id, 'accepted']]);
    expect(await ids('revoked')).toEqual([[revoked.id, 'revoked']]);
    expect(await ids('expired')).toEqual([[expiring.id, 'expired']]);
    const all = new Map(await ids());
    expect(all).toEqual(
      new Map([
        [expiring.id, 'expired'],
        [accepted.id, 'accepted'],
        [revoked.id, 'revoked'],
        [pending.id, 'pending'],
      ]),
    );
    expect((await getInvitation(owner, expiring.id)).status).toBe('expired');

    const bad = await t.call('GET', '/v1/invitations', { token: owner.token, query: { status: 'bogus' } });
    expect(bad.status).toBe(400);
  });

  it('pages with ?limit= and next_cursor without repeats', async () => {
    const owner = await t.signup();
    const made = [];
    for (let i = 0; i < 3; i++) made.push((await invite(owner, uniqueEmail())).id);
    const seen: string[] = [];
    let cursor: string | null = null;
    do {
      const query: Record<string, string> = cursor ? { limit: '1', cursor } : { limit: '1' };
      const page = await t.call('GET', '/v1/invitations', { token: owner.token, query });
      expect(page.status).toBe(200);
      expect(page.body.data.length).toBeLessThanOrEqual(1);
      seen.push(...page.body.data.map((i: Invitation) => i.id));
      cursor = page.body.next_cursor;
    } while (cursor !== null && seen.length < 10);
    expect(seen.sort()).toEqual(made.sort());
  });

  it("shows only the active team's invitations, and another team's is a 404", async () => {
    const a = await t.signup();
    const b = await t.signup();
    const mine = await invite(a, uniqueEmail());
    await invite(b, uniqueEmail());
    const list = await t.call('GET', '/v1/invitations', { token: a.token });
    expect(list.body.data.map((i: Invitation) => i.id)).toEqual([mine.id]);
    const theirs = await t.call('GET', `/v1/invitations/${mine.id}`, { token: b.token });
    expect(theirs.status).toBe(404);
    expect((await t.call('POST', `/v1/invitations/${mine.id}/revoke`, { token: b.token })).status).toBe(404);
    expect((await t.call('POST', `/v1/invitations/${mine.id}/resend`, { token: b.token })).status).toBe(404);
    expect((await getInvitation(a, mine.id)).status).toBe('pending');
  });
});

describe('GET /v1/invitations/lookup', () => {
  it('is public, describes the invitation and does not use it up', async () => {
    const owner = await t.signup({ name: 'Grace' });
    const renamed = await t.call('PATCH', `/v1/teams/${owner.team.id}`, {
      token: owner.token,
      body: { name: 'Compilers' },
    });
    expect(renamed.status).toBe(200);
    const email = uniqueEmail();
    const inv = await invite(owner, email, 'viewer');
    for (let i = 0; i < 2; i++) {
      const res = await lookup(inv.token);
      expect(res.status).toBe(200);
      expect(res.body).toEqual({
        team: { id: owner.team.id, name: 'Compilers' },
        email,
        role: 'viewer',
        invited_by: { name: 'Grace', email: owner.user.email },
        expires_at: inv.expires_at,
        account_exists: false,
      });
    }
    expect((await getInvitation(owner, inv.id)).status).toBe('pending');
    expect((await acceptAsNewUser(inv.token)).status).toBe(200);
  });

  it('says when the invitee already has an account', async () => {
    const owner = await t.signup();
    const existing = await t.signup();
    const inv = await invite(owner, existing.user.email);
    const res = await lookup(inv.token);
    expect(res.status).toBe(200);
    expect(res.body.account_exists).toBe(true);
  });

  it('is a 404 for a token it does not know', async () => {
    const res = await lookup('pdi_not-a-real-token');
    expect(res.status).toBe(404);
    expect((await t.call('GET', '/v1/invitations/lookup')).status).toBe(400);
  });
});

describe('POST /v1/invitations/accept', () => {
  describe('without an account', () => {
    it('creates the account, signs it in and joins the team with the invited role', async () => {
      const owner = await t.signup();
      const email = uniqueEmail();
      const inv = await invite(owner, email, 'viewer');
      const res = await t.call('POST', '/v1/invitations/accept', {
        body: { token: inv.token, name: 'New Person', password: PASSWORD },
      });
      expect(res.status).toBe(200);
      expect(res.body.team).toMatchObject({ id: owner.team.id, role: 'viewer' });
      const session = res.body.session;
      expect(session.session_token).toMatch(/^pds_/);
      expect(session.user).toMatchObject({ email, name: 'New Person', is_admin: false });
      expect(session.team).toMatchObject({ id: owner.team.id, role: 'viewer' });
      expect(session.role).toBe('viewer');
      const cookies = Object.fromEntries(res.cookies.map((c) => [c.name, c.value]));
      expect(cookies.paddock_session).toBe(session.session_token);
      expect(cookies.paddock_csrf).toBe(session.csrf_token);

      const me = await t.call('GET', '/v1/me', { token: session.session_token });
      expect(me.status).toBe(200);
      expect(me.body.team.id).toBe(owner.team.id);
      expect(me.body.role).toBe('viewer');

      const teams = await t.call('GET', '/v1/teams', { token: session.session_token });
      const roles = teams.body.data.map((x: { id: string; role: string }) => [
        x.id === owner.team.id,
        x.role,
      ]);
      expect(roles).toHaveLength(2);
      expect(roles).toContainEqual([true, 'viewer']);
      expect(roles).toContainEqual([false, 'owner']);

      const members = await t.call('GET', `/v1/teams/${owner.team.id}/members`, { token: owner.token });
      expect(members.body.data).toContainEqual(
        expect.objectContaining({ user_id: session.user.id, email, role: 'viewer' }),
      );
      const after = await getInvitation(owner, inv.id);
      expect(after.status).toBe('accepted');
      expect(after.accepted_at).toBe(t.clock.now().toISOString());

      // The password they chose works.
      const login = await t.call('POST', '/v1/auth/login', { body: { email, password: PASSWORD } });
      expect(login.status).toBe(200);
    });

    it('asks for name and password, and leaves the invitation pending without them', async () => {
      const owner = await t.signup();
      const email = uniqueEmail();
      const inv = await invite(owner, email);
      const none = await t.call('POST', '/v1/invitations/accept', { body: { token: inv.token } });
      expect(none.status).toBe(400);
      expect(none.body.error.code).toBe('validation_failed');
      expect(Object.keys(none.body.error.details.fields).sort()).toEqual(['name', 'password']);
      const noPassword = await t.call('POST', '/v1/invitations/accept', {
        body: { token: inv.token, name: 'X' },
      });
      expect(noPassword.status).toBe(400);
      expect(Object.keys(noPassword.body.error.details.fields)).toEqual(['password']);
      const shortPassword = await t.call('POST', '/v1/invitations/accept', {
        body: { token: inv.token, name: 'X', password: 'short' },
      });
      expect(shortPassword.status).toBe(400);
      expect((await getInvitation(owner, inv.id)).status).toBe('pending');
      const login = await t.call('POST', '/v1/auth/login', { body: { email, password: PASSWORD } });
      expect(login.status).toBe(401);
    });
  });

  describe('with an account', () => {
    it('joins the team when the signed-in user is the invitee', async () => {
      const owner = await t.signup();
      const invitee = await t.signup();
      const inv = await invite(owner, invitee.user.email, 'admin');
      const res = await t.call('POST', '/v1/invitations/accept', {
        token: invitee.token,
        body: { token: inv.token },
      });
      expect(res.status).toBe(200);
      expect(res.body.session).toBeNull();
      expect(res.body.team).toMatchObject({ id: owner.team.id, role: 'admin' });
      const team = await t.call('GET', `/v1/teams/${owner.team.id}`, { token: invitee.token });
      expect(team.status).toBe(200);
      expect(team.body.role).toBe('admin');
      expect((await getInvitation(owner, inv.id)).status).toBe('accepted');
    });

    it("refuses another user's session with 403 invitation_email_mismatch", async () => {
      const owner = await t.signup();
      const invitee = await t.signup();
      const someoneElse = await t.signup();
      const inv = await invite(owner, invitee.user.email);
      const res = await t.call('POST', '/v1/invitations/accept', {
        token: someoneElse.token,
        body: { token: inv.token },
      });
      expect(res.status).toBe(403);
      expect(res.body.error.code).toBe('invitation_email_mismatch');
      expect((await t.call('GET', `/v1/teams/${owner.team.id}`, { token: someoneElse.token })).status).toBe(
        404,
      );
      expect((await getInvitation(owner, inv.id)).status).toBe('pending');
    });

    it('asks the invitee to sign in first (409 account_exists) when no session is sent', async () => {
      const owner = await t.signup();
      const invitee = await t.signup();
      const inv = await invite(owner, invitee.user.email);
      const res = await t.call('POST', '/v1/invitations/accept', {
        body: { token: inv.token, name: 'Impostor', password: 'another password' },
      });
      expect(res.status).toBe(409);
      expect(res.body.error.code).toBe('account_exists');
      expect((await getInvitation(owner, inv.id)).status).toBe('pending');
      const login = await t.call('POST', '/v1/auth/login', {
        body: { email: invitee.user.email, password: 'another password' },
      });
      expect(login.status).toBe(401);
    });
  });

  describe('an invitation that can no longer be used', () => {
    it('is a 404 once expired', async () => {
      const owner = await t.signup();
      const inv = await invite(owner, uniqueEmail());
      t.clock.advance(SEVEN_DAYS_MS - MINUTE_MS);
      expect((await lookup(inv.token)).status).toBe(200);
      t.clock.advance(2 * MINUTE_MS);
      expect((await lookup(inv.token)).status).toBe(404);
      const res = await acceptAsNewUser(inv.token);
      expect(res.status).toBe(404);
      expect(res.body.error.code).toBe('not_found');
      const fresh = await login(owner);
      expect((await getInvitation(fresh, inv.id)).status).toBe('expired');
    });

    it('is a 404 once revoked', async () => {
      const owner = await t.signup();
      const invitee = await t.signup();
      const inv = await invite(owner, invitee.user.email);
      expect((await t.call('POST', `/v1/invitations/${inv.id}/revoke`, { token: owner.token })).status).toBe(
        200,
      );
      expect((await lookup(inv.token)).status).toBe(404);
      const res = await t.call('POST', '/v1/invitations/accept', {
        token: invitee.token,
        body: { token: inv.token },
      });
      expect(res.status).toBe(404);
      expect((await t.call('GET', `/v1/teams/${owner.team.id}`, { token: invitee.token })).status).toBe(404);
    });

    it('is a 409 invitation_accepted once accepted', async () => {
      const owner = await t.signup();
      const inv = await invite(owner, uniqueEmail());
      const first = await acceptAsNewUser(inv.token);
      expect(first.status).toBe(200);
      const again = await acceptAsNewUser(inv.token);
      expect(again.status).toBe(409);
      expect(again.body.error.code).toBe('invitation_accepted');
      const withSession = await t.call('POST', '/v1/invitations/accept', {
        token: first.body.session.session_token,
        body: { token: inv.token },
      });
      expect(withSession.status).toBe(409);
      expect(withSession.body.error.code).toBe('invitation_accepted');
      expect((await lookup(inv.token)).status).toBe(409);
    });

    it('is a 410 team_gone once the team is deleted', async () => {
      const owner = await t.signup();
      const created = await t.call('POST', '/v1/teams', { token: owner.token, body: { name: 'Doomed' } });
      const switched = await t.call('POST', '/v1/auth/switch-team', {
        token: owner.token,
        body: { team_id: created.body.id },
      });
      const session = { token: switched.body.session_token as string };
      const invitee = await t.signup();
      const forNew = await invite(session, uniqueEmail());
      const forExisting = await invite(session, invitee.user.email);
      expect((await t.call('DELETE', `/v1/teams/${created.body.id}`, { token: session.token })).status).toBe(
        204,
      );

      const looked = await lookup(forNew.token);
      expect(looked.status).toBe(410);
      expect(looked.body.error.code).toBe('team_gone');
      const byNew = await acceptAsNewUser(forNew.token);
      expect(byNew.status).toBe(410);
      expect(byNew.body.error.code).toBe('team_gone');
      const byExisting = await t.call('POST', '/v1/invitations/accept', {
        token: invitee.token,
        body: { token: forExisting.token },
      });
      expect(byExisting.status).toBe(410);
      expect(byExisting.body.error.code).toBe('team_gone');
      const teams = await t.call('GET', '/v1/teams', { token: invitee.token });
      expect(teams.body.data.map((x: { id: string }) => x.id)).toEqual([invitee.team.id]);
    });
  });
});

describe('POST /v1/invitations/{id}/revoke', () => {
  it('revokes a pending invitation once', async () => {
    const owner = await t.signup();
    const email = uniqueEmail();
    const inv = await invite(owner, email);
    const res = await t.call('POST', `/v1/invitations/${inv.id}/revoke`, { token: owner.token });
    expect(res.status).toBe(200);
    expect(res.body).toMatchObject({ id: inv.id, status: 'revoked' });
    expect(res.body).not.toHaveProperty('token');
    const again = await t.call('POST', `/v1/invitations/${inv.id}/revoke`, { token: owner.token });
    expect(again.status).toBe(409);
    expect(again.body.error.code).toBe('invitation_not_pending');
    // A revoked invitation does not block a new one.
    const fresh = await invite(owner, email);
    expect(fresh.id).not.toBe(inv.id);
  });

  it('cannot revoke an accepted invitation, and is for admins only', async () => {
    const owner = await t.signup();
    const inv = await invite(owner, uniqueEmail());
    const accepted = await acceptAsNewUser(inv.token);
    expect(accepted.status).toBe(200);
    const res = await t.call('POST', `/v1/invitations/${inv.id}/revoke`, { token: owner.token });
    expect(res.status).toBe(409);
    expect(res.body.error.code).toBe('invitation_not_pending');

    // The new member is in the team as a member: not allowed to revoke.
    const other = await invite(owner, uniqueEmail());
    const memberSession = accepted.body.session.session_token;
    const denied = await t.call('POST', `/v1/invitations/${other.id}/revoke`, { token: memberSession });
    expect(denied.status).toBe(403);
    expect(denied.body.error.code).toBe('insufficient_scope');
    expect((await getInvitation(owner, other.id)).status).toBe('pending');
  });
});

describe('POST /v1/invitations/{id}/resend', () => {
  it('issues a new token, retires the old one and restarts the 7 days', async () => {
    let owner = await t.signup();
    const inv = await invite(owner, uniqueEmail(), 'viewer');
    t.clock.advance(3 * DAY_MS);
    owner = await login(owner);
    const res = await t.call('POST', `/v1/invitations/${inv.id}/resend`, { token: owner.token });
    expect(res.status).toBe(200);
    expect(res.body.token).toMatch(/^pdi_/);
    expect(res.body.token).not.toBe(inv.token);
    expect(res.body).toMatchObject({
      id: inv.id,
      status: 'pending',
      role: 'viewer',
      created_at: inv.created_at,
      expires_at: plusMs(t.clock.now(), SEVEN_DAYS_MS),
    });
    expect((await lookup(inv.token)).status).toBe(404);
    expect((await acceptAsNewUser(inv.token)).status).toBe(404);
    const looked = await lookup(res.body.token);
    expect(looked.status).toBe(200);
    expect(looked.body.expires_at).toBe(res.body.expires_at);

    // Still usable after the first 7 days have passed.
    t.clock.advance(5 * DAY_MS);
    const accepted = await acceptAsNewUser(res.body.token);
    expect(accepted.status).toBe(200);
    expect(accepted.body.team.role).toBe('viewer');
  });

  it('revives an expired pending invitation', async () => {
    let owner = await t.signup();
    const inv = await invite(owner, uniqueEmail());
    t.clock.advance(SEVEN_DAYS_MS + MINUTE_MS);
    owner = await login(owner);
    expect((await getInvitation(owner, inv.id)).status).toBe('expired');
    const res = await t.call('POST', `/v1/invitations/${inv.id}/resend`, { token: owner.token });
    expect(res.status).toBe(200);
    expect(res.body.status).toBe('pending');
    expect(res.body.expires_at).toBe(plusMs(t.clock.now(), SEVEN_DAYS_MS));
    expect((await getInvitation(owner, inv.id)).status).toBe('pending');
    expect((await acceptAsNewUser(res.body.token)).status).toBe(200);
  });

  it('does not revive an expired invitation when a newer one is pending for the same email', async () => {
    let owner = await t.signup();
    const email = uniqueEmail();
    const old = await invite(owner, email);
    t.clock.advance(SEVEN_DAYS_MS + MINUTE_MS);
    owner = await login(owner);
    const newer = await invite(owner, email);
    const res = await t.call('POST', `/v1/invitations/${old.id}/resend`, { token: owner.token });
    expect(res.status).toBe(409);
    expect(res.body.error.code).toBe('invitation_pending');
    expect(res.body.error.details.invitation_id).toBe(newer.id);
    const pending = await t.call('GET', '/v1/invitations', {
      token: owner.token,
      query: { status: 'pending' },
    });
    expect(pending.body.data.map((i: Invitation) => i.id)).toEqual([newer.id]);
    // Resending the live one is fine.
    expect((await t.call('POST', `/v1/invitations/${newer.id}/resend`, { token: owner.token })).status).toBe(
      200,
    );
  });

  it('refuses accepted and revoked invitations with 409', async () => {
    const owner = await t.signup();
    const accepted = await invite(owner, uniqueEmail());
    expect((await acceptAsNewUser(accepted.token)).status).toBe(200);
    const revoked = await invite(owner, uniqueEmail());
    expect(
      (await t.call('POST', `/v1/invitations/${revoked.id}/revoke`, { token: owner.token })).status,
    ).toBe(200);
    for (const inv of [accepted, revoked]) {
      const res = await t.call('POST', `/v1/invitations/${inv.id}/resend`, { token: owner.token });
      expect(res.status).toBe(409);
      expect(res.body.error.code).toBe('invitation_not_pending');
    }
    expect((await lookup(revoked.token)).status).toBe(404);
  });
});

describe('events outbox', () => {
  it('records invitation and member events in the invited team', async () => {
    const owner = await t.signup();
    const other = await t.signup();
    const invitee = await t.signup();
    const inv = await invite(owner, invitee.user.email);
    await invite(other, uniqueEmail());
    expect((await t.call('POST', `/v1/invitations/${inv.id}/resend`, { token: owner.token })).status).toBe(
      200,
    );
    const resent = await t.call('POST', `/v1/invitations/${inv.id}/resend`, { token: owner.token });
    const accepted = await t.call('POST', '/v1/invitations/accept', {
      token: invitee.token,
      body: { token: resent.body.token },
    });
    expect(accepted.status).toBe(200);

    const result = (await t.database.db.execute(
      sql`select type, team_id, actor_id, data from events where subject_id = ${inv.id}`,
    )) as unknown as { rows: Array<{ type: string; team_id: string; actor_id: string; data: unknown }> };
    expect(result.rows.map((r) => r.type).sort()).toEqual([
      'invitation.accepted',
      'invitation.created',
      'invitation.resent',
      'invitation.resent',
    ]);
    for (const row of result.rows) expect(row.team_id).toBe(owner.team.id);
    const acceptedRow = result.rows.find((r) => r.type === 'invitation.accepted')!;
    expect(acceptedRow.actor_id).toBe(invitee.user.id);
    expect(acceptedRow.data).toEqual({ email: invitee.user.email, user_id: invitee.user.id });
    const createdRow = result.rows.find((r) => r.type === 'invitation.created')!;
    expect(createdRow.actor_id).toBe(owner.user.id);
    expect(JSON.stringify(result.rows)).not.toContain(inv.token);
  });
});

describe('signup by invitation (PADDOCK_SIGNUP=invite)', () => {
  let ti: TestApp;
  let firstToken: string;
  let teamId: string;
  const signup = (body: Record<string, string>) => ti.call('POST', '/v1/auth/signup', { body });
  const inviteIn = async (email: string, role: 'admin' | 'member' | 'viewer') => {
    const res = await ti.call('POST', '/v1/invitations', { token: firstToken, body: { email, role } });
    expect(res.status).toBe(201);
    return res.body as Invitation & { token: string };
  };

  beforeAll(async () => {
    ti = await createTestApp({ env: { PADDOCK_SIGNUP: 'invite' } });
    const first = await signup({ email: uniqueEmail('first'), name: 'First', password: PASSWORD });
    expect(first.status).toBe(201);
    expect(first.body.user.is_admin).toBe(true);
    firstToken = first.body.session_token;
    teamId = first.body.team.id;
  });
  afterAll(() => ti.close());

  it('refuses anyone else without an invitation', async () => {
    const uninvited = await signup({ email: uniqueEmail('stranger'), name: 'Stranger', password: PASSWORD });
    expect(uninvited.status).toBe(403);
    expect(uninvited.body.error.code).toBe('signup_closed');
    const bogus = await signup({
      email: uniqueEmail('stranger'),
      name: 'Stranger',
      password: PASSWORD,
      invitation_token: 'pdi_bogus',
    });
    expect(bogus.status).toBe(404);
  });

  it('lets an invitee sign up with the token for their own email, into the invited team', async () => {
    const email = uniqueEmail('invitee');
    const inv = await inviteIn(email, 'admin');

    const wrongEmail = await signup({
      email: uniqueEmail('other'),
      name: 'Other',
      password: PASSWORD,
      invitation_token: inv.token,
    });
    expect(wrongEmail.status).toBe(403);
    expect(wrongEmail.body.error.code).toBe('invitation_email_mismatch');
    expect((await ti.call('GET', `/v1/invitations/${inv.id}`, { token: firstToken })).body.status).toBe(
      'pending',
    );

    const ok = await signup({
      email: email.toUpperCase(),
      name: 'Invitee',
      password: PASSWORD,
      invitation_token: inv.token,
    });
    expect(ok.status).toBe(201);
    expect(ok.body.user).toMatchObject({ email, is_admin: false });
    expect(ok.body.team).toMatchObject({ id: teamId, role: 'admin' });
    const teams = await ti.call('GET', '/v1/teams', { token: ok.body.session_token });
    expect(teams.body.data).toHaveLength(2);
    expect((await ti.call('GET', `/v1/invitations/${inv.id}`, { token: firstToken })).body.status).toBe(
      'accepted',
    );

    const reuse = await signup({
      email: uniqueEmail('late'),
      name: 'Late',
      password: PASSWORD,
      invitation_token: inv.token,
    });
    expect(reuse.status).toBe(409);
    expect(reuse.body.error.code).toBe('invitation_accepted');
  });

  it('lets an invitee without an account join through POST /v1/invitations/accept', async () => {
    const email = uniqueEmail('accepter');
    const inv = await inviteIn(email, 'viewer');
    const res = await ti.call('POST', '/v1/invitations/accept', {
      body: { token: inv.token, name: 'Accepter', password: PASSWORD },
    });
    expect(res.status).toBe(200);
    expect(res.body.team).toMatchObject({ id: teamId, role: 'viewer' });
    expect(res.body.session.user.email).toBe(email);
  });
});
