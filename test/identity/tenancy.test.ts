import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { createTestApp, type SignedUpUser, type TestApp, uniqueEmail } from '../support/app.ts';

/**
 * DESIGN.md principle 5: another team's object is 404, never 403, never in a
 * list. Team A owns one object of each kind; team B (its owner's session and
 * an admin-scoped API key of B) tries every route that names one of them.
 */

let t: TestApp;

interface TeamA {
  owner: SignedUpUser;
  /** A plain member of A (not the owner), so removing them would really work. */
  member: SignedUpUser;
  invitation: { id: string; token: string; email: string };
  key: { id: string; key: string };
  sessionId: string;
}
interface TeamB {
  owner: SignedUpUser;
  adminKey: string;
}
let a: TeamA;
let b: TeamB;

type Actor = 'B session' | 'B admin key';
const ACTORS: Actor[] = ['B session', 'B admin key'];
const tokenOf = (actor: Actor) => (actor === 'B session' ? b.owner.token : b.adminKey);

const FAKE_ID = 'x_01J00000000000000000000000';

/** `[method, path, body?]`; `:id` is the object's id, `:team` is A's team id. */
type Route = [method: string, path: string, body?: () => unknown];

interface ResourceKind {
  kind: string;
  /** A's object. */
  id: () => string;
  /** Every route that names the object: reads, updates, deletes and actions. */
  routes: Route[];
  /** How A reads the object back, to show B changed nothing. */
  readBack: string;
  /** Session-only routes refuse API keys before looking at the id (403 session_required). */
  sessionOnly?: boolean;
}

const KINDS: ResourceKind[] = [
  {
    kind: 'team',
    id: () => a.owner.team.id,
    routes: [
      ['GET', '/v1/teams/:id'],
      ['PATCH', '/v1/teams/:id', () => ({ name: 'taken over' })],
      ['DELETE', '/v1/teams/:id'],
      ['GET', '/v1/teams/:id/members'],
      ['POST', '/v1/teams/:id/members', () => ({ email: b.owner.user.email, role: 'admin' })],
    ],
    readBack: '/v1/teams/:id',
  },
  {
    kind: 'team (session-only actions)',
    id: () => a.owner.team.id,
    routes: [
      ['POST', '/v1/teams/:id/leave'],
      ['POST', '/v1/teams/:id/transfer-ownership', () => ({ user_id: b.owner.user.id })],
    ],
    readBack: '/v1/teams/:id',
    sessionOnly: true,
  },
  {
    kind: 'member',
    id: () => a.member.user.id,
    routes: [
      ['PATCH', '/v1/teams/:team/members/:id', () => ({ role: 'viewer' })],
      ['DELETE', '/v1/teams/:team/members/:id'],
    ],
    readBack: '/v1/teams/:team/members',
  },
  {
    kind: 'invitation',
    id: () => a.invitation.id,
    routes: [
      ['GET', '/v1/invitations/:id'],
      ['POST', '/v1/invitations/:id/revoke'],
      ['POST', '/v1/invitations/:id/resend'],
    ],
    readBack: '/v1/invitations/:id',
  },
  {
    kind: 'api key',
    id: () => a.key.id,
    routes: [
      ['GET', '/v1/api-keys/:id'],
      ['PATCH', '/v1/api-keys/:id', () => ({ active: false, scopes: ['read'] })],
      ['DELETE', '/v1/api-keys/:id'],
      ['POST', '/v1/api-keys/:id/revoke'],
      ['POST', '/v1/api-keys/:id/rotate', () => ({ grace_hours: 0 })],
      ['POST', '/v1/api-keys/:id/roll'],
      ['GET', '/v1/api-keys/:id/usage'],
    ],
    readBack: '/v1/api-keys/:id',
  },
  {
    kind: 'session',
    id: () => a.sessionId,
    routes: [['DELETE', '/v1/me/sessions/:id']],
    readBack: '/v1/me/sessions',
    sessionOnly: true,
  },
];

/** B's lists, as each actor sees them; none may mention anything of A. */
const LISTS: Array<[url: string, actors: Actor[]]> = [
  ['/v1/teams', ACTORS],
  ['/v1/api-keys', ACTORS],
  ['/v1/invitations', ACTORS],
  ['/v1/invitations?status=pending', ACTORS],
  ['/v1/me/sessions', ['B session']],
  ['/v1/teams/:b_team/members', ACTORS],
];

function fill(path: string, id: string): string {
  return path.replace(':team', a.owner.team.id).replace(':b_team', b.owner.team.id).replace(':id', id);
}

async function call(actor: Actor, [method, path, body]: Route, id: string) {
  return t.call(method, fill(path, id), { token: tokenOf(actor), ...(body ? { body: body() } : {}) });
}

/** What A sees of each object, before B tries anything. */
const before = new Map<string, unknown>();
async function readBack(kind: ResourceKind) {
  const res = await t.call('GET', fill(kind.readBack, kind.id()), { token: a.owner.token });
  expect(res.status, `A reads back ${kind.kind}`).toBe(200);
  return res.body;
}

beforeAll(async () => {
  t = await createTestApp();

  const owner = await t.signup({ name: 'Alice A' });
  const member = await t.signup({ name: 'Mia A' });
  const added = await t.call('POST', `/v1/teams/${owner.team.id}/members`, {
    token: owner.token,
    body: { email: member.user.email, role: 'member' },
  });
  expect(added.status).toBe(201);
  const inviteEmail = uniqueEmail('invitee-of-a');
  const inv = await t.call('POST', '/v1/invitations', {
    token: owner.token,
    body: { email: inviteEmail, role: 'viewer' },
  });
  expect(inv.status).toBe(201);
  const key = await t.apiKey(owner.token, ['admin']);
  const sessions = await t.call('GET', '/v1/me/sessions', { token: owner.token });
  const current = sessions.body.data.find((s: { current: boolean }) => s.current);
  a = {
    owner,
    member,
    invitation: { id: inv.body.id, token: inv.body.token, email: inviteEmail },
    key,
    sessionId: current.id,
  };

  const bOwner = await t.signup({ name: 'Bob B' });
  b = { owner: bOwner, adminKey: (await t.apiKey(bOwner.token, ['admin'])).key };
  // B has objects of its own, so its lists are not empty by accident.
  const bInv = await t.call('POST', '/v1/invitations', {
    token: bOwner.token,
    body: { email: uniqueEmail('invitee-of-b') },
  });
  expect(bInv.status).toBe(201);

  for (const kind of KINDS) before.set(kind.kind, await readBack(kind));
});
afterAll(() => t.close());

describe("team B cannot reach team A's objects", () => {
  for (const kind of KINDS) {
    for (const actor of ACTORS) {
      for (const route of kind.routes) {
        const [method, path] = route;
        const expected = kind.sessionOnly && actor === 'B admin key' ? 403 : 404;
        it(`${kind.kind}: ${actor} ${method} ${path} → ${expected}, same as a missing id`, async () => {
          const res = await call(actor, route, kind.id());
          const missing = await call(actor, route, FAKE_ID);
          expect(res.status, JSON.stringify(res.body)).toBe(expected);
          if (expected === 404) {
            expect(res.body.error.code).toBe('not_found');
          } else {
            // A route-level refusal: API keys cannot use it whatever the id.
            expect(res.body.error.code).toBe('session_required');
          }
          // Indistinguishable from an id that does not exist at all.
          expect([missing.status, missing.body.error?.code]).toEqual([res.status, res.body.error.code]);
          expect(JSON.stringify(res.body)).not.toContain(a.owner.user.email);
        });
      }
    }
  }
});

describe("team B's lists never show team A's objects", () => {
  for (const [url, actors] of LISTS) {
    for (const actor of actors) {
      it(`${actor} GET ${url}`, async () => {
        const res = await t.call('GET', fill(url, ''), { token: tokenOf(actor) });
        expect(res.status).toBe(200);
        expect(res.body.data.length).toBeGreaterThan(0);
        const text = JSON.stringify(res.body);
        for (const secret of [
          a.owner.team.id,
          a.owner.user.id,
          a.owner.user.email,
          a.member.user.id,
          a.invitation.id,
          a.invitation.email,
          a.key.id,
          a.key.key.slice(0, 12),
          a.sessionId,
        ]) {
          expect(text).not.toContain(secret);
        }
      });
    }
  }
});

describe("afterwards, team A's objects are untouched", () => {
  for (const kind of KINDS) {
    it(`${kind.kind} reads back the same to A`, async () => {
      expect(await readBack(kind)).toEqual(before.get(kind.kind));
    });
  }

  it("A's key, session, membership and invitation token all still work", async () => {
    const viaKey = await t.call('GET', '/v1/teams', { token: a.key.key });
    expect(viaKey.status).toBe(200);
    expect(viaKey.body.data.map((team: { id: string }) => team.id)).toEqual([a.owner.team.id]);

    const me = await t.call('GET', '/v1/me', { token: a.owner.token });
    expect(me.status).toBe(200);
    expect(me.body).toMatchObject({ team: { id: a.owner.team.id, name: a.owner.team.name }, role: 'owner' });

    const members = await t.call('GET', `/v1/teams/${a.owner.team.id}/members`, { token: a.owner.token });
    expect(
      members.body.data.map((m: { user_id: string; role: string }) => [m.user_id, m.role]).sort(),
    ).toEqual(
      [
        [a.owner.user.id, 'owner'],
        [a.member.user.id, 'member'],
      ].sort(),
    );

    const lookup = await t.call('GET', '/v1/invitations/lookup', { query: { token: a.invitation.token } });
    expect(lookup.status).toBe(200);
    expect(lookup.body).toMatchObject({ email: a.invitation.email, team: { id: a.owner.team.id } });

    // B is still outside A.
    const bTeams = await t.call('GET', '/v1/teams', { token: b.owner.token });
    expect(bTeams.body.data.map((team: { id: string }) => team.id)).toEqual([b.owner.team.id]);
  });
});
