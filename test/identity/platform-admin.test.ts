import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import {
  type CallOptions,
  createTestApp,
  type SignedUpUser,
  type TestApp,
  uniqueEmail,
} from '../support/app.ts';
import { expectError } from '../support/errors.ts';
import { createAgent } from '../support/factories.ts';
import { servedRoutes } from '../support/routes.ts';

// Platform admins (/v1/admin/users, /v1/admin/teams) and DELETE /v1/me: who
// may call them, what a deactivation stops, what an erasure keeps and erases.

const PASSWORD = 'correct horse battery';

let t: TestApp;
let admin: SignedUpUser;
let plain: SignedUpUser;

beforeAll(async () => {
  t = await createTestApp();
  // The first account of a server is its platform admin.
  admin = await t.signup({ name: 'Ada Admin' });
  plain = await t.signup({ name: 'Nora Plain' });
});
afterAll(async () => {
  await t.close();
});

const asAdmin = (method: string, url: string, options: CallOptions = {}) =>
  t.call(method, url, { token: admin.token, ...options });

/** A member joins `owner`'s personal team with `role`. */
async function join(owner: SignedUpUser, member: SignedUpUser, role = 'member'): Promise<void> {
  const res = await t.call('POST', `/v1/teams/${owner.team.id}/members`, {
    token: owner.token,
    body: { email: member.user.email, role },
  });
  expect(res.status, JSON.stringify(res.body)).toBe(201);
}

/** `user`'s session switched to `teamId`: its new token. */
async function switchTo(user: SignedUpUser, teamId: string): Promise<string> {
  const res = await t.call('POST', '/v1/auth/switch-team', { token: user.token, body: { team_id: teamId } });
  expect(res.status).toBe(200);
  return res.body.session_token;
}

/** PUT /v1/admin/users/{id}/active or …/admin, as `token` (the admin by default). */
function put(userId: string, what: 'active' | 'admin', value: boolean, token = admin.token) {
  return t.call('PUT', `/v1/admin/users/${userId}/${what}`, { token, body: { [what]: value } });
}

async function adminAudit(query: Record<string, string>) {
  const res = await asAdmin('GET', '/v1/admin/audit-logs', { query: { limit: '200', ...query } });
  expect(res.status).toBe(200);
  return res.body.data as Array<{ action: string; actor_id: string; resource_id: string; details: object }>;
}

describe('who may call the admin routes', () => {
  it('answers 403 platform_admin_required to a user who is not a platform admin, on every admin route', async () => {
    const routes = servedRoutes(t.app).filter(
      (r) =>
        r.path.startsWith('/v1/admin/') && !r.path.startsWith('/v1/admin/audit-logs') && r.method !== 'HEAD',
    );
    expect(routes.length).toBeGreaterThanOrEqual(8);
    for (const route of routes) {
      const url = route.path.replace(':id', route.path.includes('/teams') ? admin.team.id : admin.user.id);
      const body =
        route.method === 'PUT'
          ? { [url.endsWith('/admin') ? 'admin' : 'active']: true }
          : route.method === 'PATCH'
            ? { limits: { max_concurrent_tasks: 1 } }
            : url.endsWith('/credits')
              ? { type: 'grant', amount: 1000, reason: 'free credits' }
              : undefined;
      const res = await t.call(route.method, url, { token: plain.token, ...(body ? { body } : {}) });
      expectError(res, 403, 'platform_admin_required');
    }
    // Nothing changed: the admin is still an active admin, and the team got no credits.
    const me = await asAdmin('GET', `/v1/admin/users/${admin.user.id}`);
    expect(me.body).toMatchObject({ is_admin: true, status: 'active' });
    expect((await t.call('GET', '/v1/credits', { token: admin.token })).body.balance).toBe(0);
  });

  it('refuses API keys, even an admin key of the admin’s team', async () => {
    const key = await t.apiKey(admin.token, ['admin']);
    expectError(await t.call('GET', '/v1/admin/users', { token: key.key }), 403, 'session_required');
  });

  it('answers bad input with 400 in the error shape', async () => {
    expectError(
      await asAdmin('GET', '/v1/admin/users', { query: { status: 'gone' } }),
      400,
      'validation_failed',
    );
    expectError(await asAdmin('GET', '/v1/admin/users', { query: { limit: '0' } }), 400, 'validation_failed');
    expectError(
      await asAdmin('GET', '/v1/admin/users', { query: { admin: 'maybe' } }),
      400,
      'validation_failed',
    );
    expectError(await asAdmin('GET', '/v1/admin/users', { query: { cursor: '!!' } }), 400, 'invalid_cursor');
    expectError(await asAdmin('GET', '/v1/admin/teams', { query: { q: '' } }), 400, 'validation_failed');
    expectError(await asAdmin('GET', '/v1/admin/users/usr_nobody'), 404, 'not_found');
    expectError(await put('usr_nobody', 'active', false), 404, 'not_found');
    expectError(
      await asAdmin('PUT', `/v1/admin/users/${plain.user.id}/active`, { body: {} }),
      400,
      'validation_failed',
    );
    expectError(
      await asAdmin('PUT', `/v1/admin/users/${plain.user.id}/admin`, { body: { admin: 'yes' } }),
      400,
      'validation_failed',
    );
    expectError(await asAdmin('GET', '/v1/admin/teams/not-a-team'), 404, 'not_found');
  });
});

describe('listing and searching', () => {
  it('finds accounts by part of the e-mail or the name, any case, with status and admin filters and pages', async () => {
    const tag = `zq${Date.now().toString(36)}`;
    const a = await t.signup({ email: uniqueEmail(`${tag}-a`), name: 'Alpha' });
    const b = await t.signup({ email: uniqueEmail('other'), name: `Beta ${tag.toUpperCase()}` });
    const c = await t.signup({ email: uniqueEmail(`${tag}-c`), name: 'Gamma' });
    await put(c.user.id, 'active', false);

    const all = await asAdmin('GET', '/v1/admin/users', { query: { q: tag } });
    expect(all.body.data.map((u: { id: string }) => u.id)).toEqual([c.user.id, b.user.id, a.user.id]);
    expect(all.body.data[2]).toMatchObject({
      email: a.user.email,
      name: 'Alpha',
      status: 'active',
      is_admin: false,
    });

    const active = await asAdmin('GET', '/v1/admin/users', { query: { q: tag, status: 'active' } });
    expect(active.body.data.map((u: { id: string }) => u.id)).toEqual([b.user.id, a.user.id]);
    const off = await asAdmin('GET', '/v1/admin/users', { query: { q: tag, status: 'deactivated' } });
    expect(off.body.data.map((u: { id: string }) => u.id)).toEqual([c.user.id]);

    const admins = await asAdmin('GET', '/v1/admin/users', { query: { admin: 'true' } });
    expect(admins.body.data.map((u: { id: string }) => u.id)).toEqual([admin.user.id]);

    // A literal % matches only itself.
    const none = await asAdmin('GET', '/v1/admin/users', { query: { q: '%' } });
    expect(none.body.data).toEqual([]);

    const first = await asAdmin('GET', '/v1/admin/users', { query: { q: tag, limit: '2' } });
    expect(first.body.data).toHaveLength(2);
    const second = await asAdmin('GET', '/v1/admin/users', {
      query: { q: tag, limit: '2', cursor: first.body.next_cursor },
    });
    expect(second.body.data.map((u: { id: string }) => u.id)).toEqual([a.user.id]);
    expect(second.body.next_cursor).toBeNull();
  });

  it('shows one account with its team memberships', async () => {
    const owner = await t.signup({ name: 'Olga Owner' });
    const member = await t.signup({ name: 'Milo Member' });
    await join(owner, member, 'viewer');
    const res = await asAdmin('GET', `/v1/admin/users/${member.user.id}`);
    expect(res.status).toBe(200);
    expect(res.body.teams).toHaveLength(2);
    expect(res.body.teams).toEqual(
      expect.arrayContaining([
        expect.objectContaining({ id: member.team.id, role: 'owner' }),
        expect.objectContaining({ id: owner.team.id, role: 'viewer', name: "Olga Owner's team" }),
      ]),
    );
  });

  it('lists and searches teams with their member counts and owners', async () => {
    const owner = await t.signup({ name: 'Tess Teamowner' });
    const member = await t.signup();
    await join(owner, member);
    const res = await asAdmin('GET', '/v1/admin/teams', { query: { q: 'TESS TEAMOWNER' } });
    expect(res.body.data).toEqual([
      expect.objectContaining({
        id: owner.team.id,
        name: "Tess Teamowner's team",
        member_count: 2,
        owner: { id: owner.user.id, email: owner.user.email, name: 'Tess Teamowner' },
      }),
    ]);
    const one = await asAdmin('GET', `/v1/admin/teams/${owner.team.id}`);
    expect(one.body).toMatchObject({ id: owner.team.id, member_count: 2 });
    expect(one.body.limits).toEqual({ max_concurrent_tasks: null });
    const set = await asAdmin('PATCH', `/v1/admin/teams/${owner.team.id}`, {
      body: { limits: { max_concurrent_tasks: 3 } },
    });
    expect(set.body).toMatchObject({ id: owner.team.id, limits: { max_concurrent_tasks: 3 } });
    // Another PATCH without limits changes nothing.
    const kept = await asAdmin('PATCH', `/v1/admin/teams/${owner.team.id}`, { body: {} });
    expect(kept.body.limits).toEqual({ max_concurrent_tasks: 3 });
    const entries = await adminAudit({ resource_id: owner.team.id, action: 'team.limits_updated' });
    expect(entries).toEqual([
      expect.objectContaining({ actor_id: admin.user.id, details: { limits: { max_concurrent_tasks: 3 } } }),
    ]);
    const bySlug = await asAdmin('GET', '/v1/admin/teams', { query: { q: owner.team.slug } });
    expect(bySlug.body.data.map((x: { id: string }) => x.id)).toEqual([owner.team.id]);
  });
});

describe('deactivation', () => {
  it('stops the user’s session and the API keys they created on the very next request, on every server, until reactivated', async () => {
    const user = await t.signup({ name: 'Dee Activated' });
    const key = await t.apiKey(user.token, ['write']);
    expect((await t.call('GET', '/v1/me', { token: user.token })).status).toBe(200);
    expect((await t.call('GET', '/v1/api-keys', { token: key.key })).status).toBe(200);
    // A second server on the same database (the caches of one process are not the other's).
    const other = await createTestApp({ shareWith: t });
    try {
      expect((await other.call('GET', '/v1/api-keys', { token: key.key })).status).toBe(200);

      const res = await put(user.user.id, 'active', false);
      expect(res.status).toBe(200);
      expect(res.body).toMatchObject({ status: 'deactivated', deactivated_at: expect.any(String) });

      for (const server of [t, other]) {
        expectError(await server.call('GET', '/v1/me', { token: user.token }), 401, 'user_deactivated');
        expectError(
          await server.call('GET', '/v1/api-keys', { token: key.key }),
          401,
          'api_key_creator_deactivated',
        );
        expectError(
          await server.call('POST', '/v1/auth/login', {
            body: { email: user.user.email, password: PASSWORD },
          }),
          401,
          'user_deactivated',
        );
      }
      // A wrong password still says only that.
      expectError(
        await t.call('POST', '/v1/auth/login', {
          body: { email: user.user.email, password: 'wrong password' },
        }),
        401,
        'invalid_credentials',
      );

      const back = await put(user.user.id, 'active', true);
      expect(back.body).toMatchObject({ status: 'active', deactivated_at: null });
      // The team's key works again; the ended session stays ended; signing in works.
      expect((await other.call('GET', '/v1/api-keys', { token: key.key })).status).toBe(200);
      expectError(await t.call('GET', '/v1/me', { token: user.token }), 401, 'session_invalid');
      const login = await t.call('POST', '/v1/auth/login', {
        body: { email: user.user.email, password: PASSWORD },
      });
      expect(login.status).toBe(200);
    } finally {
      await other.close();
    }
  });

  it('is refused for yourself, and audited with the acting admin as actor', async () => {
    expectError(await put(admin.user.id, 'active', false), 409, 'cannot_deactivate_self');
    const user = await t.signup();
    await put(user.user.id, 'active', false);
    // Again: nothing more to do, and nothing more recorded.
    expect((await put(user.user.id, 'active', false)).status).toBe(200);
    const entries = await adminAudit({ resource_id: user.user.id, action: 'user.*' });
    expect(entries.map((e) => [e.action, e.actor_id])).toEqual([
      ['user.deactivated', admin.user.id],
      ['user.signed_in', user.user.id],
      ['user.signed_up', user.user.id],
    ]);
  });
});

describe('platform admin', () => {
  it('is granted and revoked, never leaving the server without an active one', async () => {
    expectError(await put(admin.user.id, 'admin', false), 409, 'last_platform_admin');
    const second = await t.signup({ name: 'Second Admin' });
    const granted = await put(second.user.id, 'admin', true);
    expect(granted.body).toMatchObject({ is_admin: true });
    // Read per request: the new admin's session is one at once.
    expect((await t.call('GET', '/v1/admin/users', { token: second.token })).status).toBe(200);

    // Deactivated, they no longer count as an active admin.
    await put(second.user.id, 'active', false);
    expectError(await put(admin.user.id, 'admin', false), 409, 'last_platform_admin');
    await put(second.user.id, 'active', true);
    const secondToken = (
      await t.call('POST', '/v1/auth/login', { body: { email: second.user.email, password: PASSWORD } })
    ).body.session_token;

    const revoked = await put(admin.user.id, 'admin', false, secondToken);
    expect(revoked.body).toMatchObject({ is_admin: false });
    expectError(await asAdmin('GET', '/v1/admin/users'), 403, 'platform_admin_required');
    expectError(
      await t.call('DELETE', '/v1/me', { token: secondToken, body: { current_password: PASSWORD } }),
      409,
      'last_platform_admin',
    );
    expectError(
      await t.call('DELETE', `/v1/admin/users/${second.user.id}`, { token: secondToken }),
      409,
      'last_platform_admin',
    );
    await put(admin.user.id, 'admin', true, secondToken);
    expect((await asAdmin('GET', '/v1/admin/users')).status).toBe(200);
    const entries = await adminAudit({ resource_id: admin.user.id, action: 'user.admin_*' });
    expect(entries.map((e) => [e.action, e.actor_id])).toEqual([
      ['user.admin_granted', second.user.id],
      ['user.admin_revoked', second.user.id],
    ]);
    await put(second.user.id, 'admin', false);
  });
});

describe('deleting an account', () => {
  it('erases personal data, keeps the anonymised row and the records naming it, and ends its session and keys', async () => {
    const owner = await t.signup({ name: 'Shared Owner' });
    const email = uniqueEmail('erase-me');
    const gone = await t.signup({ email, name: 'Erin Erased' });
    await join(owner, gone, 'admin');
    const inShared = await switchTo(gone, owner.team.id);
    const key = await t.apiKey(inShared, ['write']);
    const agent = await createAgent(t, inShared);
    expect((await t.call('GET', '/v1/api-keys', { token: key.key })).status).toBe(200);

    const res = await asAdmin('DELETE', `/v1/admin/users/${gone.user.id}`);
    expect(res.status, JSON.stringify(res.body)).toBe(204);

    // The old session and key are dead.
    expectError(await t.call('GET', '/v1/me', { token: inShared }), 401, 'session_invalid');
    expectError(await t.call('GET', '/v1/api-keys', { token: key.key }), 401, 'api_key_revoked');
    // The row stays, anonymised, out of every team; their personal team went with them.
    const row = await asAdmin('GET', `/v1/admin/users/${gone.user.id}`);
    expect(row.body).toMatchObject({ name: 'deleted user', status: 'deleted', is_admin: false, teams: [] });
    expect(row.body.email).not.toContain('erase-me');
    expect(row.body.email).toMatch(/@erased\.invalid$/);
    expectError(await asAdmin('GET', `/v1/admin/teams/${gone.team.id}`), 404, 'not_found');
    const members = await t.call('GET', `/v1/teams/${owner.team.id}/members`, { token: owner.token });
    expect(members.body.data.map((m: { user_id: string }) => m.user_id)).toEqual([owner.user.id]);
    // What they made in the shared team still names their id.
    const kept = await t.call('GET', `/v1/agents/${agent.id}`, { token: owner.token });
    expect(kept.status).toBe(200);
    const theirs = await adminAudit({ actor_id: gone.user.id });
    expect(theirs.map((e) => e.action)).toEqual(
      expect.arrayContaining(['agent.created', 'api_key.created', 'user.signed_up']),
    );
    // The deletion is the admin's, and no record holds the address or the name any more.
    const deletion = await adminAudit({ resource_id: gone.user.id, action: 'user.deleted' });
    expect(deletion).toEqual([
      expect.objectContaining({
        actor_id: admin.user.id,
        details: { by: 'platform_admin', teams_deleted: [gone.team.id], api_keys_revoked: 1 },
      }),
    ]);
    const everything = await asAdmin('GET', '/v1/admin/audit-logs/export');
    expect(everything.body).not.toContain(email);
    expect(everything.body).not.toContain('Erin Erased');
    const events = await t.call('GET', '/v1/events', { token: owner.token, query: { limit: '200' } });
    expect(JSON.stringify(events.body)).not.toContain(email);
    const activity = await t.call('GET', '/v1/activity', { token: owner.token, query: { limit: '200' } });
    expect(JSON.stringify(activity.body)).not.toContain(email);

    // The address is free: it can sign up again, as someone new.
    const again = await t.signup({ email, name: 'Erin Again' });
    expect(again.user.id).not.toBe(gone.user.id);
    // A second deletion changes nothing.
    expect((await asAdmin('DELETE', `/v1/admin/users/${gone.user.id}`)).status).toBe(204);
    expectError(await put(gone.user.id, 'active', true), 409, 'user_deleted');
  });
});

describe('DELETE /v1/me', () => {
  it('is refused (409 owns_teams, with their ids) while the user owns a team with other members', async () => {
    const owner = await t.signup({ name: 'Owen Owner' });
    const member = await t.signup();
    await join(owner, member);
    const res = await t.call('DELETE', '/v1/me', {
      token: owner.token,
      body: { current_password: PASSWORD },
    });
    expectError(res, 409, 'owns_teams');
    expect(res.body.error.details).toEqual({ team_ids: [owner.team.id] });
    expectError(await asAdmin('DELETE', `/v1/admin/users/${owner.user.id}`), 409, 'owns_teams');
    // Still there, still working.
    expect((await t.call('GET', '/v1/me', { token: owner.token })).status).toBe(200);

    // Once ownership is handed over, it goes through.
    const handed = await t.call('POST', `/v1/teams/${owner.team.id}/transfer-ownership`, {
      token: owner.token,
      body: { user_id: member.user.id },
    });
    expect(handed.status).toBe(200);
    const done = await t.call('DELETE', '/v1/me', {
      token: owner.token,
      body: { current_password: PASSWORD },
    });
    expect(done.status).toBe(204);
    expect(done.cookies.find((c) => c.name === 'paddock_session')?.value).toBe('');
    const team = await asAdmin('GET', `/v1/admin/teams/${owner.team.id}`);
    expect(team.body).toMatchObject({ member_count: 1, owner: { id: member.user.id } });
  });

  it('needs the current password, and answers bad input with 400', async () => {
    const user = await t.signup();
    expectError(
      await t.call('DELETE', '/v1/me', { token: user.token, body: { current_password: 'not it at all' } }),
      401,
      'invalid_credentials',
    );
    expectError(await t.call('DELETE', '/v1/me', { token: user.token, body: {} }), 400, 'validation_failed');
    expectError(
      await t.call('DELETE', '/v1/me', { token: user.token, body: { current_password: PASSWORD, extra: 1 } }),
      400,
      'validation_failed',
    );
    const key = await t.apiKey(user.token, ['admin']);
    expectError(
      await t.call('DELETE', '/v1/me', { token: key.key, body: { current_password: PASSWORD } }),
      403,
      'session_required',
    );
    expect((await t.call('GET', '/v1/me', { token: user.token })).status).toBe(200);
  });

  it('deletes the account and the teams only the user belongs to, recorded as the user’s own', async () => {
    const user = await t.signup({ name: 'Sol Solo' });
    const res = await t.call('DELETE', '/v1/me', { token: user.token, body: { current_password: PASSWORD } });
    expect(res.status).toBe(204);
    expectError(await t.call('GET', '/v1/me', { token: user.token }), 401, 'session_invalid');
    expectError(
      await t.call('POST', '/v1/auth/login', { body: { email: user.user.email, password: PASSWORD } }),
      401,
      'invalid_credentials',
    );
    expectError(await asAdmin('GET', `/v1/admin/teams/${user.team.id}`), 404, 'not_found');
    const entries = await adminAudit({ resource_id: user.user.id, action: 'user.deleted' });
    expect(entries).toEqual([
      expect.objectContaining({
        actor_id: user.user.id,
        details: { by: 'self', teams_deleted: [user.team.id], api_keys_revoked: 0 },
      }),
    ]);
  });
});
