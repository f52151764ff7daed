import type { Page } from 'playwright-core';
import { afterAll, beforeAll, expect, it } from 'vitest';
import { buildWeb, webStaleReason } from '../../bin/build.js';
import { SmtpCatcher, tokenIn, waitUntil } from '../mail/smtp.ts';
import { createTestApp, type SignedUpUser, type TestApp, uniqueEmail } from '../support/app.ts';
import { type DashboardBrowser, openDashboardBrowser, soon } from '../support/browser.ts';

// One database is enough: a browser test drives the API, whose queries its own tests run on both.
//
// The dashboard's sign-in by e-mailed link, members and invitations, an API
// key's rotation, and the platform admin's users and teams, in a real browser
// against a listening server that sends its e-mail to a real SMTP catcher:
// the admin asks for a sign-in link and signs in with it; invites people, one
// of whom creates an account from the invitation's page and one who signs in
// first and joins; changes a role and removes a member; rotates and rolls a
// key and reads its usage; searches, promotes, deactivates and deletes
// accounts; sets a team's limit. Every page passes axe-core and breaks no CSP
// rule; screenshots go to .test-artifacts/screenshots/.

const PASSWORD = 'correct horse battery';

let smtp: SmtpCatcher;
let t: TestApp;
let b: DashboardBrowser;
let page: Page;
let base: string;
/** The server's first account: a platform admin, owner of its own team. */
let ada: SignedUpUser;
/** Has an account of their own; invited, signs in, then joins. */
let bob: SignedUpUser;
const iris = uniqueEmail('iris');

beforeAll(async () => {
  if (webStaleReason()) await buildWeb();
  smtp = new SmtpCatcher();
  await smtp.start();
  t = await createTestApp({
    start: new Date(),
    env: {
      PADDOCK_SMTP_URL: smtp.url,
      PADDOCK_MAIL_FROM: 'Paddock <noreply@paddock.example.com>',
      // The test's SMTP server is on loopback: the operator's allowance for it.
      PADDOCK_ALLOW_PRIVATE_UPSTREAMS: '127.0.0.1',
    },
  });
  base = await t.app.listen({ port: 0, host: '127.0.0.1' });
  ada = await t.signup({ name: 'Ada Admin', password: PASSWORD });
  bob = await t.signup({ name: 'Bob Builder', password: PASSWORD });
  expect(ada.user.is_admin).toBe(true);
  b = await openDashboardBrowser();
  page = b.page;
}, 120_000);

afterAll(async () => {
  await b?.close();
  await t?.close();
  await smtp?.stop();
});

async function nav(label: string): Promise<void> {
  await page
    .getByRole('navigation', { name: 'Main' })
    .getByRole('link', { name: label, exact: true })
    .click();
}

const step: DashboardBrowser['step'] = (name, run, expected) => b.step(name, run, expected);

/** Signed out in this browser (from a blank page, so no open page polls without a session). */
async function signOutHere(): Promise<void> {
  await page.goto('about:blank');
  await b.context.clearCookies();
}

async function membersOfAda() {
  const res = await t.call('GET', `/v1/teams/${ada.team.id}/members`, { token: ada.token });
  return res.body.data as Array<{ user_id: string; email: string; role: string }>;
}

it('signs in with an e-mailed link, which works once', async () => {
  await step('magic-link', async () => {
    await page.goto(`${base}/login`);
    await page.getByRole('button', { name: 'E-mail me a sign-in link' }).click();
    await page.getByLabel('Email').fill(ada.user.email);
    await page.getByRole('button', { name: 'E-mail me a link' }).click();
    await page.getByText('Check your inbox.').waitFor(soon);
    await b.check('login-magic-link');

    const mail = await smtp.mailTo(ada.user.email);
    expect(mail.body).toContain('/magic-link?token=');
    const token = tokenIn(mail);
    await page.goto(`${base}/magic-link?token=${token}`);
    await b.check('magic-link');
    await page.getByRole('button', { name: 'Sign in to Paddock' }).click();
    await page.waitForURL(`${base}/`);
    await expect.poll(() => page.locator('.topbar .user').textContent(), soon).toBe(ada.user.email);
    // The platform admin's part of the navigation.
    await page.getByRole('list', { name: 'Platform admin' }).getByRole('link', { name: 'Users' }).waitFor();

    // The same link again: the API's reason, and the way to a new one.
    await page.goto(`${base}/magic-link?token=${token}`);
    await page.getByRole('button', { name: 'Sign in to Paddock' }).click();
    await page.getByText('already used').waitFor(soon);
    await page.getByRole('link', { name: 'Ask for a new link' }).waitFor();
  }, [/status of 400 .*\/v1\/auth\/magic-link\/verify\)$/]);
}, 60_000);

let irisLink: string;

it('invites people, lists the pending invitations, resends and revokes one', async () => {
  await step('invitations', async () => {
    await page.goto(`${base}/`);
    await nav('Invitations');
    await page.getByText('No pending invitations.').waitFor(soon);

    await page.getByLabel('Email').fill(iris);
    await page.getByLabel('Role', { exact: true }).selectOption('viewer');
    await page.getByRole('button', { name: 'Send invitation' }).click();
    await expect
      .poll(() => page.locator('code.secret').textContent(), soon)
      .toContain('/accept-invitation?token=');
    irisLink = (await page.locator('code.secret').textContent())!;
    expect(irisLink.startsWith(`${base}/accept-invitation?token=pdi_`)).toBe(true);
    // The e-mail carries the same token.
    expect(tokenIn(await smtp.mailTo(iris))).toBe(new URL(irisLink).searchParams.get('token'));
    await page.getByRole('button', { name: 'Done' }).click();

    await page.getByLabel('Email').fill(bob.user.email);
    await page.getByLabel('Role', { exact: true }).selectOption('member');
    await page.getByRole('button', { name: 'Send invitation' }).click();
    await page.getByRole('row', { name: new RegExp(bob.user.email) }).waitFor(soon);
    await page.getByRole('button', { name: 'Done' }).click();

    // A third, revoked: it leaves the pending list and shows under "revoked".
    const carol = uniqueEmail('carol');
    await page.getByLabel('Email').fill(carol);
    await page.getByRole('button', { name: 'Send invitation' }).click();
    const carolRow = page.getByRole('row', { name: new RegExp(carol) });
    await carolRow.waitFor(soon);
    await page.getByRole('button', { name: 'Done' }).click();
    // Resent: a new link (the old token stops working).
    await page.getByRole('button', { name: `Resend ${carol}` }).click();
    await expect
      .poll(() => page.locator('code.secret').textContent(), soon)
      .toContain('/accept-invitation?token=');
    await smtp.mailTo(carol);
    await waitUntil('the resent e-mail', () => smtp.received.filter((m) => m.to.includes(carol)).at(1));
    await page.getByRole('button', { name: 'Done' }).click();
    page.once('dialog', (d) => void d.accept());
    await page.getByRole('button', { name: `Revoke ${carol}` }).click();
    await expect.poll(() => carolRow.count(), soon).toBe(0);
    await page.getByLabel('Status').selectOption('revoked');
    await expect.poll(() => carolRow.textContent(), soon).toMatch(/revoked/);
    await page.getByLabel('Status').selectOption('pending');
    await expect.poll(() => page.getByRole('row').count(), soon).toBe(3);
    const pending = await t.call('GET', '/v1/invitations', {
      token: ada.token,
      query: { status: 'pending' },
    });
    expect(pending.body.data.map((i: { email: string }) => i.email).sort()).toEqual(
      [iris, bob.user.email].sort(),
    );
    await b.check('invitations');
  });
}, 60_000);

it('accepts invitations: a new account from the page, and an existing one after signing in', async () => {
  const adaCookies = await b.context.cookies();
  try {
    await step('invitation-accept', async () => {
      // Signed in as someone else: the page says whose invitation it is.
      await page.goto(irisLink);
      await page.getByText(`You are signed in as ${ada.user.email}`).waitFor(soon);

      await signOutHere();
      await page.goto(irisLink);
      await page.getByText(`to join ${ada.team.name} as viewer`).waitFor(soon);
      await page.getByLabel('Name').fill('Iris Invitee');
      await page.getByLabel('Password').fill(PASSWORD);
      await b.check('invitation-accept');
      await page.getByRole('button', { name: 'Create account and join' }).click();
      await page.waitForURL(`${base}/`);
      await expect.poll(() => page.locator('.topbar .user').textContent(), soon).toBe(iris);
      await expect
        .poll(() => page.locator('#team-switcher option:checked').textContent(), soon)
        .toBe(ada.team.name);
      // Not a platform admin: no admin pages in the navigation.
      expect(await page.getByRole('link', { name: 'Users', exact: true }).count()).toBe(0);
      // A viewer reads the members, changes nothing; the admin pages answer with the API's refusal.
      await nav('Members');
      await page.getByText("Only the team's owner and admins can change roles").waitFor(soon);
      await page.getByRole('cell', { name: 'Iris Invitee (you)' }).waitFor(soon);
      expect(await page.getByRole('combobox', { name: /^Role of/ }).count()).toBe(0);
      await page.goto(`${base}/admin/users`);
      await page.getByRole('alert').getByText('only platform admins').waitFor(soon);

      // Bob has an account: sign in first, come back, join.
      const bobInvite = await t.call(
        'POST',
        `/v1/invitations/${(await pendingFor(bob.user.email)).id}/resend`,
        {
          token: ada.token,
        },
      );
      await signOutHere();
      await page.goto(`${base}/accept-invitation?token=${bobInvite.body.token}`);
      await page.getByRole('link', { name: 'Sign in to accept' }).click();
      await page.getByLabel('Email').fill(bob.user.email);
      await page.getByLabel('Password').fill(PASSWORD);
      await page.getByRole('button', { name: 'Sign in', exact: true }).click();
      await page.getByRole('button', { name: `Join ${ada.team.name}` }).click();
      await page.waitForURL(`${base}/`);
      await expect
        .poll(() => page.locator('#team-switcher option:checked').textContent(), soon)
        .toBe(ada.team.name);
    }, [/status of 403 .*\/v1\/admin\/users\?/]);
    expect((await membersOfAda()).map((m) => [m.email, m.role]).sort()).toEqual(
      [
        [ada.user.email, 'owner'],
        [bob.user.email, 'member'],
        [iris, 'viewer'],
      ].sort(),
    );
  } finally {
    // Back to Ada's session for the next steps.
    await signOutHere();
    await b.context.addCookies(adaCookies);
  }
}, 60_000);

async function pendingFor(email: string): Promise<{ id: string }> {
  const res = await t.call('GET', '/v1/invitations', { token: ada.token, query: { status: 'pending' } });
  return res.body.data.find((i: { email: string }) => i.email === email);
}

it("lists the team's members, changes a role and removes a member", async () => {
  await step('members', async () => {
    await page.goto(`${base}/`);
    await nav('Members');
    await page.getByRole('cell', { name: 'Ada Admin (you)' }).waitFor(soon);
    await page.getByLabel('Role of Iris Invitee').selectOption('member');
    await expect
      .poll(async () => (await membersOfAda()).find((m) => m.email === iris)?.role, soon)
      .toBe('member');
    page.once('dialog', (d) => void d.accept());
    await page.getByRole('button', { name: 'Remove Bob Builder' }).click();
    await expect.poll(() => page.getByRole('row', { name: /Bob Builder/ }).count(), soon).toBe(0);
    expect((await membersOfAda()).map((m) => m.email)).not.toContain(bob.user.email);
    // The owner's role is not a choice.
    expect(await page.getByLabel('Role of Ada Admin').count()).toBe(0);
    await b.check('members');
    await page.getByRole('button', { name: 'Switch to the dark theme' }).click();
    await b.check('members-dark');
    await page.getByRole('button', { name: 'Switch to the light theme' }).click();
  });
}, 60_000);

it("rotates a key (the old secret works through its grace), rolls it, and shows the key's usage", async () => {
  const key = await t.apiKey(ada.token, ['read']);
  expect((await t.call('GET', '/v1/agents', { token: key.key })).status).toBe(200);
  await waitUntil('the key use recorded', async () => {
    const used = await t.call('GET', `/v1/api-keys/${key.id}/usage`, { token: ada.token });
    return used.body.data.length > 0 ? true : undefined;
  });
  await step('api-keys', async () => {
    await nav('API keys');
    await page.getByRole('link', { name: 'key read' }).click();
    await page.getByRole('heading', { name: 'API key “key read”' }).waitFor(soon);
    await page.getByRole('cell', { name: 'GET /v1/agents' }).waitFor(soon);

    await page.getByLabel('Grace period (hours)').fill('2');
    await page.getByRole('button', { name: 'Rotate', exact: true }).click();
    await expect.poll(() => page.locator('code.secret').textContent(), soon).toMatch(/^pdk_/);
    const rotated = (await page.locator('code.secret').textContent())!;
    await page.getByText('Previous secret').waitFor(soon);
    await b.check('api-keys-rotate');
    // Both secrets work during the grace period.
    expect((await t.call('GET', '/v1/agents', { token: key.key })).status).toBe(200);
    expect((await t.call('GET', '/v1/agents', { token: rotated })).status).toBe(200);

    await page.getByRole('button', { name: 'Done' }).click();
    page.once('dialog', (d) => void d.accept());
    await page.getByRole('button', { name: 'Roll key read' }).click();
    await expect.poll(() => page.locator('code.secret').textContent(), soon).toMatch(/^pdk_/);
    const rolled = (await page.locator('code.secret').textContent())!;
    expect(rolled).not.toBe(rotated);
    for (const old of [key.key, rotated])
      expect((await t.call('GET', '/v1/agents', { token: old })).status).toBe(401);
    expect((await t.call('GET', '/v1/agents', { token: rolled })).status).toBe(200);
    // The uses made with the old secret during its grace read "previous".
    await page.reload();
    await page.getByRole('cell', { name: 'previous' }).first().waitFor(soon);
  });
}, 60_000);

it('the platform admin searches accounts, makes and unmakes an admin, deactivates, reactivates and deletes', async () => {
  await step('admin-users', async () => {
    await nav('Users');
    await expect.poll(() => page.getByRole('row').count(), soon).toBe(4);
    await page.getByLabel('Search').fill('iris');
    await page.getByRole('button', { name: 'Search' }).click();
    await page.waitForURL(/q=iris/);
    await expect.poll(() => page.getByRole('row').count(), soon).toBe(2);
    const irisRow = page.getByRole('row', { name: new RegExp(iris) });

    await irisRow.getByRole('button', { name: `Make admin ${iris}` }).click();
    await expect.poll(() => irisRow.getByRole('cell', { name: 'yes' }).count(), soon).toBe(1);
    await page.getByLabel('Who').selectOption('true');
    await expect.poll(() => page.getByRole('row').count(), soon).toBe(2);
    await irisRow.getByRole('button', { name: `Remove admin from ${iris}` }).click();
    await page.getByText('No account matches.').waitFor(soon);
    await page.getByLabel('Who').selectOption('');

    page.once('dialog', (d) => void d.accept());
    await irisRow.getByRole('button', { name: `Deactivate ${iris}` }).click();
    await expect.poll(() => irisRow.locator('.badge').textContent(), soon).toBe('deactivated');
    const deactivated = await t.call('POST', '/v1/auth/login', { body: { email: iris, password: PASSWORD } });
    expect(deactivated.status).toBe(401);
    await irisRow.getByRole('button', { name: `Reactivate ${iris}` }).click();
    await expect.poll(() => irisRow.locator('.badge').textContent(), soon).toBe('active');

    // Bob (back to his own team only) is erased.
    await page.getByLabel('Search').fill('bob');
    await page.getByRole('button', { name: 'Search' }).click();
    const bobRow = page.getByRole('row', { name: new RegExp(bob.user.email) });
    page.once('dialog', (d) => void d.accept());
    await bobRow.getByRole('button', { name: `Delete ${bob.user.email}` }).click();
    await page.getByText('No account matches.').waitFor(soon);
    const gone = await t.call('GET', `/v1/admin/users/${bob.user.id}`, { token: ada.token });
    expect(gone.body.status).toBe('deleted');

    // Not offered: deactivating yourself. Refused with the API's reason: the last platform admin stepping down.
    await page.getByLabel('Search').fill('');
    await page.getByRole('button', { name: 'Search' }).click();
    await page.getByRole('button', { name: `Remove admin from ${ada.user.email}` }).click();
    await page.getByRole('alert').getByText('last').waitFor(soon);
    expect(await page.getByRole('button', { name: `Deactivate ${ada.user.email}` }).count()).toBe(0);
    await page.getByLabel('Status').selectOption('active');
    await expect.poll(() => page.getByRole('row').count(), soon).toBe(3);
    await b.check('admin-users');
  }, [/status of 409 .*\/v1\/admin\/users\/usr_[^/]+\/admin\)$/]);
}, 60_000);

async function adaTeamLimit(): Promise<number | null> {
  const team = await t.call('GET', `/v1/admin/teams/${ada.team.id}`, { token: ada.token });
  return team.body.limits.max_concurrent_tasks;
}

it("the platform admin lists teams and sets a team's concurrent-task limit", async () => {
  await step('admin-teams', async () => {
    await nav('Teams');
    await page.getByRole('cell', { name: ada.team.name, exact: true }).waitFor(soon);
    const field = page.getByLabel(`Max concurrent tasks of ${ada.team.name}`);
    await field.fill('3');
    await page.getByRole('button', { name: `Save the limit of ${ada.team.name}` }).click();
    await expect.poll(adaTeamLimit, soon).toBe(3);
    await page.getByLabel('Search').fill(ada.team.slug);
    await page.getByRole('button', { name: 'Search' }).click();
    await expect.poll(() => page.getByRole('row').count(), soon).toBe(2);
    await expect.poll(() => field.inputValue(), soon).toBe('3');
    await b.check('admin-teams');
    // Emptied: no team limit.
    await field.fill('');
    await page.getByRole('button', { name: `Save the limit of ${ada.team.name}` }).click();
    await expect.poll(adaTeamLimit, soon).toBeNull();
  });
}, 60_000);

it('after signing in goes where next= says on this site, and nowhere else', async () => {
  const cleo = await t.signup({ name: 'Cleo', password: PASSWORD });
  await step('next', async () => {
    // Protocol-relative, backslashed and absolute: all another origin to a browser.
    for (const [next, lands] of [
      ['/audit?action=team.*', '/audit?action=team.*'],
      ['//example.com/x', '/'],
      ['/\\example.com/x', '/'],
      ['https://example.com/x', '/'],
    ] as const) {
      await signOutHere();
      await page.goto(`${base}/login?next=${encodeURIComponent(next)}`);
      await page.getByLabel('Email').fill(cleo.user.email);
      await page.getByLabel('Password').fill(PASSWORD);
      await page.getByRole('button', { name: 'Sign in', exact: true }).click();
      await expect.poll(() => page.locator('.topbar .user').textContent(), soon).toBe(cleo.user.email);
      const at = new URL(page.url());
      expect([at.origin, decodeURIComponent(`${at.pathname}${at.search}`)], next).toEqual([base, lands]);
    }
    await signOutHere();
  });
}, 60_000);
