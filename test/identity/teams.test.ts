import { sql } from 'drizzle-orm';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { createTestApp, type SignedUpUser, type TestApp } from '../support/app.ts';

type InvitableRole = 'admin' | 'member' | 'viewer';

let t: TestApp;
beforeAll(async () => {
  t = await createTestApp();
});
afterAll(() => t.close());

/** A user's current session token for `teamId` as the active team (switching rotates the token). */
async function switchTo(user: SignedUpUser, teamId: string): Promise<SignedUpUser> {
  const res = await t.call('POST', '/v1/auth/switch-team', { token: user.token, body: { team_id: teamId } });
  expect(res.status).toBe(200);
  return { ...user, token: res.body.session_token };
}

async function addMember(by: SignedUpUser, teamId: string, who: SignedUpUser, role?: InvitableRole) {
  const res = await t.call('POST', `/v1/teams/${teamId}/members`, {
    token: by.token,
    body: role ? { email: who.user.email, role } : { email: who.user.email },
  });
  expect(res.status).toBe(201);
  return res.body;
}

async function createTeam(by: SignedUpUser, name = 'Research') {
  const res = await t.call('POST', '/v1/teams', { token: by.token, body: { name } });
  expect(res.status).toBe(201);
  return res.body as { id: string; name: string; slug: string; role: string };
}

/** A fresh team with an owner and one user of each other role. */
async function teamOfFour() {
  const owner = await t.signup({ name: 'Owner' });
  const admin = await t.signup({ name: 'Admin' });
  const member = await t.signup({ name: 'Member' });
  const viewer = await t.signup({ name: 'Viewer' });
  const team = await createTeam(owner, 'Shared');
  await addMember(owner, team.id, admin, 'admin');
  await addMember(owner, team.id, member, 'member');
  await addMember(owner, team.id, viewer, 'viewer');
  return { owner, admin, member, viewer, team };
}

async function members(token: string, teamId: string): Promise<Array<{ user_id: string; role: string }>> {
  const res = await t.call('GET', `/v1/teams/${teamId}/members`, { token });
  expect(res.status).toBe(200);
  return res.body.data;
}

describe('POST /v1/teams', () => {
  it('creates a team with the caller as its owner', async () => {
    const u = await t.signup();
    const res = await t.call('POST', '/v1/teams', { token: u.token, body: { name: '  Research  ' } });
    expect(res.status).toBe(201);
    expect(res.body).toMatchObject({ name: 'Research', role: 'owner' });
    expect(res.body.id).toMatch(/^team_/);
    expect(res.body.slug).toMatch(/^[0-9a-f]{6}-[0-9a-f]{6}$/);
    const list = await members(u.token, res.body.id);
    expect(list).toEqual([
      expect.objectContaining({ user_id: u.user.id, email: u.user.email, role: 'owner' }),
    ]);
  });

  it('gives every team its own slug', async () => {
    const u = await t.signup();
    const a = await createTeam(u, 'Same name');
    const b = await createTeam(u, 'Same name');
    expect(a.slug).not.toBe(b.slug);
    expect(a.slug).not.toBe(u.team.slug);
  });

  it('refuses a blank name, API keys and anonymous callers', async () => {
    const u = await t.signup();
    const blank = await t.call('POST', '/v1/teams', { token: u.token, body: { name: '   ' } });
    expect(blank.status).toBe(400);
    expect(blank.body.error.code).toBe('validation_failed');
    const missing = await t.call('POST', '/v1/teams', { token: u.token, body: {} });
    expect(missing.status).toBe(400);
    const key = await t.apiKey(u.token, ['admin']);
    const byKey = await t.call('POST', '/v1/teams', { token: key.key, body: { name: 'Nope' } });
    expect(byKey.status).toBe(403);
    expect(byKey.body.error.code).toBe('session_required');
    const anonymous = await t.call('POST', '/v1/teams', { body: { name: 'Nope' } });
    expect(anonymous.status).toBe(401);
  });
});

describe('GET /v1/teams', () => {
  it("lists only the caller's teams, each with the caller's role", async () => {
    const me = await t.signup();
    const other = await t.signup();
    const mine = await createTeam(me, 'Mine');
    const theirs = await createTeam(other, 'Theirs');
    const notMine = await createTeam(other, 'Not mine');
    await addMember(other, theirs.id, me, 'viewer');

    const res = await t.call('GET', '/v1/teams', { token: me.token });
    expect(res.status).toBe(200);
    expect(res.body.next_cursor).toBeNull();
    const roles = Object.fromEntries(res.body.data.map((x: { id: string; role: string }) => [x.id, x.role]));
    expect(roles).toEqual({ [me.team.id]: 'owner', [mine.id]: 'owner', [theirs.id]: 'viewer' });
    expect(roles[notMine.id]).toBeUndefined();
    expect(roles[other.team.id]).toBeUndefined();
  });

  it('walks every team exactly once with ?limit=1 and next_cursor', async () => {
    const me = await t.signup();
    const other = await t.signup();
    await createTeam(me, 'A');
    await createTeam(me, 'B');
    const shared = await createTeam(other, 'C');
    await addMember(other, shared.id, me);

    const all = await t.call('GET', '/v1/teams', { token: me.token });
    expect(all.body.data).toHaveLength(4);

    const seen: string[] = [];
    let cursor: string | null = null;
    let pages = 0;
    do {
      const query: Record<string, string> = cursor ? { limit: '1', cursor } : { limit: '1' };
      const page = await t.call('GET', '/v1/teams', { token: me.token, query });
      expect(page.status).toBe(200);
      expect(page.body.data).toHaveLength(1);
      seen.push(page.body.data[0].id);
      cursor = page.body.next_cursor;
      pages += 1;
      expect(pages).toBeLessThanOrEqual(4);
    } while (cursor !== null);

    expect(seen).toHaveLength(4);
    expect(new Set(seen).size).toBe(4);
    expect(new Set(seen)).toEqual(new Set(all.body.data.map((x: { id: string }) => x.id)));
  });

  it('shows an API key only its own team, with no role', async () => {
    const me = await t.signup();
    await createTeam(me, 'Another of mine');
    const key = await t.apiKey(me.token, ['read']);
    const res = await t.call('GET', '/v1/teams', { token: key.key });
    expect(res.status).toBe(200);
    expect(res.body.data).toEqual([expect.objectContaining({ id: me.team.id, role: null })]);
    expect(res.body.next_cursor).toBeNull();
  });
});

describe('GET /v1/teams/{id}', () => {
  it('lets every member read the team, with their own role', async () => {
    const { owner, admin, member, viewer, team } = await teamOfFour();
    for (const [who, role] of [
      [owner, 'owner'],
      [admin, 'admin'],
      [member, 'member'],
      [viewer, 'viewer'],
    ] as const) {
      const res = await t.call('GET', `/v1/teams/${team.id}`, { token: who.token });
      expect(res.status).toBe(200);
      expect(res.body).toMatchObject({ id: team.id, name: 'Shared', slug: team.slug, role });
    }
  });

  it('is a 404 for outsiders and for API keys of other teams', async () => {
    const { team } = await teamOfFour();
    const outsider = await t.signup();
    const res = await t.call('GET', `/v1/teams/${team.id}`, { token: outsider.token });
    expect(res.status).toBe(404);
    expect(res.body.error.code).toBe('not_found');
    const key = await t.apiKey(outsider.token, ['admin']);
    expect((await t.call('GET', `/v1/teams/${team.id}`, { token: key.key })).status).toBe(404);
    expect((await t.call('GET', `/v1/teams/${team.id}/members`, { token: key.key })).status).toBe(404);
    expect((await t.call('GET', '/v1/teams/team_doesnotexist', { token: outsider.token })).status).toBe(404);
  });
});

describe('PATCH /v1/teams/{id}', () => {
  it('lets the owner and admins rename the team', async () => {
    const { owner, admin, member, team } = await teamOfFour();
    const byAdmin = await t.call('PATCH', `/v1/teams/${team.id}`, {
      token: admin.token,
      body: { name: ' Renamed ' },
    });
    expect(byAdmin.status).toBe(200);
    expect(byAdmin.body).toMatchObject({ id: team.id, name: 'Renamed', slug: team.slug, role: 'admin' });
    const seen = await t.call('GET', `/v1/teams/${team.id}`, { token: member.token });
    expect(seen.body.name).toBe('Renamed');

    const byOwner = await t.call('PATCH', `/v1/teams/${team.id}`, {
      token: owner.token,
      body: { name: 'Renamed again' },
    });
    expect(byOwner.status).toBe(200);
    expect(byOwner.body.name).toBe('Renamed again');
  });

  it('refuses members and viewers with 403 and outsiders with 404, leaving the name', async () => {
    const { member, viewer, owner, team } = await teamOfFour();
    for (const who of [member, viewer]) {
      const res = await t.call('PATCH', `/v1/teams/${team.id}`, {
        token: who.token,
        body: { name: 'Hijacked' },
      });
      expect(res.status).toBe(403);
      expect(res.body.error.code).toBe('insufficient_scope');
    }
    const outsider = await t.signup();
    const res = await t.call('PATCH', `/v1/teams/${team.id}`, {
      token: outsider.token,
      body: { name: 'Hijacked' },
    });
    expect(res.status).toBe(404);
    const after = await t.call('GET', `/v1/teams/${team.id}`, { token: owner.token });
    expect(after.body.name).toBe('Shared');
  });

  it('follows the scope of an API key of the team', async () => {
    const owner = await t.signup();
    const write = await t.apiKey(owner.token, ['write']);
    const admin = await t.apiKey(owner.token, ['admin']);
    const denied = await t.call('PATCH', `/v1/teams/${owner.team.id}`, {
      token: write.key,
      body: { name: 'X' },
    });
    expect(denied.status).toBe(403);
    expect(denied.body.error.code).toBe('insufficient_scope');
    const ok = await t.call('PATCH', `/v1/teams/${owner.team.id}`, {
      token: admin.key,
      body: { name: 'By key' },
    });
    expect(ok.status).toBe(200);
    expect(ok.body.name).toBe('By key');
  });
});

describe('DELETE /v1/teams/{id}', () => {
  it('is for the owner only', async () => {
    const { owner, admin, member, team } = await teamOfFour();
    for (const who of [admin, member]) {
      const res = await t.call('DELETE', `/v1/teams/${team.id}`, { token: who.token });
      expect(res.status).toBe(403);
      expect(res.body.error.code).toBe('owner_required');
    }
    const ownerSession = await switchTo(owner, team.id);
    const key = await t.apiKey(ownerSession.token, ['admin']);
    const byKey = await t.call('DELETE', `/v1/teams/${team.id}`, { token: key.key });
    expect(byKey.status).toBe(403);
    expect(byKey.body.error.code).toBe('owner_required');
    const outsider = await t.signup();
    expect((await t.call('DELETE', `/v1/teams/${team.id}`, { token: outsider.token })).status).toBe(404);
    expect((await t.call('GET', `/v1/teams/${team.id}`, { token: admin.token })).status).toBe(200);
  });

  it('makes the team a 404 for everyone and stops its API keys', async () => {
    const { owner, admin, member, viewer, team } = await teamOfFour();
    const ownerSession = await switchTo(owner, team.id);
    const key = await t.apiKey(ownerSession.token, ['admin']);
    expect((await t.call('GET', '/v1/teams', { token: key.key })).status).toBe(200);

    const res = await t.call('DELETE', `/v1/teams/${team.id}`, { token: ownerSession.token });
    expect(res.status).toBe(204);

    for (const who of [ownerSession, admin, member, viewer]) {
      const get = await t.call('GET', `/v1/teams/${team.id}`, { token: who.token });
      expect(get.status).toBe(404);
      expect((await t.call('GET', `/v1/teams/${team.id}/members`, { token: who.token })).status).toBe(404);
      const list = await t.call('GET', '/v1/teams', { token: who.token });
      expect(list.body.data.map((x: { id: string }) => x.id)).not.toContain(team.id);
    }
    expect(
      (await t.call('PATCH', `/v1/teams/${team.id}`, { token: ownerSession.token, body: { name: 'X' } }))
        .status,
    ).toBe(404);
    expect((await t.call('DELETE', `/v1/teams/${team.id}`, { token: ownerSession.token })).status).toBe(404);

    const byKey = await t.call('GET', '/v1/teams', { token: key.key });
    expect(byKey.status).toBe(401);

    // The owner's session was in the deleted team: it no longer has an active team.
    const keys = await t.call('GET', '/v1/api-keys', { token: ownerSession.token });
    expect(keys.status).toBe(403);
    expect(keys.body.error.code).toBe('no_active_team');
    // Their personal team is untouched.
    expect((await t.call('GET', `/v1/teams/${owner.team.id}`, { token: ownerSession.token })).status).toBe(
      200,
    );
  });
});

describe('members', () => {
  it('lists every member with their role, for any member, and 404 for outsiders', async () => {
    const { owner, admin, member, viewer, team } = await teamOfFour();
    const list = await members(viewer.token, team.id);
    const roles = Object.fromEntries(list.map((m) => [m.user_id, m.role]));
    expect(roles).toEqual({
      [owner.user.id]: 'owner',
      [admin.user.id]: 'admin',
      [member.user.id]: 'member',
      [viewer.user.id]: 'viewer',
    });
    const outsider = await t.signup();
    expect((await t.call('GET', `/v1/teams/${team.id}/members`, { token: outsider.token })).status).toBe(404);
  });

  it('pages through members without repeats', async () => {
    const { owner, team } = await teamOfFour();
    const seen: string[] = [];
    let cursor: string | null = null;
    do {
      const query: Record<string, string> = cursor ? { limit: '3', cursor } : { limit: '3' };
      const page = await t.call('GET', `/v1/teams/${team.id}/members`, { token: owner.token, query });
      expect(page.status).toBe(200);
      seen.push(...page.body.data.map((m: { user_id: string }) => m.user_id));
      cursor = page.body.next_cursor;
    } while (cursor !== null);
    expect(seen).toHaveLength(4);
    expect(new Set(seen).size).toBe(4);
  });

  describe('POST /v1/teams/{id}/members', () => {
    it('adds an existing account by email, as member by default', async () => {
      const { admin, team } = await teamOfFour();
      const newcomer = await t.signup({ name: 'Newcomer' });
      const res = await t.call('POST', `/v1/teams/${team.id}/members`, {
        token: admin.token,
        body: { email: newcomer.user.email.toUpperCase() },
      });
      expect(res.status).toBe(201);
      expect(res.body).toMatchObject({
        user_id: newcomer.user.id,
        email: newcomer.user.email,
        name: 'Newcomer',
        role: 'member',
      });
      expect(res.body.joined_at).toBe(t.clock.now().toISOString());
      const seen = await t.call('GET', `/v1/teams/${team.id}`, { token: newcomer.token });
      expect(seen.status).toBe(200);
      expect(seen.body.role).toBe('member');
    });

    it('accepts the viewer and admin roles and refuses owner', async () => {
      const { owner, team } = await teamOfFour();
      const a = await t.signup();
      const b = await t.signup();
      const c = await t.signup();
      expect((await addMember(owner, team.id, a, 'viewer')).role).toBe('viewer');
      expect((await addMember(owner, team.id, b, 'admin')).role).toBe('admin');
      const res = await t.call('POST', `/v1/teams/${team.id}/members`, {
        token: owner.token,
        body: { email: c.user.email, role: 'owner' },
      });
      expect(res.status).toBe(400);
      expect(res.body.error.code).toBe('validation_failed');
      expect((await t.call('GET', `/v1/teams/${team.id}`, { token: c.token })).status).toBe(404);
      const owners = (await members(owner.token, team.id)).filter((m) => m.role === 'owner');
      expect(owners).toEqual([expect.objectContaining({ user_id: owner.user.id })]);
    });

    it('is for admins and owners only', async () => {
      const { member, viewer, team } = await teamOfFour();
      const newcomer = await t.signup();
      for (const who of [member, viewer]) {
        const res = await t.call('POST', `/v1/teams/${team.id}/members`, {
          token: who.token,
          body: { email: newcomer.user.email },
        });
        expect(res.status).toBe(403);
        expect(res.body.error.code).toBe('insufficient_scope');
      }
      const outsider = await t.signup();
      const res = await t.call('POST', `/v1/teams/${team.id}/members`, {
        token: outsider.token,
        body: { email: newcomer.user.email },
      });
      expect(res.status).toBe(404);
      expect((await t.call('GET', `/v1/teams/${team.id}`, { token: newcomer.token })).status).toBe(404);
    });

    it('answers 404 for an unknown email and 409 already_member for a member', async () => {
      const { owner, member, team } = await teamOfFour();
      const unknown = await t.call('POST', `/v1/teams/${team.id}/members`, {
        token: owner.token,
        body: { email: 'nobody-here@example.com' },
      });
      expect(unknown.status).toBe(404);
      expect(unknown.body.error.code).toBe('not_found');
      const again = await t.call('POST', `/v1/teams/${team.id}/members`, {
        token: owner.token,
        body: { email: member.user.email, role: 'admin' },
      });
      expect(again.status).toBe(409);
      expect(again.body.error.code).toBe('already_member');
      const roles = Object.fromEntries((await members(owner.token, team.id)).map((m) => [m.user_id, m.role]));
      expect(roles[member.user.id]).toBe('member');
      const self = await t.call('POST', `/v1/teams/${team.id}/members`, {
        token: owner.token,
        body: { email: owner.user.email },
      });
      expect(self.status).toBe(409);
    });
  });

  describe('PATCH /v1/teams/{id}/members/{user_id}', () => {
    it("lets an admin change a member's role, which applies at once", async () => {
      const { admin, member, team } = await teamOfFour();
      const res = await t.call('PATCH', `/v1/teams/${team.id}/members/${member.user.id}`, {
        token: admin.token,
        body: { role: 'viewer' },
      });
      expect(res.status).toBe(200);
      expect(res.body).toMatchObject({ user_id: member.user.id, role: 'viewer' });
      const seen = await t.call('GET', `/v1/teams/${team.id}`, { token: member.token });
      expect(seen.body.role).toBe('viewer');

      const promoted = await t.call('PATCH', `/v1/teams/${team.id}/members/${member.user.id}`, {
        token: admin.token,
        body: { role: 'admin' },
      });
      expect(promoted.status).toBe(200);
      const rename = await t.call('PATCH', `/v1/teams/${team.id}`, {
        token: member.token,
        body: { name: 'Mine now' },
      });
      expect(rename.status).toBe(200);
    });

    it('is for admins and owners only', async () => {
      const { owner, member, viewer, team } = await teamOfFour();
      for (const who of [member, viewer]) {
        const res = await t.call('PATCH', `/v1/teams/${team.id}/members/${viewer.user.id}`, {
          token: who.token,
          body: { role: 'admin' },
        });
        expect(res.status).toBe(403);
        expect(res.body.error.code).toBe('insufficient_scope');
      }
      const roles = Object.fromEntries((await members(owner.token, team.id)).map((m) => [m.user_id, m.role]));
      expect(roles[viewer.user.id]).toBe('viewer');
    });

    it("keeps the owner's role fixed and never grants owner", async () => {
      const { owner, admin, member, team } = await teamOfFour();
      for (const who of [admin, owner]) {
        const res = await t.call('PATCH', `/v1/teams/${team.id}/members/${owner.user.id}`, {
          token: who.token,
          body: { role: 'admin' },
        });
        expect(res.status).toBe(409);
        expect(res.body.error.code).toBe('owner_role_fixed');
      }
      const grant = await t.call('PATCH', `/v1/teams/${team.id}/members/${member.user.id}`, {
        token: owner.token,
        body: { role: 'owner' },
      });
      expect(grant.status).toBe(400);
      expect(grant.body.error.code).toBe('validation_failed');
      const roles = Object.fromEntries((await members(owner.token, team.id)).map((m) => [m.user_id, m.role]));
      expect(roles[owner.user.id]).toBe('owner');
      expect(roles[member.user.id]).toBe('member');
    });

    it('answers 404 for someone who is not a member', async () => {
      const { owner, team } = await teamOfFour();
      const outsider = await t.signup();
      const res = await t.call('PATCH', `/v1/teams/${team.id}/members/${outsider.user.id}`, {
        token: owner.token,
        body: { role: 'viewer' },
      });
      expect(res.status).toBe(404);
    });
  });

  describe('DELETE /v1/teams/{id}/members/{user_id}', () => {
    it('lets an admin remove a member', async () => {
      const { admin, member, team } = await teamOfFour();
      const res = await t.call('DELETE', `/v1/teams/${team.id}/members/${member.user.id}`, {
        token: admin.token,
      });
      expect(res.status).toBe(204);
      const ids = (await members(admin.token, team.id)).map((m) => m.user_id);
      expect(ids).not.toContain(member.user.id);
      expect(ids).toHaveLength(3);
      const again = await t.call('DELETE', `/v1/teams/${team.id}/members/${member.user.id}`, {
        token: admin.token,
      });
      expect(again.status).toBe(404);
    });

    it('lets a member remove themselves but nobody else', async () => {
      const { owner, member, viewer, team } = await teamOfFour();
      const other = await t.call('DELETE', `/v1/teams/${team.id}/members/${member.user.id}`, {
        token: viewer.token,
      });
      expect(other.status).toBe(403);
      expect(other.body.error.code).toBe('insufficient_scope');
      const self = await t.call('DELETE', `/v1/teams/${team.id}/members/${viewer.user.id}`, {
        token: viewer.token,
      });
      expect(self.status).toBe(204);
      const ids = (await members(owner.token, team.id)).map((m) => m.user_id);
      expect(ids).toContain(member.user.id);
      expect(ids).not.toContain(viewer.user.id);
    });

    it('never removes the owner', async () => {
      const { owner, admin, team } = await teamOfFour();
      for (const who of [admin, owner]) {
        const res = await t.call('DELETE', `/v1/teams/${team.id}/members/${owner.user.id}`, {
          token: who.token,
        });
        expect(res.status).toBe(409);
        expect(res.body.error.code).toBe('owner_cannot_leave');
      }
      const roles = Object.fromEntries((await members(owner.token, team.id)).map((m) => [m.user_id, m.role]));
      expect(roles[owner.user.id]).toBe('owner');
    });

    it("ends a removed member's access to the team at once", async () => {
      const { owner, member, team } = await teamOfFour();
      // Two sessions: one switched into the team, one left in the personal team.
      const login = await t.call('POST', '/v1/auth/login', {
        body: { email: member.user.email, password: 'correct horse battery' },
      });
      expect(login.status).toBe(200);
      expect(login.body.team.id).toBe(member.team.id);
      const otherSession = { token: login.body.session_token as string };
      const inTeam = await switchTo(member, team.id);
      expect((await t.call('GET', '/v1/api-keys', { token: inTeam.token })).status).toBe(200);

      const res = await t.call('DELETE', `/v1/teams/${team.id}/members/${member.user.id}`, {
        token: owner.token,
      });
      expect(res.status).toBe(204);

      const get = await t.call('GET', `/v1/teams/${team.id}`, { token: inTeam.token });
      expect(get.status).toBe(404);
      const list = await t.call('GET', '/v1/teams', { token: inTeam.token });
      expect(list.body.data.map((x: { id: string }) => x.id)).toEqual([member.team.id]);
      const keys = await t.call('GET', '/v1/api-keys', { token: inTeam.token });
      expect(keys.status).toBe(403);
      expect(keys.body.error.code).toBe('no_active_team');
      const me = await t.call('GET', '/v1/me', { token: inTeam.token });
      expect(me.status).toBe(200);
      expect(me.body.team).toBeNull();

      // A session whose active team is another of theirs is unaffected.
      expect((await t.call('GET', '/v1/api-keys', { token: otherSession.token })).status).toBe(200);
      // And switching back into the team is refused.
      const back = await t.call('POST', '/v1/auth/switch-team', {
        token: inTeam.token,
        body: { team_id: team.id },
      });
      expect(back.status).toBe(404);
    });
  });

  describe('POST /v1/teams/{id}/leave', () => {
    it('removes the caller from the team', async () => {
      const { owner, admin, team } = await teamOfFour();
      const res = await t.call('POST', `/v1/teams/${team.id}/leave`, { token: admin.token });
      expect(res.status).toBe(204);
      expect((await t.call('GET', `/v1/teams/${team.id}`, { token: admin.token })).status).toBe(404);
      const ids = (await members(owner.token, team.id)).map((m) => m.user_id);
      expect(ids).not.toContain(admin.user.id);
      expect((await t.call('POST', `/v1/teams/${team.id}/leave`, { token: admin.token })).status).toBe(404);
    });

    it('refuses the owner, outsiders and API keys', async () => {
      const { owner, team } = await teamOfFour();
      const byOwner = await t.call('POST', `/v1/teams/${team.id}/leave`, { token: owner.token });
      expect(byOwner.status).toBe(409);
      expect(byOwner.body.error.code).toBe('owner_cannot_leave');
      const outsider = await t.signup();
      expect((await t.call('POST', `/v1/teams/${team.id}/leave`, { token: outsider.token })).status).toBe(
        404,
      );
      const key = await t.apiKey(owner.token, ['admin']);
      const byKey = await t.call('POST', `/v1/teams/${owner.team.id}/leave`, { token: key.key });
      expect(byKey.status).toBe(403);
      expect(byKey.body.error.code).toBe('session_required');
    });
  });

  describe('POST /v1/teams/{id}/transfer-ownership', () => {
    it('is for the owner only, and only to a member', async () => {
      const { owner, admin, member, team } = await teamOfFour();
      const byAdmin = await t.call('POST', `/v1/teams/${team.id}/transfer-ownership`, {
        token: admin.token,
        body: { user_id: admin.user.id },
      });
      expect(byAdmin.status).toBe(403);
      expect(byAdmin.body.error.code).toBe('owner_required');
      const byMember = await t.call('POST', `/v1/teams/${team.id}/transfer-ownership`, {
        token: member.token,
        body: { user_id: member.user.id },
      });
      expect(byMember.status).toBe(403);

      const outsider = await t.signup();
      const toOutsider = await t.call('POST', `/v1/teams/${team.id}/transfer-ownership`, {
        token: owner.token,
        body: { user_id: outsider.user.id },
      });
      expect(toOutsider.status).toBe(404);
      const byOutsider = await t.call('POST', `/v1/teams/${team.id}/transfer-ownership`, {
        token: outsider.token,
        body: { user_id: outsider.user.id },
      });
      expect(byOutsider.status).toBe(404);

      const roles = Object.fromEntries((await members(owner.token, team.id)).map((m) => [m.user_id, m.role]));
      expect(roles[owner.user.id]).toBe('owner');
      expect(roles[admin.user.id]).toBe('admin');
      expect(roles[outsider.user.id]).toBeUndefined();
    });

    it('makes the target the one owner and the old owner an admin', async () => {
      const { owner, admin, member, team } = await teamOfFour();
      const res = await t.call('POST', `/v1/teams/${team.id}/transfer-ownership`, {
        token: owner.token,
        body: { user_id: member.user.id },
      });
      expect(res.status).toBe(200);
      expect(res.body).toMatchObject({ user_id: member.user.id, role: 'owner' });

      const list = await members(admin.token, team.id);
      expect(list.filter((m) => m.role === 'owner')).toEqual([
        expect.objectContaining({ user_id: member.user.id }),
      ]);
      const roles = Object.fromEntries(list.map((m) => [m.user_id, m.role]));
      expect(roles[owner.user.id]).toBe('admin');
      expect(roles[admin.user.id]).toBe('admin');
      expect((await t.call('GET', `/v1/teams/${team.id}`, { token: owner.token })).body.role).toBe('admin');

      // The old owner is an admin now: no more owner-only actions, but admin ones still work.
      const oldOwnerDeletes = await t.call('DELETE', `/v1/teams/${team.id}`, { token: owner.token });
      expect(oldOwnerDeletes.status).toBe(403);
      expect(oldOwnerDeletes.body.error.code).toBe('owner_required');
      const transferBack = await t.call('POST', `/v1/teams/${team.id}/transfer-ownership`, {
        token: owner.token,
        body: { user_id: owner.user.id },
      });
      expect(transferBack.status).toBe(403);
      const rename = await t.call('PATCH', `/v1/teams/${team.id}`, {
        token: owner.token,
        body: { name: 'Still admin' },
      });
      expect(rename.status).toBe(200);
      // The new owner cannot be removed or demoted, and can leave only after transferring.
      const demote = await t.call('PATCH', `/v1/teams/${team.id}/members/${member.user.id}`, {
        token: owner.token,
        body: { role: 'viewer' },
      });
      expect(demote.status).toBe(409);
      expect(demote.body.error.code).toBe('owner_role_fixed');
      // The new owner cannot leave without transferring first.
      const newOwnerLeaves = await t.call('POST', `/v1/teams/${team.id}/leave`, { token: member.token });
      expect(newOwnerLeaves.status).toBe(409);

      const deleted = await t.call('DELETE', `/v1/teams/${team.id}`, { token: member.token });
      expect(deleted.status).toBe(204);
      expect((await t.call('GET', `/v1/teams/${team.id}`, { token: member.token })).status).toBe(404);
    });

    it('lets the old owner leave once ownership has moved', async () => {
      const { owner, admin, team } = await teamOfFour();
      const moved = await t.call('POST', `/v1/teams/${team.id}/transfer-ownership`, {
        token: owner.token,
        body: { user_id: admin.user.id },
      });
      expect(moved.status).toBe(200);
      const left = await t.call('POST', `/v1/teams/${team.id}/leave`, { token: owner.token });
      expect(left.status).toBe(204);
      const list = await members(admin.token, team.id);
      expect(list.map((m) => m.user_id)).not.toContain(owner.user.id);
      expect(list.filter((m) => m.role === 'owner').map((m) => m.user_id)).toEqual([admin.user.id]);
    });
  });
});

// These races need real concurrency (Postgres); on PGlite the requests run one after another.
describe('concurrent membership changes', () => {
  const owners = async (token: string, teamId: string) =>
    (await members(token, teamId)).filter((m) => m.role === 'owner').map((m) => m.user_id);

  it('adds a person once when the same add arrives several times at once', async () => {
    const { owner, team } = await teamOfFour();
    const newcomer = await t.signup();
    const results = await Promise.all(
      [1, 2, 3].map(() =>
        t.call('POST', `/v1/teams/${team.id}/members`, {
          token: owner.token,
          body: { email: newcomer.user.email },
        }),
      ),
    );
    expect(results.map((r) => r.status).sort()).toEqual([201, 409, 409]);
    for (const r of results.filter((x) => x.status === 409)) expect(r.body.error.code).toBe('already_member');
    const ids = (await members(owner.token, team.id)).map((m) => m.user_id);
    expect(ids.filter((id) => id === newcomer.user.id)).toHaveLength(1);
  });

  it('lets only one of two simultaneous transfers through', async () => {
    const { owner, admin, member, team } = await teamOfFour();
    const results = await Promise.all(
      [admin, member].map((to) =>
        t.call('POST', `/v1/teams/${team.id}/transfer-ownership`, {
          token: owner.token,
          body: { user_id: to.user.id },
        }),
      ),
    );
    expect(results.map((r) => r.status).sort()).toEqual([200, 403]);
    const winner = results.find((r) => r.status === 200)!.body.user_id;
    expect(await owners(owner.token, team.id)).toEqual([winner]);
  });

  it('never leaves a team without an owner when a transfer races a removal or a role change', async () => {
    for (const racer of ['remove', 'demote'] as const) {
      const { owner, admin, member, team } = await teamOfFour();
      const [transfer, other] = await Promise.all([
        t.call('POST', `/v1/teams/${team.id}/transfer-ownership`, {
          token: owner.token,
          body: { user_id: member.user.id },
        }),
        racer === 'remove'
          ? t.call('DELETE', `/v1/teams/${team.id}/members/${member.user.id}`, { token: admin.token })
          : t.call('PATCH', `/v1/teams/${team.id}/members/${member.user.id}`, {
              token: admin.token,
              body: { role: 'viewer' },
            }),
      ]);
      const current = await owners(admin.token, team.id);
      expect(current).toHaveLength(1);
      if (transfer.status === 200) {
        expect(current).toEqual([member.user.id]);
        // A removal that lost the race finds an owner; a demotion may simply have come first.
        expect(racer === 'remove' ? [409] : [200, 409]).toContain(other.status);
      } else {
        expect(transfer.status).toBe(404);
        expect(current).toEqual([owner.user.id]);
      }
    }
  });
});

describe('role → scope', () => {
  it('gives viewers read, members write, admins and owners admin in the active team', async () => {
    const { owner, admin, member, viewer, team } = await teamOfFour();
    const expected = [
      [viewer, 'read'],
      [member, 'write'],
    ] as const;
    for (const [who, scope] of expected) {
      const session = await switchTo(who, team.id);
      const read = await t.call('GET', '/v1/api-keys', { token: session.token });
      expect(read.status).toBe(200);
      const invitations = await t.call('GET', '/v1/invitations', { token: session.token });
      expect(invitations.status).toBe(200);
      const write = await t.call('POST', '/v1/api-keys', { token: session.token, body: { name: 'nope' } });
      expect(write.status).toBe(403);
      expect(write.body.error).toMatchObject({
        code: 'insufficient_scope',
        details: { required_scope: 'admin', scope },
      });
    }
    for (const who of [admin, owner]) {
      const session = await switchTo(who, team.id);
      const write = await t.call('POST', '/v1/api-keys', { token: session.token, body: { name: 'ok' } });
      expect(write.status).toBe(201);
      expect(write.body.team_id).toBe(team.id);
    }
  });

  it('follows a role change on a live session without signing in again', async () => {
    const { owner, admin, team } = await teamOfFour();
    const session = await switchTo(admin, team.id);
    expect((await t.call('POST', '/v1/api-keys', { token: session.token, body: { name: 'a' } })).status).toBe(
      201,
    );
    const demoted = await t.call('PATCH', `/v1/teams/${team.id}/members/${admin.user.id}`, {
      token: owner.token,
      body: { role: 'viewer' },
    });
    expect(demoted.status).toBe(200);
    const after = await t.call('POST', '/v1/api-keys', { token: session.token, body: { name: 'b' } });
    expect(after.status).toBe(403);
    expect(after.body.error.details.scope).toBe('read');
    expect((await t.call('GET', '/v1/api-keys', { token: session.token })).status).toBe(200);
  });
});

describe('events outbox', () => {
  it('records member changes in the team they happened in', async () => {
    const owner = await t.signup();
    const a = await t.signup();
    const b = await t.signup();
    const team = await createTeam(owner, 'Evented');
    await addMember(owner, team.id, a, 'member');
    await addMember(owner, team.id, b, 'viewer');
    expect(
      (
        await t.call('PATCH', `/v1/teams/${team.id}/members/${a.user.id}`, {
          token: owner.token,
          body: { role: 'admin' },
        })
      ).status,
    ).toBe(200);
    expect(
      (await t.call('DELETE', `/v1/teams/${team.id}/members/${b.user.id}`, { token: owner.token })).status,
    ).toBe(204);
    expect(
      (
        await t.call('POST', `/v1/teams/${team.id}/transfer-ownership`, {
          token: owner.token,
          body: { user_id: a.user.id },
        })
      ).status,
    ).toBe(200);

    const result = (await t.database.db.execute(
      sql`select type, team_id, actor_id, subject_id, data from events where type like 'member.%' and (subject_id = ${a.user.id} or subject_id = ${b.user.id})`,
    )) as unknown as {
      rows: Array<{ type: string; team_id: string; actor_id: string; subject_id: string; data: unknown }>;
    };
    const rows = result.rows;
    expect(rows.map((r) => r.type).sort()).toEqual([
      'member.added',
      'member.added',
      'member.ownership_transferred',
      'member.removed',
      'member.role_changed',
    ]);
    for (const row of rows) {
      expect(row.team_id).toBe(team.id);
      expect(row.actor_id).toBe(owner.user.id);
    }
    const changed = rows.find((r) => r.type === 'member.role_changed')!;
    expect(changed.data).toEqual({ user_id: a.user.id, from: 'member', to: 'admin' });
    const transferred = rows.find((r) => r.type === 'member.ownership_transferred')!;
    expect(transferred.data).toEqual({ from_user_id: owner.user.id, to_user_id: a.user.id });
  });
});
