import path from 'node:path';
import type { Page } from 'playwright-core';
import { Webhook } from 'standardwebhooks';
import { afterAll, beforeAll, expect, it } from 'vitest';
import { buildWeb, webStaleReason } from '../../bin/build.js';
import { createTestApp, type SignedUpUser, type TestApp } from '../support/app.ts';
import { type DashboardBrowser, openDashboardBrowser, SHOTS, soon } from '../support/browser.ts';
import { waitForCapsule } from '../support/capsules.ts';
import type { Json } from '../support/factories.ts';
import { type Receiver, startReceiver } from '../webhooks/receiver.ts';

// One database is enough: a browser test drives the API, whose queries its own tests run on both.
//
// The dashboard's operations pages in a real browser against a listening
// server: a webhook pointed at an endpoint on 127.0.0.1 (the one address this
// server's allow-list lets through), its secret shown once, a test event sent
// and redelivered, each checked by the endpoint with the standardwebhooks
// package; an in-app channel and the inbox it fills, read from the page; a
// signed-webhook channel's deliveries listed and one redelivered; an
// alert rule created, edited and deleted; the hosts with the local one and a
// capsule on it; a queue's jobs on a board, one cancelled; the work board with
// an item added and moved. Every page passes axe-core and breaks no CSP rule;
// screenshots go to .test-artifacts/screenshots/.

let t: TestApp;
let user: SignedUpUser;
let receiver: Receiver;
/** A signed-webhook channel's endpoint: its deliveries are listed on the channels page. */
let channelReceiver: Receiver;
let b: DashboardBrowser;
let page: Page;
let base: string;
let ticking: ReturnType<typeof setInterval> | undefined;

beforeAll(async () => {
  if (webStaleReason()) await buildWeb();
  receiver = await startReceiver(() => ({ status: 200, body: 'thanks' }));
  channelReceiver = await startReceiver(() => ({ status: 200, body: 'ok' }));
  t = await createTestApp({
    // Standard Webhooks receivers refuse a timestamp 5 minutes off the real time.
    start: new Date(),
    env: { PADDOCK_ALLOW_PRIVATE_UPSTREAMS: '127.0.0.1' },
    webhooks: { retryScheduleMs: [0, 200, 200], pollMs: 100, sweepMs: 250, sweepGraceMs: 1000 },
  });
  // Deliveries and their sweep run on real time: the server's clock moves with it (webhooks.test.ts).
  let last = Date.now();
  ticking = setInterval(() => {
    const now = Date.now();
    t.clock.advance(now - last);
    last = now;
  }, 20);
  user = await t.signup();
  base = await t.app.listen({ port: 0, host: '127.0.0.1' });
  b = await openDashboardBrowser();
  page = b.page;
  const url = new URL(base);
  await b.context.addCookies([
    { name: 'paddock_session', value: user.token, domain: url.hostname, path: '/', httpOnly: true },
    { name: 'paddock_csrf', value: user.csrf, domain: url.hostname, path: '/' },
  ]);
}, 120_000);

afterAll(async () => {
  clearInterval(ticking);
  await b?.close();
  await t?.close();
  await receiver?.close();
  await channelReceiver?.close();
});

const call = (method: string, url: string, body?: unknown) =>
  t.call(method, url, { token: user.token, ...(body !== undefined ? { body } : {}) });

async function nav(label: string): Promise<void> {
  await page
    .getByRole('navigation', { name: 'Main' })
    .getByRole('link', { name: label, exact: true })
    .click();
}

/**
 * A step's failure leaves a screenshot of where it stopped and names the page's errors; the browser's
 * log of a refused call that the step provokes on purpose (`expected`) is no error.
 */
async function step(name: string, run: () => Promise<void>, expected: RegExp[] = []): Promise<void> {
  const before = b.pageErrors.length;
  const errors = () => b.pageErrors.slice(before).filter((line) => !expected.some((e) => e.test(line)));
  try {
    await run();
  } catch (err) {
    await page.screenshot({ path: path.join(SHOTS, `failure-${name}.png`), fullPage: true });
    if (errors().length > 0) throw new Error(`${String(err)}\nthe page's errors:\n${errors().join('\n')}`);
    throw err;
  }
  expect(errors()).toEqual([]);
}

let hookSecret = '';
let hookId = '';

it('adds a webhook, shows its secret once, sends a test event and redelivers it', async () => {
  await step('webhooks', async () => {
    await page.goto(`${base}/webhooks`);
    await page.getByText('No webhooks yet.').waitFor(soon);
    const endpoint = `http://127.0.0.1:${receiver.port}/hook`;

    // An address the guard refuses: the API's own words on the page.
    await page.getByLabel('Endpoint URL').fill('http://10.1.2.3/hook');
    await page.getByLabel('Events').fill('work_item.*');
    await page.getByRole('button', { name: 'Add webhook' }).click();
    await page
      .getByRole('alert')
      .getByText(/url must be https/)
      .waitFor(soon);

    await page.getByLabel('Endpoint URL').fill(endpoint);
    await page.getByRole('button', { name: 'Add webhook' }).click();
    const shown = page.locator('code.secret');
    await shown.waitFor(soon);
    hookSecret = (await shown.textContent()) ?? '';
    expect(hookSecret).toMatch(/^whsec_/);
    await page.getByRole('link', { name: endpoint }).waitFor(soon);
    await b.check('webhooks');
    await page.getByRole('button', { name: 'Done' }).click();
    await expect.poll(() => shown.count()).toBe(0);

    const listed = (await call('GET', '/v1/webhooks')).body.data;
    expect(listed.map((h: Json) => [h.url, h.event_types])).toEqual([[endpoint, ['work_item.*']]]);
    hookId = listed[0].id;

    await page.getByRole('link', { name: endpoint }).click();
    await page.waitForURL(`${base}/webhooks/${hookId}`);
    await page.getByText('Nothing delivered yet.').waitFor(soon);
    await page.getByRole('button', { name: 'Send test event' }).click();
    await page.getByText(/The endpoint answered HTTP 200 in \d+ ms\./).waitFor(soon);
    const row = page.getByRole('row').filter({ hasText: 'webhook.test' });
    await expect.poll(() => row.count(), soon).toBe(1);
    await expect.poll(() => row.textContent()).toContain('HTTP 200');
    expect(receiver.received).toHaveLength(1);
    const first = receiver.received[0]!;
    const payload = new Webhook(hookSecret).verify(
      first.body,
      first.headers as Record<string, string>,
    ) as Json;
    expect(payload.type).toBe('webhook.test');

    // Sent once more: the same webhook-id and body, logged as the delivery's second attempt.
    await page.getByRole('button', { name: /^Redeliver webhook\.test/ }).click();
    await receiver.until((all) => all.length === 2);
    expect(receiver.received[1]!.headers['webhook-id']).toBe(first.headers['webhook-id']);
    expect(receiver.received[1]!.body).toBe(first.body);
    await expect.poll(() => row.count(), soon).toBe(2);
    await expect
      .poll(async () => (await row.first().locator('td').nth(2).textContent())?.trim(), soon)
      .toBe('2');
    await b.check('webhook');
  }, [/status of 400 .*\/v1\/webhooks\)$/]);
}, 120_000);

it('adds an in-app channel, refusing a bad config in the API’s words', async () => {
  await step('channels', async () => {
    await nav('Channels');
    await page.getByText('No channels yet.').waitFor(soon);
    await page.getByLabel('Name').fill('team inbox');
    await page.getByLabel('Provider', { exact: true }).selectOption('slack');
    // Picked from the server's types: the box and the text are one value.
    await page.getByText(/^Pick from the \d+ event types$/).click();
    await page.getByRole('checkbox', { name: 'work_item.created', exact: true }).check();
    await expect
      .poll(() => page.getByLabel('Events', { exact: true }).inputValue())
      .toBe('work_item.created');
    await page.getByLabel('Incoming webhook URL').fill('ftp://hooks.example.com/x');
    await page.getByRole('button', { name: 'Add channel' }).click();
    await page
      .getByRole('alert')
      .getByText(/webhook_url/)
      .waitFor(soon);

    await page.getByLabel('Provider', { exact: true }).selectOption('in_app');
    await expect.poll(() => page.getByLabel('Incoming webhook URL').count()).toBe(0);
    await page.getByRole('button', { name: 'Add channel' }).click();
    await page.getByRole('cell', { name: 'team inbox', exact: true }).waitFor(soon);

    // A signed-webhook channel: its secret shown once; its deliveries are listed (a later test).
    await page.getByLabel('Name').fill('ops hook');
    await page.getByLabel('Provider', { exact: true }).selectOption('webhook');
    await page.getByLabel('Events', { exact: true }).fill('work_item.created');
    await page.getByLabel('Endpoint URL').fill(`http://127.0.0.1:${channelReceiver.port}/channel`);
    await page.getByRole('button', { name: 'Add channel' }).click();
    await page.locator('code.secret').waitFor(soon);
    await page.getByRole('button', { name: 'Done' }).click();
    await page.getByRole('cell', { name: 'ops hook', exact: true }).waitFor(soon);
    const channels = (await call('GET', '/v1/channels')).body.data;
    expect(channels.map((c: Json) => [c.name, c.provider, c.events]).sort()).toEqual([
      ['ops hook', 'webhook', ['work_item.created']],
      ['team inbox', 'in_app', ['work_item.created']],
    ]);
    // An in-app channel's events become notifications at once: it has no deliveries to list.
    await page.getByRole('button', { name: 'Deliveries of ops hook' }).waitFor();
    expect(await page.getByRole('button', { name: 'Deliveries of team inbox' }).count()).toBe(0);
    await b.check('channels');
  }, [/status of 400 .*\/v1\/channels\)$/]);
}, 60_000);

it('adds an item to the work board and moves it along', async () => {
  await step('work-board', async () => {
    await nav('Work board');
    await page.getByText('The board is empty: add the first item above.').waitFor(soon);
    await page.getByLabel('Title').fill('Write the release notes');
    await page.getByLabel('Assignee').selectOption({ label: 'Me' });
    await page.getByLabel('Priority').selectOption('high');
    await page.getByLabel('Labels').fill('docs, release');
    await page.getByRole('button', { name: 'Add item' }).click();
    const column = (name: string) =>
      page.locator('.board-column').filter({ has: page.getByRole('heading', { name }) });
    await column('To do').getByText('Write the release notes', { exact: true }).waitFor(soon);
    await column('To do').getByText('high · other · you').waitFor();

    await page.getByLabel('Move “Write the release notes” to').selectOption('in_progress');
    await column('To do').getByRole('button', { name: 'Move' }).click();
    await column('In progress').getByText('Write the release notes', { exact: true }).waitFor(soon);
    const items = (await call('GET', '/v1/work-items')).body.data;
    expect(items.map((i: Json) => [i.title, i.status, i.assignee, i.labels])).toEqual([
      ['Write the release notes', 'in_progress', { type: 'user', id: user.user.id }, ['docs', 'release']],
    ]);
    // A move the server's table refuses (done items only reopen): its message on the card.
    await page.getByLabel('Move “Write the release notes” to').selectOption('done');
    await column('In progress').getByRole('button', { name: 'Move' }).click();
    await column('Done').getByText('Write the release notes', { exact: true }).waitFor(soon);
    await page.getByLabel('Move “Write the release notes” to').selectOption('review');
    await column('Done').getByRole('button', { name: 'Move' }).click();
    await column('Done')
      .getByRole('alert')
      .getByText(/cannot move from done to review/)
      .waitFor(soon);
    await b.check('work-board');
    await page.getByRole('button', { name: 'Switch to the dark theme' }).click();
    await b.check('work-board-dark');
    await page.getByRole('button', { name: 'Switch to the light theme' }).click();
  }, [/status of 409 .*\/v1\/work-items\/wki_\w+\/transition\)$/]);
}, 60_000);

const inboxLink = () => page.getByRole('navigation', { name: 'Main' }).getByRole('link', { name: /^Inbox/ });

it('the item reached the webhook, and the inbox, where it is read', async () => {
  await step('notifications', async () => {
    // The work item's creation, delivered to the webhook and signed with its secret.
    await receiver.until((all) => all.some((r) => r.body.includes('"work_item.created"')));
    const created = receiver.received.find((r) => r.body.includes('"work_item.created"'))!;
    expect(
      (new Webhook(hookSecret).verify(created.body, created.headers as Record<string, string>) as Json).type,
    ).toBe('work_item.created');

    await expect
      .poll(async () => (await call('GET', '/v1/notifications/unread-count')).body.unread, soon)
      .toBe(1);
    await inboxLink().click();
    const row = page.getByRole('row').filter({ hasText: 'work_item.created' });
    await row.waitFor(soon);
    await expect.poll(() => row.textContent()).toContain('Write the release notes');
    await page.getByText('1 unread.').waitFor();
    await expect.poll(() => inboxLink().textContent(), soon).toBe('Inbox1 unread');
    await b.check('notifications');
    await row.getByRole('button', { name: /^Mark read/ }).click();
    await page.getByText('Nothing unread.').waitFor(soon);
    // The sidebar's count went with it.
    await expect.poll(() => inboxLink().textContent(), soon).toBe('Inbox');
    expect((await call('GET', '/v1/notifications/unread-count')).body.unread).toBe(0);
    await page.getByLabel('Show').selectOption('all');
    await row.waitFor(soon);
    await expect.poll(() => row.locator('.badge').textContent()).toBe('read');
  });
}, 60_000);

it('lists a channel’s deliveries and redelivers one', async () => {
  await step('channel-deliveries', async () => {
    await channelReceiver.until((all) => all.some((r) => r.body.includes('"work_item.created"')));
    await nav('Channels');
    await page.getByRole('button', { name: 'Deliveries of ops hook' }).click();
    await page.waitForURL(/\/channels\?deliveries=chn_/);
    const section = page.getByRole('region', { name: 'Deliveries of ops hook' });
    await section.waitFor(soon);
    const row = section.getByRole('row').filter({ hasText: 'work_item.created' });
    await expect.poll(() => row.count(), soon).toBe(1);
    await expect.poll(() => row.textContent(), soon).toContain('HTTP 200');
    expect(await row.locator('.badge').textContent()).toBe('succeeded');
    expect(await row.textContent()).toContain('1 of ');
    await b.check('channel-deliveries');

    // Sent once more: the same webhook-id and body, counted as the delivery's second attempt.
    await row.getByRole('button', { name: /^Redeliver work_item\.created/ }).click();
    await channelReceiver.until((all) => all.length === 2);
    const [first, again] = channelReceiver.received;
    expect(again!.headers['webhook-id']).toBe(first!.headers['webhook-id']);
    expect(again!.body).toBe(first!.body);
    await expect.poll(() => row.textContent(), soon).toContain('2 of ');
    await section.getByRole('button', { name: 'Close' }).click();
    await expect.poll(() => section.count(), soon).toBe(0);
  });
}, 60_000);

it('creates, edits and deletes an alert rule', async () => {
  await step('alert-rules', async () => {
    await nav('Alert rules');
    await page.getByText('No alert rules yet.').waitFor(soon);
    await page.getByRole('link', { name: 'New alert rule' }).click();
    await page.getByLabel('Name').fill('hourly spend');
    await page.getByLabel('Threshold (USD)').fill('50');
    await page.getByLabel('E-mail these members').fill(user.user.email);
    await page.getByRole('button', { name: 'Create alert rule' }).click();
    await page.waitForURL(`${base}/alert-rules`);
    await page.getByRole('link', { name: 'hourly spend' }).waitFor(soon);
    await page.getByText('Cost in the window: threshold usd 50').waitFor();
    await b.check('alert-rules');

    await page.getByRole('link', { name: 'hourly spend' }).click();
    await page.getByRole('combobox', { name: 'Condition' }).selectOption('task_failure_rate');
    await page.getByLabel('Threshold (%)').fill('25');
    await page.getByLabel('At least this many tasks').fill('4');
    await page.getByLabel('Window (seconds)').fill('7200');
    await page.getByRole('button', { name: 'Save changes' }).click();
    await page.waitForURL(`${base}/alert-rules`);
    await page.getByText('Task failure rate: threshold pct 25, min tasks 4').waitFor(soon);
    const [rule] = (await call('GET', '/v1/alert-rules')).body.data;
    expect(rule).toMatchObject({
      name: 'hourly spend',
      condition_type: 'task_failure_rate',
      condition_config: { threshold_pct: 25, min_tasks: 4 },
      window_seconds: 7200,
      notify_emails: [user.user.email.toLowerCase()],
      status: 'active',
    });

    await page.getByRole('link', { name: 'hourly spend' }).click();
    await page.getByRole('button', { name: 'Disable' }).click();
    await page.getByRole('button', { name: 'Enable' }).waitFor(soon);
    expect((await call('GET', `/v1/alert-rules/${rule.id}`)).body.status).toBe('disabled');
    page.once('dialog', (d) => void d.accept());
    await page.getByRole('button', { name: 'Delete hourly spend' }).click();
    await page.waitForURL(`${base}/alert-rules`);
    await page.getByText('No alert rules yet.').waitFor(soon);
    expect((await call('GET', `/v1/alert-rules/${rule.id}`)).status).toBe(404);
  });
}, 60_000);

it('lists the hosts with the local one online, and a capsule on it', async () => {
  await step('hosts', async () => {
    const capsule = await call('POST', '/v1/capsules', { memory_mb: 256, disk_size_mb: 64 });
    expect(capsule.status, JSON.stringify(capsule.body)).toBe(202);
    await waitForCapsule(t, user.token, capsule.body.id, 'running');
    await nav('Hosts');
    const local = page.getByRole('row').filter({ hasText: 'local' }).filter({ hasText: 'online' });
    await local.waitFor(soon);
    await expect.poll(() => local.textContent()).toContain('in process');
    await b.check('hosts');
    await local.getByRole('link').click();
    await page.getByRole('link', { name: capsule.body.id }).waitFor(soon);
    await b.check('host');
    await call('DELETE', `/v1/capsules/${capsule.body.id}`);
  });
}, 60_000);

it('submits jobs to a queue, shows them on its board by status, and cancels one', async () => {
  await step('queues', async () => {
    await nav('Queues');
    await page.getByText('No queues yet.').waitFor(soon);
    await page.getByLabel('Queue', { exact: true }).fill('emails');
    await page.getByLabel('Job type').fill('email.send');
    await page.getByLabel('Payload (JSON)').fill('{"to": "a@example.com"');
    await page.getByRole('button', { name: 'Submit job' }).click();
    await page
      .getByRole('alert')
      .getByText(/The payload is not JSON/)
      .waitFor();
    await page.getByLabel('Payload (JSON)').fill('{"to": "a@example.com"}');
    await page.getByRole('button', { name: 'Submit job' }).click();
    await page.waitForURL(`${base}/queues/emails`);

    // A second job, and a worker that claims the older one.
    await page.getByLabel('Job type').fill('email.digest');
    await page.getByRole('button', { name: 'Submit job' }).click();
    const column = (name: string) =>
      page.locator('.board-column').filter({ has: page.getByRole('heading', { name }) });
    await column('Queued').getByText('email.digest').waitFor(soon);
    const worker = await t.apiKey(user.token, ['write']);
    const claimed = await t.call('POST', '/v1/queues/emails/claim', {
      token: worker.key,
      body: { worker_id: 'mailer-1', types: ['email.send'] },
    });
    expect(claimed.body.data.map((j: Json) => j.type)).toEqual(['email.send']);
    await column('Active').getByText('mailer-1', { exact: false }).waitFor(soon);

    const digest = (await call('GET', '/v1/queues/emails/jobs?status=queued')).body.data[0];
    await page.getByRole('button', { name: `Cancel job ${digest.id}` }).click();
    await column('Cancelled').getByText('email.digest').waitFor(soon);
    expect((await call('GET', `/v1/queues/emails/jobs/${digest.id}`)).body.status).toBe('cancelled');
    await b.check('work-queue');

    await page.getByRole('link', { name: 'All queues' }).click();
    const row = page.getByRole('row').filter({ hasText: 'emails' });
    await row.waitFor(soon);
    // queued, active, completed, failed, cancelled
    await expect
      .poll(async () => (await row.locator('td').allTextContents()).slice(1))
      .toEqual(['0', '1', '0', '0', '1']);
    await b.check('queues');
  });
}, 60_000);

it('deletes the webhook from its page', async () => {
  await step('webhook-delete', async () => {
    await page.goto(`${base}/webhooks/${hookId}`);
    page.once('dialog', (d) => void d.accept());
    await page.getByRole('button', { name: /^Delete http:\/\/127\.0\.0\.1/ }).click();
    await page.waitForURL(`${base}/webhooks`);
    await page.getByText('No webhooks yet.').waitFor(soon);
    expect((await call('GET', `/v1/webhooks/${hookId}`)).status).toBe(404);
  });
}, 60_000);
